#!/usr/bin/env python
"""The fixed cost of one Ray Train run: a tiny run (20 sensors, 1 epoch of a few batches,
2 workers in shard mode) trained again and again on one local Ray, with the CPU seconds of
every process it starts, grouped by what the process is.

A tiny run trains for well under a second; everything else is the cost of a run as such:
the processes Ray Train starts for it (controller, workers, placement-group cleaner,
synchronisation actor, Ray Data's dataset manager unless distst drops it) and what each
imports, distst's progress board, the driver's preflight. This is what every Ray test and
every sweep trial pays, so it sizes the test suite (issue 29) and a sweep's overhead.

``--variants`` compares distst's run (``distst``) with the same run keeping Ray Data's
DatasetManager actor (``ray-default``), interleaved in one Ray so that drift hits both.

    .venv/bin/python scripts/bench_ray_fit.py [--repeats 5] [--variants distst ray-default]
        [--workers 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")


def _group(cmdline: str) -> str:
    """What a process is, from its command line (Ray renames its workers ``ray::Class``)."""
    m = re.match(r"ray::(\w+)", cmdline)
    if m:
        return m.group(1)
    if "raylet" in cmdline or "gcs_server" in cmdline:
        return "raylet+gcs"
    if "dashboard" in cmdline:
        return "dashboard"
    return "other"


class CpuSampler:
    """CPU seconds per process over a window, from /proc every 0.1 s (a process that exits
    between samples loses at most its last 0.1 s)."""

    def __init__(self):
        import psutil

        self._psutil = psutil
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for p in self._psutil.process_iter(["pid", "cmdline", "cpu_times"]):
            ct = p.info["cpu_times"]
            if ct is None:
                continue
            used = ct.user + ct.system
            self.first.setdefault(p.pid, used)
            cmd = " ".join(p.info["cmdline"] or [])
            # a Ray worker starts as default_worker.py, idles as ray::IDLE and takes its
            # actor's name later: keep the most telling name seen
            seen = self.last.get(p.pid, ("", 0.0))[0]
            if seen.startswith("ray::") and not seen.startswith("ray::IDLE") and (
                    not cmd.startswith("ray::") or cmd.startswith("ray::IDLE")):
                cmd = seen
            self.last[p.pid] = (cmd, used)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._sample()

    def __enter__(self):
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    def by_group(self, me: int) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for pid, (cmd, used) in self.last.items():
            # a process that existed before the window only counts what it used during it
            group = "driver" if pid == me else _group(cmd)
            out[group] += used - self.first.get(pid, used)
        return dict(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--variants", nargs="*", default=["distst", "ray-default"],
                    choices=["distst", "ray-default"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", help="also write every run's figures to this file")
    args = ap.parse_args()

    import ray

    from distst.config import load_config
    from distst.runtime import ray_train

    own_callbacks = ray_train._Trainer._create_default_callbacks
    ray_default = ray_train.TorchTrainer._create_default_callbacks
    temp = tempfile.mkdtemp(prefix="bench-fit-", dir="/tmp")
    ray_train.start_local(2, log_to_driver=False, _temp_dir=f"{temp}/ray")
    tmp = Path(temp)
    base = [f"data.cache_dir={tmp / 'cache'}", "data.synth.nodes=20", "data.synth.days=4",
            "model.name=gcgru", "model.params={K: 2, hidden_size: 8, num_layers: 1}",
            "runtime.mode=shard", f"partition.parts={args.workers}", "partition.halo_hops=1",
            "train.epochs=1", "train.batch_size=16", "train.max_batches_per_epoch=4",
            "train.max_val_batches=1", "train.threads=1", "train.progress=false",
            "runtime.cpus_per_worker=0.9"]
    # the dataset and plan are made once, before anything is timed
    ray_train.train_ray(load_config(None, base + [f"runtime.storage={tmp / 'warm'}"]))
    rows = []
    try:
        for i in range(args.repeats):
            for variant in args.variants:
                ray_train._Trainer._create_default_callbacks = (
                    own_callbacks if variant == "distst" else ray_default)
                cfg = load_config(None, base + [f"runtime.storage={tmp / f'{variant}-{i}'}"])
                with CpuSampler() as cpu:
                    t0 = time.perf_counter()
                    ray_train.train_ray(cfg)
                    wall = time.perf_counter() - t0
                    time.sleep(1.0)  # the run's processes exit after train_ray returns
                groups = cpu.by_group(os.getpid())
                rows.append({"variant": variant, "repeat": i, "wall_s": wall,
                             "cpu_s": sum(groups.values()), "cpu_by_process": groups})
                print(f"{variant:12s} #{i}: {wall:5.1f} s wall, {sum(groups.values()):5.1f} "
                      f"CPU-s", flush=True)
    finally:
        ray_train._Trainer._create_default_callbacks = own_callbacks
        ray.shutdown()

    print("\n| variant | runs | wall s (median, min-max) | CPU-s (median) | CPU-s by process "
          "(median) |\n|---|---:|---|---:|---|")
    for variant in args.variants:
        mine = [r for r in rows if r["variant"] == variant]
        walls = [r["wall_s"] for r in mine]
        groups = sorted({g for r in mine for g in r["cpu_by_process"]})
        by = {g: statistics.median(r["cpu_by_process"].get(g, 0.0) for r in mine) for g in groups}
        shown = ", ".join(f"{g} {v:.1f}" for g, v in sorted(by.items(), key=lambda kv: -kv[1])
                          if v >= 0.1)
        print(f"| {variant} | {len(mine)} | {statistics.median(walls):.1f} ({min(walls):.1f}-"
              f"{max(walls):.1f}) | {statistics.median(r['cpu_s'] for r in mine):.1f} | "
              f"{shown} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
