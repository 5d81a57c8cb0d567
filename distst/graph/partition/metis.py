"""METIS k-way partitioning through pymetis (Karypis & Kumar, SIAM J. Sci. Comput. 1998).

Input preparation, so that the result depends only on the graph and the options:

* the graph is made undirected by :func:`~distst.graph.partition.quality.undirected_csr`
  (self loops dropped, pair weight ``max(w_ij, w_ji)`` by default, ``symmetrize="sum"`` adds
  the two directions);
* METIS wants positive integer edge weights, so weights are scaled as
  ``max(1, round(w / max_w * weight_scale))`` with ``weight_scale=1000`` by default: three
  significant digits of relative weight, and an edge of (near-)zero weight still counts 1
  (METIS rejects 0). A graph whose weights are all 0 is treated as unweighted;
* balance: ``ufactor`` is METIS's load imbalance in thousandths, the largest part may hold up
  to ``(1 + ufactor/1000) * N / P`` nodes (METIS's k-way default is 30, i.e. 3%);
* ``seed`` is METIS's random seed; the same graph, options and seed give the same partition.
"""

from __future__ import annotations

import time

import numpy as np

from distst.errors import DiststError
from distst.graph.partition.base import Partition
from distst.graph.partition.quality import undirected_csr

DEFAULT_UFACTOR = 30
DEFAULT_WEIGHT_SCALE = 1000


def integer_weights(data: np.ndarray, weight_scale: int = DEFAULT_WEIGHT_SCALE) -> np.ndarray:
    """``max(1, round(w / max_w * weight_scale))`` as int64 (all ones if every weight is 0)."""
    if data.size == 0 or data.max() <= 0:
        return np.ones(data.size, dtype=np.int64)
    scaled = np.rint(data / data.max() * weight_scale).astype(np.int64)
    return np.maximum(scaled, 1)


def metis_partition(edge_index, edge_weight, num_nodes: int, num_parts: int, *, seed: int = 0,
                    ufactor: int = DEFAULT_UFACTOR, symmetrize: str = "max",
                    weight_scale: int = DEFAULT_WEIGHT_SCALE, recursive: bool = False,
                    niter: int = 10) -> Partition:
    """Partition into ``num_parts`` parts with METIS (k-way, or recursive bisection).

    ``niter`` is the number of METIS refinement iterations per uncoarsening level (its
    default is 10). Arguments are validated by :func:`distst.graph.partition.partition_graph`.
    """
    import pymetis  # imported here so that the rest of distst.graph works without it

    for name, value, low in (("ufactor", ufactor, 1), ("weight_scale", weight_scale, 1),
                             ("niter", niter, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise DiststError(f"metis: option {name}={value!r} must be an integer >= {low}")
    params = {"seed": int(seed), "ufactor": int(ufactor), "symmetrize": symmetrize,
              "weight_scale": int(weight_scale), "recursive": bool(recursive),
              "niter": int(niter)}
    t0 = time.perf_counter()
    adj = undirected_csr(edge_index, edge_weight, num_nodes, how=symmetrize)
    if num_parts == 1:
        assignment = np.zeros(num_nodes, dtype=np.int64)
    else:
        eweights = integer_weights(adj.data, weight_scale)
        # pymetis >= 2025.2 takes a CSRAdjacency; the xadj=/adjncy= keywords are deprecated.
        graph = pymetis.CSRAdjacency(adj_starts=adj.indptr.astype(np.int64),
                                     adjacent=adj.indices.astype(np.int64))
        options = pymetis.Options(seed=int(seed), ufactor=int(ufactor), niter=int(niter))
        _, parts = pymetis.part_graph(int(num_parts), adjacency=graph, eweights=eweights,
                                      recursive=bool(recursive), options=options)
        assignment = np.asarray(parts, dtype=np.int64)
    return Partition(assignment=assignment, num_parts=int(num_parts), method="metis",
                     params=params, seconds=time.perf_counter() - t0)
