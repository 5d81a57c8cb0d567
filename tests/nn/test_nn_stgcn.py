"""STGCN (Yu, Yin, Zhu 2018): shapes, gradients, overfitting, equivariance, graph conv vs dense
Chebyshev reference, shard exactness with whole-graph degrees, parameter count, errors."""

import pytest
import torch
from nn_helpers import permute_graph, random_graph

from distst.errors import DiststError
from distst.nn.layers import graph as graphops
from distst.nn.registry import build_model
from distst.nn.layers.graph import GraphOperator
from distst.nn.stgcn import STGCN, ChebConv

SMALL = dict(channels=[8, 4, 8], output_hidden=16)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: intra-op threads only add synchronisation cost (10x on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(n=10, seed=0, **kw):
    torch.manual_seed(seed)
    ei, ew = random_graph(n, 3 * n, seed=seed)
    args = dict(num_nodes=n, input_dim=2, output_dim=1, input_len=12, horizon=3,
                edge_index=ei, edge_weight=ew, **SMALL)
    args.update(kw)
    return STGCN(**args), ei, ew


def test_shape_backward_all_grads():
    m, _, _ = _model()
    x = torch.randn(4, 12, 10, 2)
    y = m(x)
    assert y.shape == (4, 3, 10, 1)
    y.pow(2).mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # targets / teacher forcing are validated but ignored (not a seq2seq model)
    with torch.no_grad():
        y2 = m(x, targets=torch.randn(4, 3, 10, 1), teacher_forcing=0.5)
    torch.testing.assert_close(y2, y.detach())
    with pytest.raises(DiststError, match="targets"):
        m(x, targets=None, teacher_forcing=0.5)


def test_overfits_a_fixed_batch():
    m, _, _ = _model(n=8, seed=1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 12, 8, 2, generator=g)
    y = torch.randn(4, 3, 8, 1, generator=g)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    first = None
    for _ in range(200):
        opt.zero_grad()
        loss = (m(x) - y).abs().mean()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.1 * first


def test_node_permutation_equivariance():
    n = 10
    m, ei, ew = _model(n=n, seed=2)
    m.eval()
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(5))
    m2 = STGCN(num_nodes=n, input_dim=2, output_dim=1, input_len=12, horizon=3,
               edge_index=permute_graph(ei, perm), edge_weight=ew, **SMALL)
    m2.load_state_dict(m.state_dict())
    m2.eval()
    x = torch.randn(3, 12, n, 2)
    with torch.no_grad():
        torch.testing.assert_close(m2(x[:, :, perm]), m(x)[:, :, perm], atol=1e-5, rtol=1e-4)


def test_too_short_input_len_is_a_clear_error():
    with pytest.raises(DiststError, match=r"input_len=8 is too short.*>= 9"):
        _model(input_len=8)
    with pytest.raises(DiststError, match=r"input_len=4 is too short.*>= 5"):
        _model(input_len=4, Kt=2, num_blocks=2)  # 2 blocks x 2*(Kt-1) = 4 steps consumed
    assert _model(input_len=5, Kt=2, num_blocks=2)[0].out_steps == 1
    m, _, _ = _model(input_len=9)  # the minimum with the defaults: one step reaches the output
    assert m(torch.randn(1, 9, 10, 2)).shape == (1, 3, 10, 1)
    with pytest.raises(DiststError, match="channels"):
        _model(channels=[8, 8])
    with pytest.raises(DiststError, match="Kt=0"):
        _model(Kt=0)


@pytest.mark.parametrize("c_in,c_out", [(3, 5), (6, 2)])  # expand path / Clenshaw path
@pytest.mark.parametrize("K", [1, 2, 3, 4])
def test_graph_conv_equals_dense_cheb_reference(c_in, c_out, K):
    n, m = 11, 4
    ei, ew = random_graph(n, 35, seed=K)
    op, op_t = GraphOperator(ei, ew, n, "sym")()
    conv = ChebConv(c_in, c_out, K).double()
    torch.nn.init.normal_(conv.bias)
    x = torch.randn(n, m, c_in, dtype=torch.float64, requires_grad=True)
    got = conv(op.double(), op_t.double(), x)
    basis = graphops.dense_cheb_basis(ei, ew, n, K)  # [K, N, N]
    theta = conv.weight.view(K, c_in, c_out)
    want = sum(torch.einsum("ij,jmc,cd->imd", basis[k], x, theta[k]) for k in range(K))
    want = want + conv.bias
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    # gradient through the precomputed transpose equals autograd through the dense reference
    g = torch.randn_like(want)
    (gx,) = torch.autograd.grad((got * g).sum(), x)
    (gx_ref,) = torch.autograd.grad((want * g).sum(), x)
    torch.testing.assert_close(gx, gx_ref, atol=1e-10, rtol=0)


def test_shard_with_whole_graph_degrees_matches_full_graph():
    """Inner nodes of a shard with a 4-hop halo (2 blocks x (Ks-1) hops) get the full-graph
    output when the model is given the whole-graph out-degrees."""
    n = 30
    g = torch.Generator().manual_seed(3)
    # an undirected ring with random chords: every node has neighbours
    src = torch.cat([torch.arange(n), torch.randint(0, n, (10,), generator=g)])
    dst = torch.cat([(torch.arange(n) + 1) % n, torch.randint(0, n, (10,), generator=g)])
    ei = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)
    ew = torch.rand(ei.shape[1], generator=g) + 0.5
    ew = torch.cat([ew[: ei.shape[1] // 2]] * 2)  # symmetric weights
    torch.manual_seed(0)
    full = STGCN(num_nodes=n, input_dim=2, output_dim=1, horizon=3, edge_index=ei,
                 edge_weight=ew, **SMALL).eval()
    inner = torch.tensor([0, 1, 2, 3])
    local, frontier = set(inner.tolist()), set(inner.tolist())
    for _ in range(4):  # 4-hop halo
        frontier = {int(s) for s, d in ei.T.tolist() if d in frontier} - local
        local |= frontier
    local = inner.tolist() + sorted(local - set(inner.tolist()))
    idx = torch.tensor(local)
    remap = torch.full((n,), -1)
    remap[idx] = torch.arange(len(local))
    keep = (remap[ei[0]] >= 0) & (remap[ei[1]] >= 0)
    deg = torch.zeros(n, dtype=torch.float64).index_add_(0, ei[0], ew.double())
    shard = STGCN(num_nodes=len(local), input_dim=2, output_dim=1, horizon=3,
                  edge_index=remap[ei[:, keep]], edge_weight=ew[keep], out_degree=deg[idx],
                  **SMALL).eval()
    shard.load_state_dict(full.state_dict())
    assert len(local) < n  # the shard really is partial
    x = torch.randn(2, 12, n, 2)
    with torch.no_grad():
        want = full(x)[:, :, inner]
        got = shard(x[:, :, idx])[:, :, : len(inner)]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_parameter_count_and_registry():
    ei, ew = random_graph(10, 30)
    m = build_model("stgcn", dict(num_nodes=10, input_dim=2, output_dim=1, input_len=12,
                                  horizon=12, edge_index=ei, edge_weight=ew,
                                  out_degree=None, spatial_attrs=None), {})
    assert isinstance(m, STGCN) and any(p.requires_grad for p in m.parameters())
    # block 1: GLU 3*2->2*64 (896), cheb 3*64x16+16 (3088), align 64->16 (1040),
    #          GLU 3*16->2*64 (6272), LN 64 (128)
    # block 2: GLU 3*64->2*64 (24704), 3088, 1040, 6272, 128
    # output:  GLU 4*64->2*128 (65792), LN 128 (256), 128->128 (16512), 128->12 (1548)
    want = (896 + 3088 + 1040 + 6272 + 128) + (24704 + 3088 + 1040 + 6272 + 128) \
        + (65792 + 256 + 16512 + 1548)
    assert sum(p.numel() for p in m.parameters()) == want == 130764
    # no per-node parameters: the count does not depend on N
    m2, _, _ = _model(n=20, horizon=12, channels=[64, 16, 64], output_hidden=128)
    assert sum(p.numel() for p in m2.parameters()) == want
