"""`distst predict` of an exchange-mode run on Ray: by default one Ray Train worker per part of
the run's plan (the session Ray), the pieces gathered on the driver into one table equal to
the whole graph's forecasts (``--whole``); the training's own records are left alone."""

from __future__ import annotations

import numpy as np
import pandas as pd

from distst.cli import main
from distst.config import load_config
from process_group import train_group


def test_predict_runs_through_the_runs_parts_on_ray(ray_session, tmp_path, overrides_for,
                                                    capsys):
    cfg = load_config(None, overrides_for(
        tmp_path, "runtime.mode=exchange", "partition.parts=2", "runtime.name=ex",
        "model.params.node_embedding_dim=3", "train.epochs=1",
        "train.max_batches_per_epoch=3", "train.max_val_batches=2"))
    ((run, _),) = train_group([cfg])
    records = {p.name: p.read_bytes() for p in (run / "fetch").iterdir()}
    assert sorted(records) == ["rank_0.json", "rank_1.json"]
    capsys.readouterr()
    assert main(["predict", str(run), "--split", "test", "--out",
                 str(tmp_path / "parts.parquet")]) == 0
    said = capsys.readouterr().out
    assert "forecasting through the run's layout: exchange mode, 2 parts x 1 replicas" in said
    assert main(["predict", str(run), "--split", "test", "--whole", "--out",
                 str(tmp_path / "whole.parquet")]) == 0
    assert "through the run's layout" not in capsys.readouterr().out
    parts = pd.read_parquet(tmp_path / "parts.parquet")
    whole = pd.read_parquet(tmp_path / "whole.parquet")
    assert len(parts) == len(whole) > 0
    key = ["forecast_time", "target_time", "sensor_id", "horizon_step", "input_gaps"]
    pd.testing.assert_frame_equal(parts[key], whole[key])
    (channel,) = [c for c in whole.columns if c not in key]
    np.testing.assert_allclose(parts[channel], whole[channel], rtol=0, atol=1e-5)
    # the workers said what they read, and the training's records of its fetches stand
    assert {p.name: p.read_bytes() for p in (run / "fetch").iterdir()} == records
    assert not list(run.glob("predict*"))
