#!/usr/bin/env python
"""Peak memory per worker, ``shard`` (one part of a plan) against ``replicate`` (whole dataset).

Each measurement is a fresh subprocess that imports distst, opens either one part of a plan
(``open_part``: its dataset is memory-mapped) or the whole dataset (``load_network``), fits the
scaler on the training steps and makes one pass of ``WindowDataset`` batches over the training
windows and ALL the nodes it holds (a part's inner + halo nodes: a shard model reads the halo
as input); then, with ``--model-steps S > 0`` (default 3), builds the model exactly as a worker
does (GCGRU on the local graph; a shard's whole-graph-normalised weights) and runs S Adam
training steps with the loss on the inner nodes. Reported: the peak RSS of that process
(``ru_maxrss``, file-backed memmap pages included) and the "worker peak" = peak minus the RSS
right after the imports and a warm-up step of a 10-node model (python, numpy, torch and its
kernel libraries: the same in both modes), which is what partitioning can shrink.

Target (issue 3): a worker's data peak <= (1/P + its halo share) x the replicate data peak,
plus 10 % (the factor 1.10 below), where halo share = halo nodes of the part / N.

    .venv/bin/python scripts/bench_shard_memory.py [--nodes 100000 --days 7 --parts 1 2 4]
        [--halo-hops 1 --method metis --batch-size 8] [--data DIR] [--out FILE]
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


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _warm_up(args) -> None:
    """One training step of a 10-node GCGRU, so that torch's per-process fixed costs (kernel
    libraries, thread pools, allocator arenas: several hundred MiB, the same whatever the graph
    size) are in the baseline and the peak above it is what the graph's size drives."""
    import torch

    from distst.nn.registry import build_model

    torch.set_num_threads(1)
    ei = torch.tensor([[i for i in range(9)], [i + 1 for i in range(9)]])
    m = build_model("gcgru", {"num_nodes": 10, "input_dim": 3, "output_dim": 1,
                              "input_len": args.input_len, "horizon": args.horizon,
                              "edge_index": ei, "edge_weight": torch.ones(9)},
                    {"K": args.K, "hidden_size": args.hidden, "num_layers": 1})
    opt = torch.optim.Adam(m.parameters())
    m(torch.randn(args.batch_size, args.input_len, 10, 3)).abs().mean().backward()
    opt.step()


def worker(args) -> int:
    """One measurement in this (fresh) process; prints one JSON line."""
    from distst.data.network import load_network
    from distst.data.scaler import StandardScaler
    from distst.data.windows import WindowDataset, iterate_batches, make_splits, train_end_step
    from distst.graph.partition.plan import open_part

    if args.model_steps:
        _warm_up(args)
    base = rss_bytes()
    t0 = time.perf_counter()
    if args.worker == "replicate":
        net = load_network(args.path)
        n_inner = net.num_nodes
    else:
        part = open_part(args.path, args.part)
        net, n_inner = part.network, part.num_inner
    li, h = args.input_len, args.horizon
    splits = make_splits(net.num_steps, li, h)
    # chunk_steps=0: the library default (a fixed ~4M-element float64 chunk, whatever N is)
    scaler = StandardScaler().fit(net.values, train_end_step(splits, li),
                                  chunk_steps=args.scaler_chunk_steps or None)
    ds = WindowDataset(net.values, net.timestamps, splits["train"], input_len=li, horizon=h,
                       scaler=scaler)
    batches = 0
    for _x, _y in iterate_batches(ds, args.batch_size, shuffle=True, seed=0):
        batches += 1
        if args.max_batches and batches >= args.max_batches:
            break
    del _x, _y
    if args.model_steps:
        import numpy as np
        import torch

        from distst.nn.registry import build_model

        torch.manual_seed(0)
        torch.set_num_threads(1)
        ew = net.edge_weight if args.worker == "replicate" else part.edge_weight_sym
        model = build_model("gcgru", {
            "num_nodes": net.num_nodes, "input_dim": ds.input_dim, "output_dim": 1,
            "input_len": li, "horizon": h,
            "edge_index": torch.as_tensor(np.asarray(net.edge_index)),
            "edge_weight": torch.as_tensor(np.asarray(ew, dtype=np.float32))},
            {"K": args.K, "hidden_size": args.hidden, "num_layers": 1,
             "normalization": "sym" if args.worker == "replicate" else "none"})
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for step, (x, y) in enumerate(iterate_batches(ds, args.batch_size, shuffle=True,
                                                      seed=1)):
            if step >= args.model_steps:
                break
            x = torch.nan_to_num(torch.as_tensor(x))
            y = torch.as_tensor(y)[..., :1]
            pred = model(x)
            inner = (slice(None), slice(None), slice(0, n_inner))  # loss on owned nodes only
            err = (pred[inner] - y[inner]).abs()
            loss = torch.nan_to_num(err, nan=0.0).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        del model, opt
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"base": base, "peak": peak, "nodes": net.num_nodes, "inner": n_inner,
                      "batches": batches, "seconds": time.perf_counter() - t0}))
    return 0


def measure(mode: str, path: Path, part: int, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--path", str(path), "--part", str(part),
           "--input-len", str(args.input_len), "--horizon", str(args.horizon),
           "--batch-size", str(args.batch_size), "--max-batches", str(args.max_batches),
           "--scaler-chunk-steps", str(args.scaler_chunk_steps),
           "--model-steps", str(args.model_steps), "--hidden", str(args.hidden),
           "--K", str(args.K)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"worker {mode} part {part} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=100_000)
    ap.add_argument("--days", type=float, default=7)
    ap.add_argument("--parts", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--halo-hops", type=int, default=1)
    ap.add_argument("--method", default="metis")
    ap.add_argument("--input-len", type=int, default=12)
    ap.add_argument("--horizon", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-batches", type=int, default=0, help="0 = a full pass")
    ap.add_argument("--scaler-chunk-steps", type=int, default=0,
                    help="time steps per scaler-fit chunk (0 = library default: ~4M values "
                         "per chunk, a fixed cost per worker whatever its node count)")
    ap.add_argument("--model-steps", type=int, default=3,
                    help="GCGRU training steps after the data pass (0 = data side only)")
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--K", type=int, default=2)
    ap.add_argument("--data", default=None, help="an existing dataset dir (default: generate)")
    ap.add_argument("--workdir", default=None, help="where data and plans go (default: temp)")
    ap.add_argument("--out", default=None, help="append the markdown table to this file")
    # internal: one measurement
    ap.add_argument("--worker", choices=["replicate", "shard"], default=None,
                    help=argparse.SUPPRESS)
    ap.add_argument("--path", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--part", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)

    from distst.data.synth import generate_network
    from distst.graph.partition.plan import make_plan

    work = Path(args.workdir or tempfile.mkdtemp(prefix="distst-shardmem-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.data:
            data = Path(args.data)
            gen_s = 0.0
        else:
            data = work / "data"
            t0 = time.perf_counter()
            generate_network(data, num_nodes=args.nodes, days=args.days)
            gen_s = time.perf_counter() - t0
        rep = measure("replicate", data, 0, args)
        r_data = rep["peak"] - rep["base"]
        n = rep["nodes"]
        rows = []
        for p in args.parts:
            t0 = time.perf_counter()
            plan, _, quality = make_plan(data, work / f"plan_{p}", method=args.method, parts=p,
                                         halo_hops=args.halo_hops, seed=0)
            plan_s = time.perf_counter() - t0
            for i in range(p):
                m = measure("shard", plan, i, args)
                halo_share = (m["nodes"] - m["inner"]) / n
                target = (1 / p + halo_share) * r_data * 1.10
                rows.append((p, i, plan_s, quality, m, halo_share, target))
        values_mib = (data / "values.npy").stat().st_size / MIB
        lines = [
            f"### Shard vs replicate worker memory: N={n}, {args.days:g} days, values.npy "
            f"{values_mib:.0f} MiB, {args.method}, halo {args.halo_hops} hop(s), batch "
            f"{args.batch_size}, {args.input_len}+{args.horizon} steps, scaler chunk "
            f"{args.scaler_chunk_steps or 'default'} steps, one pass over "
            f"{rep['batches']} train batches"
            + (f", then {args.model_steps} GCGRU (K={args.K}, hidden {args.hidden}) training "
               "steps" if args.model_steps else ", no model"),
            "",
            f"Machine: {platform.machine()} {os.cpu_count()} CPUs, Python "
            f"{sys.version.split()[0]}; dataset generated in {gen_s:.1f} s. Data peak = peak "
            "RSS - RSS after imports; target = (1/P + halo share) x replicate peak x 1.10.",
            "",
            "| mode | P | part | plan s | local nodes (inner + halo) | halo share | peak RSS MiB "
            "| worker peak MiB | target MiB | worker peak / replicate | within target |",
            "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
            f"| replicate | - | - | - | {n} | 0 | {rep['peak'] / MIB:.0f} | {r_data / MIB:.0f} "
            f"| - | 1.00 | - |",
        ]
        for p, i, plan_s, _q, m, hs, target in rows:
            d = m["peak"] - m["base"]
            lines.append(
                f"| shard | {p} | {i} | {plan_s:.1f} | {m['nodes']} ({m['inner']} + "
                f"{m['nodes'] - m['inner']}) | {hs:.3f} | {m['peak'] / MIB:.0f} | {d / MIB:.0f} "
                f"| {target / MIB:.0f} | {d / r_data:.2f} | {'yes' if d <= target else 'NO'} |"
            )
        text = "\n".join(lines) + "\n"
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
