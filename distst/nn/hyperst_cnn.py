"""HyperST-CNN: stacked location-based HyperST-Conv layers for grid flow prediction.

Pan et al., "HyperST-Net: Hypernetworks for Spatio-Temporal Forecasting", AAAI 2019
(../shared/papers/hyperst-net.txt), section "HyperST-Conv" and variant "HyperST-CNN".

Location-based HyperST-Conv (the paper's equation after Eq. 4): for the grid cell (i, j) with
generated scale vector ``z_{i,j} in R^{N_out}``,
``X_out^{i,j} = (diag(z_{i,j}) . W0) * X_in^{<i,j>} = diag(z_{i,j}) . (W0 * X_in^{<i,j>})``:
an ordinary convolution with shared kernel ``W0`` followed by a channel-wise scaling whose
weights come from the cell's spatial attributes (spatial module -> factor head, Fig. 4). The
scale multiplies the kernel, not the bias: ``out = z (.) (W0 * X) + b``.

Network (Table 1, "Flow prediction" column; the extraction of the table is garbled, our reading
is spatial ``Dense(64-16-8-8)`` -> d = 8 characteristics, temporal ``Conv3x3(64-32)`` -> two
3x3 HyperST-Conv layers of 64 and 32 channels)::

    x [B, T, N, C] -> per cell T*C input channels (steps and channels stacked, as ST-ResNet and
    the paper's ST-CNN baseline do) -> HyperST-Conv3x3(64) -> ReLU -> HyperST-Conv3x3(32)
    -> ReLU -> Conv(output_kernel)(horizon*output_dim) -> [B, horizon, N, output_dim]

The output convolution is a plain (unscaled) convolution; the paper does not list it. Its
kernel defaults to 1x1, a per-cell read-out like the dense projection of the other HyperST
models, which also keeps the receptive field (and a part's halo) at 2 cells per 3x3 layer.

The grid is the graph: cell n's k x k neighbourhood is found from the integer ``coords``
(row, col) of the nodes (distst.data.grid.generate_grid_network writes them), not from the edge
list. A ``[N, k*k]`` neighbour index (-1 where the cell is outside the grid or not among the
local nodes -> zero padding, exactly like ``conv2d(padding=k//2)`` at the border) is built once,
and a convolution is one gather plus one matmul, ``x_nb [B*N, k*k*C_in] @ W [k*k*C_in, C_out]``.
Only local nodes are needed, so the model runs on a part of a graph: an inner node's output equals the full
grid's when the halo holds every cell within its receptive field. A 3x3 layer reaches the 8
surrounding cells, a diagonal being 2 hops on the 4-neighbour graph, so the halo must span
``2 * (number of 3x3 layers)`` hops (4 by default; 6 with ``output_kernel=3``).

No per-node parameters: the scales are generated from attributes by shared modules, the spatial
attributes are a non-persistent buffer (data, not state) and the scales are recomputed every
forward so the spatial module trains.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from distst.errors import DiststError
from distst.nn.base import ForecastModel
from distst.nn.layers.hyperst import FactorHead, SpatialModule, check_spatial_attrs

_GRID_FIX = ("HyperST-CNN convolves over a city grid and needs a grid network whose coords are "
             "the integer (row, col) of each region; build one with "
             "distst.data.grid.generate_grid_network (or give node coords as integer row/col)")


def grid_neighbours(coords, kernel_size: int = 3) -> np.ndarray:
    """``[N, k*k]`` int64 index of each node's k x k grid neighbourhood; -1 = no such node.

    ``coords [N, 2]`` are (row, col) integers (as floats). Tap ``t = a*k + c`` is the cell
    ``(row + a - k//2, col + c - k//2)`` -- the cross-correlation order of ``conv2d`` kernels.
    """
    if coords is None:
        raise DiststError(f"model hyperst_cnn: the dataset has no coords; {_GRID_FIX}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise DiststError(f"model hyperst_cnn: kernel size {kernel_size} must be odd and >= 1 "
                          "(3 as in the paper's Conv3x3, or 1)")
    c = np.asarray(coords.detach().cpu() if isinstance(coords, torch.Tensor) else coords,
                   dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 2:
        raise DiststError(f"model hyperst_cnn: coords must be [N, 2] (row, col), got shape "
                          f"{list(c.shape)}; {_GRID_FIX}")
    if not np.isfinite(c).all():
        raise DiststError(f"model hyperst_cnn: coords contain NaN/inf; {_GRID_FIX}")
    ic = np.rint(c)
    if np.abs(c - ic).max(initial=0.0) > 1e-6:
        bad = int(np.argmax(np.abs(c - ic).max(axis=1)))
        raise DiststError(f"model hyperst_cnn: coords of node {bad} are {c[bad].tolist()}, not "
                          f"integer (row, col) grid cells (lat/lon?); {_GRID_FIX}")
    ic = ic.astype(np.int64)
    r = k = kernel_size // 2
    # Shift so that every neighbour's (row, col) is >= 0 and keys of distinct cells differ.
    rows = ic[:, 0] - ic[:, 0].min() + r
    cols = ic[:, 1] - ic[:, 1].min() + r
    width = int(cols.max()) + r + 1
    keys = rows * width + cols
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    if len(sk) > 1 and (np.diff(sk) == 0).any():
        dup = int(order[int(np.argmax(np.diff(sk) == 0)) + 1])
        raise DiststError(f"model hyperst_cnn: two nodes share grid cell {ic[dup].tolist()} "
                          f"(node {dup}); each region must have its own (row, col). {_GRID_FIX}")
    offs = np.array([(a - k, b - k) for a in range(kernel_size) for b in range(kernel_size)])
    # [N, k*k] neighbour keys; searchsorted finds each one's node (or a mismatch: absent)
    nk = (rows[:, None] + offs[None, :, 0]) * width + (cols[:, None] + offs[None, :, 1])
    pos = np.clip(np.searchsorted(sk, nk), 0, len(sk) - 1)
    found = sk[pos] == nk
    return np.where(found, order[pos], -1).astype(np.int64)


class GridConv(nn.Module):
    """k x k convolution over grid nodes as gather + matmul: ``[M, N, c_in] -> [M, N, c_out]``.

    ``lin.weight [c_out, k*k*c_in]``: column ``t*c_in + i`` is input channel i at tap t (see
    :func:`grid_neighbours`); ``conv2d``'s kernel is ``weight.view(c_out, k, k, c_in)
    .permute(0, 3, 1, 2)``. Initialised like ``nn.Conv2d`` (fan-in ``k*k*c_in``).
    ``forward(x, nb, scale)`` returns ``scale (.) (W0 * x) + b`` (``scale [N, c_out]`` or None).
    """

    def __init__(self, c_in: int, c_out: int, taps: int):
        super().__init__()
        self.c_in, self.c_out, self.taps = c_in, c_out, taps
        self.lin = nn.Linear(taps * c_in, c_out)

    def forward(self, x: torch.Tensor, nb: torch.Tensor,
                scale: torch.Tensor | None = None) -> torch.Tensor:
        m, n, c = x.shape
        # [M, N+1, c_in]: row N is the zero padding that absent neighbours (-1 -> N) read
        xp = F.pad(x, (0, 0, 0, 1))
        # index_select (backward = index_add) on the flat [N*taps] index -> [M, N*taps, c_in]
        # -> [M*N, taps*c_in]: each row is one cell's receptive field, tap-major
        g = xp.index_select(1, nb).view(m * n, self.taps * c)
        y = F.linear(g, self.lin.weight).view(m, n, self.c_out)
        if scale is not None:
            y = y * scale  # [N, c_out] broadcast over M: the location-based channel scaling
        return y + self.lin.bias


class HyperSTCNN(ForecastModel):
    """HyperST-CNN for grid flow prediction (Pan et al., AAAI 2019); see the module docstring.

    ``forward(x [B, input_len, N, input_dim], targets=None, teacher_forcing=0.0)
    -> [B, horizon, N, output_dim]``; ``targets``/``teacher_forcing`` are validated and ignored
    (all steps are predicted at once). Needs ``coords`` = integer (row, col) per node and
    ``spatial_attrs [N, A]``. Defaults (Table 1, flow prediction): ``spatial_widths =
    [64, 16, 8, 8]`` (d = 8), ``channels = [64, 32]`` 3x3 HyperST-Conv layers.
    """

    model_name = "hyperst_cnn"

    def __init__(
        self,
        *,
        spatial_attrs: torch.Tensor | None = None,
        coords: torch.Tensor | None = None,
        spatial_widths: list[int] = [64, 16, 8, 8],  # noqa: B006 (copied, never mutated)
        channels: list[int] = [64, 32],  # noqa: B006
        kernel_size: int = 3,
        output_kernel: int = 1,
        **sizes,
    ):
        super().__init__(**sizes)
        self.check_sizes(kernel_size=kernel_size, output_kernel=output_kernel)
        num_nodes, input_dim, output_dim = self.num_nodes, self.input_dim, self.output_dim
        input_len, horizon = self.input_len, self.horizon
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise DiststError(f"hyperst_cnn: channels={channels} must list >= 1 layer sizes, "
                              "each >= 1 (Table 1 uses [64, 32])")
        attrs = check_spatial_attrs("hyperst_cnn", spatial_attrs, num_nodes)
        if coords is not None and tuple(np.shape(coords)) != (num_nodes, 2):
            raise DiststError(f"model hyperst_cnn: coords have shape {list(np.shape(coords))}, "
                              f"expected [num_nodes={num_nodes}, 2]; {_GRID_FIX}")
        nb = grid_neighbours(coords, kernel_size)  # [N, k*k]
        nb_out = grid_neighbours(coords, output_kernel)
        self.register_buffer("attrs", attrs, persistent=False)
        # -1 -> N: the zero row GridConv appends; flattened for one index_select per layer
        for name, idx in (("nb", nb), ("nb_out", nb_out)):
            flat = torch.from_numpy(np.where(idx < 0, num_nodes, idx).reshape(-1))
            self.register_buffer(name, flat, persistent=False)
        self.spatial = SpatialModule(attrs.shape[1], spatial_widths)
        d = self.spatial.out_dim
        taps = kernel_size * kernel_size
        c_in = input_len * input_dim
        convs, heads = [], []
        for c in channels:
            convs.append(GridConv(c_in, c, taps))
            heads.append(FactorHead(d, c))
            c_in = c
        self.convs, self.heads = nn.ModuleList(convs), nn.ModuleList(heads)
        self.out_conv = GridConv(c_in, horizon * output_dim, output_kernel * output_kernel)

    def scales(self) -> list[torch.Tensor]:
        """The generated channel scales ``z`` of every HyperST-Conv layer, each ``[N, c]``."""
        e = self.spatial(self.attrs)  # [N, d] spatial characteristics
        return [head(e) for head in self.heads]

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None,
                teacher_forcing: float = 0.0) -> torch.Tensor:
        self.check_batch(x, targets, teacher_forcing)  # validated, otherwise unused
        b, t, n, c = x.shape
        # [B, T, N, C] -> [B, N, T, C] -> [B, N, T*C]: feature t*C + c, steps stacked as channels
        h = x.permute(0, 2, 1, 3).reshape(b, n, t * c)
        for conv, z in zip(self.convs, self.scales()):
            h = torch.relu(conv(h, self.nb, z))  # [B, N, c_l]
        y = self.out_conv(h, self.nb_out)  # [B, N, horizon*output_dim]
        # [B, N, H*O] -> [B, N, H, O] -> [B, H, N, O]
        return y.view(b, n, self.horizon, self.output_dim).permute(0, 2, 1, 3).contiguous()
