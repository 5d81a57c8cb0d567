"""Diffusion convolution (DCRNN, Li et al. 2018, Eq. 2): random-walk transition matrices of a
directed graph and the diffusion basis of a node-major signal."""

from __future__ import annotations

import torch
from torch import nn

from distst.nn.layers import graph as graphops


#: filter_type -> the random-walk directions it diffuses along (DCRNN's names; "laplacian"
#: is the Chebyshev graph convolution -- use the gcgru model for that).
FILTER_TYPES: dict[str, tuple[str, ...]] = {
    "dual_random_walk": ("forward", "backward"),
    "random_walk": ("forward",),
}


def diffusion_features(supports, x: torch.Tensor, K: int) -> torch.Tensor:
    """Diffusion basis ``[X | P_1 X .. P_1^K X | P_2 X .. P_2^K X ...]`` of a node-major signal.

    ``supports``: a sequence of ``(P, P^T)`` CSR pairs; ``x``: ``[N, M, F]`` (M = batch or
    time*batch); returns ``[N*M, (1 + len(supports)*K) * F]`` whose column ``j*F + f`` is
    feature f of the j-th block -- the row layout of the stacked weights.
    """
    n, m, f = x.shape
    x0 = x.reshape(n, m * f)  # [N, M*F]: batch and features become columns of one spmm
    chains = _chains(supports, K)
    if chains is not None:  # on a deep enough halo: one fetch of x0, the rest local
        first = graphops.chain_heads(supports[0][0], [c[0] for c in chains], x0)
    else:
        chains = [[(op, op_t)] * K for op, op_t in supports]
        # the first hop of every direction reads x0: one boundary fetch for all of them
        first = graphops.spmm_shared(list(supports), x0) if K > 0 else []
    basis = [x0]
    for chain, xk in zip(chains, first):
        basis.append(xk)
        for a, a_t in chain[1:]:
            xk = graphops.spmm(a, a_t, xk)  # P^k X = P (P^{k-1} X), [N, M*F]
            basis.append(xk)
    # J x [N, M*F] -> [N, M, J, F] -> [N*M, J*F]
    return torch.stack([t.view(n, m, f) for t in basis], dim=2).view(n * m, len(basis) * f)


def _chains(supports, K: int):
    """The operators of each direction's K products when every direction's operator shares
    one boundary deep enough for K hops (graphops.chained_operators), else None."""
    if not supports:
        return None
    ex = graphops.boundary_of(supports[0][0])
    if ex is None or any(graphops.boundary_of(op) is not ex for op, _ in supports):
        return None
    chains = []
    for op, op_t in supports:
        chain = graphops.chained_operators(op, op_t, K)
        if chain is None:
            return None
        chains.append(chain)
    return chains


class DiffusionOperators(nn.Module):
    """The transition matrices ``P_f`` / ``P_b`` and their transposes as CSR-component buffers.

    Non-persistent buffers, like :class:`distst.nn.gcgru.GraphOperator`: the graph is data,
    rebuilt from the dataset, never checkpointed. ``out_degree`` / ``in_degree`` (float [N],
    optional) are the whole-graph degrees of the local nodes on a part of a split graph.
    """

    #: what supplies the rows of neighbours this worker does not hold
    #: (distst.nn.layers.graph.with_boundary; set from outside the model, None otherwise)
    boundary = None

    def __init__(self, edge_index, edge_weight, num_nodes: int,
                 directions: tuple[str, ...] = ("forward", "backward"),
                 out_degree=None, in_degree=None):
        super().__init__()
        self.num_nodes, self.directions = num_nodes, tuple(directions)
        for i, direction in enumerate(self.directions):
            degree = out_degree if direction == "forward" else in_degree
            op = graphops.random_walk_operator(edge_index, edge_weight, num_nodes, direction,
                                               degree=degree)
            parts = graphops.csr_parts(op)
            parts_t = graphops.transpose_parts(parts, num_nodes)
            for prefix, p in ((f"p{i}", parts), (f"p{i}_t", parts_t)):
                self.register_buffer(f"{prefix}_crow", p.crow, persistent=False)
                self.register_buffer(f"{prefix}_col", p.col, persistent=False)
                self.register_buffer(f"{prefix}_val", p.val, persistent=False)

    def _csr(self, prefix: str) -> torch.Tensor:
        parts = graphops.CSRParts(getattr(self, f"{prefix}_crow"), getattr(self, f"{prefix}_col"),
                                  getattr(self, f"{prefix}_val"))
        return graphops.assemble_csr(parts, self.num_nodes)

    def forward(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(P_f, P_f^T), (P_b, P_b^T)]`` (one pair per direction) as CSR tensors."""
        return [(graphops.with_boundary(self._csr(f"p{i}"), self.boundary), self._csr(f"p{i}_t"))
                for i in range(len(self.directions))]
