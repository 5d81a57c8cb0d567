"""HyperST-Net building blocks (Pan et al., "HyperST-Net: Hypernetworks for Spatio-Temporal
Forecasting", AAAI 2019; ../shared/papers/hyperst-net.txt).

The spatial module (Fig. 4, first stage) embeds each node's spatial attributes into a
d-dimensional vector of spatial characteristics; the deduction module (second stage) maps that
vector, through one independent linear "factor head" per generated quantity, onto the weights
of the temporal module's layers. Everything here is per node: with attributes ``[N, A]`` a
layer gets ``[N, ...]`` generated weights, which is why a part only needs the attributes of
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


def _check_sizes(layer: str, **sizes: int) -> None:
    for key, val in sizes.items():
        if int(val) < 1:
            raise DiststError(f"{layer}: {key}={val} must be >= 1")


def _node_major(x: torch.Tensor, num_nodes: int, in_features: int, layer: str) -> torch.Tensor:
    """``x [..., N, N_in]`` -> ``[N, P, N_in]`` (P = product of the leading dims)."""
    if x.dim() < 2 or x.shape[-2] != num_nodes or x.shape[-1] != in_features:
        raise DiststError(f"{layer}: input has shape {list(x.shape)}, expected "
                          f"[..., N={num_nodes}, N_in={in_features}] (the node axis second to "
                          "last, one row of characteristics per node)")
    # [..., N, N_in] -> [N, ..., N_in] -> [N, P, N_in]
    return x.movedim(-2, 0).reshape(num_nodes, -1, in_features)


class HyperSTLinear(nn.Module):
    """General HyperST layer for a dense layer ``N_in -> N_out`` (Fig. 5, Eq. 1-3).

    Eq. (1) ``X_{k+1} = f_k(X_k; theta_k)`` with Eq. (2) ``theta_k = g_k(e; omega_k)``: every
    weight of the dense layer is generated per node from that node's d-dim characteristics
    ``e_n`` by a linear map, ``W_n = reshape(e_n G) [N_in, N_out]``, and (``bias=True``)
    ``b_n = e_n B [N_out]``; Eq. (3) is ordinary back-propagation through ``g_k`` into ``G``,
    ``B`` and, via ``e``, the spatial module.

    Parameters: ``G [d, N_in*N_out]`` -- the paper's ``d N_theta = d N_in N_out`` -- plus
    ``B [d, N_out]`` (``d N_out`` more) when ``bias=True``. The generator is bias-free so the
    count is exactly the paper's; a weight shared by all nodes is still reachable through the
    bias of the spatial module's last layer (``e = A h + c`` gives ``W_n = (A h_n) G + c G``).

    Init: ``G`` is normal with std ``1 / sqrt(3 d N_in)``, which gives generated weights of
    roughly nn.Linear's scale when the characteristics are O(1) (a choice; the paper names
    none).

    ``forward(x [..., N, N_in], e [N, d]) -> [..., N, N_out]`` applies node n's weights to row
    n; :meth:`generate` returns ``W [N, N_in, N_out]`` and ``b [N, N_out]`` for callers (RNN
    cells) that reuse them over many steps. Memory: ``N N_in N_out`` floats per generation,
    which is why the paper (and :class:`HyperSTDense`) prefers the scaled form.
    """

    def __init__(self, d: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        _check_sizes("HyperSTLinear", d=d, in_features=in_features, out_features=out_features)
        self.d, self.in_features, self.out_features = d, in_features, out_features
        self.weight_gen = nn.Parameter(torch.empty(d, in_features * out_features))
        self.bias_gen = nn.Parameter(torch.empty(d, out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = 1.0 / (3.0 * self.d * self.in_features) ** 0.5
        nn.init.normal_(self.weight_gen, std=std)
        if self.bias_gen is not None:
            nn.init.normal_(self.bias_gen, std=std)

    def generate(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``e [N, d]`` -> per-node ``W [N, N_in, N_out]`` and ``b [N, N_out]`` (or None)."""
        n = e.shape[0]
        w = (e @ self.weight_gen).view(n, self.in_features, self.out_features)
        b = e @ self.bias_gen if self.bias_gen is not None else None
        return w, b

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        n = e.shape[0]
        w, b = self.generate(e)
        xn = _node_major(x, n, self.in_features, "HyperSTLinear")  # [N, P, N_in]
        out = torch.bmm(xn, w) if b is None else torch.baddbmm(b[:, None, :], xn, w)
        # [N, P, N_out] -> [N, ..., N_out] -> [..., N, N_out]
        return out.view(n, *x.shape[:-2], self.out_features).movedim(0, -2)


class HyperSTDense(nn.Module):
    """HyperST-Dense (Fig. 6): ``W_n = diag(z_n) W0`` with ``z_n = FactorHead(d, N_in)(e_n)``.

    ``x_out = W_n^T x_in`` per node, computed as ``(x * z_n) @ W0`` -- scaling the input rows
    is the same as scaling the rows of ``W0``, and the ``[N, N_in, N_out]`` per-node matrices
    are never formed. Parameters: ``d N_in`` (factor head) + ``N_in N_out`` (``W0``), the
    paper's count; ``bias=True`` adds a generated bias ``b_n = e_n B`` (``FactorHead(d, N_out,
    offset=0)``, ``d N_out`` more), as the biases of HyperST-LSTM-D are generated. ``offset`` is
    the factor head's (``z = offset + e W``; 1 by default, 0 = the paper's literal form).

    ``forward(x [..., N, N_in], e [N, d]) -> [..., N, N_out]``.
    """

    def __init__(self, d: int, in_features: int, out_features: int, bias: bool = True,
                 offset: float = 1.0):
        super().__init__()
        _check_sizes("HyperSTDense", d=d, in_features=in_features, out_features=out_features)
        self.d, self.in_features, self.out_features = d, in_features, out_features
        self.scale = FactorHead(d, in_features, offset)
        self.weight = nn.Parameter(torch.empty(in_features, out_features))  # W0
        bound = 1.0 / in_features ** 0.5  # nn.Linear's init scale
        nn.init.uniform_(self.weight, -bound, bound)
        self.bias = FactorHead(d, out_features, offset=0.0) if bias else None

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        n = e.shape[0]
        if x.dim() < 2 or x.shape[-2] != n or x.shape[-1] != self.in_features:
            raise DiststError(f"HyperSTDense: input has shape {list(x.shape)}, expected "
                              f"[..., N={n}, N_in={self.in_features}]")
        z = self.scale(e)  # [N, N_in], broadcast over the leading dims of x
        out = (x * z) @ self.weight
        return out + self.bias(e) if self.bias is not None else out


class LocationScale(FactorHead):
    """Channel-wise scaling of the location-based HyperST-Conv (Eq. 4 and the rewrite after it).

    Eq. (4) ``X_out = (diag(z) . W0) * X_in`` with a location-specific ``z``: because ``W0`` is
    shared, ``X_out^n = diag(z_n) (W0 * X_in)^n`` -- an ordinary convolution (grid, graph or
    diffusion) with ``N_out = channels`` output channels, then output channel c of node n times
    ``z[n, c]``. This module is that scale: ``forward(e [N, d]) -> z [N, channels]``
    (a :class:`FactorHead`, ``d * channels`` parameters, ``z = offset + e W``); apply it as
    ``conv_out [..., N, channels] * z`` (or ``z[:, None, :]`` against a node-major
    ``[N, B, channels]``).
    """

    def __init__(self, d: int, channels: int, offset: float = 1.0):
        _check_sizes("LocationScale", d=d, channels=channels)
        super().__init__(d, channels, offset)
        self.channels = channels
