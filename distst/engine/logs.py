"""A run's per-epoch record, where people look for it: ``metrics.jsonl`` (one JSON line per
epoch, what distst itself reads back) and TensorBoard event files in ``tensorboard/``
(``tensorboard --logdir RUNS``), both written by the main rank only.

TensorBoard scalars per epoch: ``train/loss``, ``train/lr``, ``train/teacher_forcing``,
``train/windows_per_s``, ``val/mae``, ``val/rmse``, ``val/mape``, ``val/mae_step_H`` for each
horizon step H, ``time/epoch_s``. On an object store the event file is written to a local
folder and uploaded whole after each epoch (object stores cannot append).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from distst.storage import Location

#: TensorBoard tag -> key of the epoch record
SCALARS = {"train/loss": "train_loss", "train/lr": "lr",
           "train/teacher_forcing": "teacher_forcing", "train/windows_per_s": "windows_per_s",
           "val/mae": "val_mae", "val/rmse": "val_rmse", "val/mape": "val_mape",
           "time/epoch_s": "epoch_time_s"}


class RunLog:
    def __init__(self, run_dir: Location, tensorboard: bool = True):
        self.run_dir = run_dir
        self.tensorboard = tensorboard
        self._writer = None
        self._staging: Path | None = None

    def write(self, record: dict) -> None:
        self.run_dir.mkdir()
        (self.run_dir / "metrics.jsonl").append_text(json.dumps(record) + "\n")
        if self.tensorboard:
            self._events(record)

    def _events(self, record: dict) -> None:
        if self._writer is None:
            from tensorboardX import SummaryWriter

            target = self.run_dir / "tensorboard"
            if target.is_local:
                logdir = target.local
            else:
                self._staging = Path(tempfile.mkdtemp(prefix="distst-tb-"))
                logdir = self._staging
            self._writer = SummaryWriter(logdir=str(logdir), flush_secs=3600)
        step = int(record["epoch"])
        for tag, key in SCALARS.items():
            if isinstance(record.get(key), (int, float)):
                self._writer.add_scalar(tag, float(record[key]), step)
        for h, v in enumerate(record.get("val_mae_by_step") or [], start=1):
            self._writer.add_scalar(f"val/mae_step_{h}", float(v), step)
        self._writer.flush()
        if self._staging is not None:
            for f in self._staging.iterdir():
                (self.run_dir / "tensorboard" / f.name).write_bytes(f.read_bytes())

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
