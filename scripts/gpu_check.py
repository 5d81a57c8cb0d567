#!/usr/bin/env python
"""Every registered model on CUDA against the same model on CPU (scripts/gpu_check.sh, step 1).

Builds each model of ``tests/tiny_models.py`` on a 30-node random graph on CPU, copies its
weights to CUDA, and compares the forward output (eval mode) and the gradient of the first
parameter after one backward pass. Prints one Markdown row per model; exits 1 if one differs.
``DISTST_CHECK_DEVICE=cpu`` runs the same comparison CPU against CPU (a dry run of the script).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    from tiny_models import TINY

    from distst.engine.bundle import local_coarsening
    from distst.nn import build_model

    dev = os.environ.get("DISTST_CHECK_DEVICE", "cuda")
    if dev == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing checked", file=sys.stderr)
        return 1
    g = torch.Generator().manual_seed(0)
    n, b, t, h = 30, 4, 12, 12
    src = torch.randint(0, n, (120,), generator=g)
    dst = torch.randint(0, n, (120,), generator=g)
    keep = src != dst
    w = torch.rand(int(keep.sum()), generator=g) + 0.1
    # both directions with one weight: the Chebyshev models need a symmetric W
    ei = torch.cat([torch.stack([src[keep], dst[keep]]), torch.stack([dst[keep], src[keep]])], 1)
    ew = torch.cat([w, w])
    data = dict(num_nodes=n, input_dim=3, output_dim=1, input_len=t, horizon=h,
                edge_index=ei, edge_weight=ew, steps_per_day=288,
                spatial_attrs=torch.randn(n, 4, generator=g),
                coarsening=functools.partial(local_coarsening, ei.numpy(), ew.numpy(), n))
    x = torch.randn(b, t, n, 3, generator=g)
    x[..., 1] = torch.rand(1, t, 1, generator=g)  # time of day in [0, 1), equal at all nodes
    x[..., 2] = 0.0                                # Monday
    print("| model | max abs diff forward | max abs diff grad | ok |\n|---|---:|---:|---|")
    bad = 0
    for name, params in TINY.items():
        if name in ("hyperst_cnn",):  # needs a grid (its own check in bench_models.py)
            continue
        try:
            torch.manual_seed(0)
            cpu = build_model(name, data, dict(params))
        except Exception as e:  # a model needing data this check does not make
            print(f"| {name} | skipped: {str(e).splitlines()[0][:80]} | | |")
            continue
        gpu = build_model(name, {k: v.to(dev) if torch.is_tensor(v) else v
                                 for k, v in data.items()}, dict(params)).to(dev)
        gpu.load_state_dict(cpu.state_dict())
        outs, grads = [], []
        for model, where in ((cpu, "cpu"), (gpu, dev)):
            model.eval()
            with torch.no_grad():
                outs.append(model(x.to(where)).float().cpu())
            model.train()
            model.zero_grad()
            torch.manual_seed(1)  # the same dropout masks and sampling draws on both
            model(x.to(where)).square().mean().backward()
            first = next(p for p in model.parameters() if p.grad is not None)
            grads.append(first.grad.float().cpu())
        df = (outs[0] - outs[1]).abs().max().item()
        dg = (grads[0] - grads[1]).abs().max().item()
        ok = df < 1e-4 and dg < 1e-3
        bad += not ok
        print(f"| {name} | {df:.2e} | {dg:.2e} | {'yes' if ok else 'NO'} |")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
