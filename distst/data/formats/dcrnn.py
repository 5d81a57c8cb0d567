"""METR-LA and PEMS-BAY in the DCRNN release: the dataset information.

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
"""

from __future__ import annotations

import math
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from distst.data.network import SensorNetwork
from distst.errors import DiststError
from distst.graph.adjacency import adjacency_from_edges, adjacency_from_matrix
from distst.data.formats._common import (
    _check_coords,
    _read_edge_table,
    SensorGraph,
    _base,
    _check_increasing,
    _file,
    _finish,
    _is_number,
    _match_ids,
    _missing,
    _read_csv,
    _to_ns,
)


# -- METR-LA / PEMS-BAY ----------------------------------------------------------------------
#: what distst builds from a pickle at most: bytes of one array, values of the structure
#: with shared references counted each time they are reached, levels of nesting
MAX_PICKLED_BYTES = 2**31
MAX_PICKLED_VALUES = 10**7
MAX_PICKLED_DEPTH = 32


class _BoundedArray(np.ndarray):
    """``numpy.ndarray`` as a pickle may call it: an array declared larger than
    ``MAX_PICKLED_BYTES`` is refused before it is allocated (a 300-byte pickle declaring
    10^6 x 10^6 floats asked for 3.6 TiB)."""

    def __new__(cls, shape, dtype=float, *args, **kwargs):
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        size = math.prod(int(d) for d in dims) * np.dtype(dtype).itemsize
        if size > MAX_PICKLED_BYTES:
            raise pickle.UnpicklingError(
                f"it declares an array of shape {dims} ({size / 2**30:,.1f} GiB), more than the "
                f"{MAX_PICKLED_BYTES / 2**30:g} GiB distst reads from a pickle")
        return np.ndarray.__new__(cls, dims, dtype, *args, **kwargs)


def _check_structure(obj) -> None:
    """Refuse a structure that expands beyond ``MAX_PICKLED_VALUES`` values or nests deeper
    than ``MAX_PICKLED_DEPTH`` levels. Shared references make a pickle of a few hundred bytes
    into 10^9 values ("billion laughs") that any later walk over it never finishes; sizes
    are counted once per object (memoised), so the check itself is linear in the file."""
    seen: dict[int, int] = {}

    def size(x, depth: int) -> int:
        if isinstance(x, np.ndarray) and x.dtype != object:
            return 1
        if not isinstance(x, (list, tuple, set, frozenset, dict, np.ndarray)):
            return 1
        if depth > MAX_PICKLED_DEPTH:  # also what a reference cycle becomes
            raise pickle.UnpicklingError(f"it nests deeper than {MAX_PICKLED_DEPTH} levels")
        if id(x) in seen:
            return seen[id(x)]
        parts = ([v for kv in x.items() for v in kv] if isinstance(x, dict) else
                 x.ravel().tolist() if isinstance(x, np.ndarray) else x)
        total = 1
        for y in parts:
            total += size(y, depth + 1)
            if total > MAX_PICKLED_VALUES:
                raise pickle.UnpicklingError(
                    f"its shared references expand to more than {MAX_PICKLED_VALUES:,} values")
        seen[id(x)] = total
        return total

    size(obj, 0)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admit only what a pickled list/dict/ndarray needs, so a pickle cannot run code, and
    only structures of bounded size and depth (:func:`_check_structure`, ``_BoundedArray``)."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) == ("numpy", "ndarray"):
            return _BoundedArray
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}")

    def load(self):
        obj = super().load()
        _check_structure(obj)
        return obj


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
    if not isinstance(obj[0], (list, tuple, np.ndarray)) or not all(
            isinstance(s, (str, bytes, int, np.generic)) for s in obj[0]):
        raise DiststError(f"{p}: sensor_ids (the first element) must be a list of ids (text or "
                          "numbers); regenerate the pickle with DCRNN's gen_adj_mx.py")
    ids = [str(s) for s in obj[0]]
    adj = np.asarray(obj[2]).view(np.ndarray) if isinstance(obj[2], np.ndarray) else None
    if adj is None or adj.dtype.kind not in "fiub":
        what = type(obj[2]).__name__ if adj is None else f"an array of {adj.dtype} values"
        raise DiststError(f"{p}: adj_mx (the third element) is {what}, not a numeric matrix; "
                          "regenerate the pickle with DCRNN's gen_adj_mx.py")
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
    try:
        latlon = df.iloc[:, 1:].astype(np.float64).to_numpy()
    except ValueError as e:
        raise DiststError(f"{p}: latitude and longitude must be numbers ({e}); fix the file or "
                          "pass locations=None") from None
    _check_coords(latlon, p, ids, ("latitude", "longitude"), latlon=True)
    pos = {s: i for i, s in enumerate(ids)}
    missing = [s for s in node_ids if s not in pos]
    if missing:
        raise DiststError(
            f"{p}: no location for sensor(s) {missing[:5]}; add them or pass locations=None"
        )
    return latlon[[pos[s] for s in node_ids]]


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
