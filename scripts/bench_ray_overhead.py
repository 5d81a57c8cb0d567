#!/usr/bin/env python
"""What Ray costs on one machine: the same training epoch with ``--local`` and under Ray
Train (1 worker with all the threads; 2 workers in replicate and in shard mode).

Each case is a fresh ``distst train`` process, as a user runs it, with
``train.step_timing=true`` so that every step's wall time is recorded
(``RUN/steps/rank_R.json``; without DDP at one worker the math is the same as untimed).
Reported per case: the epoch's windows/s (what the run prints), the median step after the
first ``--warmup`` steps and the windows/s it implies, the first steps' time, the process's
wall time from start to exit, and the epoch's train loss / val MAE. Efficiency of a
2-worker case is its windows/s over twice the 1-thread local rate (the same arithmetic on
each core); ``local1x2`` (two 1-thread local processes at once, each on half the batch)
gives the same arithmetic without Ray or DDP, so that replicate2 / local1x2 is what Ray and
DDP cost and local1x2 / (2 x local1) what the two cores lose to each other. With ``--cpu``,
every process's CPU seconds during the middle of the epoch are sampled from /proc and
grouped (worker, driver, Ray helpers).

    .venv/bin/python scripts/bench_ray_overhead.py [--config configs/quickstart.yaml]
        [--cases local2 ray1 local1 local1x2 replicate2 shard2] [--repeats 2] [--batches 0]
        [--set KEY=VALUE ...] [--cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from distst.engine.timing import PHASES

#: case -> overrides (threads are per worker; every case uses 2 cores in all but local1)
CASES = {
    "local2": ["runtime.mode=local", "train.threads=2"],
    "local1": ["runtime.mode=local", "train.threads=1"],
    "ray1": ["runtime.mode=replicate", "runtime.workers=1", "runtime.cpus_per_worker=2",
             "train.threads=2"],
    "replicate2": ["runtime.mode=replicate", "runtime.workers=2", "runtime.cpus_per_worker=1",
                   "train.threads=1"],
    "shard2": ["runtime.mode=shard", "partition.parts=2", "runtime.workers=2",
               "runtime.cpus_per_worker=1", "train.threads=1"],
    # two independent 1-thread processes at once, each on half the batch: replicate2's
    # arithmetic with neither Ray nor DDP, i.e. what the two cores give when both compute
    # (shared caches and memory bandwidth)
    "local1x2": ["runtime.mode=local", "train.threads=1"],
}
#: cases that run as this many concurrent processes, each on batch_size / copies
COPIES = {"local1x2": 2}


def _cpu_by_process() -> dict[int, tuple[str, float]]:
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
        except OSError:
            continue
        out[int(pid)] = (cmd, (int(fields[11]) + int(fields[12])) / tick)
    return out


def _group(cmd: str, driver_pid: int, pid: int) -> str:
    if pid == driver_pid:
        return "driver"
    if "RayTrainWorker" in cmd:
        return "training workers"
    if "ray" in cmd or "gcs_server" in cmd or "raylet" in cmd:
        return "Ray helpers"
    return "other"


def _sample_cpu(proc: subprocess.Popen, start: float, length: float, out: dict) -> None:
    """CPU seconds per group over [start, start + length] seconds after launch."""
    time.sleep(start)
    if proc.poll() is not None:
        return
    a, t0 = _cpu_by_process(), time.monotonic()
    time.sleep(length)
    b, dt = _cpu_by_process(), time.monotonic() - t0
    groups: dict[str, float] = {}
    helpers = 0
    for pid, (cmd, cpu) in b.items():
        d = cpu - a.get(pid, (cmd, 0.0))[1]
        g = _group(cmd, proc.pid, pid)
        groups[g] = groups.get(g, 0.0) + d
        helpers += g == "Ray helpers" and d > 0.01
    out.update({g: v / dt for g, v in groups.items()}, helper_processes=helpers)


def _batch_size(args) -> int:
    from distst.config import load_config

    return load_config(args.config, list(args.set)).train.batch_size


def run_case(name: str, args, root: Path) -> dict:
    sets = [*CASES[name], "train.epochs=1", "train.step_timing=true", "train.progress=true",
            f"runtime.storage={root / 'runs'}", *args.set]
    if args.batches:
        sets.append(f"train.max_batches_per_epoch={args.batches}")
    copies = COPIES.get(name, 1)
    if copies > 1:
        sets.append(f"train.batch_size={_batch_size(args) // copies}")
    cmd = [sys.executable, "-m", "distst", "train", args.config]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.monotonic()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(copies)]
    cpu: dict = {}
    sampler = None
    if args.cpu:
        sampler = threading.Thread(target=_sample_cpu,
                                   args=(procs[0], args.cpu_start, args.cpu_len, cpu))
        sampler.start()
    texts = [p.communicate()[0] for p in procs]
    wall = time.monotonic() - t0
    if sampler:
        sampler.join()
    runs = []
    for p, text in zip(procs, texts):
        if p.returncode:
            raise SystemExit(f"case {name} failed ({p.returncode}):\n{text[-3000:]}")
        run_dir = Path(re.findall(r"run directory: (\S+)", text)[-1])
        hist = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
        steps = json.loads((run_dir / "steps" / "rank_0.json").read_text())["steps"]
        times = [sum(r[phase] for phase in PHASES) for r in steps]
        runs.append((hist, times))
    w = args.warmup
    hist, times = runs[0]
    med = statistics.mean(statistics.median(t[w:]) for _, t in runs)
    windows_per_step = hist["windows_per_s"] * hist["train_time_s"] / len(times) * copies
    return {"case": name, "windows_per_s": sum(h["windows_per_s"] for h, _ in runs),
            "train_time_s": hist["train_time_s"], "steps": len(times),
            "first_steps_s": sum(times[:w]), "median_step_s": med,
            "steady_windows_per_s": windows_per_step / med, "wall_s": wall,
            "train_loss": hist["train_loss"], "val_mae": hist["val_mae"],
            **({"cpu": cpu} if cpu else {})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--cases", nargs="*", default=["local2", "ray1", "local1", "local1x2", "replicate2", "shard2"],
                    choices=sorted(CASES))
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--batches", type=int, default=0, help="train.max_batches_per_epoch (0 = all)")
    ap.add_argument("--warmup", type=int, default=3, help="steps left out of the steady median")
    ap.add_argument("--set", nargs="*", default=[], help="extra overrides for every case")
    ap.add_argument("--cpu", action="store_true", help="sample per-process CPU in mid-epoch")
    ap.add_argument("--cpu-start", type=float, default=50.0)
    ap.add_argument("--cpu-len", type=float, default=30.0)
    ap.add_argument("--json", help="also write every result to this file")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ray-overhead-"))
    results = []
    for rep in range(args.repeats):
        for name in args.cases:
            r = run_case(name, args, root)
            r["repeat"] = rep
            results.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))

    def mean(name, key):
        vals = [r[key] for r in results if r["case"] == name]
        return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)

    base2 = mean("local2", "windows_per_s")[0] if "local2" in args.cases else None
    base1 = mean("local1", "windows_per_s")[0] if "local1" in args.cases else None
    print(f"{args.repeats} run(s) per case, 1 epoch of {args.config}"
          + (f", {args.batches} batches" if args.batches else "") + f"; steady = median step "
          f"after the first {args.warmup}")
    print("| case | windows/s (epoch) | vs local2 | 2-worker efficiency | steady windows/s | "
          f"first {args.warmup} steps s | median step s | process wall s | train loss | val MAE |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.cases:
        wps, sd = mean(name, "windows_per_s")
        rel = f"{wps / base2:.2f}" if base2 else "-"
        eff = f"{wps / (2 * base1):.2f}" if base1 and name.endswith("2") and name != "local2" else "-"
        row = [f"{wps:.1f} ± {sd:.1f}", rel, eff, f"{mean(name, 'steady_windows_per_s')[0]:.1f}",
               f"{mean(name, 'first_steps_s')[0]:.1f}", f"{mean(name, 'median_step_s')[0]:.2f}",
               f"{mean(name, 'wall_s')[0]:.0f}", f"{mean(name, 'train_loss')[0]:.4f}",
               f"{mean(name, 'val_mae')[0]:.4f}"]
        print(f"| {name} | " + " | ".join(row) + " |")
    if args.cpu:
        print("\nCPU use (cores) in mid-epoch, per group of processes:")
        for r in results:
            c = r.get("cpu", {})
            print(f"- {r['case']} (repeat {r['repeat']}): " + ", ".join(
                f"{k} {v:.2f}" if k != "helper_processes" else f"{v} helper processes busy"
                for k, v in sorted(c.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
