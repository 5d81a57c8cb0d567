"""Ray heads that a test starts with ``ray start --head`` and stops again, alone.

``ray stop`` would stop every Ray of this user on the machine (another test session's, or a
study someone left running): a head made here keeps its files in a temp dir of its own, and
:meth:`Head.stop` ends only the processes whose command line names that dir or the head's
GCS address (its Ray client server names only the address), with their descendants (the
raylet's agents rename themselves, ``ray::DashboardAgent``, and name neither).

Every port is a free one, the dashboard agent's included: Ray's default for it (52365) is
the same for every Ray on the machine, and a head whose agent finds it taken has no job
agent, so every ``ray job submit`` to it fails with "No available agent to submit job".
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psutil

VENV_BIN = Path(sys.executable).parent

#: what `ray job submit` and the head's own processes need: loopback only, token auth (Ray
#: 2.60 heads use it, and the CLI must say so too)
HEAD_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env(**extra: str) -> dict[str, str]:
    """This environment with the venv's ``ray`` and ``distst`` first on PATH and no
    RAY_ADDRESS (a command given no address must not find another Ray by it)."""
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               **HEAD_ENV, **extra)
    env.pop("RAY_ADDRESS", None)
    return env


def own_processes(marker: str, exact: str | None = None) -> list[psutil.Process]:
    """The processes whose command line names ``marker`` (a head's temp dir) or has the
    argument ``exact``, and their descendants."""
    own: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            args = p.info["cmdline"] or []
            if any(marker in part for part in args) or (exact is not None and exact in args):
                own[p.pid] = p
                own.update({c.pid: c for c in p.children(recursive=True)})
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return list(own.values())


def stop_processes(procs: list[psutil.Process], grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL for whatever is still alive after ``grace_s`` (a head's GCS,
    raylet and monitor outlive SIGTERM for seconds); returns when all are gone."""
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)


@dataclass
class Head:
    """A single-node head on loopback with its dashboard (the job API)."""

    temp_dir: str
    port: int
    dashboard_port: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def processes(self) -> list[psutil.Process]:
        return own_processes(self.temp_dir, exact=f"--address={self.address}")

    def stop(self) -> None:
        stop_processes(self.processes())
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_head(prefix: str = "distst-head", num_cpus: int = 2, **env: str) -> Head:
    """``ray start --head`` on loopback in a temp dir of its own; ``env`` goes to the head's
    processes (and to every job's driver, which inherits it). They find the state API through
    RAY_API_SERVER_ADDRESS: auto-detection fails when several Rays run on the machine."""
    port, dash = free_port(), free_port()
    env.setdefault("RAY_API_SERVER_ADDRESS", f"http://127.0.0.1:{dash}")
    # Ray's unix socket paths must stay short: no deep pytest tmp paths for --temp-dir
    head = Head(tempfile.mkdtemp(prefix=prefix, dir="/tmp"), port, dash, cli_env(**env))
    try:
        subprocess.run(
            [str(VENV_BIN / "ray"), "start", "--head", f"--port={port}",
             f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
             f"--dashboard-agent-listen-port={free_port()}",
             "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}",
             f"--temp-dir={head.temp_dir}", "--disable-usage-stats"],
            env=head.env, check=True, capture_output=True, text=True, timeout=180)
    except BaseException:
        head.stop()
        raise
    return head


_PROBE = r"""
import sys, time
from ray.job_submission import JobStatus, JobSubmissionClient

deadline = time.monotonic() + float(sys.argv[2])
last = ""
while time.monotonic() < deadline:
    try:
        client = JobSubmissionClient(sys.argv[1])
        job = client.submit_job(entrypoint="true")
        while client.get_job_status(job) not in {JobStatus.SUCCEEDED, JobStatus.FAILED,
                                                 JobStatus.STOPPED}:
            time.sleep(0.2)
        print("job agent ready:", client.get_job_status(job))
        sys.exit(0)
    except Exception as e:  # the head answers before its job agent has registered
        last = str(e).splitlines()[0] if str(e) else type(e).__name__
        time.sleep(0.5)
print("no job agent answered:", last)
sys.exit(1)
"""


def wait_for_job_agent(dashboard: str, env: dict[str, str], timeout_s: float = 180.0) -> None:
    """Until the job API at ``dashboard`` runs a job. Right after a head starts, its
    dashboard answers before its job agent has registered; a submission then fails with "No
    available agent to submit job" when the machine is loaded (the head waits only 10 s for
    the agent). A no-op job that runs to its end proves the whole path."""
    res = subprocess.run([sys.executable, "-c", _PROBE, dashboard, str(timeout_s)],
                         env=env, capture_output=True, text=True, timeout=timeout_s + 60)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
