"""STGCN: Spatio-Temporal Graph Convolutional Networks (Yu, Yin, Zhu, IJCAI 2018), Cheb variant.

Architecture (paper Sec. 3.3-3.5, Fig. 2)::

    x -> ST-Conv block -> ST-Conv block -> output layer -> [B, horizon, N, output_dim]

    ST-Conv block (Eq. 8):  v^{l+1} = Gamma_1^l *_T ReLU(Theta^l *_G (Gamma_0^l *_T v^l))
      1. temporal gated convolution (Eq. 7), kernel Kt, c_in -> c[0]:
         ``Gamma *_T Y = (P + res) (.) sigma(Q)`` with ``[P Q]`` the 1-D convolution of Y over
         time (GLU); the time axis shrinks by Kt - 1.
      2. Chebyshev graph convolution (Eq. 3, 5), order Ks, c[0] -> c[1], then ReLU:
         ``Theta *_G x = sum_{k<Ks} theta_k T_k(L~) x`` with ``L~ = 2L/lambda_max - I``.
      3. temporal convolution, kernel Kt, c[1] -> c[2] (GLU per the paper's text "two temporal
         gated convolution layers"; ``second_temporal_act="relu"`` gives the authors' code).
      4. layer normalisation, 5. dropout.
    The channels (c[0], c[1], c[2]) default to the paper's (64, 16, 64) (Sec. 4.3).

Residual connections as in the authors' reference code: each temporal convolution adds its
input's last ``T - Kt + 1`` steps, each graph convolution its input, with channels aligned by a
1x1 convolution (fewer outputs than inputs), zero padding (more) or identity (equal).

Output layer (paper Sec. 3.5 / reference code): a temporal GLU convolution whose kernel spans all
remaining ``input_len - 2 * num_blocks * (Kt - 1)`` steps (so one step is left), layer norm, a
1x1 convolution + ReLU and a 1x1 convolution to ``horizon * output_dim`` channels. Deviation:
the paper predicts ONE step and forecasts further by feeding predictions back (iterative
single-step); like BasicTS and LargeST this implementation emits all ``horizon`` steps at once
(multi-output), which trains in one pass and avoids compounding errors.

Layer norm -- deviation: the paper normalises over ``[N, C]`` (all nodes and channels of a step)
with an ``[N, C]`` affine. That couples every node of the graph through the normalisation
statistics (a part, which sees only its local nodes, would normalise differently from the full
graph) and its affine is a per-node parameter (breaking node-permutation equivariance and the
"no per-node parameters" rule). distst normalises each node over its channels only, with a
per-channel affine ``[C]`` (``nn.LayerNorm(C)``): a node's output depends only on its
receptive field, so a split graph is exact for inner nodes given a deep enough halo
(``num_blocks * (Ks - 1)`` hops).

Dropout defaults to 0: the paper gives no rate (the reference code trains with keep_prob 1).

Speed: activations are node-major ``[N, T, B, C]`` throughout. A temporal convolution is one
matmul over the unfolded time windows ``[N*T'*B, C*Kt]``. A graph convolution folds time,
batch and channels into the columns of the sparse products ``L~ [N, N] @ X [N, T*B*C]``
(CSR, precomputed transpose for the backward), on whichever side of the weight has fewer
channels: expand-then-project (``[T_0 X | ... ] @ Theta``) when ``c_in <= c_out``, else
project-then-recurse with Clenshaw's algorithm (``sum_k T_k(L~) (X theta_k)``, mathematically
the same) -- the 64 -> 16 convolution of each block thus runs its sparse products on 16 channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distst.errors import DiststError
from distst.nn.layers import graph as graphops
from distst.nn.base import GraphModel
from distst.nn.layers.graph import (
    cheb_features,
    DEFAULT_LAMBDA_MAX,
    GraphOperator,
)

_ACTS = ("glu", "relu")


class Align(nn.Module):
    """Residual channel alignment of the reference code: 1x1 conv, zero padding or identity.

    Every case is a linear map ``x @ A^T (+ b)``; :meth:`matrix` returns ``A [c_out, c_in]``
    (the learned 1x1 kernel when ``c_in > c_out``, else a constant identity / zero-padding
    matrix) so the convolutions can fold the residual into their own kernel (one matmul, no
    extra pass over the activations, no sliced-residual backward).
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.c_in, self.c_out = c_in, c_out
        self.proj = nn.Linear(c_in, c_out) if c_in > c_out else None
        if self.proj is None:
            self.register_buffer("eye", torch.eye(c_out, c_in), persistent=False)

    def matrix(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.proj is not None:
            return self.proj.weight, self.proj.bias
        return self.eye, None


class TemporalConv(nn.Module):
    """Temporal convolution over a node-major ``[N, T, B, c_in]`` -> ``[N, T-Kt+1, B, c_out]``.

    ``act="glu"``: Eq. (7), ``(P + res) * sigmoid(Q)``; ``act="relu"``: ``relu(conv + res)``,
    ``res`` = the aligned input at the window's last step. The convolution is one linear map of
    the unfolded time windows (input column ``i*Kt + k`` is channel i at relative step k),
    initialised like ``nn.Conv2d`` (fan-in ``Kt * c_in``); the residual is linear in the last
    step, so it is added to the kernel's last-tap columns (of the P half) instead of computed
    separately -- the same function and the same gradients.
    """

    def __init__(self, Kt: int, c_in: int, c_out: int, act: str = "glu"):
        super().__init__()
        if act not in _ACTS:
            raise DiststError(f"stgcn: temporal activation {act!r} is not supported; "
                              f"choose one of {list(_ACTS)}")
        self.Kt, self.c_in, self.c_out, self.act = Kt, c_in, c_out, act
        self.conv = nn.Linear(Kt * c_in, 2 * c_out if act == "glu" else c_out)
        self.align = Align(c_in, c_out)

    def kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The effective ``[rows, c_in*Kt]`` kernel and bias with the residual folded in."""
        a_w, a_b = self.align.matrix()  # [c_out, c_in]
        rows = self.conv.weight.shape[0]
        # [c_out, c_in] -> [c_out, c_in, Kt] (only tap Kt-1) -> [rows, c_in*Kt] (P half only)
        res = F.pad(a_w.unsqueeze(-1), (self.Kt - 1, 0)).reshape(self.c_out, -1)
        w = self.conv.weight + F.pad(res, (0, 0, 0, rows - self.c_out))
        b = self.conv.bias if a_b is None else self.conv.bias + F.pad(a_b, (0, rows - self.c_out))
        return w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, b, c = x.shape
        # [N, T, B, c_in] -> windows [N, T', B, c_in, Kt] (a view) -> [N, T', B, c_in*Kt]: the
        # receptive field of each output step. unfold's backward is one accumulation kernel,
        # unlike Kt slices whose backward each zero-fills an input-sized gradient.
        win = x.unfold(1, self.Kt, 1).reshape(n, t - self.Kt + 1, b, c * self.Kt)
        y = F.linear(win, *self.kernel())
        if self.act == "glu":
            return F.glu(y, dim=-1)  # P * sigmoid(Q), the residual already inside P
        return torch.relu(y)


class ChebConv(nn.Module):
    """Chebyshev graph convolution (Eq. 5): node-major ``[N, M, c_in]`` -> ``[N, M, c_out]``.

    ``weight [Ks*c_in, c_out]`` stacks ``theta_k`` row-wise by order k (the layout of
    :func:`distst.nn.gcgru.cheb_features`); no activation. ``forward(..., extra0, extra_bias)``
    adds ``extra0 [c_in, c_out]`` to ``theta_0`` (``T_0 = I``: a residual ``x @ extra0``).
    """

    def __init__(self, c_in: int, c_out: int, Ks: int):
        super().__init__()
        self.c_in, self.c_out, self.Ks = c_in, c_out, Ks
        self.weight = nn.Parameter(torch.empty(Ks * c_in, c_out))
        self.bias = nn.Parameter(torch.zeros(c_out))
        bound = (6.0 / (c_in + c_out)) ** 0.5  # Glorot per theta_k block, like PyG ChebConv
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, op, op_t, x: torch.Tensor, extra0: torch.Tensor | None = None,
                extra_bias: torch.Tensor | None = None) -> torch.Tensor:
        n, m, _ = x.shape
        K, ci, co = self.Ks, self.c_in, self.c_out
        w, bias = self.weight, self.bias
        if extra0 is not None:
            w = torch.cat([w[:ci] + extra0, w[ci:]])
        if extra_bias is not None:
            bias = bias + extra_bias
        if co >= ci or K == 1:
            feats = cheb_features(op, op_t, x, K)  # [N*M, K*c_in]
            return torch.addmm(bias, feats, w).view(n, m, co)
        # on a split graph with a deep enough halo: one fetch of x (every Y_k is row-wise in
        # x), then the K-1 products locally on shrinking row sets; else each fetches its own
        chain = graphops.chained_operators(op, op_t, K - 1)
        if chain is not None:
            x = graphops.fetch_boundary(op, x.reshape(n, m * ci)).view(n, m, ci)
        ops = iter(chain or [(op, op_t)] * (K - 1))
        # Clenshaw: S = sum_k T_k(L~) Y_k with Y_k = X theta_k, via
        # b_k = Y_k + 2 L~ b_{k+1} - b_{k+2} (k = K-1..1), S = Y_0 + L~ b_1 - b_2.
        w = w.view(K, ci, co).permute(1, 0, 2).reshape(ci, K * co)
        # [N*M, c_in] @ [c_in, K*c_out] -> [N, M, K, c_out] -> K x [N, M*c_out]
        y = (x.reshape(n * m, ci) @ w).view(n, m, K, co).permute(2, 0, 1, 3)
        ys = y.reshape(K, n, m * co).unbind(0)  # unbind: one stacked backward, no zero fills
        b1, b2 = ys[K - 1], None
        for k in range(K - 2, 0, -1):
            nxt = ys[k] + 2.0 * graphops.spmm(*next(ops), b1)
            if b2 is not None:
                nxt = nxt - b2
            b1, b2 = nxt, b1
        out = ys[0] + graphops.spmm(*next(ops), b1)
        if b2 is not None:
            out = out - b2
        return out.view(n, m, co) + bias


class GraphConvLayer(nn.Module):
    """Spatial layer of an ST-Conv block: ``relu(Theta *_G x + align(x))`` (reference code);
    the residual is folded into ``theta_0``."""

    def __init__(self, c_in: int, c_out: int, Ks: int):
        super().__init__()
        self.conv = ChebConv(c_in, c_out, Ks)
        self.align = Align(c_in, c_out)

    def forward(self, op, op_t, x: torch.Tensor) -> torch.Tensor:
        n, t, b, c = x.shape
        flat = x.reshape(n, t * b, c)  # [N, T*B, c_in]: time and batch become columns
        a_w, a_b = self.align.matrix()  # [c_out, c_in]
        y = self.conv(op, op_t, flat, a_w.t(), a_b)
        return torch.relu(y).view(n, t, b, -1)


class STConvBlock(nn.Module):
    """Eq. (8): temporal GLU -> Chebyshev graph conv + ReLU -> temporal conv -> LN -> dropout."""

    def __init__(self, Kt: int, Ks: int, c_in: int, channels: list[int], act2: str,
                 dropout: float):
        super().__init__()
        c0, c1, c2 = channels
        self.tconv1 = TemporalConv(Kt, c_in, c0, "glu")
        self.gconv = GraphConvLayer(c0, c1, Ks)
        self.tconv2 = TemporalConv(Kt, c1, c2, act2)
        self.norm = nn.LayerNorm(c2)  # per node over channels: see the module docstring
        self.dropout = nn.Dropout(dropout)

    def forward(self, op, op_t, x: torch.Tensor) -> torch.Tensor:
        x = self.tconv1(x)
        x = self.gconv(op, op_t, x)
        x = self.tconv2(x)
        return self.dropout(self.norm(x))


class STGCN(GraphModel):
    """STGCN(Cheb) forecaster (Yu, Yin, Zhu, IJCAI 2018), multi-output form; see the module doc.

    ``forward(x [B, input_len, N, input_dim], targets=None, teacher_forcing=0.0)
    -> [B, horizon, N, output_dim]``. Not a sequence-to-sequence model: ``targets`` and
    ``teacher_forcing`` are validated (so a bad call fails the same way for every model) and
    otherwise ignored. Defaults: Kt = Ks = 3, two blocks of (64, 16, 64) channels (paper Sec.
    4.3), output layer of ``output_hidden = 128`` channels (BasicTS/LargeST), sym Laplacian with
    lambda_max = 2. ``input_len`` must exceed ``2 * num_blocks * (Kt - 1)`` (8 by default).
    """

    OPERATOR_READS = True
    #: a filter's products in a row on one input (distst.nn.registry.boundary_depth)
    FILTER_CHAIN = ("Ks", -1)

    model_name = "stgcn"
    GRAPH = GraphOperator.GRAPH

    def __init__(self, *, Kt: int = 3, Ks: int = 3,
                 channels: list[int] = [64, 16, 64],  # noqa: B006 (copied, never mutated)
                 num_blocks: int = 2, output_hidden: int = 128, second_temporal_act: str = "glu",
                 dropout: float = 0.0, normalization: str = "sym",
                 lambda_max: float | str = DEFAULT_LAMBDA_MAX, **sizes):
        super().__init__(**sizes)
        channels = [int(c) for c in channels]
        self.check_sizes(Kt=Kt, Ks=Ks, num_blocks=num_blocks, output_hidden=output_hidden)
        input_dim, output_dim = self.input_dim, self.output_dim
        input_len, horizon = self.input_len, self.horizon
        if len(channels) != 3 or min(channels) < 1:
            raise DiststError(f"stgcn: channels={channels} must be three sizes >= 1 (temporal, "
                              "graph, temporal channels of an ST-Conv block; the paper uses "
                              "[64, 16, 64])")
        if second_temporal_act not in _ACTS:
            raise DiststError(f"stgcn: second_temporal_act={second_temporal_act!r} is not "
                              f"supported; choose one of {list(_ACTS)}")
        if not 0.0 <= dropout < 1.0:
            raise DiststError(f"stgcn: dropout={dropout} must be in [0, 1)")
        shrink = 2 * num_blocks * (Kt - 1)
        self.out_steps = input_len - shrink
        if self.out_steps < 1:
            raise DiststError(
                f"stgcn: input_len={input_len} is too short: each of the {num_blocks} ST-Conv "
                f"blocks shortens the time axis by 2*(Kt-1)={2 * (Kt - 1)} steps, so input_len "
                f"must be >= {shrink + 1}; use a longer input window (data.input_len), a "
                "smaller Kt or fewer num_blocks")
        self.graph = self.chebyshev(normalization, lambda_max)
        blocks = []
        c_in = input_dim
        for _ in range(num_blocks):
            blocks.append(STConvBlock(Kt, Ks, c_in, channels, second_temporal_act, dropout))
            c_in = channels[2]
        self.blocks = nn.ModuleList(blocks)
        # Output layer: one temporal GLU conv over all remaining steps, LN, two 1x1 convs.
        self.out_tconv = TemporalConv(self.out_steps, c_in, output_hidden, "glu")
        self.out_norm = nn.LayerNorm(output_hidden)
        self.out_fc1 = nn.Linear(output_hidden, output_hidden)
        self.out_fc2 = nn.Linear(output_hidden, horizon * output_dim)
        self.out_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None,
                teacher_forcing: float = 0.0) -> torch.Tensor:
        self.check_batch(x, targets, teacher_forcing)  # validated, otherwise unused
        b, _, n, _ = x.shape
        op, op_t = self.graph()
        h = x.permute(2, 1, 0, 3).contiguous()  # [B, T, N, C] -> node-major [N, T, B, C]
        for block in self.blocks:
            h = block(op, op_t, h)  # [N, T - 2(Kt-1), B, C]
        h = self.out_tconv(h)  # [N, 1, B, output_hidden]
        h = self.out_norm(h)
        h = self.out_dropout(torch.relu(self.out_fc1(h)))
        y = self.out_fc2(h)  # [N, 1, B, horizon*output_dim]
        # [N, 1, B, H*O] -> [N, B, H, O] -> [B, H, N, O]
        return y.view(n, b, self.horizon, self.output_dim).permute(1, 2, 0, 3).contiguous()
