"""Finite receptive field: a stack of L Chebyshev convolutions of order K reaches L*(K-1)
hops, so with a halo at least that deep the inner nodes of every shard compute exactly the
full-graph outputs (the plan's weights are normalised on the whole graph before slicing)."""

import numpy as np
import pytest
import torch

from distst.data.network import save_network
from distst.data.synth import synth_network
from distst.graph.partition.plan import make_plan, open_part
from distst.nn.layers.graph import cheb_features
from distst.nn.layers.graph import cheb_operator

L_LAYERS, K, F = 2, 3, 4


def _stack(op, x, weights):
    # x: [N, M, F] node-major, as the GCGRU cell keeps it
    for w in weights:
        n, m, _ = x.shape
        x = torch.tanh(cheb_features(op, None, x, K) @ w).view(n, m, F)
    return x


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("exact") / "data"
    save_network(synth_network(num_nodes=40, days=1, seed=3), d)
    return d


@pytest.mark.parametrize("method,order", [("metis", "ascending"), ("gpa", "ascending"),
                                          ("metis", "rcm")])
def test_inner_outputs_equal_full_graph_with_deep_enough_halo(dataset, tmp_path, method, order):
    from distst.data.network import load_network

    torch.manual_seed(0)
    net = load_network(dataset)
    n = net.num_nodes
    weights = [torch.randn(K * F, F) * 0.5 for _ in range(L_LAYERS)]
    x = torch.randn(n, 5, F)
    full = _stack(cheb_operator(net.edge_index, net.edge_weight, n, "sym"), x, weights)

    def shard_outputs(hops):
        plan, _, _ = make_plan(dataset, tmp_path / f"plan-{method}-{hops}", method=method,
                               parts=3, halo_hops=hops, order=order)
        worst = 0.0
        for i in range(3):
            part = open_part(plan, i)
            op = cheb_operator(part.network.edge_index, part.network.edge_weight,
                               part.num_local, "sym", degree=part.deg)
            local = _stack(op, x[torch.as_tensor(part.nodes)], weights)
            inner = torch.as_tensor(part.nodes[: part.num_inner])
            worst = max(worst, float((local[: part.num_inner] - full[inner]).abs().max()))
        return worst

    assert shard_outputs(L_LAYERS * (K - 1)) < 1e-5
    # one hop short of the receptive field: boundary nodes must differ, or the test is blind
    assert shard_outputs(L_LAYERS * (K - 1) - 1) > 1e-4


def test_diffusion_convolution_is_exact_on_a_directed_graph(tmp_path):
    """DCRNN's forward walk reads OUT-neighbours and its backward walk IN-neighbours: with
    halos grown over both directions and whole-graph degrees, K diffusion steps are exact
    for inner nodes with K halo hops on a directed graph, and not with K - 1."""
    from distst.data.network import load_network
    from distst.nn.layers.diffusion import diffusion_features, DiffusionOperators

    net = synth_network(num_nodes=40, days=1, seed=5)
    rng = np.random.default_rng(0)
    keep = rng.random(net.num_edges) < 0.6  # drop reverse edges at random: a directed graph
    net.edge_index, net.edge_weight = net.edge_index[:, keep], net.edge_weight[keep]
    d = save_network(net, tmp_path / "directed")
    net = load_network(d)
    n, kd = net.num_nodes, 2
    x = torch.randn(n, 3, F)
    full_ops = DiffusionOperators(torch.as_tensor(net.edge_index), torch.as_tensor(net.edge_weight), n)()
    full = diffusion_features(full_ops, x, kd).view(n, 3, -1)

    def worst(hops):
        plan, _, _ = make_plan(d, tmp_path / f"plan-{hops}", method="metis", parts=3,
                               halo_hops=hops)
        err = 0.0
        for i in range(3):
            part = open_part(plan, i)
            pn = part.network
            ops = DiffusionOperators(torch.as_tensor(pn.edge_index), torch.as_tensor(pn.edge_weight),
                                     part.num_local, out_degree=torch.as_tensor(part.deg),
                                     in_degree=torch.as_tensor(part.in_deg))()
            local = diffusion_features(ops, x[torch.as_tensor(part.nodes)], kd).view(part.num_local, 3, -1)
            inner = torch.as_tensor(part.nodes[: part.num_inner])
            err = max(err, float((local[: part.num_inner] - full[inner]).abs().max()))
        return err

    assert worst(kd) < 1e-5
    assert worst(kd - 1) > 1e-4


@pytest.mark.parametrize("how", ["max", "sum"])
def test_chebyshev_models_get_the_symmetrised_whole_graph_operator_on_shards(tmp_path, how):
    """On a directed graph the engine hands Chebyshev models the symmetrised edges; a shard's
    inner rows of L~ (built with the plan's whole-graph symmetrised degrees) equal the whole
    graph's, for both symmetrisation rules, with lambda_max = 'exact' taken from the driver."""
    from distst.config import Config
    from distst.data.network import load_network
    from distst.engine.bundle import build_bundle
    from distst.engine.entry import graph_constants
    from distst.graph.partition.plan import open_part
    from distst.nn.registry import build_model

    net = synth_network(num_nodes=40, days=2, seed=5)
    rng = np.random.default_rng(1)
    keep = rng.random(net.num_edges) < 0.6  # a directed graph with one-way edges
    net.edge_index, net.edge_weight = net.edge_index[:, keep], net.edge_weight[keep]
    d = save_network(net, tmp_path / "directed")
    cfg = Config()
    cfg.data.symmetrize = how
    cfg.model.name = "gcgru"
    cfg.model.params = {"hidden_size": 4, "num_layers": 1, "lambda_max": "exact"}
    whole = build_bundle(cfg.data, d)
    model = build_model("gcgru", whole.kwargs_for_model("gcgru"), dict(cfg.model.params))
    full = model.graph()[0].to_dense()
    constants = graph_constants(cfg, whole)
    from distst.graph.adjacency import laplacian_lambda_max

    # the driver's value is the WHOLE symmetrised graph's, under the configured rule
    assert constants["lambda_max"] == pytest.approx(
        laplacian_lambda_max(net.edge_index, net.edge_weight, net.num_nodes, how), abs=1e-9)
    plan, _, _ = make_plan(d, tmp_path / "plan", method="metis", parts=3, halo_hops=1)
    n = load_network(d).num_nodes
    for i in range(3):
        part = build_bundle(cfg.data, d, part=open_part(plan, i),
                            lambda_max=constants["lambda_max"])
        local = build_model("gcgru", part.kwargs_for_model("gcgru"), dict(cfg.model.params))
        op = local.graph()[0].to_dense()
        ids = torch.as_tensor(part.owned.global_ids)
        inner = part.owned.num_inner
        # rows of inner nodes, columns of every local node: the whole graph's entries
        np.testing.assert_allclose(op[:inner].numpy(), full[ids[:inner]][:, ids].numpy(),
                                   atol=1e-6)
        # and nothing of an inner row lies outside the part
        outside = torch.ones(n, dtype=torch.bool)
        outside[ids] = False
        assert float(full[ids[:inner]][:, outside].abs().sum()) == 0.0
    # without the driver's value a shard refuses 'exact' instead of guessing
    part = build_bundle(cfg.data, d, part=open_part(plan, 0))
    from distst.errors import DiststError

    with pytest.raises(DiststError, match="WHOLE graph"):
        build_model("gcgru", part.kwargs_for_model("gcgru"), dict(cfg.model.params))
