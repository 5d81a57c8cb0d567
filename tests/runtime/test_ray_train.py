"""Ray Train runtime on a local 2-CPU Ray: DDP in replicate mode, checkpoints, resume."""

import json

import pytest

from distst.engine.checkpoint import load_checkpoint
from distst.errors import DiststError
from distst.runtime.ray_train import check_resources, train_ray
from process_group import train_group
from tests.engine.test_logs import check_mlflow_matches_run


def _history(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_worker_run(ray_session, tmp_path_factory, overrides_for):
    from distst.config import load_config

    tiny_overrides = overrides_for
    tmp = tmp_path_factory.mktemp("ray2")
    # MLflow is fed by a callback in Ray Train's controller; MLFLOW_ALLOW_FILE_STORE is set
    # after Ray started, so the controller has it only because the driver passes it on
    # epochs of 8 steps: 3 of them and a resumed fourth, each reported through Ray
    cfg = load_config(None, tiny_overrides(tmp, "train.epochs=3", "runtime.workers=2",
                                           "train.max_batches_per_epoch=8",
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
    run_dir1, final1 = train_local(tiny("train.epochs=3", "train.max_batches_per_epoch=8",
                                        "runtime.mode=local"))
    for a, b in zip(_history(run_dir2), _history(run_dir1), strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=5e-4)
        assert a["val_mae"] == pytest.approx(b["val_mae"], rel=5e-4)
    assert final2["test"]["avg"]["mae"] == pytest.approx(final1["test"]["avg"]["mae"], rel=5e-4)


def test_plain_processes_train_what_the_ray_workers_train_bit_for_bit(two_worker_run,
                                                                     tmp_path):
    """The replicate run again in two plain processes joined by gloo
    (tests/process_group.py): the same numbers to the last bit (see test_shard.py)."""
    from dataclasses import replace

    cfg, run_dir, final = two_worker_run
    group_cfg = replace(cfg, runtime=replace(cfg.runtime, storage=str(tmp_path), loggers=[]))
    ((group_dir, group_final),) = train_group([group_cfg])
    assert group_final["test"] == final["test"] and group_final["ha"] == final["ha"]
    keys = ("epoch", "train_loss", "val_mae")
    assert [{k: h[k] for k in keys} for h in _history(group_dir)] == [
        {k: h[k] for k in keys} for h in _history(run_dir)][:3]


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


def test_too_many_workers_is_refused_before_starting(ray_session, tiny):
    cfg = tiny("runtime.workers=3")
    with pytest.raises(DiststError, match="needs 3 workers x runtime.cpus_per_worker=1 = 3 "
                       "CPUs but the Ray cluster has 2"):
        check_resources(cfg)


def test_use_gpu_on_a_cluster_without_gpus_is_one_clear_error(ray_session, tiny):
    cfg = tiny("runtime.use_gpu=true", "runtime.gpus_per_worker=0.5")
    with pytest.raises(DiststError, match=r"needs 2 workers x runtime.gpus_per_worker=0.5 = 1 "
                       r"GPUs but the Ray cluster has 0"):
        check_resources(cfg)
    with pytest.raises(DiststError, match="gpus_per_worker' must be > 0"):
        tiny("runtime.gpus_per_worker=0")


def test_bad_settings_fail_before_any_worker_starts(ray_session, tiny):
    with pytest.raises(DiststError, match="input_len"):
        train_ray(tiny("data.input_len=2000"))
    with pytest.raises(DiststError, match="hidden_size"):
        train_ray(tiny("model.params.hiden_size=4"))


def test_a_local_ray_run_starts_no_preemption_watcher(two_worker_run, monkeypatch):
    """The watcher polls for drained nodes (spot reclaims); on a Ray this process started
    there are none, and its process would wake beside the training threads every 5 s. A
    user's own RAY_TRAIN_ENABLE_PREEMPTION_WATCHER wins. Nor does a run start Ray Data's
    DatasetManager: distst hands Train no datasets."""
    import ray
    import ray._private.state

    from distst.config import load_config
    from distst.runtime.ray_train import PREEMPTION_WATCHER_ENV, START_TIMEOUT_ENV, train_env

    # this process's runs only: the session Ray also serves drivers that attach to it
    job = ray.get_runtime_context().get_job_id()
    classes = {a["ActorClassName"] for a in ray._private.state.actors().values()
               if a["JobID"] == job}
    assert "TrainController" in classes, classes  # the actor table is the one of the run
    assert "PreemptionWatcher" not in classes
    assert "DatasetManager" not in classes
    monkeypatch.delenv(PREEMPTION_WATCHER_ENV, raising=False)
    monkeypatch.delenv(START_TIMEOUT_ENV, raising=False)
    cfg = load_config(None, [])
    assert train_env(cfg)[PREEMPTION_WATCHER_ENV] == "0"
    monkeypatch.setenv(PREEMPTION_WATCHER_ENV, "1")
    assert PREEMPTION_WATCHER_ENV not in train_env(cfg)
