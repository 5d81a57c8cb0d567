"""HimNet: heterogeneity-informed meta-parameter learning (Dong et al., KDD 2024, arXiv 2405.10800).

The poster's general formulation: a meta-parameter pool ``P = [theta_1 .. theta_k]`` is queried
by an embedding ``E`` and the parameters are ``theta = E P = sum_i E_i theta_i``, with three
kinds of heterogeneity (poster, "Spatial/Temporal/ST-Mixed"):

* temporal ``E_t`` [B, d_t]: time-of-day and day-of-week embeddings of the window's last
  input step; its pool ``P_t`` (TMP) generates the weights of the temporal encoder;
* spatial ``E_s`` [N, d_s]: a learnable per-node embedding; ``P_s`` (SMP) generates one weight
  set per node for the spatial encoder, and ``softmax(ReLU(E_s E_s^T))`` is its adaptive graph;
* spatio-temporal ``E_st`` [B, N, d_st]: a projection of the encoders' last hidden state;
  ``P_st`` (STMP) generates per-(sample, node) decoder weights, and
  ``softmax(ReLU(E_st E_st^T))`` is the decoder's per-sample adaptive graph.

Architecture (the paper's Fig. "HimNet Architecture", checked against the authors' code): two
GCRU encoders over the input window -- one with spatial, one with temporal meta-parameters --
whose last states are summed; a GCRU decoder with ST-mixed meta-parameters that is fed the
previous prediction plus the future step's time features, and a linear output head. A GCRU
cell is a GRU whose gates are graph convolutions of ``[x, h]`` with a Chebyshev-style basis
``T_0 x = x, T_1 x = A x, T_k x = 2 A T_{k-1} x - T_{k-2} x`` (``cheb_k`` terms, default 2).

Ablations (the poster's table; each is one switch): ``use_e_t / use_e_s / use_e_st = False``
replaces that embedding by a static all-ones matrix of the same width ("w/o E": no heterogeneity,
the pool collapses to one shared parameter set and the adaptive graph becomes uniform);
``use_tmp / use_smp / use_stmp = False`` replaces that pool by plain randomly initialised
parameters ("w/o MP").

Scale (distst's addition): ``graph="dense"`` is the paper's N x N adaptive graph and the default.
``graph="sparse"`` restricts the softmax of every row to the node's ``graph_hops``-hop
neighbourhood in the physical graph (self included), so memory and time grow with the edges,
not N^2; on a part of a split graph it is built on the local graph (part + halo), so a
worker never holds more. With a neighbourhood that covers a connected graph, sparse equals dense (tested).
Per-node weights of the spatial encoder are materialised once per forward when they fit in
``meta_weight_budget_mb``; otherwise (large N) they are never materialised: ``theta = E P`` is
applied as ``(E kron x) P`` and recomputed in the backward pass (:class:`KronLinear`).

Time features, as the authors encode them (their ``model/HimNet.py`` reads channel 1 as time
of day and channel 2 as day of week; their data pipeline, Torch-MTS
``scripts/generate_training_data.py``, writes them): time of day is the fraction of the day in
[0, 1) and its embedding row is ``floor(tod * 288)``; day of week is an INTEGER 0-6, used both as
the embedding row and, unscaled, as an input value of the encoders and the decoder. Day 0 is
Monday for their METR-LA / PEMS-BAY files (pandas ``dayofweek``) but the FIRST DAY OF THE FILE
for their PEMS03/04/07/08 npz files, which carry no timestamps (``(step // 288) % 7``).
distst's windows carry ``weekday / 7`` with Monday = 0 (:func:`distst.data.windows.time_features`);
HimNet turns that into the authors' index ``(weekday - dow_origin) % 7`` per step and feeds the
index, not ``weekday / 7``, to its GCRUs. ``dow_origin`` is the weekday (Monday = 0) that the
authors' index 0 stands for: 0 for METR-LA / PEMS-BAY (and the default); for their PEMS0x files the
weekday of the file's first day (PEMS03 starts on 2018-09-01, a Saturday: 5; PEMS04 2018-01-01
and PEMS07 2017-05-01, Mondays: 0; PEMS08 2016-07-01, a Friday: 4), which is what the presets
set. With it, the authors' weights copied into distst give their forecasts on every weekday,
across midnight and across the week's end (``scripts/bench_himnet.py``).

Deviations from the authors' code, all documented here: the per-node embedding starts as
N(0, 0.1^2) (``node_parameter_std``; the reference uses Xavier-normal, std sqrt(2 / (N + d)),
which is 0.095 at N = 207) so that every part initialises a node identically; the decoder's
future time features (authors' encoding) are derived from the last input step and
``steps_per_day`` (exact on gap-free windows of grid-aligned timestamps, which is all distst
makes; the authors read them from the data); the per-node weights are generated once per
forward instead of once per step (same values, less work).
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from distst.errors import DiststError
from distst.nn.base import GraphModel, decode, node_major_truth, to_batch_major
from distst.nn.common import node_parameter
from distst.nn.layers.cells import gate_mix
from distst.nn.layers.sparse import (EdgeSpMM, KronLinear, block_diagonal, csr_structure,
                                     fp32_apply, khop_neighbourhood, segment_softmax)

GRAPHS = ("dense", "sparse")
# floor(tod * steps_per_day) as the authors' ``.long()``, tolerating float32's representation of
# a slot boundary (k / 288 in float32 may sit a hair below k / 288); 1e-3 of a slot is 0.3 s at
# 5-minute steps
_SLOT_TOL = 1e-3


# -- theta = E P without materialising theta --------------------------------------------------
class AdaptiveGraph:
    """One forward's adaptive graph ``softmax(ReLU(E E^T))``, dense or neighbourhood-sparse, and
    the propagation ``x -> A x`` on node-major features ``[N, B, C]``.

    ``emb`` [N, d] (one graph for the batch) or [B, N, d] (one per sample, the decoder's);
    ``sparse``: the neighbourhood pattern (:func:`csr_structure`) or None for dense;
    ``boundary`` (a graph split from outside the model; the pattern then has the owned rows
    only): every propagation first takes the rows this worker does not hold from it.
    """

    def __init__(self, emb: torch.Tensor, sparse: dict | None, boundary=None):
        self.per_sample = emb.dim() == 3
        self.n = emb.shape[-2]
        self.sparse = sparse
        self.boundary = boundary
        if sparse is None:
            # [N, N] or [B, N, N]; row n is the distribution over the nodes n reads from
            self.a = torch.softmax(torch.relu(emb @ emb.transpose(-1, -2)), dim=-1)
            return
        row, col = sparse["row"], sparse["col"]
        scores = torch.relu((emb[..., row, :] * emb[..., col, :]).sum(-1))  # [E] or [B, E]
        self.vals = segment_softmax(scores, row, self.n)
        if self.per_sample:
            # B samples as one block-diagonal [B*N, B*N] matrix: one product, and autograd
            # keeps only the B*E weights (a gather/scatter would keep [B, E, C] features)
            self.block = block_diagonal(sparse, self.vals.shape[0], self.n)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, b, c = x.shape
        if self.boundary is not None:
            x = self.boundary.gather(x)  # the halo rows' current values, from their owners
        if not self.per_sample:
            # [N, B, C] -> [N, B*C]: one product for the whole batch
            flat = x.reshape(n, b * c)
            y = self.a @ flat if self.sparse is None else \
                fp32_apply(EdgeSpMM, self.vals, flat, self.sparse, n)
            return y.view(n, b, c)
        xb = x.permute(1, 0, 2)  # [B, N, C]
        if self.sparse is None:
            return torch.bmm(self.a, xb).permute(1, 0, 2)
        y = fp32_apply(EdgeSpMM, self.vals.reshape(-1), xb.reshape(b * n, c), self.block,
                       b * n)
        return y.view(b, n, c).permute(1, 0, 2)  # [B*N, C] -> [N, B, C]


# -- meta-parameter graph convolution ---------------------------------------------------------
class HimGCN(nn.Module):
    """Graph convolution whose weights and bias come from a meta-parameter pool.

    ``axis``: ``"t"`` (``E`` [B, d]), ``"s"`` (``E`` [N, d]), ``"st"`` (``E`` [B, N, d]) or
    ``None`` (plain parameters: the "w/o MP" ablation). Input and output are node-major
    ``[N, B, C]``.
    """

    def __init__(self, in_dim: int, out_dim: int, cheb_k: int, embed_dim: int,
                 axis: str | None, meta_weight_budget_mb: float):
        super().__init__()
        self.cheb_k, self.axis, self.out_dim = cheb_k, axis, out_dim
        i = cheb_k * in_dim
        self.budget = meta_weight_budget_mb * 2 ** 20
        if axis is None:
            self.weight = nn.Parameter(nn.init.xavier_normal_(torch.empty(i, out_dim)))
            self.bias = nn.Parameter(torch.zeros(out_dim))
        else:
            self.weight_pool = nn.Parameter(nn.init.xavier_normal_(torch.empty(embed_dim, i, out_dim)))
            self.bias_pool = nn.Parameter(nn.init.xavier_normal_(torch.empty(embed_dim, out_dim)))

    def prepare(self, emb: torch.Tensor | None) -> dict:
        """Per-forward state: generated weights (when they are cheap) and biases."""
        if self.axis is None:
            return {}
        st = {"emb": emb, "bias": emb @ self.bias_pool}  # [B, O] / [N, O] / [B, N, O]
        if self.axis == "t":
            st["w"] = torch.einsum("bd,dio->bio", emb, self.weight_pool)  # [B, I, O]
        elif self.axis == "s":
            n = emb.shape[0]
            if n * self.weight_pool[0].numel() * emb.element_size() <= self.budget:
                st["w"] = torch.einsum("nd,dio->nio", emb, self.weight_pool)  # [N, I, O]
        return st

    def basis(self, x: torch.Tensor, graph) -> torch.Tensor:
        """``[T_0 x, .., T_{K-1} x]`` concatenated on features: [N, B, C] -> [N, B, K*C]."""
        terms = [x]
        if self.cheb_k > 1:
            terms.append(graph(x))
        for _ in range(2, self.cheb_k):
            terms.append(2 * graph(terms[-1]) - terms[-2])
        return torch.cat(terms, dim=-1)

    def forward(self, x: torch.Tensor, graph, st: dict) -> torch.Tensor:
        xg = self.basis(x, graph)  # [N, B, I]
        n, b, i = xg.shape
        if self.axis is None:
            return xg @ self.weight + self.bias
        if self.axis == "t":
            # [N, B, I] -> [B, N, I] @ [B, I, O] -> [N, B, O]
            out = torch.bmm(xg.transpose(0, 1), st["w"]).transpose(0, 1)
            return out + st["bias"][None]
        if self.axis == "s":
            if "w" in st:
                out = torch.bmm(xg, st["w"])  # per node: [N, B, I] @ [N, I, O]
            else:
                e = st["emb"][:, None, :].expand(n, b, -1).reshape(n * b, -1)  # [N*B, d]
                out = fp32_apply(KronLinear, xg.reshape(n * b, i), e, self.weight_pool).view(n, b, -1)
            return out + st["bias"][:, None, :]
        # "st": emb [B, N, d] -> node-major rows [N*B, d]
        e = st["emb"].transpose(0, 1).reshape(n * b, -1)
        out = fp32_apply(KronLinear, xg.reshape(n * b, i), e, self.weight_pool).view(n, b, -1)
        return out + st["bias"].transpose(0, 1)


class HimGCRU(nn.Module):
    """GRU cell with HimGCN gates, as the authors' code: ``z, r = sigmoid(gate([x, h]))``,
    ``c = tanh(update([x, z * h]))``, ``h' = r * h + (1 - r) * c``."""

    def __init__(self, in_dim: int, hidden: int, cheb_k: int, embed_dim: int,
                 axis: str | None, budget: float):
        super().__init__()
        self.hidden = hidden
        self.gate = HimGCN(in_dim + hidden, 2 * hidden, cheb_k, embed_dim, axis, budget)
        self.update = HimGCN(in_dim + hidden, hidden, cheb_k, embed_dim, axis, budget)

    def prepare(self, emb) -> tuple[dict, dict]:
        return self.gate.prepare(emb), self.update.prepare(emb)

    def forward(self, x, h, graph, st) -> torch.Tensor:
        zr = torch.sigmoid(self.gate(torch.cat([x, h], dim=-1), graph, st[0]))
        z, r = zr.split(self.hidden, dim=-1)
        c = torch.tanh(self.update(torch.cat([x, z * h], dim=-1), graph, st[1]))
        return gate_mix(c, h, r)  # r . h + (1 - r) . c


class HimNet(GraphModel):
    """HimNet forecaster: ``forward(x [B, T, N, input_dim], targets=None, teacher_forcing=0.0)
    -> [B, horizon, N, output_dim]``.

    Defaults are the authors' METR-LA settings (hidden 64, one layer, ``cheb_k`` 2, embeddings
    tod 8 / dow 8 / node 16 / ST 16). The input's last channels must carry time of day (and day
    of week) as distst's windows make them (``data.time_of_day`` / ``data.day_of_week``: time of
    day in [0, 1), weekday / 7 with Monday = 0); the model re-encodes day of week as the
    authors' integer index (see the module docstring and ``dow_origin``).
    """

    model_name = "himnet"
    #: the inputs end with time channels; the check below counts the value channels
    targets_in_input = False
    node_parameter_std = 0.1
    #: with graph="sparse" every neighbour read is routed (a split graph is exact): the
    #: learned edge values are computed on the owned rows from the halo's embeddings (E_s: a
    #: per-node parameter, whose halo copies the engine keeps equal to their owner's; E_st:
    #: taken from the boundary), and every propagation takes the halo rows of its input from
    #: the boundary (``boundary.gather``), which must be ``graph_hops`` deep
    #: (:meth:`boundary_reach`)
    OPERATOR_READS = True
    RECURRENT = True

    @classmethod
    def _default(cls, key: str):
        return inspect.signature(cls.__init__).parameters[key].default

    @classmethod
    def check_operator_reads(cls, params: dict) -> str | None:
        graph = params.get("graph", cls._default("graph"))
        if graph != "sparse":
            return (f"himnet with graph={graph!r} reads every node of the graph in each row of "
                    "its N x N adaptive graph, which no boundary covers; set "
                    "model.params.graph=sparse (each row restricted to the graph_hops-hop "
                    "neighbourhood)")
        return None

    @classmethod
    def boundary_reach(cls, params: dict) -> int:
        return int(params.get("graph_hops", cls._default("graph_hops")))

    def __init__(self, *, steps_per_day: int = 288, time_of_day: bool = True,
                 day_of_week: bool = True, dow_origin: int = 0, hidden_size: int = 64,
                 num_layers: int = 1, cheb_k: int = 2, tod_embedding_dim: int = 8,
                 dow_embedding_dim: int = 8, node_embedding_dim: int = 16,
                 st_embedding_dim: int = 16, graph: str = "dense", graph_hops: int = 2,
                 use_e_t: bool = True, use_e_s: bool = True, use_e_st: bool = True,
                 use_tmp: bool = True, use_smp: bool = True, use_stmp: bool = True,
                 meta_weight_budget_mb: float = 512.0, **sizes):
        super().__init__(**sizes)
        self.check_sizes(hidden_size=hidden_size, num_layers=num_layers, cheb_k=cheb_k,
                         steps_per_day=steps_per_day, tod_embedding_dim=tod_embedding_dim,
                         node_embedding_dim=node_embedding_dim,
                         st_embedding_dim=st_embedding_dim)
        num_nodes, input_dim, output_dim = self.num_nodes, self.input_dim, self.output_dim
        if dow_embedding_dim < 0:
            raise DiststError(f"himnet: dow_embedding_dim={dow_embedding_dim} must be >= 0")
        if not 0 <= int(dow_origin) <= 6 or int(dow_origin) != dow_origin:
            raise DiststError(f"himnet: dow_origin={dow_origin!r} must be the weekday 0-6 "
                              "(Monday = 0) that day index 0 stands for")
        if graph not in GRAPHS:
            raise DiststError(f"himnet: graph={graph!r} is not one of {GRAPHS}; 'dense' is the "
                              "paper's N x N adaptive graph, 'sparse' its k-hop restriction")
        n_time = int(time_of_day) + int(day_of_week)
        if not time_of_day:
            raise DiststError("himnet: the input has no time-of-day channel, which HimNet's "
                              "temporal embedding and decoder need; set data.time_of_day=true")
        if input_dim - n_time < output_dim:
            raise DiststError(f"himnet: input_dim={input_dim} leaves fewer than output_dim="
                              f"{output_dim} value channels after {n_time} time channel(s)")
        self.hidden_size = hidden_size
        self.num_layers, self.steps_per_day = num_layers, steps_per_day
        self.dow_origin = int(dow_origin)
        self.tod_channel = input_dim - n_time
        self.dow_channel = input_dim - 1 if day_of_week else None
        self.use_e_t, self.use_e_s, self.use_e_st = use_e_t, use_e_s, use_e_st
        d_t = tod_embedding_dim + (dow_embedding_dim if day_of_week else 0)
        self.d_t, self.d_s, self.d_st = d_t, node_embedding_dim, st_embedding_dim

        def layers(in_dim, d, axis):
            return nn.ModuleList(HimGCRU(in_dim if i == 0 else hidden_size, hidden_size, cheb_k,
                                         d, axis, meta_weight_budget_mb)
                                 for i in range(num_layers))

        self.encoder_s = layers(input_dim, self.d_s, "s" if use_smp else None)
        self.encoder_t = layers(input_dim, d_t, "t" if use_tmp else None)
        # the decoder reads the previous prediction and the future step's time features
        self.decoder = layers(output_dim + n_time, st_embedding_dim, "st" if use_stmp else None)
        self.out_proj = nn.Linear(hidden_size, output_dim)
        if use_e_t:
            self.tod_embedding = nn.Embedding(steps_per_day, tod_embedding_dim)
            self.dow_embedding = nn.Embedding(7, dow_embedding_dim) if day_of_week else None
        if use_e_s:
            # per-node rows: the engine initialises them from the global node id and, on a split
            # graph, keeps them out of DDP and reduces their gradients exactly
            self.node_embedding = node_parameter(num_nodes, node_embedding_dim,
                                                 self.node_parameter_std)
            self.node_parameters = ("node_embedding",)
        if use_e_st:
            self.st_proj = nn.Linear(hidden_size, st_embedding_dim)
        self.graph_kind = graph
        #: what supplies the rows this worker does not hold (set from outside the model)
        self.boundary = None
        self._inner_pattern = None
        if graph == "sparse":
            edge_index = self.graph_input.edge_index
            if edge_index is None:
                raise DiststError("himnet: graph='sparse' restricts the adaptive graph to the "
                                  "physical neighbourhood and needs the dataset's edges")
            if graph_hops < 1:
                raise DiststError(f"himnet: graph_hops={graph_hops} must be >= 1")
            ei = torch.as_tensor(edge_index)
            if not bool((ei[0] != ei[1]).any()):
                # every row's neighbourhood would be the sensor alone: a per-node model
                raise DiststError(
                    f"himnet: graph='sparse' on a graph without an edge between two sensors "
                    f"({ei.shape[1]} edges, all self-loops) restricts each sensor's adaptive "
                    "graph to itself; use model.params.graph=dense (the paper's N x N graph) or "
                    "a dataset with its road graph")
            row, col = khop_neighbourhood(torch.as_tensor(edge_index), num_nodes, graph_hops)
            for key, val in csr_structure(row, col, num_nodes).items():
                self.register_buffer(f"nb_{key}", val, persistent=False)

    # -- pieces --------------------------------------------------------------------------------
    def time_index(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(slot of day, authors' day index) per input step, int64 ``[B, T]`` each.

        ``x`` [B, T, N, F] carries distst's encoding (time of day in [0, 1), weekday / 7 with
        Monday = 0). ``slot = floor(tod * steps_per_day)`` (the authors' ``(tod * 288).long()``);
        ``day = (weekday - dow_origin) % 7`` (0 without a day-of-week channel). Time features are
        equal at every node; their node mean (in float64, exact for equal values) keeps the
        model equivariant to node order even for inputs where they are not.
        """
        s = self.steps_per_day
        tod = x[..., self.tod_channel].double().mean(dim=2)  # [B, T]
        slot = torch.floor(tod * s + _SLOT_TOL).long() % s
        if self.dow_channel is None:
            return slot, torch.zeros_like(slot)
        weekday = torch.round(x[..., self.dow_channel].double().mean(dim=2) * 7).long()
        return slot, (weekday - self.dow_origin) % 7

    def _authors_input(self, x: torch.Tensor, day: torch.Tensor) -> torch.Tensor:
        """``x`` with its day-of-week channel replaced by the integer day index, as the authors'
        encoders read it (their channel 2 is 0-6, not weekday / 7)."""
        if self.dow_channel is None:
            return x
        idx = day.to(x.dtype)[:, :, None, None].expand(-1, -1, x.shape[2], 1)
        return torch.cat([x[..., :self.dow_channel], idx, x[..., self.dow_channel + 1:]], dim=-1)

    def _time_embedding(self, slot: torch.Tensor, day: torch.Tensor, b: int,
                        like: torch.Tensor) -> torch.Tensor:
        """``E_t`` [B, d_t] from the last input step's slot and day index ([B] each)."""
        if not self.use_e_t:
            return like.new_ones(b, self.d_t)  # "w/o E_t": a static all-ones matrix
        parts = [self.tod_embedding(slot)]
        if self.dow_embedding is not None:
            parts.append(self.dow_embedding(day))
        return torch.cat(parts, dim=-1)  # [B, d_t]

    def _future_time(self, x: torch.Tensor) -> torch.Tensor:
        """Time features of the ``horizon`` future steps, [H, B, n_time], in the authors'
        encoding: time of day ``slot / steps_per_day``, day of week the integer day index."""
        slot, day = (v[:, -1] for v in self.time_index(x))
        ahead = slot[None, :] + torch.arange(1, self.horizon + 1, device=x.device)[:, None]
        feats = [(ahead % self.steps_per_day).to(x.dtype) / self.steps_per_day]
        if self.dow_channel is not None:
            feats.append(((day[None, :] + ahead // self.steps_per_day) % 7).to(x.dtype))
        return torch.stack(feats, dim=-1)

    def _graph(self, emb: torch.Tensor) -> AdaptiveGraph:
        sparse = None
        if self.graph_kind == "sparse":
            sparse = {k: getattr(self, f"nb_{k}")
                      for k in ("row", "col", "crow", "t_perm", "t_crow", "t_col")}
            ex = self.boundary
            if ex is not None:
                # the inner rows only: a halo row's neighbourhood is not all here, and its
                # output is never read (the next propagation fetches it from its owner)
                key = (ex.num_inner, sparse["row"].device)
                if self._inner_pattern is None or self._inner_pattern[0] != key:
                    keep = sparse["row"] < ex.num_inner
                    self._inner_pattern = (key, csr_structure(
                        sparse["row"][keep], sparse["col"][keep], self.num_nodes))
                sparse = self._inner_pattern[1]
        return AdaptiveGraph(emb, sparse, self.boundary)

    def _encode(self, cells, seq: torch.Tensor, graph, emb) -> torch.Tensor:
        """seq [N, T, B, F] -> the last layer's states [N, T, B, H]."""
        for cell in cells:
            st = cell.prepare(emb)
            n, t, b, _ = seq.shape
            h = seq.new_zeros(n, b, cell.hidden)
            outs = []
            for x_t in seq.unbind(1):
                h = self.recurrent_step(cell, x_t, h, graph, st)
                outs.append(h)
            seq = torch.stack(outs, dim=1)
        return seq

    # -- forward -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None,
                teacher_forcing: float = 0.0) -> torch.Tensor:
        sampling = self.check_batch(x, targets, teacher_forcing)
        b, t, n, _ = x.shape
        slot, day = self.time_index(x)  # [B, T] each
        e_t = self._time_embedding(slot[:, -1], day[:, -1], b, x)  # [B, d_t]
        future = self._future_time(x)  # [H, B, n_time]
        x = self._authors_input(x, day)  # day of week as the integer index
        e_s = self.node_embedding if self.use_e_s else x.new_ones(n, self.d_s)  # [N, d_s]
        g_s = self._graph(e_s)
        seq = x.permute(2, 1, 0, 3)  # [B, T, N, F] -> node-major [N, T, B, F]
        h_s = self._encode(self.encoder_s, seq, g_s, e_s)
        h_t = self._encode(self.encoder_t, seq, g_s, e_t)
        h_last = (h_s + h_t)[:, -1]  # [N, B, H]
        if self.use_e_st:
            e_st = self.st_proj(h_last)  # [N, B, d_st]
            if self.boundary is not None:
                # the halo rows of h_last are not computed here: the scores read the owners'
                e_st = self.boundary.gather(e_st)
            e_st = e_st.transpose(0, 1)  # [N, B, d_st] -> [B, N, d_st]
        else:
            e_st = x.new_ones(b, n, self.d_st)
        g_st = self._graph(e_st)
        prep = [cell.prepare(e_st) for cell in self.decoder]
        states = [h_last] * self.num_layers

        def step(t, go):  # the previous output [N, B, O] -> the next [N, B, O]
            inp = torch.cat([go, future[t][None].expand(n, b, -1)], dim=-1)
            for i, cell in enumerate(self.decoder):
                states[i] = self.recurrent_step(cell, inp, states[i], g_st, prep[i])
                inp = states[i]
            return self.out_proj(inp)

        preds = decode(step, x.new_zeros(n, b, self.output_dim), self.horizon,
                       node_major_truth(targets, sampling), teacher_forcing)
        return to_batch_major(preds)
