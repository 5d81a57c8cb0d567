"""Where a training step's time goes, per worker (``train.step_timing``).

A timed step runs the same math as any other step, with two changes that make its phases
separable: the backward pass runs without DDP's gradient all-reduce (``no_sync``), and the
shared gradients are then averaged by one explicit all-reduce of a flat buffer after a
barrier. The barrier's wait is the time this worker idles for the slowest one; the
all-reduce after it is communication alone. DDP overlaps its all-reduce with the backward
pass, so a timed step is an upper bound on an untimed one (the overlap is what it gives up).
On CUDA every phase ends with a device synchronisation, so GPU work is charged to the phase
that launched it.

Records (one per step) go to ``RUN/steps/rank_R.json`` with this worker's peak host RSS and,
on CUDA, ``torch.cuda.max_memory_allocated``; ``distst scale`` reads them.
"""

from __future__ import annotations

import json
import resource
import time

import torch

#: a step's phases, in order: the batch (load, copy to device), forward + loss, backward,
#: wait for the slowest worker, gradient all-reduce, clip + optimiser step
PHASES = ("data", "forward", "backward", "idle", "allreduce", "optimizer")


def ring_bytes_sent(payload: int, world: int) -> int:
    """Bytes one worker sends to all-reduce ``payload`` bytes with a ring (what gloo and
    NCCL do for large tensors): 2 (W - 1) / W of the payload."""
    return 0 if world <= 1 else int(round(2 * (world - 1) / world * payload))


def peak_rss_bytes() -> int:
    """This process's peak resident set size (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class StepClock:
    """Per-phase wall time of each training step; does nothing when not ``enabled``."""

    def __init__(self, device: torch.device, enabled: bool):
        self.enabled = enabled
        self._cuda = enabled and device.type == "cuda"
        self._device = device
        self._t = 0.0
        self._cur: dict[str, float] = {}
        self.steps: list[dict] = []

    def _now(self) -> float:
        if self._cuda:
            torch.cuda.synchronize(self._device)
        return time.perf_counter()

    def start(self) -> None:
        """Start the next step's first phase (the batch) from now."""
        if self.enabled:
            self._cur = dict.fromkeys(PHASES, 0.0)
            self._t = self._now()

    def lap(self, phase: str) -> None:
        """Charge the time since the last lap to ``phase``."""
        if self.enabled:
            t = self._now()
            self._cur[phase] += t - self._t
            self._t = t

    def end_step(self, step: int, payload_bytes: int, sent_bytes: int,
                 exchange_bytes: int = 0) -> None:
        """``exchange_bytes``: what the boundary exchanges of runtime.mode=exchange sent
        during the step (forward and backward; their time is inside those phases)."""
        if self.enabled:
            self.steps.append({"step": step, **self._cur, "payload_bytes": payload_bytes,
                               "sent_bytes": sent_bytes, "exchange_bytes": exchange_bytes})

    def save(self, run_dir, rank: int, world: int, extra: dict) -> None:
        """Write this worker's records (replacing earlier ones: they accumulate)."""
        if not self.enabled:
            return
        doc = {"rank": rank, "world_size": world, "phases": list(PHASES),
               "peak_rss_bytes": peak_rss_bytes(),
               "cuda_max_allocated_bytes": (int(torch.cuda.max_memory_allocated(self._device))
                                            if self._device.type == "cuda" else None),
               **extra, "steps": self.steps}
        (run_dir / "steps" / f"rank_{rank}.json").write_text(json.dumps(doc))
