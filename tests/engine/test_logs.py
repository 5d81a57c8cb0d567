"""Every run writes TensorBoard event files beside metrics.jsonl, with the same numbers."""

import json
import struct

import pytest

from distst.engine.entry import train_local


def read_scalars(folder) -> dict[str, dict[int, float]]:
    """tag -> {step: value} from the TFRecord event files in ``folder``."""
    from tensorboardX.proto import event_pb2

    out: dict[str, dict[int, float]] = {}
    for f in sorted(folder.iterdir()):
        data = f.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos: pos + 8])
            ev = event_pb2.Event.FromString(data[pos + 12: pos + 12 + length])
            pos += 12 + length + 4  # length, its crc, the record, its crc
            for v in ev.summary.value:
                out.setdefault(v.tag, {})[ev.step] = v.simple_value
    return out


def test_tensorboard_events_match_metrics_jsonl(tiny):
    run_dir, _ = train_local(tiny("train.max_batches_per_epoch=3"))
    records = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    scalars = read_scalars(run_dir / "tensorboard")
    assert [r["epoch"] for r in records] == [1, 2]
    for tag, key in (("train/loss", "train_loss"), ("val/mae", "val_mae"), ("train/lr", "lr"),
                     ("val/rmse", "val_rmse"), ("train/windows_per_s", "windows_per_s")):
        assert scalars[tag] == {r["epoch"]: pytest.approx(r[key], rel=1e-6) for r in records}
    horizon = len(records[0]["val_mae_by_step"])
    assert horizon == 12
    assert scalars["val/mae_step_12"][2] == pytest.approx(records[1]["val_mae_by_step"][11],
                                                          rel=1e-6)


def test_tensorboard_can_be_turned_off(tiny):
    run_dir, _ = train_local(tiny("train.max_batches_per_epoch=2", "train.tensorboard=false",
                                  "train.epochs=1"))
    assert (run_dir / "metrics.jsonl").is_file() and not (run_dir / "tensorboard").exists()
