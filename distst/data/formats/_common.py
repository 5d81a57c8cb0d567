"""What the format readers share: the graph-only result, small file helpers, timestamps, and
the documented start dates of the files without timestamps (see :mod:`distst.data.formats`)."""

from __future__ import annotations

import glob
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from distst.data.network import SensorNetwork, ns_text, regular_times
from distst.errors import DiststError


@dataclass
class SensorGraph:
    """The graph part of a dataset: node ids, weighted directed edges, optional coordinates."""

    node_ids: np.ndarray  # str [N]
    edge_index: np.ndarray  # int64 [2, E]
    edge_weight: np.ndarray  # float32 [E]
    coords: np.ndarray | None = None  # float64 [N, 2]
    node_attrs: np.ndarray | None = None  # float32 [N, A]
    attr_names: list[str] = field(default_factory=list)
    source: dict = field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return int(len(self.node_ids))

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])


@dataclass(frozen=True)
class FormatSpec:
    name: str
    read_dataset: Callable[..., SensorNetwork]
    read_graph: Callable[..., SensorGraph]
    doc: str


# Options every reader accepts for turning matrices / edge lists into weights.
_KERNEL_KEYS = ("convention", "sigma", "threshold", "scale", "sigma2", "self_loops", "symmetric")


# -- small helpers -------------------------------------------------------------------------
def _file(base: Path, given, default: str | None, fmt: str, what: str, option: str,
          required: bool = True) -> Path | None:
    """Resolve an override (relative to ``base``) or the default name; check it exists."""
    if given is None and default is None:
        return None
    p = Path(given) if given is not None else base / default
    if given is not None and not p.is_absolute() and (base / p).exists():
        p = base / p  # relative overrides are relative to the dataset folder first
    if not p.is_file():
        if not required and given is None:
            return None
        raise DiststError(
            f"{fmt}: {what} file {p} not found; put it in {base} or pass {option}=PATH"
        )
    return p


def _glob_one(base: Path, pattern: str, fmt: str, what: str, option: str,
              required: bool = True) -> Path | None:
    hits = sorted(Path(h) for h in glob.glob(str(base / pattern)))
    if len(hits) == 1:
        return hits[0]
    if not hits:
        if not required:
            return None
        raise DiststError(
            f"{fmt}: no {what} file matching {base / pattern}; put it in {base} or pass "
            f"{option}=PATH"
        )
    raise DiststError(
        f"{fmt}: several {what} files match {base / pattern} "
        f"({', '.join(h.name for h in hits)}); pass {option}=PATH to pick one"
    )


def _base(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise DiststError(f"dataset directory {p} does not exist; pass the folder holding the files")
    return p if p.is_dir() else p.parent


def _regular_timestamps(start, n: int, step_minutes: float, origin: str) -> np.ndarray:
    try:
        t0 = pd.Timestamp(start)
    except (ValueError, TypeError) as e:
        raise DiststError(
            f"{origin}: start={start!r} is not a date ({e}); pass e.g. start='2012-03-01'"
        ) from None
    if not step_minutes > 0:
        raise DiststError(f"{origin}: step_minutes={step_minutes} must be > 0")
    return regular_times(t0, n, int(round(step_minutes * 60e9)), origin)


def _check_increasing(ts: np.ndarray, origin: str) -> None:
    if len(ts) > 1:
        d = np.diff(ts)
        if not (d > 0).all():
            k = int(np.argmax(d <= 0)) + 1
            when = pd.Timestamp(int(ts[k]))
            raise DiststError(
                f"{origin}: timestamps are not strictly increasing at row {k} ({when}); sort "
                "the series by time and drop duplicate rows"
            )


def _to_ns(values, origin: str) -> np.ndarray:
    try:
        idx = pd.DatetimeIndex(pd.to_datetime(values))
    except (ValueError, TypeError) as e:
        raise DiststError(f"{origin}: timestamps cannot be parsed as dates ({e}); fix the column") from None
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    if idx.isna().any():
        k = int(np.argmax(idx.isna()))
        raise DiststError(f"{origin}: timestamp in row {k} is empty; fill or drop that row")
    return idx.as_unit("ns").asi8.astype(np.int64)


def _missing(values: np.ndarray, zero_is_missing: bool) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    if zero_is_missing:
        v = v.copy() if not v.flags.writeable else v
        v[v == 0] = np.nan
    return v


def _is_number(cell) -> bool:
    try:
        float(str(cell).strip())
    except ValueError:
        return False
    return True


def _match_ids(series_ids: list[str], graph_ids: list[str], series_file, graph_file) -> np.ndarray:
    """Column permutation taking the series' columns to the graph's node order."""
    if len(series_ids) != len(graph_ids) or set(series_ids) != set(graph_ids):
        only_s = [s for s in series_ids if s not in set(graph_ids)]
        only_g = [g for g in graph_ids if g not in set(series_ids)]
        raise DiststError(
            f"{series_file}: the series has {len(series_ids)} sensors but the graph "
            f"{graph_file} has {len(graph_ids)}; only in the series: {only_s[:5]}, only in the "
            f"graph: {only_g[:5]}; use the series and graph files of the same dataset"
        )
    first: dict[str, int] = {}
    for i, sid in enumerate(series_ids):
        if sid in first:
            raise DiststError(f"{series_file}: sensor id {sid!r} appears twice in the series "
                              f"columns (columns {first[sid] + 1} and {i + 1}); keep one column "
                              "per sensor")
        first[sid] = i
    pos = {s: i for i, s in enumerate(series_ids)}
    return np.array([pos[g] for g in graph_ids], dtype=np.int64)


def check_npy_size(path: Path, member: str | None = None) -> None:
    """Refuse a .npy (or the ``member`` of a .npz) whose header declares more data than the
    file holds, before numpy allocates it: a 200-byte PEMS .npz declaring 10^6 x 10^5 x 3
    floats asked for 2.2 TiB (a MemoryError traceback). The size present is the file's, or
    the zip directory's uncompressed size of the member."""
    import zipfile

    fmt = np.lib.format
    where = f"{path}" + (f" ({member})" if member else "")
    try:
        if member is None:
            opened, present = open(path, "rb"), path.stat().st_size
        else:
            zf = zipfile.ZipFile(path)
            name = member if member in zf.namelist() else f"{member}.npy"
            if name not in zf.namelist():
                return  # the caller names the missing key
            opened, present = zf.open(name), zf.getinfo(name).file_size
        with opened as f:
            version = fmt.read_magic(f)
            read = fmt.read_array_header_1_0 if version == (1, 0) else \
                fmt.read_array_header_2_0
            shape, _, dtype = read(f)
            offset = f.tell()
    except (ValueError, OSError, zipfile.BadZipFile, EOFError):
        return  # not a .npy at all: numpy's own error says so, and allocates nothing
    declared = math.prod(int(d) for d in shape) * dtype.itemsize
    if declared > present - offset:
        raise DiststError(
            f"{where}: its header declares an array of shape {tuple(shape)} {dtype} "
            f"({declared / 2**30:,.2f} GiB) but the file holds {max(0, present - offset):,} "
            "bytes of data; it is cut short or forged: get the file again")


def _on_grid(values: np.ndarray, ts: np.ndarray, origin: str):
    """(values, timestamps, gap record or None) on a regular time grid.

    A series read from timestamps steps by its most common interval; a missing row (a step of
    2, 3, ... intervals) becomes missing readings (NaN) at the skipped times, so a window
    never reads the two sides of a gap as consecutive steps. A step that is not a whole
    number of intervals (one 7-minute step among 5-minute ones, times off the grid) is
    refused: distst would have to invent where its readings belong."""
    if len(ts) < 3:
        return values, ts, None
    d = np.diff(ts)
    if (d == d[0]).all():
        return values, ts, None
    sizes, counts = np.unique(d, return_counts=True)
    step = int(sizes[np.argmax(counts)])
    off = d % step != 0
    if off.any():
        k = int(np.argmax(off))
        raise DiststError(
            f"{origin}: the step from {ns_text(ts[k])} to {ns_text(ts[k + 1])} (time steps {k + 1} "
            f"and {k + 2}) is {d[k] / 60e9:g} min, not a whole number of the series' "
            f"{step / 60e9:g}-min steps ({int(off.sum())} such step(s)); resample the series to "
            f"a regular {step / 60e9:g}-min grid (e.g. pandas DataFrame.resample) or fix those "
            "timestamps")
    idx = (ts - ts[0]) // step  # [T] positions on the grid
    total = int(idx[-1]) + 1
    added = total - len(ts)
    k = int(np.argmax(d))
    if added > len(ts):
        raise DiststError(
            f"{origin}: the timestamps would leave {added:,} of {total:,} {step / 60e9:g}-min "
            f"steps empty (the longest gap from {ns_text(ts[k])} to {ns_text(ts[k + 1])}); check "
            "the timestamps (a wrong year or day?) or cut the series where it stops")
    full = np.full((total,) + values.shape[1:], np.nan, dtype=values.dtype)  # [T', N, C]
    full[idx] = values
    gaps = {"filled_steps": added, "gaps": int((d > step).sum()), "step_minutes": step / 60e9,
            "longest": [ns_text(ts[k]), ns_text(ts[k + 1])]}
    return full, ts[0] + np.arange(total, dtype=np.int64) * np.int64(step), gaps


def _finish(name: str, fmt: str, values: np.ndarray, timestamps: np.ndarray,
            graph: SensorGraph, channels: list[str], series_file, source: dict) -> SensorNetwork:
    _check_increasing(timestamps, str(series_file))
    if source.get("timestamps") == "from file":  # made-up ones are regular or a calendar's
        values, timestamps, gaps = _on_grid(values, timestamps, str(series_file))
        if gaps:
            source = {**source, "gaps": gaps}
    t, n = values.shape[:2]
    if n != graph.num_nodes:
        raise DiststError(
            f"{series_file}: the series has {n} sensors but the graph has {graph.num_nodes}; "
            "use the series and graph files of the same dataset"
        )
    src = dict(graph.source)
    src.update(source)
    src["format"] = fmt
    net = SensorNetwork(
        name=name, values=values, timestamps=timestamps, node_ids=graph.node_ids,
        edge_index=graph.edge_index, edge_weight=graph.edge_weight, channels=channels,
        coords=graph.coords, node_attrs=graph.node_attrs, attr_names=list(graph.attr_names),
        source=src,
    )
    net.check_finite(str(series_file), fix="fix or blank those cells (an empty cell or NaN "
                     "marks a missing reading)")
    net.check_observed(str(series_file))
    return net


def _edge_lines(p: Path) -> tuple[str, str]:
    """First and last non-empty line of a text file (the last one read from the end, so a
    large file is not scanned twice)."""
    with open(p, "rb") as f:
        head = f.readline()
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - (1 << 16)))
        tail = f.read()
    lines = [ln for ln in tail.splitlines() if ln.strip()]
    try:
        return head.decode().strip(), (lines[-1].decode().strip() if lines else "")
    except UnicodeDecodeError:
        raise DiststError(f"{p}: is not a text CSV file (undecodable bytes); check that this "
                          "is the right file") from None


def _check_csv_shape(p: Path, header: bool) -> list[str]:
    """Refuse what pandas would silently absorb: repeated column names (renamed to 'x.1')
    and a last row cut short (its missing cells become NaN). Returns the first row's cells."""
    import csv

    first, last = _edge_lines(p)
    if not first:
        return []
    cols = next(csv.reader([first]))
    if header:
        seen: dict[str, int] = {}
        for i, name in enumerate(c.strip() for c in cols):
            if name in seen:
                raise DiststError(
                    f"{p}: column {name!r} appears twice (columns {seen[name] + 1} and {i + 1}); "
                    "every sensor must have exactly one column. Remove or rename one")
            seen[name] = i
    fields = next(csv.reader([last])) if last else cols
    if last and last != first and len(fields) < len(cols):
        raise DiststError(
            f"{p}: the last row has {len(fields)} fields but the "
            f"{'header' if header else 'first row'} has {len(cols)}: the file was cut short "
            "(an interrupted download or copy?). Get the complete file, or delete that row")
    return cols


def _read_csv(p: Path, **kw) -> pd.DataFrame:
    _check_csv_shape(p, header=kw.get("header", "infer") is not None)
    try:
        return pd.read_csv(p, **kw)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DiststError(f"{p}: cannot be read as CSV ({str(e).strip()}); check the file") from None


def _check_coords(coords: np.ndarray, p: Path, ids, columns: tuple[str, str],
                  latlon: bool) -> np.ndarray:
    """Positions are finite numbers, and latitudes and longitudes within their ranges: a
    wrong one would put a sensor elsewhere in every map, distance and spatial attribute.
    Names the file, the sensor (its data row, counted from 1) and the column."""
    c = np.asarray(coords, dtype=np.float64)
    bad = ~np.isfinite(c)
    what = "non-finite"
    if latlon and not bad.any():
        bad = np.abs(c) > np.array([90.0, 180.0])
        what = "out-of-range (latitude beyond +-90 or longitude beyond +-180)"
    if bad.any():
        i, j = (int(x) for x in np.argwhere(bad)[0])
        raise DiststError(
            f"{p}: {int(bad.sum())} {what} coordinate(s), the first for sensor {str(ids[i])!r} "
            f"(data row {i + 1}) in column {columns[j]!r}: {c[i, j]}; every sensor needs a "
            "finite position: fix the file, or leave the locations out"
        )
    return c


def _read_matrix(p: Path) -> np.ndarray:
    df = _read_csv(p, header=None)
    try:
        return df.to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        raise DiststError(
            f"{p}: non-numeric cells in the matrix (a header row?); the file must be an N x N "
            "grid of numbers with no header"
        ) from None



# -- start dates of files without timestamps ----------------------------------------------------
#: documented first day (00:00, 5-minute steps) of each format whose files carry no timestamps;
#: see the module docstring for the sources and which dates are uncertain (PEMS07)
DOCUMENTED_START = {"pems03": "2018-09-01", "pems04": "2018-01-01", "pems07": "2017-05-01",
                    "pems08": "2016-07-01", "pemsd7": "2012-05-01", "los-loop": "2012-03-01"}
START_FORMAT = "an ISO date or date-time: YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS], e.g. 2018-01-01"


def parse_start(value, origin: str) -> pd.Timestamp:
    """An ISO date / date-time (naive wall-clock time) as a Timestamp; anything else is a
    one-line DiststError naming ``value`` and the expected format."""
    import datetime as _dt

    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        value = _dt.datetime(value.year, value.month, value.day)  # YAML reads 2018-01-01 as a date
    text = value.isoformat() if isinstance(value, _dt.datetime) else str(value).strip()
    try:
        t = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise DiststError(f"{origin} {value!r} is not a valid start; expected {START_FORMAT}") \
            from None
    if t.tzinfo is not None:
        raise DiststError(f"{origin} {value!r} has a time zone; timestamps are naive wall-clock "
                          f"times, expected {START_FORMAT}")
    return pd.Timestamp(t)


def _start(fmt: str, start) -> tuple[pd.Timestamp, dict]:
    """(start, its source record): the given ``start`` or the format's documented one."""
    given = start is not None
    t0 = parse_start(start if given else DOCUMENTED_START[fmt], f"{fmt}: start")
    return t0, {"start": t0.isoformat(),
                "start_from": "given" if given else "documented default"}


def _read_edge_table(p: Path, origin_fmt: str) -> pd.DataFrame:
    """A 3-column from,to,value csv with or without header (CRLF tolerated)."""
    df = _read_csv(p, header=None, dtype=str, skip_blank_lines=True)
    df = df.apply(lambda c: c.str.strip())
    if df.shape[1] != 3:
        raise DiststError(
            f"{p}: expected 3 columns from,to,distance, got {df.shape[1]}; fix the file"
        )
    if not _is_number(df.iloc[0, 2]):
        df = df.iloc[1:]  # a header row such as from,to,cost
    df.columns = ["from", "to", "value"]
    try:
        df["value"] = df["value"].astype(np.float64)
    except ValueError:
        raise DiststError(f"{p}: non-numeric distance/cost values; fix the file") from None
    return df.reset_index(drop=True)
