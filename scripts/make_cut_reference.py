#!/usr/bin/env python
"""Write ``distst/scale/cut_reference.json``: how METIS cuts the real sensor graphs.

For METR-LA, PEMS-BAY, PeMSD7(M), PEMS07 and PEMS08 (the graph files in ``../shared/data``,
read with distst's own readers and default options) and each number of parts P from 2 up to
a part of about 16 sensors, with halos of 1, 2 and 3 hops: the cut fraction (undirected
edges across parts / edges), the mean halo share of a part (halo / (inner + halo)) and the
replication factor ((N + all halos) / N), from :func:`distst.graph.partition.quality`.
``distst scale`` prints these beside a study's own partitions at the same sensors per part,
so a reader sees whether a synthetic graph cuts like the real ones; the product reads the
JSON and never needs the data folder.

    .venv/bin/python scripts/make_cut_reference.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from distst.data.formats import read_graph
from distst.graph.partition import partition_graph
from distst.graph.partition.quality import partition_quality
from distst.storage import write_atomic

GRAPHS = [("METR-LA", "metr-la", "metr-la"), ("PEMS-BAY", "pems-bay", "pems-bay"),
          ("PeMSD7(M)", "pemsd7", "pemsd7m"), ("PEMS07", "pems07", "pems07"),
          ("PEMS08", "pems08", "pems08")]
OUT = Path(__file__).resolve().parents[1] / "distst" / "scale" / "cut_reference.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--hops", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--min-part", type=int, default=16, help="smallest mean part size")
    args = ap.parse_args()
    out = {"method": "metis", "seed": 0, "source": "scripts/make_cut_reference.py",
           "graphs": {}}
    for name, fmt, folder in GRAPHS:
        g = read_graph(fmt, Path(args.data) / folder)
        n = g.num_nodes
        rows = []
        for parts in range(2, n // args.min_part + 1):
            p = partition_graph("metis", g.edge_index, g.edge_weight, n, parts, seed=0)
            for hops in args.hops:
                q = partition_quality(p, g.edge_index, g.edge_weight, halo_hops=hops)
                sizes = np.bincount(p.assignment, minlength=parts)
                halos = _halo_sizes(p, g, hops)
                share = float(np.mean(halos / (sizes + halos)))
                rows.append({"parts": parts, "halo_hops": hops,
                             "nodes_per_part": n / parts,
                             "cut_fraction": round(q["cut_fraction"], 5),
                             "halo_share": round(share, 5),
                             "replication": round(q["replication"], 5)})
        out["graphs"][name] = {"nodes": n, "edges": int(q["edges"]), "rows": rows}
        print(f"{name}: {n} sensors, {len(rows)} rows", flush=True)
    write_atomic(OUT, json.dumps(out, indent=1))
    print(f"wrote {OUT}")
    return 0


def _halo_sizes(p, g, hops: int) -> np.ndarray:
    from distst.graph.partition.halo import halo_adjacency, k_hop_halo

    in_adj = halo_adjacency(g.edge_index, g.num_nodes)
    return np.array([k_hop_halo(None, g.num_nodes, p.assignment == k, hops, in_adj=in_adj).size
                     for k in range(p.num_parts)], dtype=np.float64)


if __name__ == "__main__":
    sys.exit(main())
