"""A training run's pictures: ``curves.png`` (training loss and validation MAE per epoch,
from metrics.jsonl) and ``horizon.png`` (test MAE at every horizon step against HA's, from
test_metrics.json). Forecasts against the truth and per-sensor error maps need the model
and the data, and are not drawn here yet."""

from __future__ import annotations

import json

from distst.errors import DiststError
from distst.plots.common import drawn_lines, finish_axes, pyplot
from distst.storage import Location


def plot_run(run_dir: Location, out: Location) -> dict:
    log = run_dir / "metrics.jsonl"
    if not log.is_file():
        raise DiststError(f"{run_dir}: no metrics.jsonl; is it a run directory (distst train "
                          "prints 'run directory: ...')?")
    recs = [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]
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
        by_step = json.loads(tm.read_text()).get("mae_by_step")
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
