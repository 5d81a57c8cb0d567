"""A training run's pictures: ``curves.png`` (training loss and validation MAE per epoch,
from metrics.jsonl), ``horizon.png`` (test MAE at every horizon step against HA's, from
test_metrics.json), and from the best model's forecasts (:mod:`distst.engine.forecast`):
``forecast.png`` (a test day of a few sensors, truth against the forecasts 1 and H steps
ahead) and ``error_map.png`` (test MAE at each sensor, on its coordinates)."""

from __future__ import annotations

import json

import numpy as np

from distst.errors import DiststError
from distst.plots.common import drawn_lines, finish_axes, pyplot, save_png
from distst.storage import Location


def plot_run(run_dir: Location, out: Location) -> dict:
    log = run_dir / "metrics.jsonl"
    if not log.is_file():
        raise DiststError(f"{run_dir}: no metrics.jsonl; is it a run directory (distst train "
                          "prints 'run directory: ...')?")
    from distst.engine.logs import read_metrics_log

    recs = read_metrics_log(log)
    drawn = {}
    if recs:
        plt = pyplot()
        fig, (ax_l, ax_v) = plt.subplots(1, 2, figsize=(11, 4.2))
        epochs = [r["epoch"] for r in recs]
        ax_l.plot(epochs, [r["train_loss"] for r in recs], "o-", label="training loss")
        ax_l.set_xlabel("epoch")
        ax_l.set_ylabel("training loss (config's train.loss, data units)")
        ax_l.set_title("Training loss")
        ax_l.grid(True, alpha=0.3)
        ax_l.legend(fontsize=8)
        ax_v.plot(epochs, [r["val_mae"] for r in recs], "o-", label="validation MAE")
        ax_v.set_xticks(epochs)
        ax_l.set_xticks(epochs)
        left = drawn_lines(ax_l)
        drawn["curves.png"] = {"loss": left, **finish_axes(
            fig, ax_v, out / "curves.png", "epoch", "validation MAE (data units)",
            "Validation MAE", "val_mae", zero=False)}
    tm = run_dir / "test_metrics.json"
    if tm.is_file():
        try:
            by_step = json.loads(tm.read_text()).get("mae_by_step")
        except (ValueError, AttributeError, RecursionError) as e:
            raise DiststError(f"{tm}: not the test metrics distst writes ({e}); the run's final "
                              f"test evaluation was cut short (distst evaluate {run_dir} "
                              "computes it again); move the file away to plot the curves "
                              "only") from None
        if by_step:
            plt = pyplot()
            fig, ax = plt.subplots(figsize=(6.5, 4.2))
            minutes = by_step["step_minutes"]
            for who, label in (("test", "model"), ("ha", "HA")):
                if who in by_step:
                    xs = [minutes * (h + 1) for h in range(len(by_step[who]))]
                    ax.plot(xs, by_step[who], "o-", label=label)
            drawn["horizon.png"] = finish_axes(
                fig, ax, out / "horizon.png", "forecast horizon (minutes ahead)",
                "test MAE (data units)", "Test MAE per horizon step", "mae")
    return drawn


def _ahead(h: int, minutes: float) -> str:
    m = h * minutes
    return f"{m:g} min ahead" if m < 120 else f"{m / 60:g} h ahead"


def plot_forecasts(fc: dict, out: Location) -> dict:
    """``forecast.png``: one panel per sensor over one test day; ``error_map.png`` when the
    sensors have coordinates. Returns what each drew."""
    plt = pyplot()
    drawn = {}
    ids, mae = fc["sensor_ids"], fc["mae_per_sensor"]
    k = len(ids)
    fig, axes = plt.subplots(k, 1, figsize=(10, 2.6 * k + 0.6), sharex=True, squeeze=False)
    times = fc["times"].astype("datetime64[ns]")
    panels = {}
    for j, ax in enumerate(axes[:, 0]):
        ax.plot(times, fc["truth"][:, j], "k-", lw=1.4, label="truth")
        for h, pred in fc["pred"].items():
            ax.plot(times, pred[:, j], "-", lw=1.1,
                    label=f"{fc['model']}, {_ahead(h, fc['step_minutes'])}")
        ax.set_ylabel(f"{fc['channel']} (data units)")
        ax.set_title(f"sensor {ids[j]} (test MAE {mae[fc['sensors'][j]]:.2f} over all horizon "
                     "steps)", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        panels[ids[j]] = {ln.get_label(): [float(v) for v in ln.get_ydata()]
                          for ln in ax.get_lines()}
    import matplotlib.dates as mdates

    last = axes[-1, 0]
    last.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    day = str(times[0].astype("datetime64[D]"))
    last.set_xlabel(f"time of day (from {day} {str(times[0])[11:16]}, one step = "
                    f"{fc['step_minutes']:g} min)")
    fig.suptitle(f"Forecast against truth over one test day: {fc['model']}")
    fig.tight_layout()
    save_png(fig, out / "forecast.png")
    drawn["forecast.png"] = panels
    if fc["coords"] is not None:
        drawn["error_map.png"] = plot_error_map(fc, out)
    return drawn


def plot_error_map(fc: dict, out: Location) -> dict:
    """Test MAE at every sensor, coloured on the sensors' coordinates."""
    plt = pyplot()
    c, mae = fc["coords"], fc["mae_per_sensor"]
    if fc["latlon"]:  # coords are [lat, lon]: longitude runs east along x
        xs, ys, xl, yl = c[:, 1], c[:, 0], "longitude (degrees)", "latitude (degrees)"
    else:
        unit = " (km)" if fc.get("generated") else " (the dataset's planar units)"
        xs, ys, xl, yl = c[:, 0], c[:, 1], "x" + unit, "y" + unit
    fig, ax = plt.subplots(figsize=(7.5, 6))
    seen = np.isfinite(mae)
    sc = ax.scatter(xs[seen], ys[seen], c=mae[seen], s=18, cmap="viridis")
    if (~seen).any():
        ax.scatter(xs[~seen], ys[~seen], marker="x", c="0.6", s=14,
                   label=f"never observed in the test split ({int((~seen).sum())})")
    picked = fc["sensors"]
    ax.scatter(xs[picked], ys[picked], facecolors="none", edgecolors="r", s=90, lw=1.2,
               label="sensors drawn in forecast.png")
    ax.legend(fontsize=8, loc="best")
    for i, name in zip(picked, fc["sensor_ids"]):
        ax.annotate(name, (xs[i], ys[i]), textcoords="offset points", xytext=(5, 5),
                    fontsize=8, color="r")
    fig.colorbar(sc, ax=ax, label=f"test MAE of {fc['channel']} (data units)")
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    if fc["latlon"]:
        ax.set_aspect(1 / np.cos(np.deg2rad(np.nanmean(ys))))
    else:
        ax.set_aspect("equal")
    ax.set_title(f"{fc['model']}: test MAE per sensor, all horizon steps")
    save_png(fig, out / "error_map.png")
    return {"mae": [float(v) for v in mae[seen]], "x": [float(v) for v in xs[seen]],
            "y": [float(v) for v in ys[seen]]}
