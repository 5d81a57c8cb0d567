"""Exchange mode on Ray Train: two workers, each with one part and its 1-hop boundary, train
exactly what one process trains on the whole graph (issue 15), and bit for bit what the same
run trains in plain processes (tests/process_group.py), where tests/engine/test_worker_group.py
runs exchange mode's other cases (replicas, HimNet, ST-UNet)."""

import json

import pytest

from distst.engine.entry import train_local
from distst.runtime.ray_train import train_ray
from process_group import train_group

# a per-node embedding (gathered like a feature, its gradient summed to the owner) and a
# global clip norm; no teacher forcing, so both runs draw the same random numbers. The runs
# sum in different float32 orders, which Adam carries to ~1e-4 over epochs (see
# tests/runtime/test_shard.py FLOAT_ORDER); the layer-level test holds exchange to 1e-5
# per step (tests/nn/test_split_graphs.py)
COMMON = ["train.cl_decay_steps=0", "partition.parts=2", "model.params.node_embedding_dim=3",
          "train.grad_clip=0.5", "train.epochs=2",
          # 2 epochs of 6 steps: every step makes a few hundred exchanges
          "train.max_batches_per_epoch=6", "train.max_val_batches=2"]


def _history(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_exchange_training_equals_one_process_on_the_whole_graph(ray_session, tiny):
    ex_dir, ex_final = train_ray(tiny(*COMMON, "runtime.mode=exchange",
                                      "train.step_timing=true"))
    local_dir, local_final = train_local(tiny(*COMMON, "runtime.mode=local"))
    ((group_dir, group_final),) = train_group([tiny(*COMMON, "runtime.mode=exchange",
                                                    "train.step_timing=true",
                                                    "runtime.name=group")])
    assert group_final["test"] == ex_final["test"]  # bit for bit
    assert [(h["train_loss"], h["val_mae"]) for h in _history(group_dir)] == [
        (h["train_loss"], h["val_mae"]) for h in _history(ex_dir)]
    he, hl = _history(ex_dir), _history(local_dir)
    assert [h["epoch"] for h in he] == [1, 2]
    for a, b in zip(he, hl):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=5e-4)
        assert a["val_mae"] == pytest.approx(b["val_mae"], rel=5e-4)
    for h in ("15min", "60min", "avg"):
        assert ex_final["test"][h]["mae"] == pytest.approx(local_final["test"][h]["mae"],
                                                           rel=5e-4)
    # each worker held its part and the 1-hop boundary, and sent boundary rows every step
    for rank in (0, 1):
        doc = json.loads((ex_dir / "steps" / f"rank_{rank}.json").read_text())
        assert doc["local_nodes"] < doc["global_nodes"]
        assert all(s["exchange_bytes"] > 0 for s in doc["steps"])


def test_exchange_with_a_model_that_has_no_exchange_path_is_refused_before_start(tiny):
    from distst.errors import DiststError

    with pytest.raises(DiststError, match=r"runtime.mode=exchange: model hyperst_cnn reads "
                       r"neighbours outside its graph operators.*gcgru.*runtime.mode=shard"):
        train_ray(tiny("runtime.mode=exchange", "partition.parts=2", model="hyperst_cnn"))
    with pytest.raises(DiststError, match=r"himnet with graph='dense'.*graph=sparse"):
        train_ray(tiny("runtime.mode=exchange", "partition.parts=2", model="himnet"))
