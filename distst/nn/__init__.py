"""Forecasting models (``[B, input_len, N, F] -> [B, horizon, N, output_dim]``) and their registry.

``distst.nn.reference`` (PyG ChebConv reference cell) is imported only by tests and benchmarks.
"""

from distst.nn.common import inverse_sigmoid_decay
from distst.nn.gcgru import GCGRU
from distst.nn.layers.cells import GCGRUCell
from distst.nn.layers.graph import cheb_operator, dense_cheb_basis
from distst.nn.gru import GRUSeq2Seq
from distst.nn.ha import HistoricalAverage
from distst.nn.registry import (
    model_class,
    MODELS,
    build_model,
    model_param_defaults,
    model_param_names,
)

__all__ = [
    "GCGRU",
    "GCGRUCell",
    "GRUSeq2Seq",
    "HistoricalAverage",
    "MODELS",
    "build_model",
    "cheb_operator",
    "dense_cheb_basis",
    "inverse_sigmoid_decay",
    "model_class",
    "model_param_defaults",
    "model_param_names",
]
