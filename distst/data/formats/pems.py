"""PEMS03, PEMS04, PEMS07 and PEMS08 in the ASTGCN release: the dataset information.

``pems03``, ``pems04``, ``pems07``, ``pems08`` (Guo et al., ASTGCN, AAAI 2019)
    ``PEMS0x.npz`` with key ``data`` ``[T, N, C]``: C = 3 -> ``flow, occupancy, speed``,
    C = 1 -> ``flow`` (PEMS03 and PEMS07 ship flow only); ``PEMS0x.csv`` edge list
    ``from,to,cost`` over node indices (``from,to,distance`` over raw PeMS ids for PEMS03,
    mapped through ``PEMS03.txt`` where line i is node i). The files have no timestamps:
    synthetic 5-minute steps from PEMS03 2018-09-01, PEMS04 2018-01-01, PEMS07 2017-05-01
    (uncertain, see :mod:`distst.data.formats`), PEMS08 2016-07-01, or ``start=``. Models are fed flow only by
    default (``source["default_input_channels"] = [0]``, read by the engine when
    ``data.input_channels`` is empty), as the literature does. Weights: ``edge_weights="binary"`` (default, the ASTGCN
    ``get_adjacency_matrix``: ``A[from, to] = 1`` for every listed edge, directed as listed)
    or ``"kernel"`` (Gaussian kernel of the cost, ``convention="dcrnn"`` by default).
    Graph-only reads use the published node counts (358 from ``PEMS03.txt``, 307, 883, 170;
    ``num_nodes=`` overrides). Node ids: the PeMS ids for PEMS03, ``"0".."N-1"`` otherwise.
    ``zero_is_missing=True``.
"""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd

from distst.data.network import DEFAULT_STEP_MINUTES, SensorNetwork
from distst.errors import DiststError
from distst.graph.adjacency import adjacency_from_edges
from distst.data.formats._common import (
    check_npy_size,
    _read_edge_table,
    SensorGraph,
    _base,
    _file,
    _finish,
    _missing,
    _regular_timestamps,
    _start,
)


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
    check_npy_size(sp, "data")
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
