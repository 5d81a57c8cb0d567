"""Ray Tune over Ray Train: every trial is a Tune function that builds and fits a TorchTrainer.

This is the Train V2 way of tuning distributed runs (Ray 2.60): the Tune trial is a small
driver at ``driver_cpus`` CPUs that calls :func:`distst.runtime.ray_train.train_ray` with a
Train callback forwarding each report to Tune; the trial's workers get their own placement
group from Ray Train, which Tune does not see. Hence ``max_concurrent_trials`` is chosen
(:func:`distst.sweep.config.plan_resources`) so that the drivers plus the workers of all
running trials fit the cluster: a driver never holds the CPUs its own workers wait for.

Layout of a sweep directory (``storage/name``): Ray Tune's experiment state and one folder
per trial (its ``result.json``), ``trials/<trial_id>/`` the trial's Ray Train run (config,
metrics.jsonl, checkpoints), ``sweep.yaml`` (what ``--resume`` needs), ``plans.json``, and
at the end ``trials.csv`` / ``trials.md`` (trials sorted by the metric), ``best_config.yaml``
(runs as is with ``distst train``) and ``best_test_metrics.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

import ray
import ray.tune
from ray.tune.integration.ray_train import TuneReportCallback

from distst.config import config_from_dict, fill_dataclass, load_yaml, read_saved_yaml
from distst.layout import Layout
from distst.errors import DiststError
from distst.storage import Location, configure, location
from distst.engine.entry import shown
from distst.engine.logs import read_metrics_log
from distst.engine.parallelize import plan_halo_hops
from distst.sweep import manifest
from distst.sweep.config import (
    PARTITION_KEYS,
    Resources,
    Sweep,
    SweepConfig,
    build_sweep,
    max_workers,
    partition_combos,
    plan_resources,
    set_key,
    trial_config,
)

SWEEP_FILE = "sweep.yaml"
PLANS_FILE = "plans.json"


def plan_key(method, parts, halo_hops, seed, order="ascending") -> str:
    return f"{method}|p{int(parts)}|h{int(halo_hops)}|s{int(seed)}|{order}"


# -- inside a trial ----------------------------------------------------------------------------
class SweepReportCallback(TuneReportCallback):
    """Forwards rank 0's per-epoch reports to Tune (``epoch`` is ASHA's time attribute).

    The trainer's last report carries test metrics but no validation metrics; Tune requires
    the sweep metric in every result, so that report is merged with the last epoch's."""

    def __init__(self, metric: str, run_dir: str | Path | Location):
        super().__init__()
        self._metric = metric
        self._run_dir = location(run_dir)
        self._last: dict = {}

    def after_report(self, run_context, metrics, checkpoint):
        m = dict(metrics[0])
        if m.get("partial"):  # a mid-epoch checkpoint: no new result for the scheduler
            return
        if m.get("final"):
            last = self._last or _last_epoch_record(self._run_dir)
            m = {**last, **m}
            m.setdefault(self._metric, float("nan"))
        else:
            self._last = m
        super().after_report(run_context, [m] + list(metrics[1:]), checkpoint)


class ManifestCallback(ray.tune.Callback):
    """Re-signs the sweep folder (:mod:`distst.sweep.manifest`) after every Tune step that
    changed one of its files, so that ``--resume`` can tell distst's files from others."""

    def __init__(self, sweep_dir: str | Path | Location):
        self._dir = location(sweep_dir)
        self._seen = None
        self._checked = 0.0
        # Tune steps many times a second; walking a large sweep folder that often would cost
        # the driver more than a second's lag costs a resume (it rolls back one step). On an
        # object store each walk is a listing request, and Tune uploads its state there only
        # every few seconds anyway
        self._every = 1.0 if self._dir.is_local else 10.0

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if now - self._checked < self._every:
            return
        self._checked = now
        stamp = manifest.stamp(self._dir)
        if stamp != self._seen:
            manifest.sign(self._dir)
            self._seen = stamp

    def on_experiment_end(self, trials, **info):
        manifest.sign(self._dir)


def _last_epoch_record(run_dir: Location) -> dict:
    """The last epoch's record of a run resumed after its last epoch (nothing in memory)."""
    path = location(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return {}
    recs = read_metrics_log(path)
    return recs[-1] if recs else {}


def trial_main(config: dict, static: dict) -> None:
    """The Tune function of one trial: its Config, then one Ray Train run (must live in the
    installed package so that Ray workers can import it)."""
    from distst.runtime.ray_train import PREEMPTION_WATCHER_ENV, train_ray

    if static.get("local_ray"):
        # the driver started this Ray on its machine: no node to drain, as in a local run
        # (train_env); a trial runs in an actor, which never started a Ray itself
        os.environ.setdefault(PREEMPTION_WATCHER_ENV, "0")
    cfg = trial_config(static["base_raw"], {key: config[key] for key in static["keys"]})
    trial_id = ray.tune.get_context().get_trial_id()
    rt = cfg.runtime
    configure(rt.storage_options)
    rt.storage = str(location(static["sweep_dir"]) / "trials")
    rt.name = trial_id
    rt.address = ""
    rt.cpus_per_worker = static["cpus_per_worker"]
    if rt.partitioned:
        pc = cfg.partition
        # the driver made every plan before the trials started: never partition in a trial
        pc.plan = static["plans"][plan_key(pc.method, pc.parts,
                                           plan_halo_hops(cfg), pc.seed, pc.order)]
    rt.workers = Layout.of(cfg, workers=static["workers_per_trial"] or None).world_size
    cfg.train.progress = False
    cfg = config_from_dict(cfg.to_dict())  # re-check cross-field rules (batch vs workers)
    run_dir = location(rt.storage) / trial_id
    run_dir.mkdir()
    # a trial restarted by `--resume` continues its own run from its last checkpoint
    resume = str(run_dir) if any((d / "checkpoint.pt").is_file()
                                 for d in run_dir.glob("checkpoint_*")) else None
    (run_dir / "starts.log").append_text(f"{time.time():.3f} {'resume' if resume else 'start'}\n")
    train_ray(cfg, resume_from=resume,
            callbacks=[SweepReportCallback(static["metric"], run_dir)])


def trial_dirname(trial) -> str:
    """Short trial folders (Tune's default names every searched value)."""
    return trial.trial_id


# -- the driver ----------------------------------------------------------------------------------
@dataclass
class SweepResult:
    #: a Path for a local sweep, a Location for one on an object store
    sweep_dir: Path | Location
    rows: list[dict]
    best: dict | None
    best_config: Path | Location | None
    #: evaluate_checkpoint's answer for the best trial's best model (split "test")
    test: dict | None
    table: str
    resources: Resources | None = None
    counts: dict = field(default_factory=dict)


def tune_space(sweep: Sweep) -> dict:
    tune = ray.tune
    out = {}
    for d in sweep.domains:
        if d.kind == "choice":
            out[d.key] = tune.choice(d.values)
        elif d.kind == "grid":
            out[d.key] = tune.grid_search(d.values)
        elif d.kind == "uniform":
            out[d.key] = tune.uniform(*d.values)
        elif d.kind == "loguniform":
            out[d.key] = tune.loguniform(*d.values)
        else:  # randint: both ends included here, Tune's upper bound is exclusive
            out[d.key] = tune.randint(d.values[0], d.values[1] + 1)
    return out


def check_models(sweep: Sweep, dataset_dir) -> None:
    """Build the model once per candidate of every searched model hyperparameter, so that a
    value the model refuses (e.g. hidden_size 0) fails here rather than in a trial."""
    from distst.engine.bundle import build_bundle
    from distst.nn.registry import build_model

    doms = [d for d in sweep.domains if d.key.startswith("model.")]
    if not doms:
        return
    bundle = build_bundle(sweep.base.data, dataset_dir, notices=False)  # preflight says it
    for d in doms:
        for value in d.candidates():
            cfg = config_from_dict(set_key(sweep.base_raw, d.key, value))
            params = dict(cfg.model.params)
            if cfg.model.name == "ha":
                params.setdefault("steps_per_day", bundle.steps_per_day)
            try:
                build_model(cfg.model.name,
                            bundle.kwargs_for_model(cfg.model.name), params)
            except DiststError as e:
                raise DiststError(f"search_space key '{d.key}': value {value!r}: {e}") from None


def _sweep_dir(sweep: Sweep) -> Location:
    """``storage/name``: a local folder (shared by every node on a cluster: NFS) or a URI
    (Tune's experiment state, the trials' runs and the signed manifest all live there)."""
    sc = sweep.cfg
    where = sc.storage or sweep.base.runtime.storage
    name = sc.name or f"sweep-{sweep.base.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return location(where) / name


def make_plans(sweep: Sweep, dataset_dir) -> dict[str, str]:
    """Every partition plan the trials can need, made (or found in the cache) once, here."""
    from distst.engine.provision import ensure_plan

    plans = {}
    for combo in partition_combos(sweep):
        raw = sweep.base_raw
        for name in PARTITION_KEYS:
            raw = set_key(raw, f"partition.{name}", combo[name])
        cfg = config_from_dict(raw)
        plans[plan_key(**combo)] = str(ensure_plan(cfg, dataset_dir, hops=combo["halo_hops"]))
    return plans


def run_sweep(sweep: Sweep, resume: bool = False, sweep_dir: str | Path | None = None,
              progress: bool = True) -> SweepResult:
    """Run (or with ``resume``, continue) ``sweep``; returns the trials sorted by the metric."""
    from distst.engine.provision import ensure_dataset
    from distst.engine.entry import preflight
    from distst.runtime.ray_train import connect, max_failures, started_here, wait_for_room

    sc = sweep.cfg
    configure(sweep.base.runtime.storage_options)
    sdir = location(sweep_dir) if sweep_dir else _sweep_dir(sweep)
    if resume:
        manifest.verify(sdir)  # before any work, and before Tune unpickles anything in it
    elif (sdir / SWEEP_FILE).exists():
        raise DiststError(f"sweep directory {sdir} already holds a sweep; continue it with "
                          f"'distst tune --resume {sdir}' or set another name (--set name=...)")
    dataset_dir = ensure_dataset(sweep.base.data)
    preflight(sweep.base, dataset_dir)
    check_models(sweep, dataset_dir)
    connect(sc.address or sweep.base.runtime.address)
    # room for one trial (its driver and workers) on a cluster that may start with none;
    # concurrency is planned from what the cluster has once that trial fits
    rt = sweep.base.runtime
    w, cpw = max_workers(sweep), sc.cpus_per_worker or rt.cpus_per_worker
    worker = {"CPU": cpw, **({"GPU": rt.gpus_per_worker} if rt.use_gpu else {})}
    # the least one trial runs with: automatic CPUs per worker shrink to fit (at least one
    # CPU per worker in all, plan_resources), set ones do not
    need = {"CPU": sc.driver_cpus + w * cpw if sc.cpus_per_worker else float(w),
            **({"GPU": w * rt.gpus_per_worker} if rt.use_gpu else {})}
    have, _ = wait_for_room(need, [{"CPU": sc.driver_cpus}, *[worker] * w],
                            rt.node_wait_s, f"sweep {sdir.name}")
    res = plan_resources(sweep, have.get("CPU", 0.0), have.get("GPU", 0.0))
    if not sc.cpus_per_worker and res.cpus_per_worker < rt.cpus_per_worker:
        print(f"sweep: runtime.cpus_per_worker={rt.cpus_per_worker:g} does not fit "
              f"{res.max_concurrent_trials} trial(s) on {have.get('CPU', 0.0):g} CPUs: each "
              f"worker gets {res.cpus_per_worker:g} (set cpus_per_worker in the sweep to "
              "choose)", flush=True)
    plans = make_plans(sweep, dataset_dir)
    sdir.mkdir()
    if not resume:
        saved = {"sweep": {**dataclasses.asdict(sc), "overrides": []}, "base": sweep.base_raw}
        (sdir / SWEEP_FILE).write_text(yaml.safe_dump(saved, sort_keys=False))
    (sdir / PLANS_FILE).write_text(json.dumps(plans, indent=2))
    print(f"sweep directory: {sdir}", flush=True)
    print(f"trials: {res.workers} workers x {res.cpus_per_worker:g} CPU + driver "
          f"{res.driver_cpus:g} CPU, {res.max_concurrent_trials} at a time", flush=True)
    static = {"base_raw": sweep.base_raw, "keys": sweep.searched_keys, "sweep_dir": str(sdir),
              "plans": plans, "cpus_per_worker": res.cpus_per_worker,
              "workers_per_trial": sc.workers_per_trial, "metric": sc.metric,
              "local_ray": started_here()}
    trainable = ray.tune.with_resources(
        ray.tune.with_parameters(trial_main, static=static),
        ray.tune.PlacementGroupFactory([{"CPU": res.driver_cpus}]))
    # Tune's newer console output ignores a ProgressReporter; the classic one can be trimmed
    # to the searched keys and the metric
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if resume:
        tuner = ray.tune.Tuner.restore(sdir.path, trainable, resume_unfinished=True,
                                       resume_errored=True, storage_filesystem=sdir.fs)
    else:
        tuner = ray.tune.Tuner(
            trainable,
            param_space=tune_space(sweep),
            tune_config=ray.tune.TuneConfig(
                metric=sc.metric, mode=sc.mode, scheduler=_scheduler(sweep),
                search_alg=_searcher(sweep, res.max_concurrent_trials),
                num_samples=sc.num_samples,
                # the random searcher takes the limit itself (Tune ignores this one for it)
                max_concurrent_trials=(res.max_concurrent_trials if sc.searcher == "optuna"
                                       else None),
                trial_dirname_creator=trial_dirname),
            run_config=ray.tune.RunConfig(
                name=sdir.name, storage_path=sdir.parent.path, storage_filesystem=sdir.fs,
                # a trial whose Train run failed past runtime.max_failures is started again
                # from its checkpoints this many times, then reported as an error; the sweep
                # goes on with the other trials either way
                failure_config=ray.tune.FailureConfig(max_failures=max_failures(
                    dataclasses.replace(sweep.base, runtime=dataclasses.replace(
                        sweep.base.runtime, address=sc.address or sweep.base.runtime.address)))),
                progress_reporter=_reporter(sweep) if progress else None,
                verbose=1 if progress else 0,
                callbacks=[ManifestCallback(sdir)]),
        )
    try:
        grid = tuner.fit()
    finally:  # also on Ctrl-C: what Tune wrote last is what --resume will find
        manifest.sign(sdir)
    out = summarise(sweep, sdir, grid)
    manifest.sign(sdir)  # the tables and the best config are part of the signed folder
    out.resources = res
    return out


def _scheduler(sweep: Sweep):
    sc = sweep.cfg
    if sc.scheduler == "fifo":
        return ray.tune.schedulers.FIFOScheduler()
    from ray.tune.schedulers import ASHAScheduler

    rungs = asha_rungs(sc, sweep.base.train.epochs)
    if rungs["max_t"] < sc.grace_period:
        # no rung below the last epoch (a 1-epoch sweep): ASHA could stop nothing
        return ray.tune.schedulers.FIFOScheduler()
    return ASHAScheduler(time_attr="epoch", **rungs)


def asha_rungs(sc, epochs: int) -> dict:
    """ASHA's bounds, such that its last rung lies below the last epoch: a trial that has
    trained every epoch is never stopped, because stopping it then saves nothing and loses
    its final report (test metrics and checkpoint). Ray puts rungs at grace * rf**k up to and
    including ``max_t`` and, with ``stop_last_trials``, stops every trial that reaches it."""
    top = min(sc.max_t or epochs, epochs - 1)
    return {"max_t": top, "grace_period": sc.grace_period,
            "reduction_factor": sc.reduction_factor, "stop_last_trials": False}


def _searcher(sweep: Sweep, max_concurrent: int):
    sc = sweep.cfg
    if sc.searcher == "optuna":
        try:
            import optuna
            from ray.tune.search.optuna import OptunaSearch
        except ImportError:
            raise DiststError("searcher: optuna needs the optuna package; pip install "
                              "optuna, or use searcher: random") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=sc.seed))
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(random_state=sc.seed, max_concurrent=max_concurrent)


def _reporter(sweep: Sweep):
    from ray.tune import CLIReporter

    sc = sweep.cfg
    return CLIReporter(parameter_columns=sweep.searched_keys,
                       metric_columns={sc.metric: sc.metric, "epoch": "epoch"},
                       sort_by_metric=True, max_report_frequency=15, max_progress_rows=20)


# -- results -------------------------------------------------------------------------------------
def summarise(sweep: Sweep, sdir: Location, grid) -> SweepResult:
    """Trials sorted by the metric -> trials.csv / trials.md; the best trial's config and
    test metrics -> best_config.yaml / best_test_metrics.json."""
    sc = sweep.cfg
    sign = 1.0 if sc.mode == "min" else -1.0
    rows = []
    for result in grid:
        # the trial's own id names its run folder (trials/<trial_id>, made by the trial); Tune's
        # folder for a trial restored by --resume whose run had started before the kill gets
        # a suffix (the name was taken by that run: trials/<trial_id>_91a3), so its name is
        # not the run's. Tune reports the id with every result.
        trial_id = str((result.metrics or {}).get("trial_id") or Path(result.path).name)
        df = result.metrics_dataframe
        vals = (df[sc.metric].dropna().tolist()
                if df is not None and sc.metric in df.columns else [])
        best = (min(vals) if sc.mode == "min" else max(vals)) if vals else float("nan")
        last = result.metrics or {}
        epochs = int(last.get("epoch", 0) or 0)
        status = ("error" if result.error else "done" if last.get("final")
                  else "stopped early")
        row = {"trial": trial_id, **{k: result.config.get(k) for k in sweep.searched_keys},
               sc.metric: best, "epochs": epochs, "status": status,
               "run_dir": str(sdir / "trials" / trial_id)}
        rows.append(row)
    rows.sort(key=lambda r: (math.isnan(r[sc.metric]), sign * r[sc.metric]
                             if not math.isnan(r[sc.metric]) else 0.0))
    table = format_trials(rows, sweep.searched_keys, sc.metric)
    (sdir / "trials.md").write_text(table + "\n")
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (sdir / "trials.csv").write_text(buf.getvalue())
    best = next((r for r in rows if r["status"] != "error" and not math.isnan(r[sc.metric])),
                None)
    best_config, test = None, None
    if best is not None:
        best_config = export_best_config(sweep, best["run_dir"], sdir / "best_config.yaml")
        from distst.engine.entry import evaluate_checkpoint

        test = evaluate_checkpoint(best["run_dir"], split="test")
        test["trial"] = best["trial"]
        (sdir / "best_test_metrics.json").write_text(json.dumps(test, indent=2))
    counts = {"trials": len(rows),
              "errors": sum(r["status"] == "error" for r in rows),
              "stopped_early": sum(r["status"] == "stopped early" for r in rows)}
    return SweepResult(shown(sdir), rows, best, best_config and shown(best_config), test, table,
                       counts=counts)


def export_best_config(sweep: Sweep, run_dir: str | Path | Location,
                       out: str | Path | Location) -> Location:
    """The trial's own config, with the sweep's bookkeeping (run folder, fractional CPUs,
    the cached plan path) put back to the base config's values: ``distst train`` runs it as
    is and trains the same model on the same windows with the same seed and workers."""
    cfg_file = location(run_dir) / "config.yaml"
    cfg = config_from_dict(load_yaml(cfg_file.read_bytes(), str(cfg_file)))
    base = sweep.base
    cfg.runtime = dataclasses.replace(cfg.runtime, storage=base.runtime.storage, name="",
                                      address=base.runtime.address,
                                      cpus_per_worker=base.runtime.cpus_per_worker)
    cfg.partition.plan = base.partition.plan
    cfg.train.progress = base.train.progress
    out = location(out)
    out.write_text(cfg.to_yaml())
    return out


def format_trials(rows: list[dict], keys: list[str], metric: str) -> str:
    cols = ["trial", *keys, metric, "epochs", "status"]
    lines = ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(f"{v:.4g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def resume_sweep(sweep_dir: str | Path, address: str = "", progress: bool = True) -> SweepResult:
    """Continue an interrupted sweep: finished trials are kept, unfinished ones restart
    (from their last Ray Train checkpoint), trials never started start."""
    sdir = location(sweep_dir)
    f = sdir / SWEEP_FILE
    if not f.is_file():
        raise DiststError(f"{sdir} is not a sweep directory (no {SWEEP_FILE}); pass the folder "
                          "'distst tune' printed as 'sweep directory: ...'")
    saved = read_saved_yaml(f, ("sweep", "base"), "sweep file",
                            "pass a sweep folder that distst tune wrote")
    sc = fill_dataclass(SweepConfig, saved["sweep"])
    sc.storage, sc.name = str(sdir.parent), sdir.name
    if address:
        sc.address = address
    sweep = build_sweep(sc, saved["base"], source=str(f))
    return run_sweep(sweep, resume=True, sweep_dir=sdir, progress=progress)


__all__ = ["SweepResult", "run_sweep", "resume_sweep", "trial_main", "SweepReportCallback",
           "format_trials", "export_best_config"]
