"""LSTMSeq2Seq: the graph-free LSTM encoder-decoder baseline."""

import math

import pytest
import torch
from torch import nn

from distst.errors import DiststError
from distst.nn.lstm import LSTMSeq2Seq
from distst.nn.registry import build_model, model_param_defaults

N, B, T_IN, HOR, F_IN, F_OUT = 7, 3, 5, 4, 3, 2


def make(**kw):
    return LSTMSeq2Seq(num_nodes=N, input_dim=F_IN, output_dim=F_OUT, input_len=T_IN,
                       horizon=HOR, **kw)


def test_shape_gradients_and_registry_defaults():
    torch.manual_seed(0)
    assert model_param_defaults("lstm") == {"hidden_size": 64, "num_layers": 2}
    model = build_model("lstm", dict(num_nodes=N, input_dim=F_IN, output_dim=F_OUT,
                                     input_len=T_IN, horizon=HOR), {"hidden_size": 8})
    assert isinstance(model, LSTMSeq2Seq) and any(p.requires_grad for p in model.parameters())
    y = model(torch.randn(B, T_IN, N, F_IN))
    assert y.shape == (B, HOR, N, F_OUT)
    y.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_equals_a_hand_written_per_node_loop():
    """Each node is its own sequence: nn.LSTM encoder state -> decoder fed its own output."""
    torch.manual_seed(1)
    model = make(hidden_size=6, num_layers=2).eval()
    x = torch.randn(B, T_IN, N, F_IN)
    with torch.no_grad():
        y = model(x)
        node = 4
        _, state = model.encoder(x[:, :, node])  # [B, T, F] batch-first
        inp = torch.zeros(B, 1, F_OUT)
        for step in range(HOR):
            out, state = model.decoder(inp, state)
            inp = model.proj(out)
            torch.testing.assert_close(y[:, step, node], inp[:, 0], atol=1e-6, rtol=0)


def test_nodes_are_independent_and_permutation_equivariant():
    torch.manual_seed(2)
    model = make(hidden_size=8).eval()
    x = torch.randn(B, T_IN, N, F_IN)
    perm = torch.randperm(N)
    x2 = x.clone()
    x2[:, :, 0] += 1.0
    with torch.no_grad():
        y = model(x)
        torch.testing.assert_close(model(x[:, :, perm]), y[:, :, perm], atol=1e-6, rtol=0)
        delta = (model(x2) - y).abs().amax(dim=(0, 1, 3))  # per node
    assert delta[0] > 1e-4 and delta[1:].max() == 0


def test_overfits_a_tiny_batch():
    torch.manual_seed(3)
    t = torch.arange(T_IN + HOR, dtype=torch.float32)
    phase = torch.rand(B, 1, N, 1) * 2 * math.pi
    freq = 0.3 + 0.4 * torch.rand(B, 1, N, 1)
    wave = torch.sin(freq * t[None, :, None, None] + phase)  # [B, T_IN+HOR, N, 1]
    series = torch.cat([wave, 0.5 * wave.roll(1, dims=1)], dim=-1)  # [B, T, N, 2]
    x = torch.cat([series[:, :T_IN], torch.rand(B, T_IN, N, 1)], dim=-1)
    y = series[:, T_IN:]
    model = make(hidden_size=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(400):  # stops once the loss has fallen by 95% (the spec asks for 90%)
        loss = (model(x) - y).square().mean()
        first = first if first is not None else loss.item()
        if loss.item() <= 0.05 * first:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 0.1 and loss.item() <= 0.1 * first, (first, loss.item())


def test_scheduled_sampling_and_errors():
    torch.manual_seed(4)
    model = make(hidden_size=8)
    x = torch.randn(B, T_IN, N, F_IN)
    y = torch.randn(B, HOR, N, F_OUT)
    with torch.no_grad():
        free = model(x)
        torch.testing.assert_close(model(x, targets=y, teacher_forcing=0.0), free)
        forced = model(x, targets=y, teacher_forcing=1.0)
        torch.testing.assert_close(forced[:, 0], free[:, 0])
        assert (forced[:, 1:] - free[:, 1:]).abs().max() > 1e-4
        y_nan = y.clone()
        y_nan[:, :, 0] = float("nan")
        assert torch.isfinite(model(x, targets=y_nan, teacher_forcing=1.0)).all()
    with pytest.raises(DiststError, match="needs targets"):
        model(x, teacher_forcing=0.5)
    with pytest.raises(DiststError, match="built for"):
        model(torch.randn(B, T_IN, N + 1, F_IN))
    with pytest.raises(DiststError, match="hidden_size=0"):
        make(hidden_size=0)
    with pytest.raises(DiststError, match="output_dim"):
        LSTMSeq2Seq(num_nodes=N, input_dim=1, output_dim=2)
    assert isinstance(model.encoder, nn.LSTM)


def test_preset_builds_through_the_registry_and_config():
    from pathlib import Path

    from distst.config import config_from_dict, read_yaml

    cfg = config_from_dict(read_yaml(Path(__file__).parents[2] / "configs/models/lstm.yaml"))
    model = build_model(cfg.model.name, dict(num_nodes=N, input_dim=F_IN, output_dim=F_OUT),
                        cfg.model.params)
    assert isinstance(model, LSTMSeq2Seq) and (model.hidden_size, model.num_layers) == (64, 2)
