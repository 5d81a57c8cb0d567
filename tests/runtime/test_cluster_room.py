"""A cluster that lacks room for a run yet (an autoscaling cluster starts with no worker node)
is asked for it and waited for, instead of refusing the run: simulated with a head that runs
no workers, and a node that joins while the run waits, as an autoscaler's node would."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distst.config import load_config
from distst.errors import DiststError
from distst.runtime.ray_train import train_ray
from ray_heads import free_port

pytestmark = pytest.mark.cluster  # a cluster of its own (ray.cluster_utils)

ROOT = Path(__file__).resolve().parents[2]

RUN = ["runtime.mode=replicate", "runtime.workers=2", "runtime.cpus_per_worker=1",
       "data.synth.nodes=12", "data.synth.days=3", "model.name=gcgru",
       "model.params={K: 2, hidden_size: 8, num_layers: 1}", "train.epochs=1",
       "train.batch_size=8", "train.max_batches_per_epoch=2", "train.max_val_batches=1",
       "train.max_test_batches=1", "train.progress=false", "train.threads=1"]


@pytest.fixture
def empty_cluster():
    """A head with no CPUs (it runs no workers) and no worker node."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()  # this module runs on its own cluster, not the session's local Ray
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False,
        "dashboard_agent_listen_port": free_port()})
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def test_a_submitted_run_waits_for_a_node_to_join_and_finishes(empty_cluster, tmp_path):
    """``distst train`` from a process of its own (as a submitter's) on a cluster with no
    room: it asks, says so once, and finishes once a node joins."""
    sets = [a for kv in [*RUN, f"runtime.storage={tmp_path / 'runs'}",
                         f"data.cache_dir={tmp_path / 'cache'}", "runtime.node_wait_s=240",
                         "runtime.name=waited"] for a in ("--set", kv)]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "distst"), "train",
                             "configs/quickstart.yaml", "--address", empty_cluster.address,
                             *sets], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=ROOT, start_new_session=True)
    lines = []
    try:
        deadline = time.monotonic() + 180
        while not any("asked the autoscaler" in ln for ln in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)[-3000:]
            lines.append(proc.stdout.readline())
        asked = time.monotonic()
        time.sleep(3)  # still waiting: no node yet
        assert proc.poll() is None, "".join(lines)[-3000:]
        empty_cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1")  # the node arrives
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    log = "".join(lines) + out
    assert proc.returncode == 0, log[-3000:]
    said = [ln for ln in log.splitlines() if "asked the autoscaler" in ln]
    assert len(said) == 1 and "2 x {'CPU': 1.0}; waiting up to 240 s" in said[0], log[-3000:]
    assert "the cluster has room now" in log and "| avg |" in log
    assert time.monotonic() - asked > 3
    assert (tmp_path / "runs" / "waited" / "test_metrics.json").is_file()


def test_a_run_that_gets_no_room_within_the_wait_is_one_line(empty_cluster, tmp_path, capsys):
    cfg = load_config(None, [*RUN, f"runtime.address={empty_cluster.address}",
                             f"runtime.storage={tmp_path / 'runs'}",
                             f"data.cache_dir={tmp_path / 'cache'}", "runtime.node_wait_s=3"])
    t0 = time.monotonic()
    with pytest.raises(DiststError, match=r"needs 2 workers x runtime.cpus_per_worker=1 = 2 "
                       r"CPUs but the Ray cluster has 0.*Waited 3 s \(runtime.node_wait_s\) "
                       r"for the cluster to grow"):
        train_ray(cfg)
    assert 3 <= time.monotonic() - t0 < 60
    assert "waiting up to 3 s" in capsys.readouterr().out
    assert not list((tmp_path / "runs").glob("*/checkpoint_*"))


def test_a_run_beyond_the_declared_maximum_is_refused_at_once(empty_cluster, tmp_path,
                                                              monkeypatch, capsys):
    """The autoscaler's config (what ``ray up`` leaves on the head) says the cluster can never
    hold the run: no wait."""
    from distst.runtime import ray_train

    boot = tmp_path / "ray_bootstrap_config.yaml"
    boot.write_text("head_node_type: head\navailable_node_types:\n"
                    "  head: {resources: {CPU: 0}, max_workers: 0}\n"
                    "  cpu1: {resources: {CPU: 1}, max_workers: 1}\n")
    monkeypatch.setattr(ray_train, "BOOTSTRAP_CONFIG", str(boot))
    assert ray_train.declared_maximum() == {"CPU": 1.0}
    cfg = load_config(None, [*RUN, f"runtime.address={empty_cluster.address}",
                             f"runtime.storage={tmp_path / 'runs'}",
                             f"data.cache_dir={tmp_path / 'cache'}", "runtime.node_wait_s=300"])
    t0 = time.monotonic()
    with pytest.raises(DiststError, match="needs 2 workers x runtime.cpus_per_worker=1 = 2 CPUs"):
        train_ray(cfg)
    assert time.monotonic() - t0 < 60 and "asked the autoscaler" not in capsys.readouterr().out
