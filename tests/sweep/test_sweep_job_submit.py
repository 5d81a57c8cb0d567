"""`ray job submit --working-dir . -- distst tune ...` against a head this test starts."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_own_head(temp_dir: str) -> None:
    """Stop the processes of this test's head only (`ray stop` would stop every Ray on the
    machine, other sessions' included): those whose command line names its temp dir."""
    import psutil

    own = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(temp_dir in part for part in (p.info["cmdline"] or [])):
                own.append(p)
                # the raylet's agents rename themselves (ray::DashboardAgent): no temp dir
                # in their command line, so they are found as its children
                own += p.children(recursive=True)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    own = list({p.pid: p for p in own}.values())
    for p in own:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(own, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def test_ray_job_submit_runs_distst_tune(tmp_path):
    venv_bin = Path(sys.executable).parent
    env = dict(os.environ)
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    env["RAY_AUTH_MODE"] = "token"  # Ray 2.60 heads use token auth; the CLI must say so too
    port, dash = _free_port(), _free_port()
    # the head's processes find the state API through this (several Rays may run here)
    env["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{dash}"
    temp_dir = tempfile.mkdtemp(prefix="raytune", dir="/tmp")
    ray = str(venv_bin / "ray")
    sweep = {"base": str(REPO / "configs" / "quickstart.yaml"),
             "overrides": {"data.cache_dir": str(tmp_path / "cache"), "data.synth.nodes": 20,
                           "data.synth.days": 4, "runtime.mode": "replicate",
                           "model.params": {"K": 2, "hidden_size": 8, "num_layers": 1},
                           "train.epochs": 1, "train.progress": False},
             "search_space": {"train.lr": {"choice": [0.01, 0.02]}},
             "num_samples": 2, "workers_per_trial": 1, "scheduler": "fifo",
             "storage": str(tmp_path / "sweeps"), "name": "job"}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    try:
        subprocess.run(
            [ray, "start", "--head", f"--port={port}", f"--dashboard-port={dash}",
             "--dashboard-host=127.0.0.1", "--node-ip-address=127.0.0.1", "--num-cpus=2",
             f"--temp-dir={temp_dir}", "--disable-usage-stats"],
            env=env, check=True, capture_output=True, text=True, timeout=180,
        )
        t0 = time.perf_counter()
        out = subprocess.run(
            [ray, "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", ".",
             "--", "distst", "tune", str(tmp_path / "sweep.yaml"), "--no-progress"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        )
        log = out.stdout + out.stderr
        assert out.returncode == 0, log[-3000:]
        assert "succeeded" in log
        dirs = re.findall(r"sweep directory: (\S+)", log)
        assert dirs and Path(dirs[-1]) == tmp_path / "sweeps" / "job", log[-3000:]
        sdir = Path(dirs[-1])
        assert (sdir / "trials.csv").read_text().count("\n") == 3  # header + 2 trials
        assert (sdir / "best_config.yaml").is_file()
        assert "2 trials (0 stopped early, 0 failed)" in log
        assert "| avg |" in log  # the best trial's test metrics reached the submitter
        print(f"job-submit sweep: {time.perf_counter() - t0:.1f} s")
    finally:
        _stop_own_head(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
