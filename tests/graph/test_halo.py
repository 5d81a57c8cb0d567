"""k-hop halos on hand-checkable graphs (exact sets), against a BFS reference on random graphs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import shortest_path

from distst.errors import DiststError
from distst.graph.partition.halo import incoming_adjacency, k_hop_halo


def sym(pairs):
    """Edge list [2, E] listing each undirected pair in both directions."""
    a = np.array(pairs, dtype=np.int64).T
    return np.concatenate([a, a[::-1]], axis=1)


def directed(pairs):
    return np.array(pairs, dtype=np.int64).T


PATH5 = sym([(0, 1), (1, 2), (2, 3), (3, 4)])  # 0 - 1 - 2 - 3 - 4
STAR5 = sym([(0, 1), (0, 2), (0, 3), (0, 4)])  # centre 0, leaves 1..4
CHAIN4 = directed([(0, 1), (1, 2), (2, 3)])  # 0 -> 1 -> 2 -> 3
TWO = sym([(0, 1), (1, 2), (3, 4)])  # path 0-1-2 and edge 3-4

CASES = [
    # graph, n, inner, {hops: expected halo}
    ("path end", PATH5, 5, [0], {0: [], 1: [1], 2: [1, 2], 3: [1, 2, 3]}),
    ("path middle", PATH5, 5, [2], {0: [], 1: [1, 3], 2: [0, 1, 3, 4], 3: [0, 1, 3, 4]}),
    ("path two ends", PATH5, 5, [0, 4], {0: [], 1: [1, 3], 2: [1, 2, 3], 3: [1, 2, 3]}),
    ("star leaf", STAR5, 5, [1], {0: [], 1: [0], 2: [0, 2, 3, 4], 3: [0, 2, 3, 4]}),
    ("star centre", STAR5, 5, [0], {0: [], 1: [1, 2, 3, 4], 2: [1, 2, 3, 4], 3: [1, 2, 3, 4]}),
    # incoming paths only: node 2 reads from 1 (1 hop) and 0 (2 hops), never from 3
    ("chain middle", CHAIN4, 4, [2], {0: [], 1: [1], 2: [0, 1], 3: [0, 1]}),
    ("chain head", CHAIN4, 4, [0], {0: [], 1: [], 2: [], 3: []}),
    ("chain tail", CHAIN4, 4, [3], {0: [], 1: [2], 2: [1, 2], 3: [0, 1, 2]}),
    ("two components", TWO, 5, [0, 3], {0: [], 1: [1, 4], 2: [1, 2, 4], 3: [1, 2, 4]}),
    ("component 2 only", TWO, 5, [4], {0: [], 1: [3], 2: [3], 3: [3]}),
]


@pytest.mark.parametrize("name,ei,n,inner,expected", CASES, ids=[c[0] for c in CASES])
def test_exact_halos(name, ei, n, inner, expected):
    for hops, want in expected.items():
        got = k_hop_halo(ei, n, np.array(inner), hops)
        assert got.dtype == np.int64
        assert got.tolist() == want, (name, hops)


def test_mask_input_prebuilt_adjacency_duplicates_and_self_loops():
    # duplicate edge and self loops must not change anything
    ei = np.concatenate([CHAIN4, directed([(1, 2), (2, 2), (3, 3)])], axis=1)
    adj = incoming_adjacency(ei, 4)
    mask = np.array([False, False, False, True])
    assert k_hop_halo(None, 4, mask, 2, in_adj=adj).tolist() == [1, 2]
    assert k_hop_halo(ei, 4, [3, 3], 2).tolist() == [1, 2]
    assert k_hop_halo(ei, 4, np.array([], dtype=np.int64), 3).tolist() == []
    # the whole graph inner: nothing left for a halo
    assert k_hop_halo(ei, 4, np.arange(4), 3).tolist() == []


def test_matches_bfs_reference_on_random_graphs():
    rng = np.random.default_rng(0)
    for trial in range(5):
        n = 40
        e = 90
        ei = rng.integers(0, n, size=(2, e))
        # dist[j, i] = length of the shortest directed path j -> i
        a = sp.csr_matrix((np.ones(e), (ei[0], ei[1])), shape=(n, n))
        dist = shortest_path(a, unweighted=True, directed=True)
        inner = rng.choice(n, size=7, replace=False)
        reach = dist[:, inner].min(axis=1)  # hops from j into the inner set
        for hops in range(5):
            want = np.flatnonzero(reach <= hops)
            want = np.setdiff1d(want, inner)
            assert k_hop_halo(ei, n, inner, hops).tolist() == want.tolist(), (trial, hops)
        # symmetric graph: the halo is the undirected k-hop ball minus the inner set
        sym_ei = np.concatenate([ei, ei[::-1]], axis=1)
        und = shortest_path(a, unweighted=True, directed=False)[:, inner].min(axis=1)
        want = np.setdiff1d(np.flatnonzero(und <= 2), inner)
        assert k_hop_halo(sym_ei, n, inner, 2).tolist() == want.tolist()


@pytest.mark.parametrize("hops,match", [(-1, r"hops=-1.*>= 0"), (1.5, r"hops=1\.5.*integer"),
                                        ("2", r"hops='2'.*integer")])
def test_bad_hops(hops, match):
    with pytest.raises(DiststError, match=match):
        k_hop_halo(PATH5, 5, [0], hops)


def test_bad_inner_and_edges():
    with pytest.raises(DiststError, match=r"inner node ids span 0\.\.7.*valid ids 0\.\.4"):
        k_hop_halo(PATH5, 5, [0, 7], 1)
    with pytest.raises(DiststError, match="length num_nodes=5"):
        k_hop_halo(PATH5, 5, np.array([True, False]), 1)
    with pytest.raises(DiststError, match=r"\[2, E\]"):
        k_hop_halo(PATH5.T, 5, [0], 1)
    with pytest.raises(DiststError, match="num_nodes=3"):
        k_hop_halo(PATH5, 3, [0], 1)


def test_plan_halos_follow_edges_of_both_directions():
    # chain 0 -> 1 -> 2 -> 3; part {1}: incoming halo {0}, both-direction halo {0, 2}
    from distst.graph.partition.halo import halo_adjacency

    mask = np.array([False, True, False, False])
    assert k_hop_halo(CHAIN4, 4, mask, 1).tolist() == [0]
    both = halo_adjacency(CHAIN4, 4)
    assert k_hop_halo(None, 4, mask, 1, in_adj=both).tolist() == [0, 2]
    assert k_hop_halo(None, 4, mask, 2, in_adj=both).tolist() == [0, 2, 3]
