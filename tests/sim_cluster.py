"""A simulated cluster closer to a real one than ``ray.cluster_utils.Cluster``: it starts
with a head that runs nothing and no worker node, and grows through Ray's own autoscaler
(the head's monitor, with the fake multi-node provider of ``tests/sim_provider.py``).

- The head and every node have a home of their own (``ROOT/head``, ``ROOT/node-NNNNN``):
  ``~/.cache/distst``, ``~/.config`` and ``~/.ray`` are per node, as on separate machines, so
  a plan made on the head's disk is not on the workers. Nothing is shared but the object
  store the test passes in ``cloud_env`` (moto S3 through ``AWS_ENDPOINT_URL``, as an
  instance role would provide it).
- Token auth is on: the head's token is made in its home before ``ray start`` (as README's
  cluster guide says), copied to every node, and a submitter has it only when given.
- The autoscaler's config lies in the head's home as ``ray up`` leaves it
  (``~/ray_bootstrap_config.yaml``), so distst reads the cluster's declared maximum there.
- Everything stays on loopback, in a temp dir of its own; :meth:`SimCluster.stop` ends only
  the processes that name that dir or run in one of its homes (never ``ray stop``).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ray_heads import VENV_BIN, cli_env, free_port, own_processes, stop_processes

TESTS = Path(__file__).resolve().parent
HEAD_TYPE = "ray.head.default"  # the fake provider's name for the head node's type
#: what this test process's environment points at on its own machine; another machine has
#: them in its own home
MACHINE_LOCAL = ("DISTST_KEY_FILE", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")


def machine_env(**extra: str) -> dict[str, str]:
    """The CLI environment (tests/ray_heads.py) of another machine whose home is HOME."""
    env = cli_env(**extra)
    for name in MACHINE_LOCAL:
        if name not in extra:
            env.pop(name, None)
    return env


@dataclass
class SimCluster:
    root: Path
    port: int
    dashboard_port: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def head_home(self) -> Path:
        return self.root / "head"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def node_homes(self) -> list[Path]:
        """Every node the autoscaler has launched so far, in launch order."""
        return sorted((h for h in self.root.glob("node-*") if (h / "node_id").is_file()),
                      key=lambda h: int(h.name.split("-")[1]))

    @staticmethod
    def node_id(home: Path) -> str:
        """The Ray node id the provider gave the node of ``home``."""
        return (home / "node_id").read_text()

    def home_of(self, node: str) -> Path:
        """The home of the node whose id starts with ``node`` (distst's records name 12
        characters)."""
        return next(h for h in self.node_homes() if self.node_id(h).startswith(node))

    def _in_home(self, home: Path) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["pid"]):
            try:
                if p.environ().get("HOME") == str(home):
                    found.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def live_node_homes(self) -> list[Path]:
        return [h for h in self.node_homes()
                if any("raylet" in p.name() for p in self._in_home(h) if p.is_running())]

    def lose(self, home: Path) -> None:
        """The machine of ``home`` is gone: its raylet and every process on it killed at once,
        no drain."""
        procs = self._in_home(home)
        for p in procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=10)

    def submitter_env(self, home: Path, token: bool = True, **extra: str) -> dict[str, str]:
        """A submitter on another machine: its own home, with the cluster's token copied in
        (README: the token comes from the head) unless ``token=False``, and the dashboard as
        RAY_ADDRESS."""
        (home / ".ray").mkdir(parents=True, exist_ok=True)
        if token:
            shutil.copy(self.head_home / ".ray" / "auth_token", home / ".ray" / "auth_token")
            (home / ".ray" / "auth_token").chmod(0o600)
        env = machine_env(HOME=str(home), **extra)
        env["RAY_ADDRESS"] = self.dashboard  # cli_env drops any other
        return env

    def processes(self) -> list[psutil.Process]:
        procs = own_processes(str(self.root), exact=f"--address={self.address}")
        for h in [self.head_home, *self.node_homes()]:
            procs += self._in_home(h)
        return list({p.pid: p for p in procs}.values())

    def stop(self) -> None:
        stop_processes(self.processes())
        shutil.rmtree(self.root, ignore_errors=True)


def start_sim_cluster(node_resources: dict, max_nodes: int, cloud_env: dict[str, str],
                      idle_timeout_minutes: float = 5.0) -> SimCluster:
    """A head (0 CPUs) and an autoscaler that may launch up to ``max_nodes`` nodes of
    ``node_resources``; none is running when this returns."""
    # Ray's unix socket paths must stay short: a temp dir right under /tmp
    root = Path(tempfile.mkdtemp(prefix="distst-sim-", dir="/tmp"))
    sim = SimCluster(root, free_port(), free_port())
    (sim.head_home / ".ray").mkdir(parents=True)
    token = sim.head_home / ".ray" / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    config = {
        "cluster_name": "distst-sim", "max_workers": max_nodes, "upscaling_speed": 1.0,
        "idle_timeout_minutes": idle_timeout_minutes,
        "provider": {"type": "external", "module": "sim_provider.HomeNodeProvider",
                     "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": sim.address,
                     "root": str(root)},
        "available_node_types": {
            HEAD_TYPE: {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "worker": {"resources": node_resources, "node_config": {}, "min_workers": 0,
                       "max_workers": max_nodes}},
        "head_node_type": HEAD_TYPE, "docker": {}, "auth": {"ssh_user": "ray"},
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [],
        "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
        "head_start_ray_commands": [], "worker_start_ray_commands": []}
    boot = sim.head_home / "ray_bootstrap_config.yaml"  # JSON is YAML
    boot.write_text(json.dumps(config))
    sim.env = machine_env(
        HOME=str(sim.head_home), PYTHONPATH=str(TESTS), RAY_FAKE_CLUSTER="1",
        AUTOSCALER_UPDATE_INTERVAL_S="1", AUTOSCALER_HEARTBEAT_TIMEOUT_S="10",
        RAY_API_SERVER_ADDRESS=sim.dashboard, **cloud_env)
    try:
        subprocess.run(
            [str(VENV_BIN / "ray"), "start", "--head", f"--port={sim.port}",
             f"--dashboard-port={sim.dashboard_port}", "--dashboard-host=127.0.0.1",
             f"--dashboard-agent-listen-port={free_port()}", "--node-ip-address=127.0.0.1",
             "--num-cpus=0", f"--temp-dir={root / 'ray'}", "--disable-usage-stats",
             f"--autoscaling-config={boot}"],
            env=sim.env, check=True, capture_output=True, text=True, timeout=180)
    except BaseException:
        sim.stop()
        raise
    return sim


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
