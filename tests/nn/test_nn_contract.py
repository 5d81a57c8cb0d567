"""What every trainable registered model must do, on one tiny grid-shaped sensor network.

Output shape; backward with a gradient for every parameter; over-fitting a tiny fixed batch
(training loss falls by 90%); node-permutation equivariance for models without per-node
parameters (permuting nodes, graph, attributes and coordinates permutes the output).
A 3 x 4 grid with 4-neighbour edges serves every model, HyperST-CNN's 3x3 convolutions included.
"""

from __future__ import annotations

import pytest
import torch

from distst.graph.coarsening import local_coarsening

from distst.nn.registry import MODELS, build_model, model_class
from tiny_models import TINY

H, W = 3, 4
N = H * W
B, T_IN, T_OUT, F_IN, F_OUT = 4, 12, 3, 2, 1

# Small sizes (tests/tiny_models.py) so that the whole file runs in seconds; each model's own
# defaults are the paper's.
TRAINABLE = [m for m in MODELS if m != "ha"]


def _grid():
    """4-neighbour grid, both directions with one weight per pair (the Chebyshev models need
    an undirected graph), distinct across pairs so that normalisation matters."""
    src, dst = [], []
    for r in range(H):
        for c in range(W):
            i = r * W + c
            for dr, dc in ((0, 1), (1, 0)):
                if r + dr < H and c + dc < W:
                    j = (r + dr) * W + c + dc
                    src += [i, j]
                    dst += [j, i]
    ei = torch.tensor([src, dst])
    g = torch.Generator().manual_seed(0)
    ew = (torch.rand(ei.shape[1] // 2, generator=g) * 0.8 + 0.2).repeat_interleave(2)
    coords = torch.tensor([[r, c] for r in range(H) for c in range(W)], dtype=torch.float64)
    attrs = torch.randn(N, 5, generator=g)
    return ei, ew, coords, attrs


def _coarsening(perm):
    """GPA levels of the unpermuted grid, level 1 relabelled to the permuted node order:
    GPA's tie-breaking follows node ids, so a permuted graph may coarsen differently, and
    equivariance is a property of the model given the same super-nodes."""
    ei, ew, _, _ = _grid()

    def levels(p: int):
        out = local_coarsening(ei.numpy(), ew.numpy(), N, p)
        if perm is not None and out:
            parent, e, w, n = out[0]
            out[0] = (parent[perm], e, w, n)
        return out

    return levels


def _data(perm=None):
    ei, ew, coords, attrs = _grid()
    if perm is not None:  # new node i is old node perm[i]
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(N)
        ei, coords, attrs = inv[ei], coords[perm], attrs[perm]
    # channel 1 of the batch plays the time of day (HimNet reads it); no day of week
    return dict(num_nodes=N, input_dim=F_IN, output_dim=F_OUT, input_len=T_IN, horizon=T_OUT,
                edge_index=ei, edge_weight=ew, spatial_attrs=attrs, coords=coords,
                out_degree=None, in_degree=None, steps_per_day=24, time_of_day=True,
                day_of_week=False,
                coarsening=_coarsening(perm))


def _batch():
    g = torch.Generator().manual_seed(1)
    t = torch.arange(T_IN + T_OUT, dtype=torch.float32)
    phase = torch.rand(N, generator=g) * 6.28
    # smooth node-specific waves plus noise: learnable, not trivially constant
    wave = torch.sin(t[:, None] / 3 + phase[None, :])  # [T, N]
    x = torch.stack([wave[:T_IN], torch.cos(t[:T_IN, None] / 5).expand(T_IN, N)], dim=-1)
    x = x[None].repeat(B, 1, 1, 1) + 0.05 * torch.randn(B, T_IN, N, F_IN, generator=g)
    y = wave[T_IN:, :, None][None].repeat(B, 1, 1, 1)  # [B, T_OUT, N, 1]
    return x, y


def _model(name, perm=None, seed=0):
    torch.manual_seed(seed)
    return build_model(name, _data(perm), TINY.get(name, {}))


@pytest.mark.parametrize("name", TRAINABLE)
def test_shape_backward_and_every_parameter_gets_a_gradient(name):
    model = _model(name)
    x, y = _batch()
    out = model(x)
    assert out.shape == (B, T_OUT, N, F_OUT)
    assert torch.isfinite(out).all()
    ((out - y) ** 2).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: parameter {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}: parameter {pname} has an all-zero gradient"


@pytest.mark.parametrize("name", TRAINABLE)
def test_overfits_a_tiny_fixed_batch(name):
    model = _model(name)
    x, y = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss_now():
        model.eval()
        with torch.no_grad():
            return float(((model(x) - y) ** 2).mean())

    first = loss_now()
    model.train()
    for step in range(300):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        if step % 50 == 49 and loss_now() < 0.1 * first:
            break
        model.train()
    last = loss_now()
    assert last < 0.1 * first, f"{name}: loss {first:.4f} -> {last:.4f} (needs a 90% fall)"


@pytest.mark.parametrize("name", TRAINABLE)
def test_node_permutation_equivariance(name):
    model = _model(name)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(3))
    permuted = _model(name, perm=perm, seed=1)
    permuted.load_state_dict(model.state_dict())
    with torch.no_grad():  # a per-node parameter row travels with its node
        for pname in getattr(model, "node_parameters", ()):
            permuted.get_parameter(pname).copy_(model.get_parameter(pname)[perm])
    model.eval()
    permuted.eval()
    x, _ = _batch()
    with torch.no_grad():
        out = model(x)
        out_p = permuted(x[:, :, perm])
    torch.testing.assert_close(out_p, out[:, :, perm], rtol=1e-4, atol=1e-5)


def test_every_registered_model_imports_and_declares_its_data_keys():
    for name in MODELS:
        cls = model_class(name)
        assert issubclass(cls, torch.nn.Module), name


@pytest.mark.parametrize("name", TRAINABLE)
def test_bf16_autocast_runs_and_stays_near_fp32(name):
    """train.precision=bf16 wraps the forward in CPU autocast: every model must run under it
    (sparse products included: MKL has no bf16 sparse kernel), give every parameter a finite
    fp32 gradient, and stay near its fp32 forecast (bf16 keeps 8 mantissa bits: ~0.4%
    per rounding, a few percent after the recurrences)."""
    model = _model(name)
    x, y = _batch()
    with torch.no_grad():
        ref = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape == (B, T_OUT, N, F_OUT)
    out = out.float()
    ((out - y) ** 2).mean().backward()
    for pname, p in model.named_parameters():
        assert p.dtype == torch.float32, f"{name}: {pname} is {p.dtype}, master weights are fp32"
        assert p.grad is not None and p.grad.dtype == torch.float32, f"{name}: {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
    err = float((out.detach() - ref).abs().max() / ref.abs().max().clamp_min(1e-6))
    assert err < 0.1, f"{name}: bf16 forecast differs from fp32 by {err:.3g} of the largest"


RECURRENT = [m for m in TRAINABLE if getattr(model_class(m), "RECURRENT", False)]


@pytest.mark.parametrize("name", RECURRENT)
def test_recompute_gives_the_same_forecast_and_gradients(name):
    """train.recompute=step recomputes each recurrent step in the backward pass instead of
    storing its internals: the forecast and every gradient stay what they were (to fp32
    roundoff; dropout, where a model has it, redraws the same mask). Every step goes through
    ``recurrent_step``: its ``step_hook`` (train.heap_slack_mib's trimmer) runs once per step
    in the forward pass, and once more per step in the backward pass with recompute."""
    grads, saved, hooked = [], [], []
    for recompute in (False, True):
        model = _model(name)
        model.recompute = recompute
        calls = [0]
        model.step_hook = lambda: calls.__setitem__(0, calls[0] + 1)
        model.train()
        x, y = _batch()
        torch.manual_seed(5)
        stored = [0]

        def pack(t):  # bytes autograd keeps for the backward pass (parameters aside)
            if not isinstance(t, torch.nn.Parameter):
                stored[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(x)
        saved.append(stored[0])
        forward_calls = calls[0]
        ((out - y) ** 2).mean().backward()
        hooked.append((forward_calls, calls[0]))
        grads.append((out.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}))
    (out0, g0), (out1, g1) = grads
    assert saved[1] < 0.7 * saved[0], f"{name}: stored {saved[0]} -> {saved[1]} bytes"
    (fwd, total), (fwd_rc, total_rc) = hooked
    assert fwd >= 1 and fwd == total == fwd_rc, (name, hooked)
    assert total_rc == 2 * fwd_rc, (name, hooked)
    torch.testing.assert_close(out1, out0, rtol=1e-5, atol=1e-6)
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-4, atol=1e-6, msg=f"{name}: {k}")


def test_recurrent_models_are_the_ones_with_recurrent_steps():
    assert set(RECURRENT) == {"gru", "lstm", "gcgru", "dcrnn", "hyperst_lstm_g",
                              "hyperst_lstm_d", "hyperst_gcgru", "hyperst_dcgru", "himnet",
                              "stunet"}
