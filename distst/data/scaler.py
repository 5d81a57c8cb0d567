"""Per-channel (optionally per-node) scalers fitted in chunks on a possibly memory-mapped series.

Both scalers are affine maps ``z = (x - offset) / scale`` with ``offset``/``scale`` of shape
``[C]`` (per channel) or ``[N, C]`` (per node and channel):

* :class:`StandardScaler`: ``offset = mean``, ``scale = std`` (z-score, as in DCRNN, Li et al.
  ICLR 2018, whose ``StandardScaler`` is the reference for traffic forecasting).
* :class:`MinMaxScaler`: ``offset = min``, ``scale = max - min`` (maps the fitted range to [0, 1]).

Statistics use only observed values (NaN = missing) of ``values[:end_step]`` and are computed
chunk by chunk in float64, so a series of many GB is never loaded whole. Chunks are merged with
the parallel variance formula of Chan, Golub & LeVeque (1983), which, unlike a running sum of
squares, does not cancel catastrophically when the mean is large compared with the std.

A zero ``scale`` (a constant channel, or a sensor that reported a single value) becomes 1: the
scaled value is then ``x - offset`` = 0 for the constant itself, which is the right answer, where
dividing by 0 would give NaN/inf and poison every model that sees that input.

Transforms accept numpy arrays and torch tensors; a tensor comes back with its own dtype and
device. Torch is imported lazily so that the fitting logic stays numpy-only.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from distst.errors import DiststError

#: float64 elements per chunk (32 MiB of float64 plus the mask); independent of T.
DEFAULT_CHUNK_ELEMENTS = 2**22


def _default_chunk_steps(values: np.ndarray) -> int:
    per_step = int(np.prod(values.shape[1:])) or 1
    return max(1, DEFAULT_CHUNK_ELEMENTS // per_step)


def _is_torch(arr: Any) -> bool:
    return type(arr).__module__.split(".")[0] == "torch"


class _AffineScaler:
    """Shared machinery: ``transform(x) = (x - offset) / scale`` over ``[..., (N,) C]``."""

    kind = "affine"

    def __init__(self, per_node: bool = False) -> None:
        self.per_node = bool(per_node)
        self.offset: np.ndarray | None = None  # float64 [C] or [N, C]
        self.scale: np.ndarray | None = None  # float64 [C] or [N, C]; never 0
        self.fallback_nodes: list[int] = []

    # -- fitting -------------------------------------------------------------------------
    def fit(self, values: np.ndarray, end_step: int | None = None, chunk_steps: int | None = None):
        """Fit on the observed entries of ``values[:end_step]`` (``values``: ``[T, N, C]``).

        ``chunk_steps`` time steps are read at a time (default: about 4M elements per chunk).
        Returns ``self``.
        """
        if values.ndim != 3:
            raise DiststError(
                f"{type(self).__name__}.fit: values must be [T, N, C], got shape {values.shape}"
            )
        t = values.shape[0]
        end = t if end_step is None else int(end_step)
        if not 0 < end <= t:
            raise DiststError(
                f"{type(self).__name__}.fit: end_step={end_step} outside 1..{t} (T={t}); "
                "pass the end of the training range from train_end_step()"
            )
        chunk = int(chunk_steps) if chunk_steps else _default_chunk_steps(values)
        if chunk < 1:
            raise DiststError(f"{type(self).__name__}.fit: chunk_steps={chunk_steps} must be >= 1")
        self._fit_chunks(values, end, chunk)
        return self

    def _fit_chunks(self, values: np.ndarray, end: int, chunk: int) -> None:
        raise NotImplementedError

    def _finish(self, offset_nc, scale_nc, count_nc, offset_c, scale_c, count_c) -> None:
        """Choose per-node or per-channel stats; zero scale -> 1; unobserved -> fallback/raise."""
        name = type(self).__name__
        if (count_c == 0).any():
            bad = np.flatnonzero(count_c == 0).tolist()
            raise DiststError(
                f"{name}.fit: channel(s) {bad} have no observed value in the training range; "
                "check data.split / the series, or drop those channels from data.input_channels"
            )
        scale_c = np.where(scale_c > 0, scale_c, 1.0)
        if not self.per_node:
            self.offset, self.scale = offset_c, scale_c
            return
        # A sensor with no training observation of a channel gets the channel-wide statistics
        # (it still must be scaled for inference); we warn instead of dropping it silently.
        unseen = count_nc == 0  # [N, C]
        if unseen.any():
            self.fallback_nodes = np.flatnonzero(unseen.any(axis=1)).tolist()
            warnings.warn(
                f"{name}.fit(per_node=True): {len(self.fallback_nodes)} node(s) (first: "
                f"{self.fallback_nodes[:5]}) have no observed training value; using the "
                "channel-wide statistics for them",
                stacklevel=3,
            )
        offset_nc = np.where(unseen, offset_c[None, :], offset_nc)
        scale_nc = np.where(unseen, scale_c[None, :], scale_nc)
        self.offset = offset_nc
        self.scale = np.where(scale_nc > 0, scale_nc, 1.0)

    # -- applying ------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self.offset is None or self.scale is None:
            raise DiststError(
                f"{type(self).__name__} is not fitted; call fit() or from_state_dict() first"
            )

    def params(self, nodes=None, channels=None, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
        """(offset, scale) restricted to ``nodes``/``channels``: ``[C']`` or ``[N', C']``."""
        self._check_fitted()
        off, sc = self.offset, self.scale
        if self.per_node and nodes is not None:
            off, sc = off[np.asarray(nodes)], sc[np.asarray(nodes)]
        if channels is not None:
            ch = np.asarray(channels)
            off, sc = off[..., ch], sc[..., ch]
        return off.astype(dtype), sc.astype(dtype)

    def _apply(self, arr, nodes, channels, inverse: bool):
        off, sc = self.params(nodes, channels, dtype=np.float64)
        if _is_torch(arr):
            import torch

            dt = arr.dtype if arr.is_floating_point() else torch.float32
            off_t = torch.as_tensor(off, dtype=dt, device=arr.device)
            sc_t = torch.as_tensor(sc, dtype=dt, device=arr.device)
            return arr * sc_t + off_t if inverse else (arr - off_t) / sc_t
        a = np.asarray(arr)
        dt = a.dtype if np.issubdtype(a.dtype, np.floating) else np.float32
        off, sc = off.astype(dt), sc.astype(dt)
        return (a * sc + off) if inverse else (a - off) / sc

    def transform(self, arr, nodes=None, channels=None):
        """Scale ``arr`` of shape ``[..., C']`` (global) or ``[..., N', C']`` (per node).

        ``nodes``/``channels`` pick the rows/columns of the statistics that ``arr`` holds
        (default: all). NaN stays NaN. Numpy in -> numpy out; tensor in -> same dtype/device.
        """
        return self._apply(arr, nodes, channels, inverse=False)

    def inverse_transform(self, arr, nodes=None, channels=None):
        """Undo :meth:`transform` (same shape rules)."""
        return self._apply(arr, nodes, channels, inverse=True)

    # -- serialisation -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Plain JSON-serialisable dict (lists of floats) that goes into checkpoints."""
        self._check_fitted()
        return {
            "type": self.kind,
            "per_node": self.per_node,
            "offset": self.offset.tolist(),
            "scale": self.scale.tolist(),
            "fallback_nodes": list(self.fallback_nodes),
        }

    @classmethod
    def from_state_dict(cls, state: dict):
        if state.get("type") != cls.kind:
            raise DiststError(
                f"scaler state has type {state.get('type')!r} but {cls.__name__} expects "
                f"{cls.kind!r}; load it with scaler_from_state_dict()"
            )
        obj = cls(per_node=bool(state["per_node"]))
        obj.offset = np.asarray(state["offset"], dtype=np.float64)
        obj.scale = np.asarray(state["scale"], dtype=np.float64)
        obj.fallback_nodes = list(state.get("fallback_nodes", []))
        if obj.offset.shape != obj.scale.shape or obj.offset.ndim != (2 if obj.per_node else 1):
            raise DiststError(
                f"{cls.__name__} state: offset {obj.offset.shape} / scale {obj.scale.shape} do not "
                f"fit per_node={obj.per_node}; the checkpoint is corrupt or from another version"
            )
        return obj

    def __repr__(self) -> str:
        shape = None if self.offset is None else tuple(self.offset.shape)
        return f"{type(self).__name__}(per_node={self.per_node}, shape={shape})"


class StandardScaler(_AffineScaler):
    """z-score ``(x - mean) / std`` per channel (or per node and channel, ``per_node=True``).

    ``std`` is the population std (ddof=0), as numpy's ``.std()`` in DCRNN's scaler.
    ``mean``/``std`` alias ``offset``/``scale``.
    """

    kind = "standard"

    @property
    def mean(self) -> np.ndarray | None:
        return self.offset

    @property
    def std(self) -> np.ndarray | None:
        return self.scale

    def _fit_chunks(self, values: np.ndarray, end: int, chunk: int) -> None:
        n, c = values.shape[1], values.shape[2]
        # Running (count, mean, M2) per node and channel; merged per chunk (Chan et al. 1983).
        cnt = np.zeros((n, c))
        mean = np.zeros((n, c))
        m2 = np.zeros((n, c))
        for s in range(0, end, chunk):
            block = np.asarray(values[s : min(end, s + chunk)], dtype=np.float64)  # [t, N, C]
            obs = ~np.isnan(block)
            b_cnt = obs.sum(axis=0).astype(np.float64)  # [N, C]
            with np.errstate(invalid="ignore", divide="ignore"):
                b_mean = np.where(b_cnt > 0, np.nansum(block, axis=0) / b_cnt, 0.0)
            dev = np.where(obs, block - b_mean, 0.0)
            b_m2 = np.einsum("tnc,tnc->nc", dev, dev)
            tot = cnt + b_cnt
            with np.errstate(invalid="ignore", divide="ignore"):
                delta = b_mean - mean
                frac = np.where(tot > 0, b_cnt / tot, 0.0)
                mean = mean + delta * frac
                m2 = m2 + b_m2 + delta**2 * cnt * frac
            cnt = tot
        # Channel-wide stats by merging the per-node ones (same formula over the node axis).
        cnt_c = cnt.sum(axis=0)  # [C]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_c = np.where(cnt_c > 0, (cnt * mean).sum(axis=0) / cnt_c, 0.0)
            m2_c = m2.sum(axis=0) + (cnt * (mean - mean_c) ** 2).sum(axis=0)
            std_c = np.sqrt(np.where(cnt_c > 0, m2_c / cnt_c, 0.0))
            std_nc = np.sqrt(np.where(cnt > 0, m2 / np.maximum(cnt, 1), 0.0))
        self._finish(mean, std_nc, cnt, mean_c, std_c, cnt_c)


class MinMaxScaler(_AffineScaler):
    """``(x - min) / (max - min)`` per channel (or per node and channel): fitted range -> [0, 1].

    Note that a missing input becomes 0 after scaling, which here means the minimum (with the
    StandardScaler it means the mean).
    """

    kind = "minmax"

    @property
    def min(self) -> np.ndarray | None:
        return self.offset

    @property
    def max(self) -> np.ndarray | None:
        return None if self.offset is None else self.offset + self.scale

    def _fit_chunks(self, values: np.ndarray, end: int, chunk: int) -> None:
        n, c = values.shape[1], values.shape[2]
        lo = np.full((n, c), np.inf)
        hi = np.full((n, c), -np.inf)
        cnt = np.zeros((n, c))
        for s in range(0, end, chunk):
            block = np.asarray(values[s : min(end, s + chunk)], dtype=np.float64)  # [t, N, C]
            obs = ~np.isnan(block)
            cnt += obs.sum(axis=0)
            lo = np.fmin(lo, np.where(obs, block, np.inf).min(axis=0))
            hi = np.fmax(hi, np.where(obs, block, -np.inf).max(axis=0))
        cnt_c = cnt.sum(axis=0)
        lo_c, hi_c = lo.min(axis=0), hi.max(axis=0)
        seen = cnt > 0
        self._finish(
            np.where(seen, lo, 0.0),
            np.where(seen, hi - lo, 0.0),
            cnt,
            np.where(cnt_c > 0, lo_c, 0.0),
            np.where(cnt_c > 0, hi_c - lo_c, 0.0),
            cnt_c,
        )


#: Public name for "any fitted scaler" in type hints (both scalers share this interface).
Scaler = _AffineScaler

_SCALERS = {StandardScaler.kind: StandardScaler, MinMaxScaler.kind: MinMaxScaler}


def make_scaler(kind: str = "standard", per_node: bool = False) -> Scaler:
    """Scaler by config name (``data.scaler``): 'standard' or 'minmax'."""
    if kind not in _SCALERS:
        raise DiststError(
            f"data.scaler: unknown scaler {kind!r}; choose one of {sorted(_SCALERS)}"
        )
    return _SCALERS[kind](per_node=per_node)


def scaler_from_state_dict(state: dict) -> Scaler:
    """Rebuild whichever scaler wrote ``state`` (from a checkpoint)."""
    kind = state.get("type") if isinstance(state, dict) else None
    if kind not in _SCALERS:
        raise DiststError(
            f"scaler state has type {kind!r}; expected one of {sorted(_SCALERS)}; "
            "the checkpoint is corrupt or from another version"
        )
    return _SCALERS[kind].from_state_dict(state)
