"""Model registry: name -> class, and checked construction from a config's ``params``.

Every model takes keyword-only arguments: the data-derived ``DATA_KEYS`` (passed by the engine,
the same dict for every model; keys a model does not declare are not passed) plus its own
hyperparameters, which are checked against the constructor's annotations.
"""

from __future__ import annotations

import inspect
import types
import typing

import importlib

from torch import nn

from distst.errors import DiststError

#: model name -> "module:Class"; imported on first use so that one model's import cost (or
#: a broken optional model) never touches runs of another.
MODELS: dict[str, str] = {
    "ha": "distst.nn.ha:HistoricalAverage",
    "gru": "distst.nn.gru:GRUSeq2Seq",
    "lstm": "distst.nn.lstm:LSTMSeq2Seq",
    "gcgru": "distst.nn.gcgru:GCGRU",
    "dcrnn": "distst.nn.dcrnn:DCRNN",
    "stgcn": "distst.nn.stgcn:STGCN",
    "hyperst_lstm_g": "distst.nn.hyperst_lstm:HyperSTLSTMG",
    "hyperst_lstm_d": "distst.nn.hyperst_lstm:HyperSTLSTMD",
    "hyperst_gcgru": "distst.nn.hyperst_rnn:HyperSTGCGRU",
    "hyperst_dcgru": "distst.nn.hyperst_rnn:HyperSTDCGRU",
    "hyperst_cnn": "distst.nn.hyperst_cnn:HyperSTCNN",
    "himnet": "distst.nn.himnet:HimNet",
    "stunet": "distst.nn.stunet:STUNet",
}

#: What the engine passes to every constructor (a model receives only the keys it declares):
#: sizes; the local graph; ``spatial_attrs`` float32 [N, A] standardised node attributes
#: (distst.graph.spatial; None when the dataset has none); ``coords`` float64 [N, 2] or None;
#: ``out_degree`` / ``in_degree`` float64 [N]: WHOLE-graph weighted degrees of the local nodes
#: (self loops excluded), so that a shard normalises its edges as the full graph would. A model
#: that normalises the graph must declare them: shard-mode edge weights are the raw local ones.
#: ``steps_per_day`` (from the sampling interval); ``time_of_day`` / ``day_of_week``: whether the
#: input's last channels carry those features (distst.data.windows order: tod, then dow).
#: ``coarsening``: ``coarsening(levels) -> [(parent [N_{l-1}], edge_index, edge_weight, N_l)]``
#: for l = 1..levels, GPA (ST-UNet Algorithm 1) run on the model's LOCAL graph (a shard's part
#: plus halo), so super-nodes never span two parts; a callable so that only models that pool
#: pay for it and the model keeps knowing nothing of distst.graph.
#: ``laplacian_lambda_max``: ``() -> float``, the largest eigenvalue of the WHOLE graph's
#: normalised Laplacian (a callable: only ``lambda_max='exact'`` pays for the eigen-solve).
#:
#: A model class states the graph it needs in ``GRAPH`` (:func:`model_graph`): "undirected"
#: (Chebyshev models: the engine passes the symmetrised edges and the symmetrised graph's
#: whole-graph degrees as ``out_degree`` / ``in_degree``), "directed" (DCRNN: edges and
#: degrees as the dataset gives them), or absent (graph-free models; HimNet reads only the
#: edge pattern, in both directions).
DATA_KEYS = ("num_nodes", "input_dim", "output_dim", "input_len", "horizon",
             "edge_index", "edge_weight", "spatial_attrs", "coords", "out_degree", "in_degree",
             "steps_per_day", "time_of_day", "day_of_week", "coarsening",
             "laplacian_lambda_max")
GRAPH_KINDS = ("undirected", "directed")


def model_class(name: str) -> type[nn.Module]:
    """The class registered as ``name`` (imported on first use)."""
    if name not in MODELS:
        raise DiststError(f"model: unknown model name {name!r}; choose one of {sorted(MODELS)}")
    module, _, attr = MODELS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def model_graph(name: str) -> str | None:
    """The graph model ``name`` needs: "undirected", "directed", or None (as given)."""
    kind = getattr(model_class(name), "GRAPH", None)
    if kind is not None and kind not in GRAPH_KINDS:
        raise DiststError(f"model {name}: GRAPH={kind!r} must be one of {list(GRAPH_KINDS)}")
    return kind


def _signature(cls: type) -> dict[str, inspect.Parameter]:
    return {k: p for k, p in inspect.signature(cls.__init__).parameters.items() if k != "self"}


def model_data_keys(name: str) -> list[str]:
    """The data-derived keys (DATA_KEYS) that model ``name``'s constructor declares."""
    return [k for k in _signature(model_class(name)) if k in DATA_KEYS]


def model_param_names(name: str) -> list[str]:
    """The hyperparameter names of model ``name`` (the data-derived keys excluded)."""
    return [k for k in _signature(model_class(name)) if k not in DATA_KEYS]


def model_param_defaults(name: str) -> dict:
    """Hyperparameter name -> default value (the paper's setting) of model ``name``."""
    sig = _signature(model_class(name))
    return {k: p.default for k, p in sig.items() if k not in DATA_KEYS}


def _accepts(value, hint) -> bool:
    """Whether ``value`` fits annotation ``hint`` (int is accepted for float; bool is not int)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin in (list, tuple):
        args = typing.get_args(hint)
        return isinstance(value, (list, tuple)) and (
            not args or all(_accepts(v, args[0]) for v in value))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation this checker does not model: let the constructor judge


def _type_name(hint) -> str:
    if typing.get_origin(hint) in (list, tuple):
        args = typing.get_args(hint)
        return f"list of {_type_name(args[0])}" if args else "list"
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join(_type_name(h) for h in typing.get_args(hint))
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


def build_model(name: str, data_kwargs: dict, params: dict | None = None) -> nn.Module:
    """Construct model ``name`` from the data's sizes/graph and the config's hyperparameters."""
    cls = model_class(name)
    params = dict(params or {})
    sig = _signature(cls)
    hints = typing.get_type_hints(cls.__init__)
    valid = model_param_names(name)
    for key, value in params.items():
        if key in DATA_KEYS:
            raise DiststError(f"model {name}: params.{key} is derived from the data and cannot "
                              f"be set in params; remove it (valid keys: {valid})")
        if key not in sig:
            raise DiststError(f"model {name}: unknown parameter {key!r}; valid keys: {valid}")
        hint = hints.get(key)
        if hint is not None and not _accepts(value, hint):
            raise DiststError(f"model {name}: params.{key}={value!r} has type "
                              f"{type(value).__name__}, expected {_type_name(hint)}")
    data = {k: v for k, v in data_kwargs.items() if k in sig and k not in params}
    missing = [k for k, p in sig.items()
               if p.default is inspect.Parameter.empty and k not in data and k not in params]
    if missing:
        raise DiststError(f"model {name}: data_kwargs lack {missing}; the engine must pass "
                          f"the data's sizes ({list(DATA_KEYS)})")
    return cls(**data, **params)
