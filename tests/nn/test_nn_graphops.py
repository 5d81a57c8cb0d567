"""Chebyshev operator: sparse recursion vs dense T_k reference vs PyG ChebConv."""

import copy

import pytest
import torch
from nn_helpers import random_graph
from torch_geometric.nn import ChebConv

from distst.errors import DiststError
from distst.nn.layers import graph as graphops
from distst.nn.layers.graph import cheb_features, GraphOperator


@pytest.mark.parametrize("normalization", ["sym", "rw"])
def test_sparse_cheb_features_equal_dense_recursion(normalization):
    n, b, f, K = 12, 3, 4, 4
    ei, ew = random_graph(n, 40)
    op = graphops.cheb_operator(ei, ew, n, normalization)
    x = torch.randn(n, b, f, dtype=torch.float64)  # node-major [N, B, F]
    feats = cheb_features(op.to(torch.float64), None, x, K).view(n, b, K, f)
    basis = graphops.dense_cheb_basis(ei, ew, n, K, normalization)  # [K, N, N]
    for k in range(K):
        want = torch.einsum("ij,jbf->ibf", basis[k], x)
        torch.testing.assert_close(feats[:, :, k], want, atol=1e-10, rtol=0)
    # T_1 = L~ has the documented closed form for sym: -D^-1/2 A D^-1/2, zero diagonal
    if normalization == "sym":
        assert torch.all(basis[1].diagonal() == 0)


@pytest.mark.parametrize("normalization", ["sym", "rw"])
def test_cheb_conv_equals_pyg_chebconv(normalization):
    n, b, fin, fout, K = 12, 4, 3, 5, 3
    ei, ew = random_graph(n, 40, seed=1)
    conv = ChebConv(fin, fout, K, normalization=normalization)
    torch.nn.init.normal_(conv.bias)
    x = torch.randn(b, n, fin)
    # PyG: disjoint copies, [B*N, F]
    offs = (torch.arange(b) * n).repeat_interleave(ei.shape[1])
    bei, bew = ei.repeat(1, b) + offs, ew.repeat(b)
    want = conv(x.reshape(b * n, fin), bei, bew, lambda_max=2.0).view(b, n, fout)
    op = GraphOperator(ei, ew, n, normalization)
    a, a_t = op()
    w = torch.cat([lin.weight.T for lin in conv.lins], dim=0)  # [K*Fin, Fout]
    feats = cheb_features(a, a_t, x.transpose(0, 1).contiguous(), K)  # [N*B, K*Fin]
    got = (feats @ w + conv.bias).view(n, b, fout).transpose(0, 1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_backward_through_sparse_product_matches_dense():
    n, K = 12, 3
    ei, ew = random_graph(n, 40, seed=2)
    a, a_t = GraphOperator(ei, ew, n, "sym")()
    x = torch.randn(n, 2, 3, requires_grad=True)
    g = torch.randn(n * 2, K * 3)
    (cheb_features(a, a_t, x, K) * g).sum().backward()
    basis = graphops.dense_cheb_basis(ei, ew, n, K, dtype=torch.float32)
    x2 = x.detach().clone().requires_grad_(True)
    dense = torch.stack([torch.einsum("ij,jbf->ibf", basis[k], x2) for k in range(K)], dim=2)
    (dense.reshape(n * 2, K * 3) * g).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-5, rtol=0)


def test_operator_buffers_are_non_persistent_and_copyable():
    ei, ew = random_graph(12, 40)
    mod = GraphOperator(ei, ew, 12, "sym")
    assert mod.state_dict() == {}  # never saved, never DDP-broadcast
    assert len(list(mod.buffers())) == 6
    clone = copy.deepcopy(mod)
    torch.testing.assert_close(clone()[0].to_dense(), mod()[0].to_dense())
    assert mod.double()()[0].dtype == torch.float64


def test_unweighted_graph_and_numpy_input():
    ei = torch.tensor([[0, 1, 2], [1, 2, 0]])
    a = graphops.cheb_operator(ei.numpy(), None, 3).to_dense()
    # each node has out-degree 1 -> L~[dst, src] = -1
    assert a[1, 0] == -1 and a[2, 1] == -1 and a[0, 2] == -1 and a.abs().sum() == 3


@pytest.mark.parametrize("kwargs, match", [
    (dict(edge_index=torch.tensor([[0, 5]]).T, edge_weight=None), "node ids"),
    (dict(edge_index=torch.tensor([[0, 1, 2]]), edge_weight=None), r"\[2, E\]"),
    (dict(edge_index=torch.tensor([[0], [1]]), edge_weight=torch.tensor([-1.0])), ">= 0"),
    (dict(edge_index=torch.tensor([[0], [1]]), edge_weight=torch.ones(2)), "one per edge"),
    (dict(edge_index=None, edge_weight=None), "gru, ha"),
])
def test_bad_graph_errors(kwargs, match):
    with pytest.raises(DiststError, match=match):
        graphops.cheb_operator(num_nodes=3, **kwargs)


def test_bad_normalization():
    with pytest.raises(DiststError, match="sym"):
        graphops.cheb_operator(torch.tensor([[0], [1]]), None, 2, normalization="lap")


def test_none_normalization_takes_precomputed_sym_weights():
    # a shard passes D^-1/2 A D^-1/2 computed on the whole graph: "none" must rebuild L~ as is
    import torch

    from distst.nn.layers.graph import cheb_operator

    ei = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    ew = torch.tensor([1.0, 1.0, 2.0, 2.0, 0.5, 0.5])
    deg = torch.zeros(4).index_add_(0, ei[0], ew)
    sym = deg.pow(-0.5)[ei[0]] * ew * deg.pow(-0.5)[ei[1]]
    full = cheb_operator(ei, ew, 4, "sym").to_dense()
    pre = cheb_operator(ei, sym, 4, "none").to_dense()
    assert torch.allclose(full, pre)
    # restricted to nodes {0, 1, 2}: rows of inner nodes 0 and 1 keep their full-graph entries
    keep = (ei < 3).all(0)
    part = cheb_operator(ei[:, keep], sym[keep], 3, "none").to_dense()
    assert torch.allclose(part[:2], full[:2, :3])
