"""A sweep's picture: ``trials.png``, the sweep metric of every trial against each searched
value (from trials.csv; one panel per searched key)."""

from __future__ import annotations

import csv
import io
import math

from distst.errors import DiststError
from distst.plots.common import pyplot, save_png
from distst.storage import Location


def plot_sweep(sweep_dir: Location, out: Location, metric: str, keys: list[str]) -> dict:
    f = sweep_dir / "trials.csv"
    if not f.is_file():
        raise DiststError(f"{sweep_dir}: no trials.csv yet; the sweep has not finished "
                          f"(continue it with distst tune --resume {sweep_dir})")
    rows = list(csv.DictReader(io.StringIO(f.read_text())))
    plt = pyplot()
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(5 * max(1, len(keys)), 4.2),
                             squeeze=False)
    drawn = {}
    for ax, key in zip(axes[0], keys):
        pts = []
        for r in rows:
            try:
                y = float(r[metric])
            except (TypeError, ValueError):
                continue
            if math.isnan(y):
                continue
            pts.append((r[key], y))
        numeric = all(_is_float(x) for x, _ in pts)
        xs = [float(x) if numeric else x for x, _ in pts]
        ys = [y for _, y in pts]
        ax.scatter(xs, ys)
        if numeric and xs and min(xs) > 0 and max(xs) / min(xs) >= 20:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(f"{metric} (best epoch of the trial)")
        ax.set_title(f"{metric} against {key.split('.')[-1]}")
        ax.grid(True, alpha=0.3)
        drawn[key] = (xs, ys)
    save_png(fig, out / "trials.png")
    return {"trials.png": drawn}


def _is_float(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False
