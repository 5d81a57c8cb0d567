"""Per-node GRU encoder-decoder: the graph-free baseline (Sutskever et al. seq2seq, as in DCRNN).

Every node is an independent sequence through the same weights (``[B, T, N, F] ->
[B*N, T, F]``), so the model sees no spatial information; comparing it with GCGRU measures what
the graph convolution adds. Scheduled sampling in the decoder as in DCRNN.
"""

from __future__ import annotations

import torch
from torch import nn

from distst.errors import DiststError
from distst.nn.common import check_input, check_sizes, check_targets, coin


class GRUSeq2Seq(nn.Module):
    """Stacked GRU encoder -> stacked GRU decoder -> linear(hidden -> output_dim) per step.

    Subclasses swap the recurrent layer (``rnn``): :class:`distst.nn.lstm.LSTMSeq2Seq`.
    """

    rnn: type[nn.Module] = nn.GRU
    label = "gru"

    def __init__(
        self,
        *,
        num_nodes: int,
        input_dim: int,
        output_dim: int,
        input_len: int = 12,
        horizon: int = 12,
        edge_index: torch.Tensor | None = None,  # graph-free: accepted and ignored
        edge_weight: torch.Tensor | None = None,
        hidden_size: int = 64,
        num_layers: int = 2,
    ):
        super().__init__()
        check_sizes(self.label, num_nodes=num_nodes, input_dim=input_dim, output_dim=output_dim,
                    input_len=input_len, horizon=horizon, hidden_size=hidden_size,
                    num_layers=num_layers)
        if output_dim > input_dim:
            raise DiststError(f"{self.label}: output_dim={output_dim} > input_dim={input_dim}; the "
                              "first output_dim input channels must be the targets")
        self.num_nodes, self.input_dim, self.output_dim = num_nodes, input_dim, output_dim
        self.input_len, self.horizon = input_len, horizon
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.encoder = self.rnn(input_dim, hidden_size, num_layers, batch_first=True)
        self.decoder = self.rnn(output_dim, hidden_size, num_layers, batch_first=True)
        self.proj = nn.Linear(hidden_size, output_dim)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None,
                teacher_forcing: float = 0.0) -> torch.Tensor:
        check_input(self.label, x, self.input_len, self.num_nodes, self.input_dim)
        b, t, n, f = x.shape
        sampling = check_targets(self.label, targets, teacher_forcing, b, self.horizon, n,
                                 self.output_dim)
        # [B, T, N, F] -> [B, N, T, F] -> [B*N, T, F]: nodes are independent sequences
        seq = x.permute(0, 2, 1, 3).reshape(b * n, t, f)
        # GRU: h [layers, B*N, H]; LSTM: the pair (h, c) of that shape
        _, state = self.encoder(seq)
        if sampling:
            # [B, horizon, N, O] -> [B*N, horizon, O]; missing (NaN) fed as 0 like x
            truth = torch.nan_to_num(targets, nan=0.0).permute(0, 2, 1, 3).reshape(
                b * n, self.horizon, self.output_dim)
        inp = x.new_zeros(b * n, 1, self.output_dim)  # GO symbol
        preds = []
        for step in range(self.horizon):
            out, state = self.decoder(inp, state)  # out [B*N, 1, H]
            pred = self.proj(out)  # [B*N, 1, O]
            preds.append(pred)
            inp = truth[:, step:step + 1] if sampling and coin(teacher_forcing) else pred
        # horizon x [B*N, 1, O] -> [B*N, horizon, O] -> [B, N, horizon, O] -> [B, horizon, N, O]
        y = torch.cat(preds, dim=1).view(b, n, self.horizon, self.output_dim)
        return y.permute(0, 2, 1, 3).contiguous()
