"""The in-memory sensor network and the internal on-disk layout that every later step memory-maps.

Layout of a prepared dataset directory (written atomically: temp dir, then rename)::

    meta.json        name, format, shape, channels, step, time range, attribute names, source
    values.npy       float32 [T, N, C]; NaN marks a missing observation (opened with mmap)
    timestamps.npy   int64 [T], nanoseconds since the Unix epoch, strictly increasing
    node_ids.npy     unicode [N]
    edge_index.npy   int64 [2, E] (row = source, col = target)
    edge_weight.npy  float32 [E] (already turned into weights: kernel applied, threshold cut)
    coords.npy       float64 [N, 2] (optional: lat/lon or planar x/y)
    node_attrs.npy   float32 [N, A] (optional; names in meta.json "attr_names")

Missing values are stored as NaN, so no separate mask array doubles the memory; the mask of
any slice is ``~np.isnan(slice)``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distst.errors import DiststError
from distst.storage import atomic_dir, resolved

LAYOUT_VERSION = 1
DEFAULT_STEP_MINUTES = 5
#: series values that no sensor reports (1e30, float32's 3e38, inf): a unit or parsing error
IMPLAUSIBLE_ABS = 1e9
#: negatives below this share of a channel's observed values are reported as glitches
NEGATIVE_GLITCH_SHARE = 0.01
#: the instants timestamps.npy can hold: int64 nanoseconds since 1970 (the lowest int64 is NaT)
TIME_MIN_NS, TIME_MAX_NS = int(np.iinfo(np.int64).min) + 1, int(np.iinfo(np.int64).max)


def ns_text(ns: int) -> str:
    """An int64-nanosecond instant as 'YYYY-MM-DD HH:MM:SS'."""
    # sliced, not cast to seconds: numpy's cast of the lowest values wraps to 2262
    return str(np.datetime64(int(ns), "ns"))[:19].replace("T", " ")


def regular_times(start, n: int, step_ns: int, origin: str, lead: int = 0) -> np.ndarray:
    """``n`` timestamps (int64 ns) from ``start`` (a date-time string, ``datetime`` or
    ``np.datetime64``) every ``step_ns``.

    The span is checked in Python integers first: numpy and pandas arithmetic on int64
    nanoseconds wraps without a word past 2262-04-11 (a series that began in 2262 ended in
    1677) and a start before 1677-09-21 wrapped on conversion. ``lead`` steps before ``start``
    must fit too (the generator's burn-in)."""
    v = np.datetime64(start)  # its own unit: a 1500 or 2300 date is still exact here
    unit, count = np.datetime_data(v.dtype)
    if unit != "ns":
        v = v.astype("datetime64[us]")  # years to microseconds: exact over +-290,000 years
        unit, count = "us", 1
    per = {"ns": 1, "us": 1000}[unit] * count
    first = int(v.view(np.int64)) * per
    lo, hi = first - lead * step_ns, first + (n - 1) * step_ns
    if lo < TIME_MIN_NS or hi > TIME_MAX_NS:
        earliest, latest = TIME_MIN_NS + lead * step_ns, TIME_MAX_NS - (n - 1) * step_ns
        span = f"{n:,} steps of {step_ns / 60e9:g} min" + (f" (and {lead} before)" if lead else "")
        raise DiststError(
            f"{origin}: start {str(start)!r} with {span} runs outside the times distst stores "
            f"(int64 nanoseconds, {ns_text(TIME_MIN_NS)} to {ns_text(TIME_MAX_NS)}); give a "
            f"start between {ns_text(earliest)} and {ns_text(latest)}")
    return first + np.arange(n, dtype=np.int64) * np.int64(step_ns)


@dataclass
class SensorNetwork:
    """A weighted sensor graph plus a multivariate series per node.

    ``values`` is ``[T, N, C]`` float32 with NaN for missing observations; it may be a
    read-only ``np.memmap`` for large datasets.
    """

    name: str
    values: np.ndarray
    timestamps: np.ndarray
    node_ids: np.ndarray
    edge_index: np.ndarray
    edge_weight: np.ndarray
    channels: list[str] = field(default_factory=lambda: ["value"])
    coords: np.ndarray | None = None
    node_attrs: np.ndarray | None = None
    attr_names: list[str] = field(default_factory=list)
    source: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # -- shape helpers -------------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        return int(self.values.shape[0])

    @property
    def num_nodes(self) -> int:
        return int(self.values.shape[1])

    @property
    def num_channels(self) -> int:
        return int(self.values.shape[2])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def step_minutes(self) -> float:
        if self.num_steps < 2:
            return float(DEFAULT_STEP_MINUTES)
        return float((self.timestamps[1] - self.timestamps[0]) / 60e9)

    def validate(self) -> None:
        """Check the invariants every consumer relies on; raise DiststError naming the fix."""
        where = f"sensor network '{self.name}'"
        if self.values.ndim != 3:
            raise DiststError(f"{where}: values must be [T, N, C], got shape {self.values.shape}")
        t, n, c = self.values.shape
        if self.timestamps.shape != (t,):
            raise DiststError(
                f"{where}: {self.timestamps.shape[0]} timestamps for {t} steps; give one per step"
            )
        if t > 1 and not np.all(np.diff(self.timestamps) > 0):
            bad = int(np.argmax(np.diff(self.timestamps) <= 0)) + 1
            raise DiststError(
                f"{where}: timestamps must be strictly increasing, step {bad} is not; "
                "sort the series by time and drop duplicate rows"
            )
        if len(self.node_ids) != n:
            raise DiststError(
                f"{where}: series has {n} nodes but {len(self.node_ids)} node ids; "
                "the series columns and the graph must list the same sensors"
            )
        ids = np.asarray(self.node_ids).astype(str)
        if len(np.unique(ids)) != len(ids):
            order = np.argsort(ids, kind="stable")
            dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])[0]
            i, j = sorted((int(order[dup]), int(order[dup + 1])))
            raise DiststError(
                f"{where}: sensor id {str(ids[i])!r} appears twice (positions {i} and {j} of "
                f"{n}); every sensor needs its own id. Fix the source files and prepare again"
            )
        if self.edge_index.ndim != 2 or self.edge_index.shape[0] != 2:
            raise DiststError(f"{where}: edge_index must be [2, E], got {self.edge_index.shape}")
        if self.edge_weight.shape != (self.edge_index.shape[1],):
            raise DiststError(
                f"{where}: {self.edge_weight.shape[0]} edge weights for "
                f"{self.edge_index.shape[1]} edges"
            )
        if self.edge_index.size and (self.edge_index.min() < 0 or self.edge_index.max() >= n):
            raise DiststError(
                f"{where}: edge_index refers to node {int(self.edge_index.max())} but the "
                f"series has {n} nodes; the graph and the series must cover the same sensors"
            )
        if len(self.channels) != c:
            raise DiststError(f"{where}: {c} channels but names {self.channels}")
        if self.coords is not None and self.coords.shape != (n, 2):
            raise DiststError(f"{where}: coords must be [N, 2] = [{n}, 2], got {self.coords.shape}")
        if self.coords is not None and not np.isfinite(self.coords).all():
            i = int(np.argwhere(~np.isfinite(self.coords))[0][0])
            raise DiststError(
                f"{where}: sensor {str(self.node_ids[i])!r} has a non-finite position "
                f"{self.coords[i].tolist()}; fix the locations and prepare the dataset again"
            )
        if not np.isfinite(self.edge_weight).all() or (self.edge_weight < 0).any():
            k = int(np.argmax(~np.isfinite(self.edge_weight) | (self.edge_weight < 0)))
            raise DiststError(
                f"{where}: edge {int(self.edge_index[0, k])} -> {int(self.edge_index[1, k])} "
                f"has weight {self.edge_weight[k]}; weights must be finite and >= 0: fix the "
                "graph and prepare the dataset again"
            )
        if self.node_attrs is not None:
            if self.node_attrs.shape[0] != n or self.node_attrs.ndim != 2:
                raise DiststError(
                    f"{where}: node_attrs must be [N, A] with N={n}, got {self.node_attrs.shape}"
                )
            if len(self.attr_names) != self.node_attrs.shape[1]:
                raise DiststError(
                    f"{where}: {self.node_attrs.shape[1]} node attributes but names "
                    f"{self.attr_names}"
                )

    def check_observed(self, origin: str) -> None:
        """Refuse sensors with no observation at all: they cannot be scaled nor evaluated.

        Scans in chunks of time so a memory-mapped series is never loaded whole.
        """
        observed = np.zeros(self.num_nodes, dtype=bool)
        chunk = max(1, 2**26 // max(1, self.num_nodes * self.num_channels))
        for s in range(0, self.num_steps, chunk):
            block = np.asarray(self.values[s : s + chunk])
            observed |= (~np.isnan(block)).any(axis=(0, 2))
        if not observed.all():
            dead = np.flatnonzero(~observed)
            names = ", ".join(str(self.node_ids[i]) for i in dead[:5])
            more = f" and {len(dead) - 5} more" if len(dead) > 5 else ""
            raise DiststError(
                f"{origin}: sensor(s) {names}{more} have no observed value at all (all missing); "
                "remove them from both the series and the graph, or supply their data"
            )

    def check_finite(self, origin: str, fix: str = "prepare the dataset again from fixed raw "
                     "files (distst data prepare refuses infinite values)") -> None:
        """Refuse +-inf anywhere in the series (NaN marks a missing reading; inf is a broken
        file), naming the first one's row (step), time, sensor and channel, and the count.
        Chunked like check_observed, so a memory-mapped series is never loaded whole."""
        chunk = max(1, 2**26 // max(1, self.num_nodes * self.num_channels))
        first, count = None, 0
        for s in range(0, self.num_steps, chunk):
            inf = np.isinf(np.asarray(self.values[s : s + chunk]))
            n_inf = int(inf.sum())
            if n_inf and first is None:
                t, n, c = (int(i) for i in np.argwhere(inf)[0])
                first = (s + t, n, c)
            count += n_inf
        if first is None:
            return
        t, n, c = first
        raise DiststError(
            f"{origin}: {count} infinite value(s), the first at data row {t + 1} (time "
            f"{ns_text(self.timestamps[t])}), sensor {str(self.node_ids[n])!r}, channel "
            f"{self.channels[c]!r}: {self.values[t, n, c]}; {fix}"
        )

    # -- summary -------------------------------------------------------------------------
    def summary(self) -> dict:
        """Nodes, edges, steps, time range, missing ratio, value ranges and the implausible
        values (see ``IMPLAUSIBLE_ABS``), in one chunked scan. A channel without one observed
        value has min/max/mean None (a hand-edited file once printed -inf here)."""
        c_n = self.num_channels
        n_missing, total = 0, 0.0
        lo, hi = np.full(c_n, np.inf), np.full(c_n, -np.inf)
        count, sums = np.zeros(c_n), np.zeros(c_n)
        huge, neg = np.zeros(c_n, dtype=np.int64), np.zeros(c_n, dtype=np.int64)
        first_huge: list = [None] * c_n
        first_neg: list = [None] * c_n
        chunk = max(1, 2**26 // max(1, self.num_nodes * c_n))
        for s in range(0, self.num_steps, chunk):
            block = np.asarray(self.values[s : s + chunk], dtype=np.float64)  # [t, N, C]
            nan = np.isnan(block)
            n_missing += int(nan.sum())
            total += block.size
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing channel
                lo = np.fmin(lo, np.nanmin(block, axis=(0, 1)))
                hi = np.fmax(hi, np.nanmax(block, axis=(0, 1)))
                sums += np.nansum(block, axis=(0, 1))
                big, below = ~(np.abs(block) < IMPLAUSIBLE_ABS) & ~nan, block < 0
            count += (~nan).sum(axis=(0, 1))
            for flags, counts, firsts in ((big, huge, first_huge), (below, neg, first_neg)):
                counts += flags.sum(axis=(0, 1))
                for c in np.flatnonzero(flags.any(axis=(0, 1))):
                    if firsts[c] is None:
                        t, n = (int(i) for i in np.argwhere(flags[:, :, c])[0])
                        firsts[c] = (s + t, n, float(block[t, n, c]))
        seen = count > 0
        ts = self.timestamps.astype("datetime64[ns]")
        from distst.graph.adjacency import one_way_edges

        # Chebyshev models symmetrise a directed graph (data.symmetrize); say that it is one
        one_way, _ = one_way_edges(self.edge_index, self.num_nodes)
        implausible = []
        for c, name in enumerate(self.channels):
            if huge[c]:
                implausible.append(self._place(f"channel {name!r}: {int(huge[c]):,} value(s) "
                                               f"of magnitude >= {IMPLAUSIBLE_ABS:g}", *first_huge[c]))
            # a signed quantity has negatives by the thousand; a few in a speed, flow or
            # occupancy channel are glitches or a sign error
            if neg[c] and neg[c] < NEGATIVE_GLITCH_SHARE * count[c]:
                implausible.append(self._place(f"channel {name!r}: {int(neg[c]):,} negative "
                                               "value(s) in an otherwise non-negative channel",
                                               *first_neg[c]))
        return {
            "name": self.name,
            "nodes": self.num_nodes,
            "edges": self.num_edges,
            "one_way_edges": one_way,
            "steps": self.num_steps,
            "channels": list(self.channels),
            "step_minutes": self.step_minutes,
            "start": str(ts[0]) if len(ts) else None,
            "end": str(ts[-1]) if len(ts) else None,
            "missing_ratio": n_missing / total if total else 0.0,
            "min": [float(v) if k else None for v, k in zip(lo, seen)],
            "max": [float(v) if k else None for v, k in zip(hi, seen)],
            "mean": [float(v) if k else None for v, k in zip(sums / np.maximum(count, 1), seen)],
            "attributes": list(self.attr_names) + (["x", "y"] if self.coords is not None else []),
            "implausible": implausible,
        }

    def _place(self, what: str, t: int, n: int, v: float) -> str:
        return (f"{what}, the first at data row {t + 1} (time {ns_text(self.timestamps[t])}), "
                f"sensor {str(self.node_ids[n])!r}: {v:g}")


# -- on-disk layout ----------------------------------------------------------------------
def check_output_dir(out: str | Path, what: str, is_ours, inputs=(),
                     kind: str = "a distst dataset") -> Path:
    """Refuse an output folder that would replace something distst did not write.

    ``out`` is replaced as a whole (temp folder, then rename), so it may only be a folder
    ``is_ours`` recognises (a dataset, a plan), an empty folder or a new path; and never one
    of ``inputs`` (files or folders the command reads) nor a folder that contains one.
    """
    out = Path(out)
    target = resolved(out, what)
    for src in inputs:
        if not src:
            continue
        s = resolved(src, "input")
        if s == target or target in s.parents:
            raise DiststError(
                f"{what}: output {out} {'is' if s == target else 'contains'} the input {src}; "
                "writing there would delete the input. Choose a separate output folder"
            )
    if out.exists() and not is_ours(out) and (not out.is_dir() or any(out.iterdir())):
        raise DiststError(
            f"{what}: output {out} exists and is not {kind}; choose a new folder or remove "
            "it yourself first (it would be replaced as a whole)"
        )
    return out


def write_meta(net_like: dict, path: Path) -> None:
    path.write_text(json.dumps(net_like, indent=2, sort_keys=True) + "\n")


def build_meta(net: SensorNetwork) -> dict:
    return {
        "layout_version": LAYOUT_VERSION,
        "name": net.name,
        "num_steps": net.num_steps,
        "num_nodes": net.num_nodes,
        "num_channels": net.num_channels,
        "num_edges": net.num_edges,
        "channels": list(net.channels),
        "step_minutes": net.step_minutes,
        "attr_names": list(net.attr_names),
        "has_coords": net.coords is not None,
        "source": net.source,
    }


def save_network(net: SensorNetwork, out: str | Path, inputs=()) -> Path:
    """Write ``net`` in the internal layout at ``out`` (atomic: temp dir, then rename).

    ``out`` may only replace a distst dataset, never a foreign folder nor one of ``inputs``
    (the raw files it was read from) or a folder holding them (:func:`check_output_dir`).
    """
    files = list((net.source.get("files") or {}).values())
    out = check_output_dir(out, f"dataset '{net.name}'", is_dataset_dir, [*inputs, *files])
    with atomic_dir(out) as tmp:
        write_static_files(net, tmp)
        np.save(tmp / "values.npy", np.ascontiguousarray(net.values, dtype=np.float32))
        write_meta(build_meta(net), tmp / "meta.json")
    return out


def write_static_files(net: SensorNetwork, d: Path) -> None:
    """Everything but values.npy and meta.json (used by writers that stream the series)."""
    np.save(d / "timestamps.npy", np.asarray(net.timestamps, dtype=np.int64))
    np.save(d / "node_ids.npy", np.asarray(net.node_ids).astype(str))
    np.save(d / "edge_index.npy", np.asarray(net.edge_index, dtype=np.int64))
    np.save(d / "edge_weight.npy", np.asarray(net.edge_weight, dtype=np.float32))
    if net.coords is not None:
        np.save(d / "coords.npy", np.asarray(net.coords, dtype=np.float64))
    if net.node_attrs is not None:
        np.save(d / "node_attrs.npy", np.asarray(net.node_attrs, dtype=np.float32))


def is_dataset_dir(path: str | Path) -> bool:
    p = Path(path)
    return (p / "meta.json").is_file() and (p / "values.npy").is_file()


def load_network(path: str | Path, mmap: bool = True) -> SensorNetwork:
    """Open a prepared dataset; the series is memory-mapped read-only unless ``mmap=False``."""
    p = Path(path)
    if not p.exists():
        raise DiststError(
            f"dataset directory {p} does not exist; create it with 'distst data prepare' "
            "or 'distst data synth'"
        )
    if not is_dataset_dir(p):
        raise DiststError(
            f"{p} is not a prepared distst dataset (no meta.json/values.npy); "
            "convert raw files with 'distst data prepare --format ... --out DIR'"
        )
    try:
        meta = json.loads((p / "meta.json").read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        # RecursionError: arrays nested 100,000 deep, which json cannot descend
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise DiststError(f"{p / 'meta.json'} is not valid JSON ({why}); the dataset is "
                          "damaged: prepare it again") from None
    if meta.get("layout_version") != LAYOUT_VERSION:
        raise DiststError(
            f"{p / 'meta.json'}: layout_version {meta.get('layout_version')} but this distst "
            f"reads {LAYOUT_VERSION}; prepare the dataset again"
        )
    def load(name: str, required: bool = True, **kw):
        f = p / name
        if not f.exists():
            if not required:
                return None
            raise DiststError(f"dataset {p}: {name} is missing; the dataset is incomplete: "
                              "prepare it again")
        try:
            # allow_pickle=False: a dataset file can never carry Python objects
            return np.load(f, allow_pickle=False, **kw)
        except (ValueError, OSError, EOFError) as e:
            raise DiststError(f"{f} cannot be read ({str(e).splitlines()[0]}); the file is "
                              "truncated or damaged: prepare the dataset again") from None

    try:
        name, channels = meta["name"], list(meta["channels"])
    except (KeyError, TypeError):
        raise DiststError(f"{p / 'meta.json'} lacks 'name' or 'channels'; the dataset is "
                          "damaged: prepare it again") from None
    return SensorNetwork(
        name=name,
        values=load("values.npy", mmap_mode="r" if mmap else None),
        timestamps=load("timestamps.npy"),
        node_ids=load("node_ids.npy"),
        edge_index=load("edge_index.npy"),
        edge_weight=load("edge_weight.npy"),
        channels=channels,
        coords=load("coords.npy", required=False),
        node_attrs=load("node_attrs.npy", required=False),
        attr_names=list(meta.get("attr_names", [])),
        source=meta.get("source", {}),
    )
