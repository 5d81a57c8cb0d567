"""Model registry: construction, name/key/type errors."""

import pytest
import torch

from distst.errors import DiststError
from distst.nn import build_model, model_param_defaults, model_param_names
from distst.nn.registry import model_class
from distst.typecheck import fits_type as _accepts

DATA = dict(num_nodes=5, input_dim=3, output_dim=1, input_len=4, horizon=2,
            edge_index=torch.tensor([[0, 1, 2, 3, 1, 2, 3, 4], [1, 2, 3, 4, 0, 1, 2, 3]]),
            edge_weight=torch.ones(8))  # a path, both directions (Chebyshev models need it)


@pytest.mark.parametrize("name", ["ha", "gru", "gcgru"])
def test_every_model_builds_from_the_same_data_kwargs(name):
    model = build_model(name, DATA, {})
    assert isinstance(model, model_class(name))
    assert any(p.requires_grad for p in model.parameters()) == (name != "ha")
    assert model.horizon == 2 and model.input_len == 4


def test_params_are_applied_and_listed():
    model = build_model("gcgru", DATA, {"K": 2, "hidden_size": 7, "num_layers": 1})
    assert (model.K, model.hidden_size, model.num_layers) == (2, 7, 1)
    assert model_param_names("gcgru") == ["K", "hidden_size", "num_layers", "normalization",
                                          "lambda_max", "node_embedding_dim"]
    assert model_param_defaults("gru") == {"hidden_size": 64, "num_layers": 2}
    assert model_param_defaults("ha") == {"weekly": True}
    y = model(torch.randn(2, 4, 5, 3))
    assert y.shape == (2, 2, 5, 1)


def test_unknown_model_lists_choices():
    with pytest.raises(DiststError, match=r"'lstn'.*\['dcrnn', 'gcgru', 'gru', 'ha', "):
        build_model("lstn", DATA, {})


def test_unknown_key_lists_valid_keys():
    with pytest.raises(DiststError, match=r"'hidden'.*\['hidden_size', 'num_layers'\]"):
        build_model("gru", DATA, {"hidden": 3})


@pytest.mark.parametrize("key, value, expected", [
    ("hidden_size", "64", "int"), ("hidden_size", 6.0, "int"), ("num_layers", True, "int"),
    ("normalization", 1, "str"),
])
def test_bad_type_names_key_value_and_type(key, value, expected):
    with pytest.raises(DiststError, match=rf"{key}={value!r}.*expected {expected}"):
        build_model("gcgru", DATA, {key: value})


def test_data_keys_cannot_be_set_in_params():
    with pytest.raises(DiststError, match="derived from the data"):
        build_model("gru", DATA, {"num_nodes": 3})


def test_bad_value_is_a_diststerror():
    with pytest.raises(DiststError, match="normalization"):
        build_model("gcgru", DATA, {"normalization": "lap"})


def test_type_checker_accepts_int_for_float():
    assert _accepts(3, float) and _accepts(3.5, float) and not _accepts(True, float)
    assert _accepts(None, torch.Tensor | None) and not _accepts("x", int)


def test_list_parameters_are_type_checked():
    assert _accepts([64, 8, 4], list[int]) and not _accepts(3, list[int])
    assert not _accepts([64, "8"], list[int])
    with pytest.raises(DiststError, match=r"spatial_widths=3 has type int, expected list of int"):
        build_model("hyperst_lstm_d", {**DATA, "spatial_attrs": torch.randn(5, 2)},
                    {"spatial_widths": 3})


@pytest.mark.parametrize("name,params", [("gcgru", {}), ("dcrnn", {}), ("stunet", {"levels": 0}),
                                         ("himnet", {"graph": "sparse"})])
def test_built_graph_models_keep_the_graph_only_in_their_operators(name, params):
    # the engine's edge tensors must not stay referenced by the model after construction
    model = build_model(name, DATA, params)
    assert model.graph_input is None
    x = torch.randn(2, 4, 5, 3)
    assert model(x).shape == (2, 2, 5, 1)


@pytest.mark.parametrize("name,params,reach,depth", [
    ("gcgru", {}, 1, 2),                       # K = 3: two products per filter
    ("gcgru", {"K": 2}, 1, 1),
    ("gcgru", {"K": 5}, 1, 4),
    ("dcrnn", {}, 1, 2),                       # K = 2 hops of diffusion
    ("stgcn", {"Ks": 4}, 1, 3),
    ("hyperst_gcgru", {"K": 3}, 1, 2),
    ("himnet", {"graph": "sparse", "graph_hops": 3}, 3, 3),
    ("gru", {}, 1, 1),
])
def test_exchange_plans_a_boundary_as_deep_as_a_filter_chains_products(name, params, reach,
                                                                        depth):
    """``boundary_reach``: the least boundary exchange mode can run exactly on (a given plan
    may be that shallow); ``boundary_depth``: the one it plans, where every filter fetches
    once."""
    from distst.config import load_config
    from distst.engine.parallelize import least_halo_hops, plan_halo_hops
    from distst.nn.registry import boundary_depth, boundary_reach

    assert (boundary_reach(name, params), boundary_depth(name, params)) == (reach, depth)
    cfg = load_config(None, ["runtime.mode=exchange", f"model.name={name}",
                             "partition.parts=2", "partition.halo_hops=7"])
    cfg.model.params = dict(params)
    assert (least_halo_hops(cfg), plan_halo_hops(cfg)) == (reach, depth)
