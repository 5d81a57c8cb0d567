"""`ray job submit --working-dir . -- distst tune ...` against a head started with
`ray start --head` (the session's shared job head, tests/conftest.py `job_head`)."""

import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from ray_heads import VENV_BIN

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.cluster


def test_ray_job_submit_runs_distst_tune(job_head, tmp_path):
    sweep = {"base": str(REPO / "configs" / "quickstart.yaml"),
             "overrides": {"data.cache_dir": str(tmp_path / "cache"), "data.synth.nodes": 20,
                           "data.synth.days": 4, "runtime.mode": "replicate",
                           "model.params": {"K": 2, "hidden_size": 8, "num_layers": 1},
                           "train.epochs": 1, "train.progress": False},
             "search_space": {"train.lr": {"choice": [0.01, 0.02]}},
             "num_samples": 2, "workers_per_trial": 1, "scheduler": "fifo",
             "storage": str(tmp_path / "sweeps"), "name": "job"}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    t0 = time.perf_counter()
    out = subprocess.run(
        [str(VENV_BIN / "ray"), "job", "submit", "--address", job_head.dashboard,
         "--working-dir", ".",
         "--", "distst", "tune", str(tmp_path / "sweep.yaml"), "--no-progress"],
        cwd=REPO, env=job_head.env, capture_output=True, text=True, timeout=600,
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
