"""Quality figures of a partition, and the symmetrised graph they are measured on."""

from __future__ import annotations

import numpy as np
import pytest

from distst.errors import DiststError
from distst.graph.partition import (Partition, format_quality_table, partition_graph,
                                    partition_quality, undirected_csr)


def path6():
    # 0-1-2-3-4-5, both directions; the 2-3 pair has different weights per direction.
    src = [0, 1, 1, 2, 2, 3, 3, 4, 4, 5]
    dst = [1, 0, 2, 1, 3, 2, 4, 3, 5, 4]
    w = [1.0, 1.0, 1.0, 1.0, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0]
    return np.array([src, dst]), np.array(w)


def test_quality_of_a_hand_checked_split():
    ei, w = path6()
    part = Partition(np.array([0, 0, 0, 1, 1, 1]), 2, "manual", seconds=0.25)
    q = partition_quality(part, ei, w, halo_hops=1)
    assert (q["parts"], q["nodes"], q["edges"], q["components"]) == (2, 6, 5, 1)
    assert (q["nodes_min"], q["nodes_max"], q["nodes_mean"], q["balance"]) == (3, 3, 3.0, 1.0)
    assert (q["cut_edges"], q["cut_weight"]) == (1, 0.75)  # max of 0.5 and 0.75, counted once
    assert q["cut_fraction"] == pytest.approx(0.2)
    assert (q["halo_min"], q["halo_max"], q["halo_total"]) == (1, 1, 2)  # {3} and {2}
    assert q["replication"] == pytest.approx(8 / 6)
    assert q["partition_seconds"] == 0.25 and q["method"] == "manual"
    q2 = partition_quality(part, ei, w, halo_hops=2)
    assert (q2["halo_total"], q2["replication"]) == (4, pytest.approx(10 / 6))
    q0 = partition_quality(part, ei, w, halo_hops=0)
    assert (q0["halo_total"], q0["replication"]) == (0, 1.0)
    qs = partition_quality(part, ei, w, symmetrize="sum")
    assert qs["cut_weight"] == 1.25


def test_unbalanced_and_disconnected():
    ei, w = path6()
    keep = ~(((ei[0] == 2) & (ei[1] == 3)) | ((ei[0] == 3) & (ei[1] == 2)))
    part = Partition(np.array([0, 1, 1, 1, 1, 2]), 3, "manual")
    q = partition_quality(part, ei[:, keep], w[keep], halo_hops=1)
    assert q["components"] == 2 and q["edges"] == 4
    assert q["balance"] == pytest.approx(4 / 2) and q["nodes_min"] == 1
    assert (q["cut_edges"], q["cut_weight"]) == (2, 2.0)


def test_table_lists_every_figure():
    ei, w = path6()
    p = partition_graph("metis", ei, w, 6, 2)
    table = format_quality_table(partition_quality(p, ei, w))
    lines = table.splitlines()
    assert lines[0] == "| figure | value |" and len(lines) == 2 + 11
    for text in ("| method | metis |", "| parts | 2 |", "| nodes / undirected edges | 6 / 5 |",
                 "| nodes per part (min / max / mean) | 3 / 3 / 3.0 |",
                 "| balance (max / mean) | 1.000 |", "| edge cut (count) | 1 (20.00% of edges) |",
                 "halo nodes per part, 1 hop(s) (min / max / total) | 1 / 1 / 2 |",
                 "| replication factor (inner + halo) / N | 1.333 |"):
        assert text in table


def test_undirected_csr_rules():
    # duplicates add up, directions combine by max or sum, self loops go, zero weights stay
    ei = np.array([[0, 0, 1, 2, 2, 3], [1, 1, 0, 2, 3, 2]])
    w = np.array([0.25, 0.25, 0.75, 9.0, 0.0, 0.0])
    m = undirected_csr(ei, w, 4).toarray()
    np.testing.assert_array_equal(m, [[0, 0.75, 0, 0], [0.75, 0, 0, 0],
                                      [0, 0, 0, 0], [0, 0, 0, 0]])
    s = undirected_csr(ei, w, 4, how="sum")
    assert s.toarray()[0, 1] == 1.25 and s.nnz == 4  # the 2-3 edge of weight 0 is stored
    assert undirected_csr(ei, w, 4).nnz == 4
    with pytest.raises(DiststError, match="unknown symmetrize 'mean'; choose one of max, sum"):
        undirected_csr(ei, w, 4, how="mean")
    with pytest.raises(DiststError, match=r"shape \[2, E\]"):
        undirected_csr(ei.T, w, 4)
