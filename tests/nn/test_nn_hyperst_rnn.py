"""HyperST-GCGRU / HyperST-DCGRU (HyperST-Net, Pan et al. 2019): unit scales give the plain
models, per-node scales come from the attributes, and the model contract."""

import copy
import math
from pathlib import Path

import pytest
import torch
from nn_helpers import permute_graph, random_graph

from distst.config import read_yaml
from distst.errors import DiststError
from distst.nn import GCGRU, build_model
from distst.nn.dcrnn import DCRNN
from distst.nn.layers.hyperst import FactorHead
from distst.nn.hyperst_rnn import HyperSTDCGRU, HyperSTGCGRU

N, B, T_IN, HOR, F_IN, F_OUT, A = 11, 3, 5, 3, 3, 2, 6
HYPER = {"hyperst_gcgru": HyperSTGCGRU, "hyperst_dcgru": HyperSTDCGRU}
PLAIN = {"hyperst_gcgru": GCGRU, "hyperst_dcgru": DCRNN}
BOTH = pytest.mark.parametrize("name", sorted(HYPER))


def data(ei, ew, attrs, n=N):
    return dict(num_nodes=n, input_dim=F_IN, output_dim=F_OUT, input_len=T_IN, horizon=HOR,
                edge_index=ei, edge_weight=ew, spatial_attrs=attrs)


def make(name, ei, ew, attrs, n=N, **kw):
    return HYPER[name](**data(ei, ew, attrs, n), **kw)


@pytest.fixture
def graph():
    return random_graph(N, 26, seed=5)


@pytest.fixture
def attrs():
    return torch.randn(N, A, generator=torch.Generator().manual_seed(9))


def unit_scales(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, FactorHead):
                m.weight.zero_()  # z = 0 + offset 1 = exactly 1


@BOTH
def test_unit_scales_equal_the_plain_model(name, graph, attrs):
    torch.manual_seed(0)
    ei, ew = graph
    plain = PLAIN[name](**{k: v for k, v in data(ei, ew, None).items() if k != "spatial_attrs"},
                        hidden_size=6).double()
    hyper = make(name, ei, ew, attrs, hidden_size=6).double()
    missing, unexpected = hyper.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("hyper.") for k in missing)
    x = torch.randn(B, T_IN, N, F_IN, dtype=torch.float64)
    y = torch.randn(B, HOR, N, F_OUT, dtype=torch.float64)
    with torch.no_grad():
        assert (hyper(x) - plain(x)).abs().max() > 1e-6  # random heads: not the plain model
        unit_scales(hyper)
        for kw in ({}, {"targets": y, "teacher_forcing": 1.0}):
            got, want = hyper(x, **kw), plain(x, **kw)
            if name == "hyperst_dcgru":  # the scale multiplies by exactly 1.0
                assert torch.equal(got, want)
            else:  # GCGRU's plain path fuses the bias into addmm: rounding only
                torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


@BOTH
def test_scales_follow_the_attributes(name):
    """Two identical disjoint copies of a graph: nodes with equal attributes and inputs give
    equal forecasts; changing the attributes of the second copy makes them differ."""
    torch.manual_seed(1)
    half = 5
    ei0, ew0 = random_graph(half, 12, seed=2)
    ei = torch.cat([ei0, ei0 + half], dim=1)
    ew = torch.cat([ew0, ew0])
    a0 = torch.randn(half, A)
    x0 = torch.randn(B, T_IN, half, F_IN)
    x = torch.cat([x0, x0], dim=2)
    model = make(name, ei, ew, torch.cat([a0, a0]), n=2 * half, hidden_size=6).eval()
    with torch.no_grad():
        y = model(x)
        torch.testing.assert_close(y[:, :, :half], y[:, :, half:], atol=1e-6, rtol=0)
        other = make(name, ei, ew, torch.cat([a0, a0 + 1.0]), n=2 * half, hidden_size=6).eval()
        other.load_state_dict(model.state_dict())  # same weights, other attributes
        y2 = other(x)
        # the copies are disjoint and scales are per node: the first copy is unchanged
        torch.testing.assert_close(y2[:, :, :half], y[:, :, :half], atol=1e-6, rtol=0)
        assert (y2[:, :, :half] - y2[:, :, half:]).abs().max() > 1e-4
        # the generated scales themselves: equal rows for equal attributes
        z = model.hyper()[0]
        for zz in z.values():
            torch.testing.assert_close(zz[:half], zz[half:])
            assert zz.shape[0] == 2 * half


@BOTH
def test_missing_or_bad_attributes_are_clear_errors(name, graph, attrs):
    with pytest.raises(DiststError, match=rf"model {name}: the dataset has no spatial attr"):
        make(name, *graph, None)
    with pytest.raises(DiststError, match=r"spatial_attrs must be \[num_nodes=11"):
        make(name, *graph, attrs[:4])
    with pytest.raises(DiststError, match=r"spatial_widths=\[8, 0\]"):
        make(name, *graph, attrs, spatial_widths=[8, 0])
    with pytest.raises(DiststError, match=r"spatial_widths='8-4'.*\[64, 8, 8, 4\]"):
        make(name, *graph, attrs, spatial_widths="8-4")
    with pytest.raises(DiststError, match="hidden_size=0"):
        make(name, *graph, attrs, hidden_size=0)


@BOTH
def test_shape_gradients_reach_the_spatial_module(name, graph, attrs):
    torch.manual_seed(2)
    model = make(name, *graph, attrs, hidden_size=8)
    y = model(torch.randn(B, T_IN, N, F_IN))
    assert y.shape == (B, HOR, N, F_OUT) and any(p.requires_grad for p in model.parameters())
    y.square().mean().backward()
    names = [k for k, _ in model.named_parameters()]
    assert any(k.startswith("hyper.spatial.") for k in names)
    for k, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, k
        assert p.shape[0] != N, f"per-node parameter {k}"
    # the attributes are data: a non-persistent buffer, not in the checkpoint
    assert not any("spatial_attrs" in k for k in model.state_dict())
    assert "hyper.spatial_attrs" in dict(model.named_buffers())


@BOTH
def test_parameter_count(name, graph, attrs):
    """Plain model + spatial module Dense(64-8-8-4) + d * (channels) per convolution."""
    ei, ew = graph
    hyper = make(name, ei, ew, attrs)  # Table 1 presets: 2 x 64, Dense(64-8-8-4)
    plain = PLAIN[name](**{k: v for k, v in data(ei, ew, None).items() if k != "spatial_attrs"})
    spatial = (A * 64 + 64) + (64 * 8 + 8) + (8 * 8 + 8) + (8 * 4 + 4)
    per_cell = 6 * 64 if name == "hyperst_gcgru" else 3 * 64  # 3H+2H+H or 2H+H channels
    n_hyper = sum(p.numel() for p in hyper.parameters())
    assert n_hyper == sum(p.numel() for p in plain.parameters()) + spatial + 4 * 4 * per_cell


@BOTH
def test_node_permutation_equivariance(name, graph, attrs):
    torch.manual_seed(3)
    ei, ew = graph
    model = make(name, ei, ew, attrs, hidden_size=8).eval()
    perm = torch.randperm(N)
    permuted = make(name, permute_graph(ei, perm), ew, attrs[perm], hidden_size=8).eval()
    permuted.load_state_dict(model.state_dict())
    x = torch.randn(B, T_IN, N, F_IN)
    with torch.no_grad():
        torch.testing.assert_close(permuted(x[:, :, perm]), model(x)[:, :, perm],
                                   atol=1e-5, rtol=0)


@BOTH
def test_whole_graph_degrees_are_used(name, graph, attrs):
    ei, ew = graph
    torch.manual_seed(4)
    w = torch.zeros(N, N).index_put_((ei[0], ei[1]), ew, accumulate=True)
    w.fill_diagonal_(0.0)
    deg = dict(out_degree=w.sum(1).double())
    if name == "hyperst_dcgru":
        deg["in_degree"] = w.sum(0).double()
    base = make(name, ei, ew, attrs, hidden_size=4)
    same = make(name, ei, ew, attrs, hidden_size=4, **deg)
    bigger = make(name, ei, ew, attrs, hidden_size=4, **{k: 2 * v for k, v in deg.items()})
    same.load_state_dict(base.state_dict())
    bigger.load_state_dict(base.state_dict())
    x = torch.randn(B, T_IN, N, F_IN)
    with torch.no_grad():
        torch.testing.assert_close(same(x), base(x), atol=1e-6, rtol=0)
        assert (bigger(x) - base(x)).abs().max() > 1e-5


@BOTH
def test_overfits_a_tiny_batch(name, graph, attrs):
    torch.manual_seed(5)
    t = torch.arange(T_IN + HOR, dtype=torch.float32)
    phase = torch.rand(B, 1, N, 1) * 2 * math.pi
    freq = 0.3 + 0.4 * torch.rand(B, 1, N, 1)
    wave = torch.sin(freq * t[None, :, None, None] + phase)  # [B, T_IN+HOR, N, 1]
    series = torch.cat([wave, 0.5 * wave.roll(1, dims=1)], dim=-1)  # [B, T, N, 2]
    x = torch.cat([series[:, :T_IN], torch.rand(B, T_IN, N, 1)], dim=-1)
    y = series[:, T_IN:]
    model = make(name, *graph, attrs, hidden_size=16, num_layers=1)  # one layer: a quick test
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(300):
        loss = (model(x) - y).square().mean()
        first = first if first is not None else loss.item()
        if loss.item() <= 0.1 * first:  # the spec: the loss falls by 90%
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 0.1 and loss.item() <= 0.1 * first, (first, loss.item())


@BOTH
def test_deep_copies_and_scheduled_sampling(name, graph, attrs):
    torch.manual_seed(6)
    model = make(name, *graph, attrs, hidden_size=4)
    x, y = torch.randn(B, T_IN, N, F_IN), torch.randn(B, HOR, N, F_OUT)
    with torch.no_grad():
        torch.testing.assert_close(copy.deepcopy(model)(x), model(x))
        forced = model(x, targets=y, teacher_forcing=1.0)
        assert (forced[:, 1:] - model(x)[:, 1:]).abs().max() > 1e-5
    with pytest.raises(DiststError, match="needs targets"):
        model(x, teacher_forcing=0.5)


@BOTH
def test_preset_builds_through_the_registry(name, graph, attrs):
    preset = read_yaml(Path(__file__).parents[2] / f"configs/models/{name}.yaml")
    assert preset["model"]["name"] == name
    kwargs = dict(data(*graph, attrs), coords=None, out_degree=None, in_degree=None)
    model = build_model(name, kwargs, preset["model"]["params"])
    assert isinstance(model, HYPER[name])
    assert (model.hidden_size, model.num_layers) == (64, 2)  # Table 1: (64-64)
    assert model.hyper.spatial.out_dim == 4  # Table 1: Dense(64-8-8-4)
    with pytest.raises(DiststError, match="spatial attributes"):
        build_model(name, dict(kwargs, spatial_attrs=None), {})
