"""GPA (ST-UNet Algorithm 1): matching validity and quality, coarsening, hierarchy, partitioner."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from scipy.spatial import cKDTree

from distst.errors import DiststError
from distst.graph.partition import (balance_cap, gpa_hierarchy, matching, partition_graph,
                                    undirected_csr)
from distst.graph.partition.quality import edge_cut


def road_graph(n: int, seed: int = 0, k: int = 6):
    """Random points in the unit square, k nearest neighbours, both directions, Gaussian weights."""
    rng = np.random.default_rng(seed)
    pts = rng.random((n, 2))
    dist, idx = cKDTree(pts).query(pts, k=k + 1)
    src = np.repeat(np.arange(n), k)
    w = np.exp(-(dist[:, 1:].ravel() / dist[:, 1:].mean()) ** 2)
    coo = undirected_csr(np.stack([src, idx[:, 1:].ravel()]), w, n).tocoo()
    return np.stack([coo.row, coo.col]).astype(np.int64), coo.data


def grid_graph(rows: int, cols: int):
    g = nx.convert_node_labels_to_integers(nx.grid_2d_graph(rows, cols))
    return np.array(list(g.edges), dtype=np.int64).T, rows * cols


def edges(pairs_weights):
    ei = np.array([[a for a, _, _ in pairs_weights], [b for _, b, _ in pairs_weights]])
    return ei, np.array([w for _, _, w in pairs_weights], dtype=np.float64)


def test_dp_on_a_path_beats_greedy():
    # Path growing from 0 follows 0-1 (2), 1-2 (3), 2-3 (2); greedy would take 1-2 (3), the
    # path DP takes 0-1 + 2-3 (4).
    ei, w = edges([(0, 1, 2.0), (1, 2, 3.0), (2, 3, 2.0)])
    np.testing.assert_array_equal(matching(ei, w, 4), [[0, 1], [2, 3]])


def test_path_that_closes_into_an_even_cycle_uses_the_closing_edge():
    # Path 0-1-2-3 (3, 5, 3) closes by 3-0 (2): path DP gives 6, closing edge + 1-2 gives 7.
    ei, w = edges([(0, 1, 3.0), (1, 2, 5.0), (2, 3, 3.0), (3, 0, 2.0)])
    np.testing.assert_array_equal(matching(ei, w, 4), [[0, 3], [1, 2]])


def test_matching_is_valid_maximal_and_near_optimal_on_random_graphs():
    rng = np.random.default_rng(0)
    ratios = []
    for trial in range(40):
        n = int(rng.integers(8, 80))
        g = nx.gnp_random_graph(n, float(rng.uniform(0.04, 0.3)), seed=trial)
        for u, v in g.edges:
            g[u][v]["weight"] = float(rng.integers(1, 100))
        if g.number_of_edges() == 0:
            continue
        ei = np.array(list(g.edges), dtype=np.int64).T
        w = np.array([g[u][v]["weight"] for u, v in g.edges])
        m = matching(ei, w, n)
        ends = m.ravel()
        assert len(set(ends.tolist())) == ends.size  # no two matched edges share an endpoint
        assert all(g.has_edge(u, v) for u, v in m.tolist())
        free = np.ones(n, dtype=bool)
        free[ends] = False
        assert not any(free[u] and free[v] for u, v in g.edges)  # maximal
        got = sum(g[u][v]["weight"] for u, v in m.tolist())
        best = sum(g[u][v]["weight"] for u, v in nx.max_weight_matching(g))
        ratios.append(got / best)
    ratios = np.array(ratios)
    print(f"GPA / exact max weight matching: min {ratios.min():.3f} mean {ratios.mean():.3f}")
    assert ratios.min() >= 0.5  # the guarantee of PGA'
    assert ratios.mean() >= 0.85  # typical: about 0.94 on these graphs


def test_coarse_weights_on_a_hand_checked_graph():
    # Path growing from 0: 0-1 (5), 1-2 (1), 2-3 (5), 3-4 (1.5); DP takes 0-1 and 2-3 (10).
    # Super-nodes {0,1}, {2,3}, {4}; {0,1}-{2,3} = 1 + 2 + 0.5; {2,3}-{4} = 1.5; {0,1}-{4} = 0.25.
    ei, w = edges([(0, 1, 5.0), (1, 2, 1.0), (2, 3, 5.0), (0, 3, 2.0), (0, 2, 0.5),
                   (3, 4, 1.5), (1, 4, 0.25)])
    h = gpa_hierarchy(ei, w, 5, 2)
    np.testing.assert_array_equal(h.levels[0], [0, 0, 1, 1, 2])
    cei, cw, cn = h.graphs[0]
    assert cn == 3
    weights = {(int(a), int(b)): float(x) for a, b, x in zip(cei[0], cei[1], cw)}
    assert weights == {(0, 1): 3.5, (1, 0): 3.5, (1, 2): 1.5, (2, 1): 1.5,
                       (0, 2): 0.25, (2, 0): 0.25}
    np.testing.assert_array_equal(h.sizes[0], [2, 2, 1])
    # Level 2: path 0-1 (3.5), 1-2 (1.5) -> {0,1}; the 2-0 closing edge (0.25) loses.
    np.testing.assert_array_equal(h.levels[1], [0, 0, 0, 0, 1])
    cei2, cw2, _ = h.graphs[1]
    assert cei2.tolist() == [[0, 1], [1, 0]] and cw2.tolist() == [1.75, 1.75]


def test_hierarchy_halves_a_grid_and_nests():
    ei, n = grid_graph(30, 30)
    h = gpa_hierarchy(ei, None, n, 5)
    counts = [n] + [len(s) for s in h.sizes]
    assert counts == [900, 450, 225, 113, 57, 29]  # N' ~ N / 2^p (ST-UNet Eq. 4)
    for lvl, (assign, size) in enumerate(zip(h.levels, h.sizes)):
        assert assign.shape == (n,) and assign.dtype == np.int64
        np.testing.assert_array_equal(np.bincount(assign), size)  # every super-node non-empty
        assert h.graphs[lvl][2] == len(size)
        if lvl:  # each level-(l-1) super-node lies inside exactly one level-l super-node
            prev = h.levels[lvl - 1]
            assert all(len(set(assign[prev == s])) == 1 for s in range(len(h.sizes[lvl - 1])))


def test_hierarchy_shrinks_a_road_graph_by_about_half():
    ei, w = road_graph(1500)
    h = gpa_hierarchy(ei, w, 1500, 4)
    counts = [1500] + [len(s) for s in h.sizes]
    ratios = np.array(counts[1:]) / np.array(counts[:-1])
    assert np.all((ratios >= 0.5) & (ratios <= 0.62)), counts
    assert gpa_hierarchy(ei, w, 1500, 0).num_levels == 0
    with pytest.raises(DiststError, match="levels=-1"):
        gpa_hierarchy(ei, w, 1500, -1)


def test_graph_without_edges_keeps_its_nodes():
    h = gpa_hierarchy(np.zeros((2, 0), dtype=np.int64), None, 4, 2)
    np.testing.assert_array_equal(h.levels[1], [0, 1, 2, 3])
    assert matching(np.zeros((2, 0), dtype=np.int64), None, 4).shape == (0, 2)
    p = partition_graph("gpa", np.zeros((2, 0), dtype=np.int64), None, 10, 3)
    assert sorted(p.sizes().tolist()) == [3, 3, 4]
    assert any("10 connected components" in note for note in p.notes)


def test_gpa_partition_is_balanced_deterministic_and_close_to_metis():
    n, parts = 2000, 4
    ei, w = road_graph(n, seed=5)
    a = partition_graph("gpa", ei, w, n, parts)
    b = partition_graph("gpa", ei, w, n, parts)
    np.testing.assert_array_equal(a.assignment, b.assignment)
    assert a.method == "gpa" and a.params["ufactor"] == 30
    sizes = a.sizes()
    assert sizes.sum() == n and sizes.min() > 0 and sizes.max() <= balance_cap(n, parts)
    adj = undirected_csr(ei, w, n)
    cut = edge_cut(adj, a.assignment)[1]
    metis = edge_cut(adj, partition_graph("metis", ei, w, n, parts).assignment)[1]
    random = edge_cut(adj, np.random.default_rng(0).integers(0, parts, n))[1]
    assert cut < 0.1 * random
    assert cut <= 1.3 * metis, (cut, metis)


def test_gpa_partition_disconnected_one_part_and_every_node_its_own_part():
    ei, w = road_graph(300, seed=6)
    ei2 = np.hstack([ei, ei + 300])  # two copies side by side, plus 3 isolated nodes
    g = nx.Graph(ei2.T.tolist())
    g.add_nodes_from(range(603))
    components = nx.number_connected_components(g)
    assert components >= 5
    p = partition_graph("gpa", ei2, np.r_[w, w], 603, 5)
    assert any(f"graph has {components} connected components" in note for note in p.notes)
    assert p.sizes().max() <= balance_cap(603, 5) and p.sizes().min() > 0
    assert not partition_graph("gpa", ei, w, 300, 1).assignment.any()
    small, _ = grid_graph(3, 4)
    each = partition_graph("gpa", small, None, 12, 12)
    assert sorted(each.assignment.tolist()) == list(range(12))
    with pytest.raises(DiststError, match="unknown rating"):
        partition_graph("gpa", ei, w, 300, 2, rating="fancy")
