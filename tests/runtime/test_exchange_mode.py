"""Exchange mode on Ray Train: two workers, each with one part and its 1-hop boundary, train
exactly what one process trains on the whole graph (issue 15)."""

import json

import pytest

from distst.engine.entry import train_local
from distst.runtime.ray_train import train_ray

# a per-node embedding (gathered like a feature, its gradient summed to the owner) and a
# global clip norm; no teacher forcing, so both runs draw the same random numbers. The runs
# sum in different float32 orders, which Adam carries to ~1e-4 over epochs (see
# tests/runtime/test_shard.py FLOAT_ORDER); the layer-level test holds exchange to 1e-5
# per step (tests/nn/test_exchange.py)
COMMON = ["train.cl_decay_steps=0", "partition.parts=2", "model.params.node_embedding_dim=3",
          "train.grad_clip=0.5", "train.epochs=2"]


def _history(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_exchange_training_equals_one_process_on_the_whole_graph(ray_local, tiny):
    ex_dir, ex_final = train_ray(tiny(*COMMON, "runtime.mode=exchange",
                                      "train.step_timing=true"))
    local_dir, local_final = train_local(tiny(*COMMON, "runtime.mode=local"))
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


def test_two_parts_times_two_replicas_equal_the_whole_graph_on_each_replica(ray_local, tiny):
    """4 workers: 2 replicas split each global batch, 2 parts split the graph; the per-node
    embedding's gradient comes from both replicas, and its clip norm counts each node once.
    The reference takes the same windows per replica with the whole graph in every part (a
    halo deeper than the graph): shard mode is exact then."""
    ex_dir, ex_final = train_ray(tiny(*COMMON, "runtime.mode=exchange", "runtime.replicas=2",
                                      "runtime.cpus_per_worker=0.5"))
    local_dir, local_final = train_ray(tiny(*COMMON, "runtime.mode=shard", "runtime.replicas=2",
                                            "partition.halo_hops=50",
                                            "runtime.cpus_per_worker=0.5"))
    for a, b in zip(_history(ex_dir), _history(local_dir)):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=5e-4)
        assert a["val_mae"] == pytest.approx(b["val_mae"], rel=5e-4)
    assert ex_final["test"]["avg"]["mae"] == pytest.approx(local_final["test"]["avg"]["mae"],
                                                          rel=5e-4)
    fetched = [json.loads((ex_dir / "fetch" / f"rank_{r}.json").read_text())["source"]
               for r in range(4)]
    assert [f.rsplit("/", 1)[1] for f in fetched] == ["part_0", "part_1", "part_0", "part_1"]


def test_himnet_sparse_graph_trains_exactly_on_its_two_hop_boundary(ray_local, tiny):
    """HimNet's adaptive graph restricted to 2-hop neighbourhoods: the plan made for the run
    holds each part's 2-hop boundary, the learned edge values and E_st read the halo's
    current values, and two workers train what one process trains."""
    him = ["model.params.graph=sparse", "model.params.graph_hops=2",
           "model.params.hidden_size=8", "model.params.node_embedding_dim=4",
           "model.params.st_embedding_dim=4", "train.cl_decay_steps=0", "partition.parts=2",
           "train.grad_clip=0.5", "train.epochs=2"]
    ex_dir, ex_final = train_ray(tiny(*him, "runtime.mode=exchange", model="himnet"))
    local_dir, local_final = train_local(tiny(*him, "runtime.mode=local", model="himnet"))
    for a, b in zip(_history(ex_dir), _history(local_dir)):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=5e-4)
        assert a["val_mae"] == pytest.approx(b["val_mae"], rel=5e-4)
    assert ex_final["test"]["avg"]["mae"] == pytest.approx(local_final["test"]["avg"]["mae"],
                                                          rel=5e-4)
    for r in (0, 1):  # the plan the workers read: 2 parts, 2-hop boundary
        source = json.loads((ex_dir / "fetch" / f"rank_{r}.json").read_text())["source"]
        assert "-p2-h2-" in source and source.endswith(f"part_{r}"), source


def test_stunet_trains_exactly_with_coarsening_inside_parts(ray_local, tiny, monkeypatch):
    """ST-UNet in exchange mode: each worker coarsens its own nodes (GPA per part) and every
    stage's convolutions exchange that stage's boundary. Two workers train what one process
    trains whose coarsening is GPA per part of the same plan (given to it here)."""
    import numpy as np

    from distst.engine import bundle as bundle_mod
    from distst.engine import entry
    from distst.engine.entry import evaluate_checkpoint

    # no layer norm: with it, even two one-process runs at 1 and 2 threads differ by 2% after
    # one epoch (float32 roundoff grows through it; measured), so no comparison could pass
    stu = ["model.params={K: 2, hidden_size: 8, levels: 1, dilation: 2, layer_norm: false}",
           "train.cl_decay_steps=0", "partition.parts=2", "train.epochs=2"]
    ex_dir, ex_final = train_ray(tiny(*stu, "runtime.mode=exchange", "train.step_timing=true",
                                      model="stunet"))
    # evaluated again in one process, the run's model pools as it trained: inside the parts
    again = evaluate_checkpoint(ex_dir, split="test")
    assert again["test"]["avg"]["mae"] == pytest.approx(ex_final["test"]["avg"]["mae"],
                                                        rel=1e-4)
    source = json.loads((ex_dir / "fetch" / "rank_0.json").read_text())["source"]
    parts = np.load(f"{source.rsplit('/', 1)[0]}/assignment.npy")
    real = bundle_mod.build_bundle

    def within_parts(*args, **kwargs):
        bundle = real(*args, **kwargs)
        bundle.coarsen_within = parts
        return bundle

    monkeypatch.setattr(entry, "build_bundle", within_parts)
    local_dir, local_final = train_local(tiny(*stu, "runtime.mode=local", model="stunet"))
    for a, b in zip(_history(ex_dir), _history(local_dir), strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=5e-4)
        assert a["val_mae"] == pytest.approx(b["val_mae"], rel=5e-4)
    assert ex_final["test"]["avg"]["mae"] == pytest.approx(local_final["test"]["avg"]["mae"],
                                                          rel=5e-4)
    for rank in (0, 1):
        doc = json.loads((ex_dir / "steps" / f"rank_{rank}.json").read_text())
        assert all(s["exchange_bytes"] > 0 for s in doc["steps"])


def test_exchange_with_a_model_that_has_no_exchange_path_is_refused_before_start(tiny):
    from distst.errors import DiststError

    with pytest.raises(DiststError, match=r"model hyperst_cnn has no exchange path.*gcgru"):
        train_ray(tiny("runtime.mode=exchange", "partition.parts=2", model="hyperst_cnn"))
    with pytest.raises(DiststError, match=r"himnet with graph='dense'.*graph=sparse"):
        train_ray(tiny("runtime.mode=exchange", "partition.parts=2", model="himnet"))
