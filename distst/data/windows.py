"""Index-based sliding windows over a (memory-mapped) series, chronological splits, time features.

Nothing here materialises windows: a sample is just its start index ``s`` into ``values``
``[T, N, C]``, with

    x = values[s : s + input_len]                          (the model input)
    y = values[s + input_len : s + input_len + horizon]    (the forecast target)

so the memory of all datasets together is the raw series (shared, usually a read-only memmap)
plus O(T) time features plus O(S) start indices. The usual alternative (DCRNN's
``generate_training_data.py`` and most libraries after it) stores ``[S, input_len, N, C]`` and
``[S, horizon, N, C]`` arrays: ``input_len + horizon`` (= 24) copies of the series.

Splits follow DCRNN (Li et al., ICLR 2018): the *samples* are split chronologically, not the
steps, so consecutive splits share up to ``input_len + horizon - 1`` steps at their borders
(a validation input may contain steps that were a training target), exactly as in the
published METR-LA / PEMS-BAY results.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from distst.data.scaler import Scaler
from distst.errors import DiststError

SPLIT_NAMES = ("train", "val", "test")
_NS_PER_DAY = 86_400 * 10**9


# -- splits ------------------------------------------------------------------------------
def num_samples(num_steps: int, input_len: int, horizon: int) -> int:
    """``S = T - input_len - horizon + 1`` windows fit into ``T`` steps (may be <= 0)."""
    return int(num_steps) - int(input_len) - int(horizon) + 1


def make_splits(
    num_steps: int,
    input_len: int = 12,
    horizon: int = 12,
    ratios: Sequence[float] = (0.7, 0.1, 0.2),
) -> dict[str, np.ndarray]:
    """Chronological train/val/test split of the window START indices (int64).

    With ``S = T - input_len - horizon + 1`` samples (start ``s`` covers steps
    ``[s, s + input_len + horizon)``)::

        n_train = round(ratios[0] * S)      # Python round(): half to even, as DCRNN
        n_val   = round(ratios[1] * S)
        n_test  = S - n_train - n_val       # the remainder, so every sample is used once

    (DCRNN's ``generate_training_data.py`` rounds train and test and gives val the remainder;
    the counts agree in the common cases, e.g. METR-LA's S=34249 -> 23974 / 3425 / 6850.)
    train = ``[0, n_train)``, val = ``[n_train, n_train + n_val)``, test = the rest.
    Example: T=100, 12+12 -> S=77, 54 / 8 / 15.
    """
    if input_len < 1 or horizon < 1:
        raise DiststError(
            f"data.input_len={input_len} / data.horizon={horizon}: both must be >= 1"
        )
    r = [float(v) for v in ratios]
    if len(r) != 3 or any(not np.isfinite(v) or v <= 0 for v in r) or abs(sum(r) - 1.0) > 1e-6:
        raise DiststError(
            f"data.split: ratios {tuple(ratios)} must be three positive numbers "
            "(train, val, test) that sum to 1, e.g. [0.7, 0.1, 0.2]"
        )
    s = num_samples(num_steps, input_len, horizon)
    n_train = round(r[0] * s)
    n_val = round(r[1] * s)
    n_test = s - n_train - n_val
    if s < 3 or min(n_train, n_val, n_test) < 1:
        raise DiststError(
            f"series of T={num_steps} steps holds {max(s, 0)} window(s) of input_len={input_len} "
            f"+ horizon={horizon} steps, too few for non-empty train/val/test splits "
            f"(got {max(n_train, 0)}/{max(n_val, 0)}/{max(n_test, 0)} with data.split={tuple(r)}); "
            "use a longer series or shorten data.input_len / data.horizon"
        )
    return {
        "train": np.arange(0, n_train, dtype=np.int64),
        "val": np.arange(n_train, n_train + n_val, dtype=np.int64),
        "test": np.arange(n_train + n_val, s, dtype=np.int64),
    }


def train_end_step(splits: dict[str, np.ndarray], input_len: int) -> int:
    """Exclusive end of the steps that training INPUTS cover: ``train[-1] + input_len``.

    The scaler is fitted on ``values[:train_end_step]``: exactly the steps a model sees as input
    during training (as DCRNN, which fits on ``x_train``), and no step that only appears as a
    validation/test input, so no statistic of held-out data leaks into the inputs. The last
    ``horizon`` training targets are excluded; they only act as targets, which are never scaled
    (losses and metrics run in original units).
    """
    train = np.asarray(splits["train"])
    if train.size == 0:
        raise DiststError("train split is empty; see make_splits() for the sample counts")
    return int(train.max()) + int(input_len)


# -- time features -----------------------------------------------------------------------
def time_features(timestamps_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time of day and day of week from int64 ns since the epoch (read as naive local time).

    Returns ``tod`` float32 ``[T]`` = seconds since midnight / 86400, in [0, 1), and
    ``dow`` float32 ``[T]`` = weekday / 7 with Monday = 0 (so in {0, 1/7, ..., 6/7}).
    No time zone is applied: the stored timestamps are the sensors' wall-clock times, which is
    what daily traffic patterns follow. Windows carry these two values as their last channels
    (``x`` ``[B, T, N, F]``); a model that wants another encoding derives it from them (HimNet
    turns ``dow`` into its authors' integer day index 0-6, see :mod:`distst.nn.himnet`).
    """
    ts = np.asarray(timestamps_ns, dtype=np.int64)
    days, ns_in_day = np.divmod(ts, _NS_PER_DAY)  # floor division: right for pre-1970 too
    tod = (ns_in_day / _NS_PER_DAY).astype(np.float32)
    # float32 rounding could turn 1 - 1e-14 into exactly 1.0; keep the [0, 1) contract.
    tod = np.minimum(tod, np.nextafter(np.float32(1), np.float32(0)))
    # 1970-01-01 was a Thursday (weekday 3 with Monday = 0).
    dow = (((days + 3) % 7) / 7.0).astype(np.float32)
    return tod, dow


def weekly_slots(timestamps_ns: np.ndarray, steps_per_day: int) -> np.ndarray:
    """Day-of-week x time-of-day slot of every step, ``day * steps_per_day + slot`` (int64,
    Monday = 0), the index the historical average's weekly table uses (distst.nn.ha)."""
    ts = np.asarray(timestamps_ns, dtype=np.int64)
    days, ns_in_day = np.divmod(ts, _NS_PER_DAY)
    slot = np.rint(ns_in_day / _NS_PER_DAY * steps_per_day).astype(np.int64) % steps_per_day
    return (days + 3) % 7 * steps_per_day + slot  # 1970-01-01 was a Thursday


def weekly_coverage_notice(timestamps_ns: np.ndarray, splits: dict[str, np.ndarray],
                           input_len: int, horizon: int, steps_per_day: int) -> str | None:
    """A one-line warning when the training range leaves weekly slots unseen that the
    validation or test windows then meet; ``None`` when nothing held out falls in one.

    The training range is every step a training window covers (inputs and targets, what HA is
    fitted on). A short series (or one whose only full days are holidays) trains the weekly
    HA table and day-of-week embeddings on some weekdays only; held-out windows on the others
    get HA's daily fallback and embedding rows that never received a gradient. A series whose
    unseen slots never come back (PeMSD7 holds weekdays only) gets no notice.
    """
    ts = np.asarray(timestamps_ns, dtype=np.int64)
    length = int(input_len) + int(horizon)
    train = np.asarray(splits["train"])
    held = [np.asarray(splits[k]) for k in ("val", "test") if len(splits.get(k, ()))]
    if not train.size or not held:
        return None
    slots = weekly_slots(ts, steps_per_day)
    total = 7 * steps_per_day
    seen = np.zeros(total, dtype=bool)
    seen[slots[: int(train.max()) + length]] = True
    start = min(int(h.min()) for h in held)
    stop = max(int(h.max()) for h in held) + length
    if seen[slots[start:stop]].all():
        return None
    days = int(np.unique(np.flatnonzero(seen) // steps_per_day).size)
    test = np.asarray(splits.get("test", ()))
    if test.size:  # the test targets whose weekly slot training never saw
        tgt = slots[int(test.min()) + int(input_len): int(test.max()) + length]
        meet = f"{100.0 * float((~seen[tgt]).mean()):.0f}% of the test targets"
    else:
        meet = "validation windows"
    share = 100.0 * float(seen.mean())
    return (f"data: the training split covers {days} of 7 days of week ({share:.0f}% of the "
            f"{total} day-of-week x time-of-day slots, {100.0 - share:.0f}% unseen); on "
            f"{meet} HA falls back to its time-of-day mean and day-of-week embeddings "
            "(HimNet) meet untrained rows; set data.day_of_week=false to drop the "
            "day-of-week feature")


# -- dataset -----------------------------------------------------------------------------
def _check_channels(what: str, chans, c: int) -> list[int]:
    out = [int(v) for v in chans]
    if not out or len(set(out)) != len(out) or min(out) < 0 or max(out) >= c:
        raise DiststError(
            f"data.{what}={list(chans)}: need distinct channel indices in 0..{c - 1} "
            f"(the series has {c} channel(s))"
        )
    return out


class WindowDataset:
    """Windows over ``values`` ``[T, N, C]`` addressed by start index; holds references only.

    ``x``: float32 ``[input_len, N', F_in]`` with ``F_in = len(input_channels) + tod + dow`` and
    the feature order (the contract the models rely on)::

        [scaled input channels..., time of day (if add_time_of_day), day of week (if ...)]

    A missing input is 0 after scaling (the training mean with the StandardScaler).
    ``y``: float32 ``[horizon, N', C_t]`` in ORIGINAL units, NaN where missing (the metrics mask
    it). ``target_channels`` must be the first input channels, because the models predict
    ``x[..., :output_dim]``. ``nodes`` picks node columns (in the given order) for sharded
    training; ``N' = len(nodes)``.
    """

    def __init__(
        self,
        values: np.ndarray,
        timestamps: np.ndarray,
        starts: np.ndarray,
        *,
        input_len: int,
        horizon: int,
        scaler: Scaler,
        input_channels: list[int] | None = None,
        target_channels: list[int] | None = None,
        add_time_of_day: bool = True,
        add_day_of_week: bool = True,
        nodes: np.ndarray | None = None,
    ) -> None:
        if values.ndim != 3:
            raise DiststError(f"WindowDataset: values must be [T, N, C], got {values.shape}")
        t, n, c = values.shape
        if len(timestamps) != t:
            raise DiststError(
                f"WindowDataset: {len(timestamps)} timestamps for {t} steps; give one per step"
            )
        self.values = values  # reference (memmap): never copied
        self.input_len = int(input_len)
        self.horizon = int(horizon)
        self.window = self.input_len + self.horizon
        self.starts = np.ascontiguousarray(starts, dtype=np.int64)
        if self.starts.ndim != 1:
            raise DiststError(f"WindowDataset: starts must be 1-D, got {self.starts.shape}")
        if self.starts.size and (self.starts.min() < 0 or self.starts.max() + self.window > t):
            raise DiststError(
                f"WindowDataset: start indices {int(self.starts.min())}..{int(self.starts.max())} "
                f"with windows of {self.window} steps do not fit into T={t}; "
                "build them with make_splits() for the same series and window"
            )
        self.input_channels = _check_channels(
            "input_channels", range(c) if input_channels is None else input_channels, c
        )
        # Default target: the first input channel (e.g. flow of flow/occupancy/speed).
        tgt = self.input_channels[:1] if target_channels is None else target_channels
        self.target_channels = _check_channels("target_channels", tgt, c)
        k = len(self.target_channels)
        if self.target_channels != self.input_channels[:k]:
            raise DiststError(
                f"data.target_channels={self.target_channels} must be the first "
                f"{k} of data.input_channels={self.input_channels} (the models predict "
                "x[..., :output_dim]); reorder data.input_channels to start with the targets"
            )
        if nodes is None:
            self.nodes = None
            self.num_nodes = n
        else:
            nd = np.asarray(nodes, dtype=np.int64)
            if nd.ndim != 1 or nd.size == 0 or nd.min() < 0 or nd.max() >= n:
                raise DiststError(
                    f"WindowDataset: nodes must be a non-empty 1-D array of indices in 0..{n - 1}"
                )
            if np.unique(nd).size != nd.size:
                raise DiststError("WindowDataset: nodes contains duplicate indices; pass each once")
            self.nodes = nd
            self.num_nodes = int(nd.size)
        self.add_time_of_day = bool(add_time_of_day)
        self.add_day_of_week = bool(add_day_of_week)
        self.tod, self.dow = time_features(np.asarray(timestamps))  # float32 [T] each
        # The enabled time features in their channel order (references, no copies).
        self._time_feats = [
            f
            for f, on in ((self.tod, self.add_time_of_day), (self.dow, self.add_day_of_week))
            if on
        ]
        self.scaler = scaler
        # Scaling parameters for exactly the (nodes, input channels) we emit:
        # [C_in] or [N', C_in], float32 so the batch never goes through float64.
        self._offset, self._scale = scaler.params(self.nodes, self.input_channels)
        self._inv_scale = (1.0 / self._scale).astype(np.float32)
        self._all_channels = self.input_channels == list(range(c))
        self._target_all = self.target_channels == list(range(c))
        self._steps = np.arange(self.window, dtype=np.int64)

    # -- sizes ---------------------------------------------------------------------------
    @property
    def input_dim(self) -> int:
        """``F_in``: input channels + time of day + day of week."""
        return len(self.input_channels) + self.add_time_of_day + self.add_day_of_week

    @property
    def output_dim(self) -> int:
        """``C_t``: number of target channels."""
        return len(self.target_channels)

    def __len__(self) -> int:
        return int(self.starts.size)

    # -- access --------------------------------------------------------------------------
    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One window: ``x`` ``[input_len, N', F_in]``, ``y`` ``[horizon, N', C_t]``."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        x, y = self.batch(np.array([i % len(self)]))
        return x[0], y[0]

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather the windows ``idx`` (positions into ``starts``) in one fancy index.

        Returns ``x`` float32 ``[B, input_len, N', F_in]``, ``y`` float32 ``[B, horizon, N', C_t]``.
        """
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        b, li = idx.size, self.input_len
        s = self.starts[idx]
        rows = s[:, None] + self._steps  # [B, L] step indices
        # One gather of B*L contiguous rows of N*C floats each from the memmap: [B, L, N, C].
        raw = np.asarray(self.values[rows.reshape(-1)])  # [B*L, N, C]
        if self.nodes is not None:
            raw = raw[:, self.nodes]  # [B*L, N', C]
        raw = raw.reshape(b, self.window, self.num_nodes, raw.shape[-1])  # [B, L, N', C]

        n_in = len(self.input_channels)
        x = np.empty((b, li, self.num_nodes, self.input_dim), dtype=np.float32)
        xin = raw[:, :li] if self._all_channels else raw[:, :li][..., self.input_channels]
        # Scale in a contiguous temporary (3x faster than working on the strided slice of x),
        # then one strided copy. NaN (missing) -> 0, i.e. the training mean.
        z = np.subtract(xin, self._offset, dtype=np.float32)  # [B, li, N', C_in]
        z *= self._inv_scale
        # isnan + copyto is ~5x faster than np.nan_to_num (which also scans for +-inf).
        np.copyto(z, 0.0, where=np.isnan(z))
        x[..., :n_in] = z
        # One write per feature: broadcasting a [B, li, 1, 2] block is ~6x slower in numpy.
        for f, feat in enumerate(self._time_feats, start=n_in):
            x[..., f] = feat[rows[:, :li]][:, :, None]  # [B, li, 1] -> broadcast over N'
        y = raw[:, li:] if self._target_all else raw[:, li:][..., self.target_channels]
        y = np.ascontiguousarray(y, dtype=np.float32)  # [B, h, N', C_t]
        return torch.from_numpy(x), torch.from_numpy(y)


# -- batching ----------------------------------------------------------------------------
def rank_indices(
    num_windows: int,
    *,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    even: bool = True,
) -> np.ndarray:
    """The window positions one rank visits in one epoch, DistributedSampler-style.

    One permutation of ``0..S-1`` (seeded by ``(seed, epoch)``, identical on every rank; the
    identity when ``shuffle=False``) is cut into ``world_size`` disjoint contiguous slices.

    Remainder (``S % world_size`` windows):
      * ``even=True`` (training): the last ``S % world_size`` entries of the permutation are
        left out so that every rank gets exactly ``S // world_size`` windows and all ranks run
        the same number of steps (DDP all-reduces every step; unequal counts would hang).
        With shuffling a different handful is left out each epoch. Unlike torch's
        DistributedSampler nothing is duplicated, so slices stay disjoint.
      * ``even=False`` (evaluation): nothing is left out; the first ``S % world_size`` ranks get
        one window more, so every window is scored exactly once.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise DiststError(f"rank={rank} / world_size={world_size}: need 0 <= rank < world_size")
    if shuffle:
        perm = np.random.default_rng([int(seed), int(epoch)]).permutation(num_windows)
    else:
        perm = np.arange(num_windows)
    if even:
        per = num_windows // world_size
        return perm[rank * per : (rank + 1) * per]
    base, extra = divmod(num_windows, world_size)
    lo = rank * base + min(rank, extra)
    hi = lo + base + (1 if rank < extra else 0)
    return perm[lo:hi]


def batch_split_indices(num_windows: int, batch_size: int, *, shuffle: bool, seed: int = 0,
                        epoch: int = 0, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """This rank's training windows for one epoch, global batch by global batch.

    The epoch's permutation (as :func:`rank_indices` draws it) is cut into global batches of
    ``world_size x batch_size`` windows and rank r takes the r-th ``batch_size`` of each, so
    the ranks' k-th batches together are the k-th batch of one process with the global batch
    size: data-parallel steps are the single-process steps, not just the same epoch. The
    windows after the last full global batch are split evenly in contiguous slices, and every
    rank gets ``num_windows // world_size`` windows in all, like :func:`rank_indices`.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise DiststError(f"rank={rank} / world_size={world_size}: need 0 <= rank < world_size")
    perm = rank_indices(num_windows, shuffle=shuffle, seed=seed, epoch=epoch)
    per = num_windows // world_size
    full = (per // batch_size) * batch_size  # this rank's windows in full global batches
    head = perm[: full * world_size].reshape(-1, world_size, batch_size)[:, rank].reshape(-1)
    rest = per - full
    tail = perm[full * world_size + rank * rest: full * world_size + (rank + 1) * rest]
    return np.concatenate([head, tail])


def num_batches(
    num_windows: int, batch_size: int, world_size: int = 1, drop_last: bool = False,
    even: bool = True, rank: int = 0,
) -> int:
    """Batches :func:`iterate_batches` yields on ``rank`` (all ranks alike when ``even``)."""
    if even:
        per = num_windows // world_size
    else:
        base, extra = divmod(num_windows, world_size)
        per = base + (1 if rank < extra else 0)
    return per // batch_size if drop_last else -(-per // batch_size)


def iterate_batches(
    dataset: WindowDataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
    even: bool = True,
    start_batch: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``dataset.batch(...)`` over this rank's windows.

    Evaluation (``even=False``): this rank's slice of :func:`rank_indices`. Training
    (``even=True``): the same number of windows per rank as :func:`rank_indices`, but laid out
    by global batch (:func:`batch_split_indices`), so that step k of ``world_size`` ranks
    trains on exactly the windows of step k of one process whose batch is ``world_size x
    batch_size``. ``drop_last`` drops this rank's last partial batch. Deterministic per
    ``(seed, epoch)``; ``start_batch`` skips (without loading) the batches a restored run
    already trained on.
    """
    if batch_size < 1:
        raise DiststError(f"train.batch_size={batch_size} must be >= 1")
    if even and world_size > 1:
        idx = batch_split_indices(len(dataset), batch_size, shuffle=shuffle, seed=seed,
                                  epoch=epoch, rank=rank, world_size=world_size)
    else:
        idx = rank_indices(
            len(dataset), shuffle=shuffle, seed=seed, epoch=epoch, rank=rank,
            world_size=world_size, even=even,
        )
    stop = (idx.size // batch_size) * batch_size if drop_last else idx.size
    for lo in range(start_batch * batch_size, stop, batch_size):
        yield dataset.batch(idx[lo : lo + batch_size])
