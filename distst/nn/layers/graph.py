"""Graph operators on the torch side: the rescaled Laplacian of Chebyshev graph convolution.

ST-UNet (Yu et al.) Eq. (1)-(2), after Defferrard et al. (ChebNet): the filter
``g_theta *_G x = sum_{k<K} theta_k T_k(L~) x`` with ``L~ = 2 L / lambda_max - I`` and the
Chebyshev recursion ``T_0 = I, T_1 = L~, T_k = 2 L~ T_{k-1} - T_{k-2}``.

Normalisations follow PyTorch Geometric's ``get_laplacian``/``ChebConv`` exactly, so distst's
graph convolution equals ``torch_geometric.nn.ChebConv`` for equal weights:

* ``"sym"``: ``L = I - D^-1/2 A D^-1/2``; with the default ``lambda_max = 2`` (PyG's value for
  sym normalisation) the operator is ``L~ = -D^-1/2 A D^-1/2`` with a zero diagonal.
* ``"rw"``: ``L = I - D^-1 A``; ``L~ = 2 L / lambda_max - I``.
* ``"none"``: the edge weights already ARE the normalised adjacency (e.g. a part's
  ``D^-1/2 A D^-1/2`` entries computed on the whole graph before slicing, so that inner nodes
  see exactly the full-graph operator); ``L~ = -(2 / lambda_max) A + (2 / lambda_max - 1) I``.

Conventions (the same as PyG's message passing with ``flow="source_to_target"``):
``edge_index[0]`` is the source, ``edge_index[1]`` the target; the degree ``D`` sums the weights
of a node's OUTGOING edges (the paper's ``D_ii = sum_j W_ij``); self loops are removed first;
duplicate edges add up; nodes without outgoing edges get ``D^-1/2 = 0``. The operator is stored
row = target, column = source, so ``(L~ @ X)[i] = sum_{j -> i} L~[i, j] X[j]``.

Sparse CSR tensors cannot be deep-copied or pickled by torch, so modules keep the three CSR
component arrays as plain buffers (:class:`CSRParts`) and assemble the sparse tensor per forward
(a cheap view-constructor, no copy).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import math

import numpy as np
import torch
from torch import nn

from distst.errors import DiststError

NORMALIZATIONS = ("sym", "rw", "none")


class CSRParts(NamedTuple):
    """Components of a square CSR matrix: ``crow [N+1]``, ``col [nnz]`` (int64), ``val [nnz]``."""

    crow: torch.Tensor
    col: torch.Tensor
    val: torch.Tensor


def _as_tensor(x, dtype, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise DiststError(
            f"graph: {name} must be a torch.Tensor or numpy array, got {type(x).__name__}; "
            "pass the dataset's edge_index/edge_weight arrays"
        )
    return x.detach().to(dtype)


def validate_graph(
    edge_index, edge_weight, num_nodes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check and convert a directed weighted graph; returns (int64 [2, E], float [E]).

    ``edge_weight=None`` means every edge has weight 1.
    """
    if edge_index is None:
        raise DiststError("graph: edge_index is None; this model needs a graph -> "
                          "give the dataset an edge list or choose a graph-free model (gru, ha)")
    ei = _as_tensor(edge_index, torch.int64, "edge_index")
    if ei.dim() != 2 or ei.shape[0] != 2:
        raise DiststError(f"graph: edge_index must have shape [2, E], got {list(ei.shape)}; "
                          "transpose an [E, 2] edge list")
    num_edges = ei.shape[1]
    if num_edges and (int(ei.min()) < 0 or int(ei.max()) >= num_nodes):
        raise DiststError(
            f"graph: edge_index holds node ids in [{int(ei.min())}, {int(ei.max())}] but "
            f"num_nodes={num_nodes}; node ids must be 0..{num_nodes - 1}"
        )
    if edge_weight is None:
        ew = torch.ones(num_edges, dtype=torch.float32)
    else:
        ew = _as_tensor(edge_weight, torch.float32, "edge_weight")
        if ew.shape != (num_edges,):
            raise DiststError(f"graph: edge_weight must have shape [{num_edges}] "
                              f"(one per edge), got {list(ew.shape)}")
        if num_edges and (not bool(torch.isfinite(ew).all()) or float(ew.min()) < 0):
            raise DiststError("graph: edge_weight must be finite and >= 0 (a Laplacian "
                              "normalisation takes square roots of degrees); fix the weights")
    return ei, ew


def require_symmetric(edge_index, edge_weight, num_nodes: int, model: str) -> None:
    """Refuse a directed graph for an operator that assumes ``W = W^T`` (self loops ignored,
    repeated edges summed): its one-way edges would silently lose weight in the normalisation."""
    ei, ew = validate_graph(edge_index, edge_weight, num_nodes)
    keep = ei[0] != ei[1]
    ei, ew = ei[:, keep], ew[keep].double()
    if ei.shape[1] == 0:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        a = torch.sparse_coo_tensor(ei, ew, (num_nodes, num_nodes)).coalesce()
        d = (a - a.t()).coalesce()
    diff = d.values().abs()
    tol = 1e-6 * float(a.values().abs().max())
    bad = int((diff > tol).sum())
    if bad:
        raise DiststError(
            f"{model}: the Chebyshev graph convolution needs an undirected graph (W = W^T, as "
            f"in its paper) but {bad // 2 or 1} node pairs have an edge one way only or "
            "different weights each way; symmetrise the graph first "
            "(distst.graph.adjacency.symmetrize; `distst train` does it for every Chebyshev "
            "model, rule data.symmetrize=max|sum)")


def cheb_operator_coo(
    edge_index,
    edge_weight,
    num_nodes: int,
    normalization: str = "sym",
    lambda_max: float = 2.0,
    degree=None,
) -> torch.Tensor:
    """The rescaled Laplacian ``L~ = 2 L / lambda_max - I`` (ST-UNet Eq. 2) as coalesced COO [N, N].

    ``degree`` (float [N], optional) replaces the degrees summed from these edges: a part passes
    the WHOLE-graph out-degrees of its local nodes so that its inner rows equal the full graph's.
    """
    if normalization not in NORMALIZATIONS:
        raise DiststError(f"graph: normalization={normalization!r} is not supported; "
                          f"choose one of {list(NORMALIZATIONS)}")
    if not lambda_max > 0:
        raise DiststError(f"graph: lambda_max={lambda_max} must be > 0 (2.0 is the usual bound)")
    ei, ew = validate_graph(edge_index, edge_weight, num_nodes)
    keep = ei[0] != ei[1]  # the Laplacian's diagonal comes from I, never from self loops
    src, dst, w = ei[0][keep], ei[1][keep], ew[keep]
    # Degree in float64 so that very dense graphs do not lose the low bits of D^-1/2.
    if degree is None:
        deg = torch.zeros(num_nodes, dtype=torch.float64).index_add_(0, src, w.double())
    else:
        deg = torch.as_tensor(degree, dtype=torch.float64)
        if deg.shape != (num_nodes,):
            raise DiststError(f"graph: degree has shape {list(deg.shape)}, expected [{num_nodes}]")
    if normalization == "sym":
        dinv = deg.pow(-0.5)
        dinv[torch.isinf(dinv)] = 0.0
        a_norm = dinv[src] * w.double() * dinv[dst]
    elif normalization == "none":
        a_norm = w.double()
    else:  # "rw"
        dinv = 1.0 / deg
        dinv[torch.isinf(dinv)] = 0.0
        a_norm = dinv[src] * w.double()
    scale = 2.0 / float(lambda_max)
    rows, cols, vals = [dst], [src], [-scale * a_norm]  # row = target, col = source
    diag = scale - 1.0  # from 2 (I) / lambda_max - I
    if diag != 0.0:
        ar = torch.arange(num_nodes)
        rows.append(ar)
        cols.append(ar)
        vals.append(torch.full((num_nodes,), diag, dtype=torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse invariant checks" chatter
        op = torch.sparse_coo_tensor(
            torch.stack([torch.cat(rows), torch.cat(cols)]),
            torch.cat(vals).float(),
            (num_nodes, num_nodes),
        ).coalesce()  # duplicate edges add up, as PyG's message sums do
    return op


def to_csr(coo: torch.Tensor) -> torch.Tensor:
    """A coalesced COO operator as a sparse CSR tensor (what :func:`spmm` multiplies with)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "CSR support is in beta" chatter
        return coo.to_sparse_csr()


def cheb_operator(*args, **kwargs) -> torch.Tensor:
    """:func:`cheb_operator_coo` (same arguments) as a sparse CSR tensor [N, N] (row = target,
    col = source)."""
    return to_csr(cheb_operator_coo(*args, **kwargs))


def csr_parts(op: torch.Tensor) -> CSRParts:
    """Split a CSR tensor into its component arrays (deep-copyable, picklable buffers)."""
    return CSRParts(op.crow_indices().clone(), op.col_indices().clone(), op.values().clone())


def transpose_parts(parts: CSRParts, num_nodes: int) -> CSRParts:
    """CSR parts of the transposed matrix (used by the backward pass of :func:`spmm`)."""
    op = assemble_csr(parts, num_nodes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        t = op.to_sparse_coo().t().coalesce().to_sparse_csr()
    return csr_parts(t)


def assemble_csr(parts: CSRParts, num_nodes: int) -> torch.Tensor:
    """Build the CSR tensor from its parts (no copy; invariants were checked when built)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            parts.crow, parts.col, parts.val, (num_nodes, num_nodes), check_invariants=False
        )


class _SpMM(torch.autograd.Function):
    """``A @ X`` for a constant sparse ``A``; the backward uses a precomputed ``A^T`` (CSR).

    torch's own backward of ``sparse.mm`` rebuilds the transpose on every call; the operator is
    constant, so it is built once per model.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, a_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.a_t = a_t
        return torch.sparse.mm(a, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, None, torch.sparse.mm(ctx.a_t, grad.contiguous())


def spmm(a: torch.Tensor, a_t: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """Sparse [N, N] times dense [N, M]; ``a_t`` (the transpose) speeds up the backward pass.
    An operator that carries a ``boundary`` (:func:`with_boundary`: set from outside the
    model, by a strategy that splits the graph) multiplies through it: the boundary object
    supplies the rows of ``x`` this worker does not hold (the one place where a model's
    neighbour reads can leave the worker).

    Mixed precision (``train.precision: bf16``): MKL has no bf16 sparse kernel, and autocast
    would cast both factors of ``torch.sparse.mm`` to bf16, so the product runs with autocast
    off in the operator's dtype (fp32) and the result is cast back to ``x``'s dtype."""
    return _products([(a, a_t)], x)[0]


def spmm_shared(pairs, x: torch.Tensor) -> list[torch.Tensor]:
    """``[spmm(a, a_t, x) for a, a_t in pairs]``: with a boundary, the rows of the shared
    input ``x`` it supplies are fetched once for all the operators, not once per operator."""
    return _products(pairs, x) if pairs else []


def _products(pairs, x: torch.Tensor, boundary=None, rows: str = "owned"
              ) -> list[torch.Tensor]:
    """The products of ``pairs`` on ``x`` in the operators' dtype, autocast off; through
    ``boundary`` (default: the one all the operators carry) with its ``rows``."""
    dtype = x.dtype
    with torch.autocast(x.device.type, enabled=False):
        x = x.to(pairs[0][0].dtype)
        ex = boundary or boundary_of(pairs[0][0])
        if ex is not None and (boundary is not None
                               or all(boundary_of(a) is ex for a, _ in pairs)):
            out = ex.products([a for a, _ in pairs], x, rows=rows)
        else:
            out = [_product(a, a_t, x) for a, a_t in pairs]
    return [o.to(dtype) for o in out]


def _product(a: torch.Tensor, a_t: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    ex = boundary_of(a)
    if ex is not None:
        return ex.product(a, x)
    return _local_product(a, a_t, x)


def chained_operators(op: torch.Tensor, op_t: torch.Tensor | None, steps: int
                      ) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """For ``steps`` products chained on one input (``op @ ... @ op @ x``): when ``op`` carries
    a boundary whose halo is at least ``steps`` hops deep, the operators of the chain's
    products (no boundary: local, exact on the owned rows once ``x``'s halo rows are fetched
    with :func:`fetch_boundary`; see the boundary's ``chain``); else None (each product
    fetches its own boundary)."""
    ex = boundary_of(op)
    return ex.chain(op, op_t, steps) if ex is not None else None


def chain_heads(op: torch.Tensor, heads: list, x: torch.Tensor) -> list[torch.Tensor]:
    """The first products of chains (``heads``: the first pair of each chain from
    :func:`chained_operators` on ``op``'s boundary) on one input ``x``, whose halo rows come
    from their owners once, while the owned columns multiply (no copy of ``x``)."""
    return _products(heads, x, boundary=boundary_of(op), rows="all")


def fetch_boundary(op: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``x`` with the rows of ``op``'s halo taken from their owners (gradients go home)."""
    return boundary_of(op).gather(x)


def with_boundary(op: torch.Tensor, boundary) -> torch.Tensor:
    """Mark the sparse operator ``op`` so that :func:`spmm` multiplies it through
    ``boundary.product`` / ``boundary.products`` (an attribute on the per-forward CSR view:
    the operator modules stay picklable and the call sites keep their ``(op, op_t)`` pairs).
    ``boundary`` None leaves ``op`` as it is."""
    if boundary is not None:
        op._distst_boundary = boundary
    return op


def boundary_of(op: torch.Tensor):
    return getattr(op, "_distst_boundary", None)


def _local_product(a: torch.Tensor, a_t: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    if a_t is None or not x.requires_grad:
        return torch.sparse.mm(a, x)
    return _SpMM.apply(a, a_t, x)


def dense_cheb_basis(
    edge_index,
    edge_weight,
    num_nodes: int,
    K: int,
    normalization: str = "sym",
    lambda_max: float = 2.0,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Dense reference ``[K, N, N]`` of ``T_0(L~) .. T_{K-1}(L~)`` (for tests; O(K N^2) memory)."""
    lt = cheb_operator_coo(edge_index, edge_weight, num_nodes, normalization,
                           lambda_max).to_dense().to(dtype)
    basis = [torch.eye(num_nodes, dtype=dtype)]
    if K > 1:
        basis.append(lt)
    for _ in range(2, K):
        basis.append(2 * lt @ basis[-1] - basis[-2])
    return torch.stack(basis[:K])


# -- diffusion convolution (DCRNN) -------------------------------------------------------
RANDOM_WALK_DIRECTIONS = ("forward", "backward")


def random_walk_operator_coo(
    edge_index,
    edge_weight,
    num_nodes: int,
    direction: str = "forward",
    degree=None,
) -> torch.Tensor:
    """A random-walk transition matrix of DCRNN's diffusion convolution, coalesced COO [N, N].

    Li et al. 2018 (DCRNN, ICLR), Eq. (2): with ``W_ij`` the weight of the edge ``i -> j``
    (``edge_index[0]`` = i, the source),

    * ``"forward"``:  ``P_f = D_O^-1 W``, entry ``[i, j] = w_ij / d_O(i)``, ``d_O`` = out-degree;
    * ``"backward"``: ``P_b = D_I^-1 W^T``, entry ``[i, j] = w_ji / d_I(i)``, ``d_I`` = in-degree.

    Row ``i`` of either is normalised by node ``i``'s own degree (rows sum to 1, or 0 for a node
    without edges in that direction). Unlike :func:`cheb_operator_coo`, self loops are KEPT in
    ``W`` and in the degrees: DCRNN uses the adjacency as is (METR-LA's has a unit diagonal),
    and the identity term of the filter is separate (k = 0). Duplicate edges add up.

    ``degree`` (float [N], optional) replaces the degrees summed from these edges (out-degree for
    ``"forward"``, in-degree for ``"backward"``): a part passes the WHOLE-graph degrees of its
    local nodes, which by the data contract EXCLUDE self loops, so the self-loop weight found in
    these edges (a self loop of a local node is always a local edge) is added back. Rows of
    nodes whose neighbours in that direction are all local then equal the full graph's rows.
    """
    if direction not in RANDOM_WALK_DIRECTIONS:
        raise DiststError(f"graph: random-walk direction={direction!r} is not supported; "
                          f"choose one of {list(RANDOM_WALK_DIRECTIONS)}")
    ei, ew = validate_graph(edge_index, edge_weight, num_nodes)
    src, dst, w = ei[0], ei[1], ew.double()  # float64 degrees, as cheb_operator_coo
    row, col = (src, dst) if direction == "forward" else (dst, src)
    if degree is None:
        deg = torch.zeros(num_nodes, dtype=torch.float64).index_add_(0, row, w)
    else:
        deg = torch.as_tensor(degree, dtype=torch.float64).clone()
        if deg.shape != (num_nodes,):
            name = "out_degree" if direction == "forward" else "in_degree"
            raise DiststError(f"graph: {name} has shape {list(deg.shape)}, expected "
                              f"[{num_nodes}] (one whole-graph degree per local node)")
        loop = src == dst
        deg.index_add_(0, row[loop], w[loop])
    dinv = 1.0 / deg
    dinv[torch.isinf(dinv)] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        # duplicates are summed in float64 before the single rounding to float32
        op = torch.sparse_coo_tensor(
            torch.stack([row, col]), dinv[row] * w, (num_nodes, num_nodes)
        ).coalesce()
        return torch.sparse_coo_tensor(op.indices(), op.values().float(), op.shape,
                                       is_coalesced=True)


def random_walk_operator(*args, **kwargs) -> torch.Tensor:
    """:func:`random_walk_operator_coo` (same arguments) as a sparse CSR tensor [N, N]."""
    return to_csr(random_walk_operator_coo(*args, **kwargs))


def cheb_features(op: torch.Tensor, op_t: torch.Tensor | None, x: torch.Tensor,
                  K: int) -> torch.Tensor:
    """Chebyshev basis ``[T_0 X | T_1 X | ... | T_{K-1} X]`` of a node-major signal.

    ``x``: ``[N, M, F]`` (M = batch, or time*batch); returns ``[N*M, K*F]`` whose column
    ``k*F + f`` is feature f of ``T_k(L~) X`` -- the row layout of the stacked weights.
    """
    n, m, f = x.shape
    t0 = x.reshape(n, m * f)  # [N, M*F]: batch and features become columns of one spmm
    # on a split graph with a deep enough halo: one fetch of the input, then K-1 local products
    # on shrinking row sets (chained_operators); else every product fetches its boundary
    chain = chained_operators(op, op_t, K - 1)
    if chain is not None and K > 3:  # T_2 = 2 L~ T_1 - T_0 reads T_0's halo rows too
        t0 = fetch_boundary(op, t0)
    ops = chain or [(op, op_t)] * (K - 1)
    basis = [t0]
    if K > 1:
        if chain is not None and K <= 3:  # T_1 exact on the rows T_2 reads, one fetch
            t1 = chain_heads(op, ops[:1], t0)[0]
        else:
            t1 = spmm(*ops[0], t0)  # [N, M*F]
        basis.append(t1)
        for k in range(2, K):
            # T_k = 2 L~ T_{k-1} - T_{k-2}, in place on the product's fresh output (saved by
            # no backward): no two temporaries of [N, M*F] per order
            t2 = spmm(*ops[k - 1], t1).mul_(2.0).sub_(t0)
            basis.append(t2)
            t0, t1 = t1, t2
    # K x [N, M*F] -> [N, M, K, F] -> [N*M, K*F]
    return torch.stack([t.view(n, m, f) for t in basis], dim=2).view(n * m, K * f)


def glorot_blocks(w: torch.Tensor, fan_in: int, fan_out: int) -> None:
    """Glorot-uniform per [fan_in, fan_out] block, as PyG ChebConv initialises each T_k weight."""
    a = math.sqrt(6.0 / (fan_in + fan_out))
    nn.init.uniform_(w, -a, a)


DEFAULT_LAMBDA_MAX: float | str = 2.0
LAMBDA_MAX_CHOICES = ("exact",)


def resolve_lambda_max(model: str, lambda_max, laplacian_lambda_max=None) -> float:
    """``lambda_max`` of ``L~ = 2 L / lambda_max - I`` (ST-UNet Eq. 2) as a number.

    A number is used as given (2 is the upper bound of the normalised Laplacian's spectrum and
    PyG's default); ``"exact"`` asks the engine's ``laplacian_lambda_max()`` for the largest
    eigenvalue of the WHOLE graph's normalised Laplacian (a part gets the whole-graph value).
    """
    if isinstance(lambda_max, str):
        if lambda_max not in LAMBDA_MAX_CHOICES:
            raise DiststError(f"{model}: lambda_max={lambda_max!r} is not supported; give a "
                              f"number in (0, 2] (2 = the bound) or one of {list(LAMBDA_MAX_CHOICES)}")
        if laplacian_lambda_max is None:
            raise DiststError(f"{model}: lambda_max='exact' needs the graph's largest Laplacian "
                              "eigenvalue, which the training engine passes "
                              "(laplacian_lambda_max); pass a number when building the model "
                              "by hand")
        value = laplacian_lambda_max() if callable(laplacian_lambda_max) else laplacian_lambda_max
        return float(value)
    if isinstance(lambda_max, bool) or not isinstance(lambda_max, (int, float)) \
            or not 0 < float(lambda_max) <= 2.0 + 1e-9:
        raise DiststError(f"{model}: lambda_max={lambda_max!r} must be a number in (0, 2] "
                          "(the normalised Laplacian's eigenvalues lie in [0, 2]) or 'exact'")
    return float(lambda_max)


class GraphOperator(nn.Module):
    """Holds ``L~`` and its transpose as non-persistent CSR-component buffers.

    Non-persistent: the graph is data, not a learned state -- it is rebuilt from the dataset,
    never saved in checkpoints or broadcast by DDP (the engine uses ``broadcast_buffers=False``);
    ``.to(device)`` still moves it.

    The Chebyshev filter assumes an undirected graph (a symmetric ``W``, ST-UNet Sec. 2 /
    ChebNet): with a directed edge list the degree of a node without out-edges is 0 and every
    edge into it would be zeroed silently. A directed graph is therefore refused here; the
    engine symmetrises it first (``data.symmetrize``, :func:`distst.graph.adjacency.symmetrize`).
    """

    #: what the models built on this operator need from the engine (see registry.model_graph)
    GRAPH = "undirected"
    #: what supplies the rows of neighbours this worker does not hold (:func:`with_boundary`;
    #: set from outside the model, None otherwise)
    boundary = None

    def __init__(self, edge_index, edge_weight, num_nodes: int, normalization: str,
                 lambda_max: float = 2.0, degree=None, model: str = "graph convolution"):
        super().__init__()
        self.num_nodes = num_nodes
        require_symmetric(edge_index, edge_weight, num_nodes, model)
        # degree: optional whole-graph degrees of the local nodes (a part of a split graph), see
        # cheb_operator; None = summed from these edges (the behaviour before).
        op = cheb_operator(edge_index, edge_weight, num_nodes, normalization,
                                    lambda_max, degree=degree)
        parts = csr_parts(op)
        parts_t = transpose_parts(parts, num_nodes)
        for prefix, p in (("op", parts), ("op_t", parts_t)):
            self.register_buffer(f"{prefix}_crow", p.crow, persistent=False)
            self.register_buffer(f"{prefix}_col", p.col, persistent=False)
            self.register_buffer(f"{prefix}_val", p.val, persistent=False)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.num_nodes
        op = assemble_csr(CSRParts(self.op_crow, self.op_col, self.op_val), n)
        op_t = assemble_csr(
            CSRParts(self.op_t_crow, self.op_t_col, self.op_t_val), n)
        return with_boundary(op, self.boundary), op_t
