"""What the training loop needs from its surroundings, without knowing whether Ray is there.

The engine runs in one plain process with :class:`LocalContext`; the runtime layer hands it a
context backed by Ray Train (``distst.runtime``). A context says who this worker is (rank,
world size, device); the collectives between workers are :mod:`distst.engine.collectives`'.
"""

from __future__ import annotations

import json
import socket
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from distst.engine.checkpoint import CHECKPOINT_FILE, checkpoint_dirs
from distst.storage import Location, location


class NullBar:
    """Progress bar that shows nothing (non-main ranks, train.progress=false)."""

    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kw) -> None: ...
    def close(self) -> None: ...


class Context:
    """Single-process defaults; subclasses override reporting and progress display."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    #: the machine this worker runs on, as messages and fetch records name it
    node: str = socket.gethostname()
    #: whether :meth:`record_fetch` keeps its record in the run folder (a forecast from a
    #: finished run says what it fetched, but leaves the training's records as they are)
    keeps_fetch_records: bool = True

    def __init__(self, run_dir: str | Path | Location):
        #: where the run's files go: a local folder or a URI (runtime.storage)
        self.run_dir = location(run_dir)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @contextmanager
    def checkpoint_dir(self) -> Iterator[Path]:
        """A fresh folder to write one checkpoint into before :meth:`report` keeps a copy of
        it; removed on every path out (reported, failed, interrupted)."""
        d = Path(tempfile.mkdtemp(prefix="distst-ckpt-"))
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def report(self, metrics: dict, checkpoint_dir: Path | None) -> None:
        """Persist one epoch's metrics and (main rank only) a copy of the checkpoint folder
        (one of :meth:`checkpoint_dir`, which stays the caller's to remove)."""
        raise NotImplementedError

    def progress(self, total: int, desc: str):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True,
                    disable=not self.is_main)

    def latest_checkpoint(self) -> Path | Location | None:
        return None

    def log(self, line: str) -> None:
        """A line for the person watching (main rank only)."""
        if self.is_main:
            print(line, flush=True)

    def record_fetch(self, source: str, copied: int) -> None:
        """Log what this worker read from storage and keep it in ``run_dir/fetch/`` (one
        file per rank: object stores cannot append concurrently)."""
        print(f"worker {self.rank} on node {self.node}: {source}: "
              + (f"fetched {copied} bytes" if copied else "read in place or from the node's "
                 "cache (0 bytes fetched)"), flush=True)
        if not self.keeps_fetch_records:
            return
        (self.run_dir / "fetch" / f"rank_{self.rank}.json").write_text(json.dumps(
            {"rank": self.rank, "node": self.node, "source": source, "bytes": copied}))


#: checkpoints a run keeps (the newest; each holds the best model so far), as Ray's runs do
KEEP_CHECKPOINTS = 3


class LocalContext(Context):
    """One plain process: checkpoints are copied to ``run_dir/checkpoint_XXXXXX`` (published
    whole, :meth:`distst.storage.Location.put_dir`); the newest :data:`KEEP_CHECKPOINTS` are
    kept. ``listeners`` get every report's metrics, as a Ray Train callback gets them on the
    driver side (the run's trackers, distst.engine.logs)."""

    def __init__(self, run_dir: str | Path | Location,
                 resume_from: str | Path | Location | None = None,
                 listeners: list | None = None):
        super().__init__(run_dir)
        self._resume = location(resume_from) if resume_from else None
        self._listeners = list(listeners or [])
        numbers = [int(p.name[len("checkpoint_"):]) for p in checkpoint_dirs(self.run_dir)
                   if p.name[len("checkpoint_"):].isdigit()]
        # numbering continues after the newest, also when older ones were pruned
        self._count = max(numbers) + 1 if numbers else 0

    def report(self, metrics: dict, checkpoint_dir: Path | None) -> None:
        for listen in self._listeners:
            listen(metrics)
        if checkpoint_dir is None:
            return
        (Path(checkpoint_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (self.run_dir / f"checkpoint_{self._count:06d}").put_dir(checkpoint_dir,
                                                                 marker=CHECKPOINT_FILE)
        self._count += 1
        for old in checkpoint_dirs(self.run_dir)[:-KEEP_CHECKPOINTS]:
            old.rmtree()  # state was loaded at the start

    def latest_checkpoint(self) -> Location | None:
        return self._resume
