"""The one-process engine: training, checkpoints, resume, re-evaluation."""

import json
import math
from pathlib import Path

import pytest

from distst.engine.checkpoint import load_checkpoint, resolve_checkpoint
from distst.engine.entry import evaluate_checkpoint, train_local
from distst.engine.trainer import teacher_forcing_ratio
from distst.errors import DiststError


def _history(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_local_run_writes_everything_and_learns(tiny):
    cfg = tiny("train.epochs=3", "runtime.mode=local")
    run_dir, final = train_local(cfg)
    hist = _history(run_dir)
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert all(h["windows_per_s"] > 0 for h in hist)
    saved = json.loads((run_dir / "test_metrics.json").read_text())
    assert set(saved["test"]) == {"15min", "30min", "60min", "avg"}
    assert set(saved["ha"]) == {"15min", "30min", "60min", "avg"}
    assert all(math.isfinite(v) for h in saved["test"].values() for v in h.values())
    assert (run_dir / "config.yaml").is_file()
    payload, cfg_back = load_checkpoint(run_dir)  # the run dir resolves to its latest checkpoint
    assert cfg_back == cfg
    assert payload["trainer"]["epoch"] == 3 and payload["scaler"]["type"]
    assert payload["extra"]["test"]["test"]["avg"]["mae"] == pytest.approx(saved["test"]["avg"]["mae"])


def test_evaluate_checkpoint_reproduces_test_metrics(tiny):
    run_dir, final = train_local(tiny("runtime.mode=local"))
    again = evaluate_checkpoint(run_dir)
    for h in ("15min", "60min", "avg"):
        for m in ("mae", "rmse", "mape"):
            assert again["test"][h][m] == pytest.approx(final["test"][h][m], rel=1e-6)


def test_resume_continues_from_saved_epoch(tiny):
    run_dir, _ = train_local(tiny("train.epochs=2", "runtime.mode=local"))
    first = _history(run_dir)
    ckpts_before = sorted(p.name for p in run_dir.glob("checkpoint_*"))
    # the same run asked for one more epoch: it must start at epoch 3, not retrain 1-2
    _, _ = train_local(tiny("train.epochs=3", "runtime.mode=local"), resume_from=run_dir)
    hist = _history(run_dir)
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[:2] == first
    payload, _ = load_checkpoint(run_dir)
    assert payload["trainer"]["epoch"] == 3
    assert [h["epoch"] for h in payload["trainer"]["history"]] == [1, 2, 3]
    # epoch 3 and the final checkpoint were added; the newest three are kept
    ckpts = sorted(p.name for p in run_dir.glob("checkpoint_*"))
    assert len(ckpts_before) == 3 and ckpts == ["checkpoint_000002", "checkpoint_000003",
                                                "checkpoint_000004"]


def test_local_run_keeps_newest_three_checkpoints_and_no_temp_folders(tiny, tmp_path,
                                                                      monkeypatch):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    run_dir, _ = train_local(tiny("train.epochs=5", "runtime.mode=local"))
    assert sorted(p.name for p in run_dir.glob("checkpoint_*")) == [
        "checkpoint_000003", "checkpoint_000004", "checkpoint_000005"]
    # the trainer's temp checkpoint folders are gone (torch may keep caches of its own there)
    assert list(scratch.glob("distst-*")) == []
    assert not list(run_dir.glob(".checkpoint_*"))


def test_resume_after_a_cut_short_log_line(tiny, capsys):
    """kill -9 or a full disk mid-append leaves half a line in metrics.jsonl: resume and plot
    once stopped at JSONDecodeError. The half line is dropped (said once) and rewritten."""
    from distst.plots.run import plot_run
    from distst.storage import location

    run_dir, _ = train_local(tiny("train.epochs=2", "runtime.mode=local"))
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "train_lo')
    plot_run(location(run_dir), location(run_dir / "plots"))
    assert "line 3) is cut short" in capsys.readouterr().err
    train_local(tiny("train.epochs=3", "runtime.mode=local"), resume_from=run_dir)
    assert [h["epoch"] for h in _history(run_dir)] == [1, 2, 3]
    # a damaged line before the last is not guessed at
    text = (run_dir / "metrics.jsonl").read_text().splitlines()
    (run_dir / "metrics.jsonl").write_text("\n".join([text[0], "{oops", text[2]]) + "\n")
    with pytest.raises(DiststError, match=r"metrics.jsonl: line 2 is not an epoch record"):
        plot_run(location(run_dir), location(run_dir / "plots"))


def test_a_cut_short_newest_checkpoint_falls_back_to_the_one_before(tiny, capsys):
    """--resume once refused with "[Errno 22]" when the newest checkpoint.pt was truncated."""
    run_dir, _ = train_local(tiny("train.epochs=2", "runtime.mode=local"))
    ckpts = sorted(run_dir.glob("checkpoint_*"))
    newest = ckpts[-1] / "checkpoint.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    payload, _ = load_checkpoint(run_dir)
    assert payload["trainer"]["epoch"] == load_checkpoint(ckpts[-2])[0]["trainer"]["epoch"]
    err = capsys.readouterr().err
    assert f"{newest} is cut short" in err and f"using {ckpts[-2].name}" in err
    train_local(tiny("train.epochs=3", "runtime.mode=local"), resume_from=run_dir)
    assert [h["epoch"] for h in _history(run_dir)] == [1, 2, 3]
    assert load_checkpoint(run_dir)[0]["trainer"]["epoch"] == 3
    # every one cut short: refused by name, no traceback
    for c in run_dir.glob("checkpoint_*/checkpoint.pt"):
        c.write_bytes(c.read_bytes()[:100])
    with pytest.raises(DiststError, match=r"none of its 3 checkpoint\(s\) is complete"):
        load_checkpoint(run_dir)


def test_resume_from_an_older_checkpoint_logs_each_epoch_once(tiny):
    run_dir, _ = train_local(tiny("train.epochs=3", "runtime.mode=local"))
    older = run_dir / "checkpoint_000001"  # after epoch 2
    assert load_checkpoint(older)[0]["trainer"]["epoch"] == 2
    train_local(tiny("train.epochs=3", "runtime.mode=local"), resume_from=older)
    assert [h["epoch"] for h in _history(run_dir)] == [1, 2, 3]


def test_non_finite_loss_stops_naming_epoch_and_step_and_keeps_the_checkpoint(tiny,
                                                                             monkeypatch):
    from distst.engine.trainer import Trainer

    errors = Trainer._error_sum

    def poisoned(self, pred, y):  # a loss that diverges in the second epoch
        total, count = errors(self, pred, y)
        if self.epoch >= 1 and self.global_step % 3 == 2:
            total = total * float("nan")
        return total, count

    monkeypatch.setattr(Trainer, "_error_sum", poisoned)
    cfg = tiny("train.epochs=4", "runtime.mode=local")
    with pytest.raises(DiststError, match=r"training diverged at epoch 2, step \d+ of \d+: "
                                          r"loss nan.*last good checkpoint \(epoch 1\).*"
                                          r"train\.lr"):
        train_local(cfg)
    (run_dir,) = Path(cfg.runtime.storage).iterdir()  # kept: it holds epoch 1
    assert [h["epoch"] for h in _history(run_dir)] == [1]
    payload, _ = load_checkpoint(run_dir)
    assert payload["trainer"]["epoch"] == 1
    assert all(math.isfinite(float(v.float().abs().sum()))
               for v in payload["trainer"]["model"].values())


def test_run_folders_are_unique_and_a_failed_run_leaves_none(tiny, monkeypatch):
    from distst.engine.entry import prepare_run_dir
    from distst.engine.trainer import Trainer

    cfg = tiny("runtime.mode=local")
    # the same second, hence the same name (pinned: two calls can straddle a second boundary)
    monkeypatch.setattr("distst.engine.entry.time.strftime",
                        lambda fmt, *a: "20260101-000000")
    a, b = prepare_run_dir(cfg, "ds"), prepare_run_dir(cfg, "ds")
    monkeypatch.undo()
    assert a != b and a.parent == b.parent and b.name.startswith(a.name)

    def boom(self):
        raise DiststError("boom")

    monkeypatch.setattr(Trainer, "fit", boom)
    before = set(Path(cfg.runtime.storage).iterdir())
    with pytest.raises(DiststError, match="boom"):
        train_local(cfg)
    assert set(Path(cfg.runtime.storage).iterdir()) == before


def test_early_stopping_stops_on_patience(tiny):
    # lr=1e-30 (lr=0 is refused) moves no fp32 weight by a representable amount, so the
    # validation MAE cannot improve after the first epoch: patience 1 stops at epoch 2
    run_dir, final = train_local(tiny("train.epochs=10", "train.lr=1e-30", "train.patience=1",
                                      "runtime.mode=local"))
    assert [h["epoch"] for h in _history(run_dir)] == [1, 2]
    assert final["epochs_run"] == 2 and final["best_epoch"] == 1


def test_ha_model_trains_nothing_and_reports(tiny):
    run_dir, final = train_local(tiny("runtime.mode=local", "train.baseline_ha=false", model="ha"))
    assert not (run_dir / "metrics.jsonl").exists()
    assert math.isfinite(final["test"]["avg"]["mae"]) and "ha" not in final


def test_teacher_forcing_schedule():
    assert teacher_forcing_ratio(0, 0) == 0.0
    assert teacher_forcing_ratio(0, 100) == pytest.approx(100 / 101)
    assert teacher_forcing_ratio(10_000, 100) < 1e-6
    values = [teacher_forcing_ratio(s, 50) for s in range(0, 500, 50)]
    assert values == sorted(values, reverse=True)


def test_bad_checkpoint_path(tmp_path):
    with pytest.raises(DiststError, match="not a distst checkpoint"):
        resolve_checkpoint(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(DiststError, match="cannot be read"):
        load_checkpoint(tmp_path)


def test_unknown_model_and_param_are_clear(tiny):
    with pytest.raises(DiststError, match="gcgru"):
        train_local(tiny("runtime.mode=local", "model.name=gcgr"))
    with pytest.raises(DiststError, match="hidden_size"):
        train_local(tiny("runtime.mode=local", "model.params.hidden=3"))


def test_windows_straddling_time_gaps_are_left_out():
    import numpy as np

    from distst.engine.bundle import drop_gap_windows

    step = 300 * 10**9
    ts = np.arange(30, dtype=np.int64) * step
    ts[15:] += 2 * 86400 * 10**9  # a weekend between step 14 and 15
    splits = {"train": np.arange(0, 20), "val": np.arange(20, 24)}
    kept, excluded = drop_gap_windows(splits, ts, length=6)
    # windows starting at 10..14 cover steps s..s+5, which cross the 14|15 gap
    assert kept["train"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 18, 19]
    assert excluded == {"train": 5, "val": 0}
    regular, none = drop_gap_windows(splits, np.arange(30, dtype=np.int64) * step, length=6)
    assert none == {"train": 0, "val": 0} and regular["train"].tolist() == list(range(20))
    with pytest.raises(DiststError, match="straddles a gap"):
        drop_gap_windows({"train": np.arange(10, 15)}, ts, length=6)


def test_checkpoint_with_a_numpy_rng_state_still_loads_and_resumes(tiny, monkeypatch):
    """Checkpoints written before the RNG state became tensors held numpy's state tuple: it
    loads under weights_only (numpy arrays only) and the run resumes from it."""
    import numpy as np
    import torch

    run_dir, _ = train_local(tiny("train.epochs=1", "runtime.mode=local"))
    ckpt = resolve_checkpoint(run_dir) / "checkpoint.pt"
    payload = torch.load(ckpt, weights_only=True)
    payload["trainer"]["rng"]["numpy"] = np.random.get_state()
    payload["trainer"]["rng"]["python"] = __import__("random").getstate()
    torch.save(payload, ckpt)
    loaded, _ = load_checkpoint(run_dir)
    assert isinstance(loaded["trainer"]["rng"]["numpy"], tuple)
    _, final = train_local(tiny("train.epochs=2", "runtime.mode=local"), resume_from=run_dir)
    assert final["epochs_run"] == 2


def test_checkpoint_folder_is_removed_when_reporting_fails(tiny, tmp_path, monkeypatch):
    """The temp folder a checkpoint is written to goes on every path, a failed report too."""
    import tempfile

    from distst.engine.context import LocalContext

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    def full_disk(self, metrics, checkpoint_dir):
        assert checkpoint_dir is None or (checkpoint_dir / "checkpoint.pt").is_file()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LocalContext, "report", full_disk)
    with pytest.raises(OSError, match="No space left"):
        train_local(tiny("train.epochs=2", "runtime.mode=local"))
    assert list(scratch.glob("distst-*")) == []


def test_a_run_stopped_mid_epoch_resumes_at_that_step_as_if_never_stopped(tiny, tmp_path,
                                                                          monkeypatch):
    from distst.engine import context
    from distst.errors import Interrupted

    args = ("train.epochs=2", "runtime.mode=local", "train.checkpoint_every_steps=5",
            "train.cl_decay_steps=20")  # scheduled sampling draws random numbers: RNG matters
    _, whole = train_local(tiny(*args, "runtime.name=whole"))
    whole_hist = _history(tmp_path / "runs" / "whole")

    real, partial = context.LocalContext.report, []

    def stop_after_third_partial(self, metrics, checkpoint_dir):
        real(self, metrics, checkpoint_dir)
        partial.append(metrics.get("partial"))
        if partial.count(True) == 3:
            raise KeyboardInterrupt  # as Ctrl-C, right after a mid-epoch checkpoint

    monkeypatch.setattr(context.LocalContext, "report", stop_after_third_partial)
    with pytest.raises(Interrupted):
        train_local(tiny(*args, "runtime.name=cut"))
    monkeypatch.undo()
    run_dir = tmp_path / "runs" / "cut"
    state = load_checkpoint(run_dir)[0]["trainer"]
    assert state["step_in_epoch"] == 15 and state["epoch"] == 0
    assert not (run_dir / "metrics.jsonl").exists()  # no epoch had finished

    _, resumed = train_local(tiny(*args, "runtime.name=cut"), resume_from=run_dir)
    hist = _history(run_dir)
    assert [h["epoch"] for h in hist] == [1, 2]
    for a, b in zip(hist, whole_hist):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["val_mae"] == pytest.approx(b["val_mae"], rel=1e-6)
    for h in ("15min", "avg"):
        assert resumed["test"][h]["mae"] == pytest.approx(whole["test"][h]["mae"], rel=1e-6)


def test_recompute_trains_the_same_run(tiny):
    """train.recompute=step changes what is stored, not what is computed: the same losses and
    test metrics to fp32 roundoff; the setting is saved with the run."""
    _, plain = train_local(tiny("runtime.mode=local"))
    run_dir, again = train_local(tiny("runtime.mode=local", "train.recompute=step",
                                      "runtime.name=recompute"))
    assert again["test"]["avg"]["mae"] == pytest.approx(plain["test"]["avg"]["mae"], rel=1e-4)
    _, cfg_back = load_checkpoint(run_dir)
    assert cfg_back.train.recompute == "step"


def test_heap_trimming_trains_the_same_run(tiny, monkeypatch):
    """train.heap_slack_mib only hands freed memory back: the trainer checks the heap at
    every recurrent step and training step, the run computes what it did without it, and the
    setting is saved with the run."""
    from distst.engine.memory import HeapTrimmer

    _, plain = train_local(tiny("runtime.mode=local", "train.recompute=step"))
    calls = [0]
    real = HeapTrimmer.__call__

    def counted(self):
        calls[0] += 1
        real(self)

    monkeypatch.setattr(HeapTrimmer, "__call__", counted)
    run_dir, again = train_local(tiny("runtime.mode=local", "train.recompute=step",
                                      "train.heap_slack_mib=1", "runtime.name=trim"))
    assert calls[0] > 0
    assert again["test"]["avg"]["mae"] == plain["test"]["avg"]["mae"]
    _, cfg_back = load_checkpoint(run_dir)
    assert cfg_back.train.heap_slack_mib == 1


def test_bf16_run_learns_and_evaluates_in_bf16(tiny):
    """train.precision=bf16: the run learns, its metrics are finite fp32 numbers, and
    re-evaluating the checkpoint (under the saved precision) gives the run's own test MAE."""
    run_dir, final = train_local(tiny("runtime.mode=local", "train.precision=bf16",
                                      "train.epochs=3"))
    hist = _history(run_dir)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert math.isfinite(final["test"]["avg"]["mae"])
    again = evaluate_checkpoint(run_dir)
    assert again["test"]["avg"]["mae"] == pytest.approx(final["test"]["avg"]["mae"], rel=1e-6)
