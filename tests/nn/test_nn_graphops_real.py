"""No normalisation may silently zero an edge or cut a node off from its neighbours (issue 10).

Checked on every real graph in ../shared/data (the PEMS03/07/08 edge lists and the METR-LA /
PEMS-BAY pickles are directed) and on a hand-made directed graph, for the operators as the
engine builds them: the Chebyshev Laplacian on the symmetrised graph (GCGRU, STGCN, ST-UNet,
HyperST-GCGRU; "sym" and "rw", both symmetrisation rules) and DCRNN's forward / backward random
walks on the graph as given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from distst.data.formats import read_graph
from distst.errors import DiststError
from distst.graph.adjacency import (is_symmetric, laplacian_lambda_max, symmetrize,
                                    symmetrize_notice)
from distst.nn.gcgru import GCGRU
from distst.nn.layers.graph import resolve_lambda_max
from distst.nn.layers.graph import cheb_operator_coo, random_walk_operator_coo

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
REAL = [("pems03", "pems03"), ("pems07", "pems07"), ("pems08", "pems08"),
        ("metr-la", "metr-la"), ("pems-bay", "pems-bay"), ("pemsd7", "pemsd7m"),
        ("los-loop", "los-loop")]


def _hand_made():
    """0 -> 1 -> 2 -> 3 chain plus 4 -> 1 and a reciprocal pair 2 <-> 5 of unequal weights:
    nodes 0 and 4 have no in-edges, node 3 no out-edge."""
    ei = np.array([[0, 1, 2, 4, 2, 5], [1, 2, 3, 1, 5, 2]])
    ew = np.array([0.5, 1.0, 0.8, 0.3, 0.9, 0.4], dtype=np.float32)
    return ei, ew, 6


def _graphs():
    out = [pytest.param(*_hand_made(), id="hand-made")]
    for fmt, folder in REAL:
        out.append(pytest.param(fmt, folder, None, id=fmt))
    return out


def _load(a, b, c):
    if c is not None:
        return a, b, c
    path = DATA / b
    if not path.exists():
        pytest.fail(f"real graph files missing: {path} (../shared/data ships them)")
    g = read_graph(a, path)
    return np.asarray(g.edge_index), np.asarray(g.edge_weight), len(g.node_ids)


def _neighbours(ei: np.ndarray, ew: np.ndarray, n: int) -> np.ndarray:
    """Nodes with at least one edge of positive weight to another node, either direction."""
    off = (ei[0] != ei[1]) & (ew > 0)
    has = np.zeros(n, dtype=bool)
    has[ei[0][off]] = True
    has[ei[1][off]] = True
    return has


def _dense(op: torch.Tensor) -> np.ndarray:
    return op.to_dense().double().numpy()


@pytest.mark.parametrize("a, b, c", _graphs())
@pytest.mark.parametrize("how", ["max", "sum"])
@pytest.mark.parametrize("normalization", ["sym", "rw"])
def test_chebyshev_operator_keeps_every_edge_and_neighbour(a, b, c, how, normalization):
    ei, ew, n = _load(a, b, c)
    sei, sew = symmetrize(ei, ew, how, n)
    assert is_symmetric(sei, sew, n)
    op = _dense(cheb_operator_coo(torch.as_tensor(sei), torch.as_tensor(sew), n,
                                  normalization))
    off = (ei[0] != ei[1]) & (ew > 0)
    src, dst = ei[0][off], ei[1][off]
    # row = target, column = source: the edge feeds its target, and (undirected) its source
    assert np.all(op[dst, src] != 0), "an edge lost its weight in the normalisation"
    assert np.all(op[src, dst] != 0)
    offdiag = op.copy()
    np.fill_diagonal(offdiag, 0.0)
    has = _neighbours(ei, ew, n)
    starved = np.flatnonzero(has & ~(offdiag != 0).any(axis=1))
    assert starved.size == 0, f"nodes {starved[:10]} have neighbours but no neighbour input"


@pytest.mark.parametrize("a, b, c", _graphs())
def test_diffusion_operators_keep_every_edge_and_neighbour(a, b, c):
    ei, ew, n = _load(a, b, c)
    fwd = _dense(random_walk_operator_coo(torch.as_tensor(ei), torch.as_tensor(ew), n,
                                          "forward"))
    bwd = _dense(random_walk_operator_coo(torch.as_tensor(ei), torch.as_tensor(ew), n,
                                          "backward"))
    off = (ei[0] != ei[1]) & (ew > 0)
    src, dst = ei[0][off], ei[1][off]
    assert np.all(fwd[src, dst] != 0) and np.all(bwd[dst, src] != 0)
    both = fwd + bwd
    np.fill_diagonal(both, 0.0)
    has = _neighbours(ei, ew, n)
    assert not np.any(has & ~(both != 0).any(axis=1))


def test_the_directed_pems_graphs_would_lose_edges_without_symmetrising():
    """What the engine's symmetrisation prevents: on PEMS08's directed list, the 'sym'
    normalisation with out-degrees zeroes every edge into a node without out-edges."""
    ei, ew, n = _load("pems08", "pems08", None)
    assert not is_symmetric(ei, ew, n)
    op = _dense(cheb_operator_coo(torch.as_tensor(ei), torch.as_tensor(ew), n, "sym"))
    off = ei[0] != ei[1]
    assert np.any(op[ei[1][off], ei[0][off]] == 0)
    note = symmetrize_notice(ei, ew, n, "max")
    assert note is not None and "no reverse edge" in note


def test_chebyshev_models_refuse_a_directed_graph():
    ei, ew, n = _hand_made()
    with pytest.raises(DiststError, match="undirected graph.*symmetrise"):
        GCGRU(num_nodes=n, input_dim=1, output_dim=1, edge_index=torch.as_tensor(ei),
              edge_weight=torch.as_tensor(ew), hidden_size=4, num_layers=1)
    sei, sew = symmetrize(ei, ew, "max", n)
    GCGRU(num_nodes=n, input_dim=1, output_dim=1, edge_index=torch.as_tensor(sei),
          edge_weight=torch.as_tensor(sew), hidden_size=4, num_layers=1)


def test_symmetrize_rules_and_self_loops():
    ei = np.array([[0, 1, 1, 2, 0], [1, 0, 2, 2, 1]])  # the last row repeats 0 -> 1
    ew = np.array([0.5, 0.25, 0.75, 1.0, 0.1], dtype=np.float32)
    dense = {}
    for how in ("max", "sum"):
        sei, sew = symmetrize(ei, ew, how, 3)
        d = np.zeros((3, 3))
        d[sei[0], sei[1]] = sew
        dense[how] = d
    # repeated rows add up first (0 -> 1 is 0.6), self loops keep their weight
    np.testing.assert_allclose(dense["max"], [[0, 0.6, 0], [0.6, 0, 0.75], [0, 0.75, 1.0]],
                               rtol=1e-6)
    np.testing.assert_allclose(dense["sum"], [[0, 0.85, 0], [0.85, 0, 0.75], [0, 0.75, 1.0]],
                               rtol=1e-6)


def test_lambda_max_exact_matches_a_dense_eigen_solve_and_bounds():
    ei, ew, n = _load("metr-la", "metr-la", None)
    lam = laplacian_lambda_max(ei, ew, n, "max")
    sei, sew = symmetrize(ei, ew, "max", n)
    lt = cheb_operator_coo(torch.as_tensor(sei), torch.as_tensor(sew), n, "sym",
                           lambda_max=2.0).to_dense().double()
    # with lambda_max = 2, L~ = L - I, so L's top eigenvalue is L~'s plus 1
    ref = float(torch.linalg.eigvalsh(lt)[-1]) + 1.0
    assert lam == pytest.approx(ref, abs=1e-4)
    assert 1.6 < lam < 1.8  # METR-LA: 1.71 (issue 10)
    # a path graph is bipartite: exactly 2
    path = np.array([[0, 1, 2], [1, 2, 3]])
    assert laplacian_lambda_max(path, np.ones(3), 4) == pytest.approx(2.0, abs=1e-9)
    # with the exact value, L~'s spectrum fills [-1, 1] exactly at the top
    lt_exact = cheb_operator_coo(torch.as_tensor(sei), torch.as_tensor(sew), n, "sym",
                                 lambda_max=lam).to_dense().double()
    assert float(torch.linalg.eigvalsh(lt_exact)[-1]) == pytest.approx(1.0, abs=1e-4)


def test_lambda_max_choices_and_errors():
    assert resolve_lambda_max("gcgru", 2) == 2.0
    assert resolve_lambda_max("gcgru", "exact", lambda: 1.5) == 1.5
    for bad in ("auto", 0, -1.0, 2.5, True):
        with pytest.raises(DiststError, match="lambda_max"):
            resolve_lambda_max("gcgru", bad, lambda: 1.5)
    with pytest.raises(DiststError, match="engine passes"):
        resolve_lambda_max("gcgru", "exact", None)
