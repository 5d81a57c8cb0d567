"""ST-UNet: a spatio-temporal U-Net over a GCGRU seq2seq backbone (Yu, Yin, Zhu, "ST-UNet: A
Spatio-Temporal U-Network for Graph-structured Time Series Modeling", Sec. 3.2-3.4, Fig. 1).

Building blocks, each from the paper:

* GCGRU cells (Eq. 7) with K-order Chebyshev graph convolution (Eq. 2) at every level:
  :class:`distst.nn.gcgru.GCGRUCell`, reused as is.
* ST-Pool, spatial part (Eq. 4-6): the graph is coarsened ``p`` levels by GPA (Algorithm 1,
  computed outside the model and passed as the ``coarsening`` data key), so each super-node
  holds up to ``2^p`` nodes; the features of its members are reduced by max or mean per
  channel (Eq. 6). The partition is fixed, so the same pooling applies at every time step.
* ST-Pool, temporal part (Eq. 8): the recurrent layer below a pool is dilated,
  ``c_t = g(X_t, c_{t-s})``; its ``s`` interleaved chains run as ``s`` extra batch rows over
  ``ceil(T / s)`` steps (the dilated-RNN trick: fewer sequential steps, not more work).
* ST-Unpool (Sec. 3.3): spatially the reversed map ``f'`` puts every super-node's features back
  on each of its members -- every node exactly once -- by "copy" (direct copy), "ordered"
  (ordered deconvolution) or "weighted" (weighted deconvolution); temporally the unpooled
  sequence feeds a recurrent layer WITHOUT dilation, which restores regular intervals.
* Skip concatenation of the same-level contracting features with the unpooled ones, and one
  final graph convolution (Sec. 3.4) producing the prediction.

Layout of one U-stack, ``depth`` = D ST-Pool/ST-Unpool pairs (Fig. 1 is D = 1)::

    down_0 (level 0, dilation 1) -> pool -> down_1 (stage 1, s) -> ... -> pool
        -> bottom (stage D, dilation s^D)
    -> unpool -> concat(skip of down_{D-1}) -> up_{D-1} (stage D-1, dilation 1) -> ...
    -> unpool -> concat(skip of down_0) -> up_0 (level 0, dilation 1) -> final graph conv

i.e. ``2 D + 1`` GCGRU layers. Stage ``k`` is GPA level ``k * p`` (each ST-Pool is
``gPartition(G, p)``, Eq. 4). The model is a seq2seq forecaster like its GCGRU backbone: an
encoder U-stack reads the ``input_len`` steps; a decoder U-stack of the same shape, each layer
started from the final state(s) of the same encoder layer, emits ``horizon`` steps
autoregressively (GO symbol = zeros, DCRNN scheduled sampling with ``teacher_forcing``).

Ablation variants of Sec. 4.3 / Table 2 (no boolean switches needed):

* plain (the backbone "GCGRU"): ``levels=0, dilation=1``. Both pools are then identities and
  the U-stack degenerates to ``2 D + 1`` stacked GCGRU layers with no skip concatenation and a
  linear output layer: the module has exactly :class:`~distst.nn.gcgru.GCGRU`'s parameters
  (same state-dict keys and shapes, ``num_layers = 2 D + 1``) and computes the same function.
* T-UNet: ``levels=0, dilation=s`` (temporal pooling only; the skip concatenation and the final
  graph convolution stay).
* S-UNet: ``levels=p, dilation=1`` (spatial pooling only).
* ST-UNet: ``levels=p, dilation=s`` (the default, p = s = 2 as in Sec. 4.2).

Where the paper is ambiguous, this implementation chooses:

1. ``p`` is the coarsening depth of ONE ST-Pool (Eq. 4, ``N' ~ N / 2^p``), not the number of
   pools: Fig. 1's caption describes three GCGRU layers, one ST-Pool and one ST-Unpool, and the
   graph "coarsened into nearly a quarter of its original size at the level 2". So the default
   is ``depth=1`` (3 layers per U-stack) and ``coarsening(depth * levels)`` is requested;
   only every ``p``-th level becomes a stage (its parent maps are composed).
2. With ``depth > 1`` the dilation compounds, ``s^k`` at stage k (multi-resolution, as in the
   dilated RNNs the paper cites); ``depth=1`` uses just ``s``.
3. The U shape is applied to both the encoder and the decoder (the paper says ST-UNet uses
   GCGRU "as its backbone", a seq2seq model; it does not say which half gets the U).
   A dilated decoder layer continues its encoder layer's chains: decoder step ``T + j`` reads
   the state of time ``T + j - s``, from the encoder's last ``s`` states while ``j < s``.
4. The final graph convolution is a K-order Chebyshev convolution of the top level-0 hidden
   state to ``output_dim`` at every decoder step. In the plain variant it is a linear layer
   (the backbone's): with no pooling there are no scales for it to fuse, and Table 2 names the
   plain variant "GCGRU".
5. Ordered deconvolution: members of a super-node are ranked by weighted degree (descending,
   ties by index; whole-graph degrees at level 0 when ``out_degree`` is given) and rank ``r``
   gets its own linear map ``W_r [H, H] + b_r`` of the super-node's features -- the graph
   analogue of a stride-``2^p`` transposed convolution, with ``R = 2^p`` ranks so parameter
   shapes never depend on the graph. ``W_r`` starts at the identity (``b_r = 0``), i.e. at
   direct copy: the paper reports the deconvolutions converge worse (Table 3).
6. Weighted deconvolution: ordered deconvolution plus, concatenated to each node's features,
   a fixed structural vector ``[R]``: the edge weights from the node to each (rank-ordered)
   fellow member inside its super-node, divided by the largest such weight of the super-node.
   It is not passed through a learned embedding: the next layer's input convolution is linear
   already.
7. Direct copy is the default: Sec. 4.2 uses it and Table 3 finds it best.
8. Layer normalisation (Sec. 4.2: "the schedule sampling and layer normalization are utilized
   in training for better generalization"; ``layer_norm=True``, the default): the paper does
   not say where, so every GCGRU layer's output is normalised (LayerNorm with a learned gain
   and bias, Ba et al. 2016) over its H features before it feeds anything -- the next layer,
   the skip, the ST-Pool or the output -- while the recurrent state stays as the cell
   computed it (Eq. 7 unchanged). The statistics are per node, sample and step, never across
   nodes, so the model stays node-permutation equivariant and a split graph stays exact. The
   encoder's top layer output feeds nothing (only its states continue in the decoder), so it
   has no norm. ``layer_norm=False`` is the model before this switch; the plain variant is
   exactly GCGRU only then. (The paper's loss is the mean of L1 and L2 on the normalised
   scale: ``train.loss=mae_mse``, ``train.loss_scale=normalized`` in the preset.)

A split graph: ``coarsening`` is GPA run on the model's LOCAL graph (part + halo), so super-nodes
never span two parts; ``out_degree`` (whole-graph degrees) normalises the level-0 operator as
GCGRU does, coarse operators are normalised from their own (local) edges. ``in_degree`` is
accepted for the engine's data contract and unused (the Chebyshev operator needs out-degrees).
A graph split from outside the model with a boundary (:meth:`STUNet.attach_boundary`): every
stage's graph convolution takes its boundary rows from their owners. Super-nodes stay inside parts: each worker runs GPA on its own
nodes' subgraph and contracts every edge at them, cut edges included. So the model equals one
process on the whole graph whose coarsening is GPA per part
(``GraphCoarsening.within(parts)``, each part's nodes in ascending order; GPA breaks ties by
position, so parts stored in another order, ``partition.order: rcm``, give other super-nodes);
a whole-graph GPA, as ``--local`` uses, may merge nodes of two parts and is a different
(equally valid) pooling.
Graph operators and pooling maps are non-persistent buffers: checkpoints hold weights only,
and every parameter shape is independent of the graph.
"""

from __future__ import annotations

import torch
from torch import nn

from distst.errors import DiststError
from distst.nn.base import GraphModel, decode, node_major_truth, to_batch_major
from distst.nn.layers.cells import GCGRUCell
from distst.nn.layers.graph import (
    DEFAULT_LAMBDA_MAX,
    GraphOperator,
    cheb_features,
    glorot_blocks,
)

POOLS = ("max", "mean")
UNPOOLS = ("copy", "ordered", "weighted")


def _pool(x: torch.Tensor, index: torch.Tensor, size: torch.Tensor, mode: str,
          num_coarse: int) -> torch.Tensor:
    """gPooling (Eq. 5-6): ``x [N_fine, ..., F]`` -> ``[N_coarse, ..., F]``, max or mean over
    members (the middle dims are batch or time x batch).

    ``index [N_fine]`` is each node's super-node, ``size [N_coarse]`` (float) its member count.
    """
    shape = x.shape
    x = x.reshape(shape[0], -1, shape[-1])  # [N_fine, ..., F] -> [N_fine, M, F]
    n, m, f = x.shape
    if mode == "mean":
        out = x.new_zeros(num_coarse, m, f).index_add(0, index, x) / size[:, None, None]
    else:
        # every super-node has >= 1 member (checked in __init__), so include_self=False
        # never leaves the zero fill in the result
        out = x.new_zeros(num_coarse, m, f).scatter_reduce(
            0, index[:, None, None].expand(n, m, f), x, reduce="amax", include_self=False)
    return out.view(num_coarse, *shape[1:])  # [N_coarse, M, F] -> [N_coarse, ..., F]


class Unpool(nn.Module):
    """Spatial ST-Unpool (Sec. 3.3): super-node features back onto each member node, once.

    ``mode``: "copy" (direct copy, no parameters), "ordered" (ordered deconvolution: one
    ``[H, H]`` map per degree rank, ``ranks`` of them) or "weighted" (ordered + the member's
    fixed structural vector ``[ranks]`` concatenated; ``out_dim = H + ranks``).
    """

    def __init__(self, mode: str, hidden_size: int, ranks: int):
        super().__init__()
        self.mode, self.hidden_size, self.ranks = mode, hidden_size, ranks
        self.out_dim = hidden_size + (ranks if mode == "weighted" else 0)
        if mode != "copy":
            h = hidden_size
            # [H, R*H]: column block r is W_r, so one matmul serves every rank
            self.weight = nn.Parameter(torch.eye(h).repeat(1, ranks))
            self.bias = nn.Parameter(torch.zeros(ranks, h))

    def forward(self, x: torch.Tensor, parent: torch.Tensor, by_rank: torch.Tensor,
                counts: list[int], inverse: torch.Tensor,
                struct: torch.Tensor | None) -> torch.Tensor:
        """``x [N_coarse, ..., H]`` -> ``[N_fine, ..., out_dim]`` (middle dims: batch, or
        time x batch).

        ``parent [N_fine]``: super-node of each node; ``by_rank [N_fine]``: the nodes sorted by
        rank, ``counts[r]`` of them with rank r; ``inverse``: back to node order;
        ``struct [N_fine, R]``: weighted deconvolution's structural vectors.
        """
        if self.mode == "copy":
            return x.index_select(0, parent)
        h = self.hidden_size
        # copies in rank order: [N_fine, ..., H], then rank r's nodes through W_r; plain
        # gathers and one matmul per rank (an advanced-index gather's backward is far slower)
        xs = x.index_select(0, parent.index_select(0, by_rank))
        ys = [torch.addmm(self.bias[r], c.reshape(-1, h), self.weight[:, r * h:(r + 1) * h])
              .view(c.shape) for r, c in enumerate(xs.split(counts, 0)) if c.shape[0]]
        y = torch.cat(ys).index_select(0, inverse)  # rank order -> node order
        if self.mode == "weighted":
            # [N_fine, R] -> [N_fine, ..., R], appended to the features of every row
            s = struct.view(struct.shape[0], *([1] * (x.dim() - 2)), self.ranks)
            y = torch.cat([y, s.expand(*y.shape[:-1], self.ranks).to(y.dtype)], dim=-1)
        return y


def _contract(ei: torch.Tensor, ew: torch.Tensor, parent: torch.Tensor, num_owned: int,
              coarse) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A split graph: the coarser graph's edges at own super-nodes and its out-degrees.

    ``ei [2, E], ew [E]``: the finer local graph, whose edges at the ``num_owned`` own nodes
    (the first rows) are complete; ``parent [N_fine_local]``: the coarse local row of each
    fine row (``coarse``: the coarse graph's boundary). Edges inside a super-node vanish,
    parallel ones add up (GPA's contraction). An own super-node's degree is summed from its
    edges; the other rows' degrees come from their owners."""
    own = (ei[0] < num_owned) | (ei[1] < num_owned)
    r, c, w = parent[ei[0][own]], parent[ei[1][own]], ew[own].double()
    keep = r != c
    n = coarse.num_local
    key, inverse = torch.unique(r[keep] * n + c[keep], return_inverse=True)
    weight = torch.zeros(len(key), dtype=torch.float64).index_add_(0, inverse, w[keep])
    cei = torch.stack([key // n, key % n])
    # summed from the float32 weights the operator will hold, as a one-process run does
    degree = torch.zeros(n, dtype=torch.float64).index_add_(0, cei[0], weight.float().double())
    degree[coarse.num_inner:] = 0.0
    degree = coarse.fetch(degree.to(coarse.recv_rows.device)).cpu()
    return cei, weight, degree


class STUNet(GraphModel):
    """ST-UNet seq2seq forecaster (see the module docstring for the architecture and choices).

    ``forward(x [B, input_len, N, input_dim], targets=None, teacher_forcing=0.0)
    -> [B, horizon, N, output_dim]``, the same contract as :class:`~distst.nn.gcgru.GCGRU`.

    ``coarsening(levels) -> [(parent [N_{l-1}], edge_index [2, E_l], edge_weight [E_l], N_l),
    ...]`` for l = 1..levels (GPA, Algorithm 1, on the model's local graph); it is called once,
    with ``depth * levels``, and never when ``levels == 0``.

    Hyperparameters (paper defaults, Sec. 4.2): ``K=3``, ``hidden_size=64``, ``levels`` (p) = 2,
    ``dilation`` (s) = 2, ``depth=1`` (one ST-Pool/ST-Unpool pair, Fig. 1: 3 GCGRU layers per
    U-stack), ``pool="max"``, ``unpool="copy"`` (the paper's best, Table 3), ``normalization``
    of the Laplacian ("sym" or "rw", as GCGRU), ``layer_norm=True`` (Sec. 4.2, per node over
    the features of each layer's output; choice 8). Plain = ``levels=0, dilation=1`` (exactly
    GCGRU with ``layer_norm=False``); T-UNet = ``levels=0, dilation=s``; S-UNet =
    ``levels=p, dilation=1``.
    """

    model_name = "stunet"
    GRAPH = GraphOperator.GRAPH
    #: every neighbour read is routed, with partition-local coarsening (:meth:`attach_boundary`)
    OPERATOR_READS = True
    RECURRENT = True

    def __init__(self, *, coarsening=None, K: int = 3, hidden_size: int = 64, levels: int = 2,
                 dilation: int = 2, depth: int = 1, pool: str = "max", unpool: str = "copy",
                 normalization: str = "sym", layer_norm: bool = True,
                 lambda_max: float | str = DEFAULT_LAMBDA_MAX, **sizes):
        super().__init__(**sizes)
        self.check_sizes(K=K, hidden_size=hidden_size, dilation=dilation, depth=depth)
        num_nodes, input_dim, output_dim = self.num_nodes, self.input_dim, self.output_dim
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 0:
            raise DiststError(f"stunet: levels={levels!r} must be an integer >= 0 (p, the GPA "
                              "coarsening levels of one ST-Pool; 0 = no spatial pooling, the "
                              "paper uses 2); fix model.params.levels")
        if pool not in POOLS:
            raise DiststError(f"stunet: pool={pool!r} is not supported; choose one of "
                              f"{list(POOLS)} (model.params.pool)")
        if unpool not in UNPOOLS:
            raise DiststError(f"stunet: unpool={unpool!r} is not supported; choose one of "
                              f"{list(UNPOOLS)} (model.params.unpool; the paper's best is copy)")
        if not isinstance(layer_norm, bool):
            raise DiststError(f"stunet: layer_norm={layer_norm!r} must be true or false "
                              "(model.params.layer_norm; Sec. 4.2 uses it)")
        self.K, self.hidden_size, self.levels, self.dilation = K, hidden_size, levels, dilation
        self.depth, self.pool_mode, self.unpool_mode = depth, pool, unpool
        # plain: no ST-Pool in space or time, so the U degenerates to stacked GCGRU layers
        self.plain = levels == 0 and dilation == 1
        self.spatial = levels > 0
        d = depth
        self.num_layers = 2 * d + 1
        # per layer (down_0..down_{D-1}, bottom, up_{D-1}..up_0): its stage and dilation
        if self.plain:
            self.layer_stage = [0] * self.num_layers
            self.layer_dilation = [1] * self.num_layers
        else:
            self.layer_stage = list(range(d + 1)) + list(range(d - 1, -1, -1))
            self.layer_dilation = [dilation ** k for k in range(d + 1)] + [1] * d

        # -- graphs: stage 0 is the model's own graph; stage k is GPA level k * p ------------
        # lambda_max applies to the input graph; coarse levels keep the bound 2: their graphs
        # are built per worker (GPA on the local graph), so no whole-graph value exists
        self.graphs = nn.ModuleList([self.chebyshev(normalization, lambda_max)])
        self.stage_nodes = [num_nodes]
        self._rank_counts: list[list[int]] = []
        self.ranks = 2 ** levels
        self.normalization = normalization
        #: kept for a split graph, which coarsens again once its boundary is attached
        self._coarsening = coarsening if self.spatial else None
        self._unpool_degree = self.graph_input.out_degree if self.spatial else None
        if self.spatial:
            g = self.graph_input
            self._build_stages(self._hierarchy(coarsening), g.edge_index, g.edge_weight,
                               g.out_degree)

        # -- cells ------------------------------------------------------------------------
        unpool_dim = hidden_size + (self.ranks if unpool == "weighted" and self.spatial else 0)

        def cell_inputs(first: int) -> list[int]:
            dims = []
            for i in range(self.num_layers):
                if i == 0:
                    dims.append(first)
                elif self.plain or i <= d:
                    dims.append(hidden_size)
                else:  # up layer: unpooled features + same-level skip features
                    dims.append(unpool_dim + hidden_size)
            return dims

        self.encoder = nn.ModuleList(GCGRUCell(f, hidden_size, K)
                                     for f in cell_inputs(input_dim))
        self.decoder = nn.ModuleList(GCGRUCell(f, hidden_size, K)
                                     for f in cell_inputs(output_dim))
        if self.spatial and unpool != "copy":
            # one per ST-Unpool (up_{D-1}..up_0 order) in each U-stack
            self.enc_unpool = nn.ModuleList(Unpool(unpool, hidden_size, self.ranks)
                                            for _ in range(d))
            self.dec_unpool = nn.ModuleList(Unpool(unpool, hidden_size, self.ranks)
                                            for _ in range(d))
        self.layer_norm = layer_norm
        if layer_norm:
            # choice 8: one LayerNorm per layer output that feeds something; the encoder's top
            # layer feeds only its states to the decoder (an unused norm would break DDP)
            self.enc_norm = nn.ModuleList(nn.LayerNorm(hidden_size)
                                          for _ in range(self.num_layers - 1))
            self.dec_norm = nn.ModuleList(nn.LayerNorm(hidden_size)
                                          for _ in range(self.num_layers))
        if self.plain:
            self.proj = nn.Linear(hidden_size, output_dim)
        else:
            # final graph convolution (Sec. 3.4): K-order Chebyshev, hidden -> output_dim
            self.out_weight = nn.Parameter(torch.empty(K * hidden_size, output_dim))
            self.out_bias = nn.Parameter(torch.zeros(output_dim))
            glorot_blocks(self.out_weight, hidden_size, output_dim)

    # -- construction helpers ------------------------------------------------------------
    def _hierarchy(self, coarsening, **kwargs) -> list:
        p, d = self.levels, self.depth
        if coarsening is None or not callable(coarsening):
            raise DiststError(
                f"stunet: levels={p} needs the 'coarsening' data key (a callable levels -> "
                f"list of (parent, edge_index, edge_weight, num_nodes), GPA on the local graph), "
                f"got {type(coarsening).__name__}; let the engine pass it, or set "
                "model.params.levels=0 (no spatial pooling)")
        want = d * p
        hier = list(coarsening(want, **kwargs))
        if len(hier) != want:
            raise DiststError(f"stunet: coarsening({want}) returned {len(hier)} levels, "
                              f"expected {want} (depth={d} x levels={p}); fix the coarsening")
        return hier

    def _build_stages(self, hier: list, edge_index, edge_weight, out_degree) -> None:
        """Pooling maps and coarse operators of every stage from the per-level ``hier``
        (``(parent, edge_index, edge_weight, num_nodes[, degree])``; ``degree``, the coarse
        nodes' out-degrees, when the local edges do not give them: a split graph)."""
        p, d = self.levels, self.depth
        fine_ei, fine_ew, fine_n = edge_index, edge_weight, self.num_nodes
        fine_deg = out_degree
        level_n = self.num_nodes
        for k in range(d):
            index = torch.arange(fine_n)
            for lvl in range(k * p, (k + 1) * p):
                item = hier[lvl]
                if len(item) not in (4, 5):
                    raise DiststError(f"stunet: coarsening level {lvl + 1} is a "
                                      f"{len(item)}-tuple, expected (parent, edge_index, "
                                      "edge_weight, num_nodes)")
                parent, ei, ew, n, *degree = item
                parent = torch.as_tensor(parent).long()
                n = int(n)
                if parent.shape != (level_n,) or (level_n and (
                        int(parent.min()) < 0 or int(parent.max()) >= n)):
                    raise DiststError(
                        f"stunet: coarsening level {lvl + 1}: parent has shape "
                        f"{list(parent.shape)} and values outside [0, {n}) or not one per "
                        f"level-{lvl} node ({level_n}); fix the coarsening")
                if not bool((torch.bincount(parent, minlength=n) > 0).all()):
                    raise DiststError(f"stunet: coarsening level {lvl + 1} has super-nodes "
                                      "without members; every level-l node needs >= 1 member")
                index = parent[index]  # stage-k node -> level lvl+1 node
                level_n = n
            # stage k -> k + 1 pooling map (p levels composed)
            size = torch.bincount(index, minlength=level_n)
            if self.unpool_mode != "copy" and int(size.max()) > self.ranks:
                raise DiststError(
                    f"stunet: a super-node of stage {k + 1} has {int(size.max())} members, more "
                    f"than 2^levels = {self.ranks}; unpool={self.unpool_mode!r} needs a "
                    "matching-based coarsening (GPA halves each level) or use unpool='copy'")
            rank, struct = self._ranks(index, level_n, fine_ei, fine_ew, fine_n, fine_deg)
            self.register_buffer(f"pool_index_{k}", index, persistent=False)
            self.register_buffer(f"pool_size_{k}", size.float(), persistent=False)
            self.register_buffer(f"unpool_rank_{k}", rank, persistent=False)
            by_rank = torch.sort(rank, stable=True).indices
            self.register_buffer(f"unpool_by_rank_{k}", by_rank, persistent=False)
            self.register_buffer(f"unpool_inverse_{k}", torch.argsort(by_rank), persistent=False)
            # a plain list (not a buffer): split sizes must be Python ints
            self._rank_counts.append(torch.bincount(rank, minlength=self.ranks).tolist())
            self.register_buffer(f"unpool_struct_{k}", struct, persistent=False)
            fine_ei, fine_ew, fine_n = ei, ew, level_n
            fine_deg = degree[0] if degree else None
            self.graphs.append(GraphOperator(ei, ew, level_n, self.normalization,
                                             degree=fine_deg))
            self.stage_nodes.append(level_n)

    def attach_boundary(self, boundary) -> int:
        """A graph split from outside the model (a strategy calls this): the input
        graph's operator gets the ``boundary``, and the coarse stages are built again so that
        every stage is exact too. Each worker coarsens its own nodes alone (GPA on its
        part's subgraph: super-nodes never span parts). A stage's local graph is its own
        super-nodes plus the super-nodes next to them. Its edges are contracted from the
        finer level's edges at own nodes, so an own row is complete. The neighbours'
        degrees come from their owners, and the stage's operator gets a boundary of its own
        (``boundary.coarsen``). The one-process equivalent is this model with
        ``coarsening.within(parts)`` (:class:`distst.graph.coarsening.GraphCoarsening`).
        Returns how many operators got a boundary."""
        self.graphs[0].boundary = boundary
        if not self.spatial:
            return 1
        device, dtype = self.graphs[0].op_val.device, self.graphs[0].op_val.dtype
        fine = self._coarsening.undirected()  # the local graph as GPA reads it
        ei, ew = fine
        owned = self._hierarchy(self._coarsening, owned=boundary.num_inner)
        hier, boundaries, ex = [], [], boundary
        for parent, _, _, n_owned in owned:
            coarse, parent_local = ex.coarsen(parent, n_owned)
            ei, ew, degree = _contract(ei, ew, parent_local, ex.num_inner, coarse)
            hier.append((parent_local, ei, ew.float(), coarse.num_local, degree))
            boundaries.append(coarse)
            ex = coarse
        self.graphs = nn.ModuleList([self.graphs[0]])
        self.stage_nodes, self._rank_counts = [self.num_nodes], []
        # level-0 degrees for the unpool ranks: the whole graph's (kept from construction)
        self._build_stages(hier, fine[0], fine[1], self._unpool_degree)
        for k in range(1, self.depth + 1):
            self.graphs[k].boundary = boundaries[k * self.levels - 1]
        self.to(device=device, dtype=dtype)
        return self.depth + 1

    def _ranks(self, index, num_coarse, ei, ew, n, degree):
        """Degree rank of each node inside its super-node, and the structural vectors of
        weighted deconvolution (choices 5 and 6 of the module docstring)."""
        if ei is None:
            ei = torch.zeros(2, 0, dtype=torch.long)
        ei = torch.as_tensor(ei).long()
        ew = torch.ones(ei.shape[1]) if ew is None else torch.as_tensor(ew).double()
        keep = ei[0] != ei[1]
        src, dst, w = ei[0][keep], ei[1][keep], ew[keep].double()
        if degree is None:
            deg = torch.zeros(n, dtype=torch.float64).index_add_(0, src, w)
        else:
            deg = torch.as_tensor(degree, dtype=torch.float64)
        # order by (super-node, degree descending, index): two stable sorts on an id order
        order = torch.sort(-deg, stable=True).indices
        order = order[torch.sort(index[order], stable=True).indices]
        counts = torch.bincount(index, minlength=num_coarse)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.empty(n, dtype=torch.long)
        rank[order] = torch.arange(n) - starts[index[order]]
        struct = torch.zeros(n, self.ranks, dtype=torch.float64)
        inside = index[src] == index[dst]
        if self.unpool_mode == "weighted" and bool(inside.any()):
            s, t, ww = src[inside], dst[inside], w[inside]
            # symmetric: a directed level-0 graph still gives both ends the link
            struct.index_put_((s, rank[t]), ww, accumulate=True)
            struct.index_put_((t, rank[s]), ww, accumulate=True)
            peak = torch.zeros(num_coarse, dtype=torch.float64).scatter_reduce(
                0, index, struct.amax(dim=1), reduce="amax", include_self=True)
            scale = peak[index]
            struct = torch.where(scale[:, None] > 0, struct / scale.clamp_min(1e-300)[:, None],
                                 struct)
        return rank, struct.float()

    # -- helpers --------------------------------------------------------------------------
    def stage_membership(self, stage: int) -> torch.Tensor:
        """LongTensor [N_stage]: the super-node of stage ``stage + 1`` of each stage node."""
        return getattr(self, f"pool_index_{stage}")

    def _pool_to(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """ST-Pool's spatial part, stage k -> k+1 (identity when levels == 0)."""
        if not self.spatial:
            return x
        return _pool(x, getattr(self, f"pool_index_{k}"), getattr(self, f"pool_size_{k}"),
                     self.pool_mode, self.stage_nodes[k + 1])

    def _unpool_to(self, k: int, x: torch.Tensor, unpools) -> torch.Tensor:
        """ST-Unpool's spatial part, stage k+1 -> k (identity when levels == 0)."""
        if not self.spatial:
            return x
        parent = getattr(self, f"pool_index_{k}")
        if unpools is None:  # direct copy
            return x.index_select(0, parent)
        # unpools are ordered up_{D-1}..up_0, so the stage-k unpool is number D-1-k
        return unpools[self.depth - 1 - k](
            x, parent, getattr(self, f"unpool_by_rank_{k}"), self._rank_counts[k],
            getattr(self, f"unpool_inverse_{k}"), getattr(self, f"unpool_struct_{k}"))

    def _output(self, ops, h: torch.Tensor) -> torch.Tensor:
        """``h [N, B, H]`` -> ``[N, B, output_dim]``: linear (plain) or final graph conv."""
        if self.plain:
            return self.proj(h)
        n, b, _ = h.shape
        op, op_t = ops[0]
        out = torch.addmm(self.out_bias, cheb_features(op, op_t, h, self.K), self.out_weight)
        return out.view(n, b, self.output_dim)  # [N*B, O] -> [N, B, O]

    def _run_layer(self, cell, op, op_t, seq: torch.Tensor, dil: int):
        """A whole (known) input sequence through one layer with dilation ``dil`` (Eq. 8).

        ``seq [N, T, B, F]`` -> outputs ``[N, T, B, H]`` and the last ``dil`` states (oldest
        first; zeros before time 0), which the decoder's chains continue from.
        """
        n, t, b, f = seq.shape
        hs = cell.hidden_size
        # inputs of a whole layer are known: one Chebyshev expansion for all T steps
        xg = cell.input_gates(op, op_t, seq.reshape(n, t * b, f)).view(n, t, b, -1)
        if dil == 1:
            h = seq.new_zeros(n, b, hs)
            outs = []
            for xg_t in xg.unbind(1):  # unbind: one stacked gradient, as GCGRU
                h = self.recurrent_step(cell.recur, op, op_t, xg_t, h)  # [N, B, H]
                outs.append(h)
            return torch.stack(outs, dim=1), [h]
        steps = -(-t // dil)
        pad = steps * dil - t
        if pad:  # padded steps come last in their chains, so they never feed a real one
            xg = torch.cat([xg, xg.new_zeros(n, pad, b, xg.shape[-1])], dim=1)
        # [N, steps*dil, B, 3H] -> [N, steps, dil*B, 3H]: row r*B + j of step l is time
        # l*dil + r of sample j, so the dil chains c_t = g(X_t, c_{t-dil}) ride in the batch
        xg = xg.reshape(n, steps, dil * b, -1)
        h = seq.new_zeros(n, dil * b, hs)
        outs = []
        for xg_l in xg.unbind(1):
            h = self.recurrent_step(cell.recur, op, op_t, xg_l, h)  # [N, dil*B, H]
            outs.append(h)
        # steps x [N, dil*B, H] -> [N, steps*dil, B, H] -> the T real steps
        out = torch.stack(outs, dim=1).view(n, steps * dil, b, hs)[:, :t]
        tail = list(out[:, max(0, t - dil):].unbind(1))
        tail = [seq.new_zeros(n, b, hs)] * (dil - len(tail)) + tail
        return out, tail

    # -- forward --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None,
                teacher_forcing: float = 0.0) -> torch.Tensor:
        sampling = self.check_batch(x, targets, teacher_forcing)
        b, t, n, _ = x.shape
        ops = [g() for g in self.graphs]
        d = self.depth
        enc_unpool = getattr(self, "enc_unpool", None)
        dec_unpool = getattr(self, "dec_unpool", None)

        # -- encoder U-stack over the whole input sequence --------------------------------
        # [B, T, N, F] -> [N, T, B, F]: node-major so that pooling and convolutions act on dim 0
        seq = x.permute(2, 1, 0, 3).contiguous()
        history = []  # per layer: its last `dilation` states
        skips = []
        for i, cell in enumerate(self.encoder):
            st, dil = self.layer_stage[i], self.layer_dilation[i]
            if not self.plain and i > d:  # up layer: unpool, then concatenate the skip
                k = st
                seq = torch.cat([self._unpool_to(k, seq, enc_unpool), skips[k]], dim=-1)
            op, op_t = ops[st] if self.spatial else ops[0]
            seq, tail = self._run_layer(cell, op, op_t, seq, dil)
            history.append(tail)
            if self.layer_norm and i < self.num_layers - 1:  # per node over H (choice 8)
                seq = self.enc_norm[i](seq)
            if not self.plain and i < d:  # down layer: keep the skip, pool to the next stage
                skips.append(seq)
                seq = self._pool_to(st, seq)

        # -- decoder U-stack, one step at a time ------------------------------------------
        def step(_, h):  # h: the previous output [N, B, O] -> the next [N, B, O]
            skips = []
            for i, cell in enumerate(self.decoder):
                st = self.layer_stage[i]
                if not self.plain and i > d:
                    h = torch.cat([self._unpool_to(st, h, dec_unpool), skips[st]], dim=-1)
                op, op_t = ops[st] if self.spatial else ops[0]
                # dilated chain (Eq. 8): the state of step t - dil, the oldest one kept
                h = self.recurrent_step(cell, op, op_t, h, history[i][0])  # [N_stage, B, H]
                history[i] = history[i][1:] + [h]
                if self.layer_norm:  # the state stays raw; what feeds on is normalised
                    h = self.dec_norm[i](h)
                if not self.plain and i < d:
                    skips.append(h)
                    h = self._pool_to(st, h)
            return self._output(ops, h)

        preds = decode(step, x.new_zeros(n, b, self.output_dim), self.horizon,
                       node_major_truth(targets, sampling), teacher_forcing)
        return to_batch_major(preds)
