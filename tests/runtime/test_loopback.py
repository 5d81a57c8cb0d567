"""A local run listens on loopback only: nothing of a laptop run is reachable from the
network (GCS, raylet, object manager, dashboard and its agents, runtime-env agent, workers)."""

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.cluster  # the probe starts a local Ray of its own

PROBE = r"""
import json, os, time
import psutil, ray
from distst.runtime.ray_train import start_local

start_local(num_cpus=2)

@ray.remote
def pid():
    return os.getpid()

@ray.remote
class Worker:  # an actor, as Ray Train's workers are
    def pid(self):
        return os.getpid()

actors = [Worker.remote() for _ in range(2)]
pids = ray.get([pid.remote() for _ in range(2)] + [a.pid.remote() for a in actors])
time.sleep(3)  # let every agent bind its ports
me = psutil.Process()
ours = {me.pid} | {p.pid for p in me.children(recursive=True)}
assert set(pids) <= ours, (pids, ours)
rows = [(c.laddr.ip, c.laddr.port, psutil.Process(c.pid).name())
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in ours]
print("LISTEN " + json.dumps(rows))
ray.shutdown()
"""


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def test_local_ray_listens_on_loopback_only():
    # a user's shell: without the variable the test suite sets (it makes Ray 2.60 treat the
    # machine as single-node and keep loopback by itself), which would hide the exposure
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    res = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("LISTEN "))
    rows = json.loads(line[len("LISTEN "):])
    assert len(rows) >= 5, rows  # GCS, raylet, dashboard, agents, workers: all were seen
    exposed = [r for r in rows if not _loopback(r[0])]
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_a_training_run_listens_on_loopback_only(tmp_path):
    """A 2-worker Ray Train run, sampled while it trains (scripts/probe_ports.py): torch's
    rendezvous store listened on every interface (``::``) until distst handed it a socket
    bound to 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    res = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "probe_ports.py"), "--", "train",
         "configs/quickstart.yaml", "--set", f"runtime.storage={tmp_path / 'runs'}",
         "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "data.synth.nodes=12",
         "--set", "data.synth.days=3", "--set", "train.epochs=1", "--set",
         "model.params.hidden_size=8", "--set", "train.progress=false"],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.strip().endswith("beyond loopback"), res.stdout[-2000:]
    assert ", 0 beyond loopback" in res.stdout
    workers = [ln for ln in res.stdout.splitlines() if "RayTrainWorker" in ln]
    assert workers, res.stdout[-3000:]  # the workers' sockets were seen
