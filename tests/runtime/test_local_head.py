"""cluster/local-head.sh stops the head it started and nothing else on the machine."""

import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest

from ray_heads import free_port, own_processes, stop_processes

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.cluster


def test_stop_ends_only_its_own_head(job_head):
    """Another head runs beside it (the session's job head, started by `ray start --head`):
    the script's `stop` ends its own head, processes renamed by Ray included, and leaves the
    other one running."""
    mine = tempfile.mkdtemp(prefix="diststhead", dir="/tmp")
    script = str(REPO / "cluster" / "local-head.sh")
    port = free_port()
    head_env = dict(job_head.env, RAY_PORT=str(port), RAY_DASHBOARD_PORT=str(free_port()),
                    RAY_NUM_CPUS="1", RAY_HEAD_DIR=mine)
    # the other head's own processes (GCS, raylet, dashboard, monitors, client server); its
    # idle workers come and go by themselves
    foreign = [p for p in job_head.processes()
               if not " ".join(p.cmdline()).startswith(("ray::", "ray-dashboard-"))]
    assert len(foreign) >= 4, [p.cmdline() for p in foreign]
    try:
        subprocess.run(["bash", script, "start"], env=head_env, check=True, capture_output=True,
                       timeout=180)
        started = own_processes(mine, exact=f"--address=127.0.0.1:{port}")
        # the raylet's agents name neither dir nor address: they are found as its children;
        # the Ray client server names only the address
        names = [" ".join(p.cmdline()) for p in started]
        assert any(n.startswith("ray::") for n in names), names
        assert any("ray.util.client.server" in n for n in names), names
        res = subprocess.run(["bash", script, "stop"], env=head_env, capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        _, left = psutil.wait_procs(started, timeout=5)  # a killed process takes a moment
        assert not [p for p in left if p.status() != psutil.STATUS_ZOMBIE], left
        assert all(p.is_running() for p in foreign)  # untouched
    finally:
        stop_processes(own_processes(mine, exact=f"--address=127.0.0.1:{port}"))
