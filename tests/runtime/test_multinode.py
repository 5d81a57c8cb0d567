"""A Ray cluster of a head and three worker nodes simulated on this machine (loopback, one
CPU per worker node, the head runs no workers), with an S3 server as the shared storage:
a shard-mode run places one worker per node, each reads only its own part, and losing a
worker node mid-run moves its worker to the spare node, which finishes the run."""

import json
import threading
import time

import pytest

from distst.cli import main
from distst.config import load_config
from distst.runtime.ray_train import train_ray
from distst.storage import location
from raw_files import write_los_loop


@pytest.fixture
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()  # this module runs on its own cluster, not the session's local Ray
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False})
    try:
        nodes = [c.add_node(num_cpus=1, node_ip_address="127.0.0.1") for _ in range(3)]
        yield c, nodes
    finally:
        ray.shutdown()
        c.shutdown()


def test_shard_run_spreads_over_nodes_and_survives_a_lost_node(cluster, s3, tmp_path):
    c, nodes = cluster
    base, options = s3
    main(["data", "prepare", "--format", "los-loop", "--path", str(write_los_loop(tmp_path / "raw")),
          "--out", f"{base}/data"])
    main(["partition", f"{base}/data", "--parts", "2", "--halo-hops", "1",
          "--out", f"{base}/plan"])
    cfg = load_config(None, [
        f"data.path={base}/data", f"data.cache_dir={tmp_path / 'scratch'}",
        f"partition.plan={base}/plan", "partition.parts=2", "runtime.mode=shard",
        f"runtime.storage={base}/runs", "runtime.name=multi",
        "runtime.storage_options=" + json.dumps(options), f"runtime.address={c.address}",
        "runtime.cpus_per_worker=1", "runtime.max_failures=2",
        "model.name=gcgru", "model.params={K: 2, hidden_size: 8, num_layers: 1}",
        "train.epochs=3", "train.batch_size=16", "train.max_batches_per_epoch=6",
        "train.checkpoint_every_steps=2", "train.max_val_batches=1", "train.threads=1",
        "train.progress=false"])
    run = location(f"{base}/runs/multi")
    lost = {}

    def lose_the_node_of_rank_1():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                if [c for c in run.glob("checkpoint_*") if c.is_dir()]:
                    rec = json.loads((run / "fetch" / "rank_1.json").read_text())
                    node = next(n for n in nodes if n.node_id.startswith(rec["node"]))
                    lost["record"] = rec
                    c.remove_node(node, allow_graceful=False)  # the machine is gone
                    return
            except (FileNotFoundError, StopIteration):
                pass
            time.sleep(0.2)

    killer = threading.Thread(target=lose_the_node_of_rank_1, daemon=True)
    killer.start()
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
