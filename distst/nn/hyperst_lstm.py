"""HyperST-LSTM-G and HyperST-LSTM-D (Pan et al., HyperST-Net, AAAI 2019; Table 1).

Both are per-node LSTM encoder-decoders whose weights come from each node's spatial attributes:
``attrs [N, A] --SpatialModule--> e [N, d] --deduction--> per-node LSTM weights``. There is no
graph; nodes differ only through their attributes, so a node's forecast depends on its own
history and attributes alone (which is also why a split graph needs no halo for these models).

* HyperST-LSTM-G ("generates all the parameter weights of dense layers in the LSTM cell"):
  every LSTM weight and bias is produced by the general HyperST layer (Fig. 5,
  :class:`distst.nn.layers.hyperst.HyperSTLinear`).
* HyperST-LSTM-D: the LSTM of the paper's HyperST-Dense equations (Sec. "HyperST-Dense")::

      f_t  = sigma(W_f^T diag(z0) x_t + U_f^T diag(z1) h_{t-1} + b_f)
      i_t  = sigma(W_i^T diag(z2) x_t + U_i^T diag(z3) h_{t-1} + b_i)
      o_t  = sigma(W_o^T diag(z4) x_t + U_o^T diag(z5) h_{t-1} + b_o)
      c'_t = tanh (W_c^T diag(z6) x_t + U_c^T diag(z7) h_{t-1} + b_c)
      c_t  = f_t . c_{t-1} + i_t . c'_t
      h_t  = o_t . tanh(c_t)

  with ``z0..z7`` and ``b_f, b_i, b_o, b_c`` generated per node from ``e`` and ``W, U``
  shared.

Speed: the generated quantities are computed once per forward (not per step) and the 4 gates
are fused -- LSTM-G does one batched-over-nodes matmul ``[N, B, H] @ [N, H, 4H]`` per step for
``h`` (and one for ``x``); LSTM-D one matmul batched over the 4 gates, ``[4, N*B, H] @
[4, H, H]``, on the gate-wise scaled state (the 8 scaling vectors differ per gate, so the
scaled inputs cannot share one ``[., 4H]`` weight; batching over gates keeps one kernel call
and a gate-major layout ``[4, N, B, H]`` whose gate slices are contiguous). The input
projection of a whole encoder layer (all ``input_len`` steps) is one matmul. States are
node-major ``[N, B, H]``.

Seq2seq wrapper (the same as GCGRU / DCRNN here): a stacked encoder over ``input_len`` steps
whose final ``(h, c)`` initialise a stacked decoder of the same sizes, a linear projection
hidden -> output_dim per step, decoder input = previous output (GO symbol = zeros) or, with
probability ``teacher_forcing``, the truth (DCRNN scheduled sampling).

Deviations from / readings of the paper (which gives no code):

* Table 1 (its extraction is garbled; reading: three columns AQ / traffic / flow, with
  entries missing where a variant was not run; Table 3 runs only HyperST-LSTM-D on traffic):
  HyperST-LSTM-D traffic = spatial Dense(32-8-4), LSTM(128-128) -- the defaults here;
  HyperST-LSTM-G has no traffic entry, so its defaults are the air-quality ones, spatial
  Dense(16-8-2), LSTM(16-16).
* The paper's LSTM is not said to be a seq2seq model; the encoder-decoder wrapper is this
  package's common forecasting contract (12 -> 12 steps).
* The output projection hidden -> output_dim is one shared nn.Linear (the paper's HyperST
  layers are in the LSTM cell).
* One spatial module per model, shared by all layers of encoder and decoder (Table 1 lists
  one spatial module per model); each layer has its own deduction heads.
* LSTM-D: the scaling vectors are ``z = 1 + e W`` (FactorHead offset, ``scale_offset``;
  0 = the paper's literal ``z = e W``); the biases are ``b = e B`` (bias-free linear maps,
  ``d 4H`` parameters per layer).
* LSTM-G: one generated bias per gate (nn.LSTM's ``b_ih + b_hh`` only matter as a sum); the
  generators are bias-free linear maps of ``e`` (``d N_theta`` parameters, the paper's count),
  see :class:`~distst.nn.layers.hyperst.HyperSTLinear` for their init.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from distst.errors import DiststError
from distst.nn.base import ForecastModel, decode, node_major_truth, to_batch_major
from distst.nn.layers.hyperst import FactorHead, HyperSTLinear, SpatialModule, check_spatial_attrs

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each node-major [N, B, H]


class HyperSTLSTMGCell(nn.Module):
    """One HyperST-LSTM-G cell: all LSTM weights generated per node (general HyperST layer).

    Per node n: ``[f|i|o|c'] = x W_n + h U_n + b_n`` with ``W_n [in, 4H]``, ``U_n [H, 4H]``,
    ``b_n [4H]`` generated from ``e_n`` (gate order f, i, o, c' along the last axis).
    Parameters: ``d (in*4H + H*4H + 4H)``.
    """

    def __init__(self, d: int, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.gen_x = HyperSTLinear(d, input_size, 4 * hidden_size, bias=True)
        self.gen_h = HyperSTLinear(d, hidden_size, 4 * hidden_size, bias=False)

    def generate(self, e: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``e [N, d]`` -> ``(W [N, in, 4H], b [N, 4H], U [N, H, 4H])``, once per forward."""
        w, b = self.gen_x.generate(e)
        u, _ = self.gen_h.generate(e)
        return w, b, u

    def input_gates(self, x: torch.Tensor, gen) -> torch.Tensor:
        """``x [N, M, in]`` -> ``x W_n + b_n`` ``[N, M, 4H]`` (M may be time*batch)."""
        w, b, _ = gen
        return torch.baddbmm(b[:, None, :], x, w)

    def encode_inputs(self, seq: torch.Tensor, gen) -> tuple[torch.Tensor, ...]:
        """A whole known input sequence ``[T, N, B, in]`` -> T per-step ``[N, B, 4H]``."""
        t, n, b, f = seq.shape
        # [T, N, B, in] -> [N, T, B, in] -> [N, T*B, in]: the node is the bmm batch axis
        xg = self.input_gates(seq.transpose(0, 1).reshape(n, t * b, f), gen)  # [N, T*B, 4H]
        # unbind (not slicing): one backward stack instead of a zero tensor per step
        return xg.view(n, t, b, -1).unbind(1)

    def recur(self, xg: torch.Tensor, state: State, gen) -> State:
        h, c = state
        hs = self.hidden_size
        pre = torch.baddbmm(xg, h, gen[2])  # [N, B, 4H]
        # split, not slices: a slice's backward fills a zero tensor of pre's size
        sig, cand = pre.split([3 * hs, hs], dim=-1)
        f, i, o = torch.sigmoid(sig).split(hs, dim=-1)
        c = f * c + i * torch.tanh(cand)
        return o * torch.tanh(c), c

    def forward(self, x: torch.Tensor, state: State, gen) -> State:
        """One step: ``x [N, B, in]``, ``(h, c)`` -> new ``(h, c)``; ``gen`` from generate."""
        return self.recur(self.input_gates(x, gen), state, gen)


class HyperSTLSTMDCell(nn.Module):
    """One HyperST-LSTM-D cell (the paper's HyperST-Dense LSTM equations, see module doc).

    Parameters (gate order f, i, o, c): ``weight_x [4, in, H]`` = ``W_f, W_i, W_o, W_c``;
    ``weight_h [4, H, H]`` = ``U_f, U_i, U_o, U_c``; ``scale_x`` = FactorHead(d, 4*in) giving
    ``z0, z2, z4, z6`` (row-major ``[4, in]``); ``scale_h`` = FactorHead(d, 4*H) giving
    ``z1, z3, z5, z7``; ``bias`` = FactorHead(d, 4*H, offset=0) giving ``b_f, b_i, b_o, b_c``.
    Total ``4 in H + 4 H^2`` (the shared W, U) ``+ d (4 in + 4H)`` (scales) ``+ d 4H`` (biases):
    each gate is two HyperST-Dense layers (``d N_in + N_in N_out`` each) plus a generated bias.
    """

    def __init__(self, d: int, input_size: int, hidden_size: int, offset: float = 1.0):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_x = nn.Parameter(torch.empty(4, input_size, hidden_size))
        self.weight_h = nn.Parameter(torch.empty(4, hidden_size, hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)  # nn.LSTM's init
        nn.init.uniform_(self.weight_x, -bound, bound)
        nn.init.uniform_(self.weight_h, -bound, bound)
        self.scale_x = FactorHead(d, 4 * input_size, offset)
        self.scale_h = FactorHead(d, 4 * hidden_size, offset)
        self.bias = FactorHead(d, 4 * hidden_size, offset=0.0)

    def generate(self, e: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``e [N, d]`` -> ``(z_x [4, N, 1, in], z_h [4, N, 1, H], b [4, N, 1, H])``.

        The singleton axis broadcasts over the batch (or time*batch) of a node-major tensor.
        """
        n = e.shape[0]
        # [N, 4*F] -> [N, 4, F] -> [4, N, 1, F]: gate-major, matching weight_x / weight_h
        # (contiguous so that the products below come out gate-major and contiguous)
        zx = self.scale_x(e).view(n, 4, self.input_size).transpose(0, 1).contiguous()
        zh = self.scale_h(e).view(n, 4, self.hidden_size).transpose(0, 1).contiguous()
        b = self.bias(e).view(n, 4, self.hidden_size).transpose(0, 1).contiguous()
        return zx[:, :, None, :], zh[:, :, None, :], b[:, :, None, :]

    def input_gates(self, x: torch.Tensor, gen) -> torch.Tensor:
        """``x [N, M, in]`` -> ``W_g^T diag(z_x,g) x + b_g`` for the 4 gates, ``[4, N, M, H]``."""
        zx, _, b = gen
        n, m, f = x.shape
        xs = x[None] * zx  # [4, N, M, in]: gate g's scaling of the input rows
        out = torch.bmm(xs.reshape(4, n * m, f), self.weight_x)  # [4, N*M, H]
        return out.view(4, n, m, self.hidden_size) + b

    def encode_inputs(self, seq: torch.Tensor, gen) -> tuple[torch.Tensor, ...]:
        """A whole known input sequence ``[T, N, B, in]`` -> T per-step ``[4, N, B, H]``."""
        zx, _, b = gen
        t, n, bs, f = seq.shape
        xs = seq[None] * zx[:, None]  # [4, T, N, B, in]
        out = torch.bmm(xs.reshape(4, t * n * bs, f), self.weight_x)  # [4, T*N*B, H]
        # [4, T, N, B, H] + b [4, 1, N, 1, H]; each step's slice keeps N, B, H contiguous,
        # so recur's reshape to [4, N*B, H] is a view
        xg = out.view(4, t, n, bs, self.hidden_size) + b[:, None]
        return xg.unbind(1)

    def recur(self, xg: torch.Tensor, state: State, gen) -> State:
        """``xg [4, N, B, H]`` (input part incl. bias), ``(h, c)`` -> new ``(h, c)``."""
        h, c = state
        n, b, hs = h.shape
        hsc = h[None] * gen[1]  # [4, N, B, H]: diag(z1), diag(z3), diag(z5), diag(z7)
        # xg + U^T diag(z) h in one kernel; [4, N*B, H] -> [4, N, B, H]
        pre = torch.baddbmm(xg.reshape(4, n * b, hs), hsc.view(4, n * b, hs),
                            self.weight_h).view(4, n, b, hs)
        # split, not slices: a slice's backward fills a zero tensor of pre's size
        sig, cand = pre.split([3, 1], dim=0)
        f, i, o = torch.sigmoid(sig).unbind(0)
        c = f * c + i * torch.tanh(cand.squeeze(0))
        return o * torch.tanh(c), c

    def forward(self, x: torch.Tensor, state: State, gen) -> State:
        """One step: ``x [N, B, in]``, ``(h, c)`` -> new ``(h, c)``; ``gen`` from generate."""
        return self.recur(self.input_gates(x, gen), state, gen)


def _int_list(model: str, key: str, value) -> list[int]:
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        if min(value) >= 1:
            return [int(v) for v in value]
    raise DiststError(f"model {model}: params.{key}={value!r} must be a non-empty list of "
                      "integers >= 1 (e.g. Table 1's [32, 8, 4] / [128, 128])")


class _HyperSTLSTMSeq2Seq(ForecastModel):
    """The shared encoder-decoder of HyperST-LSTM-G/-D; subclasses pick the cell and the
    defaults of ``spatial_widths`` / ``hidden_sizes``."""

    RECURRENT = True

    def __init__(self, *, spatial_attrs: torch.Tensor | None = None,
                 spatial_widths: list[int], hidden_sizes: list[int], **sizes):
        super().__init__(**sizes)
        self._setup(spatial_attrs, spatial_widths, hidden_sizes)

    def _make_cell(self, d: int, input_size: int, hidden_size: int) -> nn.Module:
        raise NotImplementedError

    def _setup(self, spatial_attrs, spatial_widths, hidden_sizes) -> None:
        name = self.model_name
        input_dim, output_dim = self.input_dim, self.output_dim
        spatial_widths = _int_list(name, "spatial_widths", spatial_widths)
        hidden_sizes = _int_list(name, "hidden_sizes", hidden_sizes)
        attrs = check_spatial_attrs(name, spatial_attrs, self.num_nodes)
        self.spatial_widths, self.hidden_sizes = spatial_widths, hidden_sizes
        # data, not state: rebuilt from the dataset, never checkpointed or broadcast
        self.register_buffer("spatial_attrs", attrs, persistent=False)
        self.spatial = SpatialModule(attrs.shape[1], spatial_widths)
        d = self.spatial.out_dim
        self.encoder = nn.ModuleList(
            self._make_cell(d, input_dim if i == 0 else hidden_sizes[i - 1], hs)
            for i, hs in enumerate(hidden_sizes))
        self.decoder = nn.ModuleList(
            self._make_cell(d, output_dim if i == 0 else hidden_sizes[i - 1], hs)
            for i, hs in enumerate(hidden_sizes))
        self.proj = nn.Linear(hidden_sizes[-1], output_dim)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None,
                teacher_forcing: float = 0.0) -> torch.Tensor:
        sampling = self.check_batch(x, targets, teacher_forcing)
        b, t, n, _ = x.shape
        # generated every forward so that gradients reach the spatial module
        e = self.spatial(self.spatial_attrs)  # [N, d]
        enc_gen = [cell.generate(e) for cell in self.encoder]
        dec_gen = [cell.generate(e) for cell in self.decoder]
        # [B, T, N, F] -> [T, N, B, F]: node-major steps; each layer projects all T at once
        seq = x.permute(1, 2, 0, 3).contiguous()
        states: list[State] = []
        for cell, gen in zip(self.encoder, enc_gen):
            h = x.new_zeros(n, b, cell.hidden_size)
            state = (h, h)
            outs = []
            for xg_t in cell.encode_inputs(seq, gen):
                state = self.recurrent_step(cell.recur, xg_t, state, gen)
                outs.append(state[0])
            states.append(state)
            seq = torch.stack(outs, dim=0)  # [T, N, B, H]

        def step(_, inp):  # the previous output [N, B, O] -> the next [N, B, O]
            for i, (cell, gen) in enumerate(zip(self.decoder, dec_gen)):
                states[i] = self.recurrent_step(cell, inp, states[i], gen)
                inp = states[i][0]
            return self.proj(inp)

        preds = decode(step, x.new_zeros(n, b, self.output_dim), self.horizon,
                       node_major_truth(targets, sampling), teacher_forcing)
        return to_batch_major(preds)


class HyperSTLSTMG(_HyperSTLSTMSeq2Seq):
    """HyperST-LSTM-G seq2seq forecaster: every LSTM weight/bias generated per node.

    ``forward(x [B, input_len, N, input_dim], targets=None, teacher_forcing=0.0)
    -> [B, horizon, N, output_dim]``. ``spatial_attrs [N, A]`` are required
    (:func:`~distst.nn.layers.hyperst.check_spatial_attrs`). ``spatial_widths`` = Table 1's spatial
    Dense(w1-...-d), ``hidden_sizes`` = its LSTM(h1-h2) (stacked layers). Defaults: the
    air-quality column, Dense(16-8-2), LSTM(16-16) -- Table 1 has no traffic entry for this
    variant (see the module docstring for all deviations).
    """

    model_name = "hyperst_lstm_g"

    def __init__(self, *, spatial_widths: list[int] = [16, 8, 2],  # noqa: B006 (read only)
                 hidden_sizes: list[int] = [16, 16], **kwargs):  # noqa: B006
        super().__init__(spatial_widths=spatial_widths, hidden_sizes=hidden_sizes, **kwargs)

    def _make_cell(self, d: int, input_size: int, hidden_size: int) -> nn.Module:
        return HyperSTLSTMGCell(d, input_size, hidden_size)


class HyperSTLSTMD(_HyperSTLSTMSeq2Seq):
    """HyperST-LSTM-D seq2seq forecaster: LSTM with HyperST-Dense layers (paper's equations).

    ``forward(x [B, input_len, N, input_dim], targets=None, teacher_forcing=0.0)
    -> [B, horizon, N, output_dim]``. ``spatial_attrs [N, A]`` are required.
    ``spatial_widths`` / ``hidden_sizes`` as in Table 1; defaults the traffic column,
    Dense(32-8-4), LSTM(128-128). ``scale_offset`` is the scaling vectors' offset
    (``z = scale_offset + e W``; 1 by default, 0 = the paper's literal form).
    """

    model_name = "hyperst_lstm_d"

    def __init__(self, *, spatial_widths: list[int] = [32, 8, 4],  # noqa: B006 (read only)
                 hidden_sizes: list[int] = [128, 128],  # noqa: B006
                 scale_offset: float = 1.0, **kwargs):
        # read by _make_cell while the base builds the cells (a plain float may be set on a
        # Module before Module.__init__)
        self.scale_offset = float(scale_offset)
        super().__init__(spatial_widths=spatial_widths, hidden_sizes=hidden_sizes, **kwargs)

    def _make_cell(self, d: int, input_size: int, hidden_size: int) -> nn.Module:
        return HyperSTLSTMDCell(d, input_size, hidden_size, self.scale_offset)
