"""`distst predict`: a trained run's forecasts as a long table, equal to what `distst
evaluate` scores, from new data of the same sensors in any column order, with the windows
whose input had gaps marked, and bad data refused naming the difference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from distst.cli import main
from distst.data.windows import iterate_batches
from distst.engine.entry import evaluate_checkpoint, restore_best
from distst.engine.predict import predict
from distst.errors import DiststError
from raw_files import trained_los_run


def _prepare(raw, out):
    assert main(["data", "prepare", "--format", "los-loop", "--path", str(raw),
                 "--out", str(out)]) == 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A local GCGRU run on a 12-sensor Los-loop-format dataset of 3 days."""
    d = tmp_path_factory.mktemp("predict")
    return d, trained_los_run(d, "p", seed=1)


def test_the_test_split_forecasts_are_the_ones_evaluate_scores(trained):
    d, run = trained
    fc = predict(run, split="test")
    trainer = restore_best(run, "test")
    ds = trainer.bundle.datasets["test"]
    ref, truth = [], []
    with torch.no_grad():
        for x, y in iterate_batches(ds, 64, shuffle=False, drop_last=False, even=False):
            ref.append(trainer.forecast(trainer.model, x).numpy())
            truth.append(y.numpy())
    ref, truth = np.concatenate(ref), np.concatenate(truth)
    assert fc.values.shape == ref.shape == (len(ds.starts), 12, 12, 1)
    np.testing.assert_allclose(fc.values, ref, rtol=0, atol=1e-6)
    # and the table scores what evaluate reports
    mae = float(np.nanmean(np.abs(fc.values - truth)))
    assert mae == pytest.approx(evaluate_checkpoint(run)["test"]["avg"]["mae"], rel=1e-6)
    # the table's times: the window's last input step, then one step per horizon step
    ts = trainer.bundle.network.timestamps
    first = int(ds.starts[0])
    assert fc.forecast_times[0] == ts[first + 11]
    assert list(fc.target_times[0]) == list(ts[first + 12:first + 24])


def test_new_data_in_another_column_order_gives_the_same_forecasts(trained, tmp_path):
    d, run = trained
    series = pd.read_csv(d / "raw" / "los_speed.csv")
    raw2 = tmp_path / "raw2"
    raw2.mkdir()
    order = list(series.columns[::-1])  # the sensors reversed, their graph with them
    series[order].to_csv(raw2 / "los_speed.csv", index=False)
    adj = np.loadtxt(d / "raw" / "los_adj.csv", delimiter=",")
    perm = [int(c[1:]) for c in order]
    np.savetxt(raw2 / "los_adj.csv", adj[np.ix_(perm, perm)], delimiter=",")
    _prepare(raw2, tmp_path / "data2")
    at = ["2012-03-02T08:00", "2012-03-03T17:55"]
    own = predict(run, at=at)
    new = predict(run, data=str(tmp_path / "data2"), at=at)
    np.testing.assert_allclose(new.values, own.values, rtol=0, atol=1e-6)
    assert new.sensor_ids == own.sensor_ids == [f"s{i}" for i in range(12)]
    assert [str(np.datetime64(int(t), "ns")) for t in own.forecast_times] == [
        "2012-03-02T08:00:00.000000000", "2012-03-03T17:55:00.000000000"]


def test_the_newest_window_forecasts_the_future_and_gaps_are_marked(trained, tmp_path):
    d, run = trained
    fc = predict(run, last=True)
    ts = restore_best(run).bundle.network.timestamps
    assert fc.forecast_times.tolist() == [ts[-1]]
    assert fc.target_times[0, 0] == ts[-1] + 300 * 10**9  # 5 minutes after the data's end
    assert np.isfinite(fc.values).all() and not fc.gaps.any()
    # sensor s3 lost its last hour: the forecast is made, and the table says so
    series = pd.read_csv(d / "raw" / "los_speed.csv")
    series.loc[series.index[-12:], "s3"] = np.nan
    raw3 = tmp_path / "raw3"
    raw3.mkdir()
    series.to_csv(raw3 / "los_speed.csv", index=False)
    (raw3 / "los_adj.csv").write_text((d / "raw" / "los_adj.csv").read_text())
    _prepare(raw3, tmp_path / "data3")
    gap = predict(run, data=str(tmp_path / "data3"), last=True)
    assert gap.gaps[0].tolist() == [12 if i == 3 else 0 for i in range(12)]
    assert np.isfinite(gap.values).all()
    table = gap.table()
    assert set(table.loc[table.input_gaps > 0, "sensor_id"]) == {"s3"}


def test_the_cli_writes_parquet_or_csv(trained, tmp_path, capsys):
    d, run = trained
    assert main(["predict", str(run), "--at", "2012-03-02T08:00", "--out",
                 str(tmp_path / "f.parquet")]) == 0
    assert "1 window(s) x 12 horizon steps x 12 sensors = 144 forecasts" in \
        capsys.readouterr().out
    t = pd.read_parquet(tmp_path / "f.parquet")
    assert list(t.columns) == ["forecast_time", "target_time", "sensor_id", "horizon_step",
                               "speed", "input_gaps"]
    assert len(t) == 144 and t.horizon_step.min() == 1 and t.horizon_step.max() == 12
    lead = (t.target_time - t.forecast_time).dt.total_seconds()
    assert (lead == 300 * t.horizon_step).all()
    assert main(["predict", str(run), "--last", "--out", str(tmp_path / "f.csv")]) == 0
    c = pd.read_csv(tmp_path / "f.csv")
    assert len(c) == 144 and list(c.columns) == list(t.columns)


@pytest.mark.parametrize("case,expect", [
    ("missing_sensor", "lacks 1 of the run's sensors (s11)"),
    ("extra_sensor", "has 1 sensor(s) the run does not know (x99)"),
    ("no_step", "no step of the run's dataset"),
    ("too_early", "needs 12 input steps"),
    ("none", "--at TIME [TIME ...], --last or --split NAME"),
    ("gap", "spans 85 min from 2012-03-02 07:00:00, not 55: dataset"),
])
def test_bad_requests_are_refused_naming_the_difference(trained, tmp_path, case, expect):
    d, run = trained
    kw = {"at": ["2012-03-02T08:00"]}
    if case in ("missing_sensor", "extra_sensor"):
        series = pd.read_csv(d / "raw" / "los_speed.csv")
        adj = np.loadtxt(d / "raw" / "los_adj.csv", delimiter=",")
        if case == "missing_sensor":
            series, adj = series.drop(columns=["s11"]), adj[:11, :11]
        else:
            series["x99"] = series["s0"]
            adj = np.pad(adj, ((0, 1), (0, 1)))
            adj[0, 12] = adj[12, 0] = 1
        raw = tmp_path / "raw"
        raw.mkdir()
        series.to_csv(raw / "los_speed.csv", index=False)
        np.savetxt(raw / "los_adj.csv", adj, delimiter=",")
        _prepare(raw, tmp_path / "data")
        kw["data"] = str(tmp_path / "data")
    elif case == "gap":  # a prepared dataset whose clock skips half an hour before 07:30
        import shutil

        shutil.copytree(d / "data", tmp_path / "data")
        ts = np.load(tmp_path / "data" / "timestamps.npy")
        cut = int(np.searchsorted(ts, np.datetime64("2012-03-02T07:30", "ns").astype(np.int64)))
        ts[cut:] += 30 * 60 * 10**9
        np.save(tmp_path / "data" / "timestamps.npy", ts)
        kw = {"data": str(tmp_path / "data"), "at": ["2012-03-02T08:25"]}
    elif case == "no_step":
        kw["at"] = ["2012-03-02T08:01"]
    elif case == "too_early":
        kw["at"] = ["2012-03-01T00:30"]
    else:
        kw = {}
    with pytest.raises(DiststError) as e:
        predict(run, **kw)
    assert expect in str(e.value), str(e.value)
