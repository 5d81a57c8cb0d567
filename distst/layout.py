"""The parallel layout of a run: how many workers, which part and replica each one is, on
what device, talking over which backends, asking for what resources.

Built once from the config (:meth:`Layout.of`) and asked by everything that needs any of
these numbers: the training engine (rank -> part and replica, the window split, the batch
per worker), the runtime (Ray Train's scaling and backend), the sweep (workers per trial) and
the scaling studies (workers per run, memory per worker). No other module computes them, so
they cannot disagree (a sweep with ``runtime.replicas=2`` once planned resources for half the
workers it started).

Every mode is the same grid of ``parts x replicas`` workers, ``rank = replica * parts +
part``: shard and exchange cut the graph into ``partition.parts`` parts and copy that group
``runtime.replicas`` times; replicate is one part (the whole graph) and ``runtime.workers``
replicas; one plain process is one part and one replica. The replicas split each global
batch of windows; the parts of one replica see the same windows (their own nodes of them).

Backends: on CPUs gloo. On GPUs that every worker has to itself, NCCL for the compute
tensors and gloo beside it for CPU ones (Ray's process group as ``cpu:gloo,cuda:nccl``).
Workers that share a GPU (``runtime.gpus_per_worker`` < 1) cannot use NCCL, which refuses
two ranks on one device ("Duplicate GPU detected"), so they run on gloo, which reduces CUDA
tensors too (slower: they travel through host memory), and the run says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from distst.config import PARTITIONED_MODES, Config
from distst.errors import DiststError


def fits(need: dict[str, float], have: dict[str, float]) -> bool:
    """Whether resources ``have`` (a cluster's: ``{"CPU": 8.0, ...}``) hold ``need``."""
    return all(v <= float(have.get(k, 0.0)) + 1e-9 for k, v in need.items())


@dataclass(frozen=True)
class Layout:
    """``parts x replicas`` workers of ``mode`` (see the module docstring)."""

    mode: str = "local"
    #: parts of the graph (1: every worker holds the whole graph)
    parts: int = 1
    #: copies of the parts' worker group, which split the windows of a batch
    replicas: int = 1

    def __post_init__(self):
        if self.parts < 1 or self.replicas < 1:
            raise DiststError(f"layout: {self.parts} parts x {self.replicas} replicas; both "
                              "must be >= 1 (partition.parts, runtime.replicas / "
                              "runtime.workers)")

    # what one worker asks Ray for
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0

    @classmethod
    def of(cls, cfg: Config, workers: int | None = None) -> "Layout":
        """The layout of ``cfg``'s run. ``workers`` replaces ``runtime.workers`` (a sweep's
        ``workers_per_trial``); partitioned modes ignore both: one worker per part and
        replica."""
        rt = cfg.runtime
        if rt.mode == "local":
            parts, replicas = 1, 1
        elif rt.mode in PARTITIONED_MODES:
            parts, replicas = cfg.partition.parts, rt.replicas
        else:
            parts, replicas = 1, int(workers or rt.workers)
        return cls(rt.mode, parts, replicas, bool(rt.use_gpu and rt.mode != "local"),
                   float(rt.cpus_per_worker), float(rt.gpus_per_worker))

    # -- who is who -----------------------------------------------------------------------
    @property
    def world_size(self) -> int:
        return self.parts * self.replicas

    @property
    def partitioned(self) -> bool:
        """Each worker holds one part of the graph (shard, exchange)."""
        return self.mode in PARTITIONED_MODES

    @property
    def exact_parts(self) -> bool:
        """Every read of a neighbour in another part is fetched from its owner (exchange):
        training equals one process on the whole graph."""
        return self.mode == "exchange"

    def part(self, rank: int) -> int:
        """The part of the graph worker ``rank`` holds (replicas of a part share its files)."""
        self._check_rank(rank)
        return rank % self.parts

    def replica(self, rank: int) -> int:
        self._check_rank(rank)
        return rank // self.parts

    def replica_ranks(self, replica: int) -> list[int]:
        """The ranks of one replica's parts: the workers that exchange boundaries."""
        return list(range(replica * self.parts, (replica + 1) * self.parts))

    def window_split(self, rank: int) -> tuple[int, int]:
        """(index, count) of worker ``rank``'s slice of the windows: the replicas split them,
        the parts of one replica take the same ones."""
        return self.replica(rank), self.replicas

    def worker_batch(self, batch_size: int) -> int:
        """Windows one worker takes per step of a global batch of ``batch_size``."""
        return max(1, batch_size // self.replicas)

    def global_batch(self, batch_size: int) -> int:
        """Windows one optimiser step consumes over all workers."""
        return self.worker_batch(batch_size) * self.replicas

    def _check_rank(self, rank: int) -> None:
        if not 0 <= rank < self.world_size:
            raise DiststError(f"layout: rank {rank} outside the {self.world_size} workers of "
                              f"{self.describe()}")

    # -- devices and backends -------------------------------------------------------------
    @property
    def device_type(self) -> str:
        return "cuda" if self.use_gpu else "cpu"

    @property
    def shares_gpus(self) -> bool:
        """Several workers may land on one GPU (a fraction per worker)."""
        return self.use_gpu and self.gpus_per_worker < 1 and self.world_size > 1

    @property
    def compute_backend(self) -> str:
        """The backend of the collectives on the compute device (gradients, boundaries)."""
        return "nccl" if self.use_gpu and not self.shares_gpus else "gloo"

    @property
    def torch_backend(self) -> str:
        """The backend string of the run's process group (Ray Train's ``TorchConfig``): one
        that serves CPU tensors as well as the compute device's."""
        return "cpu:gloo,cuda:nccl" if self.compute_backend == "nccl" else "gloo"

    # -- resources ------------------------------------------------------------------------
    @property
    def resources_per_worker(self) -> dict[str, float]:
        out = {"CPU": self.cpus_per_worker}
        if self.use_gpu:
            out["GPU"] = self.gpus_per_worker
        return out

    @property
    def total_resources(self) -> dict[str, float]:
        return {k: v * self.world_size for k, v in self.resources_per_worker.items()}

    def check_fits(self, have: dict[str, float], who: str = "this run") -> None:
        """Refuse a layout whose workers need more CPUs or GPUs than ``have`` (a cluster's
        resources), naming what it needs and the knobs that change it."""
        for res, need in self.total_resources.items():
            got = float(have.get(res, 0.0))
            if not fits({res: need}, have):
                per = self.resources_per_worker[res]
                knob = ("runtime.cpus_per_worker" if res == "CPU" else "runtime.gpus_per_worker")
                raise DiststError(
                    f"{who} ({self.describe()}) needs {self.world_size} workers x {knob}="
                    f"{per:g} = {need:g} {res}s but the Ray cluster has {got:g}; "
                    + ("lower runtime.workers (replicate) or partition.parts / "
                       "runtime.replicas (shard, exchange), or runtime.cpus_per_worker"
                       if res == "CPU" else
                       "set runtime.use_gpu=false, fewer workers, or a fraction "
                       "(runtime.gpus_per_worker=0.5 puts two workers on one GPU, on gloo)"))

    # -- the config -----------------------------------------------------------------------
    def fit(self, cfg: Config) -> Config:
        """``cfg`` with ``runtime.workers`` equal to this layout's workers (partitioned modes
        run parts x replicas, whatever runtime.workers said)."""
        if cfg.runtime.workers == self.world_size or self.mode == "local":
            return cfg
        return replace(cfg, runtime=replace(cfg.runtime, workers=self.world_size))

    def describe(self) -> str:
        if self.mode == "local":
            return "one process"
        dev = (f", {self.gpus_per_worker:g} GPU each" if self.use_gpu else "")
        if self.partitioned:
            return (f"{self.mode} mode, {self.parts} parts x {self.replicas} replicas = "
                    f"{self.world_size} workers{dev}")
        return f"{self.mode} mode, {self.world_size} workers{dev}"

    def notices(self) -> list[str]:
        """What a user should hear about this layout before the run starts."""
        out = []
        if self.shares_gpus:
            share = max(1, math.floor(1 / self.gpus_per_worker + 1e-9))
            out.append(f"runtime.gpus_per_worker={self.gpus_per_worker:g}: up to {share} "
                       "workers share a GPU, which NCCL refuses; collectives run on gloo "
                       "(through host memory, slower); give each worker a whole GPU for NCCL")
        return out


@dataclass(frozen=True)
class Ownership:
    """Which of a worker's local nodes it owns: the first ``num_inner`` (its part of the
    graph), then its halo; ``global_ids`` maps every local row to its whole-graph node.
    Losses, metrics and clip norms count owned nodes only, so each node counts once."""

    num_inner: int
    global_ids: np.ndarray
    num_global: int
    #: a part of a plan (shard, exchange) rather than the whole graph
    partial: bool = False
    #: a part's halo depth (the plan's ``halo_hops``): its halo holds every node within so
    #: many hops of its owned nodes
    halo_hops: int = 0

    @classmethod
    def whole(cls, num_nodes: int) -> "Ownership":
        return cls(int(num_nodes), np.arange(int(num_nodes), dtype=np.int64), int(num_nodes))

    @classmethod
    def of_part(cls, nodes, num_inner: int, num_global: int, halo_hops: int = 0
                ) -> "Ownership":
        """A plan's part: ``nodes`` its local nodes' global ids, the owned ones first, its
        halo ``halo_hops`` deep."""
        ids = np.asarray(nodes, dtype=np.int64)
        if not 0 <= num_inner <= ids.size or ids.size > num_global:
            raise DiststError(f"ownership: {num_inner} owned of {ids.size} local nodes of a "
                              f"{num_global}-node graph; the plan is inconsistent, make it "
                              "again")
        return cls(int(num_inner), ids, int(num_global), partial=True,
                   halo_hops=int(halo_hops))

    @property
    def num_local(self) -> int:
        return int(self.global_ids.size)
