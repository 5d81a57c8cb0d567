"""Graph partitioning: METIS and GPA behind one entry point, plus quality figures.

``partition_graph("metis" | "gpa", edge_index, edge_weight, num_nodes, num_parts, seed=...)``
returns a :class:`~distst.graph.partition.base.Partition`; ``partition_quality`` measures it.
Only numpy / scipy / pymetis are used here (no torch), so planning runs anywhere.
"""

from __future__ import annotations

import inspect
import time

from distst.errors import DiststError
from distst.graph.partition.base import Partition
from distst.graph.partition.gpa import (DEFAULT_UFACTOR, Coarsening, balance_cap, contract,
                                        gpa_hierarchy, gpa_partition, matching)
from distst.graph.partition.metis import metis_partition
from distst.graph.partition.quality import (check_graph, format_quality_table, num_components,
                                            partition_quality, undirected_csr)

PARTITIONERS = {"metis": metis_partition, "gpa": gpa_partition}

__all__ = ["PARTITIONERS", "Coarsening", "Partition", "contract", "format_quality_table",
           "gpa_hierarchy", "gpa_partition", "matching", "metis_partition", "partition_graph",
           "partition_quality", "undirected_csr", "balance_cap"]


def _options_of(fn) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY]


def partition_graph(method: str, edge_index, edge_weight, num_nodes: int, num_parts: int, *,
                    seed: int = 0, **options) -> Partition:
    """Split the ``num_nodes`` nodes into ``num_parts`` parts with ``method``.

    The graph may be directed (it is symmetrised, see
    :func:`~distst.graph.partition.quality.undirected_csr`) and disconnected (it is still
    partitioned, and ``notes`` says how many connected components it has).
    ``options`` are the method's keyword options (see :func:`metis_partition`,
    :func:`gpa_partition`); ``seed`` makes the result reproducible.
    """
    if method not in PARTITIONERS:
        raise DiststError(f"partition: unknown method {method!r}; choose one of "
                          f"{', '.join(PARTITIONERS)}")
    fn = PARTITIONERS[method]
    valid = [o for o in _options_of(fn) if o != "seed"]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise DiststError(f"partition ({method}): unknown option(s) {', '.join(unknown)}; "
                          f"valid options are {', '.join(valid)}")
    t0 = time.perf_counter()
    ei, w, n = check_graph(edge_index, edge_weight, num_nodes, origin=f"partition ({method})")
    if isinstance(num_parts, bool) or not isinstance(num_parts, int) and \
            not hasattr(num_parts, "__index__"):
        raise DiststError(f"partition: num_parts={num_parts!r} must be an integer between 1 "
                          f"and the number of nodes ({n})")
    num_parts = int(num_parts)
    if num_parts < 1 or num_parts > n:
        raise DiststError(
            f"partition ({method}): num_parts={num_parts} is invalid for a graph of {n} nodes; "
            f"choose between 1 and {n} parts (e.g. --parts 2)")
    components = num_components(undirected_csr(ei, w, n, how=options.get("symmetrize", "max")))
    result = fn(ei, w, n, num_parts, seed=seed, **options)
    notes = []
    if components > 1:
        notes.append(f"graph has {components} connected components; parts may hold pieces "
                     "of several components")
    notes += [n for n in result.notes if n not in notes]
    sizes = result.sizes()
    cap = balance_cap(n, num_parts, options.get("ufactor", DEFAULT_UFACTOR))
    if (sizes == 0).any() and not any("empty" in note for note in notes):
        notes.append(f"{method}: {int((sizes == 0).sum())} part(s) are empty")
    if sizes.max() > cap and not any("balance cap" in note for note in notes):
        notes.append(f"{method}: largest part has {int(sizes.max())} nodes, above the balance "
                     f"cap {cap} (ufactor={options.get('ufactor', DEFAULT_UFACTOR)})")
    result.notes = notes
    result.seconds = time.perf_counter() - t0
    return result
