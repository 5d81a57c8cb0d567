"""scripts/gpu_check.*: the GPU check runs where a GPU is lent; here it is rehearsed on CPU
(``GPU_CHECK_DEVICE=cpu``: models against themselves, the Ray runs without GPUs), so that a
broken script never costs a GPU session."""

import os
import subprocess
import sys
from pathlib import Path

from tiny_models import TINY

ROOT = Path(__file__).resolve().parents[1]
RECURRENT = {"gru", "lstm", "gcgru", "dcrnn", "hyperst_lstm_g", "hyperst_lstm_d",
             "hyperst_gcgru", "hyperst_dcgru", "himnet", "stunet"}


def test_model_step_comparison_rehearsal_covers_every_model_and_variant():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py")],
                         env=dict(os.environ, DISTST_CHECK_DEVICE="cpu"), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [ln.split("|")[1:-1] for ln in res.stdout.splitlines() if ln.startswith("| ")
            and not ln.startswith("| model")]
    got = {(r[0].strip(), r[1].strip()): r[-1].strip() for r in rows}
    want = {(m, v) for m in set(TINY) - {"hyperst_cnn"} for v in ("fp32", "bf16", "recompute")}
    assert set(got) == want  # the grid model runs in bench_models.py
    # every variant compared; recompute only where a model has recurrent steps to recompute
    assert {k for k, ok in got.items() if ok == "yes"} == {
        (m, v) for m, v in want if v != "recompute" or m in RECURRENT}, res.stdout
    assert all(ok == "n/a" for (m, v), ok in got.items() if v == "recompute"
               and m not in RECURRENT)


def test_gpu_check_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu_check.sh")]).returncode == 0


def test_gpu_check_rehearsal_runs_every_ray_step(ray_session, tmp_path):
    """The whole script on CPU against the session Ray: one worker, then 2 workers in shard and
    exchange mode (the layout names their collectives' backend in the table)."""
    env = dict(os.environ, GPU_CHECK_DEVICE="cpu", OUT=str(tmp_path), PYTHON=sys.executable,
               RAY_ADDRESS=ray_session.get_runtime_context().gcs_address,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    res = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], env=env,
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    table = (tmp_path / "gpu_check.md").read_text()
    assert res.returncode == 0, table[-3000:] + res.stderr[-2000:]
    runs = [ln.split("|")[1:-1] for ln in table.splitlines()
            if ln.startswith(("| replicate", "| shard", "| exchange"))]
    assert [(r[0].strip(), r[1].strip(), r[3].strip()) for r in runs] == [
        ("replicate", "1", "gloo"), ("shard", "2", "gloo"), ("exchange", "2", "gloo")]
    assert all(r[4].strip().startswith("test avg MAE ") for r in runs), table
