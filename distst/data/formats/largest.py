"""LargeST (Liu et al., NeurIPS 2023 Datasets and Benchmarks): the dataset information.

``largest`` reads the California benchmark (CA, 8,600 PeMS sensors) or any of its subsets
(GLA: districts 7, 8, 12; GBA: district 4; SD: district 11), laid out as the LargeST release
and its notebooks write them, one folder per dataset:

* the series: a pandas DataFrame in HDF5 (``ca_his_raw_2019.h5``: 5-minute flow, NaN where
  PeMS reported nothing; ``ca_his_2019.h5`` / ``gla_his_2019.h5``: the release's 15-minute
  resampling with NaN filled by 0). Index = timestamps, columns = sensor ids. With several
  ``*his*.h5`` files in the folder, pass ``series=`` to pick one year.
* the metadata: ``ca_meta.csv`` / ``gla_meta.csv`` with the columns ``ID, Lat, Lng,
  District, County, Fwy, Lanes, Type, Direction`` (a subset's file also has ``ID2``, the
  sensor's row in CA's adjacency). Every column must be there. Node order is this file's.
* the graph: ``ca_rn_adj.npy`` / ``gla_rn_adj.npy``, an N x N float matrix of road-network
  weights (the release's own kernel, 1 on the diagonal), used as is (``matrix_kind=weight``),
  directed as stored, without self loops.

``zero_is_missing=True`` (the release fills gaps with 0). Channel ``flow``. Coordinates:
(Lat, Lng). Node attributes for the HyperST models: ``lanes`` and the direction one-hot
``dir_N``, ``dir_S``, ``dir_E``, ``dir_W``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distst.data.formats._common import (
    check_npy_size,
    _check_coords,
    SensorGraph,
    _base,
    _check_increasing,
    _file,
    _finish,
    _glob_one,
    _match_ids,
    _missing,
    _read_csv,
    _to_ns,
)
from distst.data.formats.dcrnn import _read_hdf_safely
from distst.data.network import SensorNetwork
from distst.errors import DiststError
from distst.graph.adjacency import adjacency_from_matrix

META_COLUMNS = ("ID", "Lat", "Lng", "District", "County", "Fwy", "Lanes", "Type", "Direction")
DIRECTIONS = ("N", "S", "E", "W")


def _read_meta(p: Path):
    df = _read_csv(p, dtype=str)
    cols = [c.strip() for c in df.columns]
    df.columns = cols
    missing = [c for c in META_COLUMNS if c not in cols]
    if missing:
        raise DiststError(
            f"{p}: LargeST metadata lacks column(s) {', '.join(missing)} (it has "
            f"{', '.join(cols)}); the release's *_meta.csv has {', '.join(META_COLUMNS)}")
    ids = df["ID"].str.strip()
    dup = ids[ids.duplicated()].tolist()
    if dup:
        raise DiststError(f"{p}: sensor id(s) {dup[:5]} appear more than once in column ID")
    try:
        latlon = df[["Lat", "Lng"]].astype(np.float64).to_numpy()
        lanes = df["Lanes"].astype(np.float64).to_numpy()
    except ValueError as e:
        raise DiststError(f"{p}: columns Lat, Lng and Lanes must be numbers ({e})") from None
    _check_coords(latlon, p, ids.to_numpy(), ("Lat", "Lng"), latlon=True)
    direction = df["Direction"].str.strip().str.upper()
    bad = sorted(set(direction) - set(DIRECTIONS))
    if bad:
        raise DiststError(f"{p}: column Direction holds {bad[:5]}; expected one of "
                          f"{', '.join(DIRECTIONS)}")
    onehot = np.stack([(direction == d).to_numpy() for d in DIRECTIONS], axis=1)
    attrs = np.concatenate([lanes[:, None], onehot.astype(np.float64)], axis=1)
    return ids.to_numpy(), latlon, attrs.astype(np.float32)


def _graph_largest(fmt: str, path, *, graph=None, meta=None, matrix_kind="weight",
                   **kopts) -> SensorGraph:
    base = _base(path)
    mp = _file(base, meta, None, fmt, "metadata", "meta") if meta is not None else \
        _glob_one(base, "*_meta.csv", fmt, "metadata (*_meta.csv)", "meta")
    gp = _file(base, graph, None, fmt, "adjacency", "graph") if graph is not None else \
        _glob_one(base, "*_rn_adj.npy", fmt, "adjacency (*_rn_adj.npy)", "graph")
    node_ids, coords, attrs = _read_meta(mp)
    check_npy_size(gp)
    try:
        adj = np.load(gp, allow_pickle=False)
    except ValueError as e:
        raise DiststError(f"{gp}: not a plain numeric .npy matrix ({e}); distst never "
                          "unpickles a file") from None
    n = len(node_ids)
    if adj.ndim != 2 or adj.shape != (n, n):
        raise DiststError(f"{gp}: adjacency of shape {adj.shape}, but {mp} lists {n} sensors; "
                          "use the adjacency and metadata of the same (sub)dataset")
    ei, ew, info = adjacency_from_matrix(adj.astype(np.float64), matrix_kind=matrix_kind,
                                         origin=str(gp), **kopts)
    return SensorGraph(node_ids, ei, ew, coords, node_attrs=attrs,
                       attr_names=["lanes", *(f"dir_{d}" for d in DIRECTIONS)],
                       source={"files": {"meta": str(mp), "graph": str(gp)}, "adjacency": info,
                               "coords_kind": "latlon"})


def _read_largest(fmt: str, path, *, series=None, zero_is_missing=True, name=None,
                  **gopts) -> SensorNetwork:
    base = _base(path)
    sp = _file(base, series, None, fmt, "series", "series") if series is not None else \
        _glob_one(base, "*his*.h5", fmt, "series (*his*.h5)", "series")
    g = _graph_largest(fmt, path, **gopts)
    df = _read_hdf_safely(sp)
    ts = _to_ns(df.index, str(sp))
    _check_increasing(ts, str(sp))
    perm = _match_ids([str(c).strip() for c in df.columns], list(g.node_ids), sp,
                      g.source["files"]["meta"])
    values = _missing(df.to_numpy(dtype=np.float32)[:, perm], zero_is_missing)[:, :, None]
    src = {"timestamps": "from file", "zero_is_missing": bool(zero_is_missing),
           "files": {**g.source["files"], "series": str(sp)}}
    return _finish(name or sp.stem, fmt, values, ts, g, ["flow"], sp, src)
