"""Dataset readers: the real graph files, tiny files written here in every format, bad input."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distst.data.formats import FORMATS, read_dataset, read_graph
from distst.data.network import load_network, save_network
from distst.errors import DiststError
from distst.graph.adjacency import edges_to_dense

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"  # ../shared beside the repo
RNG = np.random.default_rng(7)


def _ids(n: int) -> list[str]:
    return [str(700000 + 11 * i) for i in range(n)]


def _speeds(t: int, n: int) -> np.ndarray:
    return np.round(RNG.uniform(20.0, 70.0, size=(t, n)), 2)


# -- writers for the tiny datasets -----------------------------------------------------------
def write_dcrnn(d: Path, *, n=6, t=12, h5="metr-la.h5", pkl="adj_mx.pkl", order=None,
                values=None, index=None, locations=True) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    ids = _ids(n)
    adj = np.eye(n, dtype=np.float32)
    adj[0, 1], adj[1, 2], adj[3, 2], adj[5, 4] = 0.5, 0.25, 0.75, 0.125
    with open(d / pkl, "wb") as f:
        pickle.dump([ids, {s: i for i, s in enumerate(ids)}, adj], f, protocol=2)
    vals = _speeds(t, n) if values is None else values
    vals[2, 3] = 0.0  # a detector reporting nothing
    cols = ids if order is None else [ids[i] for i in order]
    src = vals if order is None else vals[:, order]
    idx = pd.date_range("2012-03-01", periods=t, freq="5min") if index is None else index
    pd.DataFrame(src, index=idx, columns=cols).to_hdf(d / h5, key="df")
    if locations:
        loc = pd.DataFrame({"index": range(n), "sensor_id": ids[::-1],
                            "latitude": np.arange(n)[::-1] + 34.0,
                            "longitude": -118.0 - np.arange(n)[::-1]})
        loc.to_csv(d / "graph_sensor_locations.csv", index=False)
    return {"ids": ids, "adj": adj, "values": vals, "index": idx}


def write_pems(d: Path, fmt="pems08", *, n=6, t=10, c=3, crlf=True) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    data = RNG.uniform(1.0, 300.0, size=(t, n, c)).round(1)
    data[4, 1, 0] = 0.0
    np.savez(d / f"{fmt.upper()}.npz", data=data)
    edges = [(0, 1, 310.6), (1, 2, 330.9), (2, 3, 12.5), (4, 5, 100.0), (0, 1, 310.6)]
    nl = "\r\n" if crlf else "\n"
    if fmt == "pems03":
        ids = _ids(n)
        lines = ["from,to,distance"] + [f"{ids[a]},{ids[b]},{w}" for a, b, w in edges]
        (d / "PEMS03.txt").write_text(nl.join(ids) + nl)
    else:
        lines = ["from,to,cost"] + [f"{a},{b},{w}" for a, b, w in edges]
    (d / f"{fmt.upper()}.csv").write_bytes((nl.join(lines) + nl).encode())
    return {"data": data, "edges": edges}


def write_pemsd7(d: Path, *, n=5, days=1, stations=True, prefix="PeMSD7_") -> dict:
    d.mkdir(parents=True, exist_ok=True)
    V = _speeds(288 * days, n)
    V[0, 0] = 0.0
    xy = np.arange(n, dtype=float) * 1500.0
    W = np.abs(xy[:, None] - xy[None, :])  # stations 1.5 km apart on a line
    np.savetxt(d / f"{prefix}V_{n}.csv", V, delimiter=",", fmt="%.2f")
    np.savetxt(d / f"{prefix}W_{n}.csv", W, delimiter=",", fmt="%.18e")
    if stations:
        pd.DataFrame({"ID": _ids(n), "Fwy": 5, "Dir": "S", "District": 7,
                      "Latitude": 34.0 + np.arange(n), "Longitude": -118.0 - np.arange(n)}
                     ).to_csv(d / f"{prefix}M_Station_Info.csv")
    return {"V": V, "W": W}


def write_los(d: Path, *, n=6, t=8) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    V = _speeds(t, n)
    pd.DataFrame(V, columns=_ids(n)).to_csv(d / "los_speed.csv", index=False)
    A = np.eye(n)
    A[0, 1] = A[1, 0] = 0.375
    np.savetxt(d / "los_adj.csv", A, delimiter=",")
    return {"V": V, "A": A}


def write_generic(d: Path, *, layout="long", ext="parquet", n=5, t=6, nodes=True) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    ids = [f"s{i}" for i in range(n)]
    ts = pd.date_range("2021-01-01", periods=t, freq="15min")
    speed, flow = _speeds(t, n), _speeds(t, n) * 10
    save = (lambda df, p: df.to_parquet(p, index=False)) if ext == "parquet" else \
        (lambda df, p: df.to_csv(p, index=False))
    if layout == "long":
        rows = [(ts[a], ids[b], speed[a, b], flow[a, b]) for a in range(t) for b in range(n)
                if not (a == 1 and b == 2)]  # one (time, node) pair absent -> NaN
        df = pd.DataFrame(rows, columns=["timestamp", "node_id", "speed", "flow"])
        save(df.sample(frac=1.0, random_state=0), d / f"series.{ext}")  # any row order
    else:
        df = pd.DataFrame(speed, columns=ids)
        df.insert(0, "timestamp", ts)
        save(df[["timestamp"] + ids[::-1]], d / f"series.{ext}")  # columns in another order
    save(pd.DataFrame({"from": ["s0", "s1", "s3"], "to": ["s1", "s2", "s4"],
                       "weight": [0.5, 1.0, 0.25]}), d / f"edges.{ext}")
    if nodes:
        save(pd.DataFrame({"node_id": ids, "x": np.arange(n) * 1.0, "y": np.arange(n) * 2.0,
                           "lanes": np.arange(n) + 2, "name": [f"road {i}" for i in ids]}),
             d / f"nodes.{ext}")
    return {"ids": ids, "ts": ts, "speed": speed, "flow": flow}


def _ns(index) -> np.ndarray:
    return pd.DatetimeIndex(index).as_unit("ns").asi8


# -- real files ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fmt, folder, nodes",
    [("metr-la", "metr-la", 207), ("pems-bay", "pems-bay", 325), ("pemsd7", "pemsd7m", 228),
     ("pems03", "pems03", 358), ("pems07", "pems07", 883), ("pems08", "pems08", 170),
     ("los-loop", "los-loop", 207)],
)
def test_real_graphs_load_with_documented_node_counts(fmt, folder, nodes):
    g = read_graph(fmt, DATA / folder)
    assert g.num_nodes == nodes == len(set(g.node_ids))
    assert g.edge_index.dtype == np.int64 and g.edge_weight.dtype == np.float32
    assert g.edge_index.min() >= 0 and g.edge_index.max() < nodes
    assert not (g.edge_index[0] == g.edge_index[1]).any()  # no self loops by default
    assert np.all(g.edge_weight > 0) and np.all(g.edge_weight <= 1)


def test_metr_la_graph_facts():
    g = read_graph("metr-la", DATA / "metr-la", self_loops=True)
    assert g.num_edges == 1722  # nonzeros of adj_mx incl. the diagonal
    assert read_graph("metr-la", DATA / "metr-la").num_edges == 1722 - 207
    assert g.source["adjacency"]["matrix_kind"] == "weight"
    ids = (DATA / "metr-la" / "graph_sensor_ids.txt").read_text().strip().split(",")
    assert list(g.node_ids) == ids
    np.testing.assert_allclose(g.coords[0], [34.15497, -118.31829])  # sensor 773869


def test_pems_bay_distances_reproduce_pickled_adjacency():
    # DCRNN gen_adj_mx on distances_bay_2017.csv gives adj_mx_bay.pkl back.
    folder = DATA / "pems-bay"
    from_pkl = read_graph("pems-bay", folder, self_loops=True)
    from_dist = read_graph("pems-bay", folder, distances="distances_bay_2017.csv", self_loops=True)
    assert from_pkl.num_edges == 2694
    a = edges_to_dense(from_pkl.edge_index, from_pkl.edge_weight, 325)
    b = edges_to_dense(from_dist.edge_index, from_dist.edge_weight, 325)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert from_dist.source["adjacency"]["kernel"]["convention"] == "dcrnn"


def test_pemsd7_stgcn_weights_and_stations():
    g = read_graph("pemsd7", DATA / "pemsd7m")
    W = edges_to_dense(g.edge_index, g.edge_weight, 228)
    np.testing.assert_array_equal(W, W.T)
    assert g.edge_weight.min() > 0.5 and g.edge_weight.max() <= 1.0
    assert g.node_ids[0] == "716939" and g.coords.shape == (228, 2)
    assert g.source["adjacency"]["kernel"]["scale"] == 10000.0


def test_pems_edge_lists():
    g3 = read_graph("pems03", DATA / "pems03")
    pos = {s: i for i, s in enumerate(g3.node_ids)}
    pairs = set(zip(g3.edge_index[0].tolist(), g3.edge_index[1].tolist()))
    assert (pos["317842"], pos["318711"]) in pairs  # first row of PEMS03.csv
    assert g3.num_edges == 546  # 547 rows, one self loop (314013 -> 314013)
    g8 = read_graph("pems08", DATA / "pems08")
    assert g8.num_edges == 277 and g8.source["adjacency"]["duplicate_rows_merged"] == 18
    k8 = read_graph("pems08", DATA / "pems08", edge_weights="kernel")
    assert k8.source["adjacency"]["kernel"]["convention"] == "dcrnn"
    assert 0 < k8.num_edges <= 277 and k8.edge_weight.max() <= 1.0


def test_los_loop_full_series():
    net = read_dataset("los-loop", DATA / "los-loop")
    assert net.values.shape == (2016, 207, 1)
    ids = (DATA / "metr-la" / "graph_sensor_ids.txt").read_text().strip().split(",")
    assert list(net.node_ids) == ids
    assert list(net.node_ids) == list(read_graph("metr-la", DATA / "metr-la").node_ids)
    assert not np.isnan(net.values).any()
    assert float(np.min(net.values)) == 1.0 and float(np.max(net.values)) == 70.0
    assert net.step_minutes == 5.0
    assert pd.Timestamp(int(net.timestamps[0])) == pd.Timestamp("2012-03-01 00:00")
    assert pd.Timestamp(int(net.timestamps[-1])) == pd.Timestamp("2012-03-07 23:55")


# -- tiny files in every format --------------------------------------------------------------
def test_metr_la_small_files_reordered_and_zero_missing(tmp_path):
    order = [3, 0, 5, 1, 4, 2]  # h5 columns in another order than the pickle
    w = write_dcrnn(tmp_path, order=order)
    net = read_dataset("metr-la", tmp_path)
    assert list(net.node_ids) == w["ids"] and net.channels == ["speed"]
    expect = w["values"].astype(np.float32)
    expect[expect == 0] = np.nan
    np.testing.assert_array_equal(net.values[:, :, 0], expect)
    assert np.isnan(net.values[2, 3, 0])
    np.testing.assert_array_equal(net.timestamps, _ns(w["index"]))
    np.testing.assert_array_equal(net.edge_index, [[0, 1, 3, 5], [1, 2, 2, 4]])
    np.testing.assert_array_equal(net.edge_weight, [0.5, 0.25, 0.75, 0.125])
    np.testing.assert_array_equal(net.coords[:, 0], 34.0 + np.arange(6))  # matched by id
    keep = read_dataset("metr-la", tmp_path, zero_is_missing=False)
    assert keep.values[2, 3, 0] == 0.0


def test_pems_bay_small_files(tmp_path):
    write_dcrnn(tmp_path, h5="pems-bay.h5", pkl="adj_mx_bay.pkl", locations=False)
    net = read_dataset("pems-bay", tmp_path)
    assert net.name == "pems-bay" and net.coords is None and net.num_nodes == 6
    assert net.values.shape == (12, 6, 1)
    assert net.source["files"]["series"].endswith("pems-bay.h5")


@pytest.mark.parametrize("fmt", ["pems03", "pems04", "pems07", "pems08"])
def test_pems_npz_small_files(tmp_path, fmt):
    w = write_pems(tmp_path, fmt, c=1 if fmt in ("pems03", "pems07") else 3)
    net = read_dataset(fmt, tmp_path)
    expect = w["data"].astype(np.float32)
    expect[expect == 0] = np.nan
    np.testing.assert_array_equal(net.values, expect)
    assert np.isnan(net.values[4, 1, 0])
    assert net.channels == (["flow"] if fmt in ("pems03", "pems07") else
                            ["flow", "occupancy", "speed"])
    np.testing.assert_array_equal(net.edge_index, [[0, 1, 2, 4], [1, 2, 3, 5]])
    np.testing.assert_array_equal(net.edge_weight, np.ones(4))  # ASTGCN 0/1
    start = {"pems03": "2018-09-01", "pems04": "2018-01-01", "pems07": "2017-05-01",
             "pems08": "2016-07-01"}[fmt]
    np.testing.assert_array_equal(
        net.timestamps, _ns(pd.date_range(start, periods=10, freq="5min")))
    if fmt == "pems03":
        assert list(net.node_ids) == _ids(6)
    shifted = read_dataset(fmt, tmp_path, start="2020-02-02", step_minutes=15)
    assert pd.Timestamp(int(shifted.timestamps[1])) == pd.Timestamp("2020-02-02 00:15")


def test_pems_kernel_weights_option(tmp_path):
    write_pems(tmp_path, "pems08", crlf=False)
    net = read_dataset("pems08", tmp_path, edge_weights="kernel", sigma=300.0, threshold=0.0)
    expect = np.exp(-np.square(np.array([310.6, 330.9, 12.5, 100.0]) / 300.0))
    np.testing.assert_allclose(net.edge_weight, expect, rtol=1e-6)


def test_pemsd7_small_files(tmp_path):
    w = write_pemsd7(tmp_path, days=2)
    net = read_dataset("pemsd7", tmp_path)
    assert np.isnan(net.values[0, 0, 0])
    np.testing.assert_allclose(net.values[1:, :, 0], w["V"][1:], rtol=1e-6)
    assert list(net.node_ids) == _ids(5) and net.coords.shape == (5, 2)
    # neighbours 1.5 km apart: exp(-0.15^2 / 0.1); 3 km: exp(-0.9) < 0.5 -> cut
    np.testing.assert_array_equal(net.edge_index, [[0, 1, 1, 2, 2, 3, 3, 4],
                                                   [1, 0, 2, 1, 3, 2, 4, 3]])
    np.testing.assert_allclose(net.edge_weight, math.exp(-0.225), rtol=1e-6)
    # 2012-05-01 is a Tuesday: day 2 is Wednesday 2012-05-02, no gap yet
    assert pd.Timestamp(int(net.timestamps[288])) == pd.Timestamp("2012-05-02 00:00")
    write_pemsd7(tmp_path / "fri", days=2, stations=False, prefix="")
    net2 = read_dataset("pemsd7", tmp_path / "fri", start="2012-05-04")  # a Friday
    assert pd.Timestamp(int(net2.timestamps[288])) == pd.Timestamp("2012-05-07 00:00")  # Monday
    assert list(net2.node_ids) == [str(i) for i in range(5)] and net2.coords is None
    flat = read_dataset("pemsd7", tmp_path / "fri", calendar="consecutive")
    assert np.all(np.diff(flat.timestamps) == 300 * 10**9)


def test_los_loop_small_files(tmp_path):
    w = write_los(tmp_path)
    net = read_dataset("los-loop", tmp_path)
    np.testing.assert_allclose(net.values[:, :, 0], w["V"], rtol=1e-6)
    assert list(net.node_ids) == _ids(6)
    np.testing.assert_array_equal(net.edge_index, [[0, 1], [1, 0]])
    np.testing.assert_array_equal(net.edge_weight, [0.375, 0.375])
    assert net.source["adjacency"]["matrix_kind"] == "weight"


@pytest.mark.parametrize("ext", ["parquet", "csv"])
def test_generic_long(tmp_path, ext):
    w = write_generic(tmp_path, layout="long", ext=ext)
    net = read_dataset("generic", tmp_path)
    assert list(net.node_ids) == w["ids"] and net.channels == ["speed", "flow"]
    exp = np.stack([w["speed"], w["flow"]], axis=-1).astype(np.float32)  # [T, N, 2]
    exp[1, 2, :] = np.nan
    np.testing.assert_array_equal(net.values, exp)
    np.testing.assert_array_equal(net.timestamps, _ns(w["ts"]))
    np.testing.assert_array_equal(net.edge_index, [[0, 1, 3], [1, 2, 4]])
    np.testing.assert_array_equal(net.edge_weight, [0.5, 1.0, 0.25])
    np.testing.assert_array_equal(net.coords, np.stack([np.arange(5), 2 * np.arange(5)], 1))
    assert net.attr_names == ["lanes"]
    np.testing.assert_array_equal(net.node_attrs[:, 0], np.arange(5) + 2)
    assert net.source["ignored_node_columns"] == ["name"]


def test_generic_wide_without_nodes_and_distance_edges(tmp_path):
    w = write_generic(tmp_path, layout="wide", nodes=False)
    pd.DataFrame({"from": ["s0", "s2"], "to": ["s1", "s3"], "distance": [100.0, 300.0]}
                 ).to_parquet(tmp_path / "edges.parquet")
    net = read_dataset("generic", tmp_path, sigma=200.0, threshold=0.0)
    # node order = the series' column order (written reversed)
    assert list(net.node_ids) == w["ids"][::-1]
    np.testing.assert_allclose(net.values[:, :, 0], w["speed"][:, ::-1], rtol=1e-6)
    assert net.channels == ["value"] and net.coords is None
    pos = {s: i for i, s in enumerate(net.node_ids)}
    d = dict(zip(zip(net.edge_index[0].tolist(), net.edge_index[1].tolist()),
                 net.edge_weight.tolist()))
    assert d[(pos["s0"], pos["s1"])] == pytest.approx(math.exp(-0.25))
    assert d[(pos["s2"], pos["s3"])] == pytest.approx(math.exp(-2.25))
    g = read_graph("generic", tmp_path)
    assert list(g.node_ids) == ["s0", "s2", "s1", "s3"]  # edge table order, graph only


@pytest.mark.parametrize("layout", ["long", "wide"])
def test_generic_missing_rows_become_missing_steps(tmp_path, layout):
    """Rows absent at 3 times (one gap of 2 steps, one of 1): the grid keeps its 15-minute
    step and the skipped times are missing readings, so no window joins the two sides."""
    w = write_generic(tmp_path / "raw", layout=layout, ext="csv", t=12)
    f = tmp_path / "raw" / "series.csv"
    df = pd.read_csv(f, parse_dates=["timestamp"])
    drop = [w["ts"][3], w["ts"][4], w["ts"][8]]
    df[~df["timestamp"].isin(drop)].to_csv(f, index=False)
    net = read_dataset("generic", tmp_path / "raw")
    assert net.num_steps == 12 and net.step_minutes == 15.0
    np.testing.assert_array_equal(net.timestamps, _ns(w["ts"]))
    assert np.isnan(net.values[[3, 4, 8]]).all()
    kept = [i for i in range(12) if i not in (3, 4, 8)]
    order = [list(net.node_ids).index(i) for i in w["ids"]]
    got = net.values[kept][:, order, 0]  # [T - 3, N] speed channel, in w's node order
    want = w["speed"][kept].copy()
    if layout == "long":
        want[kept.index(1), 2] = np.nan  # write_generic's one absent (time, node) pair
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert net.source["gaps"] == {"filled_steps": 3, "gaps": 2, "step_minutes": 15.0,
                                  "longest": ["2021-01-01 00:30:00", "2021-01-01 01:15:00"]}


def test_round_trip_save_load(tmp_path):
    write_generic(tmp_path / "raw", layout="long")
    net = read_dataset("generic", tmp_path / "raw")
    out = save_network(net, tmp_path / "prepared")
    back = load_network(out, mmap=False)
    np.testing.assert_array_equal(back.values, net.values)
    for attr in ("timestamps", "node_ids", "edge_index", "edge_weight", "coords", "node_attrs"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(net, attr))
    assert back.channels == net.channels and back.attr_names == net.attr_names
    assert back.source == net.source and back.name == net.name
    write_dcrnn(tmp_path / "la")
    la = read_dataset("metr-la", tmp_path / "la")
    back = load_network(save_network(la, tmp_path / "la_prep"))
    np.testing.assert_array_equal(back.values, la.values)
    assert back.source["timestamps"] == "from file"


# -- bad input -------------------------------------------------------------------------------
def test_unknown_format_and_option(tmp_path):
    with pytest.raises(DiststError, match="unknown dataset format 'metrla'; choose one of metr-la"):
        read_dataset("metrla", tmp_path)
    assert set(FORMATS) == {"metr-la", "pems-bay", "pems03", "pems04", "pems07", "pems08",
                            "pemsd7", "los-loop", "largest", "generic"}
    write_los(tmp_path)
    with pytest.raises(DiststError, match=r"unknown option\(s\) \['sigmaa'\]; accepted:.*sigma"):
        read_dataset("los-loop", tmp_path, sigmaa=3)


@pytest.mark.parametrize("fmt, writer, remove, option", [
    ("metr-la", write_dcrnn, "metr-la.h5", "series="),
    ("metr-la", write_dcrnn, "adj_mx.pkl", "graph="),
    ("pems08", write_pems, "PEMS08.npz", "series="),
    ("pems08", write_pems, "PEMS08.csv", "graph="),
    ("pemsd7", write_pemsd7, "PeMSD7_W_5.csv", "graph="),
    ("los-loop", write_los, "los_speed.csv", "series="),
    ("generic", write_generic, "edges.parquet", "edges="),
])
def test_missing_file(tmp_path, fmt, writer, remove, option):
    writer(tmp_path)
    (tmp_path / remove).unlink()
    with pytest.raises(DiststError, match=rf"{Path(remove).stem}.*not found|no .*matching") as e:
        read_dataset(fmt, tmp_path)
    assert option in str(e.value)
    with pytest.raises(DiststError, match="does not exist"):
        read_dataset(fmt, tmp_path / "nope")


def test_series_ids_or_count_differ_from_graph(tmp_path):
    w = write_dcrnn(tmp_path / "la")
    df = pd.read_hdf(tmp_path / "la" / "metr-la.h5")
    df.columns = w["ids"][:-1] + ["999999"]
    df.to_hdf(tmp_path / "la" / "metr-la.h5", key="df")
    with pytest.raises(DiststError, match=r"metr-la\.h5.*only in the series: \['999999'\]"):
        read_dataset("metr-la", tmp_path / "la")
    write_pems(tmp_path / "p8", "pems08", n=6)
    with pytest.raises(DiststError, match=r"PEMS08\.csv: edge 4 -> 5 refers to a node outside"):
        read_dataset("pems08", tmp_path / "p8", num_nodes=5)
    write_pems(tmp_path / "p3", "pems03", n=6, c=1)
    np.savez(tmp_path / "p3" / "PEMS03.npz", data=np.ones((4, 5, 1)))
    with pytest.raises(DiststError, match=r"PEMS03\.npz: the series has 5 sensors but the graph has 6"):
        read_dataset("pems03", tmp_path / "p3")
    write_los(tmp_path / "los", n=6)
    np.savetxt(tmp_path / "los" / "los_adj.csv", np.eye(5), delimiter=",")
    with pytest.raises(DiststError, match=r"los_speed\.csv: 6 sensors in the header but"):
        read_dataset("los-loop", tmp_path / "los")
    write_generic(tmp_path / "g", layout="wide")
    nodes = pd.read_parquet(tmp_path / "g" / "nodes.parquet")
    nodes.iloc[:4].to_parquet(tmp_path / "g" / "nodes.parquet")
    with pytest.raises(DiststError, match=r"edges refer to node ids \['s4'\]"):
        read_dataset("generic", tmp_path / "g")


def test_bad_distance_matrix(tmp_path):
    write_pemsd7(tmp_path)
    W = np.loadtxt(tmp_path / "PeMSD7_W_5.csv", delimiter=",")
    np.savetxt(tmp_path / "PeMSD7_W_5.csv", W[:, :4], delimiter=",")
    with pytest.raises(DiststError, match=r"PeMSD7_W_5\.csv: .*square \[N, N\], got shape \(5, 4\)"):
        read_dataset("pemsd7", tmp_path)
    W[1, 3] = -5.0
    np.savetxt(tmp_path / "PeMSD7_W_5.csv", W, delimiter=",")
    with pytest.raises(DiststError, match=r"PeMSD7_W_5\.csv: 1 negative entries .*row 2, column 4, counted from 1"):
        read_graph("pemsd7", tmp_path)
    (tmp_path / "W_5.csv").write_text("1\n")
    with pytest.raises(DiststError, match=r"several distance matrix .* pass graph=PATH"):
        read_graph("pemsd7", tmp_path)


def test_all_missing_sensor(tmp_path):
    vals = _speeds(12, 6)
    vals[:, 4] = 0.0
    w = write_dcrnn(tmp_path, values=vals)
    with pytest.raises(DiststError, match=rf"metr-la\.h5: sensor\(s\) {w['ids'][4]} have no observed"):
        read_dataset("metr-la", tmp_path)
    read_dataset("metr-la", tmp_path, zero_is_missing=False)  # zeros kept as values: fine


def test_non_increasing_timestamps(tmp_path):
    swapped = [0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]  # rows 4 and 5 out of order
    idx = pd.date_range("2012-03-01", periods=12, freq="5min")[swapped]
    write_dcrnn(tmp_path / "la", index=idx)
    with pytest.raises(DiststError, match=r"metr-la\.h5: timestamps are not strictly increasing at row 5"):
        read_dataset("metr-la", tmp_path / "la")
    write_generic(tmp_path / "g", layout="wide", ext="csv")
    df = pd.read_csv(tmp_path / "g" / "series.csv")
    df.loc[3, "timestamp"] = df.loc[2, "timestamp"]
    df.to_csv(tmp_path / "g" / "series.csv", index=False)
    with pytest.raises(DiststError, match=r"series\.csv: timestamps are not strictly increasing at row 3"):
        read_dataset("generic", tmp_path / "g")
    write_generic(tmp_path / "l", layout="long", ext="csv")
    df = pd.read_csv(tmp_path / "l" / "series.csv")
    pd.concat([df, df.iloc[[0]]]).to_csv(tmp_path / "l" / "series.csv", index=False)
    with pytest.raises(DiststError, match=r"series\.csv: row \d+ repeats timestamp"):
        read_dataset("generic", tmp_path / "l")


@pytest.mark.parametrize("table, drop, pattern", [
    ("series", "timestamp", r"series\.csv: missing required column\(s\) \['timestamp'\]"),
    ("edges", "from", r"edges\.csv: missing required column\(s\) \['from'\]"),
    ("edges", "weight", r"edges\.csv: missing required column 'weight' or 'distance'"),
    ("nodes", "node_id", r"nodes\.csv: missing required column\(s\) \['node_id'\]"),
])
def test_generic_missing_columns(tmp_path, table, drop, pattern):
    write_generic(tmp_path, layout="long", ext="csv")
    p = tmp_path / f"{table}.csv"
    pd.read_csv(p).drop(columns=[drop]).to_csv(p, index=False)
    with pytest.raises(DiststError, match=pattern):
        read_dataset("generic", tmp_path)


def test_other_bad_files(tmp_path):
    write_dcrnn(tmp_path / "la")
    with open(tmp_path / "la" / "adj_mx.pkl", "wb") as f:
        pickle.dump({"not": "a list"}, f, protocol=2)
    with pytest.raises(DiststError, match=r"adj_mx\.pkl: expected a 3-element list"):
        read_graph("metr-la", tmp_path / "la")
    with open(tmp_path / "la" / "adj_mx.pkl", "wb") as f:
        pickle.dump([["1"], {"1": 0}, np.eye(1), print], f, protocol=2)
    with pytest.raises(DiststError, match=r"adj_mx\.pkl: not a DCRNN adjacency pickle \(refusing .*print\)"):
        read_graph("metr-la", tmp_path / "la")  # the unpickler only admits numpy arrays
    write_dcrnn(tmp_path / "la2")
    loc = pd.read_csv(tmp_path / "la2" / "graph_sensor_locations.csv")
    loc.iloc[1:].to_csv(tmp_path / "la2" / "graph_sensor_locations.csv", index=False)
    with pytest.raises(DiststError, match=r"graph_sensor_locations\.csv: no location for sensor"):
        read_graph("metr-la", tmp_path / "la2")
    assert read_graph("metr-la", tmp_path / "la2", locations=False).coords is None
    write_pems(tmp_path / "p3", "pems03")
    (tmp_path / "p3" / "PEMS03.txt").write_text("\n".join(_ids(6)[1:]) + "\n")
    with pytest.raises(DiststError, match=r"PEMS03\.csv: sensor ids \['700000'\] are not listed"):
        read_graph("pems03", tmp_path / "p3")
    write_pemsd7(tmp_path / "d7", n=5)
    np.savetxt(tmp_path / "d7" / "PeMSD7_V_5.csv", _speeds(300, 5), delimiter=",")
    with pytest.raises(DiststError, match=r"whole days of 288 steps .* calendar='consecutive'"):
        read_dataset("pemsd7", tmp_path / "d7")


# -- PEMS0x: flow-only default input, --start (issue 10) ----------------------------------------
def _prepare(capsys, *argv):
    from distst.cli import main

    rc = main(["data", "prepare", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_pems_defaults_to_flow_only_input_and_others_to_all_channels(tmp_path):
    from distst.config import DataConfig
    from distst.engine.bundle import build_bundle, dataset_input_channels

    write_pems(tmp_path / "raw", "pems04", n=6, t=200, c=3)
    save_network(read_dataset("pems04", tmp_path / "raw"), tmp_path / "pems04")
    meta = __import__("json").loads((tmp_path / "pems04" / "meta.json").read_text())
    assert meta["source"]["default_input_channels"] == [0]
    cfg = DataConfig(path=str(tmp_path / "pems04"), null_value="0")
    assert cfg.input_channels == []  # nothing given: the dataset's default applies
    b = build_bundle(cfg, tmp_path / "pems04", notices=False)
    assert b.input_channels == [0] and b.input_dim == 1 + 2  # flow + time of day + day of week
    x, _ = b.datasets["train"].batch(np.arange(1))
    assert x.shape[-1] == 3
    # occupancy and speed stay selectable
    cfg.input_channels = [0, 1, 2]
    assert build_bundle(cfg, tmp_path / "pems04", notices=False).input_dim == 3 + 2
    # a shard plan's part keeps the parent's source under "parent"
    net = load_network(tmp_path / "pems04")
    net.source = {"parent": net.source, "plan": {"part": 0}}
    assert dataset_input_channels(net) == [0]
    # formats without a recorded default feed every channel (generic: speed and flow)
    write_generic(tmp_path / "gen", n=5, t=6)
    save_network(read_dataset("generic", tmp_path / "gen"), tmp_path / "generic")
    assert dataset_input_channels(load_network(tmp_path / "generic")) == [0, 1]


@pytest.mark.parametrize("fmt", ["pems03", "pems04", "pems07", "pems08"])
def test_prepare_start_documented_default_and_given(tmp_path, capsys, fmt):
    write_pems(tmp_path / "raw", fmt, n=6, t=300, c=3 if fmt in ("pems04", "pems08") else 1)
    doc = {"pems03": "2018-09-01", "pems04": "2018-01-01", "pems07": "2017-05-01",
           "pems08": "2016-07-01"}[fmt]
    rc, out, err = _prepare(capsys, "--format", fmt, "--path", str(tmp_path / "raw"),
                            "--out", str(tmp_path / "a"))
    assert rc == 0, err
    line = [ln for ln in out.splitlines() if ln.startswith("start:")]
    assert line == [f"start: {doc} 00:00:00 (the documented default for {fmt}; set another "
                    "with --start)"]
    ts = load_network(tmp_path / "a").timestamps
    assert ts[0] == _ns([doc])[0] and ts[1] - ts[0] == 300 * 10**9  # 5-minute steps
    rc, out, err = _prepare(capsys, "--format", fmt, "--path", str(tmp_path / "raw"),
                            "--out", str(tmp_path / "b"), "--start", "2019-03-04T06:30")
    assert rc == 0, err
    assert "start: 2019-03-04 06:30:00 (from --start)" in out.splitlines()
    net = load_network(tmp_path / "b")
    assert net.timestamps[0] == _ns(["2019-03-04 06:30"])[0]
    assert net.source["start"] == "2019-03-04T06:30:00" and net.source["start_from"] == "given"


@pytest.mark.parametrize("bad", ["2018-13-01", "01/09/2018", "yesterday", "2018-09-01T25:00",
                                 "2018-09-01T00:00+02:00"])
def test_prepare_bad_start_is_one_line(tmp_path, capsys, bad):
    write_pems(tmp_path / "raw", "pems08", n=6, t=30, c=3)
    rc, out, err = _prepare(capsys, "--format", "pems08", "--path", str(tmp_path / "raw"),
                            "--out", str(tmp_path / "o"), "--start", bad)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert repr(bad) in lines[0] and "YYYY-MM-DD" in lines[0], lines[0]
    assert not (tmp_path / "o").exists()


def test_prepare_start_is_refused_for_formats_with_timestamps(tmp_path, capsys):
    write_generic(tmp_path / "gen")
    rc, out, err = _prepare(capsys, "--format", "generic", "--path", str(tmp_path / "gen"),
                            "--out", str(tmp_path / "o"), "--start", "2020-01-01")
    assert rc == 2 and "reads its timestamps from its files" in err
    rc, out, err = _prepare(capsys, "--format", "generic", "--path", str(tmp_path / "gen"),
                            "--out", str(tmp_path / "o"))
    assert rc == 0 and "start: 2021-01-01 00:00:00 (from the file's timestamps)" in out


def test_pemsd7_and_los_start_default_and_given(tmp_path):
    write_pemsd7(tmp_path / "d7", days=2)
    net = read_dataset("pemsd7", tmp_path / "d7")
    assert pd.Timestamp(int(net.timestamps[0])) == pd.Timestamp("2012-05-01")
    assert net.source["start_from"] == "documented default"
    net = read_dataset("pemsd7", tmp_path / "d7", start="2012-05-04")  # a Friday
    assert pd.Timestamp(int(net.timestamps[288])) == pd.Timestamp("2012-05-07")  # next weekday
    write_los(tmp_path / "los")
    assert read_dataset("los-loop", tmp_path / "los").source["start"] == "2012-03-01T00:00:00"
    with pytest.raises(DiststError, match="'March 1st'.*YYYY-MM-DD"):
        read_dataset("los-loop", tmp_path / "los", start="March 1st")
