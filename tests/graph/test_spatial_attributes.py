"""Spatial attributes for HyperST models: road distances to the k nearest sensors, standardised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from distst.data.formats import read_graph
from distst.data.network import SensorNetwork, save_network
from distst.data.synth import synth_network
from distst.errors import DiststError
from distst.graph.partition.plan import make_plan, open_part
from distst.graph.spatial import edge_lengths, knn_road_distances, spatial_attributes

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _net(edge_index, edge_weight, n, coords=None, attrs=None, names=()):
    return SensorNetwork(
        name="t", values=np.zeros((3, n, 1), np.float32),
        timestamps=np.datetime64("2024-01-01T00:00", "ns") + np.arange(3) * np.timedelta64(5, "m"),
        node_ids=np.array([str(i) for i in range(n)]),
        edge_index=np.asarray(edge_index, np.int64), edge_weight=np.asarray(edge_weight, np.float32),
        channels=["speed"], coords=coords, node_attrs=attrs, attr_names=list(names),
        source={"coords_kind": "xy"})


def test_path_graph_distances_by_hand():
    # directed path 0 -> 1 -> 2 -> 3 with planar coords 0, 1, 3, 6: lengths 1, 2, 3
    coords = np.array([[0, 0], [1, 0], [3, 0], [6, 0]], dtype=np.float64)
    net = _net([[0, 1, 2], [1, 2, 3]], [0.5, 0.5, 0.5], 4, coords=coords)
    np.testing.assert_allclose(edge_lengths(net), [1, 2, 3])
    d, short = knn_road_distances(4, net.edge_index, edge_lengths(net), k=2)
    # node 3 is reached from 2 (3) and 1 (5); node 2 from 1 (2) and 0 (3);
    # node 1 only from 0 (1): its second entry is "far" = 2 x the largest finite distance
    np.testing.assert_allclose(d[3], [3, 5])
    np.testing.assert_allclose(d[2], [2, 3])
    assert d[1, 0] == 1 and d[1, 1] == 2 * 5
    assert d[0, 0] == d[0, 1] == 10  # nothing reaches node 0
    assert short == 2


def test_knn_matches_full_dijkstra_on_a_random_digraph():
    rng = np.random.default_rng(0)
    n = 40
    src, dst = rng.integers(0, n, 200), rng.integers(0, n, 200)
    lengths = rng.uniform(0.1, 2.0, 200)
    ei = np.stack([src, dst])
    d, short = knn_road_distances(n, ei, lengths, k=4)
    keep = src != dst
    # scipy keeps the last duplicate in COO->CSR, so build the min-length graph explicitly
    best = {}
    for s, t, l in zip(src[keep], dst[keep], lengths[keep]):
        best[(s, t)] = min(l, best.get((s, t), np.inf))
    s_, t_ = zip(*best)
    g = sp.csr_matrix((list(best.values()), (s_, t_)), shape=(n, n))
    full = dijkstra(g)  # full[j, i] = distance j -> i
    for i in range(n):
        col = np.delete(full[:, i], i)
        want = np.sort(col[np.isfinite(col)])[:4]
        np.testing.assert_allclose(d[i, :want.size], want, rtol=1e-12)
    assert short == sum(np.isfinite(np.delete(full[:, i], i)).sum() < 4 for i in range(n))


def test_kernel_and_binary_weights_become_lengths():
    w = np.exp(-np.array([1.0, 2.0]) ** 2)  # Gaussian kernel of distances 1 and 2 (sigma 1)
    np.testing.assert_allclose(edge_lengths(_net([[0, 1], [1, 2]], w, 3)), [1, 2], rtol=1e-6)
    np.testing.assert_allclose(edge_lengths(_net([[0, 1], [1, 2]], [1, 1], 3)), [1, 1])


def test_attributes_are_standardised_and_named():
    net = synth_network(num_nodes=30, days=1, seed=1)
    sa = spatial_attributes(net)
    assert sa.values.shape == (30, len(sa.names)) and sa.values.dtype == np.float32
    assert sa.names[:len(net.attr_names)] == list(net.attr_names)
    assert sa.names[-4:] == [f"road_dist_nn{j}" for j in range(1, 5)]
    nonconst = sa.values.std(axis=0) > 0
    np.testing.assert_allclose(sa.values.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(sa.values.std(axis=0)[nonconst], 1, rtol=1e-4)
    # the generator's sensor types are part of what HyperST models see
    assert any(n.startswith("type_") for n in sa.names)


def test_no_spatial_information_is_an_error():
    with pytest.raises(DiststError, match="no spatial attributes.*add coordinates"):
        spatial_attributes(_net(np.zeros((2, 0)), [], 3))


def test_metr_la_gps_and_road_distances():
    g = read_graph("metr-la", DATA / "metr-la")
    net = _net(g.edge_index, g.edge_weight, g.num_nodes, coords=g.coords)
    net.source = dict(g.source)
    assert net.source["coords_kind"] == "latlon"
    sa = spatial_attributes(net)
    assert sa.values.shape == (207, 6)  # GPS (2) + 4 road distances, as HyperST-Net uses
    assert sa.names == ["coord_0", "coord_1"] + [f"road_dist_nn{j}" for j in range(1, 5)]
    d, _ = knn_road_distances(207, g.edge_index, edge_lengths(net), k=4)
    assert np.all(np.diff(d, axis=1) >= 0)  # ascending
    # haversine km between LA sensors: nearest upstream sensors lie within a few km
    assert 0 < np.median(d[:, 0]) < 5


def test_plan_parts_carry_whole_graph_attributes_and_in_degrees(tmp_path):
    net = synth_network(num_nodes=40, days=2, seed=2)
    ds = save_network(net, tmp_path / "ds")
    make_plan(ds, tmp_path / "plan", method="metis", parts=2, halo_hops=1, seed=0)
    whole = spatial_attributes(net).values
    ei, w = np.asarray(net.edge_index), np.asarray(net.edge_weight, np.float64)
    keep = ei[0] != ei[1]
    in_deg = np.bincount(ei[1][keep], weights=w[keep], minlength=40)
    for i in range(2):
        part = open_part(tmp_path / "plan", i)
        np.testing.assert_array_equal(part.spatial_attrs, whole[part.nodes])
        np.testing.assert_allclose(part.in_deg, in_deg[part.nodes])
