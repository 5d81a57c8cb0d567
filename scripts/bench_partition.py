"""Benchmark: METIS against GPA (time, edge cut, balance) on synthetic road-like and real graphs.

Synthetic graphs: ``n`` random points in the unit square, each joined to its ``k = 6`` nearest
neighbours (scipy cKDTree), made undirected (max of the two directions), weights
``exp(-(d / mean_d)^2)`` with ``mean_d`` the mean neighbour distance: planar, low degree and
locally clustered like a road sensor network, and fast to build at 1M nodes.

Real graphs: METR-LA, PEMS-BAY, PeMSD7(M), PEMS07 from ``../shared/data`` (read with
:func:`distst.data.formats.read_graph`, default options).

Both methods run with the same balance tolerance (``--ufactor``, METIS's: largest part at most
``(1 + ufactor/1000) * N / P``) and seed. Seconds are the wall time of ``partition_graph``
(symmetrisation included). Cut figures are on the max-symmetrised graph, each undirected edge
once; ``ratio`` is GPA's cut weight / METIS's cut weight (and the same for the count).

    .venv/bin/python scripts/bench_partition.py                      # everything
    .venv/bin/python scripts/bench_partition.py --sizes 1000 10000 --no-real --out bench.md
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from distst.data.formats import read_graph
from distst.graph.partition import partition_graph
from distst.graph.partition.quality import edge_cut, undirected_csr

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL = [("METR-LA", "metr-la", "metr-la"), ("PEMS-BAY", "pems-bay", "pems-bay"),
        ("PeMSD7(M)", "pemsd7", "pemsd7m"), ("PEMS07", "pems07", "pems07")]


def road_graph(n: int, seed: int = 0, k: int = 6):
    """Synthetic road-like graph: (edge_index [2, E] both directions, edge_weight [E])."""
    rng = np.random.default_rng(seed)
    pts = rng.random((n, 2))
    dist, idx = cKDTree(pts).query(pts, k=k + 1)  # [n, k+1]; column 0 is the point itself
    src = np.repeat(np.arange(n, dtype=np.int64), k)
    dst = idx[:, 1:].reshape(-1).astype(np.int64)
    d = dist[:, 1:].reshape(-1)
    w = np.exp(-(d / d.mean()) ** 2)
    coo = undirected_csr(np.stack([src, dst]), w, n).tocoo()
    return np.stack([coo.row, coo.col]).astype(np.int64), coo.data.astype(np.float32)


def run_one(name, ei, w, n, parts, args, rows):
    adj = undirected_csr(ei, w, n)
    e = adj.nnz // 2
    results = {}
    for method in ("metis", "gpa"):
        p = partition_graph(method, ei, w, n, parts, seed=args.seed, ufactor=args.ufactor)
        count, weight = edge_cut(adj, p.assignment)
        balance = p.sizes().max() / (n / parts)
        results[method] = (count, weight)
        ratio = ""
        if method == "gpa":
            mc, mw = results["metis"]
            ratio = (f"{weight / mw:.3f} (count {count / mc:.3f})" if mw > 0 and mc > 0
                     else "n/a")
        rows.append(f"| {name} | {n} | {e} | {method} | {parts} | {p.seconds:.3f} | {count} | "
                    f"{weight:.4g} | {balance:.3f} | {ratio} |")
        print(rows[-1], flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000, 100000, 1000000])
    ap.add_argument("--parts", type=int, nargs="*", default=[8],
                    help="parts for the synthetic graphs")
    ap.add_argument("--real-parts", type=int, nargs="*", default=[2, 8],
                    help="parts for the real graphs (207-883 nodes)")
    ap.add_argument("--no-real", action="store_true", help="skip the real graphs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ufactor", type=int, default=30)
    ap.add_argument("--out", type=Path, help="append the table to this file")
    args = ap.parse_args(argv)

    header = ["| graph | N | E (undirected) | method | P | seconds | cut count | cut weight | "
              "balance | GPA/METIS cut |", "|---|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(header), flush=True)
    rows: list[str] = []
    for n in args.sizes:
        t0 = time.perf_counter()
        ei, w = road_graph(n, seed=args.seed)
        print(f"<!-- road-{n}: generated in {time.perf_counter() - t0:.1f} s -->", flush=True)
        for parts in args.parts:
            run_one(f"road-{n}", ei, w, n, parts, args, rows)
    if not args.no_real:
        for name, fmt, folder in REAL:
            g = read_graph(fmt, DATA / folder)
            for parts in args.real_parts:
                run_one(name, g.edge_index, g.edge_weight, g.num_nodes, parts, args, rows)
    if args.out:
        machine = (f"{platform.machine()}, {platform.processor() or 'cpu'}, "
                   f"python {sys.version.split()[0]}")
        with open(args.out, "a") as f:
            f.write(f"\n## bench_partition ({time.strftime('%Y-%m-%d %H:%M')}, {machine}, "
                    f"seed {args.seed}, ufactor {args.ufactor})\n\n")
            f.write("\n".join(header + rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
