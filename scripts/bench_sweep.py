"""Sweep cost: wall time of an example sweep, and the start-up overhead of Tune + Train per trial.

    python scripts/bench_sweep.py                       # both parts, example GCGRU sweep
    python scripts/bench_sweep.py --skip-example --overhead-trials 3
    python scripts/bench_sweep.py --sweep configs/sweeps/himnet.yaml --set num_samples=4

Overhead: the same near-empty run (1 epoch of 1 training and 1 validation batch on a 20-node
network) is timed (a) as a plain Ray Train run (`train_ray`) and (b) as each of K trials of a
sweep run one at a time; (b)/K - (a) is what Tune adds per trial, (a) minus the trainer's own
epoch time is Ray Train's start-up + teardown. Prints a markdown table; --out appends it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def _tiny_sweep(tmp: Path, trials: int) -> Path:
    import yaml

    sweep = {"base": str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"),
             "overrides": {"data.cache_dir": str(tmp / "cache"), "data.synth.nodes": 20,
                           "data.synth.days": 4, "runtime.mode": "replicate",
                           "model.params": {"K": 2, "hidden_size": 8, "num_layers": 1},
                           "train.epochs": 1, "train.max_batches_per_epoch": 1,
                           "train.max_val_batches": 1, "train.batch_size": 32,
                           "train.baseline_ha": False, "train.progress": False},
             "search_space": {"train.lr": {"choice": [0.01]}},
             "num_samples": trials, "workers_per_trial": 2, "max_concurrent_trials": 1,
             "scheduler": "fifo", "storage": str(tmp / "sweeps"), "name": "overhead"}
    p = tmp / "overhead.yaml"
    p.write_text(yaml.safe_dump(sweep))
    return p


def overhead(trials: int) -> list[tuple[str, str]]:
    from distst.config import config_from_dict
    from distst.runtime.ray_train import train_ray
    from distst.sweep.config import load_sweep
    from distst.sweep.driver import run_sweep

    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    sweep = load_sweep(_tiny_sweep(tmp, trials))
    # the sweep driver prepares the data once; do it before timing anything
    from distst.engine.provision import ensure_dataset

    ensure_dataset(sweep.base.data)
    raw = sweep.base.to_dict()
    raw["runtime"].update(storage=str(tmp / "plain"), workers=2, cpus_per_worker=0.95)
    cfg = config_from_dict(raw)
    train_ray(cfg)  # warm-up: the first Train run also pays for imports in fresh Ray workers
    t0 = time.perf_counter()
    run_dir, _ = train_ray(cfg)
    plain = time.perf_counter() - t0
    rec = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    t0 = time.perf_counter()
    res = run_sweep(sweep, progress=False)
    total = time.perf_counter() - t0
    per_trial = total / trials
    return [
        ("plain Ray Train run, 2 workers, ~0 training (s)", f"{plain:.1f}"),
        ("  of which the trainer's epoch (s)", f"{rec['epoch_time_s']:.2f}"),
        (f"sweep of {trials} such trials one at a time, total (s)", f"{total:.1f}"),
        ("per trial (s)", f"{per_trial:.1f}"),
        ("Tune's share per trial (per trial - plain run) (s)", f"{per_trial - plain:.1f}"),
        ("trials finished", str(res.counts["trials"] - res.counts["errors"])),
    ]


def example(path: str, overrides: list[str]) -> list[tuple[str, str]]:
    from distst.sweep.config import load_sweep
    from distst.sweep.driver import run_sweep

    tmp = tempfile.mkdtemp(prefix="bench-sweep-ex-")
    sweep = load_sweep(path, [f"storage={tmp}", "name=example", *overrides])
    from distst.engine.provision import ensure_dataset

    ensure_dataset(sweep.base.data)
    t0 = time.perf_counter()
    res = run_sweep(sweep, progress=False)
    wall = time.perf_counter() - t0
    r = res.resources
    return [
        (f"example sweep {path} {' '.join(overrides)}".strip(), ""),
        ("  trials (stopped early / failed)",
         f"{res.counts['trials']} ({res.counts['stopped_early']} / {res.counts['errors']})"),
        ("  resources", f"{r.workers} workers x {r.cpus_per_worker:g} CPU + driver "
                        f"{r.driver_cpus:g}, {r.max_concurrent_trials} at a time"),
        ("  wall time (s)", f"{wall:.1f}"),
        ("  best val MAE", f"{res.best['val_mae']:.4f}" if res.best else "-"),
        ("  best trial's test MAE (avg)",
         f"{res.test['test']['avg']['mae']:.4f}" if res.test else "-"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", default="configs/sweeps/gcgru.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--overhead-trials", type=int, default=3)
    ap.add_argument("--skip-example", action="store_true")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--out", help="append the table to this file")
    args = ap.parse_args()
    from distst.runtime.ray_train import connect

    connect()
    rows: list[tuple[str, str]] = []
    if not args.skip_overhead:
        rows += overhead(args.overhead_trials)
    if not args.skip_example:
        rows += example(args.sweep, args.set)
    table = "\n".join(["| measure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows])
    table += f"\n\n({os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')})\n"
    print(table)
    if args.out:
        with open(args.out, "a") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
