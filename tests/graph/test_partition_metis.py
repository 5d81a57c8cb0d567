"""METIS through pymetis, and the shared entry point partition_graph (errors, notes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from distst.data.formats import read_graph
from distst.errors import DiststError
from distst.graph.partition import PARTITIONERS, partition_graph, undirected_csr
from distst.graph.partition.metis import integer_weights
from distst.graph.partition.quality import edge_cut

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def road_graph(n: int, seed: int = 0, k: int = 6):
    """Random points in the unit square, k nearest neighbours, both directions, Gaussian weights."""
    rng = np.random.default_rng(seed)
    pts = rng.random((n, 2))
    dist, idx = cKDTree(pts).query(pts, k=k + 1)
    src = np.repeat(np.arange(n), k)
    dst = idx[:, 1:].ravel()
    w = np.exp(-(dist[:, 1:].ravel() / dist[:, 1:].mean()) ** 2)
    # Mutual neighbours would appear twice; the max-symmetrised CSR lists each direction once.
    coo = undirected_csr(np.stack([src, dst]), w, n).tocoo()
    return np.stack([coo.row, coo.col]).astype(np.int64), coo.data


def cut_weight(ei, w, n, assignment):
    return edge_cut(undirected_csr(ei, w, n), assignment)[1]


def test_metis_is_deterministic_balanced_and_beats_random():
    n, parts = 1200, 4
    ei, w = road_graph(n)
    a = partition_graph("metis", ei, w, n, parts, seed=3)
    b = partition_graph("metis", ei, w, n, parts, seed=3)
    np.testing.assert_array_equal(a.assignment, b.assignment)
    assert a.method == "metis" and a.params["seed"] == 3 and a.params["ufactor"] == 30
    assert a.assignment.shape == (n,) and set(np.unique(a.assignment)) == set(range(parts))
    sizes = a.sizes()
    assert sizes.sum() == n and sizes.max() <= np.ceil(1.03 * n / parts)
    random = np.random.default_rng(0).integers(0, parts, n)
    assert cut_weight(ei, w, n, a.assignment) < 0.2 * cut_weight(ei, w, n, random)
    assert a.seconds > 0 and a.notes == []


def test_metis_tighter_ufactor_and_other_seed():
    n = 1000
    ei, w = road_graph(n, seed=1)
    tight = partition_graph("metis", ei, w, n, 3, ufactor=1)
    assert tight.sizes().max() <= np.ceil(1.001 * n / 3) + 1
    other = partition_graph("metis", ei, w, n, 3, seed=11)
    assert other.params["seed"] == 11 and other.sizes().sum() == n


def test_direction_and_duplicates_do_not_matter_with_max_symmetrisation():
    n = 400
    ei, w = road_graph(n, seed=2)
    up = ei[0] < ei[1]  # each undirected edge once, as i -> j with i < j
    one_way = partition_graph("metis", ei[:, up], w[up], n, 4)
    # Both directions, the reverse one lighter, plus a few repeated rows of weight 0.
    lighter = np.where(up, w, 0.5 * w)
    both = partition_graph("metis", np.hstack([ei, ei[:, :10]]), np.r_[lighter, 0 * w[:10]],
                           n, 4)
    np.testing.assert_array_equal(one_way.assignment, both.assignment)


def test_integer_weight_scaling():
    np.testing.assert_array_equal(integer_weights(np.array([0.0, 1e-6, 0.25, 2.0])),
                                  [1, 1, 125, 1000])
    np.testing.assert_array_equal(integer_weights(np.zeros(3)), [1, 1, 1])
    np.testing.assert_array_equal(integer_weights(np.array([0.5, 1.0]), 10), [5, 10])


def test_one_part_and_all_parts():
    ei, w = road_graph(30)
    one = partition_graph("metis", ei, w, 30, 1)
    assert one.num_parts == 1 and not one.assignment.any()
    # METIS does not promise one node per part when P == N; the result is still valid and
    # the notes say which parts came out empty.
    each = partition_graph("metis", ei, w, 30, 30)
    assert each.assignment.min() >= 0 and each.assignment.max() < 30
    empty = int((each.sizes() == 0).sum())
    assert (empty == 0) == (not any("empty" in note for note in each.notes))
    assert any(f"{empty} part(s) are empty" in note for note in each.notes) or empty == 0


def test_disconnected_graph_is_partitioned_with_a_note():
    ei, w = road_graph(200, seed=4)
    ei2 = np.hstack([ei, ei + 200])  # two copies side by side, plus 5 isolated nodes
    w2 = np.r_[w, w]
    for method in PARTITIONERS:
        p = partition_graph(method, ei2, w2, 405, 4)
        assert any("7 connected components" in note for note in p.notes)
        assert p.sizes().sum() == 405 and p.sizes().max() <= np.ceil(1.03 * 405 / 4)


@pytest.mark.parametrize("parts, match", [(0, "num_parts=0"), (-2, "num_parts=-2"),
                                          (31, "num_parts=31 is invalid for a graph of 30")])
def test_bad_part_counts(parts, match):
    ei, w = road_graph(30)
    for method in PARTITIONERS:
        with pytest.raises(DiststError, match=match):
            partition_graph(method, ei, w, 30, parts)


def test_bad_method_options_and_edges():
    ei, w = road_graph(30)
    with pytest.raises(DiststError, match="unknown method 'kmeans'; choose one of metis, gpa"):
        partition_graph("kmeans", ei, w, 30, 2)
    with pytest.raises(DiststError, match="unknown option.*imbalance.*valid options are ufactor"):
        partition_graph("metis", ei, w, 30, 2, imbalance=0.1)
    with pytest.raises(DiststError, match="valid ids 0..19"):
        partition_graph("metis", ei, w, 20, 2)
    with pytest.raises(DiststError, match="one weight per edge"):
        partition_graph("metis", ei, w[:-1], 30, 2)
    with pytest.raises(DiststError, match="finite and >= 0"):
        partition_graph("metis", ei, -w, 30, 2)
    with pytest.raises(DiststError, match="ufactor=0"):
        partition_graph("metis", ei, w, 30, 2, ufactor=0)
    with pytest.raises(DiststError, match="unknown symmetrize 'min'"):
        partition_graph("metis", ei, w, 30, 2, symmetrize="min")


def test_metis_on_metr_la():
    g = read_graph("metr-la", DATA / "metr-la")
    p = partition_graph("metis", g.edge_index, g.edge_weight, g.num_nodes, 4)
    assert p.sizes().sum() == 207 and p.sizes().max() <= np.ceil(1.03 * 207 / 4)
    random = np.random.default_rng(0).integers(0, 4, 207)
    assert cut_weight(g.edge_index, g.edge_weight, 207, p.assignment) < \
        0.5 * cut_weight(g.edge_index, g.edge_weight, 207, random)
