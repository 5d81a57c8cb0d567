"""Shard vs replicate accuracy as a function of halo depth (issue 3).

Recurrent graph models see further than any finite halo, so shard mode is an
approximation for them. This trains the same config in replicate mode and in shard mode
for each halo depth and prints test MAE side by side:

    .venv/bin/python scripts/bench_shard_accuracy.py --config configs/quickstart.yaml --hops 0 1 2 4

Training runs differ by more than the halo's effect (two short runs of the same setting differ
by ~0.1 MAE), so ``--eval-only RUN_DIR`` isolates the halo: it takes ONE trained model and
evaluates it the way shard mode runs it -- each part of a P-part plan sees only its inner
nodes and its halo -- for every halo depth, next to the whole-graph evaluation:

    .venv/bin/python scripts/bench_shard_accuracy.py --eval-only runs/RUN --parts 8 --hops 0 1 2 4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def train(config: str, overrides: list[str], storage: Path) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "distst.cli", "train", config, "--set", f"runtime.storage={storage}",
           "--set", "train.progress=false"]
    for o in overrides:
        cmd += ["--set", o]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    run_dir = Path(out.stdout.strip().splitlines()[-1].split("run directory: ")[1])
    return json.loads((run_dir / "test_metrics.json").read_text()), secs


def eval_only(args) -> int:
    import tempfile

    from distst.config import load_config
    from distst.engine.checkpoint import load_checkpoint
    from distst.engine.entry import evaluate_checkpoint, evaluate_checkpoint_sharded
    from distst.graph.partition.plan import make_plan

    run = Path(args.eval_only)
    payload, _ = load_checkpoint(run)
    data_dir = payload["dataset_dir"]
    cfg = load_config(run / "config.yaml")
    work = Path(tempfile.mkdtemp(prefix="distst-halo-eval-"))

    def row(name, t, extra=""):
        return (f"| {name} | {t['15min']['mae']:.4f} | {t['30min']['mae']:.4f} | "
                f"{t['60min']['mae']:.4f} | {t['avg']['mae']:.4f} | {extra} |")

    t0 = time.perf_counter()
    whole = evaluate_checkpoint(run)["test"]
    rows = [row("whole graph", whole, f"{time.perf_counter() - t0:.0f}")]
    print(rows[-1], flush=True)
    for h in args.hops:
        plan, _, q = make_plan(data_dir, work / f"h{h}", method=args.method, parts=args.parts,
                               halo_hops=h, seed=0)
        t0 = time.perf_counter()
        t = evaluate_checkpoint_sharded(run, plan)["test"]
        rows.append(row(f"{args.parts} parts, halo {h}", t,
                        f"{time.perf_counter() - t0:.0f} (halo nodes {q['halo_total']}, "
                        f"cut edges {q['cut_edges']})"))
        print(rows[-1], flush=True)
    print(f"\nmodel {cfg.model.name} from {run}, {args.method}\n\n| evaluation | MAE 15 min | "
          "MAE 30 min | MAE 60 min | MAE avg | seconds |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--hops", type=int, nargs="+", default=[0, 1, 2, 4])
    ap.add_argument("--parts", type=int, default=2)
    ap.add_argument("--method", default="metis")
    ap.add_argument("--storage", default="/tmp/distst-shard-accuracy")
    ap.add_argument("--skip-replicate", action="store_true")
    ap.add_argument("--set", action="append", default=[], help="extra overrides for every run")
    ap.add_argument("--eval-only", default=None, metavar="RUN_DIR",
                    help="evaluate this trained run sharded at each halo depth (no training)")
    args = ap.parse_args()
    if args.eval_only:
        return eval_only(args)
    storage = Path(args.storage)
    rows = []
    runs = [] if args.skip_replicate else [("replicate", ["runtime.mode=replicate"])]
    runs += [(f"shard h={h}", ["runtime.mode=shard", f"partition.parts={args.parts}",
                               f"partition.method={args.method}", f"partition.halo_hops={h}"])
             for h in args.hops]
    for name, ov in runs:
        final, secs = train(args.config, ov + args.set, storage)
        t = final["test"]
        rows.append(f"| {name} | {t['15min']['mae']:.3f} | {t['30min']['mae']:.3f} | "
                    f"{t['60min']['mae']:.3f} | {t['avg']['mae']:.3f} | {secs:.0f} |")
        print(rows[-1], flush=True)
    print("\n| run | MAE 15 min | MAE 30 min | MAE 60 min | MAE avg | seconds |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
