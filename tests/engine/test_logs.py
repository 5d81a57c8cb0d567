"""Every run writes TensorBoard event files beside metrics.jsonl, with the same numbers."""

import json
import struct

import pytest

from distst.engine.entry import train_local


def read_scalars(folder) -> dict[str, dict[int, float]]:
    """tag -> {step: value} from the TFRecord event files in ``folder``."""
    from tensorboardX.proto import event_pb2

    out: dict[str, dict[int, float]] = {}
    for f in sorted(folder.iterdir()):
        data = f.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos: pos + 8])
            ev = event_pb2.Event.FromString(data[pos + 12: pos + 12 + length])
            pos += 12 + length + 4  # length, its crc, the record, its crc
            for v in ev.summary.value:
                out.setdefault(v.tag, {})[ev.step] = v.simple_value
    return out


def test_tensorboard_events_match_metrics_jsonl(tiny):
    run_dir, _ = train_local(tiny("train.max_batches_per_epoch=3"))
    records = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    scalars = read_scalars(run_dir / "tensorboard")
    assert [r["epoch"] for r in records] == [1, 2]
    for tag, key in (("train/loss", "train_loss"), ("val/mae", "val_mae"), ("train/lr", "lr"),
                     ("val/rmse", "val_rmse"), ("train/windows_per_s", "windows_per_s")):
        assert scalars[tag] == {r["epoch"]: pytest.approx(r[key], rel=1e-6) for r in records}
    horizon = len(records[0]["val_mae_by_step"])
    assert horizon == 12
    assert scalars["val/mae_step_12"][2] == pytest.approx(records[1]["val_mae_by_step"][11],
                                                          rel=1e-6)


def test_tensorboard_can_be_turned_off(tiny):
    run_dir, _ = train_local(tiny("train.max_batches_per_epoch=2", "train.tensorboard=false",
                                  "train.epochs=1"))
    assert (run_dir / "metrics.jsonl").is_file() and not (run_dir / "tensorboard").exists()


# -- MLflow (runtime.loggers) ------------------------------------------------------------------
def mlflow_run(tracking_uri: str, experiment: str = "distst"):
    """The one MLflow run of ``experiment`` and its client."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return client, runs[0]


def check_mlflow_matches_run(tracking_uri: str, run_dir, epochs: list[int]) -> None:
    """Every epoch's metrics, the config and the test results of ``run_dir`` are in MLflow."""
    client, run = mlflow_run(tracking_uri)
    records = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == epochs
    for tag, key in (("val/mae", "val_mae"), ("train/loss", "train_loss")):
        hist = {m.step: m.value for m in client.get_metric_history(run.info.run_id, tag)}
        assert hist == {r["epoch"]: pytest.approx(r[key], rel=1e-6) for r in records}
    last = {m.step: m.value for m in client.get_metric_history(run.info.run_id,
                                                               "val/mae_step_12")}
    assert last[epochs[-1]] == pytest.approx(records[-1]["val_mae_by_step"][11], rel=1e-6)
    final = json.loads((run_dir / "test_metrics.json").read_text())
    assert run.data.metrics["test/avg/mae"] == pytest.approx(final["test"]["avg"]["mae"])
    assert run.data.metrics["ha/60min/rmse"] == pytest.approx(final["ha"]["60min"]["rmse"])
    cfg_text = (run_dir / "config.yaml").read_text()
    import yaml

    cfg = yaml.safe_load(cfg_text)
    assert run.data.params["train.lr"] == str(cfg["train"]["lr"])
    assert run.data.params["model.params.hidden_size"] == "8"
    assert run.info.status == "FINISHED"
    assert run.info.run_name == run_dir.name
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "test_metrics.json", "metrics.jsonl"} <= arts


def test_mlflow_gets_every_epoch_config_and_test_metrics_and_a_resume_continues_it(
        tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    cfg = tiny("train.max_batches_per_epoch=3", "runtime.loggers=[mlflow]",
               f"runtime.mlflow.tracking_uri={uri}")
    run_dir, _ = train_local(cfg)
    check_mlflow_matches_run(uri, run_dir, [1, 2])
    from dataclasses import replace

    more = replace(cfg, train=replace(cfg.train, epochs=3))
    train_local(more, resume_from=run_dir)
    check_mlflow_matches_run(uri, run_dir, [1, 2, 3])  # the same MLflow run, one more epoch


def test_an_environment_secret_reaches_no_file_of_a_run(tiny, tmp_path, monkeypatch,
                                                        env_secret_in):
    """AWS_SECRET_ACCESS_KEY (and any secret) stays in the environment: not in config.yaml,
    checkpoints, metrics, TensorBoard events nor the MLflow run's params and files."""
    import os

    assert os.environ["AWS_SECRET_ACCESS_KEY"]  # tests/conftest.py: ENV_SECRET
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    cfg = tiny("train.max_batches_per_epoch=2", "train.epochs=1", "runtime.loggers=[mlflow]",
               f"runtime.mlflow.tracking_uri={(tmp_path / 'mlruns').as_uri()}")
    run_dir, _ = train_local(cfg)
    assert list(run_dir.glob("tensorboard/events.out.tfevents*"))
    assert (tmp_path / "mlruns").is_dir()
    assert env_secret_in(run_dir, tmp_path / "mlruns") == []


def test_a_relative_tracking_folder_means_the_drivers_folder(tiny, tmp_path, monkeypatch):
    from distst.engine.logs import _absolute_tracking_uri

    monkeypatch.chdir(tmp_path)
    assert _absolute_tracking_uri("mlruns") == (tmp_path / "mlruns").as_uri()
    assert _absolute_tracking_uri("file:mlruns") == (tmp_path / "mlruns").as_uri()
    assert _absolute_tracking_uri("sqlite:///m.db") == f"sqlite:///{tmp_path / 'm.db'}"
    assert _absolute_tracking_uri("http://host:5000") == "http://host:5000"


def test_a_failed_run_is_marked_failed_in_mlflow(tiny, tmp_path, monkeypatch):
    from distst.engine import trainer as trainer_mod

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()

    def boom(self):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(trainer_mod.Trainer, "final_metrics", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        train_local(tiny("train.max_batches_per_epoch=2", "train.epochs=1",
                         "runtime.loggers=[mlflow]", f"runtime.mlflow.tracking_uri={uri}"))
    client, run = mlflow_run(uri)
    assert run.info.status == "FAILED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/mae")] == [1]


def test_mlflow_errors_are_one_line_before_training(tiny, tmp_path, monkeypatch):
    from distst.errors import DiststError

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = (tmp_path / "mlruns").as_uri()
    cfg = tiny("runtime.loggers=[mlflow]", f"runtime.mlflow.tracking_uri={uri}")
    with pytest.raises(DiststError, match=r"tracking_uri file://.*MLflow 3 refuses a file-store"):
        train_local(cfg)
    assert not list((tmp_path / "runs").glob("*"))  # no run folder left behind
    monkeypatch.setitem(__import__("sys").modules, "mlflow", None)
    with pytest.raises(DiststError, match=r"pip install 'distst\[mlflow\]'"):
        train_local(cfg)


@pytest.mark.parametrize("server", ["closed port", "silent listener"])
def test_a_tracker_that_does_not_answer_warns_once_and_training_goes_on(tiny, tmp_path,
                                                                       monkeypatch, capsys,
                                                                       server):
    """A closed port held the run 250 s in MLflow's retries and then refused it."""
    import socket

    from distst.engine import logs

    monkeypatch.setattr(logs, "MLFLOW_PROBE_S", 1.0)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if server == "silent listener":
        sock.listen(4)  # accepts connections, never answers
    else:
        sock.close()
    try:
        cfg = tiny("train.epochs=1", "train.max_batches_per_epoch=2", "runtime.loggers=[mlflow]",
                   f"runtime.mlflow.tracking_uri=http://127.0.0.1:{port}")
        run_dir, final = train_local(cfg)  # before: MLflow's retries, then a refusal
    finally:
        sock.close()
    err = capsys.readouterr().err
    assert err.count(f"warning: MLflow at http://127.0.0.1:{port} does not answer") == 1, err
    assert (run_dir / "test_metrics.json").is_file() and not (run_dir / "mlflow.json").exists()
