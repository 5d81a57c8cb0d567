"""A run's per-epoch record, where people look for it: ``metrics.jsonl`` (one JSON line per
epoch, what distst itself reads back) and TensorBoard event files in ``tensorboard/``
(``tensorboard --logdir RUNS``), both written by the main rank only; and, with
``runtime.loggers: [mlflow]``, an MLflow run (:class:`MlflowLog`), fed from the driver side.

TensorBoard scalars per epoch: ``train/loss``, ``train/lr``, ``train/teacher_forcing``,
``train/windows_per_s``, ``val/mae``, ``val/rmse``, ``val/mape``, ``val/mae_step_H`` for each
horizon step H, ``time/epoch_s``. On an object store the event file is written to a local
folder and uploaded whole after each epoch (object stores cannot append).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from distst.config import Config
from distst.errors import DiststError, Interrupted
from distst.storage import Location

#: TensorBoard tag -> key of the epoch record
SCALARS = {"train/loss": "train_loss", "train/lr": "lr",
           "train/teacher_forcing": "teacher_forcing", "train/windows_per_s": "windows_per_s",
           "val/mae": "val_mae", "val/rmse": "val_rmse", "val/mape": "val_mape",
           "time/epoch_s": "epoch_time_s"}


def read_metrics_log(path: Location, warn: bool = True) -> list[dict]:
    """The epoch records of a ``metrics.jsonl``.

    It is appended in place, so a kill -9 or a full disk can leave its last line cut short:
    that line is dropped (with a warning on stderr; its epoch is trained again on resume). A
    bad line before the last one is a damaged file, refused naming the line."""
    lines = path.read_bytes().decode(errors="replace").split("\n")
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip()]
    records = []
    for k, (i, ln) in enumerate(numbered):
        try:
            rec = json.loads(ln)
            if not isinstance(rec, dict) or not isinstance(rec.get("epoch"), int):
                raise ValueError("not an epoch record")
        except (ValueError, RecursionError) as e:
            if k == len(numbered) - 1:
                if warn:
                    print(f"WARNING: {path}: its last line (line {i}) is cut short, as an "
                          "interrupted write leaves it; the epochs before it are kept",
                          file=sys.stderr, flush=True)
                break
            raise DiststError(f"{path}: line {i} is not an epoch record ({e}); the file is "
                              "damaged: restore it, or delete that line and the ones after "
                              "it") from None
        records.append(rec)
    return records


class RunLog:
    def __init__(self, run_dir: Location, tensorboard: bool = True):
        self.run_dir = run_dir
        self.tensorboard = tensorboard
        self._writer = None
        self._staging: Path | None = None

    def write(self, record: dict) -> None:
        self.run_dir.mkdir()
        (self.run_dir / "metrics.jsonl").append_text(json.dumps(record) + "\n")
        if self.tensorboard:
            self._events(record)

    def _events(self, record: dict) -> None:
        if self._writer is None:
            from tensorboardX import SummaryWriter

            target = self.run_dir / "tensorboard"
            if target.is_local:
                logdir = target.local
            else:
                self._staging = Path(tempfile.mkdtemp(prefix="distst-tb-"))
                logdir = self._staging
            self._writer = SummaryWriter(logdir=str(logdir), flush_secs=3600)
        step = int(record["epoch"])
        for tag, key in SCALARS.items():
            if isinstance(record.get(key), (int, float)):
                self._writer.add_scalar(tag, float(record[key]), step)
        for h, v in enumerate(record.get("val_mae_by_step") or [], start=1):
            self._writer.add_scalar(f"val/mae_step_{h}", float(v), step)
        self._writer.flush()
        if self._staging is not None:
            for f in self._staging.iterdir():
                (self.run_dir / "tensorboard" / f.name).write_bytes(f.read_bytes())

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None


# -- trackers fed from the driver side --------------------------------------------------------
#: where a run keeps its MLflow run's id, so that ``--resume`` continues the same MLflow run
MLFLOW_FILE = "mlflow.json"


#: MLflow's HTTP defaults (7 retries with backoff, 120 s per request) held a run 250 s on a
#: closed port; distst's run asks less of a tracker (an environment setting still wins)
MLFLOW_HTTP_BOUNDS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
                      "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
#: seconds a tracking server has to answer before a run goes on without it
MLFLOW_PROBE_S = 5.0


def _no_answer(uri: str) -> str | None:
    """Why an http(s) tracking server does not answer within ``MLFLOW_PROBE_S`` (refused,
    timed out, no such host), or None if it gives any HTTP response at all (even an error
    status: then MLflow's own message is the better one) or is not a server."""
    import urllib.error
    import urllib.request

    if not uri.lower().startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=MLFLOW_PROBE_S):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return str(getattr(reason, "strerror", None) or reason) or type(e).__name__


def _absolute_tracking_uri(uri: str) -> str:
    """A tracking URI that means the same from any process: Ray Train's controller, which
    feeds the tracker, does not run in the driver's working directory."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    if uri.startswith("file:") and not uri.startswith("file:/"):
        return Path(uri[len("file:"):]).resolve().as_uri()
    if "://" not in uri and ":" not in uri[:3]:  # a bare folder, as MLflow accepts
        return Path(uri).expanduser().resolve().as_uri()
    return uri


def _flat_config(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat_config(v, f"{prefix}{k}."))
        else:
            # MLflow caps a parameter value at 6000 characters
            out[f"{prefix}{k}"] = str(v)[:6000]
    return out


class MlflowLog:
    """One MLflow run per distst run: the resolved config as parameters, every epoch's
    metrics (the TensorBoard tags of :data:`SCALARS`, ``val/mae_step_H``), the final test
    metrics (``test/<horizon>/<metric>``, HA's as ``ha/...``) and config.yaml,
    test_metrics.json and metrics.jsonl as artifacts.

    The driver opens and closes it (:func:`trackers`); what happens in between is
    :meth:`report`, called by whatever receives the workers' reports: Ray Train's controller
    through a callback (distst.runtime), or the local context. It is small and picklable for
    that trip: a tracking URI, a run id and the driver's ``MLFLOW_*`` environment (server
    credentials, MLFLOW_ALLOW_FILE_STORE), which a job's controller does not inherit."""

    def __init__(self, tracking_uri: str, run_id: str, env: dict | None = None):
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.env = dict(env if env is not None else
                        {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")})
        self._client = None
        self._warned = False

    def __getstate__(self):
        return {"tracking_uri": self.tracking_uri, "run_id": self.run_id, "env": self.env}

    def __setstate__(self, state):
        self.__init__(state["tracking_uri"], state["run_id"], state["env"])

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            for k, v in {**MLFLOW_HTTP_BOUNDS, **self.env}.items():  # the process's own win
                os.environ.setdefault(k, v)
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    @classmethod
    def open(cls, cfg: Config, run_dir: Location) -> "MlflowLog | None":
        """Start (or, for a resumed run, continue) the MLflow run of ``run_dir``; None, with
        one warning, when a tracking server does not answer (MLflow's own retries blocked
        250 s on a closed port, then refused the run)."""
        try:
            import mlflow
        except ImportError:
            raise DiststError("config key 'runtime.loggers' asks for mlflow, which is not "
                              "installed; pip install 'distst[mlflow]' (or mlflow-skinny), or "
                              "drop it from runtime.loggers") from None
        mc = cfg.runtime.mlflow
        uri = _absolute_tracking_uri(mc.tracking_uri or mlflow.get_tracking_uri())
        silent = _no_answer(uri)
        if silent:
            print(f"warning: MLflow at {uri} does not answer ({silent}); this run is not "
                  "tracked there, training goes on (metrics.jsonl and TensorBoard have "
                  "everything)", file=sys.stderr, flush=True)
            return None
        saved = run_dir / MLFLOW_FILE
        try:
            log = cls(uri, "")
            if saved.is_file():
                rec = json.loads(saved.read_text())
                if rec.get("tracking_uri") == uri:
                    log.run_id = rec["run_id"]
                    log.client.update_run(log.run_id, status="RUNNING")
                    return log
            exp = log.client.get_experiment_by_name(mc.experiment)
            exp_id = exp.experiment_id if exp else log.client.create_experiment(mc.experiment)
            run = log.client.create_run(exp_id, run_name=run_dir.name, tags={
                "distst.run_dir": str(run_dir), "distst.model": cfg.model.name,
                "distst.mode": cfg.runtime.mode})
            log.run_id = run.info.run_id
            from mlflow.entities import Param

            params = [Param(k, v) for k, v in _flat_config(cfg.to_dict()).items()]
            for i in range(0, len(params), 100):  # MLflow takes 100 parameters per batch
                log.client.log_batch(log.run_id, params=params[i:i + 100])
        except mlflow.exceptions.MlflowException as e:
            if "MLFLOW_ALLOW_FILE_STORE" in str(e):
                raise DiststError(
                    f"runtime.mlflow.tracking_uri {uri}: MLflow 3 refuses a file-store "
                    "tracking folder; use a tracking server (http://HOST:5000) or "
                    "sqlite:///PATH.db (pip install mlflow), or set MLFLOW_ALLOW_FILE_STORE=true "
                    "to keep the folder") from None
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DiststError(f"runtime.mlflow.tracking_uri {uri}: MLflow refused the run "
                              f"({first[:400]}); fix the URI or the server, or drop mlflow "
                              "from runtime.loggers") from None
        saved.write_text(json.dumps({"tracking_uri": uri, "run_id": log.run_id,
                                     "experiment": mc.experiment}))
        return log

    def report(self, metrics: dict) -> None:
        """One report of rank 0: an epoch's record, a mid-epoch checkpoint (skipped), or the
        final test metrics. A tracker that fails warns once and never stops training."""
        if metrics.get("partial") or self._warned:  # after an outage: not every epoch again
            return
        step = int(metrics.get("epoch", 0))
        if metrics.get("final"):
            values = {k.replace("_", "/", 2): v for k, v in metrics.items()
                      if k.startswith(("test_", "ha_"))}
        else:
            values = {tag: metrics[key] for tag, key in SCALARS.items()
                      if isinstance(metrics.get(key), (int, float))}
            values.update({f"val/mae_step_{h}": v for h, v in
                           enumerate(metrics.get("val_mae_by_step") or [], start=1)})
        try:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            batch = [Metric(k, float(v), now, step) for k, v in values.items()
                     if isinstance(v, (int, float))]
            for i in range(0, len(batch), 1000):
                self.client.log_batch(self.run_id, metrics=batch[i:i + 1000])
        except Exception as e:  # noqa: BLE001 - a tracker outage must not cost the run
            if not self._warned:
                self._warned = True
                print(f"warning: MLflow at {self.tracking_uri} did not take the metrics of "
                      f"epoch {step} ({type(e).__name__}: {str(e)[:200]}); training goes on, "
                      "metrics.jsonl has them (no more metrics go to MLflow in this run)",
                      flush=True)

    def close(self, run_dir: Location, status: str = "FINISHED") -> None:
        """Attach the run's files and mark it FINISHED, FAILED or KILLED (interrupted)."""
        if self._warned:  # the tracker went away mid-run: said once already
            return
        try:
            for name in ("config.yaml", "test_metrics.json", "metrics.jsonl"):
                f = run_dir / name
                if f.is_file():
                    self.client.log_text(self.run_id, f.read_text(), name)
            self.client.set_terminated(self.run_id, status)
        except Exception as e:  # noqa: BLE001 - the run's own files are written already
            print(f"warning: could not finish MLflow run {self.run_id} at "
                  f"{self.tracking_uri}: {type(e).__name__}: {str(e)[:200]}", flush=True)


@contextmanager
def trackers(cfg: Config, run_dir: Location) -> Iterator[list[MlflowLog]]:
    """The run's trackers (``runtime.loggers``), opened before any worker starts and closed
    as FINISHED or FAILED however the run ends."""
    opened = [MlflowLog.open(cfg, run_dir) for name in cfg.runtime.loggers if name == "mlflow"]
    logs = [lg for lg in opened if lg is not None]
    try:
        yield logs
    except BaseException as e:
        stopped = isinstance(e, (KeyboardInterrupt, Interrupted))
        for lg in logs:
            lg.close(run_dir, "KILLED" if stopped else "FAILED")
        raise
    for lg in logs:
        lg.close(run_dir)
