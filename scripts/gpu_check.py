#!/usr/bin/env python
"""Every registered model, one training step on the device against the same step on CPU
(scripts/gpu_check.sh, step 1), in each variant the engine runs:

- ``fp32``: the step as it is;
- ``bf16``: the forward under ``torch.autocast(dtype=bfloat16)``, as ``train.precision: bf16``
  runs it (distst.engine.trainer.Trainer.forecast), on both sides;
- ``recompute``: ``train.recompute: step`` on the device (recurrent models only) against the
  plain step on CPU: recomputation must not change a number.

Each model of ``tests/tiny_models.py`` is built on a 30-node random graph on CPU, its weights
copied to the device; one batch, the masked-free MAE loss, one backward. Compared: the loss
and every parameter's gradient, as the largest absolute difference relative to the largest
CPU value (``rel``). Tolerances (:data:`TOLERANCE`): fp32 and recompute 1e-3 (float32 kernels
differ in summation order: CUDA against CPU lands at 1e-6..1e-4 on these sizes), bf16 5e-2
(8 mantissa bits, and CPU and CUDA round different intermediate products). Prints one
Markdown row per model and variant; exits 1 if one is out of tolerance.

``DISTST_CHECK_DEVICE=cpu`` runs the same comparison CPU against CPU: the rehearsal the tests
run (tests/test_gpu_check.py), so that a broken script never costs a GPU session.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

VARIANTS = ("fp32", "bf16", "recompute")
#: largest |device - CPU| relative to the largest |CPU| value, loss and gradients
TOLERANCE = {"fp32": 1e-3, "bf16": 5e-2, "recompute": 1e-3}


def _data(n: int = 30, b: int = 4, t: int = 12):
    from distst.graph.coarsening import local_coarsening

    g = torch.Generator().manual_seed(0)
    src = torch.randint(0, n, (120,), generator=g)
    dst = torch.randint(0, n, (120,), generator=g)
    keep = src != dst
    w = torch.rand(int(keep.sum()), generator=g) + 0.1
    # both directions with one weight: the Chebyshev models need a symmetric W
    ei = torch.cat([torch.stack([src[keep], dst[keep]]), torch.stack([dst[keep], src[keep]])], 1)
    ew = torch.cat([w, w])
    data = dict(num_nodes=n, input_dim=3, output_dim=1, input_len=t, horizon=t,
                edge_index=ei, edge_weight=ew, steps_per_day=288,
                spatial_attrs=torch.randn(n, 4, generator=g),
                coarsening=functools.partial(local_coarsening, ei.numpy(), ew.numpy(), n))
    x = torch.randn(b, t, n, 3, generator=g)
    x[..., 1] = torch.rand(1, t, 1, generator=g)  # time of day in [0, 1), equal at all nodes
    x[..., 2] = 0.0                                # Monday
    y = torch.randn(b, t, n, 1, generator=g)
    return data, x, y


def _step(model, x, y, device: str, bf16: bool):
    """One training step's loss and gradients (CPU float32 copies)."""
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same dropout masks and sampling draws on both sides
    with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
        out = model(x.to(device))
    loss = (out.float() - y.to(device)).abs().mean()
    loss.backward()
    grads = {n: p.grad.detach().float().cpu() for n, p in model.named_parameters()
             if p.grad is not None}
    return loss.detach().float().cpu(), grads


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max().clamp(min=1e-12))


def check(name: str, params: dict, variant: str, device: str, data, x, y) -> tuple:
    """(rel. loss difference, worst rel. gradient difference and its parameter) or a reason
    the variant does not apply."""
    from distst.nn import build_model
    from distst.nn.registry import model_class

    if variant == "recompute" and not getattr(model_class(name), "RECURRENT", False):
        return "not recurrent"
    torch.manual_seed(0)
    cpu = build_model(name, data, dict(params))
    dev = build_model(name, {k: v.to(device) if torch.is_tensor(v) else v
                             for k, v in data.items()}, dict(params)).to(device)
    dev.load_state_dict(cpu.state_dict())
    dev.recompute = variant == "recompute"
    bf16 = variant == "bf16"
    loss_c, grads_c = _step(cpu, x, y, "cpu", bf16)
    loss_d, grads_d = _step(dev, x, y, device, bf16)
    if set(grads_c) != set(grads_d):
        return f"gradients of different parameters: {sorted(set(grads_c) ^ set(grads_d))}"
    worst = max(((_rel(grads_c[k], grads_d[k]), k) for k in grads_c), default=(0.0, "-"))
    return _rel(loss_c, loss_d), worst[0], worst[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = ap.parse_args(argv)
    from tiny_models import TINY

    device = os.environ.get("DISTST_CHECK_DEVICE", "cuda")
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing checked", file=sys.stderr)
        return 1
    data, x, y = _data()
    print(f"device {device} against cpu; tolerance (rel. to the largest CPU value): "
          + ", ".join(f"{v} {TOLERANCE[v]:g}" for v in args.variants) + "\n")
    print("| model | variant | loss rel. diff | worst grad rel. diff (parameter) | ok |\n"
          "|---|---|---:|---:|---|")
    bad = 0
    for name, params in TINY.items():
        if name == "hyperst_cnn":  # needs a grid (its own check in bench_models.py)
            continue
        for variant in args.variants:
            try:
                got = check(name, params, variant, device, data, x, y)
            except Exception as e:  # a failure is a row, not the end of the check
                got = f"FAILED: {type(e).__name__}: {str(e).splitlines()[0][:90]}"
            if isinstance(got, str):
                failed = got.startswith(("FAILED", "gradients of"))
                bad += failed
                print(f"| {name} | {variant} | {got} | | {'NO' if failed else 'n/a'} |")
                continue
            dl, dg, where = got
            ok = dl <= TOLERANCE[variant] and dg <= TOLERANCE[variant]
            bad += not ok
            print(f"| {name} | {variant} | {dl:.1e} | {dg:.1e} ({where}) | "
                  f"{'yes' if ok else 'NO'} |")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
