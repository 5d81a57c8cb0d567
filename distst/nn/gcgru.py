"""GCGRU: graph-convolutional GRU encoder-decoder (ST-UNet, Yu et al., Eq. 7 with Eq. 2).

The cell (ST-UNet Eq. 7)::

    z_t  = sigma(W_z *_G X_t + U_z *_G h_{t-1})
    r_t  = sigma(W_r *_G X_t + U_r *_G h_{t-1})
    h'_t = tanh (W_h *_G X_t + U_h *_G (r_t . h_{t-1}))
    h_t  = z_t . h_{t-1} + (1 - z_t) . h'_t

where ``*_G`` is the K-order Chebyshev graph convolution of Eq. (2),
``W *_G X = sum_{k<K} T_k(L~) X W_k``. The input and hidden convolutions are separate, as in
PyTorch Geometric Temporal's ``GConvGRU``, so equal weights give equal outputs.

Speed: the Chebyshev basis of a signal is computed once and shared by every gate that convolves
that signal -- the three input convolutions ``W_{z,r,h} *_G X_t`` form ONE expansion feeding ONE
matmul into ``3H`` outputs, the two hidden convolutions ``U_{z,r} *_G h`` one expansion into
``2H``; stacking the gates' weights column-wise is mathematically the same as separate
convolutions. Each expansion is ``K - 1`` sparse (CSR) products with batch and features folded
into the columns, ``L~ [N, N] @ X [N, B*F]``, then one dense ``[N*B, K*F] @ [K*F, G*H]``.
The state is kept node-major ``[N, B, H]`` inside the model so no step needs a transpose.

The seq2seq wrapper is the DCRNN / ST-UNet design: a stacked GCGRU encoder over ``input_len``
steps whose final states initialise a stacked GCGRU decoder, a linear projection
hidden -> output_dim per step, decoder input = previous output (GO symbol = zeros), with
DCRNN's scheduled sampling during training.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from distst.errors import DiststError
from distst.nn import graphops
from distst.nn.base import GraphSeq2Seq


def cheb_features(op: torch.Tensor, op_t: torch.Tensor | None, x: torch.Tensor,
                  K: int) -> torch.Tensor:
    """Chebyshev basis ``[T_0 X | T_1 X | ... | T_{K-1} X]`` of a node-major signal.

    ``x``: ``[N, M, F]`` (M = batch, or time*batch); returns ``[N*M, K*F]`` whose column
    ``k*F + f`` is feature f of ``T_k(L~) X`` -- the row layout of the stacked weights.
    """
    n, m, f = x.shape
    t0 = x.reshape(n, m * f)  # [N, M*F]: batch and features become columns of one spmm
    basis = [t0]
    if K > 1:
        t1 = graphops.spmm(op, op_t, t0)  # [N, M*F]
        basis.append(t1)
        for _ in range(2, K):
            t2 = 2.0 * graphops.spmm(op, op_t, t1) - t0  # T_k = 2 L~ T_{k-1} - T_{k-2}
            basis.append(t2)
            t0, t1 = t1, t2
    # K x [N, M*F] -> [N, M, K, F] -> [N*M, K*F]
    return torch.stack([t.view(n, m, f) for t in basis], dim=2).view(n * m, K * f)


def _glorot_blocks(w: torch.Tensor, fan_in: int, fan_out: int) -> None:
    """Glorot-uniform per [fan_in, fan_out] block, as PyG ChebConv initialises each T_k weight."""
    a = math.sqrt(6.0 / (fan_in + fan_out))
    nn.init.uniform_(w, -a, a)


class GCGRUCell(nn.Module):
    """One GCGRU cell (ST-UNet Eq. 7) with fused Chebyshev convolutions.

    Tensors are node-major: ``x [N, B, input_dim]``, ``h [N, B, hidden_size]``; the graph
    operator ``op`` is the CSR ``L~`` from :func:`distst.nn.graphops.cheb_operator` and ``op_t``
    its transpose (or None: slower backward).

    Parameters: ``weight_x [K*input_dim, 3H]`` (gates z | r | h), ``bias [3H]``,
    ``weight_hzr [K*H, 2H]`` (z | r), ``weight_hh [K*H, H]``. PyG-Temporal's GConvGRU has a bias
    on both the X- and the h-convolution of each gate; only their sum matters, so there is one.
    """

    def __init__(self, input_dim: int, hidden_size: int, K: int = 3):
        super().__init__()
        if K < 1:
            raise DiststError(f"gcgru: K={K} must be >= 1 (Chebyshev order; the paper uses 3)")
        self.input_dim, self.hidden_size, self.K = input_dim, hidden_size, K
        h = hidden_size
        self.weight_x = nn.Parameter(torch.empty(K * input_dim, 3 * h))
        self.bias = nn.Parameter(torch.empty(3 * h))
        self.weight_hzr = nn.Parameter(torch.empty(K * h, 2 * h))
        self.weight_hh = nn.Parameter(torch.empty(K * h, h))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _glorot_blocks(self.weight_x, self.input_dim, self.hidden_size)
        _glorot_blocks(self.weight_hzr, self.hidden_size, self.hidden_size)
        _glorot_blocks(self.weight_hh, self.hidden_size, self.hidden_size)
        nn.init.zeros_(self.bias)

    def input_gates(self, op, op_t, x: torch.Tensor,
                    scale: torch.Tensor | None = None) -> torch.Tensor:
        """``W_{z,r,h} *_G X + b``: ``x [N, M, input_dim]`` -> ``[N, M, 3H]``.

        M may be time*batch: the encoder convolves a whole known input sequence at once.
        ``scale`` (optional ``[N, 3H]``, HyperST-GCGRU): a per-node channel-wise scale applied
        to the convolution output before the bias, ``diag(z_n) (W *_G X)_n + b`` (HyperST-Net's
        location-based HyperST-Conv, Eq. 4); None (default) leaves the cell unchanged.
        """
        n, m, _ = x.shape
        feats = cheb_features(op, op_t, x, self.K)  # [N*M, K*F]
        if scale is None:
            return torch.addmm(self.bias, feats, self.weight_x).view(n, m, 3 * self.hidden_size)
        conv = (feats @ self.weight_x).view(n, m, 3 * self.hidden_size)
        return torch.addcmul(self.bias, conv, scale[:, None, :])  # [N, 1, 3H] over M

    def recur(self, op, op_t, xg: torch.Tensor, h: torch.Tensor,
              scale_hzr: torch.Tensor | None = None,
              scale_hh: torch.Tensor | None = None) -> torch.Tensor:
        """The state update given the input part ``xg [N, B, 3H]`` and ``h [N, B, H]``.

        ``scale_hzr [N, 2H]`` / ``scale_hh [N, H]`` (optional, HyperST-GCGRU): per-node
        channel-wise scales of the hidden convolutions ``U_{z,r} *_G h`` / ``U_h *_G (r . h)``.
        """
        n, b, hs = h.shape
        hzr = (cheb_features(op, op_t, h, self.K) @ self.weight_hzr).view(n, b, 2 * hs)
        if scale_hzr is not None:
            hzr = hzr * scale_hzr[:, None, :]  # [N, 1, 2H] over the batch
        zr = torch.sigmoid(xg[..., : 2 * hs] + hzr)  # [N, B, 2H]
        z, r = zr[..., :hs], zr[..., hs:]
        hc = (cheb_features(op, op_t, r * h, self.K) @ self.weight_hh).view(n, b, hs)
        if scale_hh is not None:
            hc = hc * scale_hh[:, None, :]
        cand = torch.tanh(xg[..., 2 * hs:] + hc)
        return z * h + (1.0 - z) * cand

    def forward(self, op, op_t, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step: ``x [N, B, input_dim]``, ``h [N, B, H]`` -> new ``h [N, B, H]``."""
        return self.recur(op, op_t, self.input_gates(op, op_t, x), h)

    @torch.no_grad()
    def load_from_gconv_gru(self, ref: nn.Module) -> None:
        """Copy weights from a PyG-Temporal-style GConvGRU (six ChebConv: conv_{x,h}_{z,r,h}).

        ChebConv keeps ``lins[k].weight`` as ``[out, in]``; distst stacks ``weight.T`` blocks
        row-wise by order k and column-wise by gate.
        """
        h, fin, K = self.hidden_size, self.input_dim, self.K
        for g, gate in enumerate("zrh"):
            cx, ch = getattr(ref, f"conv_x_{gate}"), getattr(ref, f"conv_h_{gate}")
            if len(cx.lins) != K or len(ch.lins) != K:
                raise DiststError(f"gcgru: reference cell has K={len(cx.lins)}, this cell K={K}")
            for k in range(K):
                self.weight_x[k * fin:(k + 1) * fin, g * h:(g + 1) * h] = cx.lins[k].weight.T
                if gate == "h":
                    self.weight_hh[k * h:(k + 1) * h, :] = ch.lins[k].weight.T
                else:
                    self.weight_hzr[k * h:(k + 1) * h, g * h:(g + 1) * h] = ch.lins[k].weight.T
            bias = torch.zeros(h)
            for conv in (cx, ch):
                if conv.bias is not None:
                    bias += conv.bias
            self.bias[g * h:(g + 1) * h] = bias


#: ``lambda_max`` choices of the Chebyshev models besides a number, and their default. 2, not
#: the papers' exact value (ST-UNet Eq. 2, STGCN): on Los-loop (lambda_max 1.71) both give avg
#: MAE 4.105 over 3 seeds, PEMS and large road graphs have lambda_max at or within 1% of 2,
#: and the eigen-solve costs minutes at 1M sensors (benchmarks/RESULTS.md, "lambda_max: 2 or
#: exact"). A documented deviation; ``lambda_max: exact`` restores the papers' scaling.
DEFAULT_LAMBDA_MAX: float | str = 2.0
LAMBDA_MAX_CHOICES = ("exact",)


def resolve_lambda_max(model: str, lambda_max, laplacian_lambda_max=None) -> float:
    """``lambda_max`` of ``L~ = 2 L / lambda_max - I`` (ST-UNet Eq. 2) as a number.

    A number is used as given (2 is the upper bound of the normalised Laplacian's spectrum and
    PyG's default); ``"exact"`` asks the engine's ``laplacian_lambda_max()`` for the largest
    eigenvalue of the WHOLE graph's normalised Laplacian (a shard gets the whole-graph value).
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

    def __init__(self, edge_index, edge_weight, num_nodes: int, normalization: str,
                 lambda_max: float = 2.0, degree=None, model: str = "graph convolution"):
        super().__init__()
        self.num_nodes = num_nodes
        graphops.require_symmetric(edge_index, edge_weight, num_nodes, model)
        # degree: optional whole-graph degrees of the local nodes (shard mode), see
        # graphops.cheb_operator; None = summed from these edges (the behaviour before).
        op = graphops.cheb_operator(edge_index, edge_weight, num_nodes, normalization,
                                    lambda_max, degree=degree)
        parts = graphops.csr_parts(op)
        parts_t = graphops.transpose_parts(parts, num_nodes)
        for prefix, p in (("op", parts), ("op_t", parts_t)):
            self.register_buffer(f"{prefix}_crow", p.crow, persistent=False)
            self.register_buffer(f"{prefix}_col", p.col, persistent=False)
            self.register_buffer(f"{prefix}_val", p.val, persistent=False)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.num_nodes
        op = graphops.assemble_csr(graphops.CSRParts(self.op_crow, self.op_col, self.op_val), n)
        op_t = graphops.assemble_csr(
            graphops.CSRParts(self.op_t_crow, self.op_t_col, self.op_t_val), n)
        return op, op_t


class GCGRU(GraphSeq2Seq):
    """GCGRU seq2seq forecaster (ST-UNet Eq. 7 backbone; DCRNN-style encoder-decoder).

    ``forward(x [B, input_len, N, input_dim], targets=None, teacher_forcing=0.0)
    -> [B, horizon, N, output_dim]``; with ``teacher_forcing = p > 0`` each decoder step is fed
    the true previous value (``targets [B, horizon, N, output_dim]``, NaN read as 0) with
    probability p, else its own prediction (DCRNN scheduled sampling; the coin is drawn per step
    whatever the module's train/eval mode -- the engine passes 0 outside training).
    ``node_embedding_dim > 0`` (default 0, not in the paper) appends a learnable per-node
    vector to the encoder inputs; the engine treats it as a per-node parameter
    (``node_parameters``), owned by the shard that owns the node.
    Defaults: K=3, two layers of 64 units (ST-UNet / DCRNN settings); the Laplacian uses
    ``normalization`` ("sym" or "rw") and ``lambda_max`` (:func:`resolve_lambda_max`: a number,
    2 by default = PyG ChebConv's ``L~ = -D^-1/2 A D^-1/2`` without self loops, or ``"exact"``,
    Eq. 2's largest eigenvalue). The graph must be undirected (:class:`GraphOperator`).
    """

    model_name = "gcgru"
    GRAPH = GraphOperator.GRAPH

    def __init__(
        self,
        *,
        edge_index: torch.Tensor | None = None,
        edge_weight: torch.Tensor | None = None,
        out_degree: torch.Tensor | None = None,
        laplacian_lambda_max=None,
        K: int = 3,
        hidden_size: int = 64,
        num_layers: int = 2,
        normalization: str = "sym",
        lambda_max: float | str = DEFAULT_LAMBDA_MAX,
        node_embedding_dim: int = 0,
        **sizes,
    ):
        super().__init__(**sizes)
        name = self.model_name
        self.check_sizes(K=K, hidden_size=hidden_size, num_layers=num_layers)
        self.hidden_size, self.num_layers, self.K = hidden_size, num_layers, K
        if node_embedding_dim < 0:
            raise DiststError(f"{name}: node_embedding_dim={node_embedding_dim} must be >= 0")
        # out_degree: whole-graph degrees of the local nodes (shard mode), so that a shard's
        # inner rows of L~ equal the full graph's for "sym" and "rw" alike
        self.graph = GraphOperator(
            edge_index, edge_weight, self.num_nodes, normalization,
            resolve_lambda_max(name, lambda_max, laplacian_lambda_max), degree=out_degree,
            model=name)
        self.node_embedding_dim = node_embedding_dim
        if node_embedding_dim:
            # Not in the paper (default 0): a learnable per-node vector appended to every
            # encoder input, the usual way to let a shared cell tell sensors apart.
            self.node_emb = nn.Parameter(torch.randn(self.num_nodes, node_embedding_dim) * 0.1)
            self.node_parameters = ("node_emb",)
        self.encoder = nn.ModuleList(
            GCGRUCell(self.input_dim + node_embedding_dim if i == 0 else hidden_size,
                      hidden_size, K)
            for i in range(num_layers))
        self.decoder = nn.ModuleList(
            GCGRUCell(self.output_dim if i == 0 else hidden_size, hidden_size, K)
            for i in range(num_layers))
        self.proj = nn.Linear(hidden_size, self.output_dim)

    def _graph(self):
        return self.graph()

    def _encoder_input(self, seq: torch.Tensor) -> torch.Tensor:
        if not self.node_embedding_dim:
            return seq
        n, t, b, _ = seq.shape
        # [N, d] -> [N, T, B, d], appended to the features of every step
        emb = self.node_emb[:, None, None, :].expand(n, t, b, self.node_embedding_dim)
        return torch.cat([seq, emb], dim=-1)

    def _input_gates(self, cell, graph, x, scales):
        op, op_t = graph
        return cell.input_gates(op, op_t, x, None if scales is None else scales["x"])

    def _recur(self, cell, graph, xg, h, scales):
        op, op_t = graph
        if scales is None:
            return cell.recur(op, op_t, xg, h)
        return cell.recur(op, op_t, xg, h, scales["hzr"], scales["hh"])
