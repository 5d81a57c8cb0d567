"""Kernels, matrix-kind detection, edge conversions and validation of distst.graph.adjacency."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from distst.errors import DiststError
from distst.graph.adjacency import (
    adjacency_from_edges,
    adjacency_from_matrix,
    dense_to_edges,
    detect_matrix_kind,
    edges_to_dense,
    gaussian_kernel,
    symmetrize,
    validate_matrix,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"  # ../shared beside the repo
INF = np.inf

# 3 nodes; 1 and 2 have no road between them.
D3 = np.array([[0.0, 2.0, 4.0], [2.0, 0.0, INF], [4.0, INF, 0.0]])
# In metres, as STGCN's PeMSD7 W.
M3 = np.array([[0.0, 1000.0, 2000.0], [1000.0, 0.0, 3000.0], [2000.0, 3000.0, 0.0]])


def test_dcrnn_kernel_hand_values_given_sigma():
    w = gaussian_kernel(D3, convention="dcrnn", sigma=2.0)
    e1 = math.exp(-1.0)  # exp(-(2/2)^2); exp(-(4/2)^2) = 0.018 < 0.1 -> 0
    expect = np.array([[1.0, e1, 0.0], [e1, 1.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(w, expect, rtol=1e-12)
    w0 = gaussian_kernel(D3, convention="dcrnn", sigma=2.0, threshold=0.0)
    assert w0[0, 2] == pytest.approx(math.exp(-4.0))
    assert w0[1, 2] == 0.0  # inf distance -> no edge, whatever the threshold


def test_dcrnn_default_sigma_is_std_of_finite_distances():
    # finite entries: 0,2,4,2,0,4,0 -> mean 12/7, E[x^2] = 40/7, std = sqrt(136)/7
    sigma = math.sqrt(136.0) / 7.0
    w, params = gaussian_kernel(D3, convention="dcrnn", return_params=True)
    assert params["sigma"] == pytest.approx(sigma)
    assert params["threshold"] == 0.1 and params["zero_diagonal"] is False
    assert w[0, 1] == pytest.approx(math.exp(-196.0 / 136.0))  # (2 / sigma)^2 = 196/136
    assert w[0, 2] == 0.0  # exp(-784/136) = 0.003 < 0.1
    assert np.all(np.diag(w) == 1.0)


def test_stgcn_kernel_hand_values_and_zero_diagonal():
    w, params = gaussian_kernel(M3, convention="stgcn", return_params=True)
    a, b = math.exp(-0.1), math.exp(-0.4)  # (1000/1e4)^2/0.1, (2000/1e4)^2/0.1
    # exp(-0.9) = 0.407 < 0.5 -> 0; the diagonal is zeroed (W * (1 - I))
    expect = np.array([[0.0, a, b], [a, 0.0, 0.0], [b, 0.0, 0.0]])
    np.testing.assert_allclose(w, expect, rtol=1e-12)
    assert params == {"convention": "stgcn", "scale": 10000.0, "sigma2": 0.1,
                      "threshold": 0.5, "zero_diagonal": True}
    w2 = gaussian_kernel(M3, convention="stgcn", scale=1000.0, sigma2=1.0, threshold=0.0)
    assert w2[1, 2] == pytest.approx(math.exp(-9.0))


def test_kernel_rejects_bad_convention_and_zero_sigma():
    with pytest.raises(DiststError, match="dcrnn, stgcn"):
        gaussian_kernel(D3, convention="gauss")
    with pytest.raises(DiststError, match="sigma="):
        gaussian_kernel(np.array([5.0, 5.0]), convention="dcrnn")


def test_detect_matrix_kind_rule():
    assert detect_matrix_kind(np.array([[0, 1], [1, 0]]))[0] == "binary"
    assert detect_matrix_kind(np.array([[1, 0.3], [0.3, 1]]))[0] == "weight"
    assert detect_matrix_kind(np.array([[0, 1.5], [1.5, 0]]))[0] == "distance"
    # inf or NaN never decides the kind: the finite entries do
    assert detect_matrix_kind(np.array([[0, INF], [0.2, 0]]))[0] == "weight"
    assert detect_matrix_kind(np.array([[0, np.nan], [1, 0]]))[0] == "binary"


@pytest.mark.parametrize("bad", [INF, np.nan, -INF])
def test_one_non_finite_cell_in_a_weight_matrix_is_refused_not_read_as_distances(bad):
    """Before issue 30 a single inf made "auto" read a weight matrix as distances and the
    kernel turned it into another graph (40,789 edges instead of 2,626 on a real one)."""
    rng = np.random.default_rng(0)
    W = np.where(rng.random((30, 30)) < 0.1, rng.uniform(0.1, 1.0, (30, 30)), 0.0)
    W[7, 12] = bad
    with pytest.raises(DiststError, match=r"m\.csv: 1 (non-finite|negative) entr.*row 8, "
                                          r"column 13, counted from 1"):
        adjacency_from_matrix(W, origin="m.csv")
    with pytest.raises(DiststError, match="row 8, column 13"):
        adjacency_from_matrix(W, matrix_kind="weight", origin="m.csv")


def test_a_distance_matrix_marks_pairs_without_a_road_with_inf_or_empty_cells():
    D = np.array([[0.0, 300.0, INF], [300.0, 0.0, np.nan], [INF, 500.0, 0.0]])
    ei, ew, info = adjacency_from_matrix(D, sigma=400.0)
    assert info["matrix_kind"] == "distance"
    pairs = {(int(a), int(b)) for a, b in ei.T}
    assert pairs == {(0, 1), (1, 0), (2, 1)}  # no edge where the distance is missing


@pytest.mark.parametrize("bad", [INF, np.nan])
def test_an_edge_list_value_that_is_not_finite_is_refused_naming_its_row(bad):
    with pytest.raises(DiststError, match=r"e\.csv: 1 edge\(s\) with a non-finite value, "
                                          r"the first in data row 3 \(edge 2 -> 0"):
        adjacency_from_edges([0, 1, 2], [1, 2, 0], [0.5, 0.7, bad], 3, value_kind="weight",
                             origin="e.csv")
    with pytest.raises(DiststError, match="data row 3"):
        adjacency_from_edges([0, 1, 2], [1, 2, 0], [100.0, 200.0, bad], 3, origin="e.csv")


def test_adjacency_from_matrix_kinds():
    B = np.array([[0, 1, 0], [1, 0, 1], [0, 0, 0]], dtype=float)
    ei, ew, info = adjacency_from_matrix(B)
    assert info["matrix_kind"] == "binary" and info["matrix_kind_rule"].startswith("auto")
    np.testing.assert_array_equal(ei, [[0, 1, 1], [1, 0, 2]])
    np.testing.assert_array_equal(ew, [1, 1, 1])
    assert ei.dtype == np.int64 and ew.dtype == np.float32

    Wt = np.array([[1.0, 0.25, 0.0], [0.5, 1.0, 0.0], [0.0, 0.75, 1.0]])
    ei, ew, info = adjacency_from_matrix(Wt)
    assert info["matrix_kind"] == "weight" and "kernel" not in info
    np.testing.assert_array_equal(ei, [[0, 1, 2], [1, 0, 1]])
    np.testing.assert_allclose(ew, [0.25, 0.5, 0.75])
    ei, ew, _ = adjacency_from_matrix(Wt, self_loops=True)
    assert ei.shape[1] == 6

    ei, ew, info = adjacency_from_matrix(D3, convention="dcrnn", sigma=2.0)
    assert info["matrix_kind"] == "distance" and info["kernel"]["sigma"] == 2.0
    np.testing.assert_array_equal(ei, [[0, 1], [1, 0]])
    np.testing.assert_allclose(ew, [math.exp(-1.0)] * 2, rtol=1e-6)

    # forcing 'distance' on a matrix that auto would call weights
    _, _, info = adjacency_from_matrix(Wt, matrix_kind="distance", sigma=1.0)
    assert info["matrix_kind"] == "distance" and info["matrix_kind_rule"] == "given"
    with pytest.raises(DiststError, match="matrix_kind='binary'"):
        adjacency_from_matrix(Wt, matrix_kind="binary")
    with pytest.raises(DiststError, match="auto, distance, weight, binary"):
        adjacency_from_matrix(Wt, matrix_kind="similarity")


def test_validation_names_the_origin_and_fix():
    with pytest.raises(DiststError, match=r"W_9\.csv.*square.*\(3, 4\).*header"):
        validate_matrix(np.zeros((3, 4)), "W_9.csv")
    bad = D3.copy()
    bad[2, 0] = -1.0
    with pytest.raises(DiststError, match=r"W_9\.csv: 1 negative.*row 3, column 1, counted from 1.*>= 0"):
        adjacency_from_matrix(bad, origin="W_9.csv")


def test_dense_edges_round_trip():
    rng = np.random.default_rng(0)
    W = rng.random((7, 7)) * (rng.random((7, 7)) < 0.4)
    np.fill_diagonal(W, 0.0)
    ei, ew = dense_to_edges(W)
    assert ei.shape == (2, int((W != 0).sum()))
    np.testing.assert_allclose(edges_to_dense(ei, ew, 7), W, rtol=1e-6)
    np.fill_diagonal(W, 1.0)
    assert dense_to_edges(W)[0].shape[1] == ei.shape[1]
    assert dense_to_edges(W, self_loops=True)[0].shape[1] == ei.shape[1] + 7


def test_symmetrize_max_and_sum():
    ei = np.array([[0, 1, 1, 2], [1, 0, 2, 2]])
    ew = np.array([0.5, 0.25, 0.75, 1.0])
    s_ei, s_ew = symmetrize(ei, ew, "max", 3)
    dense = edges_to_dense(s_ei, s_ew, 3)
    np.testing.assert_allclose(dense, [[0, 0.5, 0], [0.5, 0, 0.75], [0, 0.75, 1.0]])
    s_ei, s_ew = symmetrize(ei, ew, "sum", 3)
    dense = edges_to_dense(s_ei, s_ew, 3)
    np.testing.assert_allclose(dense, [[0, 0.75, 0], [0.75, 0, 0.75], [0, 0.75, 1.0]])
    with pytest.raises(DiststError, match="max, sum"):
        symmetrize(ei, ew, "min", 3)


def test_edge_list_kernel_matches_dense_kernel():
    # edge list of the finite entries of D3 -> same weights as the dense matrix
    rows, cols = np.nonzero(np.isfinite(D3))
    ei, ew, info = adjacency_from_edges(rows, cols, D3[rows, cols], 3, value_kind="distance")
    dense_ei, dense_ew, _ = adjacency_from_matrix(D3, matrix_kind="distance")
    np.testing.assert_array_equal(ei, dense_ei)
    np.testing.assert_allclose(ew, dense_ew)
    assert info["kernel"]["sigma"] == pytest.approx(math.sqrt(136.0) / 7.0)
    assert info["self_loops_dropped"] == 3


def test_edge_list_duplicates_and_bad_rows():
    ei, ew, info = adjacency_from_edges([0, 0, 1], [1, 1, 2], [1, 1, 1], 3, value_kind="binary")
    assert info["duplicate_rows_merged"] == 1 and ei.shape[1] == 2
    with pytest.raises(DiststError, match=r"0 -> 1 is listed more than once"):
        adjacency_from_edges([0, 0], [1, 1], [0.5, 0.7], 3, origin="e.csv")
    with pytest.raises(DiststError, match=r"e\.csv: edge 0 -> 5 refers to a node outside 0\.\.2"):
        adjacency_from_edges([0], [5], [1.0], 3, origin="e.csv")
    with pytest.raises(DiststError, match=r"e\.csv: negative value -2"):
        adjacency_from_edges([0], [1], [-2.0], 3, origin="e.csv")
    ei, ew, _ = adjacency_from_edges([0, 1], [1, 2], [0.5, 0.7], 3, symmetric="max")
    assert ei.shape[1] == 4


def test_stgcn_on_real_pemsd7_distances():
    W = np.loadtxt(DATA / "pemsd7m" / "PeMSD7_W_228.csv", delimiter=",")
    w = gaussian_kernel(W, convention="stgcn")
    assert w.shape == (228, 228)
    np.testing.assert_array_equal(w, w.T)
    nz = w[w > 0]
    assert nz.min() > 0.5 and nz.max() <= 1.0
    assert np.all(np.diag(w) == 0)
    ei, ew, info = adjacency_from_matrix(W, convention="stgcn")
    assert info["matrix_kind"] == "distance" and ei.shape[1] == int((w > 0).sum()) == 1664
