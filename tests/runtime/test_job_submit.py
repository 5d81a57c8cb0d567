"""`ray job submit --working-dir . -- distst train ...` against a head this test starts."""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_job_submit_runs_distst_train(tmp_path):
    venv_bin = Path(sys.executable).parent
    env = dict(os.environ)
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    env["RAY_AUTH_MODE"] = "token"  # Ray 2.60 heads use token auth; the CLI must say so too
    port, dash = _free_port(), _free_port()
    # Ray's unix socket paths must stay short: no deep pytest tmp paths for --temp-dir
    temp_dir = tempfile.mkdtemp(prefix="rayjob", dir="/tmp")
    ray = str(venv_bin / "ray")
    try:
        subprocess.run(
            [ray, "start", "--head", f"--port={port}", f"--dashboard-port={dash}",
             "--dashboard-host=127.0.0.1", "--node-ip-address=127.0.0.1", "--num-cpus=2",
             f"--temp-dir={temp_dir}", "--disable-usage-stats"],
            env=env, check=True, capture_output=True, text=True, timeout=180,
        )
        storage = tmp_path / "runs"
        out = subprocess.run(
            [ray, "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", ".",
             "--", "distst", "train", "configs/quickstart.yaml",
             "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "data.synth.nodes=20",
             "--set", "data.synth.days=4", "--set", f"runtime.storage={storage}",
             "--set", "train.epochs=1", "--set", "model.params.hidden_size=8",
             "--set", "train.progress=false"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        )
        log = out.stdout + out.stderr
        assert out.returncode == 0, log[-3000:]
        assert "succeeded" in log
        run_dirs = re.findall(r"run directory: (\S+)", log)
        assert run_dirs, log[-3000:]
        run_dir = Path(run_dirs[-1])
        assert run_dir.parent == storage
        assert (run_dir / "test_metrics.json").is_file()
        assert "| avg |" in log  # the metrics table reached the submitter
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)
