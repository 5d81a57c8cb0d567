"""A worker process killed mid-epoch: Ray Train restarts the worker group from the newest
checkpoint (runtime.max_failures), the run finishes on its own, and its results equal those
of a run that was never interrupted (mid-epoch checkpoints restore the exact step, the data
order and the random state). The uninterrupted run trains in plain processes
(tests/process_group.py), which train bit for bit what Ray's workers train."""

import json
import signal
import threading
import time

import psutil
import pytest

from distst.runtime.ray_train import train_ray
from process_group import train_group


def _train_workers() -> list[psutil.Process]:
    """The Ray Train worker processes of this test session's Ray (children of its raylet)."""
    import ray

    node = ray._private.worker._global_node
    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
    return [p for p in raylet.children(recursive=True)
            if "ray::RayTrainWorker" in " ".join(p.cmdline())]


def _signal_after_first_checkpoint(run_dir, sig, hit: list, timeout_s: float = 600) -> None:
    """Send ``sig`` to one Ray Train worker once the run has a checkpoint; ``hit`` gets it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if list(run_dir.glob("checkpoint_*/checkpoint.pt")):
            workers = _train_workers()
            if workers:
                workers[-1].send_signal(sig)
                hit.append(workers[-1])
                return
        time.sleep(0.05)


@pytest.mark.parametrize("mode", ["replicate", "shard"])
def test_killed_worker_restarts_from_checkpoint_and_ends_as_if_never_killed(
        ray_session, tiny, tmp_path, mode):
    args = ["runtime.workers=2", "runtime.cpus_per_worker=0.9", f"runtime.mode={mode}",
            "partition.parts=2", "partition.halo_hops=1", "train.epochs=2",
            "train.batch_size=16", "train.checkpoint_every_steps=4",
            "train.max_batches_per_epoch=12", "runtime.max_failures=2"]
    # the uninterrupted run, in plain processes: bit for bit what Ray's workers train
    # (tests/runtime/test_shard.py, test_ray_train.py), without a second Ray run
    ((_, whole),) = train_group([tiny(*args, "runtime.name=whole")])

    run_dir = tmp_path / "runs" / "killed"
    killed: list = []
    # SIGKILL: no goodbye, as a lost node's worker
    killer = threading.Thread(target=_signal_after_first_checkpoint,
                              args=(run_dir, signal.SIGKILL, killed), daemon=True)
    killer.start()
    _, final = train_ray(tiny(*args, "runtime.name=killed"))
    killer.join(timeout=5)
    assert killed, "no worker was killed: the run ended before its first checkpoint"
    assert not psutil.pid_exists(killed[0].pid) or killed[0].status() == "zombie"

    hist = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1, 2]  # each epoch logged once, after the restart too
    for h in ("15min", "60min", "avg"):
        assert final["test"][h]["mae"] == pytest.approx(whole["test"][h]["mae"], rel=1e-4), h
        assert final["test"][h]["rmse"] == pytest.approx(whole["test"][h]["rmse"], rel=1e-4)


def test_a_frozen_worker_is_marked_lost_and_the_run_restarts(ray_session, tiny, tmp_path):
    """A worker stopped by SIGSTOP once left the run waiting (Ray's 600 s at best): after
    runtime.worker_timeout_s it counts as lost, the group restarts from the newest
    checkpoint and the run ends on its own."""
    args = ["runtime.workers=2", "runtime.cpus_per_worker=0.9", "train.epochs=1",
            "train.batch_size=16", "train.checkpoint_every_steps=3",
            "train.max_batches_per_epoch=12", "runtime.max_failures=1",
            "runtime.worker_timeout_s=4", "runtime.name=frozen"]
    run_dir = tmp_path / "runs" / "frozen"
    stopped: list = []
    # SIGSTOP: frozen, alive and silent
    freezer = threading.Thread(target=_signal_after_first_checkpoint,
                               args=(run_dir, signal.SIGSTOP, stopped), daemon=True)
    freezer.start()
    try:
        _, final = train_ray(tiny(*args))
    finally:
        freezer.join(timeout=5)
        for p in stopped:  # whatever happened, leave no stopped process behind
            if p.is_running():
                p.send_signal(signal.SIGCONT)
    assert stopped, "no worker was stopped: the run ended before its first checkpoint"
    assert not psutil.pid_exists(stopped[0].pid) or stopped[0].status() == "zombie"
    hist = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1] and final["test"]["avg"]["mae"] > 0


def test_a_frozen_worker_without_restarts_left_is_one_line():
    from distst.config import load_config
    from distst.runtime.ray_train import _run_failed
    from distst.storage import location

    cfg = load_config("configs/quickstart.yaml", ["runtime.worker_timeout_s=30",
                                                  "runtime.max_failures=0"])
    err = RuntimeError("Training failed due to worker errors:\nA worker health check has been "
                       "hanging for 31.02 seconds. Marking the worker as dead.\nWorker info: "
                       "Worker(actor=..., distributed_context=DistributedContext(world_rank=1, "
                       "local_rank=1, node_rank=0))")
    msg = str(_run_failed(err, location("runs/x"), cfg, {}))
    assert msg.startswith("training stopped: worker rank 1 did not answer for "
                          "runtime.worker_timeout_s=30 s"), msg
    assert "runtime.max_failures=0" in msg


@pytest.mark.parametrize("wait,env,expected", [
    (600.0, None, (60.0, 9)),   # ten 60 s attempts: an autoscaler's new node has time
    (10.0, None, (10.0, 0)),    # one attempt
    (0.0, None, (5.0, 0)),      # never below Ray's floor of a few seconds per attempt
    (100.0, "30", (30.0, 3)),   # the user's own RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S wins
])
def test_node_wait_bounds_how_long_a_run_waits_for_room(wait, env, expected, monkeypatch):
    from distst.config import load_config
    from distst.runtime.ray_train import START_TIMEOUT_ENV, node_wait

    if env is None:
        monkeypatch.delenv(START_TIMEOUT_ENV, raising=False)
    else:
        monkeypatch.setenv(START_TIMEOUT_ENV, env)
    assert node_wait(load_config(None, [f"runtime.node_wait_s={wait}"])) == expected


def test_a_worker_killed_for_memory_is_said_so_in_one_line(tmp_path):
    from distst.config import load_config
    from distst.runtime.ray_train import _run_failed
    from distst.storage import location

    err = RuntimeError(
        "Training failed due to worker errors:\n\nray.exceptions.OutOfMemoryError: 1 worker(s) "
        "were killed due to the node running low on memory. Memory on the node (IP: 127.0.0.1, "
        "ID: df94) was 22.55GB used / 23.54GB limit (0.958085)")
    msg = str(_run_failed(err, location(tmp_path), load_config(None, []), {}))
    assert msg.startswith("training stopped: a worker ran out of memory (22.55 of 23.54 GB "
                          "in use); lower train.batch_size")
    assert "\n" not in msg and "nothing to resume" in msg
    other = str(_run_failed(RuntimeError("Training failed due to worker errors:\n\nboom: x"),
                            location(tmp_path), load_config(None, []), {}))
    assert "RuntimeError: boom: x" in other
