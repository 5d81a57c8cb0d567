"""Masked MAE / RMSE / MAPE as differentiable losses and as exact streaming accumulators.

Masking (as in DCRNN, Li et al. ICLR 2018, ``masked_mae_loss``): a target entry is *missing*
and excluded from every metric when it is NaN or equal to ``null_value``. ``null_value`` is
NaN by default (only NaN is missing, the distst convention); ``null_value=0.0`` also treats
zeros as missing (the convention of METR-LA/PEMS-BAY, where a 0 speed means a dead sensor).

MAPE additionally excludes targets with ``|y| < mape_eps`` (default ``MAPE_EPS = 1e-3``):
``|e / y|`` explodes as ``y -> 0``, so one near-zero reading (a 0 flow at night) would
otherwise dominate the average. 1e-3 is far below any real reading in the usual units (mph,
vehicles per 5 min, occupancy %) so genuine small values still count; use ``null_value=0.0``
or a larger ``mape_eps`` for a stricter rule. MAPE is reported in percent everywhere.

All means are over observed entries only: ``sum(err * mask) / sum(mask)``. With nothing
observed the losses return 0 with a zero (not NaN) gradient.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from distst.errors import DiststError

MAPE_EPS = 1e-3
NAN = float("nan")


def _as_tensor(a) -> torch.Tensor:
    return a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))


def observed_mask(target: torch.Tensor, null_value: float = NAN) -> torch.Tensor:
    """Boolean mask of entries that count: not NaN and (if ``null_value`` is not NaN) != it."""
    mask = ~torch.isnan(target)
    if not math.isnan(null_value):
        mask &= target != null_value
    return mask


def _masked_parts(pred, target, null_value: float, mape: bool, mape_eps: float):
    """(error, mask) with missing targets replaced by 1 so no NaN/inf ever enters the graph.

    Filling the target (rather than masking the error afterwards) matters for gradients:
    ``d|e/y|/dpred = 1/y`` would be NaN/inf at a missing y and ``0 * NaN = NaN``.
    """
    pred, target = _as_tensor(pred), _as_tensor(target)
    if pred.shape != target.shape:
        raise DiststError(
            f"metric: prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}"
        )
    mask = observed_mask(target, null_value)
    if mape:
        mask &= target.abs() >= mape_eps
    safe_t = torch.where(mask, target, torch.ones_like(target))
    err = torch.where(mask, pred - safe_t, torch.zeros_like(pred))
    return err, safe_t, mask


def masked_mae(pred, target, null_value: float = NAN) -> torch.Tensor:
    """Mean |pred - y| over observed targets (torch scalar, differentiable; 0 if none)."""
    total, count = masked_error_sum(pred, target, "mae", null_value)
    return total / count.clamp(min=1)


def masked_mse(pred, target, null_value: float = NAN) -> torch.Tensor:
    """Mean (pred - y)^2 over observed targets."""
    total, count = masked_error_sum(pred, target, "mse", null_value)
    return total / count.clamp(min=1)


def masked_rmse(pred, target, null_value: float = NAN) -> torch.Tensor:
    """sqrt of :func:`masked_mse`; the gradient at 0 is 0 instead of sqrt's inf * 0 = NaN."""
    mse = masked_mse(pred, target, null_value)
    pos = mse > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, mse, torch.ones_like(mse))), mse * 0)


def masked_mape(pred, target, null_value: float = NAN, mape_eps: float = MAPE_EPS) -> torch.Tensor:
    """Mean |(pred - y) / y| in PERCENT over observed targets with ``|y| >= mape_eps``."""
    err, safe_t, mask = _masked_parts(pred, target, null_value, True, mape_eps)
    return 100.0 * (err / safe_t).abs().sum() / mask.sum().clamp(min=1)


def masked_error_sum(pred, target, kind: str = "mae", null_value: float = NAN,
                     delta: float = 1.0, scale=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum of per-entry losses, count of observed entries)`` for a training loss.

    ``kind``: ``mae`` (|e|), ``mse`` (e^2), ``mae_mse`` ((|e| + e^2) / 2, the mean of the L1
    and L2 losses that ST-UNet trains with) or ``huber`` (``e^2 / 2`` for ``|e| <= delta``,
    ``delta * (|e| - delta / 2)`` beyond: torch's ``HuberLoss`` per entry). Sums rather than
    means so that shard mode can add counts over workers and reproduce the whole-graph mean
    exactly.

    ``scale`` (optional, broadcastable to ``pred``: the scaler's std ``[C]`` or ``[N, C]``)
    divides the error first, ``e / scale = (pred - m) / scale - (y - m) / scale``: the loss on
    the normalised scale. Missing entries are still read from the unscaled ``target``.
    """
    err, _, mask = _masked_parts(pred, target, null_value, False, 0.0)
    if scale is not None:
        err = err / _as_tensor(scale).to(err)
    if kind == "mae":
        total = err.abs().sum()
    elif kind == "mse":
        total = (err * err).sum()
    elif kind == "mae_mse":
        total = 0.5 * (err.abs().sum() + (err * err).sum())
    elif kind == "huber":
        a = err.abs()
        total = torch.where(a <= delta, 0.5 * err * err, delta * (a - 0.5 * delta)).sum()
    else:
        raise DiststError(f"train.loss: unknown loss {kind!r}; choose one of mae, mse, mae_mse, "
                          "huber")
    return total, mask.sum()


class StreamingMetrics:
    """Exact masked MAE/RMSE/MAPE per horizon step, accumulated over batches (and workers).

    Per step ``h`` it keeps float64 sums on the CPU: ``sum|e|``, ``sum e^2``, ``sum|e/y|``,
    ``count`` (observed targets) and ``count_mape`` (observed with ``|y| >= mape_eps``).
    Sums (not means) are kept so that batches of any size, padded last batches and workers
    with different amounts of data combine exactly: all-reduce :meth:`state` with SUM and
    :meth:`merge_state` it (or :meth:`from_state`).

    The "avg" numbers are over all steps pooled: ``total sum / total count`` (not the mean of
    the per-step means), i.e. the metric over every observed target in the horizon, which is
    what a one-shot evaluation over the whole ``[S, H, N, C]`` array gives; the two differ only
    when steps have different numbers of observed targets.
    """

    _FIELDS = ("abs", "sq", "ape", "count", "count_mape")

    def __init__(self, horizon: int, null_value: float = NAN, mape_eps: float = MAPE_EPS) -> None:
        self.horizon = int(horizon)
        self.null_value = float(null_value)
        self.mape_eps = float(mape_eps)
        self._acc = torch.zeros(len(self._FIELDS), self.horizon, dtype=torch.float64)  # [5, H]

    # -- accumulation --------------------------------------------------------------------
    @torch.no_grad()
    def update(self, pred, target) -> None:
        """Add a batch: ``pred``/``target`` ``[B, H, ...]`` (normally ``[B, H, N, C]``)."""
        pred = _as_tensor(pred).detach().to("cpu", torch.float64)
        target = _as_tensor(target).detach().to("cpu", torch.float64)
        if pred.shape != target.shape or pred.ndim < 2 or pred.shape[1] != self.horizon:
            raise DiststError(
                f"StreamingMetrics(horizon={self.horizon}): got prediction {tuple(pred.shape)} "
                f"and target {tuple(target.shape)}; both must be [B, {self.horizon}, N, C]"
            )
        # [B, H, ...] -> [H, B * rest] so every per-step sum is one reduction over dim 1.
        p = pred.transpose(0, 1).reshape(self.horizon, -1)
        t = target.transpose(0, 1).reshape(self.horizon, -1)
        mask = observed_mask(t, self.null_value)
        mmask = mask & (t.abs() >= self.mape_eps)
        err = torch.where(mask, p - t, torch.zeros_like(p))
        ape = torch.where(mmask, (p - t).abs() / torch.where(mmask, t.abs(), 1.0), 0.0)
        self._acc[0] += err.abs().sum(1)
        self._acc[1] += (err * err).sum(1)
        self._acc[2] += ape.sum(1)
        self._acc[3] += mask.sum(1)
        self._acc[4] += mmask.sum(1)

    def reset(self) -> None:
        self._acc.zero_()

    # -- distributed merging -------------------------------------------------------------
    def state(self) -> torch.Tensor:
        """Flat float64 ``[5 * H]`` copy of the sums (all-reduce it with SUM)."""
        return self._acc.reshape(-1).clone()

    def merge_state(self, state) -> None:
        """Add another accumulator's :meth:`state` (e.g. another worker's) into this one."""
        st = _as_tensor(state).detach().to("cpu", torch.float64).reshape(-1)
        if st.numel() != self._acc.numel():
            raise DiststError(
                f"StreamingMetrics.merge_state: state of {st.numel()} numbers, expected "
                f"{self._acc.numel()} (5 x horizon {self.horizon}); "
                "use the same horizon on both sides"
            )
        self._acc += st.reshape(self._acc.shape)

    @classmethod
    def from_state(
        cls, state, horizon: int, null_value: float = NAN, mape_eps: float = MAPE_EPS
    ) -> StreamingMetrics:
        """An accumulator holding ``state`` (e.g. the all-reduced sum of every worker's)."""
        obj = cls(horizon, null_value, mape_eps)
        obj.merge_state(state)
        return obj

    # -- results -------------------------------------------------------------------------
    @staticmethod
    def _ratios(a_abs, a_sq, a_ape, cnt, cnt_m):
        """mae, rmse, mape(%) from sums; NaN where nothing was observed (nothing to score)."""
        nan = torch.full_like(cnt, NAN)
        mae = torch.where(cnt > 0, a_abs / cnt.clamp(min=1), nan)
        rmse = torch.where(cnt > 0, torch.sqrt(a_sq / cnt.clamp(min=1)), nan)
        mape = torch.where(cnt_m > 0, 100.0 * a_ape / cnt_m.clamp(min=1), nan)
        return mae, rmse, mape

    def compute(self) -> dict:
        """Per-step lists (index h-1 = step h) and pooled averages.

        ``{"mae": [H], "rmse": [H], "mape": [H] (percent), "count": [H],
        "avg": {"mae", "rmse", "mape", "count"}}``; a step with no observed target is NaN.
        """
        a = self._acc
        mae, rmse, mape = self._ratios(a[0], a[1], a[2], a[3], a[4])
        tot = a.sum(1)
        amae, armse, amape = self._ratios(tot[0], tot[1], tot[2], tot[3], tot[4])
        return {
            "mae": mae.tolist(),
            "rmse": rmse.tolist(),
            "mape": mape.tolist(),
            "count": [int(v) for v in a[3].tolist()],
            "avg": {
                "mae": float(amae),
                "rmse": float(armse),
                "mape": float(amape),
                "count": int(tot[3]),
            },
        }

    def report(self, steps=(3, 6, 12), step_minutes: float = 5) -> dict:
        """``{"15min": {"mae", "rmse", "mape"}, ..., "avg": {...}}``; step h = h*step_minutes min.

        Steps beyond the horizon are skipped.
        """
        res = self.compute()
        out = {}
        for h in steps:
            if not 1 <= int(h) <= self.horizon:
                continue
            minutes = h * step_minutes
            key = f"{int(minutes)}min" if float(minutes).is_integer() else f"{minutes:g}min"
            out[key] = {m: res[m][int(h) - 1] for m in ("mae", "rmse", "mape")}
        out["avg"] = {m: res["avg"][m] for m in ("mae", "rmse", "mape")}
        return out
