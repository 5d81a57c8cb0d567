"""Every collective of a run: the one module that calls ``torch.distributed`` for them.

Ray Train makes the run's process group; with GPUs it is NCCL, which serves CUDA tensors
only ("No backend type associated with device type cpu" for a CPU one). The engine has two
kinds of traffic, and each travels on a group made for its device, whatever backend the
default group has:

- **compute**: gradients, per-node parameter rows, loss counts, boundary rows: tensors on the
  compute device, on a group of ``Layout.compute_backend`` (NCCL on own GPUs, gloo on CPUs or
  shared GPUs) made here over all ranks, and one per replica for the boundary exchange.
- **books**: sums of Python numbers (losses of an epoch, metric state in float64): CPU
  tensors on a gloo group beside it. :meth:`Collectives.sum_books` takes numbers and gives a
  CPU float64 tensor, so no caller can hand a CPU tensor to the compute group.

Every compute collective checks the tensor's device against its group's, so a CPU tensor
meant for NCCL fails here with its name rather than deep in a backend, and a test whose
default group serves one device type only (tests/process_group.py) catches the mistake on a
machine without a GPU. tests/test_architecture.py keeps collectives out of every other module.

Ordering (exchange mode): boundary exchanges run inside backward on the replica's group. DDP
would all-reduce gradient buckets on the compute group at the same time, from autograd's
hooks, in an order that can differ between ranks; two NCCL communicators launched in
different orders on different ranks may deadlock. So in exchange mode DDP's reduce is not
overlapped: backward runs under ``no_sync`` and the gradients are all-reduced as one flat
tensor after it (:meth:`distst.engine.parallelize.Parallel.reduce_shared`): on every rank the
collectives of a step then run in one order.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from distst.errors import DiststError
from distst.layout import Layout


@dataclass(frozen=True)
class Group:
    """Ranks that talk: the compute group ``pg`` (backend for ``device_type``), a gloo
    ``books`` group over the same ranks (objects, CPU numbers), this worker's rank in them."""

    pg: object
    books: object
    device_type: str
    rank: int
    size: int


def _check(group: Group, t: torch.Tensor, what: str) -> None:
    if t.device.type != group.device_type:
        raise DiststError(
            f"collective {what}: a {t.device.type} tensor {list(t.shape)} for a group whose "
            f"backend serves {group.device_type} tensors; compute collectives take tensors on "
            "the compute device, numbers go through Collectives.sum_books")


def all_reduce_sum(group: Group, t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` (on the group's device) over the group, in place."""
    _check(group, t, "all_reduce")
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group.pg)
    return t


def all_to_all_async(group: Group, out: torch.Tensor, data: torch.Tensor,
                     out_counts: list[int], in_counts: list[int]):
    """Start ``all_to_all_single`` of ``data``'s rows into ``out``; returns the work handle."""
    _check(group, data, "all_to_all")
    return dist.all_to_all_single(out, data.contiguous(), out_counts, in_counts,
                                  group=group.pg, async_op=True)


def all_gather_object(group: Group, obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order, over the gloo side group."""
    out: list = [None] * group.size
    dist.all_gather_object(out, obj, group=group.books)
    return out


@dataclass
class Collectives:
    """The groups of one worker of ``layout`` (every rank builds it, in the same order: group
    creation is collective) and the collectives the engine runs on them. Without a process
    group, or with one worker, every collective is the identity."""

    layout: Layout
    rank: int
    world_size: int
    device: torch.device
    #: all ranks (None without a process group), and one group per replica (exchange mode)
    world: Group | None = field(init=False, default=None)
    _replicas: list = field(init=False, default_factory=list)
    active: bool = field(init=False, default=False)

    def __post_init__(self):
        self.active = (self.world_size > 1 and dist.is_available() and dist.is_initialized())
        if not self.active:
            return
        if dist.get_world_size() != self.layout.world_size:
            raise DiststError(
                f"the process group has {dist.get_world_size()} workers but the run is "
                f"{self.layout.describe()}; start it with {self.layout.world_size} workers")
        self.world = self._group(list(range(self.world_size)))
        if self.layout.exact_parts:  # one boundary-exchange group per replica
            self._replicas = [self._group(self.layout.replica_ranks(r))
                              for r in range(self.layout.replicas)]

    def _group(self, ranks: list[int]) -> Group:
        backend = self.layout.compute_backend
        pg = dist.new_group(ranks=ranks, backend=backend)
        books = pg if backend == "gloo" else dist.new_group(ranks=ranks, backend="gloo")
        mine = self.rank in ranks
        return Group(pg, books, self.device.type, ranks.index(self.rank) if mine else -1,
                     len(ranks))

    def replica_group(self) -> Group | None:
        """This worker's replica's parts (exchange mode), or None without a process group."""
        if not self._replicas:
            return None
        return self._replicas[self.layout.replica(self.rank)]

    # -- compute lane ---------------------------------------------------------------------
    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum the compute-device tensor ``t`` over all workers, in place."""
        if self.active:
            all_reduce_sum(self.world, t)
        return t

    def ddp(self, model: torch.nn.Module, ignore: list[str] = ()) -> torch.nn.Module:
        """``model`` under DDP on the compute group, its ``ignore`` parameters left out
        (their gradients are reduced by the caller); the model itself with one worker."""
        if not self.active:
            return model
        if ignore:
            # DDP has no public switch for that; it matches "{module}.{param}" names, which
            # for a root parameter is ".name", and plain names alone would be silently
            # averaged (measured, torch 2.13)
            names = list(ignore) + [n if "." in n else f".{n}" for n in ignore]
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)
        with warnings.catch_warnings():
            # torch deprecates the flag, but its replacement still syncs at init, and
            # rank-local buffers (shard graphs) must not be synced: keep the old flag
            warnings.simplefilter("ignore", FutureWarning)
            # graph operators are buffers equal on every rank; per-node state must never be
            # overwritten by rank 0's copy: no buffer broadcast
            return DistributedDataParallel(model, process_group=self.world.pg,
                                           broadcast_buffers=False)

    # -- books lane -----------------------------------------------------------------------
    def sum_books(self, values) -> torch.Tensor:
        """Sum numbers (a list, or a tensor anywhere, e.g. metric state) over all workers:
        a CPU float64 tensor, on the gloo side group."""
        t = torch.as_tensor(values, dtype=torch.float64).detach().to("cpu", copy=True)
        if self.active:
            dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.world.books)
        return t

    def barrier(self) -> None:
        if self.active:
            dist.barrier(group=self.world.books)
