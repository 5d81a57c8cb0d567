"""STID (Shao et al., CIKM 2022): equal to the authors' layout for copied weights, identities
indexed by the last input step, the ablation switches, and the errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distst.errors import DiststError
from distst.nn.registry import build_model

B, T, N, H = 3, 12, 20, 12
SPD = 288


def _data(time_of_day=True, day_of_week=True, input_dim=3, output_dim=1):
    return dict(num_nodes=N, input_dim=input_dim, output_dim=output_dim, input_len=T,
                horizon=H, steps_per_day=SPD, time_of_day=time_of_day,
                day_of_week=day_of_week)


def _batch(seed=0, input_dim=3):
    """Value channel(s), then time of day in [0, 1) and weekday / 7, as distst's windows."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, N, input_dim, generator=g)
    start = torch.randint(0, SPD * 7, (B,), generator=g)
    step = start[:, None] + torch.arange(T)[None]  # [B, T] 5-minute steps since Monday 0:00
    x[..., -2] = ((step % SPD).float() / SPD)[:, :, None]
    x[..., -1] = ((step // SPD % 7).float() / 7)[:, :, None]
    return x


class AuthorsLayout(nn.Module):
    """STID written the way the authors' code lays it out: features on dim 1 of
    ``[B, features, N, 1]``, 1x1 convolutions, embeddings indexed by
    ``(tod * 288).long()`` and ``(dow * 7).long()`` of the last step (an independent
    implementation of the equations, for the layout check)."""

    def __init__(self, d_in, d_emb, d_node, d_tid, d_diw, layers):
        super().__init__()
        width = d_emb + d_node + d_tid + d_diw
        self.emb = nn.Conv2d(d_in * T, d_emb, 1)
        self.node = nn.Parameter(torch.randn(N, d_node))
        self.tid = nn.Parameter(torch.randn(SPD, d_tid))
        self.diw = nn.Parameter(torch.randn(7, d_diw))
        self.fc = nn.ModuleList(nn.ModuleList([nn.Conv2d(width, width, 1),
                                               nn.Conv2d(width, width, 1)])
                                for _ in range(layers))
        self.reg = nn.Conv2d(width, H, 1)

    def forward(self, x):
        b = x.shape[0]
        series = x.transpose(1, 2).reshape(b, N, -1).transpose(1, 2)[..., None]  # [B, T*C, N, 1]
        tid = self.tid[(x[:, -1, :, 1] * SPD).long()]  # [B, N, d]
        diw = self.diw[(x[:, -1, :, 2] * 7).long()]
        h = torch.cat([self.emb(series),
                       self.node.t()[None, :, :, None].expand(b, -1, -1, -1),
                       tid.transpose(1, 2)[..., None], diw.transpose(1, 2)[..., None]], dim=1)
        for fc1, fc2 in self.fc:
            h = h + fc2(torch.relu(fc1(h)))
        return self.reg(h)  # [B, H, N, 1]


def _copy(model, ref):
    def lin(dst, src):
        dst.weight.copy_(src.weight[:, :, 0, 0])
        dst.bias.copy_(src.bias)

    with torch.no_grad():
        lin(model.input_embedding, ref.emb)
        model.node_embedding.copy_(ref.node)
        model.tod_embedding.copy_(ref.tid)
        model.dow_embedding.copy_(ref.diw)
        for layer, (fc1, fc2) in zip(model.encoder, ref.fc):
            lin(layer.fc1, fc1)
            lin(layer.fc2, fc2)
        lin(model.regression, ref.reg)


def test_equals_the_authors_layout_for_copied_weights():
    """Paper defaults (32/32/32/32, 3 layers): Linear on [B, N, F] == 1x1 convs on
    [B, F, N, 1], the window flattened step by step, identities of the last step."""
    torch.manual_seed(0)
    model = build_model("stid", _data(), {"dropout": 0.0})
    ref = AuthorsLayout(3, 32, 32, 32, 32, 3)
    _copy(model, ref)
    model.eval()
    for seed in range(3):
        x = _batch(seed)
        torch.testing.assert_close(model(x), ref(x), rtol=1e-5, atol=1e-5)


def test_paper_defaults_and_parameter_count():
    model = build_model("stid", _data(), {})
    width = 32 * 4
    expect = (3 * T * 32 + 32) + N * 32 + SPD * 32 + 7 * 32 \
        + 3 * 2 * (width * width + width) + (width * H + H)
    assert sum(p.numel() for p in model.parameters()) == expect
    assert model.encoder[0].drop.p == 0.15
    assert model.node_parameters == ("node_embedding",)


def test_identities_come_from_the_last_input_step():
    torch.manual_seed(0)
    model = build_model("stid", _data(), {"dropout": 0.0, "input_embedding_dim": 4})
    model.eval()
    with torch.no_grad():
        model.input_embedding.weight.zero_()  # the window's values no longer matter
    x = _batch(1)
    y = x.clone()
    y[:, :-1, :, 1:] = torch.rand(B, T - 1, N, 2)  # other steps' time features: no effect
    torch.testing.assert_close(model(y), model(x))
    z = x.clone()
    z[:, -1, :, 1] = (z[:, -1, :, 1] + 1.0 / SPD) % 1.0  # the next slot of the day: an effect
    assert not torch.allclose(model(z), model(x))
    # a time of day stored a hair below its slot boundary still reads that slot
    w = x.clone()
    w[:, -1, :, 1] = torch.floor(w[:, -1, :, 1] * SPD) / SPD - 1e-7
    torch.testing.assert_close(model(w), model(x))


def test_a_zero_dimension_leaves_the_identity_out():
    model = build_model("stid", _data(time_of_day=False, day_of_week=False, input_dim=1),
                        {"node_embedding_dim": 0, "tod_embedding_dim": 0,
                         "dow_embedding_dim": 0})
    assert model.tod_embedding is None and model.dow_embedding is None
    assert not hasattr(model, "node_parameters")
    assert model.regression.in_features == 32
    assert model(torch.randn(B, T, N, 1)).shape == (B, H, N, 1)


def test_several_output_channels():
    model = build_model("stid", _data(input_dim=4, output_dim=2), {})
    x = torch.cat([torch.randn(B, T, N, 2), _batch(0)[..., 1:]], dim=-1)
    assert model(x).shape == (B, H, N, 2)


@pytest.mark.parametrize("params, flag", [({"tod_embedding_dim": 8}, "time_of_day"),
                                          ({"dow_embedding_dim": 8}, "day_of_week")])
def test_an_identity_without_its_channel_is_refused(params, flag):
    data = _data(**{flag: False}, input_dim=2)
    with pytest.raises(DiststError, match=f"data.{flag}=true"):
        build_model("stid", data, params)


@pytest.mark.parametrize("key, val", [("dropout", 1.0), ("num_layers", 0),
                                      ("node_embedding_dim", -1)])
def test_bad_hyperparameters_are_named(key, val):
    with pytest.raises(DiststError, match=key):
        build_model("stid", _data(), {key: val})
