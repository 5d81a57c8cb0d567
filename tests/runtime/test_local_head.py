"""cluster/local-head.sh stops the head it started and nothing else on the machine."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _procs(marker: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in (p.info["cmdline"] or [])):
            out.append(p)
    return out


def test_stop_ends_only_its_own_head():
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    foreign = tempfile.mkdtemp(prefix="foreignhead", dir="/tmp")
    mine = tempfile.mkdtemp(prefix="diststhead", dir="/tmp")
    script = str(REPO / "cluster" / "local-head.sh")
    head_env = dict(env, RAY_PORT=str(_free_port()), RAY_DASHBOARD_PORT=str(_free_port()),
                    RAY_NUM_CPUS="1", RAY_HEAD_DIR=mine)
    try:
        subprocess.run(["ray", "start", "--head", f"--port={_free_port()}",
                        f"--dashboard-port={_free_port()}", "--node-ip-address=127.0.0.1",
                        "--num-cpus=1", f"--temp-dir={foreign}", "--disable-usage-stats"],
                       env=env, check=True, capture_output=True, timeout=180)
        subprocess.run(["bash", script, "start"], env=head_env, check=True, capture_output=True,
                       timeout=180)
        assert _procs(mine) and _procs(foreign)
        res = subprocess.run(["bash", script, "stop"], env=head_env, capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert not _procs(mine)
        assert _procs(foreign)  # the other head is untouched
    finally:
        for p in _procs(foreign) + _procs(mine):
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
