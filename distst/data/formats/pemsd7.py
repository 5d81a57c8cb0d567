"""PeMSD7(M) in the STGCN release: the dataset information.

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
"""

from __future__ import annotations


import numpy as np
import pandas as pd

from distst.data.network import DEFAULT_STEP_MINUTES, SensorNetwork, regular_times
from distst.errors import DiststError
from distst.graph.adjacency import adjacency_from_matrix
from distst.data.formats._common import (
    _check_coords,
    SensorGraph,
    _base,
    _file,
    _finish,
    _glob_one,
    _missing,
    _read_csv,
    _read_matrix,
    _regular_timestamps,
    _start,
)


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
        try:
            coords = st[["Latitude", "Longitude"]].to_numpy(dtype=np.float64)
        except ValueError as e:
            raise DiststError(f"{sp}: Latitude and Longitude must be numbers ({e}); fix the "
                              "file (or pass stations=False)") from None
        _check_coords(coords, sp, node_ids, ("Latitude", "Longitude"), latlon=True)
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
    step_ns = int(round(step_minutes * 60e9))
    # D weekdays lie within (D // 5 + 2) calendar weeks: checked before pandas, which raises
    # or wraps past the int64-nanosecond range
    day0 = pd.Timestamp(start).normalize()
    regular_times(day0, (t // per_day // 5 + 2) * 7 * per_day, step_ns, origin)
    days = pd.bdate_range(day0, periods=t // per_day)
    day_ns = days.as_unit("ns").asi8.astype(np.int64)  # [D]
    steps = np.arange(per_day, dtype=np.int64) * step_ns  # [S]
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
