"""`distst predict` of a run trained on a partitioned layout runs through that layout: one
worker per part of the run's plan, each forecasting its own sensors, assembled into one table
in the run's sensor order. Exchange mode's forecasts are the whole graph's; shard mode's are
the ones its training scored (each part with its halo). The workers here are plain processes
on one gloo group (tests/process_group.py), as Ray Train's are; tests/runtime/test_predict_ray.py
runs the command itself on Ray."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from distst.config import load_config
from distst.data.network import SensorNetwork, load_network, save_network
from distst.data.windows import iterate_batches
from distst.engine.entry import evaluate_checkpoint_sharded, restore_best
from distst.engine.predict import forecast_job, predict
from distst.errors import DiststError
from distst.metrics import StreamingMetrics
from process_group import forecast_group, train_group

# a per-node embedding (split by part, its rows loaded by their owner) and 2-hop filters
COMMON = ["partition.parts=2", "model.params.node_embedding_dim=3", "train.epochs=1",
          "train.max_batches_per_epoch=4", "train.max_val_batches=2",
          "train.eval_batch_size=16"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, overrides_for):
    """An exchange run and a shard run of GCGRU on 2 parts of a 20-sensor network."""
    d = tmp_path_factory.mktemp("layout") / "x"
    d.mkdir()
    cfgs = [load_config(None, overrides_for(d, *COMMON, f"runtime.mode={mode}",
                                            f"runtime.name={mode}"))
            for mode in ("exchange", "shard")]
    (ex, _), (sh, _) = train_group(cfgs)
    return ex, sh


def _truth(run, split="test"):
    trainer = restore_best(run, split)
    ys = [y for _, y in iterate_batches(trainer.bundle.datasets[split], 64, shuffle=False,
                                        drop_last=False, even=False)]
    return trainer, torch.cat(ys)


def test_exchange_forecasts_through_the_parts_are_the_whole_graphs(runs, tmp_path):
    ex, _ = runs
    job = forecast_job(ex, split="test", layout=True)
    assert job.plan_dir is not None
    assert (job.layout.mode, job.layout.parts, job.layout.world_size) == ("exchange", 2, 2)
    fc, pieces = forecast_group(job, tmp_path / "pieces")
    # each worker forecast only its own sensors, and together every sensor once
    assert sorted(np.concatenate([p.nodes for p in pieces]).tolist()) == list(range(20))
    assert all(0 < p.nodes.size < 20 for p in pieces)
    whole = predict(ex, split="test")
    assert fc.values.shape == whole.values.shape == (whole.values.shape[0], 12, 20, 1)
    np.testing.assert_allclose(fc.values, whole.values, rtol=0, atol=1e-5)
    assert fc.sensor_ids == whole.sensor_ids
    np.testing.assert_array_equal(fc.target_times, whole.target_times)
    np.testing.assert_array_equal(fc.gaps, whole.gaps)
    # and the table is one table: every (window, step, sensor) once, in the run's order
    table = fc.table()
    assert len(table) == fc.values.size
    assert table["sensor_id"].iloc[:20].tolist() == whole.sensor_ids


def test_shard_forecasts_through_the_parts_are_the_ones_its_training_scored(runs, tmp_path):
    _, sh = runs
    job = forecast_job(sh, split="test", layout=True)
    fc, _ = forecast_group(job, tmp_path / "pieces")
    trainer, truth = _truth(sh)
    m = StreamingMetrics(12, null_value=trainer.null)
    m.update(torch.from_numpy(fc.values), truth)
    mae = m.report()["avg"]["mae"]
    by_parts = evaluate_checkpoint_sharded(sh, job.plan_dir)["test"]["avg"]["mae"]
    assert mae == pytest.approx(by_parts, rel=1e-6)
    scored = json.loads((sh / "test_metrics.json").read_text())["test"]["avg"]["mae"]
    assert mae == pytest.approx(scored, rel=1e-5)
    # the whole graph in one process is another model's answer: the halo is gone
    whole = predict(sh, split="test")
    assert np.abs(whole.values - fc.values).max() > 1e-4


def _permuted_copy(src, out, perm, hole=None):
    """The dataset at ``src`` with its sensors in the order ``perm`` (graph and all), and one
    missing value at ``hole`` = (step, original sensor)."""
    net = load_network(src, mmap=False)
    inv = np.argsort(perm)
    values = np.array(net.values[:, perm])
    if hole is not None:
        values[hole[0], inv[hole[1]], 0] = np.nan
    save_network(SensorNetwork(
        name=net.name, values=values, timestamps=net.timestamps,
        node_ids=net.node_ids[perm], edge_index=inv[net.edge_index],
        edge_weight=net.edge_weight, channels=list(net.channels),
        coords=None if net.coords is None else net.coords[perm],
        node_attrs=None if net.node_attrs is None else net.node_attrs[perm],
        attr_names=list(net.attr_names), source={}), out)
    return out


def test_new_data_in_another_order_through_the_parts(runs, tmp_path):
    ex, _ = runs
    trainer = restore_best(ex)
    net = trainer.bundle.network
    perm = np.random.default_rng(0).permutation(net.num_nodes)
    at_step = len(net.timestamps) - 30
    # sensor 7's input 3 steps before the forecast time is missing in the new data
    new = _permuted_copy(trainer.bundle.dataset_dir, tmp_path / "new", perm,
                         hole=(at_step - 3, 7))
    at = [str(np.datetime64(int(net.timestamps[at_step]), "ns"))[:16]]
    fc, _ = forecast_group(forecast_job(ex, data=str(new), at=at, layout=True),
                           tmp_path / "pieces")
    whole = predict(ex, data=str(new), at=at)
    np.testing.assert_allclose(fc.values, whole.values, rtol=0, atol=1e-5)
    assert fc.sensor_ids == [str(s) for s in net.node_ids]
    # the synthetic series has gaps of its own; the new data has one more, at sensor 7
    own = predict(ex, at=at)
    expected = own.gaps.copy()
    expected[0, 7] += 1
    np.testing.assert_array_equal(fc.gaps, expected)
    # the missing input went in as the run's rule says (the training mean), so sensor 7's
    # forecasts differ from those on the run's own data
    assert np.abs(own.values - whole.values)[..., 7, :].max() > 0


def test_pieces_that_miss_a_sensor_are_refused(runs):
    ex, _ = runs
    job = forecast_job(ex, last=True)
    piece = job.piece()  # the whole graph in one process
    half = type(piece)(piece.nodes[:10], piece.values[:, :, :10], piece.gaps[:, :10],
                       piece.forecast_times, piece.target_times)
    with pytest.raises(DiststError, match=r"pieces cover sensor .* 0 times.*9 more"):
        job.assemble([half])
    with pytest.raises(DiststError, match=r"pieces cover sensor .* 2 times"):
        job.assemble([piece, half])
