"""A scaling study's pictures (PNG, matplotlib): speedup and efficiency against workers with the
ideal line, weak-scaling step time, memory per worker, the time breakdown of each run, and
accuracy against halo depth.

Every function draws from per-run records (:func:`distst.scale.driver.per_run`) and returns
what it drew, read back from the figure's own artists ({panel: {label: (x, y)}}), so that a
test can hold the picture to runs.csv.
"""

from __future__ import annotations

from distst.engine.timing import PHASES
from distst.plots.common import drawn_lines, finish_axes, plain_log2_axes, pyplot, save_png
from distst.storage import Location

_COLORS = {"data": "#8c8c8c", "forward": "#1f77b4", "backward": "#ff7f0e", "idle": "#d62728",
           "allreduce": "#9467bd", "optimizer": "#2ca02c"}


def group_label(rec: dict, keys: list[str]) -> str:
    extra = ", ".join(f"{k.split('.')[-1]}={rec.get(k)}" for k in keys)
    return f"{rec['mode']}, {rec['graph_nodes']} sensors" + (f", {extra}" if extra else "")


def _groups(runs: list[dict], keys: list[str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in runs:
        out.setdefault(group_label(r, keys), []).append(r)
    return {k: sorted(v, key=lambda r: r["workers"]) for k, v in out.items()}


def plot_scaling(runs: list[dict], keys: list[str], where: Location) -> dict:
    """Strong scaling: speedup (log-log, ideal = workers / base workers) and efficiency."""
    plt = pyplot()
    fig, (ax_s, ax_e) = plt.subplots(1, 2, figsize=(11, 4.2))
    lo, hi = None, 1
    for label, recs in _groups(runs, keys).items():
        base = recs[0]
        ws = [r["workers"] for r in recs]
        speed = [base["run_step_s"] / r["run_step_s"] for r in recs]
        eff = [s * base["workers"] / w for s, w in zip(speed, ws)]
        ax_s.plot(ws, speed, "o-", label=label)
        ax_e.plot(ws, eff, "o-", label=label)
        lo = base["workers"] if lo is None else min(lo, base["workers"])
        hi = max(hi, max(ws))
    hi = max(hi, 2 * lo)
    ax_s.plot([lo, hi], [1, hi / lo], "k--", lw=1, label="_ideal")  # speedup = workers / base
    workers = [r["workers"] for r in runs]
    plain_log2_axes(ax_s, workers, ys=True)
    ax_s.set_xlabel("workers")
    ax_s.set_ylabel("speedup over the fewest workers (x)")
    ax_s.set_title("Strong scaling (dashed: ideal)")
    ax_e.axhline(1.0, color="k", ls="--", lw=1)
    plain_log2_axes(ax_e, workers)
    ax_e.set_ylim(0, 1.15)
    ax_e.set_xlabel("workers")
    ax_e.set_ylabel("parallel efficiency (speedup x base workers / workers)")
    ax_e.set_title("Efficiency")
    for ax in (ax_s, ax_e):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    drawn = {"speedup": drawn_lines(ax_s), "efficiency": drawn_lines(ax_e)}
    save_png(fig, where)
    return drawn


def plot_weak(runs: list[dict], keys: list[str], where: Location) -> dict:
    """Weak scaling: step time against workers (flat is ideal)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, recs in _groups([{**r, "graph_nodes": "growing"} for r in runs], keys).items():
        ax.plot([r["workers"] for r in recs], [1000 * r["run_step_s"] for r in recs], "o-",
                label=label)
    plain_log2_axes(ax, [r["workers"] for r in runs])
    return finish_axes(fig, ax, where, "workers (sensors per worker fixed)", "step time (ms)",
                   "Weak scaling (flat is ideal)", "step_ms")


def plot_memory(runs: list[dict], keys: list[str], where: Location) -> dict:
    """Peak host RSS of the largest worker (and CUDA max allocated where measured)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, recs in _groups(runs, keys).items():
        ws = [r["workers"] for r in recs]
        ax.plot(ws, [r["peak_rss_mb"] for r in recs], "o-", label=f"{label}: host RSS")
        cuda = [r["cuda_max_allocated_mb"] for r in recs]
        if all(c != "" for c in cuda):
            ax.plot(ws, cuda, "s--", label=f"{label}: CUDA allocated")
    plain_log2_axes(ax, [r["workers"] for r in runs])
    return finish_axes(fig, ax, where, "workers (= parts in shard mode)",
                   "peak memory per worker (MiB)", "Memory per worker", "memory_mb")


def plot_breakdown(runs: list[dict], where: Location) -> dict:
    """Stacked bars: each run's median step split into its phases (ms)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(runs) + 2), 4.6))
    names = [r["run"] for r in runs]
    bottom = [0.0] * len(runs)
    drawn = {}
    for p in PHASES:
        vals = [1000 * r[f"{p}_s"] for r in runs]
        ax.bar(range(len(runs)), vals, bottom=bottom, color=_COLORS[p], label=p)
        drawn[p] = (list(range(len(runs))), vals)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(runs)), names, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("median time per step and worker (ms)")
    ax.set_title("Where a step's time goes")
    ax.set_ylim(0, 1.3 * max(bottom))  # room for the legend above the tallest bar
    ax.legend(fontsize=8, ncol=3, loc="upper right")
    ax.grid(True, axis="y", alpha=0.3)
    save_png(fig, where)
    return {"phases_ms": drawn}


def plot_accuracy(runs: list[dict], keys: list[str], where: Location) -> dict:
    """Validation and test MAE against halo hops (shard runs with accuracy)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    rest = [k for k in keys if k != "partition.halo_hops"]
    groups = {}
    for r in runs:
        if r["test_mae"] != "" and r.get("partition.halo_hops") is not None:
            groups.setdefault(group_label(r, rest) + f", P={r['workers']}", []).append(r)
    for label, recs in groups.items():
        recs.sort(key=lambda r: r["partition.halo_hops"])
        hops = [r["partition.halo_hops"] for r in recs]
        ax.plot(hops, [r["test_mae"] for r in recs], "o-", label=f"{label}: test")
        ax.plot(hops, [r["best_val_mae"] for r in recs], "s--", label=f"{label}: best val")
    ax.set_xticks(sorted({r["partition.halo_hops"] for recs in groups.values() for r in recs}))
    return finish_axes(fig, ax, where, "halo depth (hops)", "MAE (data units)",
                   "Accuracy against halo depth", "mae", zero=False)


def plot_study(sdir: Location, runs: list[dict], grid: list[str], weak: bool) -> dict:
    """Every picture the runs support, into ``sdir``; returns {file: what it drew}."""
    keys = [k for k in grid if k not in ("runtime.workers", "partition.parts", "runtime.mode",
                                         "nodes_per_worker", "graph")]
    out = {}
    if not runs:
        return out
    if weak:
        out["weak_scaling.png"] = plot_weak(runs, keys, sdir / "weak_scaling.png")
    elif any(len(v) > 1 for v in _groups(runs, keys).values()):
        out["scaling.png"] = plot_scaling(runs, keys, sdir / "scaling.png")
    out["memory.png"] = plot_memory(runs, keys, sdir / "memory.png")
    out["breakdown.png"] = plot_breakdown(runs, sdir / "breakdown.png")
    if "partition.halo_hops" in grid and any(r["test_mae"] != "" for r in runs):
        out["accuracy.png"] = plot_accuracy(runs, keys, sdir / "accuracy.png")
    return out


__all__ = ["plot_study", "plot_scaling", "plot_weak", "plot_memory", "plot_breakdown",
           "plot_accuracy"]
