"""Shard mode on Ray Train: one worker per part, same windows everywhere, inner-node losses.

The model carries a per-node embedding, and gradients are clipped (a global norm), so the
comparison also pins per-node gradients and the clipping factor across shards.

With a halo that covers the whole graph, every part sees the full graph, so sharded
training must reproduce single-process training exactly (up to float summation order):
that pins the loss scaling (DDP's averaging) and the all-reduced metrics. The same run in
plain processes (tests/process_group.py) trains bit for bit what the Ray workers train, which
is what lets tests/engine/test_worker_group.py test the engine's multi-worker semantics there.
"""

import json

import pytest

from distst.engine.entry import evaluate_checkpoint, train_local
from distst.runtime.ray_train import train_ray
from process_group import train_group


#: A shard run with a full halo computes what one process computes, in another float32
#: order (inner nodes first, sums over two workers); Adam carries that difference to 1-2e-4
#: of the validation MAE after 1-3 epochs (measured at two initialisations), far below any
#: effect of the halo (shard mode with a short halo differs by percents)
FLOAT_ORDER = 5e-4


def _history(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


COMMON = ["train.cl_decay_steps=0", "partition.parts=2",
          "partition.halo_hops=50",  # 50 hops > diameter of the 20-node graph
          # a per-node embedding: DDP must neither average nor shrink its gradient
          "model.params.node_embedding_dim=3", "train.grad_clip=0.5",
          # short epochs (4 batches): over whole epochs this tiny model's trajectory amplifies
          # fp32 summation-order differences (MKL's sparse kernels, shard vs whole graph) to
          # 0.1-0.7% of the validation MAE by epoch 3 (measured), more than FLOAT_ORDER; over
          # 12 steps it stays at roundoff, while a lost Adam moment or per-node row would
          # change every update at the scale of the learning rate
          "train.max_batches_per_epoch=4"]


@pytest.fixture(scope="module")
def full_halo_runs(ray_session, tmp_path_factory, overrides_for):
    """A 2-epoch shard run on Ray and the same 2 epochs in one process."""
    from distst.config import load_config

    tmp = tmp_path_factory.mktemp("shard")
    shard_cfg = load_config(None, overrides_for(tmp, *COMMON, "train.epochs=2",
                                                "runtime.mode=shard", "runtime.name=shard"))
    local_cfg = load_config(None, overrides_for(tmp, *COMMON, "train.epochs=2",
                                                "runtime.mode=local", "runtime.name=local"))
    shard_dir, shard_final = train_ray(shard_cfg)
    local_dir, local_final = train_local(local_cfg)
    return shard_dir, shard_final, local_dir, local_final


def test_shard_training_equals_single_process_with_full_halo(full_halo_runs):
    shard_dir, shard_final, local_dir, local_final = full_halo_runs
    hs, hl = _history(shard_dir), _history(local_dir)
    assert [h["epoch"] for h in hs] == [1, 2]
    for a, b in zip(hs, hl):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=FLOAT_ORDER)
        assert a["val_mae"] == pytest.approx(b["val_mae"], rel=FLOAT_ORDER)
    for h in ("15min", "60min", "avg"):
        assert shard_final["test"][h]["mae"] == pytest.approx(local_final["test"][h]["mae"],
                                                              rel=FLOAT_ORDER)
        assert shard_final["ha"][h]["mae"] == pytest.approx(local_final["ha"][h]["mae"], rel=1e-6)


def test_reported_shard_metrics_are_full_graph_metrics(full_halo_runs):
    shard_dir, shard_final, _, _ = full_halo_runs
    # the shard model evaluated on the whole graph in one process: same numbers, so the
    # workers' sums and counts were combined into one average, not an average of averages
    again = evaluate_checkpoint(shard_dir)
    for h in ("15min", "30min", "60min", "avg"):
        for m in ("mae", "rmse", "mape"):
            assert again["test"][h][m] == pytest.approx(shard_final["test"][h][m], rel=1e-5)


def test_resumed_shard_run_continues_like_an_uninterrupted_one(full_halo_runs, overrides_for,
                                                                tmp_path):
    """Resuming restores the per-node rows of Adam's moments too (they are saved for the
    whole graph), so 2 sharded epochs + 1 resumed equal 3 uninterrupted single-process ones.
    The 2 epochs are the module's shard run, resumed from a copy of its folder."""
    import shutil

    from distst.config import load_config

    first = tmp_path / "runs" / "shard"
    shutil.copytree(full_halo_runs[0], first)
    more = load_config(None, overrides_for(tmp_path, *COMMON, "train.epochs=3",
                                           "runtime.mode=shard", "runtime.name=shard"))
    resumed_dir, _ = train_ray(more, resume_from=first)
    assert resumed_dir == first
    local3 = load_config(None, overrides_for(tmp_path, *COMMON, "train.epochs=3",
                                             "runtime.mode=local", "runtime.name=straight"))
    local_dir, _ = train_local(local3)
    resumed, straight = _history(resumed_dir), _history(local_dir)
    assert [h["epoch"] for h in resumed] == [1, 2, 3]
    assert resumed[-1]["epoch"] == straight[-1]["epoch"] == 3
    for a, b in zip(resumed, straight):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=FLOAT_ORDER)
        assert a["val_mae"] == pytest.approx(b["val_mae"], rel=FLOAT_ORDER)


def test_plain_processes_train_what_the_ray_workers_train_bit_for_bit(full_halo_runs,
                                                                     overrides_for, tmp_path):
    """The shard run again in two plain processes joined by gloo (tests/process_group.py):
    the same numbers to the last bit, so the engine's multi-worker tests that run there
    (tests/engine/test_worker_group.py) test what Ray's workers run."""
    from distst.config import load_config

    shard_dir, shard_final = full_halo_runs[:2]
    ((group_dir, group_final),) = train_group([load_config(None, overrides_for(
        tmp_path, *COMMON, "train.epochs=2", "runtime.mode=shard", "runtime.name=group"))])
    assert group_final["test"] == shard_final["test"] and group_final["ha"] == shard_final["ha"]
    keys = ("epoch", "train_loss", "val_mae")
    assert [{k: h[k] for k in keys} for h in _history(group_dir)] == [
        {k: h[k] for k in keys} for h in _history(shard_dir)]


def test_sharded_evaluation_of_a_checkpoint(full_halo_runs, tmp_path):
    """A fixed model evaluated part by part: with a halo covering the graph it equals the
    whole-graph evaluation; with no halo it differs (the boundary nodes lose neighbours)."""
    from distst.config import load_config
    from distst.engine.entry import evaluate_checkpoint_sharded
    from distst.graph.partition.plan import make_plan

    shard_dir = full_halo_runs[0]
    whole = evaluate_checkpoint(shard_dir)["test"]
    from distst.engine.checkpoint import load_checkpoint

    cfg = load_config(shard_dir / "config.yaml")
    data_dir = load_checkpoint(shard_dir)[0]["dataset_dir"]
    for hops, same in ((50, True), (0, False)):
        plan, _, _ = make_plan(data_dir, tmp_path / f"p{hops}", method=cfg.partition.method,
                               parts=2, halo_hops=hops, seed=cfg.partition.seed)
        got = evaluate_checkpoint_sharded(shard_dir, plan)["test"]
        close = got["avg"]["mae"] == pytest.approx(whole["avg"]["mae"], rel=1e-5)
        assert close == same, (hops, got["avg"], whole["avg"])
