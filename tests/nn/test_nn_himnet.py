"""HimNet: dense vs sparse adaptive graphs, the meta-parameter pools without materialised
weights, the poster's ablation switches, time features and the paper's parameter count."""

from __future__ import annotations

import pytest
import torch

from distst.errors import DiststError
from distst.nn.himnet import AdaptiveGraph, HimNet
from distst.nn.layers.sparse import csr_structure, EdgeSpMM, khop_neighbourhood, KronLinear

N, S = 10, 24  # nodes, steps per day


def _path(n=N):
    return torch.stack([torch.arange(n - 1), torch.arange(1, n)])  # one direction only


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    base = dict(num_nodes=N, input_dim=3, output_dim=1, input_len=4, horizon=3,
                edge_index=_path(), steps_per_day=S, hidden_size=8, tod_embedding_dim=4,
                dow_embedding_dim=2, node_embedding_dim=4, st_embedding_dim=4)
    base.update(kw)
    return HimNet(**base)


def _batch(b=2, slot=5, day=2):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, 4, N, 3, generator=g)
    steps = slot + torch.arange(4)
    x[..., 1] = (steps % S)[None, :, None] / S
    x[..., 2] = ((day + steps // S) % 7)[None, :, None] / 7
    return x


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_kron_linear_matches_materialised_weights_and_gradcheck():
    g = torch.Generator().manual_seed(0)
    x, e = torch.randn(9, 5, generator=g, dtype=torch.double), torch.randn(9, 3, generator=g, dtype=torch.double)
    pool = torch.randn(3, 5, 4, generator=g, dtype=torch.double)
    want = torch.einsum("mi,mio->mo", x, torch.einsum("md,dio->mio", e, pool))
    torch.testing.assert_close(KronLinear.apply(x, e, pool), want)
    args = tuple(t.clone().requires_grad_() for t in (x, e, pool))
    assert torch.autograd.gradcheck(KronLinear.apply, args)


def test_spatial_weights_without_materialising_them_give_the_same_model():
    x = _batch()
    a, b = _model(), _model(meta_weight_budget_mb=0.0)  # budget 0: always the Kronecker path
    b.load_state_dict(a.state_dict())
    b.node_embedding.data.copy_(a.node_embedding.data)
    out_a, out_b = a(x), b(x)
    torch.testing.assert_close(out_a, out_b, rtol=1e-5, atol=1e-6)
    out_a.square().sum().backward()
    out_b.square().sum().backward()
    torch.testing.assert_close(a.encoder_s[0].gate.weight_pool.grad,
                               b.encoder_s[0].gate.weight_pool.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(a.node_embedding.grad, b.node_embedding.grad, rtol=1e-4, atol=1e-6)


def test_khop_neighbourhood_of_a_path():
    row, col = khop_neighbourhood(_path(6), 6, 2)
    pairs = set(zip(row.tolist(), col.tolist()))
    want = {(i, j) for i in range(6) for j in range(6) if abs(i - j) <= 2}
    assert pairs == want
    assert torch.all(row[1:] >= row[:-1])  # CSR order
    row1, _ = khop_neighbourhood(_path(6), 6, 1)
    assert row1.numel() == 6 + 2 * 5  # self + both directions of 5 edges


def test_edge_spmm_gradients_match_a_dense_matrix():
    """The value gradient is the sampled product, never a dense [n, n] (100k nodes: 40 GB)."""
    g = torch.Generator().manual_seed(0)
    row, col = khop_neighbourhood(_path(7), 7, 2)
    st = csr_structure(row, col, 7)
    vals = torch.rand(row.numel(), generator=g, dtype=torch.double, requires_grad=True)
    x = torch.randn(7, 3, generator=g, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, z: EdgeSpMM.apply(v, z, st, 7), (vals, x))
    dense = torch.zeros(7, 7, dtype=torch.double).index_put((row, col), vals)
    torch.testing.assert_close(EdgeSpMM.apply(vals, x, st, 7), dense @ x)


def test_sparse_equals_dense_when_the_neighbourhood_covers_the_graph():
    x = _batch()
    dense = _model()
    sparse = _model(graph="sparse", graph_hops=N)  # a path's diameter is N - 1
    sparse.load_state_dict(dense.state_dict())
    sparse.node_embedding.data.copy_(dense.node_embedding.data)
    y = torch.randn(2, 3, N, 1)
    out_d, out_s = dense(x), sparse(x)
    torch.testing.assert_close(out_s, out_d, rtol=1e-5, atol=1e-6)
    (out_d - y).square().mean().backward()
    (out_s - y).square().mean().backward()
    for (name, p), q in zip(dense.named_parameters(), sparse.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_sparse_graph_reads_only_the_neighbourhood():
    emb = torch.randn(N, 4)
    row, col = khop_neighbourhood(_path(), N, 1)
    pattern = csr_structure(row, col, N)
    g = AdaptiveGraph(emb, pattern)
    x = torch.zeros(N, 1, 1)
    x[7] = 1.0  # a signal at node 7 reaches only nodes 6, 7, 8 in one product
    reached = g(x)[:, 0, 0].nonzero().flatten().tolist()
    assert reached == [6, 7, 8]
    # every row is a distribution
    dense_rows = g(torch.ones(N, 1, 1))[:, 0, 0]
    torch.testing.assert_close(dense_rows, torch.ones(N))
    # per-sample graphs ([B, N, d], the decoder's) keep the samples apart
    e_b = torch.randn(3, N, 4)
    gb = AdaptiveGraph(e_b, pattern)
    xb = torch.randn(N, 3, 2)
    for b in range(3):
        torch.testing.assert_close(gb(xb)[:, b], AdaptiveGraph(e_b[b], pattern)(xb[:, b:b + 1])[:, 0])


def test_ablation_switches_change_what_the_poster_says():
    full = _model()
    d_t, d_s, d_st, h = 4 + 2, 4, 4, 8
    # w/o E: the embedding's own parameters disappear, the rest is unchanged
    assert _count(full) - _count(_model(use_e_t=False)) == S * 4 + 7 * 2
    no_es = _model(use_e_s=False)
    assert _count(full) - _count(no_es) == N * d_s and not hasattr(no_es, "node_parameters")
    assert _count(full) - _count(_model(use_e_st=False)) == h * d_st + d_st
    # w/o MP: a pool [d, I, O] + [d, O] becomes plain [I, O] + [O] in each of the two gates
    i = 2 * (3 + h)  # cheb_k * (input + hidden)
    i_dec = 2 * (1 + 2 + h)  # previous prediction + 2 time features + hidden

    def pools(d, i_):
        return sum(d * i_ * o + d * o - (i_ * o + o) for o in (2 * h, h))

    assert _count(full) - _count(_model(use_tmp=False)) == pools(d_t, i)
    assert _count(full) - _count(_model(use_smp=False)) == pools(d_s, i)
    assert _count(full) - _count(_model(use_stmp=False)) == pools(d_st, i_dec)
    # and each switch changes the forecast
    x = _batch()
    ref = full(x)
    for kw in ("use_e_t", "use_e_s", "use_e_st", "use_tmp", "use_smp", "use_stmp"):
        assert not torch.allclose(_model(**{kw: False})(x), ref), kw


def test_without_spatial_embedding_the_adaptive_graph_is_uniform():
    # "w/o E_s": a static all-ones embedding, so softmax(ReLU(1 1^T)) is 1/N everywhere
    g = AdaptiveGraph(torch.ones(N, 4), None)
    torch.testing.assert_close(g.a, torch.full((N, N), 1.0 / N))


def test_time_embedding_and_future_steps_wrap_midnight_and_week():
    m = _model()
    x = _batch(slot=S - 2, day=6)  # last input step: Sunday, slot S-2+3 = S+1 -> Monday slot 1
    fut = m._future_time(x)  # [H, B, 2]
    # last input slot is (S - 2 + 3) % S = 1 on Monday (day 0); the horizon follows it
    torch.testing.assert_close(fut[:, 0, 0], torch.tensor([2, 3, 4]) / S)
    torch.testing.assert_close(fut[:, 0, 1], torch.zeros(3))
    x = _batch(slot=S - 6, day=6)  # last input at slot S - 3 on Sunday
    fut = m._future_time(x)
    torch.testing.assert_close(fut[:, 0, 0], torch.tensor([S - 2, S - 1, 0]) / S)
    # the authors' encoding: the day of week is the integer index, not day / 7
    torch.testing.assert_close(fut[:, 0, 1], torch.tensor([6.0, 6.0, 0.0]))


def _window_x(stamps, steps_per_day=288, n=3):
    """distst's window features for ``stamps`` (datetime64): [1, T, n, 3] = value, tod, dow."""
    import numpy as np

    from distst.data.windows import time_features

    tod, dow = time_features(np.asarray(stamps, dtype="datetime64[ns]").astype(np.int64))
    feats = torch.from_numpy(np.stack([np.zeros_like(tod), tod, dow], -1))  # [T, 3]
    return feats[None, :, None, :].expand(1, -1, n, 3).contiguous()


@pytest.mark.parametrize("origin_day", ["2012-03-01", "2016-07-01", "2018-09-01"])
def test_day_index_is_the_authors_weekday_on_every_day_across_midnight_and_week_end(origin_day):
    """The authors' data pipeline (Torch-MTS ``generate_training_data.py``): ``tod`` = fraction
    of the day, embedding row ``(tod * 288).long()``; ``dow`` = pandas ``dayofweek`` (Monday 0) for
    their METR-LA / PEMS-BAY files, ``(step // 288) % 7`` counted from the file's first day for
    their PEMS0x npz files. HimNet's day index must equal both, given ``dow_origin`` = weekday of
    the first day, at every 5-minute step of two weeks (all seven days, every midnight, and
    the Sunday -> Monday week end), and it must replace weekday / 7 in the encoders' input."""
    import numpy as np
    import pandas as pd

    idx = pd.date_range(origin_day, periods=14 * 288, freq="5min")
    x = _window_x(idx.values)
    steps = np.arange(len(idx))
    slot_ref = torch.from_numpy((steps % 288 / 288).astype(np.float32))
    slot_ref = (slot_ref * 288).long()  # the authors' truncation of the float32 feature
    # h5 convention (pandas, Monday = 0): dow_origin 0
    m = HimNet(num_nodes=3, input_dim=3, output_dim=1, input_len=len(idx), hidden_size=4)
    slot, day = m.time_index(x)
    assert torch.equal(slot[0], slot_ref)
    assert torch.equal(day[0], torch.from_numpy(np.asarray(idx.day_of_week, dtype=np.int64)))
    # npz convention: day 0 is the file's first day
    first = int(idx[0].day_of_week)
    m = HimNet(num_nodes=3, input_dim=3, output_dim=1, input_len=len(idx), hidden_size=4,
               dow_origin=first)
    slot, day = m.time_index(x)
    assert torch.equal(slot[0], slot_ref)
    assert torch.equal(day[0], torch.from_numpy((steps // 288) % 7))
    # the week end is crossed and every day is seen
    assert set(idx.day_of_week) == set(range(7)) and ((idx.day_of_week[1:] == 0) &
                                                    (idx.day_of_week[:-1] == 6)).any()
    # the encoders read the integer index in the day-of-week channel, the rest unchanged
    enc = m._authors_input(x, day)
    assert torch.equal(enc[0, :, 0, 2], ((torch.from_numpy(steps) // 288) % 7).float())
    assert torch.equal(enc[..., :2], x[..., :2])


def test_slot_is_floored_near_midnight_off_the_grid():
    """23:58:30 is in the last 5-minute slot of its day (the authors' truncation), not slot 0 of
    the same day, and the next step's slot then falls on the next day."""
    import numpy as np

    stamps = np.array(["2024-01-07T23:53:30", "2024-01-07T23:58:30"], dtype="datetime64[ns]")
    m = HimNet(num_nodes=3, input_dim=3, output_dim=1, input_len=2, horizon=2, hidden_size=4)
    x = _window_x(stamps)
    slot, day = m.time_index(x)  # 2024-01-07 is a Sunday
    assert slot[0].tolist() == [286, 287] and day[0].tolist() == [6, 6]
    fut = m._future_time(x)[:, 0]
    torch.testing.assert_close(fut[:, 0], torch.tensor([0.0, 1.0]) / 288)
    torch.testing.assert_close(fut[:, 1], torch.tensor([0.0, 0.0]))  # Monday


def test_dow_origin_is_checked():
    with pytest.raises(DiststError, match="dow_origin=7"):
        _model(dow_origin=7)


def test_paper_parameter_count():
    # the authors' METR-LA settings at N = 207: 1,250,937 parameters (their code gives the same
    # count; the poster's efficiency table says 1,251K)
    m = HimNet(num_nodes=207, input_dim=3, output_dim=1)
    assert _count(m) == 1_250_937


def test_bad_settings_are_named():
    with pytest.raises(DiststError, match="graph='ring'"):
        _model(graph="ring")
    with pytest.raises(DiststError, match="needs the dataset's edges"):
        _model(graph="sparse", edge_index=None)
    with pytest.raises(DiststError, match="data.time_of_day=true"):
        _model(time_of_day=False, input_dim=2)
    with pytest.raises(DiststError, match="graph_hops=0"):
        _model(graph="sparse", graph_hops=0)
    # an edgeless graph (self-loops only) made sparse HimNet a per-node model without a word
    loops = torch.stack([torch.arange(N), torch.arange(N)])
    for edges in (loops, loops[:, :0]):
        with pytest.raises(DiststError, match="without an edge between two sensors"):
            _model(graph="sparse", edge_index=edges)
    _model(graph="dense", edge_index=loops)  # the dense graph does not read the road graph


def test_preset_is_the_authors_setting_and_the_constructor_default():
    from pathlib import Path

    from distst.config import config_from_dict, read_yaml
    from distst.nn.registry import model_param_defaults

    cfg = config_from_dict(read_yaml(Path(__file__).parents[2] / "configs/models/himnet.yaml"))
    defaults = model_param_defaults("himnet")
    for key, value in cfg.model.params.items():
        assert defaults[key] == value, key
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.adam_eps) == (16, 1e-3, 1e-3)


# the authors' model/HimNet.yaml (github.com/XDZhelheim/HimNet), section per dataset:
# hidden, tod/dow/node/ST embeddings, weight decay, milestones, tf_decay_steps, PEMS0x Huber
AUTHORS = {
    "pems-bay": (64, 8, 8, 16, 16, 0.0001, [25, 35], 6000, "mae"),
    "pems03": (64, 8, 8, 16, 16, 0.0003, [30, 50], 4000, "huber"),
    "pems04": (64, 12, 4, 16, 16, 0.0001, [30, 50], 4000, "huber"),
    "pems07": (64, 8, 8, 16, 16, 0.0001, [40, 60], 6000, "huber"),
    "pems08": (96, 10, 2, 14, 10, 0.0, [40, 60, 80], 6000, "huber"),
}


@pytest.mark.parametrize("dataset", sorted(AUTHORS))
def test_authors_presets_load_and_build_on_a_tiny_dataset(tmp_path, dataset):
    """dataset file + preset through the config loader, then the engine's data bundle on a
    tiny prepared series of that format and the registry's model: flow (or speed) only, input
    dim 3, a forecast of the right shape."""
    from pathlib import Path

    from distst.config import load_config
    from distst.data.formats import read_dataset
    from distst.data.network import save_network
    from distst.engine.bundle import build_bundle
    from distst.nn.registry import build_model

    import numpy as np

    root = Path(__file__).parents[2] / "configs"
    run = tmp_path / "run.yaml"
    run.write_text(f"include: [{root / 'datasets' / (dataset + '.yaml')}, "
                   f"{root / 'models' / ('himnet-' + dataset + '.yaml')}]\n")
    cfg = load_config(run)
    hid, tod, dow, node, st, wd, ms, tf, loss = AUTHORS[dataset]
    p = cfg.model.params
    assert cfg.model.name == "himnet"
    assert (p["hidden_size"], p["tod_embedding_dim"], p["dow_embedding_dim"],
            p["node_embedding_dim"], p["st_embedding_dim"], p["cheb_k"]) == (hid, tod, dow, node,
                                                                              st, 2)
    t = cfg.train
    assert (t.weight_decay, t.lr_milestones, t.cl_decay_steps, t.loss) == (wd, ms, tf, loss)
    assert (t.lr, t.adam_eps, t.batch_size, t.epochs, t.patience, t.grad_clip) == (
        1e-3, 1e-3, 16, 200, 20, 5.0)
    if loss == "huber":
        assert (t.huber_delta, t.loss_scale) == (1.0, "original")
        assert cfg.data.split == [0.6, 0.2, 0.2]
    assert cfg.data.input_channels == [0] and cfg.data.target_channels == [0]
    # a tiny prepared series of that format (3 channels for PEMS04/08, as published)
    src = tmp_path / "raw"
    if dataset == "pems-bay":
        import pandas as pd
        src.mkdir()
        ids = ["400001", "400017", "400030", "400040", "400045", "400052"]
        idx = pd.date_range("2017-01-01", periods=300, freq="5min")
        vals = torch.rand(300, 6, generator=torch.Generator().manual_seed(0)).numpy() * 60 + 5
        pd.DataFrame(vals, index=idx, columns=ids).to_hdf(src / "pems-bay.h5", key="speed")
        import pickle
        adj = np.eye(6, dtype=np.float32) + np.eye(6, k=1, dtype=np.float32) * 0.5
        with open(src / "adj_mx_bay.pkl", "wb") as f:
            pickle.dump([ids, {s: i for i, s in enumerate(ids)}, adj], f, protocol=2)
    else:
        from tests.data.test_formats import write_pems
        write_pems(src, dataset, n=6, t=300, c=3 if dataset in ("pems04", "pems08") else 1)
    data_dir = tmp_path / "data"
    save_network(read_dataset(dataset, src), data_dir)
    cfg.data.path = str(data_dir)
    bundle = build_bundle(cfg.data, data_dir, notices=False)
    assert bundle.input_channels == [0] and bundle.input_dim == 3
    model = build_model("himnet", bundle.kwargs_for_model("himnet"), cfg.model.params)
    assert model.dow_origin == {"pems03": 5, "pems08": 4}.get(dataset, 0)
    x, _ = bundle.datasets["train"].batch(np.arange(2))
    out = model(x)
    assert out.shape == (2, 12, 6, 1) and torch.isfinite(out).all()
