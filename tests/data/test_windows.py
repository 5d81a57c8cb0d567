from pathlib import Path

import numpy as np
import pytest
import torch

from distst.data.scaler import StandardScaler
from distst.data.windows import (
    WindowDataset,
    batch_split_indices,
    iterate_batches,
    make_splits,
    num_batches,
    rank_indices,
    time_features,
    train_end_step,
)
from distst.errors import DiststError

LOS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "los-loop" / "los_speed.csv"
NS_MIN = 60 * 10**9


def _ts(start: str, t: int, minutes: int = 5) -> np.ndarray:
    t0 = np.datetime64(start, "ns").astype(np.int64)
    return t0 + np.arange(t, dtype=np.int64) * minutes * NS_MIN


# -- splits ------------------------------------------------------------------------------
def test_split_counts_and_borders():
    sp = make_splits(100, 12, 12)
    assert [len(sp[k]) for k in ("train", "val", "test")] == [54, 8, 15]  # S = 77
    assert (sp["train"][0], sp["train"][-1]) == (0, 53)
    assert (sp["val"][0], sp["val"][-1]) == (54, 61)
    assert (sp["test"][0], sp["test"][-1]) == (62, 76)
    assert sp["test"][-1] + 12 + 12 == 100  # the last window ends exactly at T
    assert all(a.dtype == np.int64 for a in sp.values())
    assert train_end_step(sp, 12) == 65
    # another length/window: S = 2016 - 12 - 3 + 1 = 2002 -> 1401 / 200 / 401
    sp = make_splits(2016, 12, 3)
    assert [len(sp[k]) for k in ("train", "val", "test")] == [1401, 200, 401]
    sp = make_splits(100, 12, 12, ratios=(0.6, 0.2, 0.2))
    assert [len(sp[k]) for k in ("train", "val", "test")] == [46, 15, 16]


@pytest.mark.parametrize(
    "ratios", [(0.7, 0.2, 0.2), (0.8, 0.0, 0.2), (0.5, 0.5), (1.2, -0.1, -0.1)]
)
def test_bad_ratios(ratios):
    with pytest.raises(DiststError, match=r"data\.split") as e:
        make_splits(100, 12, 12, ratios=ratios)
    assert str(ratios[0]) in str(e.value)


def test_too_short_series():
    with pytest.raises(DiststError) as e:
        make_splits(25, 12, 12)
    msg = str(e.value)
    assert "T=25" in msg and "input_len=12" in msg and "horizon=12" in msg and "longer" in msg
    with pytest.raises(DiststError, match="T=10"):
        make_splits(10, 12, 12)
    with pytest.raises(DiststError, match="T=30"):  # S=7 but round(0.05 * 7) = 0: empty val
        make_splits(30, 12, 12, ratios=(0.9, 0.05, 0.05))


# -- time features -----------------------------------------------------------------------
def test_time_features_known_dates():
    ts = np.array(
        [
            np.datetime64("2012-03-01T00:00", "ns"),  # Thursday midnight
            np.datetime64("2024-01-01T12:00", "ns"),  # Monday noon
            np.datetime64("2024-01-07T18:00", "ns"),  # Sunday 18:00
            np.datetime64("1969-12-29T06:00", "ns"),  # Monday before the epoch
            np.datetime64("2024-01-03T23:55", "ns"),  # Wednesday, last 5-min step
        ]
    ).astype(np.int64)
    tod, dow = time_features(ts)
    assert tod.dtype == np.float32 and dow.dtype == np.float32
    np.testing.assert_allclose(tod, [0.0, 0.5, 0.75, 0.25, 287 / 288], rtol=1e-6)
    np.testing.assert_allclose(dow, [3 / 7, 0.0, 6 / 7, 0.0, 2 / 7], rtol=1e-6)
    tod, _ = time_features(np.array([np.datetime64("2024-01-01", "ns").astype(np.int64) - 1]))
    assert 0 <= tod[0] < 1


# -- dataset -----------------------------------------------------------------------------
def _toy(t=60, n=7, c=3, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(t, n, c)).astype(np.float32) * 4 + 20
    v[rng.random(v.shape) < 0.15] = np.nan
    return v, _ts("2024-01-01T00:00", t, minutes=60)


def _expected(v, ts, s, li, h, sc, nodes, in_ch, tgt):
    tod, dow = time_features(ts)
    xr = v[s : s + li][:, nodes][..., in_ch].astype(np.float64)
    mean, std = sc.params(nodes if sc.per_node else None, in_ch, dtype=np.float64)
    xs = np.nan_to_num((xr - mean) / std, nan=0.0)
    n = len(nodes)
    x = np.concatenate(
        [
            xs,
            np.repeat(tod[s : s + li, None, None], n, 1),
            np.repeat(dow[s : s + li, None, None], n, 1),
        ],
        axis=-1,
    )
    y = v[s + li : s + li + h][:, nodes][..., tgt]
    return x, y


@pytest.mark.parametrize("per_node", [False, True])
def test_window_content_nodes_channels_time(per_node, tmp_path):
    v, ts = _toy()
    np.save(tmp_path / "v.npy", v)
    mm = np.load(tmp_path / "v.npy", mmap_mode="r")
    li, h = 4, 3
    sp = make_splits(len(v), li, h)
    sc = StandardScaler(per_node=per_node).fit(mm, train_end_step(sp, li))
    nodes = np.array([5, 0, 3])
    in_ch, tgt = [2, 0], [2]
    ds = WindowDataset(
        mm, ts, sp["val"], input_len=li, horizon=h, scaler=sc,
        input_channels=in_ch, target_channels=tgt, nodes=nodes,
    )
    assert ds.values is mm  # a reference, not a copy
    assert (ds.input_dim, ds.output_dim, ds.num_nodes, len(ds)) == (4, 1, 3, len(sp["val"]))
    idx = np.array([len(ds) - 1, 0, 2])
    xb, yb = ds.batch(idx)
    assert xb.shape == (3, li, 3, 4) and yb.shape == (3, h, 3, 1)
    assert xb.dtype == torch.float32 and yb.dtype == torch.float32
    for k, i in enumerate(idx):
        s = sp["val"][i]
        x, y = _expected(v, ts, s, li, h, sc, nodes, in_ch, tgt)
        np.testing.assert_allclose(xb[k].numpy(), x, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(yb[k].numpy(), y)  # original units, NaN kept
        xi, yi = ds[int(i)]
        torch.testing.assert_close(xi, xb[k])
        torch.testing.assert_close(yi, yb[k], equal_nan=True)
    # missing inputs became exactly 0; missing targets stayed NaN
    raw_x = v[sp["val"][0] : sp["val"][0] + li][:, nodes][..., in_ch]
    assert np.isnan(raw_x).any()
    assert (xb[1, ..., :2].numpy()[np.isnan(raw_x)] == 0).all()
    assert not torch.isnan(xb).any()
    assert torch.isnan(yb).any()


def test_default_channels_and_no_time_features():
    v, ts = _toy(c=2)
    sp = make_splits(len(v), 5, 2)
    sc = StandardScaler().fit(v, train_end_step(sp, 5))
    ds = WindowDataset(
        v, ts, sp["train"], input_len=5, horizon=2, scaler=sc,
        add_time_of_day=False, add_day_of_week=True,
    )
    assert ds.input_channels == [0, 1] and ds.target_channels == [0]
    x, y = ds[3]
    assert x.shape == (5, 7, 3) and y.shape == (2, 7, 1)
    _, dow = time_features(ts)
    np.testing.assert_allclose(x[:, 0, 2].numpy(), dow[3:8])
    np.testing.assert_array_equal(y.numpy(), v[8:10, :, :1])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_dataset_validation_errors():
    v, ts = _toy()
    sp = make_splits(len(v), 4, 3)
    sc = StandardScaler().fit(v)
    kw = dict(input_len=4, horizon=3, scaler=sc)
    with pytest.raises(DiststError, match="first"):
        WindowDataset(v, ts, sp["train"], input_channels=[0, 1], target_channels=[1], **kw)
    with pytest.raises(DiststError, match="input_channels"):
        WindowDataset(v, ts, sp["train"], input_channels=[0, 3], **kw)
    with pytest.raises(DiststError, match="do not fit"):
        WindowDataset(v, ts, np.array([0, len(v) - 6]), **kw)
    with pytest.raises(DiststError, match="duplicate"):
        WindowDataset(v, ts, sp["train"], nodes=np.array([1, 1]), **kw)
    with pytest.raises(DiststError, match="timestamps"):
        WindowDataset(v, ts[:-1], sp["train"], **kw)


# -- batching ----------------------------------------------------------------------------
def test_rank_slices_disjoint_equal_and_deterministic():
    s, w = 103, 4
    parts = [rank_indices(s, shuffle=True, seed=7, epoch=2, rank=r, world_size=w) for r in range(w)]
    assert {len(p) for p in parts} == {25}
    allp = np.concatenate(parts)
    assert len(np.unique(allp)) == 100  # disjoint; 103 % 4 = 3 left out this epoch
    perm = np.random.default_rng([7, 2]).permutation(s)
    np.testing.assert_array_equal(allp, perm[:100])  # the trimmed epoch, in order
    again = rank_indices(s, shuffle=True, seed=7, epoch=2, rank=1, world_size=w)
    np.testing.assert_array_equal(again, parts[1])
    other = rank_indices(s, shuffle=True, seed=7, epoch=3, rank=1, world_size=w)
    assert not np.array_equal(other, parts[1])
    # evaluation: every window exactly once, sizes differ by at most one
    ev = [rank_indices(s, shuffle=False, rank=r, world_size=w, even=False) for r in range(w)]
    assert [len(p) for p in ev] == [26, 26, 26, 25]
    np.testing.assert_array_equal(np.concatenate(ev), np.arange(s))
    with pytest.raises(DiststError, match="rank"):
        rank_indices(s, shuffle=False, rank=4, world_size=4)


@pytest.mark.parametrize("drop_last", [False, True])
def test_iterate_batches_cover_epoch(drop_last):
    v, ts = _toy(t=80, n=4, c=1)
    sp = make_splits(len(v), 3, 2)
    sc = StandardScaler().fit(v, train_end_step(sp, 3))
    ds = WindowDataset(v, ts, sp["train"], input_len=3, horizon=2, scaler=sc)
    # tag every window by its first step's time of day to identify it in the batch
    w, bs = 2, 5
    seen = []
    for r in range(w):
        batches = list(iterate_batches(ds, bs, True, seed=1, epoch=0, rank=r, world_size=w,
                                       drop_last=drop_last))
        assert len(batches) == num_batches(len(ds), bs, w, drop_last)
        if drop_last:
            assert all(x.shape[0] == bs for x, _ in batches)
        for x, _ in batches:
            seen.extend(x[:, 0, 0, 1].tolist())
    tod, _ = time_features(ts)
    per = len(ds) // w
    keep = []
    for r in range(w):
        idx = batch_split_indices(len(ds), bs, shuffle=True, seed=1, rank=r, world_size=w)
        assert len(idx) == per
        keep.append(idx[: (per // bs) * bs] if drop_last else idx)
    keep = np.concatenate(keep)
    assert len(np.unique(keep)) == len(keep)  # disjoint
    np.testing.assert_allclose(seen, tod[sp["train"][keep]])
    # a run restored mid-epoch skips the batches it trained on and sees the same rest
    full = list(iterate_batches(ds, bs, True, seed=1, epoch=0, drop_last=drop_last))
    rest = list(iterate_batches(ds, bs, True, seed=1, epoch=0, drop_last=drop_last,
                                start_batch=3))
    assert len(rest) == len(full) - 3
    for (a, _), (b, _) in zip(full[3:], rest):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_data_parallel_steps_are_the_single_process_steps():
    """W ranks' k-th training batches together are the k-th batch of one process whose batch
    is W x the per-rank batch (the same windows, in the same step, not just the same epoch)."""
    s, w, bs = 103, 3, 4
    one = batch_split_indices(s, w * bs, shuffle=True, seed=5, epoch=1, rank=0, world_size=1)
    ranks = [batch_split_indices(s, bs, shuffle=True, seed=5, epoch=1, rank=r, world_size=w)
             for r in range(w)]
    assert {len(r) for r in ranks} == {s // w}
    for k in range((s // w) // bs):
        step = np.concatenate([r[k * bs:(k + 1) * bs] for r in ranks])
        np.testing.assert_array_equal(step, one[k * w * bs:(k + 1) * w * bs])
    assert len(np.unique(np.concatenate(ranks))) == w * (s // w)
    with pytest.raises(DiststError, match="rank"):
        batch_split_indices(s, bs, shuffle=False, rank=3, world_size=3)


def test_los_loop_real_series():
    """The one real series: 207 sensors x 2016 five-minute steps (Los-loop, March 2012)."""
    v = np.loadtxt(LOS, delimiter=",", skiprows=1, dtype=np.float32)[:, :, None]  # [T, N, 1]
    assert v.shape == (2016, 207, 1)
    ts = _ts("2012-03-01T00:00", len(v))
    sp = make_splits(len(v), 12, 12)
    assert [len(sp[k]) for k in ("train", "val", "test")] == [1395, 199, 399]  # S = 1993
    end = train_end_step(sp, 12)
    sc = StandardScaler().fit(v, end, chunk_steps=100)
    np.testing.assert_allclose(sc.mean, [v[:end].mean(dtype=np.float64)], rtol=1e-9)
    ds = WindowDataset(v, ts, sp["test"], input_len=12, horizon=12, scaler=sc)
    x, y = ds.batch(np.arange(len(ds) - 4, len(ds)))
    assert x.shape == (4, 12, 207, 3)
    np.testing.assert_array_equal(y[-1].numpy(), v[-12:])
    np.testing.assert_allclose(x[-1, :, :, 0].numpy() * sc.std[0] + sc.mean[0], v[-24:-12, :, 0],
                               rtol=1e-5)
    assert x[-1, -1, 0, 1].item() == pytest.approx(287 / 288 - 12 / 288, abs=1e-6)  # 22:55
    assert x[-1, 0, 0, 2].item() == pytest.approx(2 / 7)  # 2012-03-07 was a Wednesday
