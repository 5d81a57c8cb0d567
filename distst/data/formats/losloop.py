"""Los-loop in the T-GCN release: the dataset information.

``los-loop`` (Zhao et al., T-GCN, IEEE T-ITS 2019)
    ``los_speed.csv``: header row of sensor ids (the METR-LA ids, same order) and ``[T, N]``
    speeds; ``los_adj.csv``: ``[N, N]`` weighted adjacency, no header (used as is). Start
    2012-03-01 00:00, 5-minute steps. ``zero_is_missing=False`` (gaps were interpolated by
    the publishers, the file has no zeros).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from distst.data.network import DEFAULT_STEP_MINUTES, SensorNetwork
from distst.errors import DiststError
from distst.graph.adjacency import adjacency_from_matrix
from distst.data.formats._common import (
    SensorGraph,
    _base,
    _check_csv_shape,
    _file,
    _finish,
    _missing,
    _read_csv,
    _read_matrix,
    _regular_timestamps,
    _start,
)


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
