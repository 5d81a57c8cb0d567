"""Ray Train runtime on a local 2-CPU Ray: DDP in replicate mode, checkpoints, resume."""

import json

import pytest

from distst.engine.checkpoint import load_checkpoint
from distst.errors import DiststError
from distst.runtime.ray_train import check_resources, train_ray
from tests.engine.test_logs import check_mlflow_matches_run


def _history(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_worker_run(ray_local, tmp_path_factory, overrides_for):
    from distst.config import load_config

    tiny_overrides = overrides_for
    tmp = tmp_path_factory.mktemp("ray2")
    # MLflow is fed by a callback in Ray Train's controller; MLFLOW_ALLOW_FILE_STORE is set
    # after Ray started, so the controller has it only because the driver passes it on
    cfg = load_config(None, tiny_overrides(tmp, "train.epochs=3", "runtime.workers=2",
                                           "runtime.cpus_per_worker=0.9",
                                           "runtime.loggers=[mlflow]",
                                           f"runtime.mlflow.tracking_uri={tmp / 'mlruns'}"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        run_dir, final = train_ray(cfg)
    return cfg, run_dir, final


def test_two_workers_train_and_report(two_worker_run):
    cfg, run_dir, final = two_worker_run
    hist = _history(run_dir)
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert set(final["test"]) == {"15min", "30min", "60min", "avg"}
    assert set(final["ha"]) == set(final["test"])
    on_disk = json.loads((run_dir / "test_metrics.json").read_text())
    assert on_disk["test"]["avg"]["mae"] == pytest.approx(final["test"]["avg"]["mae"])
    payload, back = load_checkpoint(run_dir)
    assert back == cfg
    assert payload["trainer"]["epoch"] == 3
    check_mlflow_matches_run(_mlflow_uri(cfg), run_dir, [1, 2, 3])


def _mlflow_uri(cfg) -> str:
    from pathlib import Path

    return Path(cfg.runtime.mlflow.tracking_uri).as_uri()


def test_two_replicate_workers_train_what_one_process_trains(two_worker_run, tiny):
    """Step k of two workers is step k of one process: the same windows (each worker takes
    half of the global batch), the batch's masked mean as the loss (the tiny network has 5%
    missing targets), the same teacher-forcing draws. Only float summation order differs
    (see tests/runtime/test_shard.py FLOAT_ORDER)."""
    from distst.engine.entry import train_local

    _, run_dir2, final2 = two_worker_run
    run_dir1, final1 = train_local(tiny("train.epochs=3", "runtime.mode=local"))
    for a, b in zip(_history(run_dir2), _history(run_dir1), strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=5e-4)
        assert a["val_mae"] == pytest.approx(b["val_mae"], rel=5e-4)
    assert final2["test"]["avg"]["mae"] == pytest.approx(final1["test"]["avg"]["mae"], rel=5e-4)


def test_resume_from_ray_checkpoint(two_worker_run, monkeypatch):
    cfg, run_dir, _ = two_worker_run
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from dataclasses import replace

    more = replace(cfg, train=replace(cfg.train, epochs=4))
    run_dir_b, final = train_ray(more, resume_from=run_dir)
    assert run_dir_b == run_dir
    hist = _history(run_dir)
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    payload, _ = load_checkpoint(run_dir)
    assert payload["trainer"]["epoch"] == 4
    check_mlflow_matches_run(_mlflow_uri(cfg), run_dir, [1, 2, 3, 4])


def test_too_many_workers_is_refused_before_starting(ray_local, tiny):
    cfg = tiny("runtime.workers=3")
    with pytest.raises(DiststError, match="needs 3 CPUs but the Ray cluster has 2"):
        check_resources(cfg)


def test_use_gpu_on_a_cluster_without_gpus_is_one_clear_error(ray_local, tiny):
    cfg = tiny("runtime.use_gpu=true", "runtime.gpus_per_worker=0.5")
    with pytest.raises(DiststError, match=r"runtime.use_gpu with 2 workers x "
                       r"runtime.gpus_per_worker=0.5 needs 1 GPUs but the Ray cluster has 0"):
        check_resources(cfg)
    with pytest.raises(DiststError, match="gpus_per_worker' must be > 0"):
        tiny("runtime.gpus_per_worker=0")


def test_bad_settings_fail_before_any_worker_starts(ray_local, tiny):
    with pytest.raises(DiststError, match="input_len"):
        train_ray(tiny("data.input_len=2000"))
    with pytest.raises(DiststError, match="hidden_size"):
        train_ray(tiny("model.params.hiden_size=4"))


def test_a_local_ray_run_starts_no_preemption_watcher(two_worker_run, monkeypatch):
    """The watcher polls for drained nodes (spot reclaims); on a Ray this process started
    there are none, and its process would wake beside the training threads every 5 s. A
    user's own RAY_TRAIN_ENABLE_PREEMPTION_WATCHER wins."""
    import ray._private.state

    from distst.config import load_config
    from distst.runtime.ray_train import PREEMPTION_WATCHER_ENV, START_TIMEOUT_ENV, train_env

    classes = {a["ActorClassName"] for a in ray._private.state.actors().values()}
    assert "TrainController" in classes, classes  # the actor table is the one of the run
    assert "PreemptionWatcher" not in classes
    monkeypatch.delenv(PREEMPTION_WATCHER_ENV, raising=False)
    monkeypatch.delenv(START_TIMEOUT_ENV, raising=False)
    cfg = load_config(None, [])
    assert train_env(cfg)[PREEMPTION_WATCHER_ENV] == "0"
    monkeypatch.setenv(PREEMPTION_WATCHER_ENV, "1")
    assert PREEMPTION_WATCHER_ENV not in train_env(cfg)
