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

Where the forecasts are made: :func:`forecast_job` decides everything once (windows, data,
layout) into a :class:`ForecastJob`; its :meth:`ForecastJob.piece` is what one worker makes
(the whole graph in one process, or one part of the run's plan for a run trained in shard or
exchange mode, on the Ray workers of ``distst.runtime.ray_train.predict_ray``), and
:meth:`ForecastJob.assemble` puts the pieces together in the run's sensor order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distst.config import Config
from distst.data.network import SensorNetwork, load_network
from distst.data.windows import WindowDataset, iterate_batches
from distst.engine.bundle import build_bundle
from distst.engine.context import Context
from distst.errors import DiststError
from distst.layout import Layout
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


@dataclass(frozen=True)
class ForecastPiece:
    """One worker's forecasts: its owned sensors' rows (``nodes``: their positions in the run's
    sensor order), ``values`` [W, H, n, C_t] and ``gaps`` [W, n]; the windows' times."""

    nodes: np.ndarray
    values: np.ndarray
    gaps: np.ndarray
    forecast_times: np.ndarray
    target_times: np.ndarray


@dataclass(frozen=True)
class ForecastJob:
    """What forecasting a run takes, decided once by :func:`forecast_job` and handed to every
    worker that makes a piece of it (:meth:`piece`): the checkpoint, the run's config (fitted
    to the layout the forecast runs in), the data and its windows.

    ``plan_dir`` set: the run's own layout, one worker per part of the plan (shard: each part
    with its halo, as the run trained and scored; exchange: each boundary fetched from its
    owner, so the forecasts are the whole graph's); None: the whole graph in one process."""

    checkpoint: str
    cfg: Config
    dataset_dir: str
    #: new data (a prepared dataset folder or URI); None: the run's own series
    data: str | None
    #: the new data's column of each of the run's sensors (None: the run's own data)
    cols: np.ndarray | None
    #: the windows' first input steps in the data's series
    starts: np.ndarray
    plan_dir: str | None = None
    #: the whole graph's Laplacian eigenvalue for models that ask for the exact one
    lambda_max: float | None = None
    model: str = ""
    sensor_ids: tuple = ()
    channels: tuple = ()

    @property
    def layout(self) -> Layout:
        return Layout.of(self.cfg) if self.plan_dir is not None else Layout()

    def piece(self, ctx: Context | None = None) -> ForecastPiece:
        """This worker's forecasts (``ctx``: its rank; None: the whole graph in this process).
        Every worker of a layout calls it together: exchange mode's products are collective."""
        from distst.engine.entry import open_worker_data, restore_best
        from distst.metrics import observed_mask

        part = None
        if self.plan_dir is not None:
            _, part = open_worker_data(self.cfg, self.dataset_dir, self.plan_dir, ctx)
        trainer = restore_best(self.checkpoint, cfg=self.cfg, part=part, ctx=ctx,
                               lambda_max=self.lambda_max)
        bundle = trainer.bundle
        lin, horizon = bundle.input_len, bundle.horizon
        if self.data is None:  # the run's own series: the part's columns (inner, halo) or all
            net, cols = bundle.network, None
        else:
            net = load_network(_local_data(self.data))
            cols = self.cols if part is None else self.cols[part.nodes]
        ts = np.asarray(net.timestamps, dtype=np.int64)
        step_ns = int(round(net.step_minutes * 60e9))
        starts = self.starts
        # only the steps the windows read, plus the horizon past the end of the data (a
        # window at the newest step forecasts the future): [lo, hi) of the series, padded
        lo, hi = int(starts.min()), int(starts.max()) + lin
        pad = max(0, int(starts.max()) + lin + horizon - len(ts))
        vals = np.asarray(net.values[lo:hi + horizon - pad])
        if cols is not None:
            vals = vals[:, cols]  # [T', N_local, C] in the run's (or the part's) sensor order
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
        net_fn = trainer.wrapped
        net_fn.eval()
        with torch.no_grad():
            for x, _ in iterate_batches(ds, max(1, self.cfg.train.eval_batch_size),
                                        shuffle=False, drop_last=False, even=False):
                out = trainer.forecast(net_fn, x.to(trainer.device))
                outs.append(trainer.par.inner(out).cpu().numpy())  # owned sensors only
        inner = trainer.par.num_inner
        # input gaps per window and owned sensor: [W, L, n, C_in] -> [W, n]
        rel = starts - lo
        idx = rel[:, None] + np.arange(lin)[None, :]  # [W, L]
        inputs = torch.from_numpy(np.asarray(vals[idx][:, :, :inner][..., bundle.input_channels],
                                             np.float64))
        gaps = (~observed_mask(inputs, trainer.null)).sum(dim=(1, 3)).numpy().astype(np.int32)
        nodes = (np.asarray(part.inner_global, dtype=np.int64) if part is not None
                 else np.arange(inner, dtype=np.int64))
        return ForecastPiece(nodes, np.concatenate(outs).astype(np.float32), gaps,
                             span_ts[rel + lin - 1],
                             span_ts[rel[:, None] + lin + np.arange(horizon)[None, :]])

    def assemble(self, pieces: list[ForecastPiece]) -> Forecasts:
        """The pieces of every part as one set of forecasts in the run's sensor order; every
        sensor exactly once, or the pieces are refused (a part lost or forecast twice)."""
        n = len(self.sensor_ids)
        seen = np.zeros(n, dtype=np.int64)
        for p in pieces:
            np.add.at(seen, p.nodes, 1)
        if (seen != 1).any():
            bad = np.flatnonzero(seen != 1)
            raise DiststError(f"the forecast's pieces cover sensor {self.sensor_ids[bad[0]]} "
                              f"{int(seen[bad[0]])} times (and {bad.size - 1} more not once); "
                              "every part of the plan must forecast its own sensors once")
        first = pieces[0]
        w, h, _, c = first.values.shape
        values = np.empty((w, h, n, c), dtype=np.float32)
        gaps = np.empty((w, n), dtype=np.int32)
        for p in pieces:
            values[:, :, p.nodes] = p.values
            gaps[:, p.nodes] = p.gaps
        return Forecasts(self.model, values, first.forecast_times, first.target_times, gaps,
                         list(self.sensor_ids), list(self.channels))


def _local_data(data: str) -> str:
    """A prepared dataset given as a folder or URI, as a local folder (a URI is fetched into
    this node's cache once)."""
    if is_uri(data):
        from distst.config import DataConfig
        from distst.engine.provision import fetch_dataset

        return str(fetch_dataset(DataConfig(path=data), quiet=True)[0])
    local = location(data).local
    if not (Path(local) / "meta.json").is_file():
        raise DiststError(f"dataset {data}: no meta.json here; give a folder that `distst data "
                          "prepare` (or `distst data synth`) wrote (on a cluster, a URI every "
                          "node reads)")
    return str(local)


def forecast_job(run: str | Path | Location, data: str | None = None,
                 at: list[str] | None = None, last: bool = False, split: str | None = None,
                 layout: bool = False) -> ForecastJob:
    """Everything checked and decided before any forecast is made: the windows ``at`` /
    ``last`` of ``data`` (a prepared dataset folder or URI; default the run's own) or every
    window of the run's ``split``, and with ``layout`` the run's own parts when it was
    trained on a partitioned layout (shard or exchange: one worker per part, one replica)."""
    from distst.engine.checkpoint import load_checkpoint, resolve_checkpoint
    from distst.engine.entry import graph_constants
    from distst.engine.provision import ensure_dataset, ensure_plan

    chosen = sum([bool(at), bool(last), split is not None])
    if chosen != 1:
        raise DiststError("say which windows to forecast from: --at TIME [TIME ...], --last or "
                          "--split NAME (one of them)")
    if split is not None and data is not None:
        raise DiststError(f"--split {split} forecasts the run's own windows; --data gives new "
                          "data, from which --at or --last choose the windows")
    ckpt = resolve_checkpoint(run)
    payload, cfg = load_checkpoint(ckpt)
    dataset_dir = payload["dataset_dir"]
    if not Path(dataset_dir).exists():
        dataset_dir = str(ensure_dataset(cfg.data))
    # the whole graph's series (memory-mapped) and splits: the windows are chosen here
    bundle = build_bundle(cfg.data, dataset_dir, scaler_state=payload["scaler"], notices=False)
    if split is not None and split not in bundle.splits:
        raise DiststError(f"split {split!r} does not exist; choices: {', '.join(bundle.splits)}")
    run_net = bundle.network
    where = f"the run's dataset {bundle.dataset_dir}"
    cols = None
    if split is not None:
        starts = np.asarray(bundle.splits[split], dtype=np.int64)
        if starts.size == 0:
            raise DiststError(f"split {split!r} of the run has no windows to forecast from")
        net = run_net
    else:
        net = run_net
        if data is not None:
            where = f"dataset {data}"
            net = load_network(_local_data(data))
            cols = match_network(run_net, net, where)
        starts = window_starts(net, bundle.input_len, at, last, where)
    plan_dir, lambda_max = None, None
    if layout and Layout.of(cfg).partitioned:
        plan_dir = str(ensure_plan(cfg, dataset_dir))
        lambda_max = graph_constants(cfg, bundle).get("lambda_max")
        # one replica of the parts: every part forecasts every window for its own sensors
        cfg.runtime.replicas = 1
        cfg = Layout.of(cfg).fit(cfg)
    return ForecastJob(str(ckpt), cfg, str(dataset_dir), data, cols, starts, plan_dir,
                       lambda_max, cfg.model.name, tuple(_ids(run_net)),
                       tuple(run_net.channels[c] for c in bundle.target_channels))


def predict(run: str | Path | Location, data: str | None = None, at: list[str] | None = None,
            last: bool = False, split: str | None = None) -> Forecasts:
    """Forecasts of the best model of ``run`` (a run directory or a checkpoint) from the
    windows ``at`` / ``last`` of ``data`` (a prepared dataset folder or URI; default the run's
    own), or from every window of the run's ``split``: the whole graph in this process.
    Through the run's own parts on Ray workers: ``distst.runtime.ray_train.predict_ray``."""
    job = forecast_job(run, data, at, last, split)
    return job.assemble([job.piece()])


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
