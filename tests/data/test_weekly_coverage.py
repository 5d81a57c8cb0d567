"""The short-series notice (issue 10): a training split that leaves day-of-week x time-of-day
slots unseen is named once per run, with the share and the consequence."""

import numpy as np

from distst.config import load_config
from distst.data.network import save_network
from distst.data.synth import synth_network
from distst.data.windows import weekly_coverage_notice, weekly_slots
from distst.engine.bundle import build_bundle

NOTICE = "data: the training split covers"


def _dataset(tmp_path, days, start="2024-01-01"):
    """Hourly steps (24 slots a day, 168 a week), so the shares are easy to count by hand."""
    out = tmp_path / f"net-{days}d"
    save_network(synth_network(num_nodes=6, days=days, start=start, step_minutes=60), out)
    return out


def _cfg(path, *extra):
    return load_config(None, [f"data.path={path}", *extra]).data


def test_short_series_is_named_once_with_its_share(tmp_path, capsys):
    # 4 days from Monday 2024-01-01, 96 hourly steps, 12 + 12 windows: S = 73 samples,
    # train 51 / val 7 / test 15. Training windows cover steps [0, 74): 74 of the 168 weekly
    # slots (44%, 56% unseen) on Monday..Thursday (Thursday's first two hours). The test
    # targets are steps [70, 96): 22 of their 26 steps are past step 74 -> 85%.
    path = _dataset(tmp_path, 4)
    capsys.readouterr()
    bundle = build_bundle(_cfg(path), path)
    out = capsys.readouterr().out
    assert out.count(NOTICE) == 1
    line = next(ln for ln in out.splitlines() if ln.startswith(NOTICE))
    assert "covers 4 of 7 days of week (44% of the 168 day-of-week x time-of-day slots, " \
           "56% unseen)" in line
    assert "on 85% of the test targets HA falls back" in line
    assert "day-of-week embeddings" in line and "data.day_of_week=false" in line
    # workers and re-evaluations get the driver's scaler state: they stay quiet
    build_bundle(_cfg(path), path, scaler_state=bundle.scaler.state_dict())
    # without the day-of-week feature there is nothing to warn about
    build_bundle(_cfg(path, "data.day_of_week=false"), path)
    assert NOTICE not in capsys.readouterr().out


def test_series_covering_every_weekday_is_quiet(tmp_path, capsys):
    # 22 days: training windows cover 377 hourly steps = 15.7 days, every weekly slot
    path = _dataset(tmp_path, 22)
    capsys.readouterr()
    build_bundle(_cfg(path), path)
    assert NOTICE not in capsys.readouterr().out


def test_unseen_slots_that_never_come_back_are_quiet():
    # weekdays only (PeMSD7's calendar): Saturdays and Sundays are never trained, but no
    # held-out window meets them either
    day = 86_400 * 10**9
    hour = day // 24
    start = np.datetime64("2024-01-01", "ns").astype(np.int64)  # a Monday
    days = [d for d in range(28) if d % 7 < 5]
    ts = np.array([start + d * day + h * hour for d in days for h in range(24)], dtype=np.int64)
    n = len(ts) - 23
    splits = {"train": np.arange(0, 300), "val": np.arange(300, 360),
              "test": np.arange(360, n)}
    assert weekly_coverage_notice(ts, splits, 12, 12, 24) is None
    # ... while the same calendar with a training range of 3 days is named
    short = {"train": np.arange(0, 50), "val": np.arange(50, 60), "test": np.arange(60, n)}
    assert weekly_coverage_notice(ts, short, 12, 12, 24).startswith(
        NOTICE + " 4 of 7 days of week")


def test_weekly_slots_match_the_ha_index():
    # Monday 00:00 -> 0, Monday 01:00 -> 1, Sunday 23:00 -> 167 (hourly slots)
    start = np.datetime64("2024-01-01", "ns").astype(np.int64)
    hour = 3600 * 10**9
    ts = np.array([start, start + hour, start + (7 * 24 - 1) * hour], dtype=np.int64)
    assert weekly_slots(ts, 24).tolist() == [0, 1, 167]


def test_a_local_run_prints_the_notice_once(tiny, capsys):
    from distst.engine.entry import train_local

    train_local(tiny("runtime.mode=local", "train.epochs=1", "train.baseline_ha=false",
                     days=4))
    assert capsys.readouterr().out.count(NOTICE) == 1


def test_notice_share_matches_a_hand_count_on_5_minute_steps(tmp_path, capsys):
    # 5-minute steps: 288 slots a day; S = 1152 - 23 = 1129, train 790 -> steps [0, 813),
    # 813 of 2016 slots on Wednesday..Friday
    out = tmp_path / "net5"
    save_network(synth_network(num_nodes=4, days=4, start="2024-01-03"), out)
    capsys.readouterr()
    build_bundle(_cfg(out), out)
    text = capsys.readouterr().out
    assert f"covers 3 of 7 days of week ({100 * 813 / 2016:.0f}% of the 2016" in text
