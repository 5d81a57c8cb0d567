"""distst's training engine in W plain processes joined by one gloo process group.

This is what the W workers of a Ray Train run execute: the driver's
:func:`distst.engine.entry.prepare_workers`, then :meth:`WorkerJob.run` in every worker with a
context of its rank, all-reduces and DDP on a gloo group made the way Ray Train makes it
(``env://``), except that the default group serves CUDA tensors only (``cuda:gloo``), as
Ray's NCCL group on GPUs does: a CPU tensor handed to it fails ("No backend type associated
with device type cpu"), so every run here shows that the engine's collectives go through
groups made for their device (distst.engine.collectives) on a machine without a GPU. What it
leaves out is Ray itself: the controller, the actors and their
reports, which cost a Ray run about 10 s and 25 CPU-seconds however short it is
(scripts/bench_ray_fit.py). Tests of the engine's multi-worker semantics (every model in
shard mode, exchange mode's exactness) run here, many runs on one spawn; tests of what Ray
adds (reports, checkpoints through Ray, restarts, fetching, Tune) run on the session Ray.
"""

from __future__ import annotations

import os
import socket
from contextlib import ExitStack
from pathlib import Path

import torch.distributed as dist

from distst.config import Config
from distst.engine.context import LocalContext
from distst.engine.entry import WorkerJob, prepare_workers, read_test_metrics, run_dir_for, shown


#: the default group's backend: gloo registered for CUDA tensors only (see the docstring)
DEFAULT_BACKEND = "cuda:gloo"


class GroupContext(LocalContext):
    """A worker of the group: its rank and the group's size; the main rank publishes the
    checkpoints (every rank reports, as under Ray, and only rank 0 hands one over)."""

    def __init__(self, run_dir: str, resume_from: str | None = None):
        super().__init__(run_dir, resume_from=resume_from)
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, runs: list[tuple[WorkerJob, str]]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    dist.init_process_group(DEFAULT_BACKEND, init_method="env://", rank=rank, world_size=world)
    try:
        between = dist.new_group(backend="gloo")
        for job, run_dir in runs:
            job.run(GroupContext(run_dir, resume_from=job.resume))
            # the next run starts together, as a new worker group would
            dist.barrier(group=between)
    finally:
        dist.destroy_process_group()


def train_group(configs: list[Config], resume_from: list | None = None
                ) -> list[tuple[Path, dict]]:
    """Train every config in turn on one spawn of W processes (W: the configs' workers,
    equal for all); returns (run directory, final test metrics) per config, as
    :func:`distst.runtime.ray_train.train_ray` does. ``resume_from``: a run to resume per
    config (or None)."""
    import torch.multiprocessing as mp

    resume_from = resume_from or [None] * len(configs)
    jobs = [prepare_workers(cfg, resume) for cfg, resume in zip(configs, resume_from)]
    worlds = {job.cfg.runtime.workers for job in jobs}
    assert len(worlds) == 1, f"one spawn runs one group size, not {sorted(worlds)}"
    with ExitStack() as stack:
        run_dirs = [stack.enter_context(run_dir_for(job.cfg, job.dataset_dir, resume))
                    for job, resume in zip(jobs, resume_from)]
        # each worker sets its threads from its run's train.threads, as under Ray
        mp.spawn(_worker, args=(worlds.pop(), _free_port(),
                                [(job, str(d)) for job, d in zip(jobs, run_dirs)]),
                 nprocs=jobs[0].cfg.runtime.workers, join=True)
        return [(shown(d), read_test_metrics(d)) for d in run_dirs]


def _forecast_piece(rank: int, job, out: str) -> None:
    import pickle

    ctx = GroupContext(str(Path(job.checkpoint).parent))
    ctx.keeps_fetch_records = False
    (Path(out) / f"piece_{rank}.pkl").write_bytes(pickle.dumps(job.piece(ctx)))


def forecast_group(job, out: Path):
    """A forecast through the run's layout (``job``: :func:`distst.engine.predict.forecast_job`
    with a plan) on one spawn of its workers, as :func:`distst.runtime.ray_train.predict_ray`
    makes it on Ray; returns (the assembled forecasts, the pieces by rank)."""
    import pickle

    world = job.layout.world_size
    out.mkdir(parents=True, exist_ok=True)
    run_group(_forecast_piece, world, job, str(out))
    pieces = [pickle.loads((out / f"piece_{r}.pkl").read_bytes()) for r in range(world)]
    return job.assemble(pieces), pieces


def _call(rank: int, world: int, port: int, fn, args) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    dist.init_process_group(DEFAULT_BACKEND, init_method="env://", rank=rank, world_size=world)
    try:
        fn(rank, *args)
    finally:
        dist.destroy_process_group()


def run_group(fn, world: int, *args) -> None:
    """``fn(rank, *args)`` in each of ``world`` processes of one gloo group (``fn``: a
    module-level function, as spawn pickles it by name)."""
    import torch.multiprocessing as mp

    mp.spawn(_call, args=(world, _free_port(), fn, args), nprocs=world, join=True)
