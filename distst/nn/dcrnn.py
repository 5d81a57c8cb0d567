"""DCRNN: diffusion-convolutional recurrent neural network (Li et al., ICLR 2018).

Diffusion convolution (DCRNN Eq. 2), bidirectional ("dual_random_walk")::

    X *_G f = sum_{k=0}^{K} ( theta_{k,1} P_f^k + theta_{k,2} P_b^k ) X,
    P_f = D_O^-1 W   (forward random walk),   P_b = D_I^-1 W^T   (backward random walk),

with ``K`` = ``max_diffusion_step`` as in the authors' code (the paper writes the sum up to
``K - 1`` for K terms; ``K = 2`` here means powers 0, 1, 2) and the ``k = 0`` term (the
identity, identical for both directions) counted once, as the code does, so a
signal with F features expands into ``1 + 2K`` blocks ``[X | P_f X | P_f^2 X | P_b X | P_b^2 X]``
(the authors' code's block order) multiplied by one stacked weight ``[(1 + 2K) F, out]``.
``W_ij`` is the weight of the edge ``i -> j``; see :func:`distst.nn.layers.graph.random_walk_operator`.

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
folded into the columns (:func:`distst.nn.layers.graph.spmm`, precomputed transposes for the
backward). The encoder expands a whole known input sequence in one go; state is node-major.

Deviations from the authors' TensorFlow code (liyaguang/DCRNN ``dcrnn_cell.py``), following the
paper's Eq. (2) instead: (1) the code multiplies by the TRANSPOSED transition matrices
(``calculate_random_walk_matrix(adj).T``), i.e. normalises by the neighbour's degree instead of
the node's own; (2) for k >= 2 it uses the Chebyshev-like recursion ``2 P x_{k-1} - x_{k-2}``
(and does not reset ``x_{k-2}`` between the two directions) instead of the plain power
``P^k X``. Both follow the paper here; the parameter count is the same.

A split graph: row i of ``P_f`` reads node i's OUT-neighbours, row i of ``P_b`` its IN-neighbours,
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

from torch import nn

from distst.errors import DiststError
from distst.nn.base import GraphSeq2Seq
from distst.nn.layers.cells import DCGRUCell
from distst.nn.layers.diffusion import FILTER_TYPES, DiffusionOperators

class DCRNN(GraphSeq2Seq):
    """DCRNN seq2seq forecaster (Li et al. 2018): stacked DCGRU encoder-decoder.

    ``forward(x [B, input_len, N, input_dim], targets=None, teacher_forcing=0.0)
    -> [B, horizon, N, output_dim]`` (see :meth:`distst.nn.base.GraphSeq2Seq.forward`).
    Hyperparameters (paper defaults): ``K = 2`` (max_diffusion_step, k = 0..K), ``hidden_size =
    64``, ``num_layers = 2``, ``filter_type = "dual_random_walk"`` (or ``"random_walk"``: the
    forward walk only). Self loops in the edges are kept (DCRNN uses the adjacency as is); none
    are added. ``out_degree`` / ``in_degree``: whole-graph degrees of the local nodes (a part
    mode), used to normalise ``P_f`` / ``P_b``; None = summed from the given edges.
    """

    OPERATOR_READS = True
    #: a filter's products in a row on one input (distst.nn.registry.boundary_depth)
    FILTER_CHAIN = ("K", 0)

    model_name = "dcrnn"

    #: diffusion keeps the edge direction: forward and backward random walks (Eq. 2)
    GRAPH = "directed"

    def __init__(self, *, K: int = 2, hidden_size: int = 64, num_layers: int = 2,
                 filter_type: str = "dual_random_walk", **sizes):
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
        g = self.graph_input
        self.graph = DiffusionOperators(g.edge_index, g.edge_weight, num_nodes, directions,
                                        out_degree=g.out_degree, in_degree=g.in_degree)
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

    def _features(self, cell, graph, x):
        return cell.features(graph, x)

    def _input_gates(self, cell, graph, x, scales, feats=None, shape=None):
        return cell.input_gates(graph, x, feats=feats, shape=shape)

    def _recur(self, cell, graph, xg, h, scales, feats_h=None):
        if scales is None:
            return cell.recur(graph, xg, h, feats_h=feats_h)
        return cell.recur(graph, xg, h, scales["ru"], scales["c"], feats_h=feats_h)
