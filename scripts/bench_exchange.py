#!/usr/bin/env python
"""Exchange mode against shard mode on the quickstart (issue 34, item 3).

The quickstart's model (GCGRU K = 3, hidden 32, one layer) on its 1,026-sensor network in 2
METIS parts, 2 gloo processes x 1 thread on this machine, in three variants:

* ``shard-h2``: the quickstart's shard mode (2-hop halo, no exchange: approximate);
* ``exchange-h1``: exchange mode on a 1-hop plan: every graph product fetches the 1-hop
  boundary of its input (K - 1 = 2 rounds per Chebyshev filter, forward and backward);
* ``exchange-h2``: exchange mode on a 2-hop plan (what exchange mode plans for K = 3): one
  fetch per filter, the rest of the filter local (``HaloExchange.chain``).

Default: a training step's forward and backward (the parts' own loss, the same windows on both
parts, ``--batch`` windows per worker) timed ``--steps`` times after one warm-up, step time =
the slower part's; the variants alternate over ``--rounds`` fresh process pairs. Optimiser and
gradient all-reduce are left out: they are the same in every variant. ``--train`` instead
runs ``distst train configs/quickstart.yaml`` for one epoch of ``--steps`` steps per variant
(Ray, DDP, data loading included; noisier on 2 shared cores) and reports windows/s.

    .venv/bin/python scripts/bench_exchange.py [--rounds 3] [--steps 10] [--batch 32] [--train]
        [--set data.synth.graph=delaunay]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("shard-h2", "exchange-h1", "exchange-h2")


def plans(tmp: Path, sets: list[str]) -> dict[int, str]:
    from distst.config import load_config
    from distst.engine.provision import ensure_dataset
    from distst.graph.partition.plan import make_plan

    cfg = load_config(ROOT / "configs" / "quickstart.yaml", sets)
    data = ensure_dataset(cfg.data, quiet=True)
    out = {}
    for hops in (1, 2):
        path, _, _ = make_plan(data, tmp / f"plan-h{hops}", method="metis", parts=2,
                               halo_hops=hops, seed=cfg.partition.seed)
        out[hops] = str(path)
    return out


def run(variant: str, tag: str, storage: Path, plan: dict[int, str], steps: int,
        extra: list[str]) -> dict:
    sets = list(extra) + ["train.epochs=1", f"train.max_batches_per_epoch={steps}", "train.max_val_batches=1",
            "train.max_test_batches=1", "train.progress=false", "train.baseline_ha=false",
            f"runtime.storage={storage}", f"runtime.name={tag}"]
    if variant.startswith("exchange"):  # shard-h2 is the quickstart as it is
        sets += ["runtime.mode=exchange", f"partition.plan={plan[int(variant[-1])]}"]
    cmd = [sys.executable, "-m", "distst", "train", str(ROOT / "configs" / "quickstart.yaml")]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{variant}: distst train failed (rc {proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    rec = [json.loads(line) for line in (storage / tag / "metrics.jsonl").read_text()
           .splitlines() if line.strip()][-1]
    return {"variant": variant, "tag": tag, "windows_per_s": rec["windows_per_s"]}


def _step_worker(rank: int, world: int, port: int, variant: str, plan: str, steps: int,
                 batch: int, outdir: str, sets: list[str]) -> None:
    import time

    import numpy as np
    import torch
    import torch.distributed as dist

    from distst.config import load_config
    from distst.engine.bundle import build_bundle
    from distst.engine.collectives import Collectives
    from distst.engine.exchange import HaloExchange, connect
    from distst.engine.provision import ensure_dataset
    from distst.graph.partition.plan import open_part
    from distst.layout import Layout
    from distst.nn.registry import build_model

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cfg = load_config(ROOT / "configs" / "quickstart.yaml", sets)
        data = ensure_dataset(cfg.data, quiet=True)
        part = open_part(plan, rank)
        bundle = build_bundle(cfg.data, data, part=part, notices=False)
        torch.manual_seed(0)
        model = build_model(cfg.model.name, bundle.kwargs_for_model(cfg.model.name),
                            dict(cfg.model.params))
        ex = None
        if variant.startswith("exchange"):
            comm = Collectives(Layout("exchange", parts=world), rank, world,
                               torch.device("cpu"))
            ex = HaloExchange(bundle.owned.global_ids, bundle.owned.num_inner,
                              group=comm.replica_group(), depth=part.halo_hops)
            connect(model, ex)
        x, y = bundle.datasets["train"].batch(np.arange(batch) * 7)
        y = torch.nan_to_num(y)
        inner = bundle.owned.num_inner
        times, rounds, sent = [], [], []
        for _ in range(steps + 1):
            r0, b0 = (ex.rounds, ex.bytes_sent) if ex else (0, 0)
            dist.barrier()
            t = time.perf_counter()
            out = model(x, targets=y, teacher_forcing=0.0)
            (out - y)[:, :, :inner].abs().mean().backward()
            times.append(time.perf_counter() - t)
            rounds.append((ex.rounds - r0) if ex else 0)
            sent.append((ex.bytes_sent - b0) if ex else 0)
        with open(os.path.join(outdir, f"{variant}-{rank}.json"), "w") as f:
            json.dump({"times": times[1:], "rounds": rounds[-1], "bytes": sent[-1],
                       "local": bundle.owned.num_local, "inner": inner}, f)
    finally:
        dist.destroy_process_group()


def step_round(variant: str, plan: str, steps: int, batch: int, tmp: Path,
               sets: list[str]) -> dict:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_step_worker, args=(2, port, variant, plan, steps, batch, str(tmp), sets), nprocs=2)
    ranks = [json.loads((tmp / f"{variant}-{r}.json").read_text()) for r in range(2)]
    per_step = [max(ts) for ts in zip(*[r["times"] for r in ranks])]
    return {"variant": variant, "step_s": statistics.median(per_step),
            "rounds_per_step": [r["rounds"] for r in ranks],
            "mb_sent_per_step": [round(r["bytes"] / 2**20, 2) for r in ranks],
            "local_rows": [r["local"] for r in ranks], "inner_rows": [r["inner"] for r in ranks]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32, help="windows per worker (step mode)")
    ap.add_argument("--train", action="store_true", help="time distst train runs instead")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override the quickstart config (e.g. data.synth.graph=delaunay)")
    args = ap.parse_args()
    key = "windows_per_s" if args.train else "step_s"
    with tempfile.TemporaryDirectory(prefix="bench-exchange-") as tmp:
        tmp = Path(tmp)
        plan = plans(tmp, args.set)
        got: dict[str, list[float]] = {v: [] for v in args.variants}
        for r in range(args.rounds):
            for v in args.variants:
                if args.train:
                    rec = run(v, f"{v}-{r}", tmp / "runs", plan, args.steps, args.set)
                else:
                    rec = step_round(v, plan[int(v[-1])], args.steps, args.batch, tmp,
                                     args.set)
                got[v].append(rec[key])
                print(json.dumps(rec), flush=True)
    base = statistics.mean(got["shard-h2"]) if got.get("shard-h2") else None
    for v, xs in got.items():
        mean = statistics.mean(xs)
        spread = statistics.stdev(xs) if len(xs) > 1 else 0.0
        ratio = ""
        if base:
            ratio = f", step time {(base / mean if args.train else mean / base):.2f}x shard's"
        unit = "windows/s" if args.train else "s per step (median, slower part)"
        print(f"{v}: {mean:.3f} +- {spread:.3f} {unit} over {len(xs)} rounds "
              f"({', '.join(f'{x:.3f}' for x in xs)}){ratio}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    main()
