#!/usr/bin/env python
"""What an idle Ray costs a process that computes beside it (issue 16 point 4).

``bench_ray_overhead.py`` finds a Ray Train worker's steps 14-17% slower than ``--local``'s
with the same threads. This script separates the causes. A plain process (no Ray in it)
times training steps of the quickstart's model (GCGRU K=3 x 32 at N = 1,026, batch 32,
forward + backward + Adam, ``--threads`` threads) while beside it runs, per background:

- ``none``: nothing;
- ``ray``: an idle local Ray, started as distst starts one (``start_local``: GCS, raylet,
  dashboard and its agents);
- ``ray+actors``: the same plus ``--actors`` idle zero-CPU actors (a Ray Train run on one
  worker has 6 beside its worker: Train's controller, placement-group cleaner,
  synchronization actor, autoscaling coordinator and dataset manager, and distst's
  progress board);
- ``noise``: no Ray, ``--noise`` processes that each wake every 10 ms and spin for 50 us
  (a tenth of a core together, what Ray's helpers were measured to use);
- ``actor``: the same steps inside a Ray actor, in its main thread and in a thread of it
  (Ray Train runs the training function in a thread), ``--repeats`` fresh actors each.

It also counts the wake-ups (context switches) per second of every process but the timed
one over 5 s, from /proc. Each figure is the median step of 8 after 2 untimed; a
background's figure is the mean over ``--repeats`` timed processes.

    .venv/bin/python scripts/bench_ray_helpers.py [--threads 2] [--repeats 3] [--actors 6]
        [--noise 20] [--backgrounds none ray ray+actors noise actor]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKGROUNDS = ("none", "ray", "ray+actors", "noise", "actor")


def steps(threads: int, n_steps: int = 8, warmup: int = 2, batch: int = 32) -> float:
    """Median seconds of a training step of the quickstart's model in this thread."""
    import torch

    sys.path.insert(0, str(ROOT / "scripts"))  # in a Ray actor too
    from bench_models import build

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, n = build("gcgru", 1026, {"K": 3, "hidden_size": 32, "num_layers": 1})
    x, y = torch.randn(batch, 12, n, 3), torch.randn(batch, 12, n, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for i in range(warmup + n_steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        (model(x) - y).abs().mean().backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timed_child(threads: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--child", "--threads", str(threads)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def wakeups_per_s(seconds: float = 5.0) -> float:
    """Context switches per second of every thread on the machine but this process's."""
    def snap() -> dict:
        out = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if int(pid) == os.getpid():
                continue
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/status") as f:
                        out[tid] = sum(int(line.split()[1]) for line in f
                                       if "ctxt_switches" in line)
                except OSError:
                    pass
        return out

    a = snap()
    time.sleep(seconds)
    b = snap()
    return sum(v - a[k] for k, v in b.items() if k in a) / seconds


def noise(count: int, interval: float = 0.01, spin: float = 5e-5) -> list[subprocess.Popen]:
    code = ("import time\nwhile True:\n time.sleep(%r)\n t = time.perf_counter()\n"
            " while time.perf_counter() - t < %r: pass\n" % (interval, spin))
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]


def with_ray(args, actors: int, in_actor: bool) -> dict:
    import ray

    from distst.runtime.ray_train import start_local

    start_local(num_cpus=os.cpu_count())
    try:
        @ray.remote(num_cpus=0)
        class Idle:
            def ping(self) -> int:
                return 1

        @ray.remote(num_cpus=args.threads)
        class Stepper:
            def run(self, threads: int, in_thread: bool) -> float:
                if not in_thread:
                    return steps(threads)
                out = {}
                t = threading.Thread(target=lambda: out.setdefault("s", steps(threads)))
                t.start()
                t.join()
                return out["s"]

        idle = [Idle.remote() for _ in range(actors)]
        ray.get([a.ping.remote() for a in idle])
        time.sleep(3)  # let start-up settle
        res: dict = {"wakeups_per_s": round(wakeups_per_s())}
        if not in_actor:
            res["step_s"] = [timed_child(args.threads) for _ in range(args.repeats)]
            return res
        for where in ("main thread", "a thread"):
            res[where] = []
        for _ in range(args.repeats):
            for where in ("main thread", "a thread"):
                a = Stepper.remote()
                res[where].append(ray.get(a.run.remote(args.threads, where == "a thread")))
                ray.kill(a)
        return res
    finally:
        ray.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--actors", type=int, default=6)
    ap.add_argument("--noise", type=int, default=20)
    ap.add_argument("--backgrounds", nargs="+", default=list(BACKGROUNDS), choices=BACKGROUNDS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(steps(args.threads))
        return 0
    results = {}
    for bg in args.backgrounds:
        if bg == "none":
            res = {"wakeups_per_s": round(wakeups_per_s()),
                   "step_s": [timed_child(args.threads) for _ in range(args.repeats)]}
        elif bg == "noise":
            procs = noise(args.noise)
            try:
                time.sleep(1)
                res = {"wakeups_per_s": round(wakeups_per_s()),
                       "step_s": [timed_child(args.threads) for _ in range(args.repeats)]}
            finally:
                for p in procs:
                    p.kill()
        else:
            res = with_ray(args, args.actors if bg == "ray+actors" else 0, bg == "actor")
        results[bg] = res
        print(bg, json.dumps(res), flush=True)
    base = statistics.mean(results["none"]["step_s"]) if "none" in results else None
    print(f"\n{args.threads} thread(s), {os.cpu_count()} CPUs; median step of 8 (s), mean ± sd "
          f"over {args.repeats}\n")
    print("| background | wake-ups/s (others) | step s | vs none |")
    print("|---|---:|---:|---:|")
    for bg, res in results.items():
        rows = [(bg, res["step_s"])] if "step_s" in res else [
            (f"{bg}: {where}", res[where]) for where in ("main thread", "a thread")]
        for label, vals in rows:
            mean = statistics.mean(vals)
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            rel = f"{mean / base:.2f}" if base else "-"
            print(f"| {label} | {res['wakeups_per_s']} | {mean:.3f} ± {sd:.3f} | {rel} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
