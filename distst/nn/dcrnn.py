"""DCRNN: diffusion-convolutional recurrent neural network (Li et al., ICLR 2018).

Diffusion convolution (DCRNN Eq. 2), bidirectional ("dual_random_walk")::

    X *_G f = sum_{k=0}^{K} ( theta_{k,1} P_f^k + theta_{k,2} P_b^k ) X,
    P_f = D_O^-1 W   (forward random walk),   P_b = D_I^-1 W^T   (backward random walk),

with ``K`` = ``max_diffusion_step`` as in the authors' code (the paper writes the sum up to
``K - 1`` for K terms; ``K = 2`` here means powers 0, 1, 2) and the ``k = 0`` term (the
identity, identical for both directions) counted once, as the code does, so a
signal with F features expands into ``1 + 2K`` blocks ``[X | P_f X | P_f^2 X | P_b X | P_b^2 X]``
(the authors' code's block order) multiplied by one stacked weight ``[(1 + 2K) F, out]``.
``W_ij`` is the weight of the edge ``i -> j``; see :func:`distst.nn.graphops.random_walk_operator`.

The DCGRU cell (DCRNN Eq. 4, Sec. 2.3) replaces the GRU's matrix products by diffusion
convolutions of the concatenation ``[X_t, H_{t-1}]``::

    r_t = sigma(Theta_r *_G [X_t, H_{t-1}] + b_r)
    u_t = sigma(Theta_u *_G [X_t, H_{t-1}] + b_u)
    C_t = tanh (Theta_C *_G [X_t, r_t . H_{t-1}] + b_c)
    H_t = u_t . H_{t-1} + (1 - u_t) . C_t

A convolution of a concatenation is the sum of the convolutions of its parts, so the cell is
computed like :mod:`distst.nn.gcgru`: ONE diffusion expansion of ``X_t`` feeds one matmul into
``3H`` columns (r | u | C), one expansion of ``H_{t-1}`` feeds ``2H`` (r | u), one of
``r . H`` feeds ``H``; each expansion is ``2K`` sparse CSR products with batch and features
folded into the columns (:func:`distst.nn.graphops.spmm`, precomputed transposes for the
backward). The encoder expands a whole known input sequence in one go; state is node-major.

Deviations from the authors' TensorFlow code (liyaguang/DCRNN ``dcrnn_cell.py``), following the
paper's Eq. (2) instead: (1) the code multiplies by the TRANSPOSED transition matrices
(``calculate_random_walk_matrix(adj).T``), i.e. normalises by the neighbour's degree instead of
the node's own; (2) for k >= 2 it uses the Chebyshev-like recursion ``2 P x_{k-1} - x_{k-2}``
(and does not reset ``x_{k-2}`` between the two directions) instead of the plain power
``P^k X``. Both follow the paper here; the parameter count is the same.

Shard mode: row i of ``P_f`` reads node i's OUT-neighbours, row i of ``P_b`` its IN-neighbours,
and both are normalised by node i's own whole-graph degree (``out_degree`` / ``in_degree``).
distst's halos follow incoming paths, so on a directed graph an inner node at a part boundary
can have out-neighbours outside its part's halo; its forward rows then miss those terms (they
are not re-normalised). On symmetric graphs, or with halos grown along both directions, the
inner rows are exactly the full graph's.

Seq2seq (DCRNN Sec. 2.3): stacked DCGRU encoder, its final states initialise a stacked DCGRU
decoder fed its previous output (GO symbol = zeros), a linear projection hidden -> output per
step, scheduled sampling with the engine's inverse-sigmoid schedule. Defaults are the paper's
METR-LA settings: ``max_diffusion_step`` K = 2, 2 layers of 64 units, ``dual_random_walk``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from distst.errors import DiststError
from distst.nn import graphops
from distst.nn.base import GraphSeq2Seq

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
    basis = [x0]
    for op, op_t in supports:
        xk = x0
        for _ in range(K):
            xk = graphops.spmm(op, op_t, xk)  # P^k X = P (P^{k-1} X), [N, M*F]
            basis.append(xk)
    # J x [N, M*F] -> [N, M, J, F] -> [N*M, J*F]
    return torch.stack([t.view(n, m, f) for t in basis], dim=2).view(n * m, len(basis) * f)


class DiffusionOperators(nn.Module):
    """The transition matrices ``P_f`` / ``P_b`` and their transposes as CSR-component buffers.

    Non-persistent buffers, like :class:`distst.nn.gcgru.GraphOperator`: the graph is data,
    rebuilt from the dataset, never checkpointed. ``out_degree`` / ``in_degree`` (float [N],
    optional) are the whole-graph degrees of the local nodes in shard mode.
    """

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
        return [(self._csr(f"p{i}"), self._csr(f"p{i}_t")) for i in range(len(self.directions))]


class DCGRUCell(nn.Module):
    """One DCGRU cell (DCRNN Eq. 4, Sec. 2.3) with fused diffusion convolutions.

    Node-major tensors: ``x [N, B, input_dim]``, ``h [N, B, hidden_size]``; ``supports`` is
    the list of ``(P, P^T)`` pairs from :class:`DiffusionOperators`.

    Parameters (J = 1 + num_supports * K diffusion blocks): ``weight_x [J*input_dim, 3H]``
    (r | u | C), ``weight_hru [J*H, 2H]`` (r | u), ``weight_hc [J*H, H]``, ``bias [3H]``.
    ``weight_x`` rows with ``weight_hru`` (resp. ``weight_hc``) are the input and state rows of
    the paper's single ``Theta`` over ``[X, H]``: the same parameters, split. Initialisation as
    the authors' code: Glorot-uniform over the whole ``Theta`` of a convolution, gate biases 1
    ("start by neither resetting nor updating"), candidate bias 0.
    """

    def __init__(self, input_dim: int, hidden_size: int, K: int = 2, num_supports: int = 2):
        super().__init__()
        if K < 1 or num_supports < 1:
            raise DiststError(f"dcrnn: K={K} (max_diffusion_step) and num_supports="
                              f"{num_supports} must be >= 1 (the paper uses K=2, 2 directions)")
        self.input_dim, self.hidden_size, self.K = input_dim, hidden_size, K
        self.num_blocks = 1 + num_supports * K
        j, h = self.num_blocks, hidden_size
        self.weight_x = nn.Parameter(torch.empty(j * input_dim, 3 * h))
        self.weight_hru = nn.Parameter(torch.empty(j * h, 2 * h))
        self.weight_hc = nn.Parameter(torch.empty(j * h, h))
        self.bias = nn.Parameter(torch.empty(3 * h))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        j, h, f = self.num_blocks, self.hidden_size, self.input_dim
        fan_in = j * (f + h)  # rows of the paper's Theta over [X, H]
        with torch.no_grad():
            for out, w_x, w_h in ((2 * h, self.weight_x[:, :2 * h], self.weight_hru),
                                  (h, self.weight_x[:, 2 * h:], self.weight_hc)):
                a = math.sqrt(6.0 / (fan_in + out))
                w_x.uniform_(-a, a)
                w_h.uniform_(-a, a)
            self.bias[:2 * h].fill_(1.0)
            self.bias[2 * h:].zero_()

    def input_gates(self, supports, x: torch.Tensor) -> torch.Tensor:
        """The input parts ``Theta_{r,u,C}^X *_G X`` (no bias): ``[N, M, F] -> [N, M, 3H]``.

        M may be time*batch: the encoder convolves a whole known input sequence at once. The
        bias and any HyperST scale act on the whole convolution (input + state part), so they
        are applied in :meth:`recur`.
        """
        n, m, _ = x.shape
        feats = diffusion_features(supports, x, self.K)  # [N*M, J*F]
        return (feats @ self.weight_x).view(n, m, 3 * self.hidden_size)

    def recur(self, supports, xg: torch.Tensor, h: torch.Tensor,
              scale_ru: torch.Tensor | None = None,
              scale_c: torch.Tensor | None = None) -> torch.Tensor:
        """The state update given the input part ``xg [N, B, 3H]`` and ``h [N, B, H]``.

        ``scale_ru [N, 2H]`` / ``scale_c [N, H]`` (optional, HyperST-DCGRU): per-node
        channel-wise scales of the gate / candidate diffusion convolutions, applied to the
        convolution output before the bias (HyperST-Net Eq. 4, location-based). None (default)
        is plain DCGRU.
        """
        n, b, hs = h.shape
        ru = xg[..., :2 * hs] + (diffusion_features(supports, h, self.K)
                                 @ self.weight_hru).view(n, b, 2 * hs)  # [N, B, 2H]
        if scale_ru is not None:
            ru = ru * scale_ru[:, None, :]  # [N, 1, 2H] over the batch
        ru = torch.sigmoid(ru + self.bias[:2 * hs])
        r, u = ru[..., :hs], ru[..., hs:]
        c = xg[..., 2 * hs:] + (diffusion_features(supports, r * h, self.K)
                                @ self.weight_hc).view(n, b, hs)  # [N, B, H]
        if scale_c is not None:
            c = c * scale_c[:, None, :]
        c = torch.tanh(c + self.bias[2 * hs:])
        return u * h + (1.0 - u) * c

    def forward(self, supports, x: torch.Tensor, h: torch.Tensor,
                scale_ru: torch.Tensor | None = None,
                scale_c: torch.Tensor | None = None) -> torch.Tensor:
        """One step: ``x [N, B, input_dim]``, ``h [N, B, H]`` -> new ``h [N, B, H]``."""
        return self.recur(supports, self.input_gates(supports, x), h, scale_ru, scale_c)


class DCRNN(GraphSeq2Seq):
    """DCRNN seq2seq forecaster (Li et al. 2018): stacked DCGRU encoder-decoder.

    ``forward(x [B, input_len, N, input_dim], targets=None, teacher_forcing=0.0)
    -> [B, horizon, N, output_dim]`` (see :meth:`distst.nn.base.GraphSeq2Seq.forward`).
    Hyperparameters (paper defaults): ``K = 2`` (max_diffusion_step, k = 0..K), ``hidden_size =
    64``, ``num_layers = 2``, ``filter_type = "dual_random_walk"`` (or ``"random_walk"``: the
    forward walk only). Self loops in the edges are kept (DCRNN uses the adjacency as is); none
    are added. ``out_degree`` / ``in_degree``: whole-graph degrees of the local nodes (shard
    mode), used to normalise ``P_f`` / ``P_b``; None = summed from the given edges.
    """

    model_name = "dcrnn"

    #: diffusion keeps the edge direction: forward and backward random walks (Eq. 2)
    GRAPH = "directed"

    def __init__(
        self,
        *,
        edge_index: torch.Tensor | None = None,
        edge_weight: torch.Tensor | None = None,
        out_degree=None,
        in_degree=None,
        K: int = 2,
        hidden_size: int = 64,
        num_layers: int = 2,
        filter_type: str = "dual_random_walk",
        **sizes,
    ):
        super().__init__(**sizes)
        name = self.model_name
        self.check_sizes(K=K, hidden_size=hidden_size, num_layers=num_layers)
        if filter_type not in FILTER_TYPES:
            raise DiststError(f"{name}: filter_type={filter_type!r} is not supported; choose "
                              f"one of {sorted(FILTER_TYPES)} (for Chebyshev 'laplacian' "
                              "filters use the gcgru model)")
        num_nodes, input_dim, output_dim = self.num_nodes, self.input_dim, self.output_dim
        self.hidden_size, self.num_layers, self.K = hidden_size, num_layers, K
        self.filter_type = filter_type
        directions = FILTER_TYPES[filter_type]
        self.graph = DiffusionOperators(edge_index, edge_weight, num_nodes, directions,
                                        out_degree=out_degree, in_degree=in_degree)
        s = len(directions)
        self.encoder = nn.ModuleList(
            DCGRUCell(input_dim if i == 0 else hidden_size, hidden_size, K, s)
            for i in range(num_layers))
        self.decoder = nn.ModuleList(
            DCGRUCell(output_dim if i == 0 else hidden_size, hidden_size, K, s)
            for i in range(num_layers))
        self.proj = nn.Linear(hidden_size, output_dim)

    def _graph(self):
        return self.graph()

    def _input_gates(self, cell, graph, x, scales):
        return cell.input_gates(graph, x)

    def _recur(self, cell, graph, xg, h, scales):
        if scales is None:
            return cell.recur(graph, xg, h)
        return cell.recur(graph, xg, h, scales["ru"], scales["c"])
