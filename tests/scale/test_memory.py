"""The dry run's memory estimate: each term from the run's own model, data and plan."""

from dataclasses import replace

import pytest

from distst.scale.memory import BASE_BYTES, local_nodes, worker_memory


def test_activations_scale_with_sensors_and_batch_and_parameters_are_not_counted_twice(tiny):
    cfg = tiny()
    one = worker_memory(cfg, 1000, 1000, 288)
    assert one["base"] == BASE_BYTES and one["series"] == 1000 * 288 * 4
    twice = worker_memory(replace(cfg, train=replace(cfg.train, batch_size=64)), 1000, 1000, 288)
    assert twice["activations"] == pytest.approx(2 * one["activations"])  # batch 32 -> 64
    half = worker_memory(cfg, 1000, 500, 288)
    # GCGRU keeps per-sensor state: half the sensors, about half the activations
    assert half["activations"] == pytest.approx(one["activations"] / 2, rel=0.05)
    # K=2 x 8 hidden GCGRU: no per-node weights, so parameters do not grow with the graph
    assert one["params"] == worker_memory(cfg, 5000, 5000, 288)["params"] > 0
    assert one["model_state"] == 16 * one["params"]
    assert one["total"] == sum(one[k] for k in ("base", "series", "model_state", "activations"))


def test_replicate_splits_the_batch_and_shard_holds_a_part_with_its_halo(tiny):
    from distst.engine.provision import ensure_dataset, ensure_plan

    rep = tiny("runtime.workers=2", "runtime.mode=replicate", nodes=40)
    assert worker_memory(rep, 40, 40, 288)["batch"] == 16
    shard = tiny("runtime.workers=2", "runtime.mode=shard", "partition.parts=2", nodes=40)
    n, local, steps, how = local_nodes(shard)
    assert (n, steps, how) == (40, 4 * 288, "real graphs' halo") and 20 < local <= 40
    plan = ensure_plan(shard, ensure_dataset(shard.data))
    import json
    from pathlib import Path

    sizes = json.loads((Path(plan) / "META.json").read_text())["sizes"]
    assert local_nodes(shard) == (40, max(s["num_local"] for s in sizes), 4 * 288, "plan")
    assert worker_memory(shard, 40, 20, 288)["batch"] == 32  # every part sees every window
    assert local_nodes(tiny("runtime.mode=replicate", nodes=40))[1:] == (40.0, 4 * 288,
                                                                         "whole graph")


def test_micro_batches_recompute_and_bf16_shrink_the_activations(tiny):
    """The estimate holds one micro-batch's activations, measured under the run's recompute
    and precision."""
    cfg = tiny("runtime.mode=local")
    whole = worker_memory(cfg, 1000, 1000, 288)
    four = worker_memory(tiny("runtime.mode=local", "train.micro_batches=4"), 1000, 1000, 288)
    assert (whole["batch"], four["batch"]) == (32, 8)
    assert four["activations"] == pytest.approx(whole["activations"] / 4)
    assert four["model_state"] == whole["model_state"]
    # 32 windows in 3 pieces: the largest piece holds 11
    assert worker_memory(tiny("runtime.mode=local", "train.micro_batches=3"), 1000, 1000, 288)["batch"] == 11
    # a recurrent model that recomputes its steps keeps each step's input only; bf16 keeps
    # half-width activations where autocast casts them
    recomputed = worker_memory(tiny("runtime.mode=local", "train.recompute=step"), 1000, 1000, 288)
    assert recomputed["activations"] < 0.6 * whole["activations"]
    bf16 = worker_memory(tiny("runtime.mode=local", "train.precision=bf16"), 1000, 1000, 288)
    assert bf16["activations"] < whole["activations"]
