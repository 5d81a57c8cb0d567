"""A trained run's forecasts, for people to look at: the best model's predictions for a few
sensors over one day of the test split beside the truth, and its error at every sensor.

What :func:`run_forecasts` returns is plain numpy (the plots, :mod:`distst.plots.run`, know
nothing of models): the whole split is predicted once, in order, as :meth:`Trainer.evaluate`
does, so the per-sensor errors add up to the run's test MAE.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from distst.data.windows import iterate_batches
from distst.engine.entry import restore_best
from distst.errors import DiststError
from distst.graph.spatial import is_latlon
from distst.metrics import observed_mask
from distst.storage import Location

#: sensors drawn when none are named: the ones at these quantiles of the per-sensor MAE
DEFAULT_QUANTILES = (0.1, 0.5, 0.9)


def pick_sensors(node_ids: np.ndarray, mae: np.ndarray, wanted: list[str] | None) -> list[int]:
    """Indices of ``wanted`` sensor ids, or by default a well, a typically and a badly
    forecast sensor (10th, 50th and 90th percentile of the per-sensor MAE)."""
    ids = [str(x) for x in node_ids]
    if wanted:
        where = {s: i for i, s in enumerate(ids)}
        missing = [s for s in wanted if s not in where]
        if missing:
            raise DiststError(
                f"--sensors: sensor id {missing[0]!r} is not in the dataset; its {len(ids)} "
                f"sensor ids start {', '.join(ids[:8])}")
        return [where[s] for s in wanted]
    scored = np.flatnonzero(np.isfinite(mae))
    if scored.size == 0:
        raise DiststError("the test split has no observed target at any sensor; nothing to plot")
    order = scored[np.argsort(mae[scored], kind="stable")]
    picks = [int(order[min(len(order) - 1, int(q * len(order)))]) for q in DEFAULT_QUANTILES]
    return list(dict.fromkeys(picks))  # a tiny graph may pick one sensor twice


def run_forecasts(run: str | Path | Location, sensors: list[str] | None = None,
                  split: str = "test") -> dict:
    """The best model of ``run`` (a run directory or checkpoint) over ``split``.

    Returns ``model``, ``channel`` (the first target channel's name), ``step_minutes``,
    ``horizon``, ``sensor_ids`` and ``sensors`` (indices), ``steps`` (indices into the series)
    and ``times`` (datetime64 [D]) of one day from the first step every horizon step forecasts, ``truth`` [D, S] (NaN where missing),
    ``pred`` {h: [D, S]} for the first and last horizon step h (1-based), ``mae_per_sensor``
    [N] (masked MAE over every window and horizon step; NaN for a sensor never observed) and
    ``count_per_sensor`` [N] (the observed targets it averages),
    ``coords`` [N, 2] or None and ``latlon``.
    """
    trainer = restore_best(run, split)
    cfg, bundle = trainer.cfg, trainer.bundle
    ds = bundle.datasets[split]
    net = bundle.network
    horizon, lin = bundle.horizon, ds.input_len
    n = net.num_nodes
    err_sum = np.zeros(n)
    count = np.zeros(n)
    outs = []  # [B, H, N] of the first target channel, in window order
    trainer.model.eval()
    with torch.no_grad():
        for x, y in iterate_batches(ds, max(1, cfg.train.eval_batch_size), shuffle=False,
                                    drop_last=False, even=False):
            # [B, H, N, C_target], data units
            out = trainer.forecast(trainer.model, x.to(trainer.device)).cpu()
            mask = observed_mask(y, trainer.null)
            err = torch.where(mask, (out - torch.nan_to_num(y)).abs(), torch.zeros_like(out))
            err_sum += err.sum(dim=(0, 1, 3)).double().numpy()
            count += mask.sum(dim=(0, 1, 3)).double().numpy()
            outs.append(out[..., 0].numpy())
    with np.errstate(invalid="ignore", divide="ignore"):
        mae = np.where(count > 0, err_sum / np.maximum(count, 1), np.nan)
    picks = pick_sensors(net.node_ids, mae, sensors)
    pred_all = np.concatenate(outs)[:, :, picks]  # [S_windows, H, S_sensors]
    starts = np.asarray(ds.starts)
    # the first step that every horizon step forecasts, and one day from there
    t0 = int(starts[0]) + lin + horizon - 1
    last = int(starts[-1]) + lin  # the last step the first horizon step forecasts
    days = max(1, min(bundle.steps_per_day, last - t0 + 1))
    steps = np.arange(t0, t0 + days)
    pred = {}
    for h in sorted({1, horizon}):
        target = starts + lin + h - 1  # the step window i forecasts at horizon step h
        at = np.full((days, len(picks)), np.nan, dtype=np.float64)
        pos = np.searchsorted(target, steps)
        ok = (pos < len(target)) & (target[np.minimum(pos, len(target) - 1)] == steps)
        at[ok] = pred_all[pos[ok], h - 1]
        pred[h] = at
    channel = ds.target_channels[0]
    truth = np.asarray(net.values[t0:t0 + days][:, picks, channel], dtype=np.float64)
    mask = observed_mask(torch.from_numpy(truth), trainer.null).numpy()
    truth = np.where(mask, truth, np.nan)
    coords = None if net.coords is None else np.asarray(net.coords, dtype=np.float64)
    return {"model": cfg.model.name, "channel": net.channels[channel],
            "step_minutes": net.step_minutes, "horizon": horizon,
            "sensor_ids": [str(net.node_ids[i]) for i in picks], "sensors": picks,
            "steps": steps, "times": np.asarray(net.timestamps[t0:t0 + days]).astype("datetime64[ns]"), "truth": truth, "pred": pred,
            "mae_per_sensor": mae, "count_per_sensor": count, "coords": coords,
            "latlon": bool(coords is not None and is_latlon(net, coords)),
            "generated": bool(net.source.get("generator"))}
