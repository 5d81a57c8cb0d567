"""What every forecasting model shares: the data's sizes, their checks, and the decoder loop.

A model maps ``x [B, input_len, N, input_dim]`` to ``[B, horizon, N, output_dim]``. Its
constructor takes the data-derived sizes through :class:`ForecastModel` (``**sizes`` in the
subclass: ``num_nodes``, ``input_dim``, ``output_dim``, ``input_len``, ``horizon``) and names
its own data keys (graph, attributes) and hyperparameters as typed keyword arguments; the
registry reads the whole signature along the class hierarchy
(:func:`distst.nn.registry.model_signature`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from distst.errors import DiststError
from distst.nn.common import check_input, check_sizes, check_targets, coin
from distst.nn.layers.graph import GraphOperator, resolve_lambda_max


class ForecastModel(nn.Module):
    """Base of every registered model: stores and checks the data's sizes.

    ``model_name`` (the registry's name) prefixes every error message. With
    ``targets_in_input`` (the default) the first ``output_dim`` input channels must be the
    targets, as the decoder feeds its outputs back where the inputs were.
    """

    model_name = "model"
    targets_in_input = True
    #: every read of a neighbour goes through a graph operator's sparse product (or a
    #: ``boundary.gather``, distst.nn.layers.graph.with_boundary), so a graph split from
    #: outside the model with a boundary on its operators computes exactly what the whole
    #: graph does; set by the models checked to equal one process (tests/nn/test_split_graphs.py)
    OPERATOR_READS = False
    #: the model runs its recurrent steps through :meth:`recurrent_step`, so that
    #: ``train.recompute: step`` applies to it
    RECURRENT = False
    #: set by the engine from ``train.recompute``
    recompute = False
    #: called with no arguments at the start of every recurrent step, in the forward pass and
    #: again when ``recompute`` runs the step in the backward pass; the engine sets it from
    #: ``train.heap_slack_mib`` (distst.engine.memory) to bound the memory the allocator holds
    step_hook: Callable[[], None] | None = None

    def __init__(self, *, num_nodes: int, input_dim: int, output_dim: int, input_len: int = 12,
                 horizon: int = 12):
        super().__init__()
        check_sizes(self.model_name, num_nodes=num_nodes, input_dim=input_dim,
                    output_dim=output_dim, input_len=input_len, horizon=horizon)
        if self.targets_in_input and output_dim > input_dim:
            raise DiststError(f"{self.model_name}: output_dim={output_dim} > input_dim="
                              f"{input_dim}; the first output_dim input channels must be the "
                              "targets")
        self.num_nodes, self.input_dim, self.output_dim = num_nodes, input_dim, output_dim
        self.input_len, self.horizon = input_len, horizon

    def check_sizes(self, **sizes: int) -> None:
        """Hyperparameters that are sizes: integers >= 1, named in the error."""
        check_sizes(self.model_name, **sizes)

    def recurrent_step(self, fn: Callable, *args):
        """``fn(*args)``: one recurrent step. With :attr:`recompute` (``train.recompute:
        step``) and autograd on, the step's intermediate tensors are not kept: only its inputs
        are, and the backward pass runs the step again (``torch.utils.checkpoint``, not
        reentrant, RNG state restored so dropout draws the same mask). A step's internals
        (the graph expansion ``K x`` the state, the gates) are several times its state, so the
        stored activations shrink by that factor for the price of a second forward."""
        if self.step_hook is not None:  # inside fn, so that the recomputation calls it too
            step = fn

            def fn(*inputs):
                self.run_step_hook()
                return step(*inputs)
        if self.recompute and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def run_step_hook(self) -> None:
        """Call :attr:`step_hook` at a recurrent step that does not go through
        :meth:`recurrent_step` (a path that shares work across steps)."""
        if self.step_hook is not None:
            self.step_hook()

    def check_batch(self, x: torch.Tensor, targets: torch.Tensor | None = None,
                    teacher_forcing: float = 0.0) -> bool:
        """Validate a forward call's input (and targets); whether scheduled sampling is on."""
        check_input(self.model_name, x, self.input_len, self.num_nodes, self.input_dim)
        return check_targets(self.model_name, targets, teacher_forcing, x.shape[0],
                             self.horizon, x.shape[2], self.output_dim)


class GraphInput(NamedTuple):
    """The graph as the engine passes it (see ``distst.nn.registry.DATA_KEYS``)."""

    edge_index: torch.Tensor | None
    edge_weight: torch.Tensor | None
    out_degree: torch.Tensor | None
    in_degree: torch.Tensor | None
    laplacian_lambda_max: Callable[[], float] | float | None


class GraphModel(ForecastModel):
    """Base of the models that read the graph: the local edges, the whole-graph degrees of the
    local nodes (a part of a split graph: so that a part's operators equal the whole graph's on its inner
    rows) and the whole graph's Laplacian eigenvalue on demand, kept in :attr:`graph_input`
    for the subclass to build its operators from."""

    def __init__(self, *, edge_index: torch.Tensor | None = None,
                 edge_weight: torch.Tensor | None = None, out_degree=None, in_degree=None,
                 laplacian_lambda_max=None, **sizes):
        super().__init__(**sizes)
        self.graph_input = GraphInput(edge_index, edge_weight, out_degree, in_degree,
                                      laplacian_lambda_max)

    def chebyshev(self, normalization: str, lambda_max) -> GraphOperator:
        """The rescaled Laplacian ``L~`` of the model's graph (ST-UNet Eq. 2), normalised with
        the whole-graph degrees when the engine passed them (:class:`GraphOperator`)."""
        g = self.graph_input
        return GraphOperator(
            g.edge_index, g.edge_weight, self.num_nodes, normalization,
            resolve_lambda_max(self.model_name, lambda_max, g.laplacian_lambda_max),
            degree=g.out_degree, model=self.model_name)

    def release_graph_input(self) -> None:
        """Drop the references to the engine's edge tensors once the operators are built (the
        registry calls it after construction), so a model holds its graph only in its
        operators' buffers."""
        self.graph_input = None


def node_major_truth(targets: torch.Tensor | None, sampling: bool) -> torch.Tensor | None:
    """The decoder's teacher-forcing inputs ``[B, H, N, O] -> [H, N, B, O]`` (None when
    sampling is off); missing targets (NaN) are fed as 0, as the data layer fills x."""
    if not sampling:
        return None
    return torch.nan_to_num(targets, nan=0.0).permute(1, 2, 0, 3)


def decode(step: Callable[[int, torch.Tensor], torch.Tensor], go: torch.Tensor, horizon: int,
           truth: torch.Tensor | None, teacher_forcing: float) -> list[torch.Tensor]:
    """The scheduled-sampling decoder loop (DCRNN, Li et al. 2018, Sec. 2.3).

    ``step(t, inp) -> out`` runs the decoder once; the next input is ``truth[t]`` with
    probability ``teacher_forcing`` when ``truth`` is given, else the output itself; the first
    input is ``go`` (the GO symbol, zeros). Returns the ``horizon`` outputs."""
    inp, outs = go, []
    for t in range(horizon):
        out = step(t, inp)
        outs.append(out)
        inp = truth[t] if truth is not None and coin(teacher_forcing) else out
    return outs


def to_batch_major(outs: list[torch.Tensor]) -> torch.Tensor:
    """``horizon x [N, B, O] -> [B, horizon, N, O]``."""
    return torch.stack(outs, dim=1).permute(2, 1, 0, 3).contiguous()


class GraphSeq2Seq(GraphModel):
    """The graph-RNN encoder-decoder of DCRNN (Sec. 2.3), GCGRU and the HyperST graph RNNs.

    A stacked encoder of graph-convolutional GRU cells over ``input_len`` steps whose final
    states initialise a stacked decoder; a linear projection hidden -> output_dim per step; the
    decoder is fed its previous output (GO symbol = zeros) or, with scheduled sampling, the
    truth. The state is node-major ``[N, B, H]`` so no step needs a transpose.

    Subclasses set ``self.encoder`` / ``self.decoder`` (ModuleLists of cells with
    ``input_gates`` / ``recur``), ``self.proj`` and ``self.hidden_size``, and implement
    :meth:`_graph` (what the cells take as the graph), :meth:`_features` (a signal's graph
    basis) and :meth:`_input_gates` / :meth:`_recur` (one cell's input part / state update,
    with that cell's HyperST scales or None); optionally :meth:`_scales` and
    :meth:`_encoder_input`. All cells share one graph and one basis order, so a state's basis
    serves both this layer's next step and the layer above.
    """

    def _graph(self):
        raise NotImplementedError

    def _scales(self) -> tuple[list, list]:
        """Per encoder cell and per decoder cell: that cell's scales (None = plain cell)."""
        return [None] * len(self.encoder), [None] * len(self.decoder)

    def _features(self, cell, graph, x):
        """The graph basis of ``x [N, M, F]`` that ``cell``'s convolutions multiply."""
        raise NotImplementedError

    def _input_gates(self, cell, graph, x, scales, feats=None, shape=None):
        """``cell``'s input part of ``x [N, M, F]``, or of the basis ``feats`` of an
        ``[N, M, ...]`` signal (``shape = (N, M)``) already computed."""
        raise NotImplementedError

    def _recur(self, cell, graph, xg, h, scales, feats_h=None):
        """``cell``'s state update; ``feats_h``: the basis of ``h`` when already computed."""
        raise NotImplementedError

    RECURRENT = True

    def _cell_step(self, cell, graph, inp, h, scales):
        """One decoder cell: input part and state update, ``inp [N, B, F]`` -> ``[N, B, H]``."""
        return self._recur(cell, graph, self._input_gates(cell, graph, inp, scales), h, scales)

    def _encoder_input(self, seq: torch.Tensor) -> torch.Tensor:
        """What the first encoder layer reads, from the node-major input ``[N, T, B, F]``."""
        return seq

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None,
                teacher_forcing: float = 0.0) -> torch.Tensor:
        """``x [B, input_len, N, input_dim]`` -> ``[B, horizon, N, output_dim]``.

        With ``teacher_forcing = p > 0`` each decoder step is fed the true previous value
        (``targets [B, horizon, N, output_dim]``, NaN read as 0) with probability p, else its
        own prediction (DCRNN scheduled sampling; the coin is drawn per step whatever the
        module's train/eval mode -- the engine passes 0 outside training).
        """
        sampling = self.check_batch(x, targets, teacher_forcing)
        b, t, n, _ = x.shape
        graph = self._graph()
        enc_scales, dec_scales = self._scales()
        # [B, T, N, F] -> [N, T, B, F]: node-major so each layer convolves all steps at once
        seq = self._encoder_input(x.permute(2, 1, 0, 3)).contiguous()
        # A state's graph basis (K x the state) feeds two convolutions: this layer's at the
        # next step and the layer above's input at this step. Computed once and shared, unless
        # steps are recomputed (train.recompute=step keeps only the states, not the bases).
        share = not (self.recompute and torch.is_grad_enabled())
        states, feats = [], []  # per layer: its last state and (share) that state's basis
        last = len(self.encoder) - 1
        below = None  # (share) the basis of the layer below's outputs, [N*T*B, K*H]
        for i, (cell, sc) in enumerate(zip(self.encoder, enc_scales)):
            h = x.new_zeros(n, b, self.hidden_size)
            outs = []
            if not share and i > 0:
                # recompute: the layer below's states are stored anyway (the steps' inputs);
                # each step convolves its own input inside the recomputed step, so the basis
                # of all T inputs ([N*T*B, K*H], the largest activation) is never stored
                for inp in seq.unbind(1):  # [N, B, H]
                    h = self.recurrent_step(self._cell_step, cell, graph, inp, h, sc)
                    if i < last:
                        outs.append(h)
                states.append(h)
                feats.append(None)
                if i < last:
                    seq = torch.stack(outs, dim=1)  # [N, T, B, H]
                continue
            if below is None:
                f = seq.shape[-1]
                # [N, T*B, F] -> [N, T*B, 3H]: one expansion for all T steps
                xg = self._input_gates(cell, graph, seq.view(n, t * b, f), sc)
            else:
                xg = self._input_gates(cell, graph, None, sc, feats=below, shape=(n, t * b))
            xg = xg.view(n, t, b, -1)  # [N, T, B, 3H]
            fh = None
            # unbind, not xg[:, step]: a slice's backward materialises a zero tensor of xg's
            # full size per step; unbind's backward stacks the T gradients once.
            for xg_t in xg.unbind(1):
                if share:
                    self.run_step_hook()
                    h = self._recur(cell, graph, xg_t, h, sc, fh)  # [N, B, H]
                    fh = self._features(cell, graph, h)  # [N*B, K*H]
                    if i < last:
                        outs.append(fh.view(n, b, -1))
                else:
                    h = self.recurrent_step(self._recur, cell, graph, xg_t, h, sc)
                    if i < last:
                        outs.append(h)
            states.append(h)
            feats.append(fh)
            if i < last:
                # T x [N, B, C] -> [N, T, B, C]; a basis flattened to [N*T*B, K*H]
                stacked = torch.stack(outs, dim=1)
                if share:
                    below = stacked.view(n * t * b, -1)
                else:
                    seq = stacked
        last_dec = len(self.decoder) - 1

        def step(k, inp):  # inp [N, B, O] -> [N, B, O]
            below = None
            for i, (cell, sc) in enumerate(zip(self.decoder, dec_scales)):
                if not share:
                    states[i] = self.recurrent_step(self._cell_step, cell, graph, inp,
                                                    states[i], sc)
                    inp = states[i]  # [N, B, H]
                    continue
                self.run_step_hook()
                xg = (self._input_gates(cell, graph, inp, sc) if below is None else
                      self._input_gates(cell, graph, None, sc, feats=below, shape=(n, b)))
                states[i] = self._recur(cell, graph, xg, states[i], sc, feats[i])
                inp = states[i]
                if i < last_dec or k < self.horizon - 1:  # someone reads this basis
                    feats[i] = below = self._features(cell, graph, states[i])
            return self.proj(inp)

        preds = decode(step, x.new_zeros(n, b, self.output_dim), self.horizon,
                       node_major_truth(targets, sampling), teacher_forcing)
        return to_batch_major(preds)
