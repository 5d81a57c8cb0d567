#!/usr/bin/env python
"""distst's STID side by side with BasicTS's (issue 16): equal outputs for copied weights, and
the training step time of both at equal parameters.

BasicTS is not a dependency and nothing of it is committed: fetch it, export the STID
architecture of its v0.4 layout (1x1 convolutions over ``[B, features, N, 1]``), and point
``--basicts`` at the folder holding ``stid_arch.py`` and ``mlp.py``::

    git --git-dir=/work/.mirror/GestaltCogTeam+BasicTS/repo archive 4bf39dd \\
        baselines/STID/arch | tar -x -C /tmp/basicts
    .venv/bin/python scripts/bench_stid.py --basicts /tmp/basicts/baselines/STID/arch \\
        [--nodes 207 1026] [--batch 64] [--threads 2] [--steps 20]

Both models get the authors' METR-LA settings (3 input channels: value, time of day, day of
week; embeddings 32/32/32/32, 3 layers, dropout 0.15), the same batch and Adam. A step is
forward + masked-free MAE + backward + Adam step; the two models alternate step by step so
that machine noise hits both alike; the median of ``--steps`` after 3 warm-up steps.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distst.nn.registry import build_model  # noqa: E402

PARAMS = {"num_layer": 3, "embed_dim": 32, "node_dim": 32, "temp_dim_tid": 32,
          "temp_dim_diw": 32}


def load_basicts(folder: Path):
    """BasicTS's STID class from an exported ``baselines/STID/arch`` folder (a package)."""
    init = folder / "__init__.py"
    if not (folder / "stid_arch.py").is_file():
        raise SystemExit(f"--basicts {folder}: no stid_arch.py there; export BasicTS's "
                         "baselines/STID/arch folder (see this script's docstring)")
    spec = importlib.util.spec_from_file_location("basicts_stid", init,
                                                  submodule_search_locations=[str(folder)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["basicts_stid"] = mod
    spec.loader.exec_module(mod)
    return mod.STID


def batch(b: int, n: int, seed: int = 0):
    """Values, time of day at slot centres (so that any floor rounding agrees) and
    weekday / 7, in distst's channel order."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 12, n, 3, generator=g)
    start = torch.randint(0, 288 * 7, (b,), generator=g)
    step = start[:, None] + torch.arange(12)[None]
    x[..., 1] = (((step % 288).float() + 0.5) / 288)[:, :, None]
    x[..., 2] = ((step // 288 % 7).float() / 7)[:, :, None]
    y = torch.randn(b, 12, n, 1, generator=g)
    return x, y


def copy_weights(ours, theirs) -> None:
    def lin(dst, src):
        dst.weight.copy_(src.weight[:, :, 0, 0])
        dst.bias.copy_(src.bias)

    with torch.no_grad():
        lin(ours.input_embedding, theirs.time_series_emb_layer)
        ours.node_embedding.copy_(theirs.node_emb)
        ours.tod_embedding.copy_(theirs.time_in_day_emb)
        ours.dow_embedding.copy_(theirs.day_in_week_emb)
        for layer, mlp in zip(ours.encoder, theirs.encoder):
            lin(layer.fc1, mlp.fc1)
            lin(layer.fc2, mlp.fc2)
        lin(ours.regression, theirs.regression_layer)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--basicts", required=True, type=Path)
    ap.add_argument("--nodes", type=int, nargs="+", default=[207, 1026])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    STID = load_basicts(args.basicts)
    rows = []
    for n in args.nodes:
        torch.manual_seed(0)
        theirs = STID(num_nodes=n, input_len=12, input_dim=3, output_len=12, if_node=True,
                      if_T_i_D=True, if_D_i_W=True, time_of_day_size=288,
                      day_of_week_size=7, **PARAMS)
        ours = build_model("stid", dict(num_nodes=n, input_dim=3, output_dim=1, input_len=12,
                                        horizon=12, steps_per_day=288, time_of_day=True,
                                        day_of_week=True), {})
        copy_weights(ours, theirs)
        p_ours = sum(p.numel() for p in ours.parameters())
        p_theirs = sum(p.numel() for p in theirs.parameters())
        x, y = batch(args.batch, n)
        ours.eval()
        theirs.eval()
        with torch.no_grad():
            ref = theirs(x, None, 0, 0, False)
            diff = float((ours(x) - ref).abs().max())
        models = {"distst": (ours, lambda m: m(x)),
                  "basicts": (theirs, lambda m: m(x, None, 0, 0, True))}
        opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, (m, _) in models.items()}
        times: dict[str, list[float]] = {k: [] for k in models}
        for i in range(3 + args.steps):
            for k, (m, fwd) in models.items():
                m.train()
                t0 = time.perf_counter()
                opts[k].zero_grad(set_to_none=True)
                (fwd(m) - y).abs().mean().backward()
                opts[k].step()
                if i >= 3:
                    times[k].append(time.perf_counter() - t0)
        ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
        row = (f"| {n} | {p_ours:,} | {p_theirs:,} | {diff:.1e} | {ms['distst']:.1f} | "
               f"{ms['basicts']:.1f} | {ms['distst'] / ms['basicts']:.2f} |")
        rows.append(row)
        print(row, flush=True)
    print(f"\nBatch {args.batch}, 12 -> 12, {args.threads} threads, {platform.machine()} "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}; median of {args.steps} steps "
          "after 3 warm-up, the two models alternating.\n")
    print("| N | parameters distst | parameters BasicTS | max output diff (copied weights) "
          "| distst ms / step | BasicTS ms / step | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
