"""Sweeps on the session's 2-CPU Ray: Tune trials that each fit a TorchTrainer, ASHA, the
exported best config, resume after a kill, plans made once. Trials have 2 workers where the
test is about them (ASHA's four trials on two CPUs, shard mode's two parts) and 1 elsewhere:
every Ray Train worker is one more process to start (scripts/bench_ray_fit.py)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from distst.errors import DiststError
from distst.sweep.config import load_sweep
from distst.sweep import manifest
from distst.sweep.driver import run_sweep, resume_sweep

EPOCHS = 4


def _sweep_file(tmp, name, space, overrides=None, **extra) -> Path:
    base = {"data": {"synth": {"nodes": 20, "days": 4}, "cache_dir": str(tmp.parent / "cache")},
            "model": {"name": "gcgru", "params": {"K": 2, "hidden_size": 8, "num_layers": 1}},
            "train": {"epochs": EPOCHS, "batch_size": 32, "eval_batch_size": 64,
                      "cl_decay_steps": 20, "lr_milestones": [100], "patience": 10,
                      "threads": 1, "progress": False},
            "runtime": {"mode": "replicate", "workers": 2}}
    (tmp / "base.yaml").write_text(yaml.safe_dump(base))
    sweep = {"base": "base.yaml", "overrides": overrides or {}, "search_space": space,
             "storage": str(tmp / "sweeps"), "name": name, **extra}
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump(sweep))
    return p


@pytest.fixture(scope="module")
def asha(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("asha")
    # a 2 x 2 grid whose tiny learning rate is hopeless after one epoch: ASHA must stop some
    p = _sweep_file(tmp, "asha", {"train.lr": {"grid": [0.02, 0.0001]},
                                  "model.params.hidden_size": {"grid": [8, 16]}},
                    num_samples=1, workers_per_trial=2, max_concurrent_trials=2, scheduler="asha",
                    grace_period=1, reduction_factor=2)
    t0 = time.perf_counter()
    res = run_sweep(load_sweep(p), progress=False)
    return res, time.perf_counter() - t0


def test_four_trials_of_two_workers_finish_on_two_cpus(asha):
    res, wall = asha
    assert res.resources.workers == 2 and res.resources.max_concurrent_trials == 2
    assert res.counts == {"trials": 4, "errors": 0, "stopped_early": res.counts["stopped_early"]}
    assert all(r["status"] != "error" for r in res.rows)
    for r in res.rows:  # every trial was a 2-worker Ray Train run of its own
        cfg = yaml.safe_load((Path(r["run_dir"]) / "config.yaml").read_text())
        assert cfg["runtime"]["workers"] == 2 and cfg["runtime"]["cpus_per_worker"] == 0.45
        assert cfg["train"]["lr"] == r["train.lr"]
        assert cfg["model"]["params"]["hidden_size"] == r["model.params.hidden_size"]
    # sorted by validation MAE, best first, and written next to the sweep
    maes = [r["val_mae"] for r in res.rows]
    assert maes == sorted(maes)
    assert (res.sweep_dir / "trials.csv").read_text().count("\n") == 5
    header = res.table.splitlines()[0]
    assert header.startswith("| trial |") and "| val_mae | epochs | status |" in header
    assert "train.lr" in header and "model.params.hidden_size" in header
    print(f"4-trial sweep wall time: {wall:.1f} s")


def test_trials_on_the_drivers_local_ray_start_no_preemption_watcher(asha):
    """As a local run (tests/runtime/test_ray_train.py): a Ray the sweep's driver started has no
    node to drain, and a watcher per trial is one more process beside the training threads."""
    import ray
    import ray._private.state

    job = ray.get_runtime_context().get_job_id()
    classes = {a["ActorClassName"] for a in ray._private.state.actors().values()
               if a["JobID"] == job}
    assert "TrainController" in classes, classes  # the trials' runs are in this job's table
    assert "PreemptionWatcher" not in classes


def test_an_environment_secret_reaches_no_file_of_the_sweep(asha, env_secret_in):
    """Tune's state, every trial's run and the exported tables hold no environment secret
    (AWS_SECRET_ACCESS_KEY here), though every trial's processes have it."""
    res, _ = asha
    assert env_secret_in(res.sweep_dir) == []


def test_asha_stops_a_trial_early(asha):
    res, _ = asha
    epochs = {r["trial"]: r["epochs"] for r in res.rows}
    assert max(epochs.values()) == EPOCHS
    assert min(epochs.values()) < EPOCHS, epochs
    stopped = [r for r in res.rows if r["status"] == "stopped early"]
    assert stopped and all(r["epochs"] < EPOCHS for r in stopped)
    # the trial's own run saw exactly the epochs Tune counted
    for r in res.rows:
        lines = (Path(r["run_dir"]) / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == r["epochs"]
    assert res.best["status"] == "done" and res.best["train.lr"] == 0.02


@pytest.mark.parametrize("epochs, max_t, rungs", [(4, 0, [2, 1]), (8, 0, [4, 2, 1]),
                                                   (8, 2, [2, 1]), (3, 9, [2, 1])])
def test_asha_never_stops_a_trial_that_trained_every_epoch(epochs, max_t, rungs):
    """A trial worse than every other at every rung is stopped at a rung below the last
    epoch, never at the last one: there, stopping saves nothing and loses the final report
    (the CI failure this replaces: a trial stopped at a rung at epoch 4 of 4)."""
    from types import SimpleNamespace

    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    from distst.sweep.driver import asha_rungs

    sc = SimpleNamespace(max_t=max_t, grace_period=1, reduction_factor=2)
    sched = ASHAScheduler(time_attr="epoch", metric="val_mae", mode="min",
                          **asha_rungs(sc, epochs))
    assert [m for m, _ in sched._brackets[0]._rungs] == rungs
    good, bad = SimpleNamespace(trial_id="good"), SimpleNamespace(trial_id="bad")
    for t in (good, bad):
        sched.on_trial_add(None, t)
    # "good" runs first through every epoch and its final report (same epoch again)
    for e in [*range(1, epochs + 1), epochs]:
        assert sched.on_trial_result(None, good, {"epoch": e, "val_mae": 1.0}) == "CONTINUE"
    # "bad" is worse everywhere: stopped at the first rung, as ASHA should
    assert sched.on_trial_result(None, bad, {"epoch": 1, "val_mae": 9.0}) == TrialScheduler.STOP
    # a late, bad trial at the last epoch (its rungs passed while alone) is not stopped there
    late = SimpleNamespace(trial_id="late")
    sched2 = ASHAScheduler(time_attr="epoch", metric="val_mae", mode="min",
                           **asha_rungs(sc, epochs))
    for t in (good, late):
        sched2.on_trial_add(None, t)
    for e in range(1, epochs):
        assert sched2.on_trial_result(None, late, {"epoch": e, "val_mae": 1.0}) == "CONTINUE"
    for e in range(1, epochs + 1):
        sched2.on_trial_result(None, good, {"epoch": e, "val_mae": 0.5})
    for _ in range(2):  # last epoch, then the final report at the same epoch
        assert sched2.on_trial_result(None, late, {"epoch": epochs, "val_mae": 1.0}) == "CONTINUE"


def test_a_sweep_too_short_for_a_rung_runs_its_trials_to_the_end(tmp_path):
    """A 1-epoch sweep leaves ASHA no rung below the last epoch: its trials run as FIFO."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from distst.sweep.driver import _scheduler

    one = load_sweep(_sweep_file(tmp_path, "one", {"train.lr": {"choice": [0.01]}},
                                 overrides={"train.epochs": 1}, scheduler="asha"))
    assert type(_scheduler(one)) is FIFOScheduler
    four = load_sweep(_sweep_file(tmp_path, "four", {"train.lr": {"choice": [0.01]}},
                                  scheduler="asha"))
    assert isinstance(_scheduler(four), ASHAScheduler)


def test_best_config_trains_again_to_the_same_val_mae(asha, tmp_path):
    from distst.config import load_config
    from process_group import train_group

    res, _ = asha
    assert res.test["trial"] == res.best["trial"]
    assert set(res.test["test"]) == {"15min", "30min", "60min", "avg"}
    on_disk = json.loads((res.sweep_dir / "best_test_metrics.json").read_text())
    assert on_disk["test"]["avg"]["mae"] == pytest.approx(res.test["test"]["avg"]["mae"])
    cfg = load_config(res.best_config, [f"runtime.storage={tmp_path}"])
    assert cfg.runtime.name == "" and cfg.runtime.cpus_per_worker == 1.0
    # its 2 workers in plain processes: bit for bit what Ray's workers train
    # (tests/runtime/test_ray_train.py)
    ((run_dir, _),) = train_group([cfg])
    hist = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    again = min(h["val_mae"] for h in hist)
    assert abs(again - res.best["val_mae"]) / res.best["val_mae"] < 0.05, (again, res.best)


def test_too_many_workers_fail_before_any_trial(ray_session, tmp_path):
    p = _sweep_file(tmp_path, "big", {"train.lr": {"choice": [0.01]}}, workers_per_trial=3)
    t0 = time.perf_counter()
    with pytest.raises(DiststError, match="workers_per_trial=3 .* Ray cluster has 2"):
        run_sweep(load_sweep(p), progress=False)
    assert time.perf_counter() - t0 < 30
    assert not (tmp_path / "sweeps" / "big" / "sweep.yaml").exists()


def test_optuna_searcher_samples_inside_the_space(ray_session, tmp_path):
    """TPE (optuna) proposes every trial's values: 2 one-epoch trials, FIFO, values in bounds."""
    p = _sweep_file(tmp_path, "tpe", {"train.lr": {"loguniform": [0.001, 0.05]},
                                      "model.params.hidden_size": {"randint": [4, 12]}},
                    overrides={"train.epochs": 1}, num_samples=2, workers_per_trial=1,
                    scheduler="fifo", searcher="optuna", seed=3)
    res = run_sweep(load_sweep(p), progress=False)
    assert res.counts["trials"] == 2 and res.counts["errors"] == 0
    for r in res.rows:
        assert 0.001 <= r["train.lr"] <= 0.05 and 4 <= r["model.params.hidden_size"] <= 12
        assert r["status"] == "done" and r["epochs"] == 1
    assert len({r["train.lr"] for r in res.rows}) == 2  # two proposals, not one repeated
    assert (res.sweep_dir / "best_config.yaml").exists()


def _terminated(sdir: Path) -> list[str]:
    out = []
    for f in sdir.glob("experiment_state-*.json"):
        try:
            state = json.loads(f.read_text())
        except (json.JSONDecodeError, OSError):
            continue  # caught mid-write: look again
        for entry in state.get("trial_data", []):
            t = json.loads(entry[0])
            if t.get("status") == "TERMINATED":
                out.append(t["trial_id"])
    return out


def test_killed_shard_sweep_resumes_without_rerunning_finished_trials(ray_session, tmp_path):
    import ray

    # shard mode with the halo searched: both plans are made by the driver before any trial
    p = _sweep_file(tmp_path, "resume", {"partition.halo_hops": {"grid": [1, 2]}},
                    overrides={"runtime.mode": "shard", "partition.parts": 2,
                               "train.epochs": 2},
                    num_samples=1, scheduler="fifo", max_concurrent_trials=1)
    sdir = tmp_path / "sweeps" / "resume"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "distst"), "tune", str(p),
                             "--address", ray.get_runtime_context().gcs_address,
                             "--no-progress"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        # ...and distst signed the state that says so (a kill before that resumes from the
        # previous signed state, which would run the finished trial once more)
        while not (_terminated(sdir) and manifest.is_current(sdir)):
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no trial finished in 240 s"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep driver dies without any cleanup
        proc.wait(timeout=30)
    log = proc.stdout.read()
    finished = _terminated(sdir)
    assert len(finished) == 1, log[-3000:]
    assert "partitioning" in log  # the driver made the plans...
    plans = json.loads((sdir / "plans.json").read_text())
    assert len(plans) == 2
    stamps = {k: (Path(v) / "META.json").stat().st_mtime_ns for k, v in plans.items()}
    first = sdir / "trials" / finished[0]
    first_lines = (first / "metrics.jsonl").read_text()

    res = resume_sweep(sdir, progress=False)
    assert res.counts["trials"] == 2 and res.counts["errors"] == 0
    assert all(r["status"] == "done" and r["epochs"] == 2 for r in res.rows)
    # the finished trial was not run again: one start, same history
    assert (first / "starts.log").read_text().count("\n") == 1
    assert (first / "metrics.jsonl").read_text() == first_lines
    other = next(r for r in res.rows if r["trial"] != finished[0])
    assert "start" in (Path(other["run_dir"]) / "starts.log").read_text()
    assert (Path(other["run_dir"]) / "test_metrics.json").is_file()
    # ...and no trial re-partitioned: each ran on a precomputed plan that was left untouched
    for r in res.rows:
        cfg = yaml.safe_load((Path(r["run_dir"]) / "config.yaml").read_text())
        assert cfg["partition"]["plan"] in plans.values()
        assert cfg["runtime"]["workers"] == 2
    assert {k: (Path(v) / "META.json").stat().st_mtime_ns for k, v in plans.items()} == stamps
    best = yaml.safe_load(res.best_config.read_text())
    assert best["partition"]["plan"] == "" and best["runtime"]["mode"] == "shard"


def test_a_failing_trial_is_reported_and_the_sweep_goes_on(ray_session, tmp_path):
    # a batch larger than the training split fails inside the trial's Train run (a worker's
    # DiststError); Tune's FailureConfig retries nothing (runtime.max_failures=0), the trial is
    # reported as an error, and the other trial finishes
    p = _sweep_file(tmp_path, "fails", {"train.batch_size": {"grid": [32, 100000]}},
                    overrides={"train.epochs": 1, "runtime.max_failures": 0},
                    num_samples=1, workers_per_trial=1, max_concurrent_trials=1)
    res = run_sweep(load_sweep(p), progress=False)
    status = {r["train.batch_size"]: r["status"] for r in res.rows}
    assert status == {32: "done", 100000: "error"}, res.rows
    assert res.counts["errors"] == 1 and res.counts["trials"] == 2


def test_a_sweep_on_an_object_store_runs_signs_and_resumes_there(ray_session, s3, tmp_path):
    """Tune's state, every trial's run, the tables and the signed manifest on s3://; nothing
    of the sweep on local disk; `--resume` of the URI verifies the manifest and continues."""
    from distst.storage import location

    base, options = s3
    p = _sweep_file(tmp_path, "remote", {"train.lr": {"grid": [0.02, 0.01]}},
                    overrides={"train.epochs": 1, "runtime.storage_options": options},
                    num_samples=1, workers_per_trial=1, max_concurrent_trials=1,
                    scheduler="fifo", storage=f"{base}/sweeps")
    res = run_sweep(load_sweep(p), progress=False)
    sdir = location(f"{base}/sweeps/remote")
    assert str(res.sweep_dir) == str(sdir)
    assert [r["status"] for r in res.rows] == ["done", "done"]
    for r in res.rows:  # each trial's Train run wrote its files to the bucket
        run = location(r["run_dir"])
        assert r["run_dir"].startswith(f"{base}/sweeps/remote/trials/")
        assert (run / "config.yaml").is_file() and (run / "test_metrics.json").is_file()
        assert [d for d in run.glob("checkpoint_*") if (d / "checkpoint.pt").is_file()]
    for name in ("sweep.yaml", "plans.json", "trials.csv", "trials.md", "best_config.yaml",
                 "best_test_metrics.json", manifest.MANIFEST):
        assert (sdir / name).is_file(), name
    assert any(n.endswith(".pkl") for n in manifest.guarded_files(sdir))
    assert manifest.is_current(sdir)
    best = yaml.safe_load((sdir / "best_config.yaml").read_text())
    assert best["train"]["lr"] == res.rows[0]["train.lr"]
    assert not (tmp_path / "sweeps").exists()
    again = resume_sweep(f"{base}/sweeps/remote", progress=False)
    assert [r["trial"] for r in again.rows] == [r["trial"] for r in res.rows]
    # a pickle changed behind distst's back, with the signed copies gone: refused
    victim = next(loc for n, loc in manifest.guarded_files(sdir).items() if n.endswith(".pkl"))
    victim.write_bytes(b"not what distst signed")
    (sdir / manifest.SIGNED).rmtree()
    with pytest.raises(DiststError, match="changed or appeared since distst last signed"):
        resume_sweep(f"{base}/sweeps/remote", progress=False)
