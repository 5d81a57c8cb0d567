"""Per-node LSTM encoder-decoder: the graph-free LSTM baseline (Sutskever et al. seq2seq).

The "LSTM" / "Seq2seq" baseline of HyperST-Net (Table 3) and DCRNN: every node is an
independent sequence through the same weights (``[B, T, N, F] -> [B*N, T, F]``), so the model
sees neither the graph nor the node's attributes; HyperST-LSTM-G/-D are this model with
weights generated per node. Scheduled sampling in the decoder as in DCRNN.
"""

from __future__ import annotations

from torch import nn

from distst.nn.gru import GRUSeq2Seq


class LSTMSeq2Seq(GRUSeq2Seq):
    """Stacked LSTM encoder -> stacked LSTM decoder -> linear(hidden -> output_dim) per step.

    The encoder's final ``(h, c)`` of every layer initialise the decoder; decoder input =
    previous output (GO symbol = zeros), or the truth with probability ``teacher_forcing``.
    Defaults: two layers of 64 units (DCRNN's baseline size). Everything but the recurrent
    layer is :class:`distst.nn.gru.GRUSeq2Seq`.
    """

    rnn = nn.LSTM
    model_name = "lstm"
    #: oneDNN (torch 2.13, CPU) has no bf16 LSTM primitive ("could not create a primitive
    #: descriptor"), so under train.precision=bf16 the LSTM layers run in fp32
    rnn_bf16 = False
