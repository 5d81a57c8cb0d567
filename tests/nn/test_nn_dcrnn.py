"""DCRNN (Li et al. 2018): diffusion convolution vs a dense reference, the DCGRU cell vs a
hand-written step, shard-mode degree override, and the model's contract."""

import copy
import math
from pathlib import Path

import pytest
import torch
from nn_helpers import permute_graph, random_digraph

from distst.config import read_yaml
from distst.errors import DiststError
from distst.nn import build_model
from distst.nn.dcrnn import DCRNN
from distst.nn.layers.cells import DCGRUCell
from distst.nn.layers.diffusion import diffusion_features, DiffusionOperators
from distst.nn.layers.graph import random_walk_operator_coo

N, B, T_IN, HOR, F_IN, F_OUT = 8, 4, 6, 4, 3, 2


def dense_w(ei, ew, n):
    """Dense ``W [N, N]``, ``W[i, j]`` = summed weight of the edges i -> j (self loops kept)."""
    w = torch.zeros(n, n, dtype=torch.float64)
    w.index_put_((ei[0], ei[1]), ew.double(), accumulate=True)
    return w


def dense_transitions(ei, ew, n):
    """Explicit ``P_f = D_O^-1 W`` and ``P_b = D_I^-1 W^T`` (DCRNN Eq. 2), zero rows for
    nodes without edges in that direction."""
    w = dense_w(ei, ew, n)

    def rownorm(m):
        d = m.sum(1, keepdim=True)
        return torch.where(d > 0, m / d.clamp_min(1e-300), torch.zeros_like(m))

    return rownorm(w), rownorm(w.T)


def make(ei, ew, **kw):
    data = dict(num_nodes=N, input_dim=F_IN, output_dim=F_OUT, input_len=T_IN, horizon=HOR,
                edge_index=ei, edge_weight=ew)
    return DCRNN(**{**data, **kw})


@pytest.fixture
def graph():
    return random_digraph(N, 24, seed=3)


def test_transition_matrices_equal_explicit_degree_normalisation():
    n = 9
    ei, ew = random_digraph(n, 30, seed=1)  # duplicate edge, self loop at 2, isolated node 8
    pf_ref, pb_ref = dense_transitions(ei, ew, n)
    pf = random_walk_operator_coo(ei, ew, n, "forward").to_dense().double()
    pb = random_walk_operator_coo(ei, ew, n, "backward").to_dense().double()
    torch.testing.assert_close(pf, pf_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(pb, pb_ref, atol=1e-6, rtol=0)
    # rows are probability distributions (the isolated node's row is empty)
    for p in (pf, pb):
        sums = p.sum(1)
        assert sums[n - 1] == 0
        nonzero = sums[sums > 0]
        torch.testing.assert_close(nonzero, torch.ones_like(nonzero), atol=1e-6, rtol=0)
    assert pf[2, 2] > 0  # the self loop stays in W, as in DCRNN
    with pytest.raises(DiststError, match="direction"):
        random_walk_operator_coo(ei, ew, n, "sideways")


@pytest.mark.parametrize("K, filter_type", [(2, "dual_random_walk"), (3, "dual_random_walk"),
                                            (2, "random_walk")])
def test_diffusion_convolution_equals_dense_reference(K, filter_type):
    """sum_{k=0..K} (theta_k1 P_f^k + theta_k2 P_b^k) X with explicit matrix powers."""
    torch.manual_seed(0)
    n, m, f, out = 11, 3, 4, 5
    ei, ew = random_digraph(n, 40, seed=2)
    dirs = ("forward", "backward") if filter_type == "dual_random_walk" else ("forward",)
    supports = DiffusionOperators(ei, ew, n, dirs)()
    x = torch.randn(n, m, f)
    feats = diffusion_features(supports, x, K)  # [N*M, J*F]
    j = 1 + len(dirs) * K
    assert feats.shape == (n * m, j * f)
    theta = torch.randn(j, f, out, dtype=torch.float64)
    got = (feats.double() @ theta.view(j * f, out)).view(n, m, out)

    pf, pb = dense_transitions(ei, ew, n)
    xd = x.double()
    want = torch.einsum("nmf,fo->nmo", xd, theta[0])  # k = 0, counted once
    for d, p in enumerate([pf, pb][:len(dirs)]):
        for k in range(1, K + 1):
            pk = torch.linalg.matrix_power(p, k)
            want = want + torch.einsum("ij,jmf,fo->imo", pk, xd, theta[1 + d * K + k - 1])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_dcgru_cell_equals_a_hand_written_step():
    """DCRNN Eq. (4) written out densely on the concatenation [X, H] with one Theta per conv."""
    torch.manual_seed(1)
    n, b, fin, hs, K = 10, 3, 2, 5, 2
    ei, ew = random_digraph(n, 30, seed=4)
    cell = DCGRUCell(fin, hs, K, 2)
    with torch.no_grad():
        cell.bias.normal_()
    supports = DiffusionOperators(ei, ew, n)()
    x, h = torch.randn(n, b, fin), torch.randn(n, b, hs)
    got = cell(supports, x, h)

    pf, pb = dense_transitions(ei, ew, n)
    mats = [torch.eye(n, dtype=torch.float64)]
    mats += [torch.linalg.matrix_power(pf, k) for k in range(1, K + 1)]
    mats += [torch.linalg.matrix_power(pb, k) for k in range(1, K + 1)]
    j = len(mats)
    w_x = cell.weight_x.detach().double().view(j, fin, 3 * hs)
    w_ru = cell.weight_hru.detach().double().view(j, hs, 2 * hs)
    w_c = cell.weight_hc.detach().double().view(j, hs, hs)
    bias = cell.bias.detach().double()
    # the paper's Theta over the concatenation [X, H]: per block, input rows then state rows
    theta_ru = torch.cat([w_x[:, :, :2 * hs], w_ru], dim=1)  # [J, F+H, 2H]
    theta_c = torch.cat([w_x[:, :, 2 * hs:], w_c], dim=1)  # [J, F+H, H]

    def gconv(sig, theta):  # sig [N, B, C]
        return sum(torch.einsum("ij,jbc,co->ibo", mats[k], sig, theta[k]) for k in range(j))

    xd, hd = x.double(), h.double()
    ru = torch.sigmoid(gconv(torch.cat([xd, hd], -1), theta_ru) + bias[:2 * hs])
    r, u = ru[..., :hs], ru[..., hs:]
    c = torch.tanh(gconv(torch.cat([xd, r * hd], -1), theta_c) + bias[2 * hs:])
    want = u * hd + (1 - u) * c
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)

    # the HyperST hooks: per-node channel scales after each convolution, before the bias
    z_ru, z_c = torch.rand(n, 2 * hs) + 0.5, torch.rand(n, hs) + 0.5
    got_s = cell(supports, x, h, z_ru, z_c)
    ru = torch.sigmoid(z_ru.double()[:, None] * gconv(torch.cat([xd, hd], -1), theta_ru)
                       + bias[:2 * hs])
    r, u = ru[..., :hs], ru[..., hs:]
    c = torch.tanh(z_c.double()[:, None] * gconv(torch.cat([xd, r * hd], -1), theta_c)
                   + bias[2 * hs:])
    torch.testing.assert_close(got_s.double(), u * hd + (1 - u) * c, atol=1e-5, rtol=0)


def test_init_follows_the_authors_code():
    cell = DCGRUCell(3, 4, 2, 2)
    assert torch.equal(cell.bias[:8], torch.ones(8)) and torch.equal(cell.bias[8:], torch.zeros(4))
    bound = math.sqrt(6.0 / (5 * (3 + 4) + 8))  # Glorot over the gate conv's whole Theta
    assert cell.weight_hru.abs().max() <= bound and cell.weight_x[:, :8].abs().max() <= bound


def test_whole_graph_degrees_reproduce_full_rows_for_interior_nodes():
    """Shard mode: the local operator with whole-graph degrees equals the full operator on the
    rows of nodes whose in- and out-neighbours are all local."""
    n = 16
    ei, ew = random_digraph(n, 30, seed=7)
    local = torch.arange(0, 10)  # local nodes 0..9 (inner + halo), kept in order
    keep = (ei < 10).all(0)
    lei, lew = ei[:, keep], ew[keep]
    w = dense_w(ei, ew, n)
    no_loop = w - torch.diag(torch.diag(w))
    out_deg, in_deg = no_loop.sum(1), no_loop.sum(0)  # data contract: self loops excluded
    nbrs = (w + w.T) > 0
    interior = [i for i in range(10) if not nbrs[i, 10:].any()]
    boundary = [i for i in range(10) if nbrs[i, 10:].any()]
    assert interior and boundary
    for direction, deg in (("forward", out_deg), ("backward", in_deg)):
        full = random_walk_operator_coo(ei, ew, n, direction).to_dense()
        part = random_walk_operator_coo(lei, lew, 10, direction, degree=deg[local]).to_dense()
        naive = random_walk_operator_coo(lei, lew, 10, direction).to_dense()
        torch.testing.assert_close(part[interior], full[interior][:, :10], atol=1e-7, rtol=0)
        # without the override, boundary rows are re-normalised over the local edges only
        has_cut = [i for i in boundary if (naive[i] - full[i, :10]).abs().max() > 1e-4]
        assert has_cut, direction
    with pytest.raises(DiststError, match=r"out_degree has shape \[3\]"):
        random_walk_operator_coo(lei, lew, 10, "forward", degree=torch.ones(3))
    # the model passes the degrees on: a shard-local DCRNN equals itself built with the
    # operator it should have, and differs from one normalised over the local edges only
    torch.manual_seed(0)
    kw = dict(num_nodes=10, input_dim=1, output_dim=1, input_len=2, horizon=1,
              edge_index=lei, edge_weight=lew, hidden_size=4)
    m_deg = DCRNN(**kw, out_degree=out_deg[local], in_degree=in_deg[local])
    m_naive = DCRNN(**kw)
    m_naive.load_state_dict(m_deg.state_dict())
    xx = torch.randn(2, 2, 10, 1)
    with torch.no_grad():
        assert (m_deg(xx) - m_naive(xx)).abs().max() > 1e-6


def test_shape_and_every_parameter_gets_a_gradient(graph):
    torch.manual_seed(0)
    model = make(*graph, hidden_size=8)
    y = model(torch.randn(B, T_IN, N, F_IN))
    assert y.shape == (B, HOR, N, F_OUT) and any(p.requires_grad for p in model.parameters())
    y.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        assert p.shape[0] != N or name.endswith("bias"), f"per-node parameter {name}"


def test_parameter_count_matches_the_paper_layout(graph):
    """Per DCGRU cell: Theta_ru [(1+2K)(F+H), 2H], Theta_C [(1+2K)(F+H), H], 3H biases."""
    K, h = 2, 64
    model = make(*graph)  # paper defaults: K=2, 2 x 64, dual random walk
    assert (model.K, model.hidden_size, model.num_layers) == (2, 64, 2)

    def cell(f):
        return (1 + 2 * K) * (f + h) * 3 * h + 3 * h

    want = cell(F_IN) + cell(h) + cell(F_OUT) + cell(h) + h * F_OUT + F_OUT
    assert sum(p.numel() for p in model.parameters()) == want


def test_node_permutation_equivariance(graph):
    torch.manual_seed(1)
    ei, ew = graph
    model = make(ei, ew, hidden_size=8).eval()
    perm = torch.randperm(N)
    permuted = make(permute_graph(ei, perm), ew, hidden_size=8).eval()
    permuted.load_state_dict(model.state_dict())
    x = torch.randn(B, T_IN, N, F_IN)
    with torch.no_grad():
        torch.testing.assert_close(permuted(x[:, :, perm]), model(x)[:, :, perm],
                                   atol=1e-5, rtol=0)


def test_overfits_a_tiny_batch(graph):
    torch.manual_seed(3)
    t = torch.arange(T_IN + HOR, dtype=torch.float32)
    phase = torch.rand(B, 1, N, 1) * 2 * math.pi
    freq = 0.3 + 0.4 * torch.rand(B, 1, N, 1)
    wave = torch.sin(freq * t[None, :, None, None] + phase)  # [B, T_IN+HOR, N, 1]
    series = torch.cat([wave, 0.5 * wave.roll(1, dims=1)], dim=-1)  # [B, T, N, 2]
    x = torch.cat([series[:, :T_IN], torch.rand(B, T_IN, N, 1)], dim=-1)
    y = series[:, T_IN:]
    model = make(*graph, hidden_size=16, num_layers=1)  # one layer: a quick test
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


def test_scheduled_sampling_and_input_checks(graph):
    torch.manual_seed(4)
    model = make(*graph, hidden_size=8)
    x, y = torch.randn(B, T_IN, N, F_IN), torch.randn(B, HOR, N, F_OUT)
    with torch.no_grad():
        free = model(x)
        torch.testing.assert_close(model(x, targets=y, teacher_forcing=0.0), free)
        forced = model(x, targets=y, teacher_forcing=1.0)
        torch.testing.assert_close(forced[:, 0], free[:, 0])  # step 0 sees the GO symbol
        assert (forced[:, 1:] - free[:, 1:]).abs().max() > 1e-4
        y_nan = y.clone()
        y_nan[:, :, 0] = float("nan")
        assert torch.isfinite(model(x, targets=y_nan, teacher_forcing=1.0)).all()
    with pytest.raises(DiststError, match="needs targets"):
        model(x, teacher_forcing=0.5)
    with pytest.raises(DiststError, match="built for"):
        model(torch.randn(B, T_IN + 1, N, F_IN))


def test_graph_is_data_not_state_and_model_deep_copies(graph):
    model = make(*graph, hidden_size=4)
    assert all(k.split(".")[0] in ("encoder", "decoder", "proj") for k in model.state_dict())
    x = torch.randn(B, T_IN, N, F_IN)
    with torch.no_grad():
        torch.testing.assert_close(copy.deepcopy(model)(x), model(x))


@pytest.mark.parametrize("params, match", [
    ({"K": 0}, "K=0"), ({"hidden_size": 0}, "hidden_size=0"), ({"num_layers": 0}, "num_layers"),
    ({"filter_type": "laplacian"}, r"filter_type='laplacian'.*dual_random_walk.*gcgru"),
])
def test_bad_hyperparameters_name_the_key(graph, params, match):
    with pytest.raises(DiststError, match=match):
        make(*graph, **params)


def test_needs_a_graph():
    with pytest.raises(DiststError, match="graph"):
        make(None, None)


def test_preset_builds_through_the_registry(graph):
    preset = read_yaml(Path(__file__).parents[2] / "configs/models/dcrnn.yaml")
    assert preset["model"]["name"] == "dcrnn"
    ei, ew = graph
    data = dict(num_nodes=N, input_dim=F_IN, output_dim=F_OUT, input_len=T_IN, horizon=HOR,
                edge_index=ei, edge_weight=ew, spatial_attrs=None, coords=None,
                out_degree=None, in_degree=None)
    model = build_model("dcrnn", data, preset["model"]["params"])
    assert isinstance(model, DCRNN) and (model.K, model.hidden_size) == (2, 64)
    assert model.filter_type == "dual_random_walk"
