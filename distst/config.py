"""Typed run configuration: dataclasses filled from YAML, strict keys, ``a.b=v`` overrides.

A config file is a YAML mapping whose top-level sections mirror :class:`Config`. A file may
name other files under ``include:`` (paths relative to it), which are merged first, so
``configs/quickstart.yaml`` can be a dataset file + a model file + a few settings.

Unknown keys are errors that list the valid keys; values are type-checked against the
dataclass annotations. ``model.params`` is the one free-form mapping: its keys are the
model's keyword arguments and are checked by the model registry, which config knows
nothing about (the dependency arrow points from models to config, never back).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import stat
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from distst.errors import DiststError
from distst.storage import refuse_uri_credentials, write_atomic
from distst.typecheck import TypeMismatch, check_type, type_name


@dataclass
class SynthConfig:
    """Synthetic network generated on first use and cached under ``cache_dir``."""

    nodes: int = 1026
    days: int = 14
    seed: int = 0
    #: "knn" / "delaunay": a road-like speed network of ``nodes`` sensors (distst.data.synth);
    #: "grid": a TaxiBJ-like city grid of ``grid`` = [height, width] regions with inflow and
    #: outflow (distst.data.grid; ``nodes`` is then height x width), for HyperST-CNN
    graph: str = "knn"
    grid: list[int] = field(default_factory=lambda: [32, 32])
    #: step of the grid's series in minutes (TaxiBJ: 30); the road networks use 5
    grid_step_minutes: int = 60


@dataclass
class DataConfig:
    #: prepared dataset directory (``distst data prepare``); empty means use ``synth``
    path: str = ""
    synth: SynthConfig = field(default_factory=SynthConfig)
    #: where generated datasets are cached; ``~`` and env vars are expanded
    cache_dir: str = "~/.cache/distst"
    input_len: int = 12
    horizon: int = 12
    #: train/val/test fractions of the chronologically ordered samples
    split: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])
    #: channels fed to the model; empty = the dataset's default recorded by ``distst data
    #: prepare`` (flow only, channel 0, for PEMS03/04/07/08), else all channels
    input_channels: list[int] = field(default_factory=list)
    #: channels forecast (must be the first input channels)
    target_channels: list[int] = field(default_factory=lambda: [0])
    time_of_day: bool = True
    day_of_week: bool = True
    #: how models that need an undirected graph (the Chebyshev ones: GCGRU, STGCN, ST-UNet,
    #: HyperST-GCGRU) symmetrise a directed one: "max" (w = max(w_ij, w_ji)) or "sum"
    #: (w_ij + w_ji); DCRNN keeps the directions. Partitioners always use "max".
    symmetrize: str = "max"
    #: train a graph model (GCGRU, DCRNN, STGCN, ST-UNet, HyperST graph RNNs) on a graph with
    #: no edges between sensors, where it degenerates to a per-node model; refused otherwise
    allow_empty_graph: bool = False
    #: value in the targets that means "missing" besides NaN: "nan" or a number (e.g. 0)
    null_value: str = "nan"
    scaler: str = "standard"


@dataclass
class ModelConfig:
    name: str = "gcgru"
    #: keyword arguments of the model's constructor (checked by the model registry)
    params: dict = field(default_factory=dict)


@dataclass
class TrainConfig:
    epochs: int = 100
    #: global batch: in replicate mode each of W workers takes batch_size / W windows
    batch_size: int = 64
    eval_batch_size: int = 64
    lr: float = 0.01
    weight_decay: float = 0.0
    #: Adam's epsilon (HimNet's reference code trains with 1e-3)
    adam_eps: float = 1e-8
    #: training loss over observed targets: mae, mse, mae_mse = (MAE + MSE) / 2 (ST-UNet), or
    #: huber (quadratic within huber_delta of the target, linear beyond; HimNet's PEMS presets)
    loss: str = "mae"
    #: Huber's threshold, in the units the loss is computed in (see loss_scale); finite, > 0
    huber_delta: float = 1.0
    #: scale the training loss is computed on: "original" (the data's units, as DCRNN's masked
    #: MAE) or "normalized" (errors divided by the scaler's std, i.e. on the scaled targets the
    #: model emits; ST-UNet Sec. 4.2). Metrics are always reported in original units.
    loss_scale: str = "original"
    #: arithmetic of the forward pass: "fp32", or "bf16" (autocast: matrix products and
    #: convolutions in bfloat16; weights, optimizer state, sparse graph products, loss and
    #: metrics stay fp32). Faster and smaller on CPUs with AMX/AVX512-BF16 and on GPUs
    precision: str = "fp32"
    #: "step": recurrent models keep only each recurrent step's inputs and recompute the
    #: step's internals in the backward pass (activation checkpointing): much less memory
    #: for some more time; "none" stores everything
    recompute: str = "none"
    #: split each worker's share of a batch into this many micro-batches, run one after the
    #: other, whose gradients add up to the whole share's (each piece's error sum over the
    #: whole batch's count of observed targets); DDP all-reduces once per step. The optimiser
    #: steps, the schedules and the progress count whole batches: a graph too large for
    #: batch_size windows at once trains at that batch size in about 1/micro_batches of the
    #: activation memory, for some time (smaller products)
    micro_batches: int = 1
    #: CPU on Linux: when the memory glibc's allocator holds freed (resident, beyond the live
    #: tensors) has grown by more than this many MiB, hand it back to the system, checked at
    #: every recurrent step and training step. Bounds RSS near the live tensors at the price
    #: of faulting returned pages in again; 0 (the default) leaves the allocator alone
    heap_slack_mib: int = 0
    #: learning-rate milestones (epochs) and decay factor (MultiStepLR, as DCRNN)
    lr_milestones: list[int] = field(default_factory=lambda: [20, 30, 40, 50])
    lr_gamma: float = 0.1
    grad_clip: float = 5.0
    #: early stopping: epochs without validation-MAE improvement
    patience: int = 10
    #: scheduled sampling: inverse-sigmoid decay constant in steps (DCRNN's cl_decay_steps);
    #: 0 disables teacher forcing
    cl_decay_steps: int = 2000
    #: also checkpoint every this many training steps within an epoch (0 = once per epoch):
    #: bounds the work a lost worker costs on long epochs; a run restored from such a
    #: checkpoint continues at the same step with the same data order
    checkpoint_every_steps: int = 0
    #: cap on training batches per epoch (0 = all); keeps quick runs inside a time budget
    max_batches_per_epoch: int = 0
    #: time every training step's phases (data, forward, backward, idle, all-reduce,
    #: optimizer) into RUN/steps/rank_R.json (distst.engine.timing; distst scale sets it)
    step_timing: bool = False
    #: TensorBoard event files of the per-epoch metrics in RUN/tensorboard (distst.engine.logs)
    tensorboard: bool = True
    #: cap on validation batches per epoch (0 = all)
    max_val_batches: int = 0
    #: cap on test batches of the final evaluation (0 = the whole test split); a capped
    #: run's test metrics describe only those windows (scaling studies time steps, not tests)
    max_test_batches: int = 0
    seed: int = 0
    #: torch intra-op threads per worker (0 = leave torch's default)
    threads: int = 0
    #: also evaluate the historical-average baseline on the test split
    baseline_ha: bool = True
    #: report metrics at these horizon steps (3, 6, 12 = 15, 30, 60 min for 5-min data)
    report_steps: list[int] = field(default_factory=lambda: [3, 6, 12])
    progress: bool = True


@dataclass
class PartitionConfig:
    """Graph partition for ``runtime.mode=shard`` (one Ray Train worker per part)."""

    #: an existing plan directory (``distst partition``); empty = plan on the fly and cache
    plan: str = ""
    method: str = "metis"
    parts: int = 2
    halo_hops: int = 2
    seed: int = 0
    #: the order of each part's owned nodes in its files and in a worker's memory: "ascending"
    #: (global ids) or "rcm" (reverse Cuthill-McKee of the part's subgraph: neighbours close
    #: in memory: about 10% off a GCGRU step on a 32,000-sensor part, nothing below a few
    #: thousand; the results are the same up to float roundoff; ids and outputs keep the
    #: dataset's order either way)
    order: str = "ascending"


@dataclass
class MlflowConfig:
    """Where ``runtime.loggers: [mlflow]`` logs (distst.engine.logs.MlflowLog)."""

    #: MLflow tracking URI: http(s)://server:5000, sqlite:///mlflow.db (needs the full
    #: ``mlflow`` package), file:///abs/mlruns (MLflow 3 refuses a file store unless
    #: MLFLOW_ALLOW_FILE_STORE=true); empty = MLFLOW_TRACKING_URI, else MLflow's default
    tracking_uri: str = ""
    #: experiment the runs go to (created if missing)
    experiment: str = "distst"


@dataclass
class RuntimeConfig:
    #: "replicate": whole graph per worker, windows split across workers (Ray Train DDP);
    #: "shard": worker i holds part i plus its halo, every worker sees the same windows,
    #: loss and metrics on inner nodes only; "exchange": worker i holds part i and its
    #: boundary, and every graph filter first fetches the boundary nodes' current values
    #: from their owners (backward: returns their gradients), so training equals one process
    #: on the whole graph (distst.engine.exchange; partition.halo_hops is not used: the
    #: plan's boundary is as deep as the model's filters chain products, K-1 hops for an
    #: order-K Chebyshev filter, distst.engine.parallelize.plan_halo_hops);
    #: "local": one plain process, no Ray
    mode: str = "replicate"
    workers: int = 2
    #: shard / exchange: copies of the P-part worker group (P x R workers); the replicas
    #: split each global batch of train.batch_size windows, shared parameters' gradients are
    #: averaged over all P x R workers. The way to use 16 GPUs on a graph that needs 4
    replicas: int = 1
    #: one CUDA device per worker (NCCL between them, gloo beside it for CPU numbers:
    #: distst.layout.Layout)
    use_gpu: bool = False
    #: GPUs per worker with use_gpu; a fraction lets several workers share a device, which
    #: NCCL refuses: their collectives then run on gloo (slower), and the run says so
    gpus_per_worker: float = 1.0
    #: Ray address; empty = RAY_ADDRESS if set, else a local Ray instance
    address: str = ""
    #: CPUs per worker reserved from Ray
    cpus_per_worker: float = 1.0
    #: restarts of the worker group after a worker or node is lost (Ray Train's
    #: FailureConfig), each from the newest checkpoint; empty = 3 on a cluster (runtime.address
    #: or RAY_ADDRESS: nodes get preempted and lost there) and 0 on a local Ray (where a
    #: crash is a bug or lack of memory that a restart would only repeat)
    max_failures: int | None = None
    #: seconds a run waits for the cluster to have room for its workers (at the start, and
    #: after a lost node while an autoscaler brings another) before it stops with an error
    #: naming the lost node; 0 = one attempt of Ray Train's worker-group start timeout
    node_wait_s: float = 600.0
    #: seconds a worker may go without answering Ray Train's health check (2 s polls,
    #: answered beside training, so a long step does not count) before it is marked lost: a
    #: worker frozen by SIGSTOP, swapped out or hung then ends in a restart from the newest
    #: checkpoint (runtime.max_failures) or a one-line error, not a run that waits forever
    #: (Ray's own default is 600 s; RAY_TRAIN_WORKER_HEALTH_CHECK_TIMEOUT_S still wins)
    worker_timeout_s: float = 120.0
    #: root of the run directories: a path (local disk, or NFS mounted on every node) or a
    #: URI (s3://bucket/runs, gs://..., file:///...) that every node can reach
    storage: str = "runs"
    #: options of the pyarrow filesystem behind URIs (S3FileSystem / GcsFileSystem keyword
    #: arguments: endpoint_override, region, access_key, ...); empty = pyarrow's defaults,
    #: which read AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION...
    storage_options: dict = field(default_factory=dict)
    #: run name; empty = "<model>-<dataset>-<timestamp>"
    name: str = ""
    #: trackers that get every epoch's metrics, the config and the test results besides
    #: metrics.jsonl and TensorBoard: "mlflow" (pip install 'distst[mlflow]'); they are fed
    #: from the driver side (a Ray Train callback), never from inside the training loop
    loggers: list[str] = field(default_factory=list)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)

    @property
    def partitioned(self) -> bool:
        """One worker per part of a partition plan (shard, exchange)."""
        return self.mode in PARTITIONED_MODES


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


RUNTIME_MODES = ("replicate", "shard", "exchange", "local")
#: modes that cut the graph into parts, one worker per part
PARTITIONED_MODES = ("shard", "exchange")
LOGGERS = ("mlflow",)
#: pyarrow filesystem options that carry credentials (refused in configs: they are saved)
SECRET_STORAGE_OPTIONS = ("access_key", "secret_key", "session_token", "access_token",
                          "credentials", "external_id")


# -- filling dataclasses ---------------------------------------------------------------------
def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` converted to annotation ``tp`` (:func:`distst.typecheck.check_type`); the
    error names ``key`` (with the list position where an item is wrong)."""
    try:
        return check_type(value, tp, convert=True)
    except TypeMismatch as e:
        k, v, hint = key + e.where, e.value, e.hint
        origin = typing.get_origin(hint)
        if origin in (typing.Union, types.UnionType):
            msg = f"{v!r} is none of {type_name(hint)}"
        elif origin in (list, tuple):
            msg = f"expected a list, got {v!r}; write e.g. {k}=[1,2]"
        elif hint is dict or origin is dict:
            msg = f"expected a mapping, got {v!r}"
        else:
            msg = f"expected {type_name(hint)}, got {v!r} ({type(v).__name__})"
        raise DiststError(f"config key '{k}': {msg}") from None


def fill_dataclass(cls: type, data: dict, prefix: str = "") -> Any:
    """An instance of dataclass ``cls`` from a mapping: unknown keys are errors that list the
    valid ones, values are checked and converted against the annotations, nested dataclasses
    are filled from nested mappings; ``prefix`` is the section's dotted name in messages."""
    if not isinstance(data, dict):
        raise DiststError(f"config section '{prefix or 'root'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        where = f"section '{prefix}'" if prefix else "the top level"
        raise DiststError(
            f"unknown config key '{(prefix + '.') if prefix else ''}{unknown[0]}' in {where}; "
            f"valid keys: {', '.join(names)}"
        )
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        key = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = fill_dataclass(tp, data[name], key)
        else:
            kwargs[name] = _coerce(data[name], tp, key)
    return cls(**kwargs)


def config_from_dict(data: dict) -> Config:
    cfg = fill_dataclass(Config, data or {})
    validate(cfg)
    return cfg


SYNTH_GRAPHS = ("knn", "delaunay", "grid")
#: losses that are sums over entries, so shard mode can all-reduce them exactly
TRAIN_LOSSES = ("mae", "mse", "mae_mse", "huber")
LOSS_SCALES = ("original", "normalized")
PRECISIONS = ("fp32", "bf16")
RECOMPUTE = ("none", "step")


def validate(cfg: Config) -> None:
    """Cross-field checks that a type alone cannot express."""
    if cfg.runtime.mode not in RUNTIME_MODES:
        raise DiststError(
            f"config key 'runtime.mode': unknown mode {cfg.runtime.mode!r}; "
            f"choices: {', '.join(RUNTIME_MODES)}"
        )
    if cfg.runtime.workers < 1:
        raise DiststError(f"config key 'runtime.workers' must be >= 1, got {cfg.runtime.workers}")
    if cfg.train.loss not in TRAIN_LOSSES:
        raise DiststError(f"config key 'train.loss': unknown loss {cfg.train.loss!r}; "
                          f"choices: {', '.join(TRAIN_LOSSES)}")
    if not (math.isfinite(cfg.train.huber_delta) and cfg.train.huber_delta > 0):
        raise DiststError(f"config key 'train.huber_delta' must be finite and > 0, got "
                          f"{cfg.train.huber_delta}")
    if cfg.train.loss_scale not in LOSS_SCALES:
        raise DiststError(f"config key 'train.loss_scale': unknown scale {cfg.train.loss_scale!r}; "
                          f"choices: {', '.join(LOSS_SCALES)}")
    for key, val, choices in (("train.precision", cfg.train.precision, PRECISIONS),
                              ("train.recompute", cfg.train.recompute, RECOMPUTE)):
        if val not in choices:
            raise DiststError(f"config key '{key}': unknown value {val!r}; "
                              f"choices: {', '.join(choices)}")
    for key, val in (("train.lr", cfg.train.lr), ("runtime.cpus_per_worker",
                                                   cfg.runtime.cpus_per_worker)):
        # NaN fails every comparison, so `not val > 0` refuses it too
        if not (math.isfinite(val) and val > 0):
            raise DiststError(f"config key '{key}' must be a finite number > 0, got {val}")
    if not (math.isfinite(cfg.train.weight_decay) and cfg.train.weight_decay >= 0):
        raise DiststError(f"config key 'train.weight_decay' must be a finite number >= 0, got "
                          f"{cfg.train.weight_decay}")
    if not (math.isfinite(cfg.train.grad_clip) and cfg.train.grad_clip >= 0):
        raise DiststError(f"config key 'train.grad_clip' must be a finite number >= 0 "
                          f"(0 = no clipping), got {cfg.train.grad_clip}")
    if cfg.train.micro_batches < 1:
        raise DiststError(f"config key 'train.micro_batches' must be >= 1 (1: the whole batch "
                          f"at once), got {cfg.train.micro_batches}")
    if cfg.train.patience < 1:
        raise DiststError(f"config key 'train.patience' must be >= 1 (epochs without a better "
                          f"validation MAE before stopping), got {cfg.train.patience}; to "
                          "never stop early set it to train.epochs")
    check_run_name(cfg.runtime.name)
    for key, value in _strings(cfg.to_dict()):
        refuse_uri_credentials(value, f"config key '{key}'")
    secret = sorted(k for k in cfg.runtime.storage_options if k in SECRET_STORAGE_OPTIONS)
    if secret:
        raise DiststError(
            f"config key 'runtime.storage_options.{secret[0]}': credentials do not belong in "
            "a config, which every run and checkpoint saves; remove it and set them in the "
            "environment instead (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / "
            "AWS_SESSION_TOKEN, GOOGLE_APPLICATION_CREDENTIALS), or in the cluster's IAM role")
    if not cfg.train.adam_eps > 0:
        raise DiststError(f"config key 'train.adam_eps' must be > 0, got {cfg.train.adam_eps}")
    if not (math.isfinite(cfg.runtime.gpus_per_worker) and cfg.runtime.gpus_per_worker > 0):
        raise DiststError(f"config key 'runtime.gpus_per_worker' must be > 0 (a fraction "
                          f"shares a GPU), got {cfg.runtime.gpus_per_worker}")
    if cfg.runtime.max_failures is not None and cfg.runtime.max_failures < 0:
        raise DiststError(f"config key 'runtime.max_failures' must be >= 0 (restarts after a "
                          f"lost worker), got {cfg.runtime.max_failures}; leave it empty for "
                          "the default (3 on a cluster, 0 locally)")
    if not (math.isfinite(cfg.runtime.node_wait_s) and cfg.runtime.node_wait_s >= 0):
        raise DiststError(f"config key 'runtime.node_wait_s' must be >= 0 seconds (how long a "
                          f"run waits for room for its workers), got {cfg.runtime.node_wait_s}")
    if not (math.isfinite(cfg.runtime.worker_timeout_s) and cfg.runtime.worker_timeout_s > 0):
        raise DiststError(f"config key 'runtime.worker_timeout_s' must be > 0 seconds (how long "
                          "a silent worker is waited for before it counts as lost), got "
                          f"{cfg.runtime.worker_timeout_s}")
    if cfg.runtime.replicas < 1:
        raise DiststError(f"config key 'runtime.replicas' must be >= 1 (copies of the "
                          f"partitioned worker group), got {cfg.runtime.replicas}")
    if cfg.runtime.replicas > 1 and not cfg.runtime.partitioned:
        raise DiststError(f"config key 'runtime.replicas'={cfg.runtime.replicas} needs "
                          f"runtime.mode=shard or exchange (replicas of a partitioned worker "
                          f"group), but runtime.mode={cfg.runtime.mode!r}; in replicate mode "
                          "raise runtime.workers instead")
    if cfg.runtime.partitioned and cfg.train.batch_size < cfg.runtime.replicas:
        raise DiststError(
            f"config key 'train.batch_size' ({cfg.train.batch_size}) is smaller than "
            f"runtime.replicas ({cfg.runtime.replicas}): every replica needs at least one window")
    unknown = [x for x in cfg.runtime.loggers if x not in LOGGERS]
    if unknown:
        raise DiststError(f"config key 'runtime.loggers': unknown logger {unknown[0]!r}; choices: "
                          f"{', '.join(LOGGERS)} (metrics.jsonl and TensorBoard are always "
                          "written)")
    if cfg.train.checkpoint_every_steps < 0:
        raise DiststError(f"config key 'train.checkpoint_every_steps' must be >= 0 (0 = once "
                          f"per epoch), got {cfg.train.checkpoint_every_steps}")
    if cfg.train.heap_slack_mib < 0:
        raise DiststError(f"config key 'train.heap_slack_mib' must be >= 0 MiB (0 = leave the "
                          f"allocator alone), got {cfg.train.heap_slack_mib}")
    if cfg.partition.parts < 1:
        raise DiststError(f"config key 'partition.parts' must be >= 1, got {cfg.partition.parts}")
    from distst.graph.partition.plan import check_order

    check_order(cfg.partition.order, "config key 'partition.order'")
    if cfg.partition.halo_hops < 0:
        raise DiststError(
            f"config key 'partition.halo_hops' must be >= 0, got {cfg.partition.halo_hops}"
        )
    if cfg.train.batch_size < cfg.runtime.workers and cfg.runtime.mode == "replicate":
        raise DiststError(
            f"config key 'train.batch_size' ({cfg.train.batch_size}) is smaller than "
            f"runtime.workers ({cfg.runtime.workers}): every worker needs at least one window"
        )
    for key, val in (("data.input_len", cfg.data.input_len), ("data.horizon", cfg.data.horizon),
                     ("train.epochs", cfg.train.epochs), ("train.batch_size", cfg.train.batch_size)):
        if val < 1:
            raise DiststError(f"config key '{key}' must be >= 1, got {val}")
    if len(cfg.data.split) != 3 or any(x <= 0 for x in cfg.data.split) or not math.isclose(
        sum(cfg.data.split), 1.0, abs_tol=1e-6
    ):
        raise DiststError(
            f"config key 'data.split' must be three positive fractions summing to 1, "
            f"got {cfg.data.split}"
        )
    null_value(cfg.data)
    if cfg.data.symmetrize not in ("max", "sum"):
        raise DiststError(f"config key 'data.symmetrize': {cfg.data.symmetrize!r} is not a "
                          "symmetrisation rule; choices: max, sum")
    s = cfg.data.synth
    if s.nodes < 2:
        raise DiststError(f"config key 'data.synth.nodes' must be >= 2 (sensors of the "
                          f"synthetic network), got {s.nodes}")
    if not (math.isfinite(s.days) and s.days > 0):
        raise DiststError(f"config key 'data.synth.days' must be > 0, got {s.days}")
    if s.graph not in SYNTH_GRAPHS:
        raise DiststError(f"config key 'data.synth.graph': {s.graph!r} is not one of "
                          f"{', '.join(SYNTH_GRAPHS)}")
    if s.graph == "grid" and (len(s.grid) != 2 or min(s.grid) < 1):
        raise DiststError(f"config key 'data.synth.grid' must be [height, width] >= 1, got "
                          f"{s.grid}")
    if not cfg.model.name:
        raise DiststError("config key 'model.name' is empty; name a model, e.g. gcgru")


def _strings(data, prefix: str = ""):
    """(dotted key, value) of every string in a config mapping, lists included."""
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for k, v in items:
        key = f"{prefix}.{k}" if prefix and isinstance(data, dict) else \
            (f"{prefix}[{k}]" if prefix else str(k))
        if isinstance(v, str):
            yield key, v
        elif isinstance(v, (dict, list)):
            yield from _strings(v, key)


def check_run_name(name: str, key: str = "config key 'runtime.name'",
                   under: str = "runtime.storage", example: str = "runtime.name=gcgru-test"
                   ) -> None:
    """A run (sweep, study) name is one folder under its storage: no separators, no '..', no
    hidden names, so that nothing is ever written outside its storage root. ``key`` names the
    setting in the error, ``under`` the storage it is a folder of."""
    if not name:
        return
    bad = ("/" in name or "\\" in name or name in (".", "..") or name.startswith(".")
           or "\0" in name)
    if bad:
        raise DiststError(f"{key}: {name!r} is not a plain folder name (no '/', '\\', leading "
                          f"'.' or '..'); it is always written as one folder under {under}, "
                          f"e.g. {example}")


def null_value(data: DataConfig) -> float:
    """The configured missing-value marker as a float (NaN or a number)."""
    v = str(data.null_value).strip().lower()
    if v == "nan":
        return float("nan")
    try:
        return float(v)
    except ValueError:
        raise DiststError(
            f"config key 'data.null_value': {data.null_value!r} is neither 'nan' nor a number"
        ) from None


# -- YAML files, includes and overrides ------------------------------------------------------
#: bounds on what any YAML that distst reads may be: a config, sweep or study file is a few
#: KB of a few hundred values, and a file of a few hundred bytes whose aliases expand into
#: millions of values hung `distst train` (issue 30)
YAML_MAX_BYTES = 1 << 20
YAML_MAX_VALUES = 100_000
YAML_MAX_DEPTH = 32
#: includes: how deep a chain of them may go, and how many files one config may name in all
INCLUDE_MAX_DEPTH = 8
INCLUDE_MAX_FILES = 64


class _DuplicateKey(Exception):
    def __init__(self, key, first: int, again: int):
        super().__init__(key)
        self.key, self.first, self.again = key, first, again


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error: with
    ``epochs: 5`` and later ``epochs: 1`` (or two ``train:`` sections) the last would win
    without a word."""


def _strict_mapping(loader: _StrictLoader, node, deep: bool = False):
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *base`` is how YAML overrides
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            line = seen.get(key)
        except TypeError:  # an unhashable key: the base constructor says what is wrong
            break
        if line is not None:
            raise _DuplicateKey(key, line, key_node.start_mark.line + 1)
        seen[key] = key_node.start_mark.line + 1
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)


def _expanded_size(obj, origin: str) -> int:
    """How many values ``obj`` holds with every shared part (a YAML alias) counted where it is
    used, computed once per distinct part; refuses nesting deeper than YAML_MAX_DEPTH."""
    memo: dict[int, int] = {}

    def size(o, depth: int) -> int:
        if not isinstance(o, (dict, list)):
            return 1
        if depth > YAML_MAX_DEPTH:
            raise DiststError(f"{origin}: values nested more than {YAML_MAX_DEPTH} levels deep; "
                              "a distst file is a few levels of sections and lists")
        if id(o) not in memo:
            items = list(o.keys()) + list(o.values()) if isinstance(o, dict) else o
            memo[id(o)] = 1 + sum(size(v, depth + 1) for v in items)
        return memo[id(o)]

    return size(obj, 0)


def load_yaml(text: str | bytes, origin: str) -> Any:
    """Parse distst's YAML (configs, sweep and study files, the copies saved beside a run):
    safe types only, no key twice in a mapping, at most YAML_MAX_BYTES of text and
    YAML_MAX_VALUES values once aliases are expanded, YAML_MAX_DEPTH levels. ``origin``
    names the file (or the override) in every error."""
    if isinstance(text, bytes):
        if len(text) > YAML_MAX_BYTES:
            raise DiststError(f"{origin} is {len(text):,} bytes; a distst YAML file is a few KB "
                              f"(at most {YAML_MAX_BYTES:,} bytes): is this the right file?")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DiststError(f"{origin} is not a text file (undecodable byte at offset "
                              f"{e.start}); pass a YAML file") from None
    if len(text) > YAML_MAX_BYTES:
        raise DiststError(f"{origin} is {len(text):,} characters; a distst YAML file is a few "
                          f"KB (at most {YAML_MAX_BYTES:,}): is this the right file?")
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: safe types only
    except _DuplicateKey as e:
        raise DiststError(f"{origin}: key {e.key!r} appears twice in one mapping (lines {e.first} "
                          f"and {e.again}); keep one of them") from None
    except yaml.YAMLError as e:
        raise DiststError(f"{origin} is not valid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise DiststError(f"{origin}: values nested too deeply to read; a distst file is a few "
                          "levels of sections and lists") from None
    n = _expanded_size(data, origin)
    if n > YAML_MAX_VALUES:
        raise DiststError(f"{origin} holds {n:,} values once its aliases (*name) are expanded; "
                          f"a distst file holds a few hundred (at most {YAML_MAX_VALUES:,}): "
                          "check the anchors and aliases")
    return data


def read_saved_yaml(loc, sections: tuple[str, ...], what: str, fix: str) -> dict:
    """A YAML file distst wrote beside its results (a sweep's or a study's ``sweep.yaml`` /
    ``study.yaml``): a mapping whose ``sections`` are mappings; anything else (a hand edit, a
    damaged copy, another program's file) is one error naming the file and ``fix``."""
    try:
        raw = loc.read_bytes()
    except OSError as e:
        raise DiststError(f"{loc} cannot be read ({e.strerror or e}); {fix}") from None
    data = load_yaml(raw, str(loc))
    bad = [k for k in sections if not isinstance(data, dict) or not isinstance(data.get(k), dict)]
    if bad:
        raise DiststError(f"{loc} is not the {what} distst writes (no {' / '.join(bad)} "
                          f"mapping in it); {fix}")
    return data


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_yaml(path: str | Path) -> dict:
    """Read a config file, resolving ``include:`` lists relative to the file: each file is read
    once however often it is named, a chain of includes is at most INCLUDE_MAX_DEPTH deep and
    one config names at most INCLUDE_MAX_FILES files (a file that includes another many times
    over, level after level, once hung the loader)."""
    cache: dict[Path, dict] = {}
    return copy.deepcopy(_read_included(Path(path), (), cache, [0], None))


def _read_included(p: Path, chain: tuple, cache: dict, count: list, named_by: Path | None) -> dict:
    where = f"config file {p}" + (f" (included by {named_by})" if named_by else "")
    try:
        st = p.stat()
        key = p.resolve()
    except FileNotFoundError:
        raise DiststError(f"{where} does not exist; pass a YAML file, e.g. "
                          "configs/quickstart.yaml") from None
    except (OSError, RuntimeError) as e:  # a symlink loop, a name too long
        raise DiststError(f"{where} cannot be opened ({getattr(e, 'strerror', None) or e}); "
                          "pass a YAML file") from None
    if stat.S_ISDIR(st.st_mode):
        raise DiststError(f"{where} is a folder; name a YAML file")
    if not stat.S_ISREG(st.st_mode):
        raise DiststError(f"{where} is not a regular file; name a YAML file")
    if key in chain:
        raise DiststError(f"config file {p} includes itself (through "
                          f"{', '.join(map(str, chain))})")
    if key in cache:
        return cache[key]
    if len(chain) >= INCLUDE_MAX_DEPTH:
        raise DiststError(f"{where}: includes nest more than {INCLUDE_MAX_DEPTH} levels deep "
                          f"({' -> '.join(str(c.name) for c in chain)} -> {p.name}); flatten them")
    count[0] += 1
    if count[0] > INCLUDE_MAX_FILES:
        raise DiststError(f"{where}: the config names more than {INCLUDE_MAX_FILES} files "
                          "through include:; a config is a dataset file, a model file and a "
                          "few settings")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise DiststError(f"{where} cannot be read ({e.strerror or e})") from None
    data = load_yaml(raw, f"config file {p}") or {}
    if not isinstance(data, dict):
        raise DiststError(f"config file {p} must hold a mapping at the top level")
    includes = data.pop("include", []) or []
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise DiststError(f"config file {p}: include must be a file name or a list of file "
                          f"names (relative to the file), got {includes!r}")
    merged: dict = {}
    for inc in includes:
        merged = _deep_merge(merged, _read_included(p.parent / inc, chain + (key,), cache,
                                                    count, p))
    cache[key] = _deep_merge(merged, data)
    return cache[key]


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise DiststError(f"override {text!r} must look like key.sub=value, e.g. train.epochs=5")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise DiststError(f"override {text!r}: empty key; write e.g. model.params.hidden_size=32")
    try:
        value = load_yaml(raw, f"override {text!r}") if raw.strip() else ""
    except DiststError as e:
        if "is not valid YAML" not in str(e):
            raise
        value = raw  # not YAML: the text itself (a path with a colon, say)
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=v`` overrides to a raw config mapping (values parsed as YAML scalars)."""
    out = copy.deepcopy(data)
    for text in overrides or []:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            if not isinstance(node.get(part, {}), dict):
                raise DiststError(f"override {text!r}: '{part}' is not a section")
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    data = read_yaml(path) if path else {}
    return config_from_dict(apply_overrides(data, overrides or []))


def save_config(cfg: Config, path: str | Path) -> None:
    write_atomic(path, cfg.to_yaml())
