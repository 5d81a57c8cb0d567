"""Driver-side progress for Ray Train runs.

Worker output reaches the driver prefixed with actor names and pids, which garbles a
progress bar. Instead rank 0 pushes its progress (epoch, step, loss, windows/s) and epoch
summaries to a tiny zero-CPU actor, and a thread on the driver renders one clean tqdm bar.

Both sides talk to the board once a second: on a machine whose cores all train, every
wake-up of a helper process takes a core from a training thread (a 0.3 s poll and a 0.5 s
push cost the driver and the board 3.6% of a core; benchmarks/RESULTS.md, "Ray's overhead
on one machine").
"""

from __future__ import annotations

import threading
import time

import ray


@ray.remote(num_cpus=0)
class ProgressBoard:
    def __init__(self):
        self._state: dict = {}
        self._lines: list[str] = []

    def update(self, state: dict) -> None:
        self._state = state

    def log(self, line: str) -> None:
        self._lines.append(line)

    def poll(self, since: int) -> tuple[dict, list[str]]:
        return self._state, self._lines[since:]


class WorkerBar:
    """The bar a worker sees: forwards to the board at most every ``interval`` seconds."""

    def __init__(self, board, epoch_desc: str, total: int, interval: float = 1.0):
        self._board, self._desc, self._total = board, epoch_desc, total
        self._n, self._postfix, self._last, self._interval = 0, {}, 0.0, interval

    def _push(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self._interval:
            self._last = now
            self._board.update.remote({"desc": self._desc, "n": self._n, "total": self._total,
                                       "postfix": dict(self._postfix)})

    def update(self, n: int = 1) -> None:
        self._n += n
        self._push()

    def set_postfix(self, **kw) -> None:
        self._postfix = kw

    def close(self) -> None:
        self._push(force=True)


class DriverDisplay:
    """Polls the board in a thread and renders it; use as a context manager around fit()."""

    def __init__(self, board, enabled: bool = True, interval: float = 1.0):
        self._board, self._enabled, self._interval = board, enabled, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._seen = 0
        self._bar = None
        self._desc = None
        self._shown: dict = {}

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        self._drain()
        if self._bar is not None:
            self._bar.close()

    def _drain(self) -> None:
        from tqdm import tqdm

        try:
            state, lines = ray.get(self._board.poll.remote(self._seen), timeout=5)
        except Exception:  # the board died with the cluster: nothing more to show
            return
        self._seen += len(lines)
        if self._enabled and state and state != self._shown:
            self._shown = state
            if state["desc"] != self._desc:
                if self._bar is not None:
                    self._bar.close()
                self._bar = tqdm(total=state["total"], desc=state["desc"], leave=False,
                                 dynamic_ncols=True)
                self._desc = state["desc"]
            self._bar.n = state["n"]
            self._bar.set_postfix(state["postfix"], refresh=False)
            self._bar.refresh()
        for line in lines:
            tqdm.write(line)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._drain()
