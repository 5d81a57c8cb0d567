"""Ray Train (V2 API) runtime: one TorchTrainer, W DDP workers, each running the engine loop.

The driver makes sure the dataset exists (generating the synthetic one once), connects to
Ray (``runtime.address`` / ``RAY_ADDRESS``, else a local instance), checks that the cluster
has the CPUs the workers ask for, and starts the TorchTrainer. Every worker builds the same
bundle and model and runs :class:`distst.engine.trainer.Trainer`; rank 0 writes checkpoints
through ``ray.train.report`` while every rank calls report, as Ray requires.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import time
from pathlib import Path

import pyarrow.fs
import ray
import ray.train
import ray.train.torch
from ray.train import (Checkpoint, CheckpointConfig, FailureConfig, LoggingConfig, RunConfig,
                       ScalingConfig, UserCallback)
from ray.train.torch import TorchTrainer

from distst.config import Config
from distst.engine.context import KEEP_CHECKPOINTS, Context, NullBar
from distst.engine.logs import trackers
from distst.engine.entry import (WorkerJob, prepare_workers, read_test_metrics, resume_hint,
                                 run_dir_for, shown)
from distst.engine.predict import ForecastJob, Forecasts
from distst.errors import DiststError, Interrupted
from distst.layout import Layout, fits
from distst.storage import Location, configure, location
from distst.runtime.progress import DriverDisplay, ProgressBoard, WorkerBar


class RayContext(Context):
    def __init__(self, run_dir: str | Path, board=None, resume_from: str | None = None):
        super().__init__(run_dir)
        tc = ray.train.get_context()
        self.rank = tc.get_world_rank()
        self.world_size = tc.get_world_size()
        self.device = ray.train.torch.get_device()
        self.node = ray.get_runtime_context().get_node_id()[:12]
        self._board = board
        # Ray's own checkpoint wins: it is set when Ray restarts workers after a failure
        # or restores a run of the same name; otherwise the one `--resume` named.
        self._resume = ray.train.get_checkpoint()
        self._resume_path = location(resume_from) if resume_from else None

    def report(self, metrics: dict, checkpoint_dir: Path | None) -> None:
        # report copies the folder into the run's storage before it returns (SYNC mode)
        ckpt = Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=ckpt)

    def progress(self, total: int, desc: str):
        if self.is_main and self._board is not None:
            return WorkerBar(self._board, desc, total)
        return NullBar()

    def log(self, line: str) -> None:
        if self.is_main and self._board is not None:
            self._board.log.remote(line)

    def latest_checkpoint(self) -> Path | Location | None:
        if self._resume is None:
            return self._resume_path
        if isinstance(self._resume.filesystem, pyarrow.fs.LocalFileSystem):
            return Path(self._resume.path)
        # to_directory() without a path shares one temp folder between the workers of a
        # node, and a late worker re-downloads into it while an early one is reading
        # (a torn checkpoint.pt, seen in CI): each worker gets a folder of its own
        return Path(self._resume.to_directory(tempfile.mkdtemp(prefix=f"distst-resume-r{self.rank}-")))


def _quiet_report_log() -> None:
    """Ray 2.60 logs every report at INFO under a file-path logger name that
    LoggingConfig's level does not reach; the driver shows progress itself."""
    try:
        from ray.train.v2._internal.execution import context as _train_ctx

        logging.getLogger(_train_ctx.__file__).setLevel(logging.WARNING)
    except ImportError:  # a Ray without that module logs differently; nothing to quiet
        pass


def train_loop_per_worker(config: dict) -> None:
    """Entry point of every Ray Train worker (must live in the installed package)."""
    _quiet_report_log()
    job: WorkerJob = config["job"]
    configure(job.cfg.runtime.storage_options)
    job.run(RayContext(config["run_dir"], board=config.get("board"), resume_from=job.resume))


#: whether this process attached itself to Ray (the CLI detaches on errors; a caller that
#: initialised Ray itself, a test or a notebook, keeps its session)
CONNECTED = False


def connect(address: str = "") -> None:
    """Attach to ``address`` or ``RAY_ADDRESS``; otherwise start a local Ray instance."""
    if ray.is_initialized():
        return
    global CONNECTED
    addr = address or os.environ.get("RAY_ADDRESS", "")
    CONNECTED = True
    try:
        if addr:
            _probe(addr)
            ray.init(address=addr, log_to_driver=True)
        else:
            start_local()
    except ConnectionError as e:
        raise DiststError(
            f"cannot reach the Ray cluster at {addr!r} ({e}); check the address "
            "(ray://HOST:10001 or HOST:6379) or unset RAY_ADDRESS to run locally"
        ) from None


def _probe(addr: str, timeout_s: float = 10.0) -> None:
    """Fail in seconds when nothing listens at ``HOST:PORT`` (``ray.init`` retries for
    minutes); "auto" and addresses without a port are left to Ray."""
    import socket

    hostport = addr.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise DiststError(
            f"cannot reach the Ray cluster at {addr!r}: nothing answers on {host}:{port} "
            f"({e.strerror or e}); start the cluster (cluster/local-head.sh start, or ray "
            "start --head) or fix --address / RAY_ADDRESS (HOST:6379 or ray://HOST:10001); "
            "without an address distst runs on a local Ray"
        ) from None


def start_local(num_cpus: int | None = None, **kwargs) -> None:
    """Start a local Ray on loopback (nothing of a laptop run should listen on the network)
    with its dashboard, which hosts the state API that
    Train's placement-group cleaner queries (without it a Tune trial stopped early leaks its
    workers' CPUs). The cleaner finds the API by auto-detection, which fails as soon as a
    second Ray instance runs on the machine ("Found multiple active Ray instances"): the
    job's environment names this instance's dashboard explicitly."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{port}"}
    with _loopback_node_ip():
        ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1", dashboard_host="127.0.0.1",
                 dashboard_port=port, include_dashboard=True,
                 runtime_env={"env_vars": env}, **kwargs)


@contextlib.contextmanager
def _loopback_node_ip():
    """Keep ``_node_ip_address="127.0.0.1"`` as given. ``ray.init`` (2.60) swaps a loopback
    node IP for the machine's network address before starting the GCS, raylet and agents,
    and with a non-loopback node IP they listen on every interface (measured: raylet, GCS and
    workers on ::, dashboard agent and runtime-env agent on the LAN address, metrics on
    0.0.0.0). With the loopback IP kept, every one of them binds 127.0.0.1 only
    (tests/runtime/test_loopback.py)."""
    import ray._private.services as services

    resolve = services.resolve_ip_for_localhost
    services.resolve_ip_for_localhost = (
        lambda host: host if services.is_localhost(host) else resolve(host))
    try:
        yield
    finally:
        services.resolve_ip_for_localhost = resolve


def max_failures(cfg: Config) -> int:
    """``runtime.max_failures``, or its default: 3 attached to a cluster, 0 on a local Ray."""
    rt = cfg.runtime
    if rt.max_failures is not None:
        return rt.max_failures
    return 3 if (rt.address or os.environ.get("RAY_ADDRESS")) else 0


#: Ray Train's own knob: how long one attempt to start the worker group waits for resources
START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"


def node_wait(cfg: Config) -> tuple[float, int]:
    """(seconds per worker-group start attempt, Ray Train's ``controller_failure_limit``) so
    that a run waits about ``runtime.node_wait_s`` for room for its workers. Ray's default
    limit waits for ever, which on a fixed cluster that lost a node is a hang; on an
    autoscaling one, a new node arrives within the wait."""
    env = os.environ.get(START_TIMEOUT_ENV)
    per_try = float(env) if env else max(5.0, min(60.0, cfg.runtime.node_wait_s))
    return per_try, max(1, math.ceil(cfg.runtime.node_wait_s / per_try)) - 1


#: Ray Train's switch for its preemption watcher: an actor that polls Ray for nodes being
#: drained (spot reclaims) every 5 s. A local Ray that distst started has no node to drain,
#: and the watcher is one more process waking up beside the training threads; it also logs a
#: core_worker error line at every run (ray-project/ray#53727)
PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
#: how long Ray Train waits on a worker that does not answer its health check
#: (runtime.worker_timeout_s)
HEALTH_TIMEOUT_ENV = "RAY_TRAIN_WORKER_HEALTH_CHECK_TIMEOUT_S"


def started_here() -> bool:
    """Whether this process started the Ray instance it is attached to (a local one: a
    process that attaches to a cluster never starts its head)."""
    node = getattr(ray._private.worker, "_global_node", None)  # Ray 2.60: None when detached
    return bool(ray.is_initialized() and getattr(node, "head", False))


def train_env(cfg: Config) -> dict[str, str]:
    """Ray Train settings for this run, read from the driver's environment by Train's
    controller: the worker-group start timeout (:func:`node_wait`), the health-check timeout
    (runtime.worker_timeout_s) and, on a local Ray that distst started, no preemption watcher.
    A user's own setting of any wins."""
    env = {START_TIMEOUT_ENV: f"{node_wait(cfg)[0]:g}",
           HEALTH_TIMEOUT_ENV: f"{cfg.runtime.worker_timeout_s:g}"}
    if started_here():
        env[PREEMPTION_WATCHER_ENV] = "0"
    return {k: v for k, v in env.items() if not os.environ.get(k)}


@contextlib.contextmanager
def _environ(env: dict[str, str]):
    os.environ.update(env)
    try:
        yield
    finally:
        for key in env:
            os.environ.pop(key, None)


def _alive_nodes() -> dict[str, str]:
    return {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in ray.nodes() if n.get("Alive")}


def _all_on_loopback(nodes: dict[str, str]) -> bool:
    """Whether every node of the cluster is this machine on loopback (a local Ray, the one a
    sweep's trials run on included): then nothing of the run need listen beyond it."""
    import ipaddress

    try:
        return bool(nodes) and all(ipaddress.ip_address(a).is_loopback for a in nodes.values())
    except ValueError:  # a host name: a real cluster
        return False


def _lost_nodes(before: dict[str, str]) -> str:
    """The nodes alive when the run started that are gone now, as 'id (address)'."""
    try:
        now = _alive_nodes()
    except Exception:  # the cluster itself is unreachable: nothing more to name
        return ""
    return ", ".join(f"{nid[:12]} ({addr})" for nid, addr in before.items() if nid not in now)


def check_resources(cfg: Config) -> None:
    """Room for the run's workers, now or after waiting for the cluster to grow
    (:func:`wait_for_room`); refused at once when nothing can join (a Ray this process
    started) or the cluster's declared maximum can never hold them."""
    layout = Layout.of(cfg)
    have, waited = wait_for_room(layout.total_resources,
                                 [layout.resources_per_worker] * layout.world_size,
                                 cfg.runtime.node_wait_s, f"this run ({layout.describe()})")
    try:
        layout.check_fits(have)
    except DiststError as e:
        if not waited:
            raise
        raise DiststError(f"{e}. Waited {waited:.0f} s (runtime.node_wait_s) for the cluster "
                          "to grow; check the autoscaler's node types and their limits, or "
                          "wait longer") from None


#: where ``ray up`` leaves the autoscaler's cluster config on the head
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"


def declared_maximum() -> dict[str, float] | None:
    """The most resources the cluster can ever have: the head's plus every worker node type's
    resources times its ``max_workers``, from the autoscaler config ``ray up`` leaves on the
    head (an upper bound: the global ``max_workers`` may allow fewer). None where it is not
    readable (a driver off the head, KubeRay, a cluster without an autoscaler)."""
    import yaml

    path = Path(os.path.expanduser(BOOTSTRAP_CONFIG))
    try:
        conf = yaml.safe_load(path.read_text())
        total: dict[str, float] = {}
        for name, nt in (conf.get("available_node_types") or {}).items():
            count = 1 if name == conf.get("head_node_type") else int(nt.get("max_workers", 0))
            for res, v in (nt.get("resources") or {}).items():
                total[res] = total.get(res, 0.0) + float(v) * count
        return total or None
    except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError):
        return None


def wait_for_room(need: dict[str, float], bundles: list[dict], wait_s: float,
                  who: str) -> tuple[dict[str, float], float]:
    """(the cluster's resources, seconds waited) once they hold ``need`` (``bundles``: the
    shapes that make it up, one per worker or driver). On a cluster that lacks room, Ray's autoscaler is asked
    for the bundles (``ray.autoscaler.sdk.request_resources``: a cluster that autoscales from
    zero learns of a run only this way), the wait is said once, and after ``wait_s`` seconds
    without room the resources as they are come back for the caller's one-line refusal. No
    wait where nothing can join: a Ray this process started, ``wait_s`` 0, or a need beyond
    the cluster's declared maximum (:func:`declared_maximum`). The request is withdrawn as
    soon as there is room, or at the end of the wait, so that a driver that dies leaves no
    standing demand that keeps nodes up."""
    have = ray.cluster_resources()
    if fits(need, have) or started_here() or wait_s <= 0:
        return have, 0.0
    most = declared_maximum()
    if most is not None and not fits(need, most):
        return have, 0.0
    from ray.autoscaler.sdk import request_resources

    short = ", ".join(f"{v:g} {k}" for k, v in need.items())
    print(f"{who} needs {short} and the Ray cluster has "
          + (", ".join(f"{have.get(k, 0.0):g} {k}" for k in need)) + f" now: asked the "
          f"autoscaler for {len(bundles)} x {bundles[0]}; waiting up to {wait_s:g} s "
          "(runtime.node_wait_s)", flush=True)
    request_resources(bundles=bundles)
    t0 = time.monotonic()
    try:
        deadline = t0 + wait_s
        while time.monotonic() < deadline:
            time.sleep(1.0)
            have = ray.cluster_resources()
            if fits(need, have):
                print(f"{who}: the cluster has room now", flush=True)
                break
    finally:
        request_resources(bundles=[])
    return have, time.monotonic() - t0


class _Trainer(TorchTrainer):
    """TorchTrainer without Ray Data's per-run actor. distst hands Ray Train no datasets (each
    worker reads its data or part itself), yet Train 2.60 starts a DatasetManager actor for
    every run: one more process on the driver's node, importing Ray Data (2 CPU-seconds and
    ~1 s of a 2-core machine's run start, measured; benchmarks/RESULTS.md). With datasets it
    keeps every callback Ray adds."""

    def _create_default_callbacks(self):
        callbacks = super()._create_default_callbacks()
        if self.datasets:
            return callbacks
        try:
            from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
        except ImportError:  # another Ray lays its internals out otherwise: keep them all
            return callbacks
        return [cb for cb in callbacks if not isinstance(cb, DatasetsCallback)]


#: rank 0's rendezvous store of a run on a local Ray, kept alive in that worker process
_STORE: list = []


def _serve_store_on_loopback() -> tuple[str, int]:
    """Rank 0: the process group's rendezvous store, listening on 127.0.0.1 only. torch's
    TCPStore binds every interface (``::``) whatever host it is given, so a laptop run
    listened for the network on one port (scripts/probe_ports.py); a socket bound here first
    and handed over (``master_listen_fd``) keeps it on loopback."""
    import socket
    from datetime import timedelta

    import torch.distributed as dist

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    store = dist.TCPStore("127.0.0.1", port, None, True, timedelta(seconds=1800),
                          wait_for_workers=False, master_listen_fd=sock.fileno())
    _STORE[:] = [sock, store]
    return "127.0.0.1", port


def _use_store(addr: str, port: int) -> None:
    # env:// rendezvous: every rank (rank 0 too) connects to the store served above
    os.environ.update(MASTER_ADDR=addr, MASTER_PORT=str(port),
                      TORCHELASTIC_USE_AGENT_STORE="True")


def torch_config(layout: Layout, loopback: bool):
    """Ray Train's TorchConfig for ``layout``: its process group's backend
    (:attr:`Layout.torch_backend`: CPU tensors served beside NCCL, gloo for shared GPUs), and
    on a Ray whose nodes are all this machine on loopback (:func:`_all_on_loopback`) a
    rendezvous store on loopback (Ray Train's own start-up otherwise, through its helpers; if
    another Ray lays them out differently, Ray's default)."""
    backend = layout.torch_backend
    if not loopback:
        return ray.train.torch.TorchConfig(backend=backend)
    try:
        from ray.train._internal.worker_group import WorkerGroup as V1WorkerGroup
        from ray.train.torch.config import (TorchConfig, _set_torch_distributed_env_vars,
                                            _setup_torch_process_group, _TorchBackend)
    except ImportError:
        return ray.train.torch.TorchConfig(backend=backend)

    class _LoopbackBackend(_TorchBackend):
        def on_start(self, worker_group, backend_config):
            addr, port = worker_group.execute_single(0, _serve_store_on_loopback)
            worker_group.execute(_use_store, addr=addr, port=port)
            if not isinstance(worker_group, V1WorkerGroup):
                worker_group.execute(_set_torch_distributed_env_vars)
            ray.get([worker_group.execute_single_async(
                i, _setup_torch_process_group, backend=backend_config.backend, world_rank=i,
                world_size=len(worker_group), init_method="env://",
                timeout_s=backend_config.timeout_s) for i in range(len(worker_group))])

    class _LoopbackConfig(TorchConfig):
        @property
        def backend_cls(self):
            return _LoopbackBackend

    return _LoopbackConfig(backend=backend)


class TrackerCallback(UserCallback):
    """Hands rank 0's reports to the run's trackers (runtime.loggers) from Ray Train's
    controller, so the training loop knows nothing of them."""

    def __init__(self, logs: list):
        self.logs = list(logs)

    def after_report(self, run_context, metrics, checkpoint):
        for lg in self.logs:
            lg.report(dict(metrics[0]))


def train_ray(cfg: Config, resume_from: str | Path | None = None,
              callbacks: list | None = None) -> tuple[Path | Location, dict]:
    """Train ``cfg`` with Ray Train; returns (run directory, final test metrics).

    ``callbacks`` are Ray Train ``UserCallback`` objects added to the run (the sweep passes
    one that forwards every report to Ray Tune); the run's storage is always
    ``runtime.storage`` / ``runtime.name``, so a sweep places each trial's run itself.
    """
    job = prepare_workers(cfg, resume_from)
    with run_dir_for(job.cfg, job.dataset_dir, resume_from) as run_dir, \
            trackers(job.cfg, run_dir) as logs:
        if logs:
            callbacks = [*(callbacks or []), TrackerCallback(logs)]
        final = _fit(job, run_dir, callbacks)
    return shown(run_dir), final


def _fit(job: WorkerJob, run_dir: Location, callbacks: list | None) -> dict:
    cfg = job.cfg
    connect(cfg.runtime.address)
    check_resources(cfg)
    print(f"run directory: {run_dir}", flush=True)
    # on the driver's node: a lost worker node must not take the progress display with it
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    board = ProgressBoard.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        ray.get_runtime_context().get_node_id(), soft=True)).remote()
    limit = node_wait(cfg)[1]
    nodes = _alive_nodes()
    layout = Layout.of(cfg)
    trainer = _Trainer(
        train_loop_per_worker,
        train_loop_config={"job": job, "run_dir": str(run_dir), "board": board},
        torch_config=torch_config(layout, loopback=_all_on_loopback(nodes)),
        scaling_config=ScalingConfig(
            num_workers=layout.world_size, use_gpu=layout.use_gpu,
            resources_per_worker=layout.resources_per_worker),
        # Ray writes the checkpoints straight into the run folder, on whatever storage
        run_config=RunConfig(name=run_dir.name, storage_path=run_dir.parent.path,
                             storage_filesystem=run_dir.fs,
                             checkpoint_config=CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
                             failure_config=FailureConfig(
                                 max_failures=max_failures(cfg),
                                 controller_failure_limit=limit),
                             logging_config=LoggingConfig(log_level="WARNING"),
                             callbacks=list(callbacks or [])),
    )
    try:
        with DriverDisplay(board, enabled=cfg.train.progress), _environ(train_env(cfg)), \
                _HeadWatch(run_dir):
            result = trainer.fit()
    except (KeyboardInterrupt, SystemExit):
        # Ray Train's own Ctrl-C handler aborts the run gracefully, then sys.exit()s
        raise Interrupted(resume_hint(run_dir)) from None
    except Exception as e:  # a worker's DiststError arrives wrapped in Ray's errors
        raise _user_error(e) or _run_failed(e, run_dir, cfg, nodes) from None
    finally:
        with contextlib.suppress(Exception):  # its node may be the one that was lost
            ray.kill(board)
    if result.error:
        raise _user_error(result.error) or _run_failed(result.error, run_dir, cfg, nodes)
    return read_test_metrics(run_dir)


class _HeadWatch:
    """For a local Ray this process started: if its head (GCS) ends mid-run, Ray's driver
    trained on for 60 s, then exited with code 1 after a C++ log line, and left its node's
    agents running. The watch notices within 2 s, ends what is left of that node
    (:func:`_end_node`), prints the one-line error with the resume hint and exits
    with code 2. On a cluster the head is not this process's to watch."""

    def __init__(self, run_dir: Location, interval_s: float = 2.0):
        import threading

        self._run_dir, self._interval = run_dir, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        if started_here():
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()

    def _watch(self) -> None:
        node = ray._private.worker._global_node
        try:
            gcs = node.all_processes["gcs_server"][0].process
            node_id = node.node_id
        except (AttributeError, KeyError, IndexError):  # another Ray's internals: no watch
            return
        while not self._stop.wait(self._interval):
            if gcs.poll() is not None:
                break
        else:
            return
        import sys

        _end_node(node, node_id)
        print(f"error: training stopped: the local Ray's head (GCS) ended mid-run (exit code "
              f"{gcs.returncode}); {resume_hint(self._run_dir)}", file=sys.stderr, flush=True)
        os._exit(2)


def _end_node(node, node_id: str) -> None:
    """End every process of the local Ray node this process started: those it tracks (its
    raylet among them, which would start its agents again) and those that name the node
    or its raylet in their environment (agents, workers: RAY_NODE_ID is not always set,
    RAY_RAYLET_PID is), this process excepted."""
    import time

    import psutil

    raylets = {str(i.process.pid) for i in getattr(node, "all_processes", {}).get("raylet", [])}
    marks = [f"RAY_NODE_ID={node_id}".encode(), *(f"RAY_RAYLET_PID={r}".encode()
                                                    for r in raylets)]
    session = str(getattr(node, "get_session_dir_path", lambda: "")() or "")

    def ours(p) -> bool:
        # Ray's agents rewrite their command line over their environment block, so neither
        # psutil nor /proc reads it reliably: the logs they hold open in the node's session
        # folder say whose they are
        proc = Path(f"/proc/{p.pid}/environ")
        env = (proc.read_bytes().split(b"\0") if proc.exists() else
               [f"{k}={v}".encode() for k, v in p.environ().items()])
        if any(m in env for m in marks):
            return True
        return bool(session) and any(f.path.startswith(session + os.sep)
                                     for f in p.open_files())

    for infos in list(getattr(node, "all_processes", {}).values()):
        for info in infos:
            with contextlib.suppress(Exception):
                info.process.kill()
    for _ in range(2):  # an agent started while the raylet went
        for p in psutil.process_iter():
            try:
                if p.pid != os.getpid() and ours(p):
                    p.kill()
            except (psutil.Error, OSError):
                continue
        time.sleep(0.5)


def _run_failed(err: BaseException, run_dir: Location, cfg: Config,
                nodes: dict[str, str]) -> DiststError:
    """A run that failed without a worker's DiststError (a lost worker or node, a crash):
    one line naming the lost nodes, or else the cause's first line, and how to continue."""
    lost = _lost_nodes(nodes)
    if lost:
        rt = cfg.runtime
        return DiststError(
            f"training stopped: lost node {lost}, and within runtime.node_wait_s="
            f"{rt.node_wait_s:g} s the cluster had no room for {rt.workers} workers x "
            f"{rt.cpus_per_worker:g} CPU{f' + {rt.gpus_per_worker:g} GPU' if rt.use_gpu else ''}"
            f" (or runtime.max_failures={max_failures(cfg)} restarts were used up); add nodes "
            f"or raise runtime.node_wait_s; {resume_hint(run_dir)}")
    full = str(err)
    if "health check has been hanging" in full:
        import re

        rank = re.search(r"world_rank=(\d+)", full)
        who = f"worker rank {rank.group(1)}" if rank else "a worker"
        return DiststError(
            f"training stopped: {who} did not answer for runtime.worker_timeout_s="
            f"{cfg.runtime.worker_timeout_s:g} s (frozen, swapped out or hung) and "
            f"runtime.max_failures={max_failures(cfg)} restarts were used up; raise "
            f"runtime.max_failures to restart from the newest checkpoint; {resume_hint(run_dir)}")
    if "OutOfMemoryError" in full or "out of memory" in full.lower():
        import re

        used = re.search(r"was ([0-9.]+)GB used / ([0-9.]+)GB", full)
        seen = f" ({used.group(1)} of {used.group(2)} GB in use)" if used else ""
        return DiststError(
            f"training stopped: a worker ran out of memory{seen}; lower train.batch_size or the "
            "model's size, use more workers (shard mode splits the sensors), or give workers "
            f"more memory; {resume_hint(run_dir)}")
    # the first line that says something (Ray's wrappers start with a bare heading)
    lines = [ln.strip() for ln in full.splitlines() if ln.strip()]
    text = next((ln for ln in lines if not ln.rstrip(":;").endswith("errors")),
                lines[0] if lines else type(err).__name__)
    return DiststError(f"training stopped: {type(err).__name__}: {text[:300]}; "
                       f"{resume_hint(run_dir)}")


def _user_error(err: BaseException, who: str = "a training worker") -> DiststError | None:
    """The DiststError a worker raised, if that is what failed the run."""
    marker = "DiststError: "
    lines = [ln for ln in str(err).splitlines() if marker in ln]
    if lines:
        return DiststError(f"{who} failed: " + lines[-1].split(marker, 1)[1].strip())
    return None


@ray.remote(num_cpus=0)
class _Pieces:
    """The forecast pieces of a :func:`predict_ray` run, handed over by the workers (on any
    node) and collected on the driver's: no storage that every node shares is needed."""

    def __init__(self):
        self.pieces: dict = {}

    def put(self, rank: int, piece) -> None:
        self.pieces[rank] = piece

    def get(self) -> dict:
        return self.pieces


def predict_loop_per_worker(config: dict) -> None:
    """Entry point of every worker of a forecast through the run's layout."""
    _quiet_report_log()
    job: ForecastJob = config["job"]
    configure(job.cfg.runtime.storage_options)
    ctx = RayContext(config["run_dir"])
    ctx.keeps_fetch_records = False  # the training's records of what its workers fetched stay
    piece = job.piece(ctx)
    ray.get(config["pieces"].put.remote(ctx.rank, piece))


def predict_ray(job: ForecastJob, address: str = "") -> Forecasts:
    """The forecasts of ``job`` (:func:`distst.engine.predict.forecast_job` with a plan) made
    by one Ray Train worker per part of the run's plan, on the Ray at ``address`` (else
    ``RAY_ADDRESS``, else a local one), assembled into one set in the run's sensor order."""
    cfg = job.cfg
    layout = job.layout
    connect(address)
    check_resources(cfg)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    pieces = _Pieces.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        ray.get_runtime_context().get_node_id(), soft=True)).remote()
    # Ray Train keeps its own state under storage_path; a forecast reports no checkpoint,
    # so nothing of it is needed afterwards, and nothing is written into the run's folder
    scratch = Path(tempfile.mkdtemp(prefix="distst-predict-"))
    run_dir = location(job.checkpoint).parent
    trainer = _Trainer(
        predict_loop_per_worker,
        train_loop_config={"job": job, "run_dir": str(run_dir), "pieces": pieces},
        torch_config=torch_config(layout, loopback=_all_on_loopback(_alive_nodes())),
        scaling_config=ScalingConfig(num_workers=layout.world_size, use_gpu=layout.use_gpu,
                                     resources_per_worker=layout.resources_per_worker),
        run_config=RunConfig(name="predict", storage_path=str(scratch),
                             failure_config=FailureConfig(
                                 max_failures=0, controller_failure_limit=node_wait(cfg)[1]),
                             logging_config=LoggingConfig(log_level="WARNING")),
    )
    print(f"forecasting through the run's layout: {layout.describe()}", flush=True)
    try:
        with _environ(train_env(cfg)):
            result = trainer.fit()
        if result.error:
            raise result.error
        got = ray.get(pieces.get.remote())
    except (KeyboardInterrupt, SystemExit):
        raise Interrupted("the forecast was stopped; nothing was written") from None
    except Exception as e:
        raise _user_error(e, "a forecast worker") or DiststError(
            f"the forecast stopped: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
            if str(e).strip() else f"the forecast stopped: {type(e).__name__}") from None
    finally:
        with contextlib.suppress(Exception):
            ray.kill(pieces)
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    if sorted(got) != list(range(layout.world_size)):
        raise DiststError(f"the forecast got pieces from workers {sorted(got)} of "
                          f"{layout.world_size}; run it again")
    return job.assemble([got[r] for r in range(layout.world_size)])
