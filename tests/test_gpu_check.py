"""scripts/gpu_check.*: the GPU check runs where a GPU is lent; here its model comparison runs
CPU against CPU, so that a broken script never costs a GPU session."""

import os
import subprocess
import sys
from pathlib import Path

from tiny_models import TINY

ROOT = Path(__file__).resolve().parents[1]


def test_model_comparison_dry_run_covers_every_model():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py")],
                         env=dict(os.environ, DISTST_CHECK_DEVICE="cpu"), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = {ln.split("|")[1].strip(): ln for ln in res.stdout.splitlines()[2:]}
    assert set(rows) == set(TINY) - {"hyperst_cnn"}  # the grid model runs in bench_models.py
    assert all(ln.rstrip().endswith("| yes |") for ln in rows.values()), res.stdout


def test_gpu_check_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu_check.sh")]).returncode == 0
