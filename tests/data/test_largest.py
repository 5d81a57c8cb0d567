"""The LargeST reader, on small files of the release's layout written here: a subset's
*_his_2019.h5 (15-minute flow, gaps filled with 0), *_meta.csv (with ID2) and *_rn_adj.npy."""

import numpy as np
import pandas as pd
import pytest

from distst.cli import main
from distst.data.formats import read_dataset, read_graph
from distst.data.network import load_network
from distst.errors import DiststError

N, T = 12, 96 * 3


def write_largest(folder, prefix="sd", n=N, t=T, drop_column=None, shuffle=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ids = [str(700000 + 37 * i) for i in range(n)]
    meta = pd.DataFrame({
        "ID": ids, "Lat": 32.7 + rng.random(n) / 10, "Lng": -117.1 + rng.random(n) / 10,
        "District": 11, "County": "San Diego", "Fwy": [f"I-{5 + i % 3}" for i in range(n)],
        "Lanes": 1 + np.arange(n) % 5, "Type": "Mainline",
        "Direction": [("N", "S", "E", "W")[i % 4] for i in range(n)], "ID2": 100 + np.arange(n)})
    if drop_column:
        meta = meta.drop(columns=[drop_column])
    meta.to_csv(folder / f"{prefix}_meta.csv", index=False)
    adj = np.zeros((n, n), dtype=np.float32)
    for i in range(n):  # a directed ring plus the diagonal, as the release stores it
        adj[i, i] = 1.0
        adj[i, (i + 1) % n] = 0.5 + 0.01 * i
    np.save(folder / f"{prefix}_rn_adj.npy", adj)
    index = pd.date_range("2019-01-01", periods=t, freq="15min")
    flow = rng.integers(50, 400, size=(t, n)).astype(np.float64)
    flow[5, 3] = 0.0  # a gap the release filled with 0
    cols = list(ids)
    df = pd.DataFrame(flow, index=index, columns=cols)
    if shuffle:  # the series' column order need not be the metadata's
        df = df[cols[::-1]]
    df.to_hdf(folder / f"{prefix}_his_2019.h5", key="t", mode="w")
    return folder, ids, flow, adj


def test_reads_series_metadata_and_graph(tmp_path):
    folder, ids, flow, adj = write_largest(tmp_path / "sd")
    net = read_dataset("largest", folder)
    assert list(net.node_ids) == ids and net.channels == ["flow"]
    values = np.asarray(net.values)[:, :, 0]  # [T, N] in the metadata's order
    expected = flow.astype(np.float32)
    expected[5, 3] = np.nan  # zero_is_missing
    np.testing.assert_array_equal(np.isnan(values), np.isnan(expected))
    np.testing.assert_allclose(values[~np.isnan(values)], expected[~np.isnan(expected)])
    assert net.step_minutes == 15
    # directed ring, weights as stored, no self loops
    pairs = {(int(a), int(b)): float(w) for a, b, w in zip(*net.edge_index, net.edge_weight)}
    assert pairs == {(i, (i + 1) % N): pytest.approx(adj[i, (i + 1) % N]) for i in range(N)}
    assert net.coords.shape == (N, 2) and net.attr_names == ["lanes", "dir_N", "dir_S",
                                                             "dir_E", "dir_W"]
    assert net.node_attrs[6].tolist() == [2.0, 0.0, 0.0, 1.0, 0.0]  # 2 lanes, eastbound
    g = read_graph("largest", folder)
    assert g.num_nodes == N and g.num_edges == N


def test_prepare_through_the_cli(tmp_path, capsys):
    folder, *_ = write_largest(tmp_path / "gla", prefix="gla")
    assert main(["data", "prepare", "--format", "largest", "--path", str(folder),
                 "--out", str(tmp_path / "out")]) == 0
    net = load_network(tmp_path / "out")
    assert net.num_nodes == N and net.num_steps == T


@pytest.mark.parametrize("case,match", [
    ("no_direction", r"sd_meta.csv: LargeST metadata lacks column\(s\) Direction"),
    ("two_years", r"several series \(\*his\*.h5\) files match .*pass series=PATH"),
    ("other_size", r"sd_rn_adj.npy: adjacency of shape \(13, 13\), but .* lists 12 sensors"),
])
def test_bad_files_get_one_line(tmp_path, case, match):
    folder, *_ = write_largest(tmp_path / "sd", drop_column="Direction" if case == "no_direction"
                               else None)
    if case == "two_years":
        (folder / "sd_his_2018.h5").write_bytes((folder / "sd_his_2019.h5").read_bytes())
    if case == "other_size":
        np.save(folder / "sd_rn_adj.npy", np.eye(13, dtype=np.float32))
    with pytest.raises(DiststError, match=match):
        read_dataset("largest", folder)
