"""Sweep files: a base training config, a search space, and how to run the trials.

A sweep file is YAML::

    base: ../quickstart.yaml            # a `distst train` config (relative to this file)
    overrides: [train.epochs=4]         # key=value overrides of the base, as `--set`
    search_space:
      model.params.hidden_size: {choice: [16, 32]}
      train.lr: {loguniform: [0.001, 0.02]}
      partition.halo_hops: {grid: [1, 2]}
    num_samples: 8
    workers_per_trial: 2
    scheduler: asha                     # or fifo
    searcher: random                    # or optuna (TPE)

Domains: ``choice`` / ``grid`` (non-empty lists), ``uniform`` / ``loguniform`` ([lo, hi],
floats, loguniform needs lo > 0) and ``randint`` ([lo, hi], both ends included). Every key
names a field of the base :class:`distst.config.Config` or a hyperparameter of its model
(``model.params.X``), and every candidate value is type-checked against it before Ray starts.

Nothing here imports Ray: the file is checked, and the trial resources planned, in the
driver before anything is scheduled.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distst.config import (
    Config,
    check_run_name,
    fill_dataclass,
    apply_overrides,
    config_from_dict,
    parse_override,
    read_yaml,
)
from distst.errors import DiststError
from distst.layout import Layout
from distst.typecheck import fits_type

DOMAINS = ("choice", "grid", "uniform", "loguniform", "randint")
SCHEDULERS = ("asha", "fifo")
SEARCHERS = ("random", "optuna")
MODES = ("min", "max")
#: the base config's top-level sections: `--set` keys starting with one of them go to the
#: base config, every other key to the sweep file itself
BASE_SECTIONS = tuple(f.name for f in dataclasses.fields(Config))
PARTITION_KEYS = ("method", "parts", "halo_hops", "seed", "order")


@dataclass
class SweepConfig:
    #: the training config every trial starts from (relative paths: to the sweep file)
    base: str = ""
    #: overrides of the base config, applied before the searched values: a mapping of dotted
    #: keys to values (``{train.epochs: 4}``) or a list of ``key=value`` strings as ``--set``
    overrides: Any = field(default_factory=list)
    #: ``config.key: {choice|grid|uniform|loguniform|randint: ...}``
    search_space: dict = field(default_factory=dict)
    #: trials sampled (grid keys: the grid is repeated num_samples times, as Ray Tune does)
    num_samples: int = 4
    #: Ray Train workers of every trial; 0 = the base config's runtime.workers
    #: (runtime.mode=shard: one worker per part, i.e. partition.parts)
    workers_per_trial: int = 0
    #: CPUs reserved per worker; 0 = sized so that max_concurrent_trials trials fit
    cpus_per_worker: float = 0.0
    #: trials run at once; 0 = as many as the cluster's CPUs hold
    max_concurrent_trials: int = 0
    #: CPU share of a trial's driver (the Tune function that starts its TorchTrainer); small
    #: so that the driver never holds the CPUs its own workers wait for
    driver_cpus: float = 0.1
    metric: str = "val_mae"
    mode: str = "min"
    #: "asha" (async successive halving, time attribute = epoch) or "fifo" (no early stop)
    scheduler: str = "asha"
    #: ASHA: epochs every trial runs before it can be stopped
    grace_period: int = 1
    #: ASHA: 1/reduction_factor of the trials reaching a rung go on to the next
    reduction_factor: int = 2
    #: ASHA: the last rung, in epochs; 0 = the epoch before the base config's last (a trial
    #: that has trained every epoch is never stopped; with no rung left, trials run as FIFO)
    max_t: int = 0
    #: "random" (Ray Tune's variant generator) or "optuna" (TPE; no grid keys)
    searcher: str = "random"
    seed: int = 0
    #: root of sweep directories; empty = the base config's runtime.storage
    storage: str = ""
    #: sweep directory name; empty = "sweep-<model>-<timestamp>"
    name: str = ""
    #: Ray address; empty = RAY_ADDRESS if set, else a local Ray instance
    address: str = ""


@dataclass
class Domain:
    """One searched key: ``kind`` in DOMAINS and its ``values`` (a list, or [lo, hi])."""

    key: str
    kind: str
    values: list

    def candidates(self) -> list:
        """Values every trial may take that config checks can see: all of a finite domain,
        the two bounds of a continuous one."""
        if self.kind in ("choice", "grid"):
            return list(self.values)
        if self.kind == "randint":
            return list(range(self.values[0], self.values[1] + 1))
        return list(self.values)

    @property
    def finite(self) -> bool:
        return self.kind in ("choice", "grid", "randint")


@dataclass
class Sweep:
    """A checked sweep: its settings, the base config (raw mapping and resolved) and domains."""

    cfg: SweepConfig
    base_raw: dict
    base: Config
    domains: list[Domain]
    source: str = ""

    @property
    def searched_keys(self) -> list[str]:
        return [d.key for d in self.domains]


# -- reading ---------------------------------------------------------------------------------
def split_overrides(overrides: list[str] | None) -> tuple[list[str], list[str]]:
    """``--set`` values -> (sweep-file overrides, base-config overrides)."""
    sweep, base = [], []
    for text in overrides or []:
        path, _ = parse_override(text)
        (base if path[0] in BASE_SECTIONS else sweep).append(text)
    return sweep, base


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> Sweep:
    """Read and check a sweep file; ``overrides`` are ``--set`` values (base-config keys such
    as ``train.epochs=2`` go to the base config, others such as ``num_samples=2`` to the sweep)."""
    sc, base_raw = read_with_base(path, SweepConfig, overrides, "search_space", "sweep file",
                                  "every trial")
    return build_sweep(sc, base_raw, source=str(path))


def read_with_base(path: str | Path, cls, overrides: list[str] | None, keyed: str, what: str,
                   who: str):
    """A file that names a base training config (a sweep or a study file) -> (its ``cls``
    dataclass, the base config mapping). ``--set`` values of base-config sections go to the
    base config's overrides, ``keyed.a.b=v`` sets dotted key ``a.b`` of the file's ``keyed``
    mapping (whose keys contain dots, which apply_overrides would split into sections), and
    the rest to the file; ``base`` is resolved relative to the file."""
    p = Path(path)
    raw = read_yaml(p)
    own_over, base_over = split_overrides(overrides)
    mapping = dict(raw.pop(keyed, None) or {})
    plain = []
    for text in own_over:
        key, value = parse_override(text)
        if key[0] == keyed and len(key) > 1:
            mapping[".".join(key[1:])] = value
        else:
            plain.append(text)
    raw = apply_overrides(raw, plain)
    raw[keyed] = mapping
    try:
        sc = fill_dataclass(cls, raw)
    except DiststError as e:
        raise DiststError(f"{what} {p}: {str(e).replace('config key', 'key')}") from None
    sc.overrides = override_list(sc.overrides, f"{what} {p}") + base_over
    if not sc.base:
        raise DiststError(f"{what} {p}: key 'base' is empty; name the training config "
                          f"{who} starts from, e.g. base: ../quickstart.yaml")
    base_path = Path(sc.base)
    if not base_path.is_absolute():
        base_path = p.parent / base_path
    sc.base = str(base_path.resolve())
    return sc, read_yaml(base_path)


def override_list(over: Any, where: Any) -> list:
    """``overrides`` as a list: ``key=value`` strings stay, mapping items become (key, value)."""
    if over is None:
        return []
    if isinstance(over, dict):
        return [(str(k), v) for k, v in over.items()]
    if isinstance(over, list) and all(isinstance(t, (str, tuple)) for t in over):
        return list(over)
    raise DiststError(f"{where}: key 'overrides' must be a mapping of config keys "
                      f"to values (e.g. {{train.epochs: 4}}) or a list of key=value strings, "
                      f"got {over!r}")


def build_sweep(sc: SweepConfig, base_raw: dict, source: str = "") -> Sweep:
    """Check ``sc`` against the base config mapping ``base_raw`` (before its overrides)."""
    where = f"sweep file {source}" if source else "sweep"
    raw = base_raw
    for item in override_list(sc.overrides, f"sweep file {source}"):
        if isinstance(item, tuple):
            raw = set_key(raw, *item)
        else:
            raw = apply_overrides(raw, [item])
    try:
        base = config_from_dict(raw)
    except DiststError as e:
        raise DiststError(f"{where}: base config {sc.base}: {e}") from None
    _check_settings(sc, base, where)
    domains = [parse_domain(k, v, where) for k, v in (sc.search_space or {}).items()]
    if not domains:
        raise DiststError(f"{where}: search_space is empty; add at least one key, e.g. "
                          "model.params.hidden_size: {choice: [16, 32]}")
    for d in domains:
        _check_domain_against(d, raw, base, where)
        if sc.searcher == "optuna" and d.kind == "choice" and any(
                isinstance(v, (list, dict)) for v in d.values):
            raise DiststError(f"{where}: search_space key '{d.key}': optuna chooses among "
                              "scalars only, but the choice holds lists; use searcher: random")
        if sc.searcher == "optuna" and d.kind == "grid":
            raise DiststError(f"{where}: search_space key '{d.key}' is a grid, which the optuna "
                              "searcher cannot sample; write {choice: [...]} or use "
                              "searcher: random")
    return Sweep(sc, raw, base, domains, source)


def _check_settings(sc: SweepConfig, base: Config, where: str) -> None:
    check_run_name(sc.name, key=f"{where}: key 'name'", under="storage",
                   example="name: gcgru-lr")
    for name, allowed in (("scheduler", SCHEDULERS), ("searcher", SEARCHERS), ("mode", MODES)):
        if getattr(sc, name) not in allowed:
            raise DiststError(f"{where}: key '{name}' is {getattr(sc, name)!r}; choose one of "
                              f"{', '.join(allowed)}")
    for name in ("num_samples", "grace_period"):
        if getattr(sc, name) < 1:
            raise DiststError(f"{where}: key '{name}' must be >= 1, got {getattr(sc, name)}")
    if sc.reduction_factor < 2:
        raise DiststError(f"{where}: key 'reduction_factor' must be >= 2, got "
                          f"{sc.reduction_factor}")
    for name in ("workers_per_trial", "max_concurrent_trials", "max_t"):
        if getattr(sc, name) < 0:
            raise DiststError(f"{where}: key '{name}' must be >= 0 (0 = automatic), got "
                              f"{getattr(sc, name)}")
    if sc.cpus_per_worker < 0 or sc.driver_cpus <= 0:
        raise DiststError(f"{where}: cpus_per_worker must be >= 0 (0 = automatic) and "
                          f"driver_cpus > 0 (Ray rejects a CPU request of 0), got "
                          f"{sc.cpus_per_worker} and {sc.driver_cpus}")
    if base.runtime.mode == "local":
        raise DiststError(f"{where}: the base config runs runtime.mode=local, but every trial "
                          "is a Ray Train run; add runtime.mode=replicate (or shard) to "
                          "'overrides'")
    epochs = base.train.epochs
    if sc.scheduler == "asha" and sc.grace_period > epochs:
        raise DiststError(f"{where}: grace_period={sc.grace_period} is beyond the last epoch "
                          f"(train.epochs={epochs}); lower grace_period or raise train.epochs")
    if sc.scheduler == "asha" and sc.max_t and sc.grace_period > sc.max_t:
        raise DiststError(f"{where}: grace_period={sc.grace_period} is beyond max_t={sc.max_t}; "
                          f"lower grace_period or raise max_t")


def parse_domain(key: str, spec: Any, where: str = "sweep") -> Domain:
    hint = ("write {choice: [a, b]}, {grid: [a, b]}, {uniform: [lo, hi]}, "
            "{loguniform: [lo, hi]} or {randint: [lo, hi]}")
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DOMAINS:
        raise DiststError(f"{where}: search_space key '{key}': {spec!r} is not a search "
                          f"domain; {hint}")
    kind, values = next(iter(spec.items()))
    if not isinstance(values, list):
        raise DiststError(f"{where}: search_space key '{key}': {kind} takes a list, got "
                          f"{values!r}; {hint}")
    if kind in ("choice", "grid"):
        if not values:
            raise DiststError(f"{where}: search_space key '{key}': the {kind} list is empty; "
                              f"give at least one value, e.g. {{{kind}: [16, 32]}}")
        return Domain(key, kind, values)
    if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float))
                               for v in values):
        raise DiststError(f"{where}: search_space key '{key}': {kind} takes two numbers "
                          f"[lo, hi], got {values!r}")
    lo, hi = values
    if lo > hi:
        raise DiststError(f"{where}: search_space key '{key}': {kind} lower bound {lo} is "
                          f"above the upper bound {hi}; write [{hi}, {lo}]")
    if kind == "loguniform" and lo <= 0:
        raise DiststError(f"{where}: search_space key '{key}': loguniform needs a lower "
                          f"bound > 0, got {lo}; use uniform or a positive bound such as 1e-4")
    if kind == "randint" and not all(float(v).is_integer() for v in values):
        raise DiststError(f"{where}: search_space key '{key}': randint takes integer bounds, "
                          f"got {values!r}; use uniform for floats")
    if kind == "randint":
        return Domain(key, kind, [int(lo), int(hi)])
    return Domain(key, kind, [float(lo), float(hi)])


# -- checking keys against the base config ------------------------------------------------------
def set_key(raw: dict, key: str, value: Any) -> dict:
    """A copy of config mapping ``raw`` with dotted ``key`` set to ``value`` (no parsing)."""
    out = copy.deepcopy(raw)
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part, {}), dict):
            raise DiststError(f"key '{key}': '{part}' is not a section")
        node = node.setdefault(part, {})
    node[parts[-1]] = copy.deepcopy(value)
    return out


def _field_type(key: str) -> Any:
    """The annotation of dotted Config key ``key`` (None below model.params)."""
    cls: Any = Config
    for part in key.split("."):
        if not dataclasses.is_dataclass(cls):
            return None
        cls = typing.get_type_hints(cls).get(part)
    return cls


def _check_domain_against(d: Domain, raw: dict, base: Config, where: str) -> None:
    """Every candidate of ``d`` must make a valid config; model params must exist."""
    prefix = f"{where}: search_space key '{d.key}'"
    parts = d.key.split(".")
    if parts[:2] == ["model", "params"]:
        if len(parts) != 3:
            raise DiststError(f"{prefix}: model hyperparameters are one level deep; write "
                              "model.params.NAME")
        _check_model_param(d, parts[2], base.model.name, prefix)
    elif parts[0] == "model" and parts[1:] == ["name"]:
        pass  # each model's own params are checked per candidate below
    else:
        tp = _field_type(d.key)
        if tp is int and d.kind in ("uniform", "loguniform"):
            raise DiststError(f"{prefix}: the config key is an integer but {d.kind} samples "
                              "floats; use {randint: [lo, hi]} or {choice: [...]}")
    if parts[0] == "partition":
        if not base.runtime.partitioned:
            raise DiststError(f"{prefix}: partition settings only matter in runtime.mode=shard "
                              f"but the base config runs {base.runtime.mode!r}; add "
                              "runtime.mode=shard to 'overrides' or drop the key")
        if not d.finite:
            raise DiststError(f"{prefix}: partition settings need a finite domain (choice, "
                              "grid or randint) so that every plan is made once before the "
                              "trials start")
    for value in d.candidates():
        try:
            cfg = config_from_dict(set_key(raw, d.key, value))
        except DiststError as e:
            raise DiststError(f"{prefix}: value {value!r}: {e}") from None
        if d.key == "model.name":
            from distst.nn.registry import model_param_names

            bad = [k for k in cfg.model.params if k not in model_param_names(value)]
            if bad:
                raise DiststError(f"{prefix}: model {value!r} has no hyperparameter "
                                  f"'{bad[0]}' (from the base model.params); valid: "
                                  f"{', '.join(model_param_names(value))}")


def _check_model_param(d: Domain, name: str, model: str, prefix: str) -> None:
    from distst.nn.registry import model_class, model_param_names

    valid = model_param_names(model)
    if name not in valid:
        raise DiststError(f"{prefix}: model {model!r} has no hyperparameter '{name}'; valid "
                          f"keys: {', '.join('model.params.' + v for v in valid)}")
    hint = typing.get_type_hints(model_class(model).__init__).get(name)
    if hint is None:
        return
    if d.kind in ("uniform", "loguniform") and not fits_type(0.5, hint):
        raise DiststError(f"{prefix}: model {model} takes {name} as {hint}, but {d.kind} "
                          "samples floats; use {randint: [lo, hi]} or {choice: [...]}")
    for value in d.candidates():
        if not fits_type(value, hint):
            raise DiststError(f"{prefix}: value {value!r} does not fit model {model}'s "
                              f"{name} ({getattr(hint, '__name__', hint)})")


# -- what trials run --------------------------------------------------------------------------
def trial_config(base_raw: dict, values: dict) -> Config:
    """The Config of a trial that drew ``values`` (searched key -> value) from a sweep whose
    base config is ``base_raw`` (:attr:`Sweep.base_raw`)."""
    raw = base_raw
    for key, value in values.items():
        raw = set_key(raw, key, value)
    return config_from_dict(raw)


def workers_of(cfg: Config, sc: SweepConfig) -> int:
    """Ray Train workers of one trial (its :class:`distst.layout.Layout`): parts x replicas in
    shard and exchange mode."""
    return Layout.of(cfg, workers=sc.workers_per_trial or None).world_size


def partition_combos(sweep: Sweep) -> list[dict]:
    """Every distinct (method, parts, halo_hops, seed) the trials can draw (shard mode)."""
    if not sweep.base.runtime.partitioned:
        return []
    axes = []
    for name in PARTITION_KEYS:
        d = next((d for d in sweep.domains if d.key == f"partition.{name}"), None)
        axes.append(d.candidates() if d else [getattr(sweep.base.partition, name)])
    combos = [dict(zip(PARTITION_KEYS, combo)) for combo in itertools.product(*axes)]
    if Layout.of(sweep.base).exact_parts:
        # the boundary the model reads, whatever halo_hops says: one plan per reach the
        # searched model params can give (HimNet's graph_hops)
        combos = [{**c, "halo_hops": r} for c in combos for r in _exchange_reaches(sweep)]
    return list({tuple(c.values()): c for c in combos}.values())


def _exchange_reaches(sweep: Sweep) -> list[int]:
    """Every boundary depth an exchange-mode trial can need: the model's reach at each
    combination of the searched ``model.params`` values (continuous ones at their bounds)."""
    from distst.nn.registry import boundary_depth

    domains = [d for d in sweep.domains if d.key.startswith("model.params.")]
    reaches = set()
    for values in itertools.product(*[d.candidates() for d in domains]):
        params = dict(sweep.base.model.params)
        params.update({d.key[len("model.params."):]: v for d, v in zip(domains, values)})
        reaches.add(boundary_depth(sweep.base.model.name, params))
    return sorted(reaches)


def max_workers(sweep: Sweep) -> int:
    """The most workers any trial can ask for."""
    combos = partition_combos(sweep)
    if combos:
        replicas = _candidates(sweep, "runtime.replicas", sweep.base.runtime.replicas)
        return max(c["parts"] for c in combos) * max(int(r) for r in replicas)
    d = next((d for d in sweep.domains if d.key == "runtime.workers"), None)
    if d is not None and not sweep.cfg.workers_per_trial:
        return max(int(v) for v in d.candidates())
    return workers_of(sweep.base, sweep.cfg)


def _candidates(sweep: Sweep, key: str, default) -> list:
    d = next((d for d in sweep.domains if d.key == key), None)
    return d.candidates() if d is not None else [default]


@dataclass
class Resources:
    workers: int
    cpus_per_worker: float
    driver_cpus: float
    max_concurrent_trials: int
    #: GPUs per worker (0 without runtime.use_gpu)
    gpus_per_worker: float = 0.0

    @property
    def per_trial(self) -> float:
        return self.driver_cpus + self.workers * self.cpus_per_worker


def _floor(x: float, step: float = 0.05) -> float:
    return math.floor(x / step + 1e-9) * step


def plan_resources(sweep: Sweep, cluster_cpus: float, cluster_gpus: float = 0.0) -> Resources:
    """CPUs per worker and concurrent trials such that the trials running at once fit the
    cluster, drivers included: a driver holding CPUs its own workers wait for would hang.
    With ``runtime.use_gpu`` the trials at once also fit the cluster's GPUs. Automatic CPUs
    per worker (``cpus_per_worker: 0``) are at most the base config's
    ``runtime.cpus_per_worker``, and the plan says when they are fewer."""
    sc = sweep.cfg
    w = max_workers(sweep)
    d = sc.driver_cpus
    base_cpw = float(sweep.base.runtime.cpus_per_worker)
    if w > cluster_cpus:
        raise DiststError(
            f"workers_per_trial={w} (runtime.workers / partition.parts) needs at least {w} CPUs "
            f"per trial but the Ray cluster has {cluster_cpus:g}; lower workers_per_trial (or "
            "partition.parts) or connect to a bigger cluster with --address")
    cpw = sc.cpus_per_worker
    if cpw == 0:
        if sc.max_concurrent_trials:
            cpw = min(base_cpw, _floor((cluster_cpus / sc.max_concurrent_trials - d) / w))
        else:
            cpw = base_cpw if w * base_cpw + d <= cluster_cpus else \
                min(base_cpw, _floor((cluster_cpus - d) / w))
        if cpw <= 0:
            raise DiststError(
                f"max_concurrent_trials={sc.max_concurrent_trials} trials of {w} workers do not "
                f"fit {cluster_cpus:g} CPUs; lower max_concurrent_trials")
    need = d + w * cpw
    if need > cluster_cpus + 1e-9:
        raise DiststError(
            f"one trial needs driver_cpus {d:g} + {w} workers x cpus_per_worker {cpw:g} = "
            f"{need:g} CPUs but the Ray cluster has {cluster_cpus:g}; lower cpus_per_worker "
            "or workers_per_trial")
    gpw = float(sweep.base.runtime.gpus_per_worker) if sweep.base.runtime.use_gpu else 0.0
    if gpw and w * gpw > cluster_gpus + 1e-9:
        raise DiststError(
            f"one trial needs {w} workers x runtime.gpus_per_worker {gpw:g} = {w * gpw:g} GPUs "
            f"but the Ray cluster has {cluster_gpus:g}; lower workers_per_trial, share GPUs "
            "(runtime.gpus_per_worker=0.5) or add GPU nodes")
    by_gpu = int((cluster_gpus + 1e-9) // (w * gpw)) if gpw else None
    mct = sc.max_concurrent_trials or max(1, int((cluster_cpus + 1e-9) // need))
    if by_gpu is not None and mct > by_gpu:
        if sc.max_concurrent_trials:
            raise DiststError(
                f"max_concurrent_trials={mct} trials x {w * gpw:g} GPUs = {mct * w * gpw:g} "
                f"GPUs but the Ray cluster has {cluster_gpus:g}; lower max_concurrent_trials "
                "or leave it 0 (as many as the GPUs hold)")
        mct = by_gpu
    if mct * need > cluster_cpus + 1e-9:
        raise DiststError(
            f"max_concurrent_trials={mct} x {need:g} CPUs per trial = {mct * need:g} CPUs but "
            f"the Ray cluster has {cluster_cpus:g}: waiting trial drivers would hold the CPUs "
            "that running trials' workers need; lower max_concurrent_trials or set "
            "cpus_per_worker: 0 (automatic)")
    return Resources(w, round(cpw, 4), d, mct, gpw)
