"""Study files: a base training config and a grid of runs whose training steps are timed.

A study file is YAML::

    base: ../quickstart.yaml        # a `distst train` config (relative to this file)
    overrides: {model.params.hidden_size: 32}
    grid:                           # every combination is one run, in this order
      graph: [1026, 4104]           # synthetic networks of N sensors, or dataset paths/URIs
      runtime.mode: [replicate, shard]
      runtime.workers: [1, 2, 4]
    warmup_steps: 3                 # untimed steps first (allocator, caches, DDP buckets)
    timed_steps: 10
    epochs: 0                       # > 0: full epochs with validation and test MAE
    threads: 2                      # total torch threads of a run, split over its workers

Grid keys are keys of the training config (``runtime.workers``, ``partition.halo_hops``,
``train.batch_size``, ``model.name``...) and two of the study's own: ``graph`` (an int is a
synthetic network of that many sensors, a string a prepared dataset) and
``nodes_per_worker`` (weak scaling: a synthetic network of that many sensors per worker).
In shard mode a run has one worker per part: a grid over ``runtime.workers`` alone sets
``partition.parts`` to match, and a grid that gives both must give equal numbers.

Nothing here imports Ray or the engine: the file and every run's config are checked before
anything runs.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distst.config import Config, apply_overrides, check_run_name, config_from_dict
from distst.layout import Layout
from distst.errors import DiststError
from distst.sweep.config import override_list, read_with_base, set_key

#: grid keys that are not training-config keys
STUDY_KEYS = ("graph", "nodes_per_worker")
#: runs one study may hold: each is a timed Ray Train run of its own (a 707,281-run grid once
#: hung even the dry run)
MAX_RUNS = 1000


@dataclass
class StudyConfig:
    #: the training config every run starts from (relative paths: to the study file)
    base: str = ""
    #: overrides of the base config before the grid's values (a mapping or key=value list)
    overrides: Any = field(default_factory=list)
    #: key -> list of values; runs are the product, in the order the keys are written
    grid: dict = field(default_factory=dict)
    warmup_steps: int = 3
    timed_steps: int = 10
    #: 0: each run trains warmup_steps + timed_steps steps and skips accuracy; N > 0: N full
    #: epochs per run (every step timed after the warm-up) with validation and test metrics
    epochs: int = 0
    #: total torch threads of a run, split evenly over its workers (strong scaling at fixed
    #: compute); 0 = the base config's train.threads for every worker
    threads: int = 0
    #: root of study directories; empty = "studies"
    storage: str = ""
    #: study directory name; empty = "study-<model>-<timestamp>"
    name: str = ""
    #: Ray address; empty = RAY_ADDRESS if set, else a local Ray instance
    address: str = ""


@dataclass
class StudyRun:
    """One run of a study: its name, the grid values it took and its training config."""

    name: str
    values: dict
    cfg: Config

    @property
    def workers(self) -> int:
        return self.cfg.runtime.workers

    @property
    def nodes(self) -> int | None:
        """Sensors of a synthetic graph (None for a dataset: known once it is read)."""
        return None if self.cfg.data.path else self.cfg.data.synth.nodes


@dataclass
class Study:
    cfg: StudyConfig
    base_raw: dict
    runs: list[StudyRun]
    source: str = ""


def load_study(path: str | Path, overrides: list[str] | None = None) -> Study:
    """Read and check a study file; ``overrides`` are ``--set`` values (base-config keys such
    as ``train.batch_size=32`` go to the base config, others such as ``timed_steps=5`` to the
    study)."""
    sc, base_raw = read_with_base(path, StudyConfig, overrides, "grid", "study file",
                                  "every run")
    return build_study(sc, base_raw, source=str(path))


def build_study(sc: StudyConfig, base_raw: dict, source: str = "") -> Study:
    where = f"study file {source}" if source else "study"
    raw = base_raw
    for item in override_list(sc.overrides, where):
        raw = set_key(raw, *item) if isinstance(item, tuple) else apply_overrides(raw, [item])
    try:
        config_from_dict(raw)
    except DiststError as e:
        raise DiststError(f"{where}: base config {sc.base}: {e}") from None
    check_run_name(sc.name, key=f"{where}: key 'name'", under="storage",
                   example="name: strong-gcgru")
    for name in ("warmup_steps", "epochs", "threads"):
        if getattr(sc, name) < 0:
            raise DiststError(f"{where}: key '{name}' must be >= 0, got {getattr(sc, name)}")
    if sc.timed_steps < 1:
        raise DiststError(f"{where}: key 'timed_steps' must be >= 1, got {sc.timed_steps}")
    if not sc.grid:
        raise DiststError(f"{where}: grid is empty; add at least one key, e.g. "
                          "runtime.workers: [1, 2, 4]")
    if "graph" in sc.grid and "nodes_per_worker" in sc.grid:
        raise DiststError(f"{where}: grid keys 'graph' and 'nodes_per_worker' both size the "
                          "graph; keep one (graph for strong scaling, nodes_per_worker for weak)")
    for key, values in sc.grid.items():
        if not isinstance(values, list) or not values:
            raise DiststError(f"{where}: grid key '{key}' must be a non-empty list of values, "
                              f"got {values!r}")
    keys = list(sc.grid)
    total = math.prod(len(sc.grid[k]) for k in keys)
    if total > MAX_RUNS:
        sizes = " x ".join(f"{len(sc.grid[k])} {k}" for k in keys)
        raise DiststError(f"{where}: the grid makes {total:,} runs ({sizes}); a study runs them "
                          f"one after another, at most {MAX_RUNS:,}: split it into studies or "
                          "take fewer values")
    runs, seen = [], set()
    for combo in itertools.product(*(sc.grid[k] for k in keys)):
        values = dict(zip(keys, combo))
        name = run_name(len(runs), values)
        try:
            cfg = run_config(sc, raw, values)
        except DiststError as e:
            raise DiststError(f"{where}: run {name}: {e}") from None
        # a grid over mode x halo depth means the depth for shard runs only: the others run
        # once, named without the keys they ignore
        values = {k: v for k, v in values.items() if k not in ignored_keys(cfg)}
        key = tuple((k, repr(v)) for k, v in values.items())
        if key in seen:
            continue
        seen.add(key)
        runs.append(StudyRun(run_name(len(runs), values), values, cfg))
    return Study(sc, raw, runs, source)


def ignored_keys(cfg: Config) -> set[str]:
    """Grid keys a run's mode does not read: the halo depth outside shard mode (exchange
    plans the boundary its model reads, distst.engine.parallelize.plan_halo_hops), and the
    partition outside the partitioned modes."""
    rt = cfg.runtime
    if not rt.partitioned:
        return {"partition.parts", "partition.halo_hops", "partition.method", "partition.seed",
                "runtime.replicas"}
    return {"partition.halo_hops"} if rt.mode != "shard" else set()


def run_name(index: int, values: dict) -> str:
    """``r03-n1026-shard-w2``: the run's number and its grid values, short and path-safe."""
    parts = [f"r{index:02d}"]
    for key, v in values.items():
        short = {"graph": "n" if isinstance(v, int) else "", "nodes_per_worker": "npw",
                 "runtime.workers": "w", "partition.parts": "p", "partition.halo_hops": "h",
                 "train.batch_size": "b", "train.seed": "s"}.get(key, "")
        text = Path(str(v)).name if key == "graph" and isinstance(v, str) else str(v)
        parts.append(short + re.sub(r"[^A-Za-z0-9.]+", "_", text))
    return "-".join(parts)[:120]


def run_config(sc: StudyConfig, base_raw: dict, values: dict) -> Config:
    """The training config of one run: base, the grid's values, shard workers = parts, the
    thread split, and the step budget with timing on."""
    raw = base_raw
    for key, v in values.items():
        if key == "graph":
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                raise DiststError(f"grid key 'graph': {v!r} is neither a number of sensors "
                                  "(a synthetic network) nor a dataset path or URI")
            if isinstance(v, int):
                if v < 2:
                    raise DiststError(f"grid key 'graph': {v} sensors; a synthetic network "
                                      "needs at least 2 (give a number of sensors >= 2 or a "
                                      "dataset path)")
                raw = set_key(set_key(raw, "data.path", ""), "data.synth.nodes", v)
            else:
                raw = set_key(raw, "data.path", v)
        elif key == "nodes_per_worker":
            continue  # needs the run's workers: below
        else:
            raw = set_key(raw, key, v)
    cfg = config_from_dict(raw)
    rt, pc, tc = cfg.runtime, cfg.partition, cfg.train
    if rt.mode == "local":
        raise DiststError("runtime.mode=local runs no workers to scale; use replicate, shard or exchange")
    if rt.partitioned:
        reps = rt.replicas
        if "runtime.workers" in values and "partition.parts" in values \
                and values["runtime.workers"] != values["partition.parts"] * reps:
            raise DiststError(
                f"{rt.mode} mode runs one worker per part and replica, but runtime.workers="
                f"{values['runtime.workers']}, partition.parts={values['partition.parts']} and "
                f"runtime.replicas={reps}; give workers or parts in the grid, not both")
        if "runtime.workers" in values:
            if rt.workers % reps:
                raise DiststError(
                    f"runtime.workers={rt.workers} is not a multiple of "
                    f"runtime.replicas={reps} ({rt.mode} mode runs parts x replicas workers)")
            pc.parts = rt.workers // reps
    rt.workers = Layout.of(cfg).world_size
    if "nodes_per_worker" in values:
        npw = values["nodes_per_worker"]
        if isinstance(npw, bool) or not isinstance(npw, int) or npw < 2:
            raise DiststError(f"grid key 'nodes_per_worker' must be an int >= 2, got {npw!r}")
        cfg.data.path = ""
        cfg.data.synth.nodes = npw * rt.workers
    if sc.threads:
        tc.threads = max(1, sc.threads // rt.workers)
    tc.step_timing = True
    tc.progress = False
    if sc.epochs:
        tc.epochs = sc.epochs
    else:
        # a timing run: one epoch of warm-up + timed steps, one validation batch (the loop
        # needs one) and one test batch; its metrics say nothing about accuracy
        tc.epochs = 1
        tc.max_batches_per_epoch = sc.warmup_steps + sc.timed_steps
        tc.max_val_batches = 1
        tc.max_test_batches = 1
        # those two batches are untimed: at training size they cost no more than a step
        tc.eval_batch_size = min(tc.eval_batch_size, tc.batch_size)
        tc.baseline_ha = False
        tc.checkpoint_every_steps = 0
    return config_from_dict(cfg.to_dict())  # cross-field rules once more


__all__ = ["StudyConfig", "StudyRun", "Study", "STUDY_KEYS", "load_study", "build_study",
           "run_config", "run_name", "ignored_keys"]
