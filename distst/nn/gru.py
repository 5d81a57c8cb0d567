"""Per-node GRU encoder-decoder: the graph-free baseline (Sutskever et al. seq2seq, as in DCRNN).

Every node is an independent sequence through the same weights (``[B, T, N, F] ->
[B*N, T, F]``), so the model sees no spatial information; comparing it with GCGRU measures what
the graph convolution adds. Scheduled sampling in the decoder as in DCRNN.
"""

from __future__ import annotations

import torch
from torch import nn

from distst.nn.base import ForecastModel, decode, node_major_truth


class GRUSeq2Seq(ForecastModel):
    """Stacked GRU encoder -> stacked GRU decoder -> linear(hidden -> output_dim) per step.

    Subclasses swap the recurrent layer (``rnn``): :class:`distst.nn.lstm.LSTMSeq2Seq`.
    """

    OPERATOR_READS = True
    RECURRENT = True

    rnn: type[nn.Module] = nn.GRU
    model_name = "gru"
    #: whether the recurrent layer may run in bf16 under autocast (train.precision=bf16)
    rnn_bf16 = True

    def __init__(
        self,
        *,
        edge_index: torch.Tensor | None = None,  # graph-free: accepted and ignored
        edge_weight: torch.Tensor | None = None,
        hidden_size: int = 64,
        num_layers: int = 2,
        **sizes,
    ):
        super().__init__(**sizes)
        self.check_sizes(hidden_size=hidden_size, num_layers=num_layers)
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.encoder = self.rnn(self.input_dim, hidden_size, num_layers, batch_first=True)
        self.decoder = self.rnn(self.output_dim, hidden_size, num_layers, batch_first=True)
        self.proj = nn.Linear(hidden_size, self.output_dim)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None,
                teacher_forcing: float = 0.0) -> torch.Tensor:
        sampling = self.check_batch(x, targets, teacher_forcing)
        b, t, n, f = x.shape
        # [B, T, N, F] -> [B, N, T, F] -> [B*N, T, F]: nodes are independent sequences
        seq = x.permute(0, 2, 1, 3).reshape(b * n, t, f)
        # GRU: h [layers, B*N, H]; LSTM: the pair (h, c) of that shape
        _, state = self._run(self.encoder, seq, None)
        truth = node_major_truth(targets, sampling)  # [H, N, B, O]
        if truth is not None:  # -> [H, B*N, 1, O], the rows of seq
            truth = truth.transpose(1, 2).reshape(self.horizon, b * n, 1, self.output_dim)

        def step(_, inp):  # inp [B*N, 1, O]
            nonlocal state
            out, state = self._run(self.decoder, inp, state)  # out [B*N, 1, H]
            return self.proj(out)  # [B*N, 1, O]

        preds = decode(step, x.new_zeros(b * n, 1, self.output_dim), self.horizon, truth,
                       teacher_forcing)
        # horizon x [B*N, 1, O] -> [B*N, horizon, O] -> [B, N, horizon, O] -> [B, horizon, N, O]
        y = torch.cat(preds, dim=1).view(b, n, self.horizon, self.output_dim)
        return y.permute(0, 2, 1, 3).contiguous()

    def _run(self, rnn: nn.Module, inp: torch.Tensor, state):
        """The recurrent layer over ``inp``: the whole input sequence in one fused call (the
        encoder) or one decoder step; :meth:`recurrent_step` recomputes either."""
        return self.recurrent_step(self._rnn, rnn, inp, state)

    def _rnn(self, rnn: nn.Module, inp: torch.Tensor, state):
        if self.rnn_bf16 or not torch.is_autocast_enabled(inp.device.type):
            return rnn(inp, state)
        with torch.autocast(inp.device.type, enabled=False):
            if state is not None:
                state = tuple(s.float() for s in state)
            return rnn(inp.float(), state)
