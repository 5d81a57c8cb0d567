import json

import numpy as np
import pytest
import torch

from distst.data.scaler import MinMaxScaler, StandardScaler, make_scaler, scaler_from_state_dict
from distst.errors import DiststError


def _series(t=60, n=8, c=2, seed=0, missing=0.2):
    rng = np.random.default_rng(seed)
    v = (rng.normal(size=(t, n, c)) * [3.0, 0.5] + [50.0, -2.0]).astype(np.float32)
    v[rng.random(v.shape) < missing] = np.nan
    return v


def test_standard_ignores_nan_and_uses_only_training_range():
    v = _series()
    end = 40
    sc = StandardScaler().fit(v, end_step=end)
    ref = v[:end].astype(np.float64)
    np.testing.assert_allclose(sc.mean, np.nanmean(ref, axis=(0, 1)), rtol=1e-10)
    np.testing.assert_allclose(sc.std, np.nanstd(ref, axis=(0, 1)), rtol=1e-10)
    # huge values after end_step must not move the statistics
    v2 = v.copy()
    v2[end:] = 1e9
    sc2 = StandardScaler().fit(v2, end_step=end)
    np.testing.assert_allclose(sc2.mean, sc.mean, rtol=1e-12)
    np.testing.assert_allclose(sc2.std, sc.std, rtol=1e-12)
    assert abs(sc2.mean[0] - 50) < 1


@pytest.mark.parametrize("cls", [StandardScaler, MinMaxScaler])
@pytest.mark.parametrize("per_node", [False, True])
def test_chunked_fit_equals_unchunked(cls, per_node):
    v = _series(t=97)
    full = cls(per_node=per_node).fit(v, end_step=90, chunk_steps=10**6)
    for chunk in (1, 7, 33):
        part = cls(per_node=per_node).fit(v, end_step=90, chunk_steps=chunk)
        np.testing.assert_allclose(part.offset, full.offset, rtol=1e-10)
        np.testing.assert_allclose(part.scale, full.scale, rtol=1e-10)
    if per_node:
        ref = v[:90].astype(np.float64)
        if cls is StandardScaler:
            np.testing.assert_allclose(full.mean, np.nanmean(ref, axis=0), rtol=1e-10)
            np.testing.assert_allclose(full.std, np.nanstd(ref, axis=0), rtol=1e-10)
        else:
            np.testing.assert_allclose(full.min, np.nanmin(ref, axis=0))
            np.testing.assert_allclose(full.max, np.nanmax(ref, axis=0), rtol=1e-12)


def test_memmap_input(tmp_path):
    v = _series(t=50)
    np.save(tmp_path / "v.npy", v)
    mm = np.load(tmp_path / "v.npy", mmap_mode="r")
    a = StandardScaler().fit(mm, end_step=30, chunk_steps=4)
    b = StandardScaler().fit(v, end_step=30)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-10)


def test_large_mean_is_numerically_stable():
    rng = np.random.default_rng(3)
    v = (1e6 + rng.normal(size=(400, 3, 1))).astype(np.float64)
    sc = StandardScaler().fit(v, chunk_steps=13)
    assert sc.std[0] == pytest.approx(np.std(v), rel=1e-6)


def test_zero_std_becomes_one_and_constant_maps_to_zero():
    v = np.full((20, 3, 1), 7.0, dtype=np.float32)
    for cls in (StandardScaler, MinMaxScaler):
        for per_node in (False, True):
            sc = cls(per_node=per_node).fit(v)
            assert np.all(sc.scale == 1.0)
            np.testing.assert_array_equal(sc.transform(v), np.zeros_like(v))


def test_unobserved_channel_raises_and_unobserved_node_falls_back():
    v = _series(t=30, missing=0.0)
    v[:, :, 1] = np.nan
    with pytest.raises(DiststError, match=r"channel\(s\) \[1\]"):
        StandardScaler().fit(v)
    v = _series(t=30, missing=0.0)
    v[:20, 2, :] = np.nan  # node 2 observed only after the training range
    with pytest.warns(UserWarning, match="channel-wide"):
        sc = StandardScaler(per_node=True).fit(v, end_step=20)
    glob = StandardScaler().fit(v, end_step=20)
    np.testing.assert_allclose(sc.mean[2], glob.mean)
    np.testing.assert_allclose(sc.std[2], glob.std)
    assert sc.fallback_nodes == [2]
    assert np.isfinite(sc.transform(v)[~np.isnan(v)]).all()


def test_transform_roundtrip_numpy_and_torch():
    v = _series()
    sc = StandardScaler(per_node=True).fit(v, end_step=40)
    z = sc.transform(v)
    assert z.dtype == np.float32 and z.shape == v.shape
    np.testing.assert_allclose(z, (v - sc.mean) / sc.std, rtol=1e-5, atol=1e-5)
    assert np.isnan(z[np.isnan(v)]).all()
    np.testing.assert_allclose(sc.inverse_transform(z), v, rtol=1e-5, atol=1e-4)
    for dt in (torch.float32, torch.float64):
        t = torch.as_tensor(v[:5], dtype=dt)
        zt = sc.transform(t)
        assert isinstance(zt, torch.Tensor) and zt.dtype == dt and zt.device == t.device
        back = sc.inverse_transform(zt)
        torch.testing.assert_close(back, t, equal_nan=True, rtol=1e-5, atol=1e-4)
    # a node/channel subset uses the matching statistics rows/columns
    nodes, ch = np.array([5, 1]), [1]
    zs = sc.transform(v[:, nodes][..., ch], nodes=nodes, channels=ch)
    np.testing.assert_allclose(zs, z[:, nodes][..., ch], rtol=1e-6, equal_nan=True)


def test_state_dict_json_roundtrip():
    v = _series()
    for sc in (StandardScaler().fit(v), MinMaxScaler(per_node=True).fit(v)):
        st = json.loads(json.dumps(sc.state_dict()))
        back = scaler_from_state_dict(st)
        assert type(back) is type(sc) and back.per_node == sc.per_node
        np.testing.assert_array_equal(back.offset, sc.offset)
        np.testing.assert_array_equal(back.scale, sc.scale)
        np.testing.assert_array_equal(back.transform(v), sc.transform(v))
    with pytest.raises(DiststError, match="type"):
        StandardScaler.from_state_dict(MinMaxScaler().fit(v).state_dict())
    with pytest.raises(DiststError, match="not fitted"):
        StandardScaler().transform(v)


def test_minmax_maps_training_range_to_unit_interval():
    v = _series(missing=0.1)
    sc = make_scaler("minmax").fit(v, end_step=40)
    z = sc.transform(v[:40])
    assert np.nanmin(z, axis=(0, 1)) == pytest.approx([0, 0], abs=1e-6)
    assert np.nanmax(z, axis=(0, 1)) == pytest.approx([1, 1], abs=1e-6)
    with pytest.raises(DiststError, match="data.scaler"):
        make_scaler("robust")


def test_fit_argument_errors():
    v = _series(t=10)
    with pytest.raises(DiststError, match="end_step"):
        StandardScaler().fit(v, end_step=11)
    with pytest.raises(DiststError, match=r"\[T, N, C\]"):
        StandardScaler().fit(v[:, :, 0])
