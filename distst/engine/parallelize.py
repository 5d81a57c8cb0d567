"""Parallel strategies, applied to a model from outside it (:func:`parallelize`).

A model declares what a strategy needs and nothing more: its graph operators (a ``boundary``
slot each, distst.nn.layers.graph.with_boundary), its per-node parameters
(``node_parameters``), whether all its neighbour reads go through those operators
(``OPERATOR_READS``) and, for pooling models, a hook that rebuilds coarse graphs around a
boundary (``attach_boundary``). It never reads the mode. The layout (:mod:`distst.layout`)
says which strategy runs; every collective goes through :mod:`distst.engine.collectives`.

- replicate (and one process): every node is owned; DDP averages the gradients.
- shard: worker i holds part i of a partition plan, its inner nodes first and then its halo.
  Every worker of a replica draws the same windows in the same order, so one step is one
  full-graph batch. The loss of worker i is ``W * sum_i |e| / count``, where ``count`` is the
  number of observed inner targets summed over all workers: DDP's gradient average then
  equals the gradient of the full-graph masked loss (over inner nodes, each counted once).
- exchange: shard, plus a boundary exchange on every graph operator
  (:mod:`distst.engine.exchange`), so that the parts compute exactly what one process on the
  whole graph computes; DDP's reduce runs after backward (the ordering, collectives).

Per-node parameters (node embeddings, adaptive graphs; the first dimension is the local node)
differ in shape between parts, so they stay out of DDP and are handled here: initialised from
the node's global id (equal in every part holding the node), their gradients summed over
every copy, the clip norm counting each node once (by its owner), and checkpoints storing
them for the whole graph so that any partition can resume.

The training step's touch points, in the order the loop calls them: :meth:`Parallel.inner`
(what the loss and metrics see), :meth:`Parallel.global_count` once per step, then per
micro-batch forward and backward inside :meth:`Parallel.step_context` with
:meth:`Parallel.scale_loss`, then :meth:`Parallel.reduce_grads`, :meth:`Parallel.clip`.
"""

from __future__ import annotations

import contextlib
import zlib

import torch
from torch.nn.parallel import DistributedDataParallel

from distst.config import Config
from distst.engine.collectives import Collectives
from distst.errors import DiststError
from distst.layout import Layout, Ownership


def require_exact_parts(cfg: Config) -> None:
    """Refuse ``runtime.mode=exchange`` for a model whose neighbour reads do not all go through
    its graph operators (no boundary could make its parts exact)."""
    from distst.nn.registry import operator_reads

    why = operator_reads(cfg.model.name, cfg.model.params)
    if why:
        raise DiststError(f"runtime.mode=exchange: {why}; train {cfg.model.name} with "
                          "runtime.mode=shard or replicate")


def plan_halo_hops(cfg: Config) -> int:
    """The halo depth of the plan a run opens: ``partition.halo_hops`` in shard mode; in
    exchange mode the boundary the model's filters read in one exchange each
    (distst.nn.registry.boundary_depth), whose exchanges replace a deeper halo."""
    from distst.nn.registry import boundary_depth

    if Layout.of(cfg).exact_parts:
        return boundary_depth(cfg.model.name, cfg.model.params)
    return cfg.partition.halo_hops


def least_halo_hops(cfg: Config) -> int:
    """The shallowest plan exchange mode can run exactly (distst.nn.registry.boundary_reach):
    a given plan between this and :func:`plan_halo_hops` runs with more exchanges."""
    from distst.nn.registry import boundary_reach

    return boundary_reach(cfg.model.name, cfg.model.params)


def parallelize(model: torch.nn.Module, cfg: Config, layout: Layout, comm: Collectives,
                owned: Ownership) -> "Parallel":
    """Apply ``layout``'s strategy to ``model`` (built for this worker's local nodes): per-node
    parameters drawn for the whole graph, the boundary exchange on its graph operators in
    exchange mode, DDP around it with several workers. Every rank calls (collective)."""
    par = Parallel(model, layout, comm, owned)
    par.init_params(cfg.train.seed)
    if layout.exact_parts:
        require_exact_parts(cfg)
        par.connect_exchange()
    par.wrap(any(p.requires_grad for p in model.parameters()))
    return par


class Parallel:
    """A model under a parallel strategy: this worker's nodes (``owned``: the ``num_inner``
    owned ones first, then the halo), the module the loop calls (:attr:`wrapped`) and the
    step's touch points."""

    def __init__(self, model: torch.nn.Module, layout: Layout, comm: Collectives,
                 owned: Ownership):
        self.model = model
        self.layout = layout
        self.comm = comm
        self.owned = owned
        self.num_inner = owned.num_inner
        self.num_global = owned.num_global
        self.world_size = comm.world_size if comm.active else 1
        #: this worker's replica of a split graph: replicas hold equal per-node rows, and the
        #: first one counts them (0 when every worker holds the whole graph: each counts all)
        self.replica = layout.replica(comm.rank) if comm.active and layout.partitioned else 0
        self.global_ids = torch.as_tensor(owned.global_ids, dtype=torch.long,
                                          device=comm.device)
        self.param_names = tuple(getattr(model, "node_parameters", ()))
        #: the boundary exchange of runtime.mode=exchange (connect_exchange), else None
        self.exchange = None
        #: the module the loop calls (:meth:`wrap`)
        self.wrapped: torch.nn.Module = model

    def connect_exchange(self) -> None:
        """Every graph product of the model fetches its boundary rows from their owners
        (distst.engine.exchange), on the replica's group (collectives)."""
        from distst.engine.exchange import HaloExchange, connect

        group = self.comm.replica_group()
        if group is not None:
            self.exchange = HaloExchange(self.owned.global_ids, self.num_inner, group=group,
                                         depth=self.owned.halo_hops).to(self.comm.device)
            connect(self.model, self.exchange)

    def exchange_bytes(self) -> int:
        """Bytes this worker's boundary exchanges have sent so far (0 without exchange)."""
        return self.exchange.bytes_sent if self.exchange is not None else 0

    # -- the training step -----------------------------------------------------------------
    def wrap(self, trainable: bool) -> torch.nn.Module:
        """The module the loop calls: DDP over the shared parameters when there are several
        workers (per-node ones left to :meth:`reduce_grads`), the model itself otherwise."""
        if trainable:
            ignore = list(self.param_names) if self.layout.partitioned else []
            self.wrapped = self.comm.ddp(self.model, ignore=ignore)
        return self.wrapped

    @property
    def overlaps_reduce(self) -> bool:
        """Whether DDP all-reduces gradient buckets during backward. Not in exchange mode,
        whose boundary exchanges run inside backward on another group (collectives: the
        ordering). The same on CPUs, where gloo could overlap them safely, so that the tests
        run the path a GPU runs; on cpu2 the cost is within run-to-run noise (quickstart
        graph, exchange mode, 2 workers: 22.2 windows/s over 2 runs against 23.1 over 6
        before, spread +-1.5; benchmarks/RESULTS.md)."""
        return isinstance(self.wrapped, DistributedDataParallel) and not self.layout.exact_parts

    def step_context(self, timed: bool = False, sync: bool = True):
        """The context one micro-batch's forward *and* backward run in: DDP's reduce overlapped
        with the backward of the step's last micro-batch (``sync``), or none, left to
        :meth:`reduce_shared` (exchange mode; a timed step, which takes the reduce apart; the
        micro-batches before the last, whose gradients accumulate). DDP decides in forward
        whether the backward all-reduces, so ``no_sync`` must hold the forward too: around
        backward alone it reduced anyway (measured, torch 2.13), and exchange mode and timed
        steps all-reduced their shared gradients twice until 2026-12-07."""
        if isinstance(self.wrapped, DistributedDataParallel) and (
                timed or not self.overlaps_reduce or not sync):
            return self.wrapped.no_sync()
        return contextlib.nullcontext()

    def inner(self, t: torch.Tensor) -> torch.Tensor:
        """The owned nodes' rows of a ``[B, T, N_local, ...]`` tensor (halo nodes are scored by
        their owner)."""
        return t[:, :, : self.num_inner]

    def inner_rows(self, t: torch.Tensor) -> torch.Tensor:
        """The owned nodes' rows of a per-node ``[N_local, ...]`` tensor."""
        return t[: self.num_inner]

    def mean_loss(self, total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """The loss to back-propagate from a sum of errors over ``count`` observed targets:
        the mean in one process; with W workers W times this worker's share of the global
        batch's mean (the counts summed over workers), so that DDP's average is the gradient
        of the batch's masked mean. In replicate mode too: the average of each worker's own
        mean would weigh an observed target by how many of its worker's targets are missing."""
        return self.scale_loss(total, self.global_count(count))

    def global_count(self, count: torch.Tensor) -> torch.Tensor:
        """``count`` (observed targets of this worker's share of a batch) summed over the
        workers: the denominator of the batch's masked mean (one all-reduce)."""
        if self.world_size == 1:
            return count
        return self.comm.sum_(count.to(torch.float64).reshape(1))  # on the compute device

    def scale_loss(self, total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """The loss to back-propagate for an error sum ``total`` of (a micro-batch of) this
        worker's share, over the batch's :meth:`global_count`: the gradients of the pieces
        of a batch then add up to the batch's (see :meth:`mean_loss`)."""
        if self.world_size == 1:
            return total / count.clamp(min=1)
        return total * self.world_size / count.clamp(min=1.0).to(total.dtype)

    def _params(self) -> list[tuple[str, torch.nn.Parameter]]:
        named = dict(self.model.named_parameters())
        return [(n, named[n]) for n in self.param_names]

    @torch.no_grad()
    def init_params(self, seed: int) -> None:
        """Draw each per-node parameter for the whole graph from ``seed`` and the parameter's
        name, and keep this worker's rows: a node starts equal in every part that holds it."""
        std = float(getattr(self.model, "node_parameter_std", 0.1))
        for name, p in self._params():
            g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
            full = torch.randn((self.num_global, *p.shape[1:]), generator=g) * std
            p.copy_(full.to(p.device)[self.global_ids])

    def reduce_grads(self, timed: bool = False) -> int:
        """After backward: the shared gradients DDP did not reduce during it
        (:attr:`overlaps_reduce`, or ``timed``: see :meth:`step_context`), and every
        per-node copy's gradient summed into its global row with each copy handed the
        total / W; returns the bytes all-reduced.

        Worker i's loss is W * (its share of the full-graph loss), so the summed gradient over
        copies, divided by W, is exactly the full-graph gradient of that node's parameters."""
        sent = self.reduce_shared() if timed or not self.overlaps_reduce else 0
        if not (self.layout.partitioned and self.world_size > 1):
            return sent
        for _, p in self._params():
            if p.grad is None:
                continue
            full = p.grad.new_zeros((self.num_global, *p.shape[1:]))
            full.index_add_(0, self.global_ids, p.grad)
            self.comm.sum_(full)
            sent += full.numel() * full.element_size()
            p.grad.copy_(full[self.global_ids] / self.world_size)
        return sent

    def wait_for_all(self) -> None:
        self.comm.barrier()

    def reduce_shared(self) -> int:
        """Average the gradients DDP averages, as one flat all-reduce; returns the bytes
        all-reduced (0 without DDP)."""
        if not isinstance(self.wrapped, DistributedDataParallel):
            return 0
        node = set(self.param_names) if self.layout.partitioned else set()
        grads = [p.grad for n, p in self.model.named_parameters()
                 if n not in node and p.grad is not None]
        if not grads:
            return 0
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.comm.sum_(flat)
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset: offset + g.numel()].view_as(g))
            offset += g.numel()
        return flat.numel() * flat.element_size()

    def clip(self, max_norm: float) -> float:
        """Scale the gradients to a total norm of at most ``max_norm`` (inf: leave them);
        returns the norm before scaling, the same number on every worker."""
        if not self.param_names:
            return float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        # One norm for the whole model, every node counted once (by its owner), so that all
        # shards scale their gradients by the same factor as a single process would.
        node = set(self.param_names)
        named = list(self.model.named_parameters())
        zero = torch.zeros((), dtype=torch.float64, device=self.comm.device)
        shared = sum((p.grad.double().pow(2).sum() for n, p in named
                      if n not in node and p.grad is not None), zero)
        # replicas hold equal per-node gradients after reduce_grads: count the first's
        own = sum((self.inner_rows(p.grad).double().pow(2).sum()
                   for _, p in self._params() if p.grad is not None and self.replica == 0),
                  zero)
        if self.layout.partitioned:
            own = self.comm.sum_(own.reshape(1))[0]  # on the compute device, as NCCL wants
        norm = float((shared + own).sqrt())
        coef = max_norm / (norm + 1e-6)
        if coef < 1.0:
            for _, p in named:
                if p.grad is not None:
                    p.grad.mul_(coef)
        return norm

    # -- checkpoints: per-node rows for the whole graph ------------------------------------
    def _globalise(self, local: torch.Tensor) -> torch.Tensor:
        """Local per-node rows -> the whole-graph tensor, each node from the part that owns it
        (collective in shard mode: every rank calls)."""
        full = local.new_zeros((self.num_global, *local.shape[1:]))
        own = slice(0, self.num_inner)
        if self.replica == 0:  # the replicas' copies are equal: count each node once
            full.index_add_(0, self.global_ids[own].to(full.device), local[own])
        if self.layout.partitioned:
            self.comm.sum_(full)
        return full

    def _localise(self, full: torch.Tensor) -> torch.Tensor:
        return full.to(self.global_ids.device)[self.global_ids]

    def global_state(self, state: dict) -> dict:
        """A model state dict with the per-node rows made whole-graph (collective: every rank
        calls)."""
        out = dict(state)
        for name in self.param_names:
            out[name] = self._globalise(state[name])
        return out

    def local_state(self, state: dict) -> dict:
        """A checkpoint's model state dict cut to this worker's rows (as is when it is already
        local, e.g. written by a one-process run of the same graph)."""
        out = dict(state)
        for name in self.param_names:
            if name in out and out[name].shape[0] == self.num_global:
                out[name] = self._localise(out[name])
        return out

    def _optimizer_slots(self) -> dict[int, int]:
        """Optimizer state index -> local row count, for the per-node parameters."""
        return {i: p.shape[0] for i, (n, p) in enumerate(self.model.named_parameters())
                if n in self.param_names}

    def global_optimizer_state(self, opt: dict) -> dict:
        """``opt`` (an optimizer's state dict) with the per-node rows of Adam's moments made
        whole-graph, so a resumed shard run (any partition) continues with every node's own
        moments (collective: every rank calls, in the same parameter order)."""
        state = dict(opt["state"])
        for i, rows in self._optimizer_slots().items():
            if i in state:
                state[i] = {k: self._globalise(v) if torch.is_tensor(v) and v.dim() >= 1
                            and v.shape[0] == rows else v for k, v in state[i].items()}
        return {**opt, "state": state}

    def local_optimizer_state(self, opt: dict) -> dict:
        state = dict(opt["state"])
        for i in self._optimizer_slots():
            key = i if i in state else str(i) if str(i) in state else None
            if key is not None:
                state[key] = {k: self._localise(v) if torch.is_tensor(v) and v.dim() >= 1
                              and v.shape[0] == self.num_global else v
                              for k, v in state[key].items()}
        return {**opt, "state": state}
