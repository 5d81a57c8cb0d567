"""A Ray cluster of a head and worker nodes simulated on this machine (loopback, one CPU
per worker node, the head runs no workers), with an S3 server as the shared storage: a
shard-mode run places one worker per node and each reads only its own part. Losing a worker
node mid-run moves its worker to a spare node, which finishes the run; with no spare node,
a job submitted with `ray job submit` stops with one line naming the lost node."""

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from distst.cli import main
from distst.config import load_config
from distst.runtime.ray_train import train_ray
from distst.storage import location
from raw_files import write_los_loop
from ray_heads import free_port, wait_for_job_agent

pytestmark = pytest.mark.cluster  # simulated clusters of its own (ray.cluster_utils)


@pytest.fixture
def make_cluster():
    """make_cluster(worker_nodes, dashboard_port=None) -> (Cluster, [worker nodes])."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()  # this module runs on its own cluster, not the session's local Ray
    made = []

    def make(workers: int, dashboard_port: int | None = None):
        # the job agent on a free port (Ray's default is every Ray's: tests/ray_heads.py)
        head = {"num_cpus": 0, "node_ip_address": "127.0.0.1",
                "include_dashboard": dashboard_port is not None,
                "dashboard_agent_listen_port": free_port()}
        if dashboard_port is not None:
            head.update(dashboard_host="127.0.0.1", dashboard_port=dashboard_port)
        c = Cluster(initialize_head=True, head_node_args=head)
        made.append(c)
        return c, [c.add_node(num_cpus=1, node_ip_address="127.0.0.1") for _ in range(workers)]

    try:
        yield make
    finally:
        ray.shutdown()
        for c in made:
            c.shutdown()


def _prepare(base, tmp_path):
    main(["data", "prepare", "--format", "los-loop", "--path", str(write_los_loop(tmp_path / "raw")),
          "--out", f"{base}/data"])
    main(["partition", f"{base}/data", "--parts", "2", "--halo-hops", "1",
          "--out", f"{base}/plan"])
    return [
        f"data.path={base}/data", f"data.cache_dir={tmp_path / 'scratch'}",
        f"partition.plan={base}/plan", "partition.parts=2", "runtime.mode=shard",
        f"runtime.storage={base}/runs", "runtime.name=multi", "runtime.cpus_per_worker=1",
        "model.name=gcgru", "model.params={K: 2, hidden_size: 8, num_layers: 1}",
        "train.epochs=3", "train.batch_size=16", "train.max_batches_per_epoch=6",
        "train.checkpoint_every_steps=2", "train.max_val_batches=1", "train.threads=1",
        "train.progress=false"]


def _lose_node_of_rank_1(c, nodes, run, lost: dict) -> threading.Thread:
    """Removes, without a graceful drain, the node rank 1 runs on once the run has a
    checkpoint; lost["record"] is rank 1's fetch record from before."""
    def go():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                if [d for d in run.glob("checkpoint_*") if d.is_dir()]:
                    rec = json.loads((run / "fetch" / "rank_1.json").read_text())
                    node = next(n for n in nodes if n.node_id.startswith(rec["node"]))
                    lost["record"] = rec
                    c.remove_node(node, allow_graceful=False)  # the machine is gone
                    return
            except (FileNotFoundError, StopIteration):
                pass
            time.sleep(0.2)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_shard_run_spreads_over_nodes_and_survives_a_lost_node(make_cluster, s3, tmp_path):
    c, nodes = make_cluster(3)
    base, options = s3
    cfg = load_config(None, _prepare(base, tmp_path) + [
        "runtime.storage_options=" + json.dumps(options), f"runtime.address={c.address}",
        "runtime.max_failures=2"])
    run = location(f"{base}/runs/multi")
    lost = {}
    killer = _lose_node_of_rank_1(c, nodes, run, lost)
    _, final = train_ray(cfg)
    killer.join(timeout=5)
    assert "record" in lost, "no node was removed: the run ended before its first checkpoint"
    assert final["test"]["avg"]["mae"] > 0
    records = [json.loads((run / "fetch" / f"rank_{r}.json").read_text()) for r in (0, 1)]
    # one worker per node, each with its own part, and rank 1 now on the spare node
    assert records[0]["node"] != records[1]["node"]
    assert records[1]["node"] != lost["record"]["node"]
    assert [r["source"] for r in records] == [f"{base}/plan/part_0", f"{base}/plan/part_1"]
    assert lost["record"]["bytes"] > 0  # the first node of rank 1 fetched part_1 itself
    epochs = [json.loads(ln)["epoch"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_job_submitted_to_the_cluster_names_the_lost_node_when_none_can_replace_it(
        make_cluster, s3, tmp_path):
    dash = free_port()
    c, nodes = make_cluster(2, dashboard_port=dash)
    base, options = s3
    overrides = _prepare(base, tmp_path) + [
        "runtime.storage_options=" + json.dumps(options), "runtime.node_wait_s=10",
        "train.epochs=20"]
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(load_config(None, overrides).to_dict()))
    run = location(f"{base}/runs/multi")
    lost = {}
    killer = _lose_node_of_rank_1(c, nodes, run, lost)
    env = dict(os.environ, RAY_AUTH_MODE="token")
    env.pop("RAY_ADDRESS", None)
    ray_cli = str(Path(sys.executable).parent / "ray")
    wait_for_job_agent(f"http://127.0.0.1:{dash}", env)
    started = time.monotonic()
    # the job's driver runs on the head and finds the cluster through the job's RAY_ADDRESS
    out = subprocess.run(
        [ray_cli, "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--",
         sys.executable, "-m", "distst", "train", str(config)],
        env=env, capture_output=True, text=True, timeout=900)
    took = time.monotonic() - started
    killer.join(timeout=5)
    log = out.stdout + out.stderr
    assert "record" in lost, "no node was removed: the run ended before its first checkpoint\n" \
        + log[-3000:]
    assert out.returncode != 0, log[-3000:]
    # one distinct error line (`ray job submit` repeats the job's last logs on failure)
    errors = sorted({ln for ln in log.splitlines() if ln.startswith("error: ")})
    assert len(errors) == 1, log[-3000:]
    node = lost["record"]["node"]
    assert re.search(rf"lost node {node}\w* \(127\.0\.0\.1\)", errors[0]), errors[0]
    assert "runtime.node_wait_s=10" in errors[0] and "--resume" in errors[0]
    # the job ran on the cluster: one worker per node, each fetched only its own part
    recs = [json.loads((run / "fetch" / f"rank_{r}.json").read_text()) for r in (0, 1)]
    assert recs[0]["node"] != node and lost["record"]["source"] == f"{base}/plan/part_1"
    assert recs[0]["source"] == f"{base}/plan/part_0"
    print(f"job stopped {took:.0f} s after submission")
