"""Tests of the synthetic sensor-network generator (distst.data.synth)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from distst.data import synth
from distst.data.network import load_network
from distst.data.synth import ATTR_NAMES, generate_network, synth_network
from distst.errors import DiststError

STEPS_PER_DAY = 288


@pytest.fixture(scope="module")
def week():
    """40 nodes, 14 days, no missing values: the series the statistical tests look at."""
    return synth_network(num_nodes=40, days=14, seed=3, missing_ratio=0.0)


def _dow(ts):
    return ((ts // 86_400_000_000_000) + 3) % 7  # Monday = 0


def _tod(ts):
    return (ts // 300_000_000_000) % STEPS_PER_DAY


def _deseasonalise(net):
    """Remove each node's mean by (weekend, time of day) so only the dynamics remain."""
    x = net.values[:, :, 0].astype(np.float64)  # [T, N]
    weekend = _dow(net.timestamps) >= 5
    tod = _tod(net.timestamps)
    r = x.copy()
    for w in (False, True):
        for k in range(STEPS_PER_DAY):
            m = (tod == k) & (weekend == w)
            if m.any():
                r[m] -= x[m].mean(axis=0)
    return r


def _connected(net) -> bool:
    n = net.num_nodes
    a = sp.coo_matrix((np.ones(net.num_edges), tuple(net.edge_index)), shape=(n, n))
    return connected_components(a, directed=False)[0] == 1


# -- layout, meta, determinism, atomic write ----------------------------------------------
def test_written_dataset_layout_and_meta(tmp_path):
    out = generate_network(tmp_path / "ds", num_nodes=20, days=2, seed=1)
    net = load_network(out)
    assert net.values.shape == (576, 20, 1) and net.values.dtype == np.float32
    assert net.channels == ["speed"]
    assert np.all(np.diff(net.timestamps) == 300_000_000_000)
    assert str(net.timestamps[0].astype("datetime64[ns]")) == "2024-01-01T00:00:00.000000000"
    assert len(set(net.node_ids.tolist())) == 20
    assert net.coords.shape == (20, 2) and net.attr_names == ATTR_NAMES
    onehot = net.node_attrs[:, :3]
    assert np.array_equal(onehot.sum(axis=1), np.ones(20)) and set(np.unique(onehot)) == {0, 1}
    hw = onehot[:, 2] == 1
    assert np.all(net.node_attrs[hw, 3] >= 50) and np.all(net.node_attrs[~hw, 3] <= 45)
    # Symmetric weighted graph without self-loops, weights in [threshold, 1].
    src, dst = net.edge_index
    assert np.all(src != dst)
    fwd = dict(zip(zip(src.tolist(), dst.tolist()), net.edge_weight.tolist()))
    assert all(fwd[(j, i)] == w for (i, j), w in fwd.items())
    assert net.edge_weight.min() >= synth.WEIGHT_THRESHOLD - 1e-7 and net.edge_weight.max() <= 1
    meta = json.loads((out / "meta.json").read_text())
    src_meta = meta["source"]
    assert src_meta["format"] == "synthetic" and src_meta["seed"] == 1
    assert src_meta["num_nodes"] == 20 and src_meta["days"] == 2 and src_meta["graph"] == "knn"
    assert src_meta["units"] == "mph" and src_meta["missing_ratio"] == 0.05
    assert meta["num_steps"] == 576 and meta["attr_names"] == ATTR_NAMES
    observed = net.values[~np.isnan(net.values)]
    assert 0 <= observed.min() and observed.max() < 100


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    kw = dict(num_nodes=25, days=1.5)
    a = generate_network(tmp_path / "a", seed=7, **kw)
    b = generate_network(tmp_path / "b", seed=7, chunk_steps=37, **kw)  # chunking is invisible
    c = generate_network(tmp_path / "c", seed=8, **kw)
    for f in ("values.npy", "edge_index.npy", "edge_weight.npy", "coords.npy", "node_attrs.npy"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert (a / "values.npy").read_bytes() != (c / "values.npy").read_bytes()
    mem = synth_network(seed=7, chunk_steps=100, **kw)  # the in-memory path is the same model
    np.testing.assert_array_equal(mem.values, np.load(a / "values.npy"))


def test_atomic_write_overwrite_and_refusals(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    generate_network(out, num_nodes=10, days=0.5, seed=0)
    generate_network(out, num_nodes=12, days=0.5, seed=0)  # replaces an existing dataset
    assert load_network(out).num_nodes == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temp or old dir left
    # A directory with foreign content is never replaced.
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(DiststError, match="not a distst dataset"):
        generate_network(other, num_nodes=10, days=0.5)
    assert (other / "notes.txt").read_text() == "keep me"

    # A failure half-way leaves neither the output nor a temp dir behind.
    def boom(self, sink, chunk):
        sink(0, np.zeros((1, self.n), np.float32))
        raise RuntimeError("disk full")

    monkeypatch.setattr(synth._Generator, "run", boom)
    with pytest.raises(RuntimeError):
        generate_network(tmp_path / "broken", num_nodes=10, days=0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "mine"]


@pytest.mark.parametrize(
    "kw",
    [
        dict(num_nodes=1),
        dict(num_nodes=0),
        dict(days=0),
        dict(days=-2),
        dict(missing_ratio=1.0),
        dict(missing_ratio=-0.1),
        dict(graph="grid"),
        dict(k=0),
        dict(num_nodes=5, k=5),
        dict(start="not a date"),
        # int64 nanoseconds wrapped: 1600 became 2184, a 2262 start ended in 1677
        dict(start="1600-01-01"),
        dict(start="2262-04-11"),
        dict(step_minutes=0),
        dict(noise_std=-1.0),
        dict(chunk_steps=0),
    ],
)
def test_bad_arguments_raise_diststerror(kw):
    args = dict(num_nodes=10, days=1) | kw
    with pytest.raises(DiststError) as err:
        synth_network(**args)
    assert next(iter(kw)) in str(err.value)


# -- graph ------------------------------------------------------------------------------
@pytest.mark.parametrize("graph", ["knn", "delaunay"])
@pytest.mark.parametrize("n", [2, 3, 7, 50])
def test_graph_is_connected(graph, n):
    net = synth_network(num_nodes=n, days=0.25, graph=graph, seed=n)
    assert _connected(net)
    assert net.source["graph"] == graph


def test_knn_graph_connected_with_k1():
    # k=1 kNN almost always leaves several components: they must be bridged.
    net = synth_network(num_nodes=60, days=0.25, k=1, seed=2)
    assert _connected(net)


# -- missing values ---------------------------------------------------------------------
def test_missing_ratio_and_no_dead_sensor():
    net = synth_network(num_nodes=30, days=7, seed=5, missing_ratio=0.05)
    nan = np.isnan(net.values[:, :, 0])  # [T, N]
    assert 0.03 <= nan.mean() <= 0.07
    assert (~nan).any(axis=0).all()
    # Outage blocks: runs of >= 6 consecutive missing steps exist, not only single dropouts.
    padded = np.vstack([np.zeros((1, 30), bool), nan, np.zeros((1, 30), bool)]).T.astype(np.int8)
    edges = np.diff(padded, axis=1)
    runs = np.flatnonzero(edges.reshape(-1) == -1) - np.flatnonzero(edges.reshape(-1) == 1)
    assert runs.max() >= 6 and (runs == 1).sum() > 0
    assert not np.isnan(synth_network(num_nodes=10, days=1, missing_ratio=0.0).values).any()
    heavy = synth_network(num_nodes=30, days=0.1, missing_ratio=0.95, seed=1)
    heavy.check_observed("heavy")  # raises if a sensor is entirely missing


# -- temporal structure -----------------------------------------------------------------
def test_daily_periodicity(week):
    x = week.values[:, :, 0].astype(np.float64)
    z = (x - x.mean(0)) / x.std(0)

    def acf(lag):
        return float(np.mean(z[:-lag] * z[lag:]))

    assert acf(288) > acf(144) + 0.4


def test_weekends_are_faster(week):
    x = week.values[:, :, 0]
    weekend = _dow(week.timestamps) >= 5
    assert weekend.any() and (~weekend).any()
    # Per node: mean weekend speed above mean weekday speed for nearly all sensors.
    gap = x[weekend].mean(0) - x[~weekend].mean(0)
    assert gap.mean() > 1.0 and (gap > 0).mean() > 0.9
    # Rush hour (17-18 h) is where weekends differ most.
    tod = _tod(week.timestamps)
    rush = (tod >= 17 * 12) & (tod < 18 * 12)
    assert x[rush & weekend].mean() > x[rush & ~weekend].mean() + 5


def test_node_types_have_different_daily_profiles(week):
    x = week.values[:, :, 0]
    ty = week.node_attrs[:, :3].argmax(1)  # 0 residential, 1 business, 2 highway
    assert set(ty.tolist()) == {0, 1, 2}
    weekday = _dow(week.timestamps) < 5
    tod = _tod(week.timestamps)
    am = weekday & (tod >= 7 * 12) & (tod < 9 * 12)
    pm = weekday & (tod >= 16.5 * 12) & (tod < 18.5 * 12)
    night = weekday & (tod < 4 * 12)
    # Relative drop from the night (free-flow) speed, per node.
    drop_am = 1 - x[am].mean(0) / x[night].mean(0)
    drop_pm = 1 - x[pm].mean(0) / x[night].mean(0)
    res, bus, hw = (ty == 0), (ty == 1), (ty == 2)
    assert drop_am[res].mean() > drop_pm[res].mean() + 0.05  # residential: morning outbound
    assert drop_pm[bus].mean() > drop_am[bus].mean() + 0.1  # business: evening
    assert x[night][:, hw].mean() > x[night][:, ~hw].mean() + 20  # highways: faster free flow
    assert min(drop_am[hw].mean(), drop_pm[hw].mean()) > 0.2  # ... with both rush hours
    # The difference is large compared with the spread of nodes within a type.
    shape = drop_am - drop_pm
    within = np.sqrt((shape[res].var() + shape[bus].var()) / 2)
    assert shape[res].mean() - shape[bus].mean() > 3 * within


# -- spatial structure ------------------------------------------------------------------
def test_neighbours_are_more_correlated_than_random_pairs(week):
    r = _deseasonalise(week)
    z = (r - r.mean(0)) / r.std(0)
    corr = z.T @ z / len(z)  # [N, N]
    src, dst = week.edge_index
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 40, (2, 3000))
    a, b = a[a != b], b[a != b]
    assert corr[src, dst].mean() > corr[a, b].mean() + 0.2


def test_neighbours_past_predicts_own_future(week):
    """Least squares for x_i(t+3) from 12 own lags, with and without 12 neighbour lags.

    The neighbour features are the weighted neighbour mean and the slowest neighbour (the
    waves spread as a max over upstream neighbours). Fit on the first half, score on the
    second (out of sample), pooled over nodes.
    """
    r = _deseasonalise(week)  # [T, N]
    n = week.num_nodes
    w = np.zeros((n, n))
    w[tuple(week.edge_index)] = week.edge_weight
    nb = r @ (w / w.sum(1, keepdims=True)).T  # [T, N] weighted neighbour mean
    slowest = np.where(w[None] > 0, r[:, None, :], np.inf).min(-1)  # [T, N] over neighbours
    lags, horizon, t = 12, 3, len(r)

    def mse(use_nb: bool) -> float:
        cols = [r[lags - 1 - k : t - horizon - k] for k in range(lags)]
        if use_nb:
            cols += [f[lags - 1 - k : t - horizon - k] for f in (nb, slowest) for k in range(lags)]
        x = np.stack(cols + [np.ones_like(cols[0])], axis=-1)  # [T', N, F]
        y = r[lags - 1 + horizon :]  # [T', N]
        half = len(y) // 2
        xf = x[:half].reshape(-1, x.shape[-1])  # [T'/2 * N, F]
        beta = np.linalg.lstsq(xf, y[:half].reshape(-1), rcond=None)[0]
        return float(np.mean((x[half:] @ beta - y[half:]) ** 2))

    own, both = mse(False), mse(True)
    assert both < 0.95 * own, (own, both)
