"""The undirected graph every partitioner works on, and the quality figures of a partition.

Partitioning is about *undirected* affinity: whether sensor ``i`` feeds ``j`` or ``j`` feeds
``i``, cutting the pair costs communication either way. :func:`distst.graph.adjacency.undirected_csr`
is therefore the one definition of "the symmetrised graph" shared by METIS, GPA, the quality
report and the Chebyshev graph models:

* self loops are dropped (they never cross a part boundary);
* duplicate ``i -> j`` entries are summed first (an edge list may repeat a row);
* the pair ``{i, j}`` gets ``max(w_ij, w_ji)`` (``how="max"``, the default: a road segment
  measured in both directions is still one segment) or ``w_ij + w_ji`` (``how="sum"``);
  a missing direction counts as 0;
* the result lists both directions (CSR rows sorted by column), so each undirected edge is
  stored twice; cut figures count it once.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

# The one definition of the symmetrised graph lives with the other graph builders; partitioners
# and models (through the engine) read the same one.
from distst.graph.adjacency import SYMMETRIZE_HOWS, check_graph, undirected_csr  # noqa: F401


def num_components(adj: sp.csr_matrix) -> int:
    return int(connected_components(adj, directed=False)[0])


def edge_cut(adj: sp.csr_matrix, assignment: np.ndarray) -> tuple[int, float]:
    """(count, weight) of undirected edges whose ends lie in different parts, each edge once."""
    coo = adj.tocoo()
    upper = coo.row < coo.col  # each undirected edge once
    cut = assignment[coo.row[upper]] != assignment[coo.col[upper]]
    return int(cut.sum()), float(coo.data[upper][cut].sum())


def partition_quality(partition, edge_index, edge_weight, halo_hops: int = 1, *,
                      symmetrize: str = "max") -> dict:
    """Quality figures of ``partition`` on the graph it was made for.

    Keys: ``method``, ``parts``, ``nodes``, ``edges`` (undirected, self loops excluded),
    ``nodes_min/max/mean`` per part, ``balance`` (largest part / mean part, 1.0 = perfect),
    ``cut_edges`` and ``cut_weight`` (undirected edges across parts, each once, weights of the
    symmetrised graph), ``cut_fraction`` (cut_edges / edges), ``halo_hops``,
    ``halo_min/max/total`` (nodes of the ``halo_hops``-hop halo of each part, as
    :func:`distst.graph.partition.halo.k_hop_halo` defines it over edges of both directions,
    as plans do), ``replication`` (sum over parts of inner + halo nodes, divided by N; 1.0 = no
    copies), ``components`` (connected components of the undirected graph),
    ``partition_seconds`` (the partitioner's wall time) and ``quality_seconds``.
    """
    from distst.graph.partition.halo import halo_adjacency, k_hop_halo  # written alongside

    t0 = time.perf_counter()
    a = partition.assignment
    n, p = partition.num_nodes, partition.num_parts
    ei, w, _ = check_graph(edge_index, edge_weight, n, origin="partition quality")
    adj = undirected_csr(ei, w, n, how=symmetrize)
    sizes = np.bincount(a, minlength=p)
    count, weight = edge_cut(adj, a)
    n_edges = adj.nnz // 2
    in_adj = halo_adjacency(ei, n)
    halos = np.array([k_hop_halo(None, n, a == k, halo_hops, in_adj=in_adj).size
                      for k in range(p)], dtype=np.int64)
    return {
        "method": partition.method,
        "parts": p,
        "nodes": n,
        "edges": int(n_edges),
        "nodes_min": int(sizes.min()),
        "nodes_max": int(sizes.max()),
        "nodes_mean": float(n / p),
        "balance": float(sizes.max() / (n / p)),
        "cut_edges": count,
        "cut_weight": weight,
        "cut_fraction": float(count / n_edges) if n_edges else 0.0,
        "halo_hops": int(halo_hops),
        "halo_min": int(halos.min()),
        "halo_max": int(halos.max()),
        "halo_total": int(halos.sum()),
        "replication": float((n + halos.sum()) / n),
        "components": num_components(adj),
        "partition_seconds": float(partition.seconds),
        "quality_seconds": time.perf_counter() - t0,
    }


def format_quality_table(q: dict) -> str:
    """A two-column markdown table of :func:`partition_quality`'s figures."""
    rows = [
        ("method", q["method"]),
        ("parts", q["parts"]),
        ("nodes / undirected edges", f"{q['nodes']} / {q['edges']}"),
        ("connected components", q["components"]),
        ("nodes per part (min / max / mean)",
         f"{q['nodes_min']} / {q['nodes_max']} / {q['nodes_mean']:.1f}"),
        ("balance (max / mean)", f"{q['balance']:.3f}"),
        ("edge cut (count)", f"{q['cut_edges']} ({100 * q['cut_fraction']:.2f}% of edges)"),
        ("edge cut (weight)", f"{q['cut_weight']:.4g}"),
        (f"halo nodes per part, {q['halo_hops']} hop(s) (min / max / total)",
         f"{q['halo_min']} / {q['halo_max']} / {q['halo_total']}"),
        ("replication factor (inner + halo) / N", f"{q['replication']:.3f}"),
        ("partition time (s)", f"{q['partition_seconds']:.3f}"),
    ]
    lines = ["| figure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)
