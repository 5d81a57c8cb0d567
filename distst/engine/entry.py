"""Plain-process entry points: build everything from a Config and train or evaluate."""

from __future__ import annotations

import itertools
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


import torch

from distst.config import Config, check_run_name
from distst.engine.checkpoint import (
    check_resume,
    checkpoint_dirs,
    load_checkpoint,
    resolve_checkpoint,
)
from distst.engine.context import Context, LocalContext
from distst.engine.logs import trackers
from distst.engine.bundle import build_bundle
from distst.engine.provision import ensure_dataset, ensure_plan, plan_parts
from distst.engine.trainer import TEST_METRICS, Trainer
from distst.errors import DiststError, Interrupted
from distst.layout import Layout
from distst.storage import Location, configure, is_remote, location


def run_name(cfg: Config, dataset_dir: str | Path) -> str:
    if cfg.runtime.name:
        return cfg.runtime.name
    return f"{cfg.model.name}-{Path(dataset_dir).name}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_run_dir(cfg: Config, dataset_dir: str | Path) -> Location:
    """Create the run's folder under runtime.storage (a path or a URI) and write its
    config.yaml.

    A generated name gets a ``-2``, ``-3``... suffix when another run started in the same
    second (parallel runs of a benchmark or sweep), so two runs never share a folder; a
    configured ``runtime.name`` is used as given (a sweep re-runs a trial into its folder).
    """
    check_run_name(cfg.runtime.name)
    root = location(cfg.runtime.storage)
    base = run_name(cfg, dataset_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if cfg.runtime.name:
            run_dir = root / base
            run_dir.mkdir(exist_ok=True)
        elif root.is_local:
            for i in itertools.count(1):
                run_dir = root / (base if i == 1 else f"{base}-{i}")
                try:
                    Path(run_dir).mkdir()  # atomic claim of the name
                    break
                except FileExistsError:
                    continue
        else:  # object stores have no exclusive create: the first free name
            names = (root / (base if i == 1 else f"{base}-{i}") for i in itertools.count(1))
            run_dir = next(d for d in names if not d.exists())
        (run_dir / "config.yaml").write_text(cfg.to_yaml())
    except OSError as e:  # no permission, read-only, a file in the way
        raise DiststError(f"runtime.storage {root}: cannot write there ({e.strerror}); set "
                          "runtime.storage to a folder you can write, e.g. --set "
                          "runtime.storage=$HOME/runs") from None
    return run_dir


def shown(run_dir: Location) -> Path | Location:
    """What callers get back as the run directory: a Path on local storage, else the
    :class:`Location` (printed as its URI)."""
    return run_dir.local if run_dir.is_local else run_dir


def resume_hint(run_dir: Path | Location) -> str:
    """How to continue a stopped run (or that there is nothing to continue)."""
    if checkpoint_dirs(run_dir):
        return (f"the run's checkpoints are in {run_dir}; continue it with: distst train "
                f"CONFIG --resume {run_dir}")
    return "no epoch had finished, so there is nothing to resume: start the run again"


@contextmanager
def run_dir_for(cfg: Config, dataset_dir: str | Path, resume_from: str | Path | None):
    """The run folder (new, or the resumed run's); a new one that fails before its first
    checkpoint is removed again, so no folder holding only config.yaml is left behind."""
    if resume_from:
        check_resume(resume_from, cfg, dataset_dir)
        yield resolve_checkpoint(resume_from).parent
        return
    run_dir = prepare_run_dir(cfg, dataset_dir)
    fresh = not checkpoint_dirs(run_dir)
    try:
        yield run_dir
    except BaseException:
        if fresh and not checkpoint_dirs(run_dir):
            run_dir.rmtree()
        raise


def read_test_metrics(run_dir: str | Path | Location) -> dict:
    """The final metrics a run wrote (``test_metrics.json``, :meth:`Trainer.fit`)."""
    path = location(run_dir) / TEST_METRICS
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise DiststError(f"{path}: the run finished without readable test metrics ({e}); "
                          f"{resume_hint(location(run_dir))}") from None


def set_threads(cfg: Config) -> None:
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)


def train_in_context(cfg: Config, dataset_dir: str | Path, ctx: Context,
                     scaler_state: dict | None = None, plan_dir: str | Path | None = None,
                     graph: dict | None = None) -> dict:
    """What every worker runs: data, model, loop. Returns the final test metrics.

    With ``plan_dir`` (shard mode: a path or a URI) the worker opens only ``part_{rank}`` of
    the plan (fetched into node-local scratch when remote): its inner nodes, then its halo,
    with full-graph-normalised edge weights. ``graph``: the whole-graph constants of
    :func:`graph_constants`, computed once by the driver.
    """
    set_threads(cfg)
    configure(cfg.runtime.storage_options)
    lambda_max = (graph or {}).get("lambda_max")
    dataset_dir, part = open_worker_data(cfg, dataset_dir, plan_dir, ctx)
    bundle = build_bundle(cfg.data, dataset_dir, scaler_state=scaler_state, part=part,
                          lambda_max=None if lambda_max is None else float(lambda_max))
    return Trainer(cfg, bundle, ctx).fit()


def open_worker_data(cfg: Config, dataset_dir: str | Path, plan_dir: str | Path | None,
                     ctx: Context):
    """(dataset folder, part or None) for this worker, fetching what its node lacks.

    Shard: only ``part_{rank}`` (and the plan's META.json); the whole dataset is named, never
    read. Replicate/local: the dataset itself, fetched once per node when ``data.path`` is a
    URI, generated when it is a synthetic network made on another node. What was fetched is
    logged and recorded in ``run_dir/fetch/rank_R.json`` (rank, node, source, bytes).
    """
    from distst.engine.provision import cache_root, fetch_dataset
    from distst.graph.partition.plan import fetch_part, open_part

    copied, source = 0, None
    index = Layout.of(cfg).part(ctx.rank)  # replicas of a part share its files
    if plan_dir is not None:
        source = f"{plan_dir}/part_{index}"
        if not is_remote(str(plan_dir)):
            local = Path(location(str(plan_dir)).path)
            if not (local / f"part_{index}").is_dir():
                raise DiststError(
                    f"part_{index} of plan {local} is not on node {ctx.node}; on a "
                    "cluster, put the plan where every node reads it: a URI (distst "
                    "partition DATA --out s3://BUCKET/plan, then partition.plan=s3://...) "
                    "or a folder mounted on every node")
        else:
            local, copied = fetch_part(str(plan_dir), index,
                                       cache_root(cfg.data) / "fetched")
        part = open_part(local, index)
    else:
        part = None
        if is_remote(cfg.data.path):
            source = cfg.data.path
            dataset_dir, copied = fetch_dataset(cfg.data, quiet=True)
        elif not Path(dataset_dir).is_dir():
            # the driver's copy is on another node: a generated network is made here (seeded,
            # so equal); a local data.path that only the driver has fails with its fix
            if cfg.data.path:
                raise DiststError(
                    f"config key 'data.path': {dataset_dir} is not on node {ctx.node}; on a "
                    "cluster, put the dataset where every node reads it: a URI (distst data "
                    "prepare ... --out s3://BUCKET/data) or a folder mounted on every node")
            dataset_dir = ensure_dataset(cfg.data, quiet=True)
    if source is not None:
        ctx.record_fetch(source, copied)
    return dataset_dir, part


def graph_constants(cfg: Config, bundle) -> dict:
    """Whole-graph numbers that a shard worker cannot compute from its part: the Laplacian's
    largest eigenvalue when the model asks for ``lambda_max='exact'`` (empty otherwise)."""
    from distst.nn.registry import model_param_defaults

    want = cfg.model.params.get("lambda_max",
                                model_param_defaults(cfg.model.name).get("lambda_max"))
    return {"lambda_max": bundle.graph.laplacian_lambda_max()} if want == "exact" else {}


def preflight(cfg: Config, dataset_dir: str | Path) -> dict:
    """Everything that can be wrong with data, windows and model settings, checked once in
    this process before any worker starts; returns the fitted scaler state for the workers,
    so that W workers do not scan the training series W times, and the whole-graph constants
    (:func:`graph_constants`) shard workers cannot compute: ``{"scaler": ..., "graph": ...}``."""
    from distst.engine.parallelize import require_exact_parts
    from distst.nn.registry import build_model, require_recompute

    require_recompute(cfg.model.name, cfg.train.recompute)
    if Layout.of(cfg).exact_parts:
        require_exact_parts(cfg)
    bundle = build_bundle(cfg.data, dataset_dir)
    build_model(cfg.model.name, bundle.kwargs_for_model(cfg.model.name),
                dict(cfg.model.params))
    return {"scaler": bundle.scaler.state_dict(), "graph": graph_constants(cfg, bundle)}


@dataclass(frozen=True)
class WorkerJob:
    """What every worker of a multi-worker run is handed: the run's config (its worker count
    fitted to the layout), where the dataset and the plan are, the scaler fitted once and the
    whole-graph constants (:func:`preflight`), and the checkpoint to resume from."""

    cfg: Config
    dataset_dir: str
    plan_dir: str | None
    scaler: dict
    graph: dict
    resume: str | None

    def run(self, ctx: Context) -> dict:
        """One worker's part of the run (``ctx`` knows its rank); the final test metrics."""
        return train_in_context(self.cfg, self.dataset_dir, ctx, scaler_state=self.scaler,
                                plan_dir=self.plan_dir, graph=self.graph)


def prepare_workers(cfg: Config, resume_from: str | Path | None = None) -> WorkerJob:
    """What the driver does once before the workers of a run start, on whatever launches
    them: the dataset (generated once), the plan in a partitioned mode, the checks of
    :func:`preflight`. Shard and exchange mode run one worker per part and replica, whatever
    ``runtime.workers`` says (and say so)."""
    configure(cfg.runtime.storage_options)
    dataset_dir = ensure_dataset(cfg.data)
    plan_dir = None
    layout = Layout.of(cfg)
    if layout.partitioned:
        plan_dir = str(ensure_plan(cfg, dataset_dir))
        if cfg.runtime.workers != layout.world_size:
            print(f"{layout.describe()} (runtime.workers={cfg.runtime.workers} ignored)",
                  flush=True)
    for note in layout.notices():
        print(note, flush=True)
    cfg = layout.fit(cfg)
    checked = preflight(cfg, dataset_dir)
    resume = str(resolve_checkpoint(resume_from)) if resume_from else None
    return WorkerJob(cfg, str(Path(dataset_dir).resolve()), plan_dir, checked["scaler"],
                     checked["graph"], resume)


def train_local(cfg: Config, resume_from: str | Path | None = None
                ) -> tuple[Path | Location, dict]:
    """Train in this process without Ray; returns (run directory, final metrics)."""
    configure(cfg.runtime.storage_options)
    dataset_dir = ensure_dataset(cfg.data)
    ckpt = resolve_checkpoint(resume_from) if resume_from else None
    with run_dir_for(cfg, dataset_dir, resume_from) as run_dir:
        try:
            with trackers(cfg, run_dir) as logs:
                final = train_in_context(cfg, dataset_dir, LocalContext(
                    run_dir, resume_from=ckpt, listeners=[lg.report for lg in logs]))
        except KeyboardInterrupt:
            raise Interrupted(resume_hint(run_dir)) from None
    return shown(run_dir), final


def evaluate_checkpoint_sharded(path: str | Path, plan_dir: str | Path,
                                split: str = "test") -> dict:
    """A checkpoint's best model evaluated the way shard mode runs it: each part of the plan
    sees only its inner nodes and halo, errors and counts of the inner nodes summed over parts.

    With a fixed model this isolates what the halo depth costs (no training noise): compare
    with :func:`evaluate_checkpoint` (the whole graph in one piece).
    """
    from distst.graph.partition.plan import load_plan, open_part, verify_plan

    payload, cfg = load_checkpoint(path)
    dataset_dir = payload["dataset_dir"]
    verify_plan(plan_dir, dataset_dir)
    set_threads(cfg)
    # one process standing in for the plan's workers: one replica, the parts in turn
    cfg.runtime.mode, cfg.runtime.replicas = "shard", 1
    total = None
    whole = build_bundle(cfg.data, dataset_dir, scaler_state=payload["scaler"])
    constants = graph_constants(cfg, whole)
    for i in range(load_plan(plan_dir).num_parts):
        bundle = build_bundle(cfg.data, dataset_dir, scaler_state=payload["scaler"],
                              part=open_part(plan_dir, i),
                              lambda_max=constants.get("lambda_max"))
        trainer = Trainer(cfg, bundle, LocalContext(resolve_checkpoint(path).parent))
        state = payload["trainer"]
        trainer.load_state_dict(state)
        if state.get("best_model") is not None:
            trainer.model.load_state_dict(trainer.par.local_state(state["best_model"]))
        m = trainer.evaluate(split)
        if total is None:
            total = m
        else:
            total.merge_state(m.state())
    return {"model": cfg.model.name, "split": split, "plan": str(plan_dir),
            split: total.report(steps=tuple(cfg.train.report_steps),
                              step_minutes=bundle.network.step_minutes)}


def restore_best(path: str | Path | Location, split: str = "test", *, cfg: Config | None = None,
                 part=None, ctx: Context | None = None,
                 lambda_max: float | None = None) -> Trainer:
    """A trainer holding a checkpoint's best model (``trainer.bundle`` has the data,
    ``trainer.cfg`` the run's config); ``split`` must exist.

    By default over the whole graph in this process. A worker of a partitioned layout (a
    forecast through the run's own parts, :mod:`distst.engine.predict`) passes its ``part`` of
    the plan, its ``ctx`` (rank, device, collectives), the run's ``cfg`` fitted to that layout
    and the whole graph's ``lambda_max``: it then holds its part's rows of the per-node
    parameters, and in exchange mode its graph products fetch their boundary from the owners.
    """
    from distst.nn.registry import model_data_keys

    payload, stored = load_checkpoint(path)
    cfg = cfg or stored
    dataset_dir = payload["dataset_dir"]
    if part is None and not Path(dataset_dir).exists():
        dataset_dir = ensure_dataset(cfg.data)
    set_threads(cfg)
    bundle = build_bundle(cfg.data, dataset_dir, scaler_state=payload["scaler"], part=part,
                          lambda_max=lambda_max)
    if (part is None and Layout.of(cfg).exact_parts
            and "coarsening" in model_data_keys(cfg.model.name)):
        # the run coarsened inside its plan's parts (ST-UNet): so does its evaluation
        bundle.graph.coarsen_within = plan_parts(cfg, dataset_dir)
    ctx = ctx or LocalContext(resolve_checkpoint(path).parent)
    trainer = Trainer(cfg, bundle, ctx)
    state = payload["trainer"]
    trainer.load_state_dict(state)
    if trainer.best_state is not None:  # this worker's rows of the best model
        trainer.model.load_state_dict(trainer.best_state)
    if split not in bundle.datasets:
        raise DiststError(f"split {split!r} does not exist; choices: {', '.join(bundle.datasets)}")
    return trainer


def evaluate_checkpoint(path: str | Path, split: str = "test") -> dict:
    """Re-evaluate a checkpoint's best model on ``split`` in this process."""
    trainer = restore_best(path, split)
    cfg, bundle = trainer.cfg, trainer.bundle
    res = trainer.evaluate(split).report(steps=tuple(cfg.train.report_steps),
                                          step_minutes=bundle.network.step_minutes)
    return {"model": cfg.model.name, "split": split, "epoch": trainer.epoch,
            "checkpoint": str(resolve_checkpoint(path)), split: res}
