"""The undirected graph every partitioner works on, and the quality figures of a partition.

Partitioning is about *undirected* affinity: whether sensor ``i`` feeds ``j`` or ``j`` feeds
``i``, cutting the pair costs communication either way. :func:`undirected_csr` is therefore the
one definition of "the symmetrised graph" shared by METIS, GPA and the quality report:

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

from distst.errors import DiststError

SYMMETRIZE_HOWS = ("max", "sum")


def check_graph(edge_index, edge_weight, num_nodes, origin: str = "partition"):
    """Validate and return ``(edge_index int64 [2, E], edge_weight float64 [E], num_nodes)``.

    ``edge_weight=None`` means every edge has weight 1. Weights must be finite and >= 0.
    """
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, (int, np.integer)) \
            or num_nodes < 1:
        raise DiststError(f"{origin}: num_nodes={num_nodes!r} must be an integer >= 1; "
                          "pass the number of sensors of the network")
    n = int(num_nodes)
    ei = np.asarray(edge_index)
    if ei.size == 0:
        ei = ei.reshape(2, 0)
    if ei.ndim != 2 or ei.shape[0] != 2:
        raise DiststError(f"{origin}: edge_index must have shape [2, E], got {ei.shape}; "
                          "pass rows (source ids, target ids)")
    if ei.size and not np.issubdtype(ei.dtype, np.integer):
        raise DiststError(f"{origin}: edge_index must hold integer node ids, got {ei.dtype}")
    ei = ei.astype(np.int64, copy=False)
    if ei.size and (ei.min() < 0 or ei.max() >= n):
        raise DiststError(
            f"{origin}: edge_index holds node ids {int(ei.min())}..{int(ei.max())} but the "
            f"graph has num_nodes={n} (valid ids 0..{n - 1}); fix num_nodes or the edge list")
    if edge_weight is None:
        w = np.ones(ei.shape[1], dtype=np.float64)
    else:
        w = np.asarray(edge_weight, dtype=np.float64).reshape(-1)
        if w.shape[0] != ei.shape[1]:
            raise DiststError(f"{origin}: edge_weight has {w.shape[0]} entries but edge_index "
                              f"has {ei.shape[1]} edges; pass one weight per edge")
        if w.size and (not np.all(np.isfinite(w)) or w.min() < 0):
            raise DiststError(f"{origin}: edge weights must be finite and >= 0 (got min "
                              f"{np.nanmin(w) if np.isfinite(w).any() else w[0]!r}); "
                              "fix the adjacency (NaN/inf/negative entries)")
    return ei, w, n


def undirected_csr(edge_index, edge_weight, num_nodes: int, how: str = "max") -> sp.csr_matrix:
    """Symmetric CSR ``[N, N]`` float64 of the undirected graph (see the module docstring).

    Edges of weight 0 are kept as explicit entries: they still connect nodes (a halo or a
    connected-component count must see them), they just cost nothing to cut.
    """
    if how not in SYMMETRIZE_HOWS:
        raise DiststError(f"partition: unknown symmetrize {how!r}; choose one of "
                          f"{', '.join(SYMMETRIZE_HOWS)}")
    ei, w, n = check_graph(edge_index, edge_weight, num_nodes)
    keep = ei[0] != ei[1]
    A = sp.csr_matrix((w[keep], (ei[0][keep], ei[1][keep])), shape=(n, n))
    A.sum_duplicates()  # repeated rows of an edge list add up
    # Shift every stored weight by +1 so that no entry of the results below is 0: scipy's
    # sparse max / add prune zeros, and a zero-weight edge must survive. A missing direction
    # is absent (0), so max(w_ij + 1, absent) = w_ij + 1 and the shift is undone exactly.
    A.data = A.data + 1.0
    if how == "max":
        S = A.maximum(A.T.tocsr())
        S.sort_indices()
        S.data -= 1.0
    else:
        ones = A.copy()
        ones.data = np.ones_like(ones.data)
        S = A + A.T.tocsr()
        count = ones + ones.T.tocsr()  # 1 or 2 directions present; same pattern as S
        S.sort_indices()
        count.sort_indices()
        S.data -= count.data
    S.indices = S.indices.astype(np.int64, copy=False)
    S.indptr = S.indptr.astype(np.int64, copy=False)
    return S


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
