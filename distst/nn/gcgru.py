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

import torch
from torch import nn

from distst.errors import DiststError
from distst.nn.base import GraphSeq2Seq
from distst.nn.common import node_parameter
from distst.nn.layers.cells import GCGRUCell
from distst.nn.layers.graph import DEFAULT_LAMBDA_MAX, GraphOperator


class GCGRU(GraphSeq2Seq):
    """GCGRU seq2seq forecaster (ST-UNet Eq. 7 backbone; DCRNN-style encoder-decoder).

    ``forward(x [B, input_len, N, input_dim], targets=None, teacher_forcing=0.0)
    -> [B, horizon, N, output_dim]``; with ``teacher_forcing = p > 0`` each decoder step is fed
    the true previous value (``targets [B, horizon, N, output_dim]``, NaN read as 0) with
    probability p, else its own prediction (DCRNN scheduled sampling; the coin is drawn per step
    whatever the module's train/eval mode -- the engine passes 0 outside training).
    ``node_embedding_dim > 0`` (default 0, not in the paper) appends a learnable per-node
    vector to the encoder inputs; the engine treats it as a per-node parameter
    (``node_parameters``), owned by the part that owns the node.
    Defaults: K=3, two layers of 64 units (ST-UNet / DCRNN settings); the Laplacian uses
    ``normalization`` ("sym" or "rw") and ``lambda_max`` (:func:`resolve_lambda_max`: a number,
    2 by default = PyG ChebConv's ``L~ = -D^-1/2 A D^-1/2`` without self loops, or ``"exact"``,
    Eq. 2's largest eigenvalue). The graph must be undirected (:class:`GraphOperator`).
    """

    OPERATOR_READS = True
    #: a filter's products in a row on one input (distst.nn.registry.boundary_depth)
    FILTER_CHAIN = ("K", -1)

    model_name = "gcgru"
    GRAPH = GraphOperator.GRAPH

    def __init__(self, *, K: int = 3, hidden_size: int = 64, num_layers: int = 2,
                 normalization: str = "sym", lambda_max: float | str = DEFAULT_LAMBDA_MAX,
                 node_embedding_dim: int = 0, **sizes):
        super().__init__(**sizes)
        name = self.model_name
        self.check_sizes(K=K, hidden_size=hidden_size, num_layers=num_layers)
        self.hidden_size, self.num_layers, self.K = hidden_size, num_layers, K
        if node_embedding_dim < 0:
            raise DiststError(f"{name}: node_embedding_dim={node_embedding_dim} must be >= 0")
        # A split graph: normalised with the whole-graph degrees, so that a part's inner rows of
        # L~ equal the full graph's for "sym" and "rw" alike
        self.graph = self.chebyshev(normalization, lambda_max)
        self.node_embedding_dim = node_embedding_dim
        if node_embedding_dim:
            # Not in the paper (default 0): a learnable per-node vector appended to every
            # encoder input, the usual way to let a shared cell tell sensors apart.
            self.node_emb = node_parameter(self.num_nodes, node_embedding_dim)
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

    def _features(self, cell, graph, x):
        op, op_t = graph
        return cell.features(op, op_t, x)

    def _input_gates(self, cell, graph, x, scales, feats=None, shape=None):
        op, op_t = graph
        return cell.input_gates(op, op_t, x, None if scales is None else scales["x"],
                                feats=feats, shape=shape)

    def _recur(self, cell, graph, xg, h, scales, feats_h=None):
        op, op_t = graph
        if scales is None:
            return cell.recur(op, op_t, xg, h, feats_h=feats_h)
        return cell.recur(op, op_t, xg, h, scales["hzr"], scales["hh"], feats_h=feats_h)
