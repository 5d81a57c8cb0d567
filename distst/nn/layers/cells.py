"""Graph-convolutional GRU cells: GCGRU's (ST-UNet Eq. 7, Chebyshev convolution) and DCRNN's
DCGRU (diffusion convolution, Li et al. 2018 Eq. 2-3). See the model modules
(:mod:`distst.nn.gcgru`, :mod:`distst.nn.dcrnn`) for the equations and the speed notes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from distst.errors import DiststError
from distst.nn.layers.diffusion import diffusion_features
from distst.nn.layers.graph import cheb_features, glorot_blocks


def gate_mix(cand: torch.Tensor, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The GRU update ``z . h + (1 - z) . cand`` as one ``lerp`` kernel (one output, no
    temporaries). lerp has no autocast rule, so under bf16 the three are brought to one dtype
    first (the state may still be the fp32 zeros it started from)."""
    dt = torch.promote_types(torch.promote_types(cand.dtype, h.dtype), z.dtype)
    return torch.lerp(cand.to(dt), h.to(dt), z.to(dt))


class GCGRUCell(nn.Module):
    """One GCGRU cell (ST-UNet Eq. 7) with fused Chebyshev convolutions.

    Tensors are node-major: ``x [N, B, input_dim]``, ``h [N, B, hidden_size]``; the graph
    operator ``op`` is the CSR ``L~`` from :func:`distst.nn.layers.graph.cheb_operator` and ``op_t``
    its transpose (or None: slower backward).

    Parameters: ``weight_x [K*input_dim, 3H]`` (gates z | r | h), ``bias [3H]``,
    ``weight_hzr [K*H, 2H]`` (z | r), ``weight_hh [K*H, H]``. PyG-Temporal's GConvGRU has a bias
    on both the X- and the h-convolution of each gate; only their sum matters, so there is one.
    """

    def __init__(self, input_dim: int, hidden_size: int, K: int = 3):
        super().__init__()
        if K < 1:
            raise DiststError(f"gcgru: K={K} must be >= 1 (Chebyshev order; the paper uses 3)")
        self.input_dim, self.hidden_size, self.K = input_dim, hidden_size, K
        h = hidden_size
        self.weight_x = nn.Parameter(torch.empty(K * input_dim, 3 * h))
        self.bias = nn.Parameter(torch.empty(3 * h))
        self.weight_hzr = nn.Parameter(torch.empty(K * h, 2 * h))
        self.weight_hh = nn.Parameter(torch.empty(K * h, h))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        glorot_blocks(self.weight_x, self.input_dim, self.hidden_size)
        glorot_blocks(self.weight_hzr, self.hidden_size, self.hidden_size)
        glorot_blocks(self.weight_hh, self.hidden_size, self.hidden_size)
        nn.init.zeros_(self.bias)

    def features(self, op, op_t, x: torch.Tensor) -> torch.Tensor:
        """The Chebyshev basis ``[N*M, K*F]`` of ``x [N, M, F]`` that this cell's
        convolutions multiply (see :func:`cheb_features`)."""
        return cheb_features(op, op_t, x, self.K)

    def input_gates(self, op, op_t, x: torch.Tensor | None,
                    scale: torch.Tensor | None = None, feats: torch.Tensor | None = None,
                    shape: tuple[int, int] | None = None) -> torch.Tensor:
        """``W_{z,r,h} *_G X + b``: ``x [N, M, input_dim]`` -> ``[N, M, 3H]``.

        M may be time*batch: the encoder convolves a whole known input sequence at once.
        ``scale`` (optional ``[N, 3H]``, HyperST-GCGRU): a per-node channel-wise scale applied
        to the convolution output before the bias, ``diag(z_n) (W *_G X)_n + b`` (HyperST-Net's
        location-based HyperST-Conv, Eq. 4); None (default) leaves the cell unchanged.
        ``feats`` (with ``shape = (N, M)``, ``x`` None): ``x``'s basis already computed -- the
        layer below's state, whose basis that layer computed for its own next step.
        """
        if feats is None:
            n, m, _ = x.shape
            feats = cheb_features(op, op_t, x, self.K)  # [N*M, K*F]
        else:
            n, m = shape
        if scale is None:
            return torch.addmm(self.bias, feats, self.weight_x).view(n, m, 3 * self.hidden_size)
        conv = (feats @ self.weight_x).view(n, m, 3 * self.hidden_size)
        return torch.addcmul(self.bias, conv, scale[:, None, :])  # [N, 1, 3H] over M

    def recur(self, op, op_t, xg: torch.Tensor, h: torch.Tensor,
              scale_hzr: torch.Tensor | None = None,
              scale_hh: torch.Tensor | None = None,
              feats_h: torch.Tensor | None = None) -> torch.Tensor:
        """The state update given the input part ``xg [N, B, 3H]`` and ``h [N, B, H]``.

        ``scale_hzr [N, 2H]`` / ``scale_hh [N, H]`` (optional, HyperST-GCGRU): per-node
        channel-wise scales of the hidden convolutions ``U_{z,r} *_G h`` / ``U_h *_G (r . h)``.
        ``feats_h``: ``h``'s basis (:meth:`features`) when the caller has it already.
        """
        n, b, hs = h.shape
        if feats_h is None:
            feats_h = cheb_features(op, op_t, h, self.K)
        hzr = (feats_h @ self.weight_hzr).view(n, b, 2 * hs)
        if scale_hzr is not None:
            hzr = hzr * scale_hzr[:, None, :]  # [N, 1, 2H] over the batch
        # split, not slices: a slice's backward writes into a zero-filled tensor of the whole
        # input per slice (96 fills of [N, B, 3H] per step at N = 1,026), split's backward is
        # one concatenation
        xzr, xh = xg.split((2 * hs, hs), dim=-1)
        z, r = torch.sigmoid(xzr + hzr).split(hs, dim=-1)  # [N, B, H] each
        hc = (cheb_features(op, op_t, r * h, self.K) @ self.weight_hh).view(n, b, hs)
        if scale_hh is not None:
            hc = hc * scale_hh[:, None, :]
        cand = torch.tanh(xh + hc)
        return gate_mix(cand, h, z)

    def forward(self, op, op_t, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step: ``x [N, B, input_dim]``, ``h [N, B, H]`` -> new ``h [N, B, H]``."""
        return self.recur(op, op_t, self.input_gates(op, op_t, x), h)

    @torch.no_grad()
    def load_from_gconv_gru(self, ref: nn.Module) -> None:
        """Copy weights from a PyG-Temporal-style GConvGRU (six ChebConv: conv_{x,h}_{z,r,h}).

        ChebConv keeps ``lins[k].weight`` as ``[out, in]``; distst stacks ``weight.T`` blocks
        row-wise by order k and column-wise by gate.
        """
        h, fin, K = self.hidden_size, self.input_dim, self.K
        for g, gate in enumerate("zrh"):
            cx, ch = getattr(ref, f"conv_x_{gate}"), getattr(ref, f"conv_h_{gate}")
            if len(cx.lins) != K or len(ch.lins) != K:
                raise DiststError(f"gcgru: reference cell has K={len(cx.lins)}, this cell K={K}")
            for k in range(K):
                self.weight_x[k * fin:(k + 1) * fin, g * h:(g + 1) * h] = cx.lins[k].weight.T
                if gate == "h":
                    self.weight_hh[k * h:(k + 1) * h, :] = ch.lins[k].weight.T
                else:
                    self.weight_hzr[k * h:(k + 1) * h, g * h:(g + 1) * h] = ch.lins[k].weight.T
            bias = torch.zeros(h)
            for conv in (cx, ch):
                if conv.bias is not None:
                    bias += conv.bias
            self.bias[g * h:(g + 1) * h] = bias


#: ``lambda_max`` choices of the Chebyshev models besides a number, and their default. 2, not
#: the papers' exact value (ST-UNet Eq. 2, STGCN): on Los-loop (lambda_max 1.71) both give avg
#: MAE 4.105 over 3 seeds, PEMS and large road graphs have lambda_max at or within 1% of 2,
#: and the eigen-solve costs minutes at 1M sensors (benchmarks/RESULTS.md, "lambda_max: 2 or
#: exact"). A documented deviation; ``lambda_max: exact`` restores the papers' scaling.


class DCGRUCell(nn.Module):
    """One DCGRU cell (DCRNN Eq. 4, Sec. 2.3) with fused diffusion convolutions.

    Node-major tensors: ``x [N, B, input_dim]``, ``h [N, B, hidden_size]``; ``supports`` is
    the list of ``(P, P^T)`` pairs from :class:`DiffusionOperators`.

    Parameters (J = 1 + num_supports * K diffusion blocks): ``weight_x [J*input_dim, 3H]``
    (r | u | C), ``weight_hru [J*H, 2H]`` (r | u), ``weight_hc [J*H, H]``, ``bias [3H]``.
    ``weight_x`` rows with ``weight_hru`` (resp. ``weight_hc``) are the input and state rows of
    the paper's single ``Theta`` over ``[X, H]``: the same parameters, split. Initialisation as
    the authors' code: Glorot-uniform over the whole ``Theta`` of a convolution, gate biases 1
    ("start by neither resetting nor updating"), candidate bias 0.
    """

    def __init__(self, input_dim: int, hidden_size: int, K: int = 2, num_supports: int = 2):
        super().__init__()
        if K < 1 or num_supports < 1:
            raise DiststError(f"dcrnn: K={K} (max_diffusion_step) and num_supports="
                              f"{num_supports} must be >= 1 (the paper uses K=2, 2 directions)")
        self.input_dim, self.hidden_size, self.K = input_dim, hidden_size, K
        self.num_blocks = 1 + num_supports * K
        j, h = self.num_blocks, hidden_size
        self.weight_x = nn.Parameter(torch.empty(j * input_dim, 3 * h))
        self.weight_hru = nn.Parameter(torch.empty(j * h, 2 * h))
        self.weight_hc = nn.Parameter(torch.empty(j * h, h))
        self.bias = nn.Parameter(torch.empty(3 * h))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        j, h, f = self.num_blocks, self.hidden_size, self.input_dim
        fan_in = j * (f + h)  # rows of the paper's Theta over [X, H]
        with torch.no_grad():
            for out, w_x, w_h in ((2 * h, self.weight_x[:, :2 * h], self.weight_hru),
                                  (h, self.weight_x[:, 2 * h:], self.weight_hc)):
                a = math.sqrt(6.0 / (fan_in + out))
                w_x.uniform_(-a, a)
                w_h.uniform_(-a, a)
            self.bias[:2 * h].fill_(1.0)
            self.bias[2 * h:].zero_()

    def features(self, supports, x: torch.Tensor) -> torch.Tensor:
        """The diffusion basis ``[N*M, J*F]`` of ``x [N, M, F]`` (:func:`diffusion_features`)."""
        return diffusion_features(supports, x, self.K)

    def input_gates(self, supports, x: torch.Tensor | None, feats: torch.Tensor | None = None,
                    shape: tuple[int, int] | None = None) -> torch.Tensor:
        """The input parts ``Theta_{r,u,C}^X *_G X`` (no bias): ``[N, M, F] -> [N, M, 3H]``.

        M may be time*batch: the encoder convolves a whole known input sequence at once. The
        bias and any HyperST scale act on the whole convolution (input + state part), so they
        are applied in :meth:`recur`. ``feats`` / ``shape``: as :meth:`GCGRUCell.input_gates`.
        """
        if feats is None:
            n, m, _ = x.shape
            feats = diffusion_features(supports, x, self.K)  # [N*M, J*F]
        else:
            n, m = shape
        return (feats @ self.weight_x).view(n, m, 3 * self.hidden_size)

    def recur(self, supports, xg: torch.Tensor, h: torch.Tensor,
              scale_ru: torch.Tensor | None = None,
              scale_c: torch.Tensor | None = None,
              feats_h: torch.Tensor | None = None) -> torch.Tensor:
        """The state update given the input part ``xg [N, B, 3H]`` and ``h [N, B, H]``.

        ``scale_ru [N, 2H]`` / ``scale_c [N, H]`` (optional, HyperST-DCGRU): per-node
        channel-wise scales of the gate / candidate diffusion convolutions, applied to the
        convolution output before the bias (HyperST-Net Eq. 4, location-based). None (default)
        is plain DCGRU.
        """
        n, b, hs = h.shape
        # split, not slices: see GCGRUCell.recur
        xru, xc = xg.split((2 * hs, hs), dim=-1)
        bru, bc = self.bias.split((2 * hs, hs))
        if feats_h is None:  # h's basis, unless the caller has it (GCGRUCell.recur)
            feats_h = diffusion_features(supports, h, self.K)
        ru = xru + (feats_h @ self.weight_hru).view(n, b, 2 * hs)  # [N, B, 2H]
        if scale_ru is not None:
            ru = ru * scale_ru[:, None, :]  # [N, 1, 2H] over the batch
        r, u = torch.sigmoid(ru + bru).split(hs, dim=-1)
        c = xc + (diffusion_features(supports, r * h, self.K)
                  @ self.weight_hc).view(n, b, hs)  # [N, B, H]
        if scale_c is not None:
            c = c * scale_c[:, None, :]
        c = torch.tanh(c + bc)
        return gate_mix(c, h, u)

    def forward(self, supports, x: torch.Tensor, h: torch.Tensor,
                scale_ru: torch.Tensor | None = None,
                scale_c: torch.Tensor | None = None) -> torch.Tensor:
        """One step: ``x [N, B, input_dim]``, ``h [N, B, H]`` -> new ``h [N, B, H]``."""
        return self.recur(supports, self.input_gates(supports, x), h, scale_ru, scale_c)
