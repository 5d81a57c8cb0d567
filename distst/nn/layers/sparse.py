"""Sparse tools of HimNet's meta-parameterised graph convolution: the Kronecker-factored linear
map whose weights are generated per node or sample, edge-sampled sparse products over an adaptive
graph, k-hop neighbourhood patterns and the row-wise (segment) softmax over them. See
:mod:`distst.nn.himnet` for where each enters the model and for the memory measurements.
"""

from __future__ import annotations

import math
import warnings

import torch


def fp32_apply(fn: type[torch.autograd.Function], *args):
    """``fn.apply(*args)`` with autocast off and floating tensors in fp32 (the hand-written
    backward passes below assume one dtype; MKL has no bf16 sparse kernel). Under
    ``train.precision: bf16`` the result is fp32 and the next autocast op casts it down."""
    if not any(isinstance(a, torch.Tensor) and torch.is_autocast_enabled(a.device.type)
               for a in args):
        return fn.apply(*args)
    dev = next(a.device.type for a in args if isinstance(a, torch.Tensor))
    with torch.autocast(dev, enabled=False):
        return fn.apply(*(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point()
                          else a for a in args))


class KronLinear(torch.autograd.Function):
    """``out[m] = x[m] @ (sum_d e[m, d] P[d])`` for rows m, i.e. ``(e[m] kron x[m]) @ P``.

    ``x`` [M, I], ``e`` [M, d], ``pool`` [d, I, O] -> [M, O]. Neither the per-row weights
    [M, I, O] nor the Kronecker rows [M, d * I] are kept: chunks of rows are formed in the
    forward and again in the backward, so the saved state is just x, e and P.
    """

    @staticmethod
    def _chunk(m: int, d: int, i: int) -> int:
        return max(1, min(m, (16 << 20) // max(1, d * i)))  # ~64 MB of float32 per chunk

    @staticmethod
    def forward(ctx, x, e, pool):
        m, i = x.shape
        d, _, o = pool.shape
        flat = pool.reshape(d * i, o)
        out = x.new_empty(m, o)
        step = KronLinear._chunk(m, d, i)
        for s in range(0, m, step):
            z = (e[s:s + step, :, None] * x[s:s + step, None, :]).reshape(-1, d * i)
            torch.mm(z, flat, out=out[s:s + step])
        ctx.save_for_backward(x, e, pool)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, e, pool = ctx.saved_tensors
        m, i = x.shape
        d, _, o = pool.shape
        flat = pool.reshape(d * i, o)
        grad = grad.contiguous()
        gx = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        ge = torch.empty_like(e) if ctx.needs_input_grad[1] else None
        gp = torch.zeros_like(flat) if ctx.needs_input_grad[2] else None
        step = KronLinear._chunk(m, d, i)
        for s in range(0, m, step):
            g = grad[s:s + step]
            ec, xc = e[s:s + step], x[s:s + step]
            if gp is not None:
                z = (ec[:, :, None] * xc[:, None, :]).reshape(-1, d * i)
                gp.addmm_(z.t(), g)
            gz = (g @ flat.t()).view(-1, d, i)  # [m_c, d, I]
            if gx is not None:
                gx[s:s + step] = torch.einsum("mdi,md->mi", gz, ec)
            if ge is not None:
                ge[s:s + step] = torch.einsum("mdi,mi->md", gz, xc)
        return gx, ge, None if gp is None else gp.view(d, i, o)


# -- adaptive graphs ---------------------------------------------------------------------------
def khop_neighbourhood(edge_index: torch.Tensor, num_nodes: int, hops: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(row, col)`` int64 of every pair within ``hops`` undirected hops, self pairs included,
    sorted by row then column (CSR order)."""
    n = int(num_nodes)
    loops = torch.arange(n, dtype=torch.long)
    if hops <= 0:
        return loops, loops.clone()
    ei = edge_index.to(torch.long)
    both = torch.cat([ei, ei.flip(0), torch.stack([loops, loops])], dim=1)

    def pattern(indices):
        # values 1: duplicates and walk counts must not grow over hops, only the set matters
        return torch.sparse_coo_tensor(indices, torch.ones(indices.shape[1]), (n, n)).coalesce()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse invariant checks" chatter
        step = pattern(both.unique(dim=1))
        reach = step
        for _ in range(int(hops) - 1):
            reach = pattern(torch.sparse.mm(reach, step).coalesce().indices())
    idx = reach.indices()  # coalesced: sorted by row, then column
    return idx[0].contiguous(), idx[1].contiguous()


def segment_softmax(scores: torch.Tensor, row: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Softmax of ``scores`` [..., E] within each row group (row ids [E]).

    Kept instead of ``torch_geometric.utils.softmax``, which reduces over dim 0: on HimNet's
    batch-first scores [B, E] (B = 64) this is 2.6x faster at N = 2,000 and 3.7x at N = 207,
    forward + backward, than PyG with the transposes it needs (scripts/bench_segment_softmax.py;
    benchmarks/RESULTS.md). Segment sums elsewhere use torch's ``index_add_`` /
    ``scatter_reduce`` directly, which is what ``torch_geometric.utils.scatter`` calls without
    torch-scatter."""
    shape = (*scores.shape[:-1], num_rows)
    idx = row.expand_as(scores)
    mx = scores.new_full(shape, -math.inf).scatter_reduce(-1, idx, scores, "amax",
                                                          include_self=True)
    ex = (scores - mx.gather(-1, idx).detach()).exp()
    den = ex.new_zeros(shape).scatter_add(-1, idx, ex)
    return ex / den.gather(-1, idx)


def csr_structure(row: torch.Tensor, col: torch.Tensor, n: int) -> dict:
    """Index structure of a sparse pattern (entries sorted by row): the CSR row pointer, and
    the transposed pattern (``t_perm`` orders the entries by column) for the backward pass."""
    crow = torch.zeros(n + 1, dtype=torch.long, device=row.device)
    crow[1:] = torch.bincount(row, minlength=n).cumsum(0)
    t_perm = torch.argsort(col * n + row)
    t_crow = torch.zeros(n + 1, dtype=torch.long, device=row.device)
    t_crow[1:] = torch.bincount(col, minlength=n).cumsum(0)
    return {"row": row, "col": col, "crow": crow, "t_perm": t_perm, "t_crow": t_crow,
            "t_col": row[t_perm]}


def block_diagonal(st: dict, b: int, n: int) -> dict:
    """The same pattern repeated for B samples as one [B*N, B*N] block-diagonal pattern."""
    e = st["row"].numel()
    off = torch.arange(b, device=st["row"].device)[:, None]

    def ptr(p):  # [N + 1] -> [B*N + 1]
        return torch.cat([(p[:-1][None, :] + off * e).reshape(-1), p.new_tensor([b * e])])

    return {"row": (st["row"][None] + off * n).reshape(-1),
            "col": (st["col"][None] + off * n).reshape(-1), "crow": ptr(st["crow"]),
            "t_perm": (st["t_perm"][None] + off * e).reshape(-1), "t_crow": ptr(st["t_crow"]),
            "t_col": (st["t_col"][None] + off * n).reshape(-1)}


def _csr(crow, col, vals, n):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "CSR support is in beta" chatter
        return torch.sparse_csr_tensor(crow, col, vals, (n, n), check_invariants=False)


class EdgeSpMM(torch.autograd.Function):
    """``A @ x`` for a sparse ``A`` [n, n] whose VALUES are learned (pattern fixed).

    torch's own backward of ``sparse.mm`` forms the value gradient through a dense
    ``grad @ x^T`` ([n, n]: 40 GB at 100k nodes); here it is the sampled product
    ``sum_c grad[row_e, c] * x[col_e, c]``, in chunks of edges, and ``A^T @ grad`` uses the
    transposed pattern.
    """

    @staticmethod
    def forward(ctx, vals, x, st, n):
        ctx.st, ctx.n = st, n
        ctx.save_for_backward(vals, x)
        return torch.sparse.mm(_csr(st["crow"], st["col"], vals, n), x)

    @staticmethod
    def backward(ctx, grad):
        vals, x = ctx.saved_tensors
        st, n = ctx.st, ctx.n
        grad = grad.contiguous()
        gv = gx = None
        if ctx.needs_input_grad[1]:
            gx = torch.sparse.mm(_csr(st["t_crow"], st["t_col"], vals[st["t_perm"]], n), grad)
        if ctx.needs_input_grad[0]:
            e, c = vals.numel(), grad.shape[1]
            gv = torch.empty_like(vals)
            step = max(1, (8 << 20) // max(1, c))  # ~32 MB of float32 per chunk
            for s in range(0, e, step):
                r, k = st["row"][s:s + step], st["col"][s:s + step]
                gv[s:s + step] = (grad[r] * x[k]).sum(-1)
        return gv, gx, None, None
