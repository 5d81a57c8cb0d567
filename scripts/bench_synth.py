"""Benchmark of the synthetic network generator: generation time, peak memory, size on disk.

Each size runs in a fresh Python subprocess, so the peak resident set size
(``ru_maxrss``) of one size does not carry over to the next. The peak after imports is
reported as well, which separates the interpreter and library baseline from what the
generator itself needs.

    python scripts/bench_synth.py                          # 1k, 10k, 100k nodes x 28 days
    python scripts/bench_synth.py --nodes 1000 10000 --days 14 --out results.md
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def _child(args) -> None:
    """Generate one dataset and print its timings and memory as one JSON line."""
    import resource
    import time

    from distst.data.synth import generate_network

    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    t0 = time.perf_counter()
    out = generate_network(
        args.child_out, num_nodes=args.child_nodes, days=args.days, seed=args.seed,
        graph=args.graph, chunk_steps=args.chunk_steps,
    )
    secs = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    meta = json.loads((Path(out) / "meta.json").read_text())
    print(json.dumps({
        "seconds": secs, "peak_kb": peak_kb, "base_kb": base_kb,
        "steps": meta["num_steps"], "edges": meta["num_edges"],
    }))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nodes", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--days", type=float, default=28)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--graph", choices=["knn", "delaunay"], default="knn")
    p.add_argument("--chunk-steps", type=int, default=None, help="default: automatic")
    p.add_argument("--workdir", default=None, help="dataset folder (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the generated datasets")
    p.add_argument("--out", default=None, help="append the markdown table to this file")
    p.add_argument("--child-nodes", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_nodes is not None:
        _child(args)
        return

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_synth-"))
    work.mkdir(parents=True, exist_ok=True)
    header = (
        f"Synthetic generator ({args.graph}, {args.days:g} days of 5-min steps, seed {args.seed}); "
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}\n\n"
        "| nodes | steps | edges | seconds | peak RSS MiB | after-import RSS MiB "
        "| values.npy MiB | dataset MiB |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    print(header, flush=True)
    rows = []
    try:
        for n in args.nodes:
            out = work / f"synth-{n}"
            cmd = [sys.executable, __file__, "--child-nodes", str(n), "--child-out", str(out),
                   "--days", str(args.days), "--seed", str(args.seed), "--graph", args.graph]
            if args.chunk_steps:
                cmd += ["--chunk-steps", str(args.chunk_steps)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                sys.stderr.write(res.stderr)
                raise SystemExit(
                    f"bench_synth: generation of {n} nodes failed (exit {res.returncode})"
                )
            r = json.loads(res.stdout.strip().splitlines()[-1])
            disk = sum(f.stat().st_size for f in out.iterdir())
            vals = (out / "values.npy").stat().st_size
            row = (
                f"| {n} | {r['steps']} | {r['edges']} | {r['seconds']:.1f} | "
                f"{r['peak_kb'] / 1024:.0f} | {r['base_kb'] / 1024:.0f} | "
                f"{vals / 2**20:.0f} | {disk / 2**20:.0f} |"
            )
            print(row, flush=True)
            rows.append(row)
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(header + "\n" + "\n".join(rows) + "\n\n")


if __name__ == "__main__":
    main()
