"""Synthetic city-grid flows: shapes, a valid network, the grid graph, attribute-driven profiles."""

import numpy as np
import pandas as pd
import pytest

from distst.data.grid import ATTR_NAMES, generate_grid_network
from distst.data.network import load_network, save_network
from distst.errors import DiststError


@pytest.fixture(scope="module")
def net():
    return generate_grid_network(12, 10, days=21, seed=3)


def test_shapes_and_metadata(net):
    h, w = 12, 10
    assert net.values.shape == (21 * 24, h * w, 2)
    assert net.values.dtype == np.float32
    assert net.channels == ["inflow", "outflow"]
    assert net.attr_names == ATTR_NAMES and net.node_attrs.shape == (h * w, len(ATTR_NAMES))
    assert not np.isnan(net.values).any() and (net.values >= 0).all()
    assert np.all(net.values == np.round(net.values))  # counts
    assert net.step_minutes == 60.0
    # row-major numbering, coords = (row, col)
    assert net.coords[w + 3].tolist() == [1.0, 3.0] and net.node_ids[w + 3] == "r1c3"
    assert np.all(net.node_attrs[:, :4] >= 0)


def test_grid_edges(net):
    h, w = 12, 10
    ei = net.edge_index
    assert ei.shape == (2, 2 * (2 * h * w - h - w))
    assert np.all(net.edge_weight == 1.0)
    pairs = set(map(tuple, ei.T.tolist()))
    assert len(pairs) == ei.shape[1]  # no duplicates
    assert all((b, a) in pairs for a, b in pairs)  # both directions
    r, c = net.coords[ei[0]], net.coords[ei[1]]
    assert np.all(np.abs(r - c).sum(axis=1) == 1)  # exactly the 4-neighbours


def test_valid_network_roundtrip(net, tmp_path):
    net.validate()
    save_network(net, tmp_path / "g")
    back = load_network(tmp_path / "g")
    np.testing.assert_array_equal(back.values, net.values)
    np.testing.assert_array_equal(back.coords, net.coords)
    assert back.attr_names == ATTR_NAMES and back.channels == ["inflow", "outflow"]


def test_land_use_drives_profiles(net):
    """Designed signs: homes empty in the weekday morning (low inflow share, high outflow
    share), offices fill up; weekends have no commute peak."""
    ts = pd.DatetimeIndex(net.timestamps.astype("datetime64[ns]"))
    hour, weekday = np.asarray(ts.hour), np.asarray(ts.day_of_week < 5)
    poi = net.node_attrs[:, :4]
    share = poi / poi.sum(axis=1, keepdims=True)
    v = net.values.astype(np.float64)
    morning = weekday & (hour >= 7) & (hour <= 9)
    in_share = v[morning, :, 0].mean(0) / v[weekday, :, 0].mean(0)
    out_share = v[morning, :, 1].mean(0) / v[weekday, :, 1].mean(0)
    res, office = share[:, 0], share[:, 1]
    assert np.corrcoef(res, in_share)[0, 1] < -0.5
    assert np.corrcoef(res, out_share)[0, 1] > 0.8
    assert np.corrcoef(office, in_share)[0, 1] > 0.8
    # weekday vs weekend: the city-wide 8-9 h inflow peak is much stronger on weekdays
    peak = (hour >= 8) & (hour <= 9)
    wd_peak = v[weekday & peak, :, 0].sum(1).mean() / v[weekday, :, 0].sum(1).mean()
    we_peak = v[~weekday & peak, :, 0].sum(1).mean() / v[~weekday, :, 0].sum(1).mean()
    assert wd_peak > 1.3 * we_peak
    # land use is spatially clustered: neighbouring regions share more than random pairs
    ei = net.edge_index
    nb_corr = np.corrcoef(res[ei[0]], res[ei[1]])[0, 1]
    assert nb_corr > 0.4


def test_deterministic_per_seed():
    a = generate_grid_network(5, 4, days=2, seed=7)
    b = generate_grid_network(5, 4, days=2, seed=7)
    c = generate_grid_network(5, 4, days=2, seed=8)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.node_attrs, b.node_attrs)
    assert not np.array_equal(a.values, c.values)


def test_step_and_bad_arguments():
    half = generate_grid_network(3, 3, days=1, step_minutes=30)
    assert half.values.shape == (48, 9, 2) and half.step_minutes == 30.0
    with pytest.raises(DiststError, match="height"):
        generate_grid_network(0, 4, days=1)
    with pytest.raises(DiststError, match="days"):
        generate_grid_network(4, 4, days=0)
    with pytest.raises(DiststError, match="step_minutes"):
        generate_grid_network(4, 4, days=1, step_minutes=0)
