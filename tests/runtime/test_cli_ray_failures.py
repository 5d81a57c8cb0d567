"""How a Ray run ends when it fails, as the user sees it in a terminal: the one-line error is
the last line (not between two workers' tracebacks), a lost worker names the run folder and
the --resume command, and the exit code is non-zero."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]

# each run starts (and its end stops) a local Ray of its own, as in a user's terminal
pytestmark = pytest.mark.cluster


def _distst(tmp_path, *sets, resume=None, **popen):
    argv = [str(Path(sys.executable).parent / "distst"), "train", "configs/quickstart.yaml",
            "--workers", "2"]
    if resume is not None:
        argv += ["--resume", str(resume)]
    base = [f"data.cache_dir={tmp_path / 'cache'}", "data.synth.nodes=12", "data.synth.days=3",
            f"runtime.storage={tmp_path / 'runs'}", "train.progress=false",
            "model.params.hidden_size=8", "train.threads=1"]
    for s in base + list(sets):
        argv += ["--set", s]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **popen)


def _wait_for_checkpoint(proc, tmp_path, timeout_s: float = 400) -> None:
    """Until the run has saved its first checkpoint (the driver must stay alive meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while not list((tmp_path / "runs").glob("*/checkpoint_*")):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"no checkpoint in {timeout_s:g} s"
        time.sleep(0.5)


def _last_line(text: str) -> str:
    return [ln for ln in text.splitlines() if ln.strip()][-1]


def test_worker_error_is_the_last_line(tmp_path):
    # every worker raises the same DiststError in its first epoch
    proc = _distst(tmp_path, "train.batch_size=4096", "train.epochs=1")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 2, err[-3000:]
    assert _last_line(err).startswith(
        "error: a training worker failed: train.batch_size=4096 is larger than"), err[-3000:]
    assert [ln for ln in err.splitlines() if ln.startswith("error: ")] == [_last_line(err)]
    # the run never saved a checkpoint, so no folder holding only config.yaml is left
    assert not any((tmp_path / "runs").glob("*/config.yaml"))


def test_lost_worker_ends_with_run_folder_and_resume_command(tmp_path):
    proc = _distst(tmp_path, "train.epochs=200", "train.batch_size=16")
    try:
        _wait_for_checkpoint(proc, tmp_path)
        # this run's workers only: its Ray's processes are in the driver's session (another
        # Ray on the machine, another test session's included, is left alone)
        workers = [p for p in _session_processes(proc.pid)
                   if "ray::RayTrainWorker" in " ".join(p.info["cmdline"] or [])]
        assert workers, [p.info for p in _session_processes(proc.pid)]
        workers[-1].send_signal(signal.SIGKILL)  # a node's worker dies without a word
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    run_dir = next((tmp_path / "runs").iterdir())
    last = _last_line(err)
    assert proc.returncode == 2, err[-3000:]
    assert last.startswith("error: training stopped: "), err[-3000:]
    assert f"--resume {run_dir}" in last and "checkpoints are in" in last


def test_ctrl_c_in_ray_mode_says_interrupted_and_how_to_resume(tmp_path):
    proc = _distst(tmp_path, "train.epochs=200", "train.batch_size=16")
    try:
        _wait_for_checkpoint(proc, tmp_path)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends the driver
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    run_dir = next((tmp_path / "runs").iterdir())
    assert proc.returncode == 130, err[-3000:]
    assert _last_line(err) == (f"interrupted; the run's checkpoints are in {run_dir}; continue "
                               f"it with: distst train CONFIG --resume {run_dir}"), err[-3000:]
    # every process the driver started (Ray's GCS, raylet, workers) is gone with it
    deadline = time.monotonic() + 60
    while (left := _session_processes(proc.pid)) and time.monotonic() < deadline:
        time.sleep(1)
    assert not left, [p.info for p in left]
    # and the run it leaves is one that --resume finishes
    again = _distst(tmp_path, "train.epochs=2", "train.batch_size=16", resume=run_dir)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    assert f"run directory: {run_dir}" in out
    assert (run_dir / "test_metrics.json").is_file()


def test_head_killed_mid_run_is_one_line_and_leaves_no_process(tmp_path):
    """The local Ray's GCS killed mid-epoch: the driver trained on for 60 s, exited 1 after
    a C++ log line and left the node's agents running."""
    proc = _distst(tmp_path, "train.epochs=200", "train.batch_size=16")
    try:
        _wait_for_checkpoint(proc, tmp_path)
        gcs = [p for p in _session_processes(proc.pid)
               if "gcs_server" in " ".join(p.info["cmdline"] or [])]
        assert len(gcs) == 1, [p.info for p in _session_processes(proc.pid)]
        gcs[0].send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    run_dir = next((tmp_path / "runs").iterdir())
    assert proc.returncode == 2, err[-3000:]
    assert _last_line(err).startswith("error: training stopped: the local Ray's head (GCS) "
                                      "ended mid-run"), err[-3000:]
    assert f"--resume {run_dir}" in _last_line(err)
    deadline = time.monotonic() + 30
    while (left := _session_processes(proc.pid)) and time.monotonic() < deadline:
        time.sleep(1)
    assert not left, [p.info for p in left]


def _session_processes(sid: int) -> list:
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if os.getsid(p.pid) == sid:
                out.append(p)
        except (ProcessLookupError, PermissionError):
            continue
    return out
