"""What every distst picture shares: matplotlib on the Agg backend, a PNG written whole
through :mod:`distst.storage`, axis and legend finishing, and the values each figure drew
(read back from its own artists, so that tests can hold a picture to its data)."""

from __future__ import annotations

import io

from distst.storage import Location


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, where: Location) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    where.write_bytes(buf.getvalue())


def drawn_lines(ax) -> dict:
    return {ln.get_label(): ([float(v) for v in ln.get_xdata()],
                             [float(v) for v in ln.get_ydata()])
            for ln in ax.get_lines() if not ln.get_label().startswith("_")}


def finish_axes(fig, ax, where: Location, xlabel: str, ylabel: str, title: str, panel: str,
            zero: bool = True) -> dict:
    """Label, save and close a one-panel figure; returns what it drew."""
    if zero:
        ax.set_ylim(bottom=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    drawn = {panel: drawn_lines(ax)}
    save_png(fig, where)
    return drawn


def plain_log2_axes(ax, xs, ys=None) -> None:
    """Log2 axes whose ticks read 1, 2, 4 ... rather than 2^0, 2^1, 2^2."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(xs)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    if ys is not None:
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
