"""The generic table format: any sensor network as Parquet or CSV tables.

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

from pathlib import Path

import numpy as np
import pandas as pd

from distst.data.network import SensorNetwork
from distst.errors import DiststError
from distst.graph.adjacency import adjacency_from_edges
from distst.data.formats._common import (
    _check_coords,
    SensorGraph,
    _base,
    _check_increasing,
    _file,
    _finish,
    _match_ids,
    _missing,
    _read_csv,
    _to_ns,
)


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
            try:
                coords = df[[a, b]].to_numpy(dtype=np.float64)
            except (ValueError, TypeError) as e:
                raise DiststError(f"{p}: columns {a!r} and {b!r} must be numbers ({e}); fix "
                                  "the node table") from None
            coords = _check_coords(coords, p, ids, (a, b), latlon=k == "latlon")
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
