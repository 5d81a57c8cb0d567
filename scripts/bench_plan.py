#!/usr/bin/env python
"""Partition + write the plan of a large synthetic network: the issue-3 target "partitioning plus
writing the plan for a 1M-node graph in under 60 s on this machine".

Generates (or reuses, ``--data``) a synthetic network, then times ``make_plan`` end to end --
loading, partitioning, halos, whole-graph normalisation, spatial attributes, copying every
part's series -- in a fresh subprocess so that the peak RSS is the plan's own.

    .venv/bin/python scripts/bench_plan.py --nodes 1000000 --days 1 --parts 8 --halo-hops 1
        [--method metis|gpa] [--data DIR] [--workdir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 2**20


def child(args) -> int:
    from distst.graph.partition.plan import make_plan

    t0 = time.perf_counter()
    _, partition, quality = make_plan(args.data, args.plan, method=args.method,
                                      parts=args.parts, halo_hops=args.halo_hops, seed=0)
    total = time.perf_counter() - t0
    print(json.dumps({
        "total_s": total,
        "partition_s": quality.get("partition_seconds"),
        "edge_cut": quality.get("edge_cut"),
        "replication": quality.get("replication"),
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }, default=str))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1_000_000)
    ap.add_argument("--days", type=float, default=1)
    ap.add_argument("--parts", type=int, default=8)
    ap.add_argument("--halo-hops", type=int, default=1)
    ap.add_argument("--method", default="metis", choices=["metis", "gpa"])
    ap.add_argument("--data", default=None, help="an existing dataset (default: generate)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=None, help="append the markdown table to this file")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--plan", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="distst-benchplan-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        gen_s = 0.0
        data = Path(args.data) if args.data else work / "data"
        if not args.data and not data.exists():
            from distst.data.synth import generate_network

            t0 = time.perf_counter()
            generate_network(data, num_nodes=args.nodes, days=args.days)
            gen_s = time.perf_counter() - t0
        plan = work / "plan"
        cmd = [sys.executable, __file__, "--child", "--data", str(data), "--plan", str(plan),
               "--method", args.method, "--parts", str(args.parts),
               "--halo-hops", str(args.halo_hops)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise SystemExit(f"make_plan failed:\n{res.stderr[-3000:]}")
        r = json.loads(res.stdout.strip().splitlines()[-1])
        meta = json.loads((data / "meta.json").read_text())
        values_mib = (data / "values.npy").stat().st_size / MIB
        plan_mib = sum(f.stat().st_size for f in plan.rglob("*") if f.is_file()) / MIB
        n = meta["num_nodes"]
        text = "\n".join([
            "| nodes | values.npy MiB | method | parts | halo hops | partition s | plan total s "
            "| plan MiB on disk | peak RSS MiB | within 60 s |",
            "|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
            f"| {n} | {values_mib:.0f} | {args.method} | {args.parts} | {args.halo_hops} | "
            f"{float(r['partition_s'] or 0):.1f} | {r['total_s']:.1f} | {plan_mib:.0f} | "
            f"{r['peak_mib']:.0f} | {'yes' if r['total_s'] < 60 else 'NO'} |",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{sys.version.split()[0]}; dataset generated in {gen_s:.1f} s (not counted).",
        ]) + "\n"
        print(text)
        if args.out:
            with open(args.out, "a") as f:
                f.write(text + "\n")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
