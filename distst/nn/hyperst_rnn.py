"""HyperST-GCGRU and HyperST-DCGRU (Pan et al., "HyperST-Net", AAAI 2019; Variants + Table 1).

The paper: "similar to the location-based HyperST-Conv layer, we add channel-wise scaling
layers after graph convolution operators in the GCGRU cell"; HyperST-DCGRU does the same with
diffusion convolutions. The location-based HyperST-Conv (Eq. 4, second form) is::

    X_out^n = diag(z_n) (W0 * X_in)^n

a convolution with shared weights ``W0`` followed by a per-node channel-wise scale ``z_n``
generated from node n's spatial attributes: the spatial module (:class:`SpatialModule`,
Table 1's ``Dense(64-8-8-4)``) maps attributes ``[N, A]`` to characteristics ``e [N, d]``, and
one :class:`FactorHead` per convolution (the deduction module) maps ``e`` to ``z [N, C_out]``.

Where the scales go (every graph / diffusion convolution of every cell, encoder and decoder):

* HyperST-GCGRU reuses :class:`distst.nn.gcgru.GCGRUCell` (ST-UNet Eq. 7, whose input and
  hidden convolutions are separate): ``z_{x}`` scales ``W_{z,r,h} *_G X`` ``[3H]``,
  ``z_{hzr}`` scales ``U_{z,r} *_G h`` ``[2H]`` and ``z_{hh}`` scales ``U_h *_G (r . h)``
  ``[H]``.
* HyperST-DCGRU reuses :class:`distst.nn.dcrnn.DCGRUCell` (DCRNN Eq. 4, whose convolutions act
  on the concatenation ``[X, H]``): ``z_{ru}`` scales the gate convolution ``[2H]``, ``z_c``
  the candidate convolution ``[H]``.

The scale multiplies the convolution output before the gate's bias is added (the bias is the
gate's, not the convolution's). A fused head ``FactorHead(d, 3H)`` is exactly three
independent bias-free heads ``FactorHead(d, H)`` side by side (the same ``d * 3H`` parameters),
so the fused matmuls of the cells keep their speed. The projection hidden -> output stays a
plain shared linear layer (the paper scales convolutions only). With every ``z = 1`` the
models are their plain counterparts (GCGRU / DCRNN) exactly; :class:`FactorHead`'s ``z = 1 +
eW`` starts them there.

A split graph: the scales are per node and come from the node's own attributes, so a worker needs
only its local nodes' attributes; the graph operators use the whole-graph degrees when given.
HyperST models have no per-node parameters; the attributes are a non-persistent buffer (data)
and the scales are recomputed every forward so that gradients reach the spatial module.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

from distst.errors import DiststError
from distst.nn.dcrnn import DCRNN
from distst.nn.gcgru import GCGRU
from distst.nn.layers.hyperst import FactorHead, SpatialModule, check_spatial_attrs

#: Table 1, traffic prediction (METR-LA): the spatial module of both graph variants.
TABLE1_SPATIAL_WIDTHS = (64, 8, 8, 4)


class _HyperSTScales(nn.Module):
    """Spatial module + one factor head per (fused) convolution of every cell.

    ``heads[c][name]`` generates the scales of convolution ``name`` of cell ``c`` (encoder
    cells first, then decoder cells); :meth:`forward` returns one ``{name: z [N, size]}`` per
    cell.
    """

    def __init__(self, model: str, spatial_attrs, num_nodes: int, widths, num_cells: int,
                 sizes: dict[str, int]):
        super().__init__()
        attrs = check_spatial_attrs(model, spatial_attrs, num_nodes)
        if not isinstance(widths, (list, tuple)) or not widths or any(
                isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1
                for w in widths):
            raise DiststError(f"{model}: spatial_widths={widths!r} must be a non-empty list of "
                              "integers >= 1 (Table 1 uses [64, 8, 8, 4]); fix "
                              "model.params.spatial_widths")
        # data, not state: rebuilt from the dataset, never checkpointed or broadcast
        self.register_buffer("spatial_attrs", attrs, persistent=False)
        self.spatial = SpatialModule(attrs.shape[1], [int(w) for w in widths])
        d = self.spatial.out_dim
        self.heads = nn.ModuleList(
            nn.ModuleDict({name: FactorHead(d, size) for name, size in sizes.items()})
            for _ in range(num_cells))

    def forward(self) -> list[dict[str, torch.Tensor]]:
        e = self.spatial(self.spatial_attrs)  # [N, d] spatial characteristics
        return [{name: head(e) for name, head in cell.items()} for cell in self.heads]


class HyperSTGCGRU(GCGRU):
    """HyperST-GCGRU: GCGRU (ST-UNet Eq. 7 cells, DCRNN-style seq2seq) with location-based
    HyperST-Conv scales after every Chebyshev graph convolution (HyperST-Net, Table 1).

    ``forward(x [B, input_len, N, input_dim], targets=None, teacher_forcing=0.0)
    -> [B, horizon, N, output_dim]``. Hyperparameters: GCGRU's (``K = 3``, ``hidden_size =
    64``, ``num_layers = 2`` -- Table 1's GCGRU(64-64) --, ``normalization = "sym"``) plus
    ``spatial_widths`` (Table 1: Dense(64-8-8-4), d = 4). Needs ``spatial_attrs [N, A]``.
    ``out_degree`` (a part of a split graph): whole-graph out-degrees for the Laplacian normalisation.
    The state-dict names of the cells and the projection are GCGRU's, so a GCGRU checkpoint
    loads with ``strict=False`` (only the spatial module and heads are new).
    """

    model_name = "hyperst_gcgru"

    def __init__(
        self,
        *,
        spatial_attrs: torch.Tensor | None = None,
        spatial_widths: list[int] = list(TABLE1_SPATIAL_WIDTHS),  # noqa: B006 (never mutated)
        **gcgru,
    ):
        super().__init__(**gcgru)
        h = self.hidden_size
        self.hyper = _HyperSTScales(self.model_name, spatial_attrs, self.num_nodes,
                                    spatial_widths, 2 * self.num_layers,
                                    {"x": 3 * h, "hzr": 2 * h, "hh": h})

    def _scales(self):
        z = self.hyper()
        return z[:self.num_layers], z[self.num_layers:]


class HyperSTDCGRU(DCRNN):
    """HyperST-DCGRU: DCRNN (DCGRU cells, diffusion convolution) with location-based
    HyperST-Conv scales after every diffusion convolution (HyperST-Net, Table 1).

    ``forward`` as :class:`DCRNN`. Hyperparameters: DCRNN's (``K = 2`` max_diffusion_step,
    ``hidden_size = 64``, ``num_layers = 2`` -- Table 1's DCGRU(64-64) --, ``filter_type =
    "dual_random_walk"``) plus ``spatial_widths`` (Table 1: Dense(64-8-8-4)). Needs
    ``spatial_attrs [N, A]``. A DCRNN checkpoint loads with ``strict=False``.
    """

    model_name = "hyperst_dcgru"

    def __init__(
        self,
        *,
        spatial_attrs: torch.Tensor | None = None,
        spatial_widths: list[int] = list(TABLE1_SPATIAL_WIDTHS),  # noqa: B006 (never mutated)
        **dcrnn,
    ):
        # fail on missing attributes before the (costlier) graph operators are built
        check_spatial_attrs(self.model_name, spatial_attrs, dcrnn.get("num_nodes"))
        super().__init__(**dcrnn)
        h = self.hidden_size
        self.hyper = _HyperSTScales(self.model_name, spatial_attrs, self.num_nodes,
                                    spatial_widths, 2 * self.num_layers, {"ru": 2 * h, "c": h})

    def _scales(self):
        z = self.hyper()
        return z[:self.num_layers], z[self.num_layers:]
