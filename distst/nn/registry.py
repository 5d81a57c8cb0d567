"""Model registry: name -> class, and checked construction from a config's ``params``.

Every model takes keyword-only arguments: the data-derived ``DATA_KEYS`` (passed by the engine,
the same dict for every model; keys a model does not declare are not passed) plus its own
hyperparameters, which are checked against the constructor's annotations.
"""

from __future__ import annotations

import importlib
import inspect
import typing

from torch import nn

from distst.errors import DiststError
from distst.nn.base import GraphModel
from distst.typecheck import fits_type, type_name

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
    "stid": "distst.nn.stid:STID",
}

#: What the engine passes to every constructor (a model receives only the keys it declares):
#: sizes; the local graph; ``spatial_attrs`` float32 [N, A] standardised node attributes
#: (distst.graph.spatial; None when the dataset has none); ``coords`` float64 [N, 2] or None;
#: ``out_degree`` / ``in_degree`` float64 [N]: WHOLE-graph weighted degrees of the local nodes
#: (self loops excluded), so that a part normalises its edges as the full graph would. A model
#: that normalises the graph must declare them: a part's edge weights are the raw local ones.
#: ``steps_per_day`` (from the sampling interval); ``time_of_day`` / ``day_of_week``: whether the
#: input's last channels carry those features (distst.data.windows order: tod, then dow).
#: ``coarsening``: ``coarsening(levels) -> [(parent [N_{l-1}], edge_index, edge_weight, N_l)]``
#: for l = 1..levels, GPA (ST-UNet Algorithm 1) run on the model's LOCAL graph (a part's part
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


def operator_read_models() -> list[str]:
    """The models whose every neighbour read goes through their graph operators
    (``OPERATOR_READS`` on the class): a graph split with a boundary is exact for them."""
    return sorted(n for n in MODELS if getattr(model_class(n), "OPERATOR_READS", False))


def operator_reads(name: str, params: dict | None = None) -> str | None:
    """None when model ``name`` with ``params`` (``model.params``) reads its neighbours through
    its graph operators only; else why not."""
    cls = model_class(name)
    if not getattr(cls, "OPERATOR_READS", False):
        return (f"model {name} reads neighbours outside its graph operators' sparse products; "
                f"models whose reads all go through them: {', '.join(operator_read_models())}")
    check = getattr(cls, "check_operator_reads", None)
    return check(dict(params or {})) if check is not None else None


def recurrent_models() -> list[str]:
    """The models ``train.recompute: step`` applies to (``RECURRENT`` on the class)."""
    return sorted(n for n in MODELS if getattr(model_class(n), "RECURRENT", False))


def require_recompute(name: str, recompute: str) -> None:
    """Refuse ``train.recompute: step`` for a model without recurrent steps (it would change
    nothing, and a user who set it expects the memory it promises)."""
    if recompute != "none" and not getattr(model_class(name), "RECURRENT", False):
        raise DiststError(
            f"train.recompute={recompute}: model {name} has no recurrent steps to recompute; "
            f"models with them: {', '.join(recurrent_models())}; set train.recompute=none "
            f"for {name}")


def boundary_reach(name: str, params: dict | None = None) -> int:
    """How many hops of boundary one graph operator of model ``name`` reads: 1 for models
    whose every neighbour read is one graph product, more for a model that reads a wider
    neighbourhood at once (HimNet's sparse adaptive graph: its ``graph_hops``)."""
    reach = getattr(model_class(name), "boundary_reach", None)
    return int(reach(dict(params or {}))) if reach is not None else 1


def boundary_depth(name: str, params: dict | None = None) -> int:
    """The halo depth a split graph of model ``name`` is planned with when its parts fetch
    their boundary: its :func:`boundary_reach`, or deeper where each graph filter then fetches
    its input's halo once instead of once per product (``FILTER_CHAIN = (key, offset)`` on the class: a
    filter chains ``params[key] + offset`` products, e.g. ``("K", -1)`` for an order-K
    Chebyshev filter)."""
    cls = model_class(name)
    reach = boundary_reach(name, params)
    chain = getattr(cls, "FILTER_CHAIN", None)
    if chain is None:
        return reach
    key, offset = chain
    value = dict(params or {}).get(key, model_signature(cls)[key].default)
    return max(reach, int(value) + int(offset))


def _own_inits(cls: type) -> list:
    """The ``__init__`` of ``cls`` and, while one passes ``**kwargs`` on, its bases'."""
    inits = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        inits.append(init)
        params = inspect.signature(init).parameters.values()
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break
    return inits


def model_signature(cls: type) -> dict[str, inspect.Parameter]:
    """Every keyword a model's constructor takes: its own, then those of the bases it passes
    ``**kwargs`` on to (the data sizes of :class:`distst.nn.base.ForecastModel`)."""
    out: dict[str, inspect.Parameter] = {}
    for init in _own_inits(cls):
        for k, p in inspect.signature(init).parameters.items():
            if k != "self" and p.kind not in (inspect.Parameter.VAR_KEYWORD,
                                              inspect.Parameter.VAR_POSITIONAL):
                out.setdefault(k, p)
    return out


def _type_hints(cls: type) -> dict:
    hints: dict = {}
    for init in reversed(_own_inits(cls)):
        hints.update(typing.get_type_hints(init))
    return hints



def model_data_keys(name: str) -> list[str]:
    """The data-derived keys (DATA_KEYS) that model ``name``'s constructor declares."""
    return [k for k in model_signature(model_class(name)) if k in DATA_KEYS]


def model_param_names(name: str) -> list[str]:
    """The hyperparameter names of model ``name`` (the data-derived keys excluded)."""
    return [k for k in model_signature(model_class(name)) if k not in DATA_KEYS]


def model_param_defaults(name: str) -> dict:
    """Hyperparameter name -> default value (the paper's setting) of model ``name``."""
    sig = model_signature(model_class(name))
    return {k: p.default for k, p in sig.items() if k not in DATA_KEYS}


def build_model(name: str, data_kwargs: dict, params: dict | None = None) -> nn.Module:
    """Construct model ``name`` from the data's sizes/graph and the config's hyperparameters."""
    cls = model_class(name)
    params = dict(params or {})
    sig = model_signature(cls)
    hints = _type_hints(cls)
    valid = model_param_names(name)
    for key, value in params.items():
        if key in DATA_KEYS:
            raise DiststError(f"model {name}: params.{key} is derived from the data and cannot "
                              f"be set in params; remove it (valid keys: {valid})")
        if key not in sig:
            raise DiststError(f"model {name}: unknown parameter {key!r}; valid keys: {valid}")
        hint = hints.get(key)
        if hint is not None and not fits_type(value, hint):
            raise DiststError(f"model {name}: params.{key}={value!r} has type "
                              f"{type(value).__name__}, expected {type_name(hint)}")
    data = {k: v for k, v in data_kwargs.items() if k in sig and k not in params}
    missing = [k for k, p in sig.items()
               if p.default is inspect.Parameter.empty and k not in data and k not in params]
    if missing:
        raise DiststError(f"model {name}: data_kwargs lack {missing}; the engine must pass "
                          f"the data's sizes ({list(DATA_KEYS)})")
    model = cls(**data, **params)
    if isinstance(model, GraphModel):
        model.release_graph_input()
    return model
