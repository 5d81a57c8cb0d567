"""`distst plot DIR` on a run, a sweep folder and a non-distst folder."""

import csv
import json

import pytest
import yaml

from distst.cli import main
from distst.engine.entry import train_local


def test_plot_a_run_draws_curves_and_horizon_against_ha(tiny, tmp_path, capsys):
    run_dir, final = train_local(tiny("train.max_batches_per_epoch=3"))
    assert len(final["mae_by_step"]["test"]) == 12 and len(final["mae_by_step"]["ha"]) == 12
    out = tmp_path / "pics"
    assert main(["plot", str(run_dir), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    for name in ("curves.png", "horizon.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    # the drawn values are the run's own
    from distst.plots.run import plot_run
    from distst.storage import location

    drawn = plot_run(location(run_dir), location(tmp_path / "again"))
    recs = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert drawn["curves.png"]["val_mae"]["validation MAE"][1] == pytest.approx(
        [r["val_mae"] for r in recs])
    assert drawn["curves.png"]["loss"]["training loss"][1] == pytest.approx(
        [r["train_loss"] for r in recs])
    xs, ys = drawn["horizon.png"]["mae"]["HA"]
    assert xs[0] == 5.0 and xs[-1] == 60.0 and ys == pytest.approx(final["mae_by_step"]["ha"])


def test_plot_a_run_draws_a_test_day_of_forecasts_and_the_error_map(tiny, tmp_path, capsys):
    import numpy as np

    from distst.engine.entry import restore_best
    from distst.engine.forecast import run_forecasts
    from distst.plots.run import plot_forecasts
    from distst.storage import location

    run_dir, final = train_local(tiny("train.max_batches_per_epoch=3", "train.epochs=1", days=8))
    out = tmp_path / "pics"
    assert main(["plot", str(run_dir), "--out", str(out)]) == 0
    for name in ("forecast.png", "error_map.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    fc = run_forecasts(run_dir)
    # the per-sensor errors add up to the run's own test MAE
    mae, count = fc["mae_per_sensor"], fc["count_per_sensor"]
    seen = count > 0
    assert (mae[seen] * count[seen]).sum() / count[seen].sum() == pytest.approx(
        final["test"]["avg"]["mae"], rel=1e-4)
    # by default: the sensors at the 10th, 50th and 90th percentile of that error
    order = np.argsort(mae)
    n = len(order)
    assert fc["sensors"] == [int(order[int(q * n)]) for q in (0.1, 0.5, 0.9)]
    # the truth drawn is the dataset's series, one day of 5-minute steps
    net = restore_best(run_dir).bundle.network
    assert fc["truth"].shape == (288, 3) and set(fc["pred"]) == {1, 12}
    assert fc["truth"] == pytest.approx(net.values[fc["steps"]][:, fc["sensors"], 0],
                                        nan_ok=True)
    assert fc["times"][0] == np.datetime64(int(net.timestamps[fc["steps"][0]]), "ns")
    drawn = plot_forecasts(fc, location(tmp_path / "again"))
    sid = fc["sensor_ids"][1]
    assert drawn["forecast.png"][sid]["truth"] == pytest.approx(
        list(fc["truth"][:, 1]), nan_ok=True)
    assert drawn["forecast.png"][sid]["gcgru, 60 min ahead"] == pytest.approx(
        list(fc["pred"][12][:, 1]), nan_ok=True)
    assert drawn["error_map.png"]["mae"] == pytest.approx(list(mae[seen]))
    # the first forecast one step ahead is the model's output for the window just before
    assert np.isfinite(fc["pred"][1][:, 0]).all() and np.isfinite(fc["pred"][12][:, 0]).all()
    # named sensors, and a name that is not there
    ids = fc["sensor_ids"][:2]
    assert main(["plot", str(run_dir), "--out", str(out), "--sensors", ",".join(ids)]) == 0
    assert run_forecasts(run_dir, ids)["sensor_ids"] == ids
    assert main(["plot", str(run_dir), "--sensors", "no-such-sensor"]) == 2
    assert "sensor id 'no-such-sensor' is not in the dataset" in capsys.readouterr().err


def test_plot_a_sweep_folder(tmp_path):
    d = tmp_path / "sweep"
    d.mkdir()
    (d / "sweep.yaml").write_text(yaml.safe_dump({"sweep": {
        "metric": "val_mae", "search_space": {"train.lr": {"loguniform": [1e-4, 1e-1]},
                                              "model.params.hidden_size": {"choice": [8, 16]}}}}))
    rows = [{"trial": f"t{i}", "train.lr": lr, "model.params.hidden_size": h, "val_mae": m,
             "epochs": 2, "status": "done"}
            for i, (lr, h, m) in enumerate([(0.001, 8, 4.0), (0.01, 16, 3.5), (0.05, 8, "nan")])]
    with open(d / "trials.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main(["plot", str(d)]) == 0
    from distst.plots.sweep import plot_sweep
    from distst.storage import location

    drawn = plot_sweep(location(d), location(d), "val_mae", ["train.lr"])["trials.png"]
    assert drawn["train.lr"] == ([0.001, 0.01], [4.0, 3.5])  # the NaN trial is not drawn
    assert (d / "trials.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_refuses_a_folder_distst_did_not_write(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "is not a run, sweep or study directory" in capsys.readouterr().err
