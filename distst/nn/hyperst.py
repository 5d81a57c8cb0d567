"""HyperST-Net building blocks (Pan et al., "HyperST-Net: Hypernetworks for Spatio-Temporal
Forecasting", AAAI 2019; ../shared/papers/hyperst-net.txt).

The spatial module (Fig. 4, first stage) embeds each node's spatial attributes into a
d-dimensional vector of spatial characteristics; the deduction module (second stage) maps that
vector, through one independent linear "factor head" per generated quantity, onto the weights
of the temporal module's layers. Everything here is per node: with attributes ``[N, A]`` a
layer gets ``[N, ...]`` generated weights, which is why a shard only needs the attributes of
its own (inner + halo) nodes and HyperST models have no per-node parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from distst.errors import DiststError


def check_spatial_attrs(model: str, spatial_attrs, num_nodes: int) -> torch.Tensor:
    """``spatial_attrs`` as float32 ``[N, A]`` or a clear error (HyperST needs real attributes).

    A constant stand-in would turn a HyperST model into its plain counterpart without saying
    so, so a dataset without attributes is refused.
    """
    if spatial_attrs is None:
        raise DiststError(
            f"model {model}: the dataset has no spatial attributes (no node_attrs, no coords, no "
            "graph to measure road distances on); HyperST models generate their weights from "
            "them. Add node attributes or coordinates to the dataset (see `distst data info`), "
            "or use the plain counterpart (lstm, gcgru, dcrnn)")
    attrs = torch.as_tensor(spatial_attrs, dtype=torch.float32)
    if attrs.dim() != 2 or attrs.shape[0] != num_nodes or attrs.shape[1] < 1:
        raise DiststError(f"model {model}: spatial_attrs must be [num_nodes={num_nodes}, A>=1], "
                          f"got {list(attrs.shape)}")
    if not torch.isfinite(attrs).all():
        raise DiststError(f"model {model}: spatial_attrs contain NaN/inf; fill missing node "
                          "attributes in the dataset")
    return attrs


class SpatialModule(nn.Module):
    """Spatial attributes ``[N, A]`` -> spatial characteristics ``[N, d]`` (Fig. 4, stage one).

    ``widths`` is Table 1's ``Dense(w1-w2-...-d)``: fully connected layers of those widths,
    the last of which (``d = widths[-1]``) is the characteristic vector. The paper names no
    activation; ReLU between layers and none after the last (so characteristics can be
    negative, like any linear embedding) is this implementation's choice.
    """

    def __init__(self, attr_dim: int, widths: Sequence[int]):
        super().__init__()
        widths = [int(w) for w in widths]
        if attr_dim < 1 or not widths or min(widths) < 1:
            raise DiststError(f"spatial module: attr_dim={attr_dim} and widths={widths} must be "
                              ">= 1 and non-empty (Table 1 uses e.g. [64, 8, 8, 4])")
        layers: list[nn.Module] = []
        prev = attr_dim
        for i, w in enumerate(widths):
            layers.append(nn.Linear(prev, w))
            if i < len(widths) - 1:
                layers.append(nn.ReLU())
            prev = w
        self.net = nn.Sequential(*layers)
        self.attr_dim, self.out_dim = attr_dim, widths[-1]

    def forward(self, attrs: torch.Tensor) -> torch.Tensor:
        return self.net(attrs)


class FactorHead(nn.Module):
    """Deduction module for one scaling vector: characteristics ``[N, d]`` -> ``z [N, size]``.

    A bias-free linear map, so it holds exactly ``d * size`` parameters -- the count the paper
    gives for HyperST-Dense (``d N_in``) and HyperST-Conv (``d N_out``). Deviation: the paper
    uses ``z`` itself as the scale; here ``z = 1 + e W`` (``offset`` = 1), which is the same
    function class (the offset is a constant, not a parameter) but starts every generated layer
    at its shared weights ``W0`` instead of at random-sign scales, and trains markedly more
    stably. ``offset=0`` gives the paper's literal form.
    """

    def __init__(self, d: int, size: int, offset: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d, size))
        nn.init.normal_(self.weight, std=0.1 / max(1, d) ** 0.5)
        self.offset = float(offset)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return e @ self.weight + self.offset
