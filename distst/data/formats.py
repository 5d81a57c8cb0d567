"""Readers for the standard traffic benchmarks and a generic table format -> ``SensorNetwork``.

``read_dataset(fmt, path, **options)`` reads a directory holding a dataset's usual files and
returns a :class:`~distst.data.network.SensorNetwork`; ``read_graph(fmt, path, **options)``
reads only the graph files (a :class:`SensorGraph`), for the many benchmarks whose graph is
public but whose series is not at hand. Every file can be overridden by an option
(``series=``, ``graph=``, ...); a relative override is taken relative to ``path``. ``FORMATS``
maps each format name to its readers and its documentation line.

Conventions common to all formats
---------------------------------
* Missing observations become NaN. NaN in a source is missing. With ``zero_is_missing=True``
  a 0 is missing too -- the standard convention of the speed/flow benchmarks, where loop
  detectors report 0 when they report nothing (DCRNN masks ``y == 0`` in its loss).
* Node order is the graph file's order; the series is reordered to it by sensor id where the
  files carry ids, and a mismatch in count or ids is an error -- no sensor is ever dropped.
* A sensor with no observation at all is an error (``SensorNetwork.check_observed``).
* Timestamps must be strictly increasing. Formats without timestamps get synthetic ones from
  a documented start date (option ``start=``, an ISO date or date-time such as ``2018-01-01``
  or ``2018-01-01T06:00``; ``distst data prepare --start``) and ``step_minutes=5``;
  ``source["timestamps"]`` says which, ``source["start"]`` / ``source["start_from"]`` which
  start was used and whether it was given or the documented default (:data:`DOCUMENTED_START`).
  Time of day and day of week, and so every daily/weekly model input, follow from it.

Known start dates of the files without timestamps (5-minute steps unless said otherwise). The
publishers gave months, not days; the days below are the literature's convention (e.g. the
BasicTS dataset README, the STSGCN and ASTGCN papers) and each excerpt is assumed to begin on
it. The step counts agree for PEMS03 (26,208 = 91 days, 2018-09-01..11-30), PEMS04 (16,992 =
59 days, 2018-01-01..02-28) and PEMS08 (17,856 = 62 days, 2016-07-01..08-31). PEMS07 is
UNCERTAIN: the papers give 2017-05-01..08-31 (123 days) but the file holds 28,224 steps = 98
days, so with consecutive days it ends on 2017-08-06 and which days are missing is unknown.
PeMSD7(M): the weekdays of May and June 2012 from 2012-05-01 (a Tuesday). Los-loop:
2012-03-01 (T-GCN: March 2012). Pass ``start=`` when an excerpt starts elsewhere.
* Edge weights follow the paper that published the dataset (see each format); kernel
  options (``convention``, ``sigma``, ``threshold``, ``scale``, ``sigma2``), ``self_loops``
  (default False) and ``symmetric`` (None | "max" | "sum") can be passed to every reader.
  ``source["adjacency"]`` records what was chosen (see :mod:`distst.graph.adjacency`).

Formats
-------
``metr-la``, ``pems-bay`` (Li et al., DCRNN, ICLR 2018)
    ``metr-la.h5`` / ``pems-bay.h5``: pandas DataFrame in HDF5 (index = timestamps, columns =
    sensor ids, speed in mph); ``adj_mx.pkl`` / ``adj_mx_bay.pkl``: Python-2 pickle
    ``[sensor_ids, sensor_id_to_ind, adj_mx]`` whose ``adj_mx`` is already a DCRNN-kernel
    weight matrix (used as is); optional ``graph_sensor_locations.csv`` (header
    ``index,sensor_id,latitude,longitude``) / ``graph_sensor_locations_bay.csv`` (no header,
    ``sensor_id,latitude,longitude``) -> coords (lat, lon). Option ``distances=`` builds the
    graph from a ``from,to,distance`` csv (DCRNN ``distances_*.csv``, header optional) with
    the DCRNN kernel instead of the pickled matrix. ``zero_is_missing=True``. Channel
    ``speed``. The pickle is read with an unpickler that only admits numpy arrays.

``pems03``, ``pems04``, ``pems07``, ``pems08`` (Guo et al., ASTGCN, AAAI 2019)
    ``PEMS0x.npz`` with key ``data`` ``[T, N, C]``: C = 3 -> ``flow, occupancy, speed``,
    C = 1 -> ``flow`` (PEMS03 and PEMS07 ship flow only); ``PEMS0x.csv`` edge list
    ``from,to,cost`` over node indices (``from,to,distance`` over raw PeMS ids for PEMS03,
    mapped through ``PEMS03.txt`` where line i is node i). The files have no timestamps:
    synthetic 5-minute steps from PEMS03 2018-09-01, PEMS04 2018-01-01, PEMS07 2017-05-01
    (uncertain, see above), PEMS08 2016-07-01, or ``start=``. Models are fed flow only by
    default (``source["default_input_channels"] = [0]``, read by the engine when
    ``data.input_channels`` is empty), as the literature does. Weights: ``edge_weights="binary"`` (default, the ASTGCN
    ``get_adjacency_matrix``: ``A[from, to] = 1`` for every listed edge, directed as listed)
    or ``"kernel"`` (Gaussian kernel of the cost, ``convention="dcrnn"`` by default).
    Graph-only reads use the published node counts (358 from ``PEMS03.txt``, 307, 883, 170;
    ``num_nodes=`` overrides). Node ids: the PeMS ids for PEMS03, ``"0".."N-1"`` otherwise.
    ``zero_is_missing=True``.

``pemsd7`` (Yu et al., STGCN, IJCAI 2018)
    ``*V_*.csv`` (e.g. ``PeMSD7_V_228.csv`` or ``V_228.csv``): ``[T, N]`` speeds, no header;
    ``*W_*.csv``: ``[N, N]`` distance matrix, no header -> STGCN kernel (scale 10000,
    sigma2 0.1, epsilon 0.5, zero diagonal); optional ``*Station_Info*.csv`` (columns ``ID``,
    ``Latitude``, ``Longitude``, row i = station i) -> node ids and coords; without it node ids
    are ``"0".."N-1"``. The original series holds the 44 weekdays of May-June 2012 (2012-05-01
    is a Tuesday; 23 + 21 weekdays), 288 steps a day, with no timestamps in the file. So with
    ``calendar="weekdays"`` (default) day d of the file is the d-th weekday from
    ``start=2012-05-01``, 00:00-23:55 -- weekends are real gaps in the timestamps; this needs
    T to be a multiple of 288. ``calendar="consecutive"`` gives plain 5-minute steps instead.
    ``zero_is_missing=True``.

``los-loop`` (Zhao et al., T-GCN, IEEE T-ITS 2019)
    ``los_speed.csv``: header row of sensor ids (the METR-LA ids, same order) and ``[T, N]``
    speeds; ``los_adj.csv``: ``[N, N]`` weighted adjacency, no header (used as is). Start
    2012-03-01 00:00, 5-minute steps. ``zero_is_missing=False`` (gaps were interpolated by
    the publishers, the file has no zeros).

``generic``
    Files ``series.{parquet,csv}``, ``edges.{parquet,csv}``, optional ``nodes.{parquet,csv}``
    (or ``series=``, ``edges=``, ``nodes=``):

    * series, long form: columns ``timestamp``, ``node_id`` and one or more numeric value
      columns (each one channel). The time axis is the sorted set of timestamps; a
      (timestamp, node) pair absent from the table is missing (NaN); a repeated pair is an
      error.
    * series, wide form (no ``node_id`` column): a ``timestamp`` column plus one numeric
      column per node (column name = node id), one channel ``value``; rows must be in
      strictly increasing time order.
    * edges: ``from``, ``to`` (node ids) and ``weight`` (used as is) or ``distance`` (Gaussian
      kernel, ``convention="dcrnn"`` by default); a repeated identical row is merged.
    * nodes (optional): ``node_id``; ``x``/``y`` or ``lat``/``lon`` -> coords; every other
      numeric column -> a node attribute (``node_attrs``); the node order is this table's.
      Without it the order is the series' (first appearance) for ``read_dataset``; for
      ``read_graph`` it is the order of first appearance in ``from`` then in ``to`` (so a
      node without edges needs the node table to exist at all).

    ``zero_is_missing=False``. Column names can be changed with ``timestamp_column=`` and
    ``node_column=``.
"""

from __future__ import annotations

import glob
import inspect
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from distst.data.network import DEFAULT_STEP_MINUTES, SensorNetwork
from distst.errors import DiststError
from distst.graph.adjacency import adjacency_from_edges, adjacency_from_matrix


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
    step_ns = int(round(step_minutes * 60e9))
    return t0.value + np.arange(n, dtype=np.int64) * step_ns


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


def _finish(name: str, fmt: str, values: np.ndarray, timestamps: np.ndarray,
            graph: SensorGraph, channels: list[str], series_file, source: dict) -> SensorNetwork:
    _check_increasing(timestamps, str(series_file))
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


def _read_matrix(p: Path) -> np.ndarray:
    df = _read_csv(p, header=None)
    try:
        return df.to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        raise DiststError(
            f"{p}: non-numeric cells in the matrix (a header row?); the file must be an N x N "
            "grid of numbers with no header"
        ) from None


# -- METR-LA / PEMS-BAY ----------------------------------------------------------------------
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admit only what a pickled list/dict/ndarray needs, so a pickle cannot run code."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}")


class _HDFAttrUnpickler(_NumpyOnlyUnpickler):
    """What pandas' .h5 attributes legitimately pickle (an index's frequency, e.g. 5 * Minute)
    on top of plain data and numpy scalars; any other class or function is refused."""

    def find_class(self, module, name):
        if module in ("pandas._libs.tslibs.offsets", "pandas.tseries.offsets"):
            from pandas.tseries.offsets import BaseOffset

            obj = super(_NumpyOnlyUnpickler, self).find_class(module, name)
            if isinstance(obj, type) and issubclass(obj, BaseOffset):
                return obj
        return super().find_class(module, name)


class _SafePickle:
    """Stands in for the ``pickle`` module inside PyTables while distst reads an .h5 file:
    PyTables unpickles attributes and object columns with ``pickle.loads``, and a crafted
    file could run code through them."""

    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def loads(data, *args, **kwargs):
        import io

        return _HDFAttrUnpickler(io.BytesIO(data), encoding=kwargs.get("encoding", "ASCII")).load()


def _read_hdf_safely(sp: Path) -> pd.DataFrame:
    """``pd.read_hdf`` without unpickling anything beyond plain data and pandas offsets, and
    refusing object (pickled) columns before reading them."""
    import tables
    import tables.atom
    import tables.attributeset

    # PyTables unpickles node attributes as soon as a node is opened: the safe stand-in
    # is in place before the file is touched at all
    mods = (tables.atom, tables.attributeset)
    saved = [m.pickle for m in mods]
    try:
        for m in mods:
            m.pickle = _SafePickle
        try:
            with tables.open_file(str(sp), mode="r") as h5:
                for node in h5.walk_nodes("/"):
                    if isinstance(node, tables.VLArray) and node.atom.kind == "object":
                        raise DiststError(
                            f"{sp}: {node._v_pathname} holds pickled Python objects (an object "
                            "column); distst reads only numeric series and never unpickles a "
                            "file. Save the DataFrame with float columns (df.astype('float32')"
                            ".to_hdf(...))")
        except (DiststError, pickle.UnpicklingError):
            raise
        except Exception as e:  # not HDF5 at all, truncated, ...
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            if "HDF5 error" in why:
                why = "not a valid or complete HDF5 file"
            raise DiststError(f"{sp}: cannot be opened as an HDF5 file ({why}); it must be "
                              "the DCRNN .h5 written by DataFrame.to_hdf") from None
        with warnings.catch_warnings():
            # an attribute refused above ends as pandas' "could not decode freq" fallback
            warnings.simplefilter("ignore", UserWarning)
            return pd.read_hdf(sp)
    except pickle.UnpicklingError as e:
        raise DiststError(f"{sp}: holds a pickled object distst does not load ({e}); the file "
                          "was not written by DataFrame.to_hdf from a numeric frame") from None
    finally:
        for m, orig in zip(mods, saved):
            m.pickle = orig


def _load_dcrnn_pickle(p: Path) -> tuple[list[str], np.ndarray]:
    try:
        with open(p, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError) as e:
        raise DiststError(
            f"{p}: not a DCRNN adjacency pickle ({e}); expected [sensor_ids, sensor_id_to_ind, "
            "adj_mx] as written by DCRNN's gen_adj_mx.py"
        ) from None
    if not (isinstance(obj, (list, tuple)) and len(obj) == 3):
        raise DiststError(
            f"{p}: expected a 3-element list [sensor_ids, sensor_id_to_ind, adj_mx], got "
            f"{type(obj).__name__}; regenerate it with DCRNN's gen_adj_mx.py"
        )
    ids = [str(s) for s in obj[0]]
    adj = np.asarray(obj[2])
    if adj.ndim != 2 or adj.shape[0] != len(ids):
        raise DiststError(
            f"{p}: {len(ids)} sensor ids but adj_mx has shape {adj.shape}; the pickle is "
            "inconsistent, regenerate it"
        )
    return ids, adj


def _read_locations(p: Path, node_ids: np.ndarray) -> np.ndarray:
    df = _read_csv(p, header=None, dtype=str)
    if not _is_number(df.iloc[0, -1]):
        df = df.iloc[1:]  # a header row (METR-LA has one, PEMS-BAY has none)
    if df.shape[1] == 4:
        df = df.iloc[:, 1:]  # leading index column
    if df.shape[1] != 3:
        raise DiststError(
            f"{p}: expected columns [index,]sensor_id,latitude,longitude, got {df.shape[1]} "
            "columns; fix the file or pass locations=None"
        )
    ids = df.iloc[:, 0].str.strip().tolist()
    latlon = df.iloc[:, 1:].astype(np.float64).to_numpy()
    pos = {s: i for i, s in enumerate(ids)}
    missing = [s for s in node_ids if s not in pos]
    if missing:
        raise DiststError(
            f"{p}: no location for sensor(s) {missing[:5]}; add them or pass locations=None"
        )
    return latlon[[pos[s] for s in node_ids]]


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


_DCRNN_FILES = {
    "metr-la": ("metr-la.h5", "adj_mx.pkl", "graph_sensor_locations.csv"),
    "pems-bay": ("pems-bay.h5", "adj_mx_bay.pkl", "graph_sensor_locations_bay.csv"),
}


def _graph_dcrnn(fmt: str, path, *, graph=None, locations=None, distances=None,
                 matrix_kind="auto", **kopts) -> SensorGraph:
    base = _base(path)
    _, gdef, ldef = _DCRNN_FILES[fmt]
    gp = _file(base, graph, gdef, fmt, "adjacency pickle", "graph")
    ids, adj = _load_dcrnn_pickle(gp)
    files = {"graph": str(gp)}
    if distances is not None:
        dp = _file(base, distances, None, fmt, "distances", "distances")
        df = _read_edge_table(dp, fmt)
        pos = {s: i for i, s in enumerate(ids)}
        unknown = sorted(set(df["from"]) - pos.keys() | set(df["to"]) - pos.keys())
        if unknown:
            raise DiststError(
                f"{dp}: sensor ids {unknown[:5]} are not in {gp}; use the distances file of "
                "the same dataset"
            )
        kopts.setdefault("convention", "dcrnn")
        # DCRNN keeps the direction of the listed pairs (adj_mx[from, to]), so no symmetrize.
        ei, ew, info = adjacency_from_edges(
            df["from"].map(pos).to_numpy(), df["to"].map(pos).to_numpy(),
            df["value"].to_numpy(), len(ids), value_kind="distance", origin=str(dp), **kopts,
        )
        files["distances"] = str(dp)
    else:
        ei, ew, info = adjacency_from_matrix(adj, matrix_kind=matrix_kind, origin=str(gp), **kopts)
    node_ids = np.array(ids)
    coords = None
    lp = None
    if locations is not False:
        lp = _file(base, locations, ldef, fmt, "sensor locations", "locations", required=False)
    if lp is not None:
        coords = _read_locations(lp, node_ids)
        files["locations"] = str(lp)
    return SensorGraph(node_ids, ei, ew, coords, source={
        "files": files, "adjacency": info, **({"coords_kind": "latlon"} if coords is not None else {})})


def _read_dcrnn(fmt: str, path, *, series=None, zero_is_missing=True, name=None,
                **gopts) -> SensorNetwork:
    base = _base(path)
    sp = _file(base, series, _DCRNN_FILES[fmt][0], fmt, "series", "series")
    g = _graph_dcrnn(fmt, path, **gopts)
    try:
        df = _read_hdf_safely(sp)
    except (ValueError, KeyError, OSError, TypeError) as e:
        raise DiststError(
            f"{sp}: cannot read a pandas DataFrame from this HDF5 file ({e}); it must be the "
            "DCRNN .h5 written by DataFrame.to_hdf"
        ) from None
    if not isinstance(df, pd.DataFrame):
        raise DiststError(f"{sp}: holds a {type(df).__name__}, expected a DataFrame (time x sensors)")
    ts = _to_ns(df.index, str(sp))
    _check_increasing(ts, str(sp))
    perm = _match_ids([str(c) for c in df.columns], list(g.node_ids), sp, g.source["files"]["graph"])
    values = _missing(df.to_numpy(dtype=np.float32)[:, perm], zero_is_missing)  # [T, N]
    values = values[:, :, None]  # [T, N, 1]
    src = {"timestamps": "from file", "zero_is_missing": bool(zero_is_missing)}
    src["files"] = {**g.source["files"], "series": str(sp)}
    return _finish(name or fmt, fmt, values, ts, g, ["speed"], sp, src)


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


# -- PEMS03/04/07/08 ---------------------------------------------------------------------------
_PEMS_NODES = {"pems04": 307, "pems07": 883, "pems08": 170}


def _graph_pems(fmt: str, path, *, graph=None, ids=None, edge_weights="binary",
                num_nodes=None, **kopts) -> SensorGraph:
    base = _base(path)
    up = fmt.upper()
    gp = _file(base, graph, f"{up}.csv", fmt, "edge list", "graph")
    df = _read_edge_table(gp, fmt)
    files = {"graph": str(gp)}
    if fmt == "pems03" or ids is not None:
        ip = _file(base, ids, f"{up}.txt", fmt, "sensor id list", "ids")
        node_ids = [s.strip() for s in ip.read_text().splitlines() if s.strip()]
        files["ids"] = str(ip)
        pos = {s: i for i, s in enumerate(node_ids)}
        unknown = sorted((set(df["from"]) | set(df["to"])) - pos.keys())
        if unknown:
            raise DiststError(
                f"{gp}: sensor ids {unknown[:5]} are not listed in {ip}; use the id list of the "
                "same dataset"
            )
        if num_nodes is not None and num_nodes != len(node_ids):
            raise DiststError(f"{fmt}: num_nodes={num_nodes} but {ip} lists {len(node_ids)} sensors")
        src, dst = df["from"].map(pos).to_numpy(), df["to"].map(pos).to_numpy()
    else:
        n = num_nodes if num_nodes is not None else _PEMS_NODES[fmt]
        node_ids = [str(i) for i in range(n)]
        try:
            src, dst = df["from"].astype(np.int64).to_numpy(), df["to"].astype(np.int64).to_numpy()
        except ValueError:
            raise DiststError(f"{gp}: from/to must be node indices 0..N-1; fix the file") from None
    if edge_weights not in ("binary", "kernel"):
        raise DiststError(f"{fmt}: unknown edge_weights={edge_weights!r}; choose binary or kernel")
    if edge_weights == "binary":
        # ASTGCN get_adjacency_matrix: A[from, to] = 1 for each listed edge, cost unused.
        ei, ew, info = adjacency_from_edges(
            src, dst, np.ones(len(src)), len(node_ids), value_kind="binary", origin=str(gp),
            **kopts,
        )
        info["rule"] = "ASTGCN: 1 for every listed edge"
    else:
        kopts.setdefault("convention", "dcrnn")
        ei, ew, info = adjacency_from_edges(
            src, dst, df["value"].to_numpy(), len(node_ids), value_kind="distance",
            origin=str(gp), **kopts,
        )
    return SensorGraph(np.array(node_ids), ei, ew, None, source={"files": files, "adjacency": info})


def _read_pems(fmt: str, path, *, series=None, start=None, step_minutes=DEFAULT_STEP_MINUTES,
               zero_is_missing=True, name=None, num_nodes=None, **gopts) -> SensorNetwork:
    base = _base(path)
    sp = _file(base, series, f"{fmt.upper()}.npz", fmt, "series", "series")
    try:
        with np.load(sp, allow_pickle=False) as z:
            if "data" not in z.files:
                raise DiststError(
                    f"{sp}: no key 'data' (keys: {z.files}); the ASTGCN npz stores the series "
                    "under 'data' as [T, N, C]"
                )
            data = z["data"]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DiststError(f"{sp}: cannot be read as .npz ({e}); the file is damaged or cut "
                          "short: get it again") from None
    if data.ndim == 2:
        data = data[:, :, None]  # [T, N] -> [T, N, 1]
    if data.ndim != 3:
        raise DiststError(f"{sp}: 'data' must be [T, N, C], got shape {data.shape}")
    if num_nodes is None and fmt != "pems03":
        num_nodes = data.shape[1]
    g = _graph_pems(fmt, path, num_nodes=num_nodes, **gopts)
    c = data.shape[2]
    channels = (["flow", "occupancy", "speed"] if c == 3 else ["flow"] if c == 1
                else [f"value{i}" for i in range(c)])
    values = _missing(data, zero_is_missing)  # [T, N, C]
    start, start_src = _start(fmt, start)
    ts = _regular_timestamps(start, values.shape[0], step_minutes, fmt)
    src = {"files": {**g.source["files"], "series": str(sp)}, "zero_is_missing": bool(zero_is_missing),
           "timestamps": f"synthetic: from {pd.Timestamp(start)} every {step_minutes} min "
                         "(the npz carries none)", **start_src,
           # the literature feeds PEMS0x models flow only; build_bundle uses this when
           # data.input_channels is empty (occupancy/speed stay selectable)
           "default_input_channels": [0]}
    return _finish(name or fmt, fmt, values, ts, g, channels, sp, src)


# -- PeMSD7 ----------------------------------------------------------------------------------
def _graph_pemsd7(fmt: str, path, *, graph=None, stations=None, matrix_kind="auto",
                  **kopts) -> SensorGraph:
    base = _base(path)
    if graph is not None:
        gp = _file(base, graph, None, fmt, "distance matrix", "graph")
    else:
        gp = _glob_one(base, "*W_*.csv", fmt, "distance matrix (W_*.csv)", "graph")
    kopts.setdefault("convention", "stgcn")
    ei, ew, info = adjacency_from_matrix(_read_matrix(gp), matrix_kind=matrix_kind,
                                         origin=str(gp), **kopts)
    n = info["num_nodes"]
    files = {"graph": str(gp)}
    if stations is False:
        sp = None
    elif stations is not None:
        sp = _file(base, stations, None, fmt, "station info", "stations")
    else:
        sp = _glob_one(base, "*Station_Info*.csv", fmt, "station info", "stations", required=False)
    node_ids, coords = np.array([str(i) for i in range(n)]), None
    if sp is not None:
        st = _read_csv(sp)
        need = [c for c in ("ID", "Latitude", "Longitude") if c not in st.columns]
        if need:
            raise DiststError(f"{sp}: missing column(s) {need}; the station table needs ID, "
                              "Latitude, Longitude (or pass stations=False)")
        if len(st) != n:
            raise DiststError(f"{sp}: {len(st)} stations but {gp} is {n} x {n}; use the station "
                              "table of the same dataset (or pass stations=False)")
        node_ids = st["ID"].astype(str).str.strip().to_numpy()
        coords = st[["Latitude", "Longitude"]].to_numpy(dtype=np.float64)
        files["stations"] = str(sp)
    return SensorGraph(node_ids, ei, ew, coords, source={
        "files": files, "adjacency": info, **({"coords_kind": "latlon"} if coords is not None else {})})


def _weekday_timestamps(start, t: int, step_minutes: float, origin: str) -> np.ndarray:
    per_day = int(round(24 * 60 / step_minutes))
    if t % per_day:
        raise DiststError(
            f"{origin}: calendar='weekdays' needs whole days of {per_day} steps but the series "
            f"has {t} steps; pass calendar='consecutive'"
        )
    days = pd.bdate_range(pd.Timestamp(start).normalize(), periods=t // per_day)
    day_ns = days.as_unit("ns").asi8.astype(np.int64)  # [D]
    steps = np.arange(per_day, dtype=np.int64) * int(round(step_minutes * 60e9))  # [S]
    return (day_ns[:, None] + steps[None, :]).reshape(-1)  # [D, S] -> [D * S]


def _read_pemsd7(fmt: str, path, *, series=None, start=None, calendar="weekdays",
                 step_minutes=DEFAULT_STEP_MINUTES, zero_is_missing=True, name=None,
                 **gopts) -> SensorNetwork:
    base = _base(path)
    if series is not None:
        sp = _file(base, series, None, fmt, "series", "series")
    else:
        sp = _glob_one(base, "*V_*.csv", fmt, "speed series (V_*.csv)", "series")
    g = _graph_pemsd7(fmt, path, **gopts)
    values = _missing(_read_matrix(sp), zero_is_missing)[:, :, None]  # [T, N] -> [T, N, 1]
    start, start_src = _start(fmt, start)
    if calendar == "weekdays":
        ts = _weekday_timestamps(start, values.shape[0], step_minutes, str(sp))
        how = f"synthetic: weekdays from {pd.Timestamp(start).date()}, {step_minutes}-min steps"
    elif calendar == "consecutive":
        ts = _regular_timestamps(start, values.shape[0], step_minutes, fmt)
        how = f"synthetic: consecutive {step_minutes}-min steps from {pd.Timestamp(start)}"
    else:
        raise DiststError(f"{fmt}: unknown calendar={calendar!r}; choose weekdays or consecutive")
    src = {"files": {**g.source["files"], "series": str(sp)}, "timestamps": how,
           "zero_is_missing": bool(zero_is_missing), **start_src}
    return _finish(name or fmt, fmt, values, ts, g, ["speed"], sp, src)


# -- Los-loop --------------------------------------------------------------------------------
def _los_ids(sp: Path) -> list[str]:
    # text, one column per sensor, last row complete
    return [s.strip() for s in _check_csv_shape(sp, header=True)]


def _graph_los(fmt: str, path, *, graph=None, series=None, matrix_kind="auto",
               **kopts) -> SensorGraph:
    base = _base(path)
    gp = _file(base, graph, "los_adj.csv", fmt, "adjacency", "graph")
    ei, ew, info = adjacency_from_matrix(_read_matrix(gp), matrix_kind=matrix_kind,
                                         origin=str(gp), **kopts)
    n = info["num_nodes"]
    files = {"graph": str(gp)}
    # The node ids live in the header of the speed file; without it they are indices.
    sp = _file(base, series, "los_speed.csv", fmt, "series", "series", required=False)
    node_ids = [str(i) for i in range(n)]
    if sp is not None:
        node_ids = _los_ids(sp)
        files["series"] = str(sp)
        if len(node_ids) != n:
            raise DiststError(
                f"{sp}: {len(node_ids)} sensors in the header but {gp} is {n} x {n}; use the "
                "series and adjacency of the same dataset"
            )
    return SensorGraph(np.array(node_ids), ei, ew, None, source={"files": files, "adjacency": info})


def _read_los(fmt: str, path, *, series=None, start=None, step_minutes=DEFAULT_STEP_MINUTES,
              zero_is_missing=False, name=None, **gopts) -> SensorNetwork:
    base = _base(path)
    sp = _file(base, series, "los_speed.csv", fmt, "series", "series")
    g = _graph_los(fmt, path, series=sp, **gopts)
    df = _read_csv(sp)
    try:
        arr = df.to_numpy(dtype=np.float32)  # [T, N]
    except ValueError:
        raise DiststError(f"{sp}: non-numeric speed values; fix the file") from None
    values = _missing(arr, zero_is_missing)[:, :, None]  # [T, N] -> [T, N, 1]
    start, start_src = _start(fmt, start)
    ts = _regular_timestamps(start, values.shape[0], step_minutes, fmt)
    src = {"files": {**g.source["files"], "series": str(sp)}, "zero_is_missing": bool(zero_is_missing),
           "timestamps": f"synthetic: from {pd.Timestamp(start)} every {step_minutes} min",
           **start_src}
    return _finish(name or fmt, fmt, values, ts, g, ["speed"], sp, src)


# -- generic ---------------------------------------------------------------------------------
def _table(base: Path, given, stem: str, option: str, required: bool) -> Path | None:
    if given is not None:
        return _file(base, given, None, "generic", f"{stem} table", option)
    for ext in ("parquet", "csv"):
        if (base / f"{stem}.{ext}").is_file():
            return base / f"{stem}.{ext}"
    if required:
        raise DiststError(
            f"generic: {stem} table {base / (stem + '.parquet')} (or .csv) not found; put it in "
            f"{base} or pass {option}=PATH"
        )
    return None


def _load_table(p: Path) -> pd.DataFrame:
    if p.suffix == ".parquet":
        try:
            return pd.read_parquet(p)
        except Exception as e:  # pyarrow raises several unrelated types for a bad file
            raise DiststError(f"{p}: cannot be read as Parquet ({e}); check the file") from None
    return _read_csv(p)


def _require(df: pd.DataFrame, cols, p: Path, what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DiststError(
            f"{p}: missing required column(s) {missing} in the {what} table (has "
            f"{list(df.columns)[:8]}); add them or rename the columns"
        )


def _generic_nodes(p: Path, node_column: str):
    df = _load_table(p)
    _require(df, [node_column], p, "node")
    ids = df[node_column].astype(str).to_numpy()
    if len(set(ids)) != len(ids):
        raise DiststError(f"{p}: node ids repeat in column '{node_column}'; keep one row per node")
    coords, used, kind = None, {node_column}, None
    for a, b, k in (("x", "y", "xy"), ("lat", "lon", "latlon")):
        if a in df.columns and b in df.columns:
            coords = df[[a, b]].to_numpy(dtype=np.float64)
            used |= {a, b}
            kind = k
            break
    extra = [c for c in df.columns if c not in used]
    attr = [c for c in extra if pd.api.types.is_numeric_dtype(df[c])]
    ignored = [c for c in extra if c not in attr]
    attrs = df[attr].to_numpy(dtype=np.float32) if attr else None
    return ids, coords, attrs, attr, ignored, kind


def _generic_edges(p: Path, node_ids: np.ndarray, *, symmetric=None, **kopts):
    df = _load_table(p)
    _require(df, ["from", "to"], p, "edge")
    if "weight" in df.columns:
        col, kind = "weight", "weight"
    elif "distance" in df.columns:
        col, kind = "distance", "distance"
    else:
        raise DiststError(
            f"{p}: missing required column 'weight' or 'distance' in the edge table (has "
            f"{list(df.columns)}); add one of them"
        )
    pos = {s: i for i, s in enumerate(node_ids)}
    f, t = df["from"].astype(str), df["to"].astype(str)
    unknown = sorted((set(f) | set(t)) - pos.keys())
    if unknown:
        raise DiststError(
            f"{p}: edges refer to node ids {unknown[:5]} that are not in the node list; the "
            "edge table and the series/node table must name the same sensors"
        )
    if kind == "distance":
        kopts.setdefault("convention", "dcrnn")
    return adjacency_from_edges(
        f.map(pos).to_numpy(), t.map(pos).to_numpy(), df[col].to_numpy(dtype=np.float64),
        len(node_ids), value_kind=kind, symmetric=symmetric, origin=str(p), **kopts,
    )


def _graph_generic(fmt: str, path, *, edges=None, nodes=None, node_column="node_id",
                   _series_ids=None, **kopts) -> SensorGraph:
    base = _base(path)
    ep = _table(base, edges, "edges", "edges", required=True)
    np_ = _table(base, nodes, "nodes", "nodes", required=False)
    files = {"edges": str(ep)}
    coords = attrs = None
    attr_names: list[str] = []
    ignored: list[str] = []
    if np_ is not None:
        node_ids, coords, attrs, attr_names, ignored, coords_kind = _generic_nodes(np_,
                                                                                   node_column)
        files["nodes"] = str(np_)
    elif _series_ids is not None:
        node_ids = np.asarray(_series_ids)
    else:
        e = _load_table(ep)
        _require(e, ["from", "to"], ep, "edge")
        node_ids = pd.unique(pd.concat([e["from"], e["to"]]).astype(str)).astype(str)
    ei, ew, info = _generic_edges(ep, np.asarray(node_ids), **kopts)
    src = {"files": files, "adjacency": info}
    if coords is not None:
        src["coords_kind"] = coords_kind
    if ignored:
        src["ignored_node_columns"] = ignored
    return SensorGraph(np.asarray(node_ids).astype(str), ei, ew, coords, attrs, attr_names, src)


def _read_generic(fmt: str, path, *, series=None, timestamp_column="timestamp",
                  node_column="node_id", zero_is_missing=False, name=None, **gopts) -> SensorNetwork:
    base = _base(path)
    sp = _table(base, series, "series", "series", required=True)
    df = _load_table(sp)
    _require(df, [timestamp_column], sp, "series")
    if node_column in df.columns:
        layout = "long"
        value_cols = [c for c in df.columns if c not in (timestamp_column, node_column)]
        if not value_cols:
            raise DiststError(
                f"{sp}: missing value column(s) in the long series table (has only "
                f"'{timestamp_column}', '{node_column}'); add at least one numeric value column"
            )
        df = df.assign(**{node_column: df[node_column].astype(str),
                          timestamp_column: _to_ns(df[timestamp_column], str(sp))})
        dup = df.duplicated([timestamp_column, node_column])
        if dup.any():
            k = int(np.argmax(dup.to_numpy()))
            raise DiststError(
                f"{sp}: row {k} repeats timestamp {pd.Timestamp(int(df[timestamp_column].iloc[k]))} "
                f"for node {df[node_column].iloc[k]}; keep one row per (timestamp, node)"
            )
        series_ids = pd.unique(df[node_column]).astype(str)
        times = np.sort(pd.unique(df[timestamp_column])).astype(np.int64)
        ti = np.searchsorted(times, df[timestamp_column].to_numpy())
    else:
        layout = "wide"
        value_cols = ["value"]
        ts_raw = _to_ns(df[timestamp_column], str(sp))
        _check_increasing(ts_raw, str(sp))
        series_ids = np.array([str(c) for c in df.columns if c != timestamp_column])
        times = ts_raw
    g = _graph_generic(fmt, path, node_column=node_column, _series_ids=series_ids, **gopts)
    perm = _match_ids(list(series_ids), list(g.node_ids), sp, g.source["files"].get("nodes",
                      g.source["files"]["edges"]))
    t, n = len(times), g.num_nodes
    try:
        if layout == "long":
            pos = {s: i for i, s in enumerate(g.node_ids)}
            ni = df[node_column].map(pos).to_numpy()
            values = np.full((t, n, len(value_cols)), np.nan, dtype=np.float32)  # [T, N, C]
            values[ti, ni, :] = df[value_cols].to_numpy(dtype=np.float32)
        else:
            wide = df.drop(columns=[timestamp_column]).to_numpy(dtype=np.float32)  # [T, N]
            values = wide[:, perm][:, :, None]  # [T, N] -> [T, N, 1]
    except (ValueError, TypeError):
        raise DiststError(f"{sp}: non-numeric values in the value column(s) {value_cols[:5]}; "
                          "fix them or drop those columns") from None
    values = _missing(values, zero_is_missing)
    src = {"files": {**g.source["files"], "series": str(sp)}, "layout": layout,
           "timestamps": "from file", "zero_is_missing": bool(zero_is_missing)}
    return _finish(name or fmt, fmt, values, times, g, [str(c) for c in value_cols], sp, src)


# -- registry --------------------------------------------------------------------------------
def _bind(reader, fmt):
    def call(path, **options):
        return reader(fmt, path, **options)
    call.__wrapped_reader__ = reader
    return call


FORMATS: dict[str, FormatSpec] = {}
for _fmt in ("metr-la", "pems-bay"):
    FORMATS[_fmt] = FormatSpec(_fmt, _bind(_read_dcrnn, _fmt), _bind(_graph_dcrnn, _fmt),
                               "DCRNN .h5 + adj_mx pickle")
for _fmt in ("pems03", "pems04", "pems07", "pems08"):
    FORMATS[_fmt] = FormatSpec(_fmt, _bind(_read_pems, _fmt), _bind(_graph_pems, _fmt),
                               "ASTGCN .npz [T, N, C] + from,to,cost csv")
FORMATS["pemsd7"] = FormatSpec("pemsd7", _bind(_read_pemsd7, "pemsd7"),
                               _bind(_graph_pemsd7, "pemsd7"), "STGCN V_N.csv + W_N.csv")
FORMATS["los-loop"] = FormatSpec("los-loop", _bind(_read_los, "los-loop"),
                                 _bind(_graph_los, "los-loop"), "T-GCN los_speed.csv + los_adj.csv")
FORMATS["generic"] = FormatSpec("generic", _bind(_read_generic, "generic"),
                                _bind(_graph_generic, "generic"),
                                "series/edges/nodes tables (Parquet or CSV)")


def _accepted(*funcs) -> set[str]:
    names: set[str] = set()
    for f in funcs:
        sig = inspect.signature(f.__wrapped_reader__)
        names |= {p.name for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY}
    return {n for n in names if not n.startswith("_")} | set(_KERNEL_KEYS)


def _spec(fmt: str) -> FormatSpec:
    if fmt not in FORMATS:
        raise DiststError(
            f"unknown dataset format {fmt!r}; choose one of {', '.join(FORMATS)}"
        )
    return FORMATS[fmt]


def _check_options(fmt: str, options: dict, funcs) -> None:
    ok = _accepted(*funcs)
    bad = sorted(set(options) - ok)
    if bad:
        raise DiststError(
            f"format {fmt!r}: unknown option(s) {bad}; accepted: {', '.join(sorted(ok))}"
        )


def read_dataset(fmt: str, path, **options) -> SensorNetwork:
    """Read the dataset in directory ``path`` written in format ``fmt`` (see module doc)."""
    spec = _spec(fmt)
    _check_options(fmt, options, (spec.read_dataset, spec.read_graph))
    return spec.read_dataset(path, **options)


def read_graph(fmt: str, path, **options) -> SensorGraph:
    """Read only the graph of the dataset in ``path`` (series files are not needed)."""
    spec = _spec(fmt)
    _check_options(fmt, options, (spec.read_graph,))
    return spec.read_graph(path, **options)
