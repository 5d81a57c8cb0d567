"""Turn distance matrices, weight matrices and edge lists into ``edge_index`` / ``edge_weight``.

Two Gaussian-kernel conventions from the literature are implemented, both configurable:

* ``"dcrnn"`` -- Li et al., "Diffusion Convolutional Recurrent Neural Network", ICLR 2018,
  Sec. 2.3 / the released ``gen_adj_mx.py``::

      W_ij = exp(-(d_ij / sigma)^2)   if that value >= threshold, else 0

  ``sigma`` defaults to the standard deviation (numpy ``std``, ddof=0) of the *observed*
  distances, i.e. the finite entries of a dense matrix or the listed values of an edge list;
  ``threshold`` (``normalized_k`` in the paper's code) defaults to 0.1. Pairs with no
  distance (``inf``) get weight 0. The diagonal is kept (``exp(0) = 1``).

* ``"stgcn"`` -- Yu et al., "Spatio-Temporal Graph Convolutional Networks", IJCAI 2018,
  Eq. (10) / the released ``weight_matrix``::

      W_ij = exp(-(d_ij / scale)^2 / sigma2)   if i != j and that value >= epsilon, else 0

  with ``scale = 10000`` (distances in metres -> units of 10 km), ``sigma2 = 0.1`` and
  ``epsilon`` (called ``threshold`` here) ``= 0.5``; the diagonal is zeroed (``W * (1 - I)``).

Matrices that already hold weights are used as they are. Whether a matrix holds distances,
weights or a 0/1 adjacency is decided by ``matrix_kind``:

* ``"distance"``: the kernel is applied;
* ``"weight"``: entries are the weights (e.g. METR-LA ``adj_mx.pkl``, Los-loop ``los_adj.csv``);
* ``"binary"``: entries must be 0 or 1 and are the weights;
* ``"auto"`` (default) -- the rule, on the finite entries only: any value ``> 1`` ->
  ``"distance"``; otherwise all values in {0, 1} -> ``"binary"``; otherwise ``"weight"``. A
  distance matrix whose distances are all <= 1 (e.g. kilometres on a tiny network) is
  therefore read as weights: pass ``matrix_kind="distance"`` for it. Non-finite entries never
  decide the kind: one stray ``inf`` in a weight matrix once turned it into "distances" and
  the graph into another one (issue 30).

The chosen kind, the rule that chose it and the kernel parameters actually used are returned in
an ``info`` dict so that readers can record them in ``SensorNetwork.source``.

In a *distance* matrix, ``inf`` and NaN (an empty cell) mean "no road between this pair", as
in DCRNN's ``gen_adj_mx`` (weight 0). Weights and 0/1 entries must be finite, and every value
of an edge list must be (a listed edge has a distance or a weight): a non-finite one raises
:class:`~distst.errors.DiststError` naming its row and column (counted from 1), as do
negative entries and non-square matrices.

Edge direction: entry ``[i, j]`` of a matrix becomes the edge ``i -> j`` (``edge_index[0]`` is
the source row, ``edge_index[1]`` the target column), matching DCRNN's ``adj_mx[from, to]``.
Self loops are dropped unless ``self_loops=True`` (models add their own normalised self loops).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp

from distst.errors import DiststError

MATRIX_KINDS = ("auto", "distance", "weight", "binary")
CONVENTIONS = ("dcrnn", "stgcn")
SYMMETRIZE_HOWS = ("max", "sum")

# Defaults of the two reference implementations (see the module docstring).
DCRNN_THRESHOLD = 0.1
STGCN_SCALE = 10000.0
STGCN_SIGMA2 = 0.1
STGCN_THRESHOLD = 0.5

MatrixKind = Literal["auto", "distance", "weight", "binary"]
Convention = Literal["dcrnn", "stgcn"]


# -- validation ----------------------------------------------------------------------------
def _check_choice(value: str, choices: tuple[str, ...], what: str, origin: str) -> None:
    if value not in choices:
        raise DiststError(
            f"{origin}: unknown {what} {value!r}; choose one of {', '.join(choices)}"
        )


def validate_matrix(matrix: np.ndarray, origin: str = "matrix") -> np.ndarray:
    """Return ``matrix`` as float64 after checking it is square and has no negative entries.

    ``origin`` names the file (or object) in the error so the user knows what to fix.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise DiststError(
            f"{origin}: an adjacency/distance matrix must be square [N, N], got shape "
            f"{m.shape}; check that the file has no header row or index column and that the "
            "delimiter is a comma"
        )
    neg = m < 0  # NaN compares False, so NaN is not counted as negative
    if neg.any():
        i, j = (int(x) + 1 for x in np.argwhere(neg)[0])
        raise DiststError(
            f"{origin}: {int(neg.sum())} negative entries (first at row {i}, column {j}, "
            f"counted from 1: {m[i - 1, j - 1]:g}); distances and weights must be >= 0, fix "
            "the file (in a distance matrix, inf or an empty cell marks a pair with no road)"
        )
    return m


def _refuse_nonfinite_weights(m: np.ndarray, kind: str, origin: str) -> None:
    """Weights and 0/1 entries are numbers: inf or NaN there is a broken file, not "no edge"
    (0 is). Only distance matrices may mark a missing pair so."""
    bad = ~np.isfinite(m)
    if not bad.any():
        return
    i, j = (int(x) + 1 for x in np.argwhere(bad)[0])
    raise DiststError(
        f"{origin}: {int(bad.sum())} non-finite entries in a {kind} matrix (first at row {i}, "
        f"column {j}, counted from 1: {m[i - 1, j - 1]}); weights must be finite numbers >= 0 "
        "(0 for no edge): fix the file, or if it holds distances with inf or empty cells for "
        "pairs without a road, pass matrix_kind=distance"
    )


def _refuse_nonfinite_values(vals: np.ndarray, src, dst, origin: str) -> None:
    """Every listed edge carries a distance or a weight: NaN or inf there is a broken row."""
    bad = ~np.isfinite(vals)
    if not bad.any():
        return
    k = int(np.argmax(bad))
    raise DiststError(
        f"{origin}: {int(bad.sum())} edge(s) with a non-finite value, the first in data row "
        f"{k + 1} (edge {int(src[k])} -> {int(dst[k])}, counted from 0): {vals[k]}; every "
        "listed edge needs a finite distance or weight: fix the row, or delete it for a pair "
        "without a road"
    )


def detect_matrix_kind(values: np.ndarray) -> tuple[str, str]:
    """Apply the documented ``"auto"`` rule; return ``(kind, reason)``."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]  # inf or NaN never decides: the finite entries do
    if v.size == 0:
        return "weight", "auto: no finite values at all"
    vmax = float(v.max())
    if vmax > 1:
        return "distance", f"auto: max value {vmax:g} > 1"
    if np.isin(v, (0.0, 1.0)).all():
        return "binary", "auto: all values are 0 or 1"
    return "weight", f"auto: all values in [0, 1] (max {vmax:g}) and not all 0/1"


def _resolve_kind(values: np.ndarray, matrix_kind: str, origin: str) -> tuple[str, str]:
    _check_choice(matrix_kind, MATRIX_KINDS, "matrix_kind", origin)
    if matrix_kind == "auto":
        return detect_matrix_kind(values)
    if matrix_kind == "binary":
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        if not np.isin(v, (0.0, 1.0)).all():
            raise DiststError(
                f"{origin}: matrix_kind='binary' but values other than 0 and 1 occur "
                f"(e.g. {v[~np.isin(v, (0.0, 1.0))][0]:g}); use matrix_kind='weight' or "
                "'distance'"
            )
    return matrix_kind, "given"


# -- kernels -------------------------------------------------------------------------------
def gaussian_kernel(
    dist: np.ndarray,
    *,
    convention: Convention = "dcrnn",
    sigma: float | None = None,
    threshold: float | None = None,
    scale: float | None = None,
    sigma2: float | None = None,
    zero_diagonal: bool | None = None,
    return_params: bool = False,
    origin: str = "distances",
):
    """Gaussian kernel of distances, elementwise, with either paper's convention.

    ``dist`` is any float array: a dense ``[N, N]`` matrix (``inf``/NaN = no distance) or a
    1-D vector of edge distances. Returns an array of the same shape (float64) and, when
    ``return_params``, the dict of parameters actually used.

    * ``convention="dcrnn"`` (Li et al. 2018): ``exp(-(d / sigma)^2)``; ``sigma`` defaults to
      the std of the finite entries of ``dist``; ``threshold`` defaults to 0.1.
      ``scale``/``sigma2`` are not used.
    * ``convention="stgcn"`` (Yu et al. 2018, Eq. 10): ``exp(-(d / scale)^2 / sigma2)`` with
      ``scale=10000``, ``sigma2=0.1``, ``threshold`` (epsilon) ``=0.5``; ``sigma`` not used.

    Weights below ``threshold`` become 0 (values equal to it are kept, as in both codes).
    ``zero_diagonal=None`` zeroes the diagonal for STGCN on a square matrix (``W * (1 - I)``)
    and keeps it for DCRNN.
    """
    _check_choice(convention, CONVENTIONS, "kernel convention", origin)
    d = np.array(dist, dtype=np.float64)  # a copy: NaN is rewritten below
    d[np.isnan(d)] = np.inf
    if (d < 0).any():
        raise DiststError(
            f"{origin}: negative distance {float(d[d < 0][0]):g}; distances must be >= 0, "
            "fix the file"
        )
    finite = d[np.isfinite(d)]
    params: dict = {"convention": convention}
    with np.errstate(over="ignore", invalid="ignore"):
        if convention == "dcrnn":
            if sigma is None:
                sigma = float(finite.std()) if finite.size else 0.0
            if not sigma > 0:
                raise DiststError(
                    f"{origin}: cannot pick the DCRNN kernel width: the std of the observed "
                    f"distances is {sigma:g}; pass sigma=<a positive distance scale>"
                )
            threshold = DCRNN_THRESHOLD if threshold is None else float(threshold)
            w = np.exp(-np.square(d / sigma))
            params.update(sigma=float(sigma), threshold=threshold)
        else:
            scale = STGCN_SCALE if scale is None else float(scale)
            sigma2 = STGCN_SIGMA2 if sigma2 is None else float(sigma2)
            if not (scale > 0 and sigma2 > 0):
                raise DiststError(
                    f"{origin}: STGCN kernel needs scale > 0 and sigma2 > 0, got scale={scale}, "
                    f"sigma2={sigma2}; pass positive values"
                )
            threshold = STGCN_THRESHOLD if threshold is None else float(threshold)
            w = np.exp(-np.square(d / scale) / sigma2)
            params.update(scale=scale, sigma2=sigma2, threshold=threshold)
    w[~np.isfinite(d)] = 0.0
    w[w < threshold] = 0.0
    square = w.ndim == 2 and w.shape[0] == w.shape[1]
    if zero_diagonal is None:
        zero_diagonal = convention == "stgcn" and square
    if zero_diagonal:
        if not square:
            raise DiststError(f"{origin}: zero_diagonal needs a square matrix, got {w.shape}")
        np.fill_diagonal(w, 0.0)
    params["zero_diagonal"] = bool(zero_diagonal)
    return (w, params) if return_params else w


# -- conversions ---------------------------------------------------------------------------
def dense_to_edges(
    W: np.ndarray, *, self_loops: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Nonzero finite entries of ``W`` -> ``edge_index`` int64 [2, E], ``edge_weight`` float32 [E].

    Edges come in row-major order (sorted by source, then target).
    """
    W = np.asarray(W)
    mask = (W != 0) & np.isfinite(W)
    if not self_loops and W.ndim == 2 and W.shape[0] == W.shape[1]:
        np.fill_diagonal(mask, False)
    rows, cols = np.nonzero(mask)
    edge_index = np.stack([rows, cols]).astype(np.int64).reshape(2, -1)
    return edge_index, W[rows, cols].astype(np.float32)


def edges_to_dense(
    edge_index: np.ndarray,
    edge_weight: np.ndarray | None,
    num_nodes: int,
    *,
    fill: float = 0.0,
    dtype=np.float64,
) -> np.ndarray:
    """Scatter edges into an ``[N, N]`` matrix (``fill`` elsewhere; later duplicates win)."""
    ei = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    w = np.ones(ei.shape[1]) if edge_weight is None else np.asarray(edge_weight)
    out = np.full((num_nodes, num_nodes), fill, dtype=dtype)
    out[ei[0], ei[1]] = w
    return out


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
        _check_choice(how, SYMMETRIZE_HOWS, "symmetrize", "symmetrize")
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


def symmetrize(
    edge_index: np.ndarray,
    edge_weight: np.ndarray,
    how: str = "max",
    num_nodes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Make the graph undirected: every edge ``i -> j`` also exists as ``j -> i``.

    The pair weight is :func:`undirected_csr`'s (``how="max"``: ``max(w_ij, w_ji)``;
    ``how="sum"``: ``w_ij + w_ji``; a missing direction counts as 0; repeated rows add up
    first); self loops keep their weight (not doubled). Output is row-major sorted,
    int64 / float32.
    """
    _check_choice(how, SYMMETRIZE_HOWS, "symmetrize", "symmetrize")
    ei = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    n = int(num_nodes if num_nodes is not None else (ei.max() + 1 if ei.size else 0))
    ei, w, n = check_graph(ei, edge_weight, max(n, 1), origin="symmetrize")
    S = undirected_csr(ei, w, n, how=how).tocoo()
    loop = ei[0] == ei[1]
    loops = sp.coo_matrix((w[loop], (ei[0][loop], ei[1][loop])), shape=(n, n)).tocsr()
    loops.sum_duplicates()
    lc = loops.tocoo()
    rows = np.concatenate([S.row, lc.row]).astype(np.int64)
    cols = np.concatenate([S.col, lc.col]).astype(np.int64)
    data = np.concatenate([S.data, lc.data])
    order = np.lexsort((cols, rows))
    return np.stack([rows[order], cols[order]]), data[order].astype(np.float32)


def is_symmetric(edge_index, edge_weight, num_nodes: int, rtol: float = 1e-6) -> bool:
    """Whether ``w_ij == w_ji`` for every pair (self loops ignored, repeated rows summed)."""
    ei, w, n = check_graph(edge_index, edge_weight, num_nodes, origin="graph")
    keep = ei[0] != ei[1]
    A = sp.csr_matrix((w[keep], (ei[0][keep], ei[1][keep])), shape=(n, n))
    A.sum_duplicates()
    D = abs(A - A.T)
    return bool(D.nnz == 0 or D.max() <= rtol * max(float(abs(A).max()), 1e-30))


def undirected_degree(edge_index, edge_weight, num_nodes: int, how: str = "max") -> np.ndarray:
    """float64 [N]: weighted degree of each node in the symmetrised graph (self loops excluded),
    the ``D`` a Chebyshev model normalises with; a shard is given these whole-graph values."""
    return np.asarray(undirected_csr(edge_index, edge_weight, num_nodes, how=how).sum(axis=1),
                      dtype=np.float64).reshape(-1)


def one_way_edges(edge_index, num_nodes: int) -> tuple[int, int]:
    """``(one_way, pairs)``: distinct directed edges ``i -> j`` (i != j) without ``j -> i``,
    and all distinct ones; integer codes, so it scales to millions of edges."""
    ei = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    off = ei[0] != ei[1]
    n = np.int64(max(int(num_nodes), 1))
    code = np.unique(ei[0][off] * n + ei[1][off])
    return int((~np.isin((code % n) * n + code // n, code)).sum()), int(code.size)


def symmetrize_notice(edge_index, edge_weight, num_nodes: int, how: str = "max") -> str | None:
    """One line saying what symmetrising a directed graph changes (None if it is symmetric)."""
    ei, w, n = check_graph(edge_index, edge_weight, num_nodes, origin="graph")
    if is_symmetric(ei, w, n):
        return None
    keep = ei[0] != ei[1]
    A = sp.csr_matrix((w[keep], (ei[0][keep], ei[1][keep])), shape=(n, n))
    A.sum_duplicates()
    P = A.copy()
    P.data = np.ones_like(P.data)  # the edge pattern, weight-free
    mutual = P.multiply(P.T)
    one_way, _ = one_way_edges(ei, n)
    unequal = int((abs(A - A.T).multiply(mutual) > 1e-6 * float(abs(A).max())).nnz) // 2
    rule = "max(w_ij, w_ji)" if how == "max" else "w_ij + w_ji"
    return (f"directed graph symmetrised (data.symmetrize={how}: w = {rule}): {one_way} of "
            f"{int(P.nnz)} edges had no reverse edge (added), {unequal} pairs had different "
            "weights each way")


def laplacian_lambda_max(edge_index, edge_weight, num_nodes: int, how: str = "max") -> float:
    """Largest eigenvalue of the normalised Laplacian ``I - D^-1/2 W D^-1/2`` of the symmetrised
    graph (ST-UNet Eq. 2's ``lambda_max``; it is also that of ``I - D^-1 W``, a similar matrix).

    Dense ``eigvalsh`` up to 500 nodes, ARPACK Lanczos (``eigsh``, largest algebraic) above.
    The value lies in (0, 2]; 2 exactly for a graph with a bipartite component. Isolated nodes
    contribute the eigenvalue 1 (their Laplacian row is the identity's, as in PyG).
    """
    ei, w, n = check_graph(edge_index, edge_weight, num_nodes, origin="graph")
    S = undirected_csr(ei, w, n, how=how)
    deg = np.asarray(S.sum(axis=1)).reshape(-1)
    with np.errstate(divide="ignore"):
        dinv = np.where(deg > 0, deg ** -0.5, 0.0)
    A = sp.diags(dinv) @ S @ sp.diags(dinv)
    L = (sp.identity(n, format="csr") - A).tocsr()
    if n <= 500:
        lam = float(np.linalg.eigvalsh(L.toarray())[-1])
    else:
        from scipy.sparse.linalg import eigsh

        try:
            lam = float(eigsh(L, k=1, which="LA", tol=1e-6, maxiter=max(1000, 20 * n),
                              return_eigenvectors=False)[0])
        except Exception as exc:  # ArpackNoConvergence and friends: say so, never guess
            raise DiststError(
                f"graph: the largest Laplacian eigenvalue of a {n}-node graph did not converge "
                f"({exc}); use model.params.lambda_max=2 (the upper bound) instead of 'exact'"
            ) from None
    return min(2.0, max(lam, 1e-6))


# -- the two entry points readers use -------------------------------------------------------
def adjacency_from_matrix(
    matrix: np.ndarray,
    *,
    matrix_kind: MatrixKind = "auto",
    convention: Convention = "dcrnn",
    sigma: float | None = None,
    threshold: float | None = None,
    scale: float | None = None,
    sigma2: float | None = None,
    self_loops: bool = False,
    symmetric: str | None = None,
    origin: str = "matrix",
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Dense distance/weight/0-1 matrix -> ``(edge_index, edge_weight, info)``.

    ``symmetric`` is None (keep directions as given) or a ``symmetrize`` ``how``.
    ``info`` records ``matrix_kind``, ``matrix_kind_rule`` and the kernel parameters.
    """
    m = validate_matrix(matrix, origin)
    kind, rule = _resolve_kind(m, matrix_kind, origin)
    if kind != "distance":
        _refuse_nonfinite_weights(m, kind, origin)
    info: dict = {"matrix_kind": kind, "matrix_kind_rule": rule, "num_nodes": int(m.shape[0])}
    if kind == "distance":
        W, params = gaussian_kernel(
            m, convention=convention, sigma=sigma, threshold=threshold, scale=scale,
            sigma2=sigma2, return_params=True, origin=origin,
        )
        info["kernel"] = params
    else:
        W = m
    info["self_loops"] = bool(self_loops)
    edge_index, edge_weight = dense_to_edges(W, self_loops=self_loops)
    if symmetric:
        edge_index, edge_weight = symmetrize(edge_index, edge_weight, symmetric, m.shape[0])
    info["symmetrized"] = symmetric or False
    return edge_index, edge_weight, info


def dedupe_edges(
    src: np.ndarray, dst: np.ndarray, values: np.ndarray, origin: str = "edge list"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Merge repeated ``(src, dst)`` rows that carry the same value; refuse conflicting ones.

    Returns the unique rows (first-occurrence order) and how many repeats were merged.
    """
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    pairs = np.stack([src, dst], axis=1)
    _, first, inverse = np.unique(pairs, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if len(first) == len(src):
        return src, dst, values, 0
    ref = values[first][inverse]
    conflict = ~((ref == values) | (np.isnan(ref) & np.isnan(values)))
    if conflict.any():
        k = int(np.argmax(conflict))
        raise DiststError(
            f"{origin}: the edge {int(src[k])} -> {int(dst[k])} is listed more than once with "
            f"different values ({ref[k]:g} and {values[k]:g}); keep one row per edge"
        )
    keep = np.sort(first)
    return src[keep], dst[keep], values[keep], int(len(src) - len(keep))


def adjacency_from_edges(
    src: np.ndarray,
    dst: np.ndarray,
    values: np.ndarray | None,
    num_nodes: int,
    *,
    value_kind: MatrixKind = "auto",
    convention: Convention = "dcrnn",
    sigma: float | None = None,
    threshold: float | None = None,
    scale: float | None = None,
    sigma2: float | None = None,
    self_loops: bool = False,
    symmetric: str | None = None,
    origin: str = "edge list",
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Edge list ``(src[k] -> dst[k], values[k])`` over nodes ``0..num_nodes-1`` -> edges.

    ``values`` are distances, weights or 0/1 per ``value_kind`` (same auto rule as for
    matrices; ``values=None`` means an unweighted list, i.e. all ones). With ``"distance"``
    the DCRNN sigma defaults to the std of the listed distances -- the same number
    ``gen_adj_mx`` computes, since it fills the matrix only from the listed pairs. Repeated
    identical rows are merged (counted in ``info["duplicate_rows_merged"]``); self loops are
    dropped unless ``self_loops``; edges whose kernel weight falls under the threshold are
    dropped (that is the threshold's purpose).
    """
    src = np.asarray(src, dtype=np.int64).reshape(-1)
    dst = np.asarray(dst, dtype=np.int64).reshape(-1)
    vals = np.ones(len(src)) if values is None else np.asarray(values, dtype=np.float64)
    if not (len(src) == len(dst) == len(vals)):
        raise DiststError(f"{origin}: from/to/value columns have different lengths")
    bad = (src < 0) | (src >= num_nodes) | (dst < 0) | (dst >= num_nodes)
    if bad.any():
        k = int(np.argmax(bad))
        raise DiststError(
            f"{origin}: edge {int(src[k])} -> {int(dst[k])} refers to a node outside "
            f"0..{num_nodes - 1}; the edge list and the node list must cover the same sensors"
        )
    _refuse_nonfinite_values(vals, src, dst, origin)
    if (vals < 0).any():
        k = int(np.argmax(vals < 0))
        raise DiststError(
            f"{origin}: negative value {vals[k]:g} on edge {int(src[k])} -> {int(dst[k])}; "
            "distances and weights must be >= 0, fix the file"
        )
    src, dst, vals, merged = dedupe_edges(src, dst, vals, origin)
    kind, rule = _resolve_kind(vals, value_kind, origin)
    info: dict = {
        "matrix_kind": kind, "matrix_kind_rule": rule, "num_nodes": int(num_nodes),
        "listed_edges": int(len(src)), "duplicate_rows_merged": merged,
    }
    if kind == "distance":
        w, params = gaussian_kernel(
            vals, convention=convention, sigma=sigma, threshold=threshold, scale=scale,
            sigma2=sigma2, zero_diagonal=False, return_params=True, origin=origin,
        )
        info["kernel"] = params
    else:
        w = vals
    keep = w != 0
    if not self_loops:
        info["self_loops_dropped"] = int((keep & (src == dst)).sum())
        keep &= src != dst
    info["self_loops"] = bool(self_loops)
    ei = np.stack([src[keep], dst[keep]]).astype(np.int64).reshape(2, -1)
    ew = w[keep].astype(np.float32)
    order = np.lexsort((ei[1], ei[0]))
    ei, ew = ei[:, order], ew[order]
    if symmetric:
        ei, ew = symmetrize(ei, ew, symmetric, num_nodes)
    info["symmetrized"] = symmetric or False
    return ei, ew, info


def linked_edges(edge_index: np.ndarray, edge_weight: np.ndarray) -> int:
    """Edges that join two different sensors with a positive weight (self-loops and zero
    weights link nothing: on a graph without any, graph models are per-node models)."""
    ei, ew = np.asarray(edge_index), np.asarray(edge_weight)
    return int(((ei[0] != ei[1]) & (ew > 0)).sum()) if ei.size else 0
