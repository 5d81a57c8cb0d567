"""Forecasts of a trained run for data it has not seen, as one long table (``distst predict``).

The best model of a run (or one checkpoint) forecasts from chosen windows of a prepared
dataset: the run's own, or new data of the same sensors, channels and step (a newer week of
the same network). Everything that made the run's inputs is the run's: its scaler, its input
and target channels, its time-of-day / day-of-week encoding and its graph; the windows are
named by the time of their last input step (``at``), or the newest one (``last``), or every
window of one of the run's splits (``split``, on the run's own data: what ``distst
evaluate`` scores).

The table has one row per (window, horizon step, sensor): ``forecast_time`` (the last input
step), ``target_time``, ``sensor_id``, ``horizon_step`` (1..H), one column per target
channel in the data's units, named by the channel, and ``input_gaps``: how many of the
window's input values of that sensor were missing (NaN or ``data.null_value``). A missing
input is fed to the model as the run fed it in training (0 after scaling: the training mean);
the column says which forecasts stand on such inputs. A window may reach past the end of the
data (``last``): its targets are the future, and the table holds forecasts only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distst.data.network import SensorNetwork, load_network
from distst.data.windows import WindowDataset, iterate_batches
from distst.errors import DiststError
from distst.storage import Location, is_uri, location

#: the table's leading columns; the target channels' columns and ``input_gaps`` follow
KEY_COLUMNS = ("forecast_time", "target_time", "sensor_id", "horizon_step")
FORMATS = ("parquet", "csv")


@dataclass
class Forecasts:
    """What :func:`predict` made: ``values`` [W, H, N, C_t] in data units, the windows'
    ``forecast_times`` [W] and ``target_times`` [W, H] (int64 ns), ``gaps`` [W, N] (missing
    input values per window and sensor), the ``sensor_ids`` [N] and ``channels`` [C_t]."""

    model: str
    values: np.ndarray
    forecast_times: np.ndarray
    target_times: np.ndarray
    gaps: np.ndarray
    sensor_ids: list[str]
    channels: list[str]

    def table(self):
        """The long table (a pandas DataFrame), rows ordered by window, horizon step, sensor."""
        import pandas as pd

        w, h, n, _ = self.values.shape
        cols = {
            "forecast_time": pd.to_datetime(np.repeat(self.forecast_times, h * n)),
            "target_time": pd.to_datetime(np.repeat(self.target_times.reshape(-1), n)),
            "sensor_id": np.tile(np.asarray(self.sensor_ids, dtype=object), w * h),
            "horizon_step": np.tile(np.repeat(np.arange(1, h + 1, dtype=np.int16), n), w),
        }
        for c, name in enumerate(self.channels):
            cols[name] = self.values[..., c].reshape(-1)  # [W, H, N] -> rows
        # gaps: [W, N] -> the same for every horizon step of a window
        cols["input_gaps"] = np.repeat(self.gaps[:, None, :], h, axis=1).reshape(-1)
        return pd.DataFrame(cols)


def _ids(net: SensorNetwork) -> list[str]:
    return [str(x) for x in net.node_ids]


def match_network(run_net: SensorNetwork, new: SensorNetwork, where: str) -> np.ndarray:
    """The columns of ``new`` in the run's sensor order; refuses data whose sensors, channels
    or step differ from the run's, naming the difference."""
    if new.channels != run_net.channels:
        raise DiststError(f"{where}: channels {list(new.channels)} are not the run's "
                          f"{list(run_net.channels)}; prepare the data with the run's channels "
                          "in the same order")
    if not math.isclose(new.step_minutes, run_net.step_minutes):
        raise DiststError(f"{where}: a step of {new.step_minutes:g} minutes; the run was trained "
                          f"on {run_net.step_minutes:g}-minute steps, resample the data to that")
    have, want = _ids(new), _ids(run_net)
    where_new = {s: i for i, s in enumerate(have)}
    missing = [s for s in want if s not in where_new]
    extra = sorted(set(have) - set(want))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {len(missing)} of the run's sensors ({', '.join(missing[:5])}"
                         f"{'...' if len(missing) > 5 else ''})")
        if extra:
            parts.append(f"has {len(extra)} sensor(s) the run does not know ({', '.join(extra[:5])}"
                         f"{'...' if len(extra) > 5 else ''})")
        raise DiststError(f"{where}: {' and '.join(parts)}; the model forecasts the "
                          f"{len(want)} sensors of its graph, so the data must hold exactly those")
    return np.asarray([where_new[s] for s in want], dtype=np.int64)


def _fmt_time(ns: int) -> str:
    return str(np.datetime64(int(ns), "ns").astype("datetime64[s]")).replace("T", " ")


def window_starts(net: SensorNetwork, input_len: int, at: list[str] | None, last: bool,
                  where: str) -> np.ndarray:
    """Start steps of the windows whose last input step is at each of ``at`` (or the newest)."""
    ts = np.asarray(net.timestamps, dtype=np.int64)
    if last:
        ends = [len(ts) - 1]
    else:
        ends = []
        for text in at or []:
            try:
                t = np.datetime64(text, "ns").astype(np.int64)
            except ValueError:
                raise DiststError(f"--at {text!r}: not a time; write it as 2012-03-08T14:30 (the "
                                  "data's own clock, like its timestamps)") from None
            i = int(np.searchsorted(ts, t))
            if i >= len(ts) or ts[i] != t:
                near = ts[min(max(i - 1, 0), len(ts) - 1)], ts[min(i, len(ts) - 1)]
                raise DiststError(
                    f"--at {text!r}: no step of {where} is at that time (its steps run from "
                    f"{_fmt_time(ts[0])} to {_fmt_time(ts[-1])} every {net.step_minutes:g} "
                    f"min; nearest {_fmt_time(near[0])} and {_fmt_time(near[1])})")
            ends.append(i)
    starts = np.asarray(ends, dtype=np.int64) - (input_len - 1)
    if starts.size and starts.min() < 0:
        bad = int(np.asarray(ends)[np.argmin(starts)])
        raise DiststError(
            f"a forecast at {_fmt_time(ts[bad])} needs {input_len} input steps and {where} has "
            f"{bad + 1} up to then; the first time with a full window is "
            f"{_fmt_time(ts[input_len - 1])}")
    # a window across a gap in the timestamps (a missing day) would feed the model steps that
    # are not consecutive, as training never did (distst.engine.bundle.drop_gap_windows)
    step_ns = int(round(net.step_minutes * 60e9))
    for s, e in zip(starts, ends):
        if ts[e] - ts[s] != (input_len - 1) * step_ns:
            raise DiststError(
                f"the window ending at {_fmt_time(ts[e])} spans "
                f"{(ts[e] - ts[s]) / 60e9:g} min from {_fmt_time(ts[s])}, not "
                f"{(input_len - 1) * net.step_minutes:g}: {where} has a gap in its timestamps "
                "there; forecast from a time with a full, gap-free input window")
    return starts


def predict(run: str | Path | Location, data: str | None = None, at: list[str] | None = None,
            last: bool = False, split: str | None = None) -> Forecasts:
    """Forecasts of the best model of ``run`` (a run directory or a checkpoint) from the
    windows ``at`` / ``last`` of ``data`` (a prepared dataset folder or URI; default the run's
    own), or from every window of the run's ``split``."""
    from distst.engine.entry import restore_best
    from distst.metrics import observed_mask

    chosen = sum([bool(at), bool(last), split is not None])
    if chosen != 1:
        raise DiststError("say which windows to forecast from: --at TIME [TIME ...], --last or "
                          "--split NAME (one of them)")
    if split is not None and data is not None:
        raise DiststError(f"--split {split} forecasts the run's own windows; --data gives new "
                          "data, from which --at or --last choose the windows")
    trainer = restore_best(run, split or "test")
    cfg, bundle = trainer.cfg, trainer.bundle
    run_net = bundle.network
    lin, horizon = bundle.input_len, bundle.horizon
    if split is not None:
        net, cols, where = run_net, None, f"the run's dataset {bundle.dataset_dir}"
        starts = np.asarray(bundle.splits[split], dtype=np.int64)
    else:
        if data is None:
            net, cols, where = run_net, None, f"the run's dataset {bundle.dataset_dir}"
        else:
            where = f"dataset {data}"
            if is_uri(data):
                from distst.config import DataConfig
                from distst.engine.provision import fetch_dataset

                local = fetch_dataset(DataConfig(path=data))[0]
            else:
                local = location(data).local
            if not (Path(local) / "meta.json").is_file():
                raise DiststError(f"{where}: no meta.json; give a folder that `distst data "
                                  "prepare` (or `distst data synth`) wrote")
            net = load_network(local)
            cols = match_network(run_net, net, where)
        starts = window_starts(net, lin, at, last, where)
    if starts.size == 0:
        raise DiststError(f"split {split!r} of the run has no windows to forecast from")
    ts = np.asarray(net.timestamps, dtype=np.int64)
    step_ns = int(round(net.step_minutes * 60e9))
    # only the steps the windows read, plus the horizon past the end of the data (a window
    # at the newest step forecasts the future): [lo, hi) of the series, padded with NaN
    lo, hi = int(starts.min()), int(starts.max()) + lin
    pad = max(0, int(starts.max()) + lin + horizon - len(ts))
    vals = np.asarray(net.values[lo:hi + horizon - pad])
    if cols is not None:
        vals = vals[:, cols]  # the run's sensor order
    span_ts = ts[lo:hi + horizon - pad]
    if pad:
        vals = np.concatenate([vals, np.full((pad, *vals.shape[1:]), np.nan, vals.dtype)])
        span_ts = np.concatenate([span_ts, ts[-1] + step_ns * np.arange(1, pad + 1)])
    ds = WindowDataset(vals, span_ts, starts - lo, input_len=lin, horizon=horizon,
                       scaler=bundle.scaler, input_channels=bundle.input_channels,
                       target_channels=bundle.target_channels,
                       add_time_of_day=bundle.datasets["train"].add_time_of_day,
                       add_day_of_week=bundle.datasets["train"].add_day_of_week)
    outs = []
    trainer.model.eval()
    with torch.no_grad():
        for x, _ in iterate_batches(ds, max(1, cfg.train.eval_batch_size), shuffle=False,
                                    drop_last=False, even=False):
            outs.append(trainer.forecast(trainer.model, x.to(trainer.device)).cpu().numpy())
    # input gaps per window and sensor: [W, L, N, C_in] -> [W, N]
    rel = starts - lo
    idx = rel[:, None] + np.arange(lin)[None, :]  # [W, L]
    inputs = torch.from_numpy(np.asarray(vals[idx][..., bundle.input_channels], np.float64))
    gaps = (~observed_mask(inputs, trainer.null)).sum(dim=(1, 3)).numpy().astype(np.int32)
    forecast_times = span_ts[rel + lin - 1]
    target_times = span_ts[rel[:, None] + lin + np.arange(horizon)[None, :]]
    return Forecasts(cfg.model.name, np.concatenate(outs).astype(np.float32),
                     forecast_times, target_times, gaps, _ids(run_net),
                     [run_net.channels[c] for c in bundle.target_channels])


def write_table(fc: Forecasts, out: str | Path, fmt: str | None = None) -> str:
    """Writes the long table to ``out`` (a path or URI) as Parquet, or CSV when ``fmt`` is
    "csv" or ``out`` ends in .csv; whole or not at all. Returns the format written."""
    fmt = fmt or ("csv" if str(out).lower().endswith(".csv") else "parquet")
    if fmt not in FORMATS:
        raise DiststError(f"--format {fmt!r}: choices: {', '.join(FORMATS)}")
    df = fc.table()
    if fmt == "csv":
        data = df.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S").encode()
    else:
        import io

        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        data = buf.getvalue()
    dest = location(out)
    if dest.is_dir():
        raise DiststError(f"--out {out}: is a folder; give a file name (forecasts.parquet)")
    dest.parent.mkdir()
    dest.write_bytes(data)  # atomic: a temp name, then a rename (distst.storage)
    return fmt
