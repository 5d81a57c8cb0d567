"""`ray job submit --working-dir . -- distst train ...` against a head started with
`ray start --head` (the session's shared job head, tests/conftest.py `job_head`)."""

import re
import subprocess
from pathlib import Path

import pytest

from ray_heads import VENV_BIN

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.cluster


def test_ray_job_submit_runs_distst_train(job_head, tmp_path):
    storage = tmp_path / "runs"
    out = subprocess.run(
        [str(VENV_BIN / "ray"), "job", "submit", "--address", job_head.dashboard,
         "--working-dir", ".",
         "--", "distst", "train", "configs/quickstart.yaml",
         "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "data.synth.nodes=20",
         "--set", "data.synth.days=4", "--set", f"runtime.storage={storage}",
         "--set", "train.epochs=1", "--set", "model.params.hidden_size=8",
         "--set", "train.progress=false"],
        cwd=REPO, env=job_head.env, capture_output=True, text=True, timeout=600,
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
