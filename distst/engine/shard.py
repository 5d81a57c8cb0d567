"""Which nodes a worker owns, and how per-node state stays equal to one process's.

Shard semantics (``runtime.mode=shard``): worker i holds part i of a partition plan, its
inner nodes first and then its halo. Every worker draws the same windows in the same order,
so one step is one full-graph batch. The loss of worker i is ``W * sum_i |e| / count``, where
``count`` is the number of observed inner targets summed over all workers: DDP's gradient
average then equals the gradient of the full-graph masked loss (over inner nodes, each node
counted once).

Per-node parameters (a model's ``node_parameters``: node embeddings, adaptive graphs; the
first dimension is the local node) differ in shape between parts, so they stay out of DDP
and are handled here: initialised from the node's global id (equal in every part holding the
node), their gradients summed over every copy, the clip norm counting each node once (by its
owner), and checkpoints storing them for the whole graph so that any partition can resume.

In the other modes (one process, replicate) every node is inner and all of this is the
identity, so the training loop calls the same methods whatever the mode.
"""

from __future__ import annotations

import contextlib
import warnings
import zlib

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from distst.engine.context import Context


class NodeShard:
    """This worker's nodes: ``num_inner`` owned ones first, then the halo; ``global_ids`` maps
    every local row to its whole-graph node."""

    def __init__(self, model: torch.nn.Module, ctx: Context, *, sharded: bool,
                 num_local: int, num_inner: int | None = None, global_ids=None,
                 num_global: int | None = None, parts: int = 1, replicas: int = 1):
        self.ctx = ctx
        self.sharded = sharded
        #: P parts x R replicas (runtime.replicas): rank = replica * P + part
        self.parts, self.replicas = (parts, replicas) if sharded else (1, 1)
        self.replica = ctx.rank // self.parts if sharded else 0
        #: the boundary exchange of runtime.mode=exchange (connect_exchange), else None
        self.exchange = None
        self.model = model
        self.num_inner = num_inner if num_inner is not None else num_local
        self.num_global = num_global or num_local
        self.global_ids = torch.as_tensor(
            global_ids if global_ids is not None else np.arange(num_local),
            dtype=torch.long, device=ctx.device)
        self.param_names = tuple(getattr(model, "node_parameters", ()))

    def connect_exchange(self, model_name: str, params: dict | None = None) -> None:
        """runtime.mode=exchange: every graph product of the model fetches its boundary rows
        from their owners (distst.nn.layers.exchange), on a process group of its own."""
        from distst.nn.layers.exchange import HaloExchange, connect
        from distst.nn.registry import require_exchange

        require_exchange(model_name, params)
        if self.ctx.world_size > 1 and dist.is_available() and dist.is_initialized():
            # one group per replica (its P parts); every rank creates every group, in order
            groups = [dist.new_group(ranks=list(range(r * self.parts, (r + 1) * self.parts)))
                      for r in range(self.replicas)]
            self.exchange = HaloExchange(self.global_ids.cpu().numpy(), self.num_inner,
                                         group=groups[self.replica]).to(self.ctx.device)
            connect(self.model, self.exchange)

    def exchange_bytes(self) -> int:
        """Bytes this worker's boundary exchanges have sent so far (0 without exchange)."""
        return self.exchange.bytes_sent if self.exchange is not None else 0

    # -- the training step -----------------------------------------------------------------
    def wrap(self, trainable: bool) -> torch.nn.Module:
        """The module the loop calls: DDP over the shared parameters when there are several
        workers, the model itself otherwise."""
        if not (trainable and self.ctx.world_size > 1):
            return self.model
        if self.sharded and self.param_names:
            # Per-node parameters are reduced by reduce_grads, never averaged by DDP. DDP has
            # no public switch for that; it matches "{module}.{param}" names, which for a root
            # parameter is ".name", and plain names alone would be silently averaged
            # (measured, torch 2.13).
            ignore = list(self.param_names)
            ignore += [n if "." in n else f".{n}" for n in self.param_names]
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                self.model, ignore)
        with warnings.catch_warnings():
            # torch deprecates the flag, but its replacement still syncs at init, and
            # rank-local buffers (shard graphs) must not be synced: keep the old flag
            warnings.simplefilter("ignore", FutureWarning)
            # graph operators are buffers equal on every rank; per-node state must never be
            # overwritten by rank 0's copy: no buffer broadcast
            return DistributedDataParallel(self.model, broadcast_buffers=False)

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
        if self.ctx.world_size == 1:
            return total / count.clamp(min=1)
        count = self.ctx.all_reduce_sum(count.to(torch.float64).reshape(1))
        return total * self.ctx.world_size / count.clamp(min=1.0).to(total.dtype)

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

    def reduce_grads(self) -> int:
        """Sum every copy's gradient into its global row and hand each copy the total / W;
        returns the bytes all-reduced.

        Worker i's loss is W * (its share of the full-graph loss), so the summed gradient over
        copies, divided by W, is exactly the full-graph gradient of that node's parameters."""
        if not (self.sharded and self.ctx.world_size > 1):
            return 0
        sent = 0
        for _, p in self._params():
            if p.grad is None:
                continue
            full = p.grad.new_zeros((self.num_global, *p.shape[1:]))
            full.index_add_(0, self.global_ids, p.grad)
            self.ctx.all_reduce_sum(full)
            sent += full.numel() * full.element_size()
            p.grad.copy_(full[self.global_ids] / self.ctx.world_size)
        return sent

    # -- timed steps (distst.engine.timing): DDP's reduce taken apart ----------------------
    def backward_without_reduce(self, wrapped: torch.nn.Module):
        """A context in which backward leaves DDP's all-reduce to :meth:`reduce_shared`."""
        if isinstance(wrapped, DistributedDataParallel):
            return wrapped.no_sync()
        return contextlib.nullcontext()

    def wait_for_all(self) -> None:
        if self.ctx.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()

    def reduce_shared(self, wrapped: torch.nn.Module) -> int:
        """Average the gradients DDP would have averaged, as one flat all-reduce; returns
        the bytes all-reduced (0 without DDP)."""
        if not isinstance(wrapped, DistributedDataParallel):
            return 0
        node = set(self.param_names)
        grads = [p.grad for n, p in self.model.named_parameters()
                 if n not in node and p.grad is not None]
        if not grads:
            return 0
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.ctx.all_reduce_sum(flat)
        flat /= self.ctx.world_size
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
        zero = torch.zeros((), dtype=torch.float64)
        shared = sum((p.grad.double().pow(2).sum() for n, p in named
                      if n not in node and p.grad is not None), zero)
        # replicas hold equal per-node gradients after reduce_grads: count the first's
        own = sum((self.inner_rows(p.grad).double().pow(2).sum()
                   for _, p in self._params() if p.grad is not None and self.replica == 0),
                  zero)
        if self.sharded:
            own = self.ctx.all_reduce_sum(own.reshape(1).cpu())[0]
        norm = float((shared.cpu() + own).sqrt())
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
            full.index_add_(0, self.global_ids[own], local[own])
        if self.sharded:
            self.ctx.all_reduce_sum(full)
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
