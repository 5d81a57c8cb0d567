"""Reference GCGRU cell assembled from PyTorch Geometric's ``ChebConv`` (tests and benchmark only).

It reproduces PyTorch Geometric Temporal's ``GConvGRU`` (torch_geometric_temporal 0.56,
``nn/recurrent/gconv_gru.py``) line by line: six ChebConv layers (X- and h-convolution per gate,
each with its own bias) combined per ST-UNet Eq. (7). PyG-Temporal itself cannot be imported
here: its package ``__init__`` imports ``torch_sparse``, which distst does not depend on.

Batching is PyG's: ``B`` graphs are ``B`` disjoint copies, node features ``[B*N, F]`` and an
edge_index with per-copy node offsets (:func:`batched_edge_index`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import ChebConv


class PygGConvGRU(nn.Module):
    """GConvGRU of PyG-Temporal: ``forward(X [M, F], edge_index, edge_weight, H [M, H])``."""

    def __init__(self, in_channels: int, out_channels: int, K: int,
                 normalization: str = "sym", bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels, self.K = in_channels, out_channels, K
        for gate in "zrh":
            setattr(self, f"conv_x_{gate}", ChebConv(in_channels, out_channels, K,
                                                     normalization=normalization, bias=bias))
            setattr(self, f"conv_h_{gate}", ChebConv(out_channels, out_channels, K,
                                                     normalization=normalization, bias=bias))

    def forward(self, X, edge_index, edge_weight=None, H=None, lambda_max=None):
        if H is None:
            H = torch.zeros(X.shape[0], self.out_channels, device=X.device, dtype=X.dtype)
        Z = torch.sigmoid(self.conv_x_z(X, edge_index, edge_weight, lambda_max=lambda_max)
                          + self.conv_h_z(H, edge_index, edge_weight, lambda_max=lambda_max))
        R = torch.sigmoid(self.conv_x_r(X, edge_index, edge_weight, lambda_max=lambda_max)
                          + self.conv_h_r(H, edge_index, edge_weight, lambda_max=lambda_max))
        H_tilde = torch.tanh(
            self.conv_x_h(X, edge_index, edge_weight, lambda_max=lambda_max)
            + self.conv_h_h(H * R, edge_index, edge_weight, lambda_max=lambda_max))
        return Z * H + (1 - Z) * H_tilde


def batched_edge_index(edge_index: torch.Tensor, edge_weight: torch.Tensor | None,
                       num_nodes: int, batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """PyG mini-batching: ``batch`` disjoint copies of the graph, copy b's nodes offset by b*N."""
    e = edge_index.shape[1]
    offsets = (torch.arange(batch) * num_nodes).repeat_interleave(e)  # [B*E]
    ei = edge_index.repeat(1, batch) + offsets
    ew = None if edge_weight is None else edge_weight.repeat(batch)
    return ei, ew
