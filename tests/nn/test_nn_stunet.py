"""ST-UNet (distst.nn.stunet): shapes and gradients, over-fitting, reduction to the GCGRU
backbone, pooling / unpooling maps, the dilated recurrence (Eq. 8), the hyperparameter
switches, the METR-LA graph, and the shard property (super-nodes stay inside a part)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from scipy.sparse.csgraph import connected_components

from distst.data.formats import read_graph
from distst.data.network import save_network
from distst.graph.adjacency import symmetrize
from distst.data.synth import synth_network
from distst.errors import DiststError
from distst.graph.partition import partition_graph
from distst.graph.partition.gpa import gpa_hierarchy
from distst.graph.partition.plan import open_part, write_plan
from distst.nn.gcgru import GCGRU
from distst.nn.layers.cells import GCGRUCell
from distst.nn.stunet import STUNet, _pool

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
H, W = 4, 6
N = H * W
B, T_IN, T_OUT, F_IN, F_OUT = 2, 6, 3, 2, 1
HID = 8


def gpa_coarsening(edge_index, edge_weight, num_nodes):
    """The engine's ``coarsening`` data key, built from gpa_hierarchy (Algorithm 1): level l's
    parent maps level-(l-1) nodes to level-l super-nodes. ``.calls`` records the requests."""
    ei = np.asarray(edge_index)
    ew = None if edge_weight is None else np.asarray(edge_weight, dtype=np.float64)

    def coarsening(levels):
        coarsening.calls.append(levels)
        c = gpa_hierarchy(ei, ew, num_nodes, levels)
        out, prev, prev_n = [], np.arange(num_nodes), num_nodes
        for to_level, (lei, lew, n) in zip(c.levels, c.graphs):
            parent = np.empty(prev_n, dtype=np.int64)
            parent[prev] = to_level  # original -> level l-1 and original -> level l
            out.append((torch.from_numpy(parent), torch.from_numpy(lei),
                        torch.from_numpy(lew), n))
            prev, prev_n = to_level, n
        return out

    coarsening.calls = []
    return coarsening


def _grid():
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
    half = torch.rand(ei.shape[1] // 2, generator=g) * 0.8 + 0.2
    return ei, half.repeat_interleave(2)  # symmetric weights


def _model(seed=0, **params):
    ei, ew = _grid()
    torch.manual_seed(seed)
    kw = dict(K=2, hidden_size=HID)
    kw.update(params)
    return STUNet(num_nodes=N, input_dim=F_IN, output_dim=F_OUT, input_len=T_IN, horizon=T_OUT,
                  edge_index=ei, edge_weight=ew, coarsening=gpa_coarsening(ei, ew, N), **kw)


def _batch():
    g = torch.Generator().manual_seed(1)
    t = torch.arange(T_IN + T_OUT, dtype=torch.float32)
    phase = torch.rand(N, generator=g) * 6.28
    wave = torch.sin(t[:, None] / 2 + phase[None, :])  # [T, N]
    x = torch.stack([wave[:T_IN], torch.cos(t[:T_IN, None] / 5).expand(T_IN, N)], dim=-1)
    x = x[None].repeat(B, 1, 1, 1) + 0.05 * torch.randn(B, T_IN, N, F_IN, generator=g)
    y = wave[T_IN:, :, None][None].repeat(B, 1, 1, 1)  # [B, T_OUT, N, 1]
    return x, y


def _nparams(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("unpool", ["copy", "ordered", "weighted"])
def test_shape_and_every_parameter_gets_a_gradient(unpool):
    model = _model(levels=2, dilation=2, unpool=unpool)
    x, y = _batch()
    out = model(x, targets=y, teacher_forcing=0.5)
    assert out.shape == (B, T_OUT, N, F_OUT) and torch.isfinite(out).all()
    ((out - y) ** 2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"
    # graphs and pooling maps are data, not state: the checkpoint holds parameters only
    assert set(model.state_dict()) == {n for n, _ in model.named_parameters()}


def test_overfits_a_tiny_fixed_batch():
    model = _model(levels=2, dilation=2)
    x, y = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss_now():
        with torch.no_grad():
            return float(((model(x) - y) ** 2).mean())

    first = loss_now()
    for step in range(300):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        if step % 50 == 49 and loss_now() < 0.1 * first:
            break
    last = loss_now()
    assert last < 0.1 * first, f"loss {first:.4f} -> {last:.4f} (needs a 90% fall)"


def test_plain_version_is_exactly_the_gcgru_backbone():
    """levels=0, dilation=1 (no layer norm): the module IS a 3-layer GCGRU -- the same keys and
    shapes (strict load both ways), the same outputs and the same gradients, to fp32 roundoff:
    GCGRU shares a state's graph basis between two layers and convolves each step's input
    inside the step, so its products are blocked and summed in another order (measured:
    1.5e-7 on outputs of ~0.6; which bits differ depends on the CPU's MKL code path). A
    different function would differ by orders of magnitude more."""
    ei, ew = _grid()

    def no_call(levels):
        raise AssertionError("levels=0 must not ask for a coarsening")

    torch.manual_seed(0)
    plain = STUNet(num_nodes=N, input_dim=F_IN, output_dim=F_OUT, input_len=T_IN,
                   horizon=T_OUT, edge_index=ei, edge_weight=ew, coarsening=no_call,
                   K=3, hidden_size=HID, levels=0, dilation=1, layer_norm=False)
    torch.manual_seed(1)
    ref = GCGRU(num_nodes=N, input_dim=F_IN, output_dim=F_OUT, input_len=T_IN, horizon=T_OUT,
                edge_index=ei, edge_weight=ew, K=3, hidden_size=HID, num_layers=3)
    sd = plain.state_dict()
    assert {k: v.shape for k, v in sd.items()} == \
        {k: v.shape for k, v in ref.state_dict().items()}
    ref.load_state_dict(sd, strict=True)
    x, y = _batch()
    for tf in (0.0, 1.0):  # free running and fully teacher-forced decoders
        out, want = plain(x, y, tf), ref(x, y, tf)
        torch.testing.assert_close(out, want, rtol=1e-6, atol=1e-6)
    ((plain(x) - y) ** 2).mean().backward()
    ((ref(x) - y) ** 2).mean().backward()
    for (name, p), (_, q) in zip(plain.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_pool_then_unpool_restores_every_node_exactly_once():
    model = _model(levels=2)
    idx = model.stage_membership(0)
    nc = model.stage_nodes[1]
    assert idx.shape == (N,) and nc < N
    eye = torch.eye(N)[:, None, :]  # [N, 1, N]: node i carries one-hot i
    for mode in ("max", "mean"):
        pooled = _pool(eye, idx, model.pool_size_0, mode, nc)  # [Nc, 1, N]
        member = (pooled[:, 0] > 0).long()  # [Nc, N] super-node x node
        # every node lies in exactly one super-node, and the one model.stage_membership names
        assert member.sum(0).tolist() == [1] * N
        assert member.argmax(0).tolist() == idx.tolist()
        back = model._unpool_to(0, pooled, None)[:, 0]  # [N, N]
        assert back.shape == (N, N)
        # row i is its own super-node's content: node i itself is back, with its fellows
        assert (back.diagonal() > 0).all()
        assert torch.equal((back > 0).long(), member[idx])
    # GPA matches pairs: p = 2 levels give super-nodes of 1..4 nodes and ~N/4 of them (Eq. 4)
    sizes = torch.bincount(idx)
    assert sizes.min() >= 1 and sizes.max() <= 4 and nc <= N // 2
    # ordered deconvolution: ranks 0..size-1 within each super-node, each rank once
    rank = model.unpool_rank_0
    for s in range(nc):
        assert sorted(rank[idx == s].tolist()) == list(range(int(sizes[s])))


def test_ordered_deconvolution_maps_each_node_by_its_rank():
    model = _model(levels=2, unpool="weighted")
    unpool = model.enc_unpool[0]
    with torch.no_grad():
        unpool.weight.normal_()
        unpool.bias.normal_()
    nc = model.stage_nodes[1]
    x = torch.randn(nc, 3, 2, HID)  # [N_coarse, T, B, H]
    y = model._unpool_to(0, x, model.enc_unpool)  # [N, T, B, H + R]
    idx, rank, struct = model.pool_index_0, model.unpool_rank_0, model.unpool_struct_0
    assert y.shape == (N, 3, 2, HID + 4)
    for i in range(N):
        r = int(rank[i])
        want = x[idx[i]] @ unpool.weight[:, r * HID:(r + 1) * HID] + unpool.bias[r]
        torch.testing.assert_close(y[i, ..., :HID], want)
        assert torch.equal(y[i, ..., HID:], struct[i].expand(3, 2, 4))
    # structural vector: links to fellow members only, scaled to <= 1, at their ranks
    ei, ew = _grid()
    for i in range(N):
        fellows = {int(rank[j]) for j in ei[1][ei[0] == i].tolist() if idx[j] == idx[i]}
        assert set(torch.nonzero(struct[i]).flatten().tolist()) == fellows
    assert float(struct.max()) == 1.0


def test_dilated_layer_follows_eq8():
    """c_t = g(X_t, c_{t-s}): the chain-in-batch run equals a step-by-step reference, also when
    T is not a multiple of s, and its tail is the last s states."""
    torch.manual_seed(0)
    model = _model(levels=0, dilation=3)
    op, op_t = model.graphs[0]()
    cell = GCGRUCell(F_IN, HID, 2)
    seq = torch.randn(N, 7, B, F_IN)  # [N, T=7, B, F]
    out, tail = model._run_layer(cell, op, op_t, seq, 3)
    states = {}
    for t in range(7):
        prev = states.get(t - 3, torch.zeros(N, B, HID))
        states[t] = cell(op, op_t, seq[:, t], prev)
        torch.testing.assert_close(out[:, t], states[t], rtol=1e-5, atol=1e-6)
    for got, t in zip(tail, (4, 5, 6)):
        torch.testing.assert_close(got, states[t], rtol=1e-5, atol=1e-6)
    # an input change at t = 1 reaches only its own chain (t = 1, 4)
    seq2 = seq.clone()
    seq2[:, 1] += 1.0
    out2, _ = model._run_layer(cell, op, op_t, seq2, 3)
    changed = [(out2[:, t] - out[:, t]).abs().max() > 1e-6 for t in range(7)]
    assert changed == [False, True, False, False, True, False, False]


def test_switches_change_parameters_or_outputs_as_expected():
    x, _ = _batch()
    base = _model(levels=2, dilation=2)
    k, h, o, r = 2, HID, F_OUT, 4
    with torch.no_grad():
        ref = base(x)

    def same_weights_output(**params):
        m = _model(seed=5, **params)
        own = m.state_dict()
        # the base's weights wherever the shapes agree (weighted widens the up layers)
        m.load_state_dict({k: v for k, v in base.state_dict().items()
                           if own[k].shape == v.shape}, strict=False)
        with torch.no_grad():
            return m, m(x)

    # levels, dilation and pool act on data only: same parameters, different output
    for params in ({"levels": 1}, {"levels": 2, "dilation": 1}, {"levels": 2, "pool": "mean"}):
        params = {"levels": 2, "dilation": 2} | params
        m, out = same_weights_output(**params)
        assert _nparams(m) == _nparams(base), params
        assert not torch.allclose(out, ref, atol=1e-4), params
    # ordered deconvolution: R = 2^p maps [H, H] + bias per unpool (one per U-stack); it
    # starts at the identity, i.e. at direct copy
    m, out = same_weights_output(levels=2, dilation=2, unpool="ordered")
    assert _nparams(m) - _nparams(base) == 2 * (r * h * h + r * h)
    torch.testing.assert_close(out, ref)
    # weighted: also R structural inputs more for each up layer's input convolution
    m, out = same_weights_output(levels=2, dilation=2, unpool="weighted")
    assert _nparams(m) - _nparams(base) == 2 * (r * h * h + r * h) + 2 * (k * r * 3 * h)
    assert not torch.allclose(out, ref, atol=1e-4)
    # T-UNet vs plain: the skip concatenation (H more inputs per up layer, encoder + decoder)
    # and the final graph convolution instead of a linear layer
    t_unet, plain = _model(levels=0, dilation=2), _model(levels=0, dilation=1)
    assert _nparams(t_unet) - _nparams(plain) == 2 * k * h * 3 * h + (k * h * o - h * o)
    # S-UNet and ST-UNet have T-UNet's parameters; depth=2 adds two GCGRU layers per stack
    assert _nparams(_model(levels=2, dilation=1)) == _nparams(t_unet) == _nparams(base)
    deep = _model(levels=1, dilation=2, depth=2)
    assert len(deep.encoder) == len(deep.decoder) == 5
    assert deep.layer_dilation == [1, 2, 4, 1, 1] and deep.layer_stage == [0, 1, 2, 1, 0]
    assert deep(x).shape == (B, T_OUT, N, F_OUT)


def test_layer_norm_switch_changes_the_output_and_adds_only_gains_and_biases():
    """Sec. 4.2's layer normalisation: per node over the H features of every layer output
    that feeds on (2 D of the encoder's 2 D + 1 layers, all of the decoder's)."""
    x, _ = _batch()
    on, off = _model(levels=2, dilation=2), _model(levels=2, dilation=2, layer_norm=False)
    assert on.layer_norm and not off.layer_norm  # the paper's setting is the default
    assert _nparams(on) - _nparams(off) == (2 + 3) * 2 * HID
    on.load_state_dict(off.state_dict(), strict=False)  # same GCGRU weights
    with torch.no_grad():
        assert not torch.allclose(on(x), off(x), atol=1e-4)
        # each node is normalised on its own: a node's layer output has mean 0, var 1 over H
        h = torch.randn(N, B, HID) * 5 + 3
        z = on.dec_norm[0](h)
        torch.testing.assert_close(z.mean(-1), torch.zeros(N, B), atol=1e-5, rtol=0)
        # and scaling one node's features leaves every other node's normalised output alone
        h2 = h.clone()
        h2[0] *= 7
        torch.testing.assert_close(on.dec_norm[0](h2)[1:], z[1:])
    with pytest.raises(DiststError, match="layer_norm"):
        _model(levels=0, layer_norm="yes")


def test_coarsening_is_asked_once_for_depth_times_levels():
    ei, ew = _grid()
    c = gpa_coarsening(ei, ew, N)
    model = STUNet(num_nodes=N, input_dim=F_IN, output_dim=F_OUT, input_len=T_IN,
                   horizon=T_OUT, edge_index=ei, edge_weight=ew, coarsening=c, K=2,
                   hidden_size=HID, levels=1, depth=2)
    assert c.calls == [2]
    full = gpa_hierarchy(ei.numpy(), ew.numpy(), N, 2)
    assert model.stage_nodes == [N] + [g[2] for g in full.graphs]
    # the composed map of stage 1 -> 2 agrees with GPA's original -> level-2 map
    composed = model.stage_membership(1)[model.stage_membership(0)]
    assert composed.tolist() == full.levels[1].tolist()


def test_bad_settings_are_one_line_errors():
    ei, ew = _grid()
    kw = dict(num_nodes=N, input_dim=F_IN, output_dim=F_OUT, edge_index=ei, edge_weight=ew)
    with pytest.raises(DiststError, match="coarsening.*levels=0"):
        STUNet(**kw, levels=2)
    with pytest.raises(DiststError, match="pool='sum'.*max"):
        STUNet(**kw, levels=0, pool="sum")
    with pytest.raises(DiststError, match="unpool='deconv'.*copy"):
        STUNet(**kw, levels=0, unpool="deconv")
    with pytest.raises(DiststError, match="returned 1 levels, expected 2"):
        STUNet(**kw, levels=2, coarsening=lambda lv: gpa_coarsening(ei, ew, N)(1))
    with pytest.raises(DiststError, match="dilation=0"):
        STUNet(**kw, levels=0, dilation=0)


def test_metr_la_graph_halves_per_level():
    g = read_graph("metr-la", DATA / "metr-la")
    n = g.num_nodes
    torch.manual_seed(0)
    # METR-LA's pickle is directed; the engine symmetrises it for Chebyshev models
    ei, ew = symmetrize(g.edge_index, g.edge_weight, "max", n)
    model = STUNet(num_nodes=n, input_dim=2, output_dim=1, input_len=4, horizon=2,
                   edge_index=ei, edge_weight=ew,
                   coarsening=gpa_coarsening(ei, ew, n),
                   K=3, hidden_size=4, levels=2, dilation=2)
    n1 = model.stage_nodes[1]
    assert n / 4 <= n1 < n / 2  # Eq. 4: N' ~ N / 2^p (unmatched nodes stay single)
    assert torch.bincount(model.stage_membership(0)).max() <= 4
    out = model(torch.randn(1, 4, n, 2))
    assert out.shape == (1, 2, n, 1) and torch.isfinite(out).all()


def test_shard_super_nodes_stay_inside_their_part(tmp_path):
    net = synth_network(num_nodes=30, days=1, seed=3)
    ds = save_network(net, tmp_path / "ds")
    part_of = partition_graph("metis", net.edge_index, net.edge_weight, 30, 2)
    plan = write_plan(ds, part_of, 1, tmp_path / "plan")
    seen_inner = []
    for i in range(2):
        part = open_part(plan, i)
        local = part.network
        n = part.num_local
        allowed = set(part.inner_global.tolist()) | set(part.halo_global.tolist())
        torch.manual_seed(0)
        model = STUNet(num_nodes=n, input_dim=1, output_dim=1, input_len=4, horizon=2,
                       edge_index=local.edge_index, edge_weight=local.edge_weight,
                       out_degree=part.deg, in_degree=part.in_deg,
                       coarsening=gpa_coarsening(local.edge_index, local.edge_weight, n),
                       K=2, hidden_size=4, levels=2, dilation=2)
        idx = model.stage_membership(0).numpy()
        # every level-0 node of the part is in exactly one super-node, none is empty
        assert idx.shape == (n,)
        assert np.bincount(idx, minlength=model.stage_nodes[1]).min() >= 1
        adj = sp.coo_matrix((np.ones(local.num_edges), tuple(local.edge_index)),
                            shape=(n, n)).tocsr()
        for s in range(model.stage_nodes[1]):
            members = np.flatnonzero(idx == s)
            # members are this part's inner + halo nodes only ...
            assert set(part.nodes[members].tolist()) <= allowed
            # ... merged along the part's own edges (GPA contracts matched edges)
            assert connected_components(adj[members][:, members], directed=False)[0] == 1
        seen_inner += part.inner_global.tolist()
        out = model(torch.randn(2, 4, n, 1))
        assert out.shape == (2, 2, n, 1) and torch.isfinite(out).all()
    assert sorted(seen_inner) == list(range(30))
