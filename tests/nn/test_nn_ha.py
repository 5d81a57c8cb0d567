"""Historical average: exact on a weekly pattern, slot wrap-around, fallbacks."""

import numpy as np
import pytest
import torch

from distst.errors import DiststError
from distst.nn import HistoricalAverage

S, N, C = 4, 3, 2  # 4 steps per day keeps a week at 28 steps


def pattern(day, slot, node, ch):
    return 10.0 * day + slot + 0.1 * node + 0.01 * ch


def weekly_series(weeks=3, start_day=2, start_slot=1):
    """[T, N, C] values with an exact weekly pattern starting mid-week and mid-day."""
    steps = np.arange(weeks * 7 * S) + start_day * S + start_slot
    day, slot = (steps // S) % 7, steps % S
    vals = np.array([[[pattern(d, s, n, c) for c in range(C)] for n in range(N)]
                     for d, s in zip(day, slot)], dtype=np.float32)
    return vals, (slot / S).astype(np.float32), (day / 7).astype(np.float32)


def window(vals, tod, dow, end, input_len=3):
    """Model input for the window ending at index `end` (inclusive): [1, L, N, C+2]."""
    sl = slice(end - input_len + 1, end + 1)
    time_feats = np.stack([tod[sl], dow[sl]], -1)[:, None, :].repeat(N, 1)
    return torch.from_numpy(np.concatenate([vals[sl], time_feats], -1))[None]


def make(**kw):
    return HistoricalAverage(num_nodes=N, input_dim=C + 2, output_dim=C, input_len=3,
                             horizon=kw.pop("horizon", 6), steps_per_day=S, **kw)


def test_exact_weekly_pattern_and_wraparound():
    vals, tod, dow = weekly_series()
    model = make(horizon=2 * S + 1)  # longer than a day: crosses midnight and the week end
    assert not any(p.requires_grad for p in model.parameters()) and not list(model.parameters())
    model.fit_history(vals, tod, dow)
    ends = range(2, len(vals) - model.horizon)  # every position incl. Sunday's last slot
    for end in ends:
        pred = model(window(vals, tod, dow, end))
        want = torch.from_numpy(vals[end + 1:end + 1 + model.horizon])[None]
        torch.testing.assert_close(pred, want, atol=1e-5, rtol=0)
    # explicit wrap check: last input step Sunday (day 6) last slot -> Monday slot 0, 1, ...
    x = torch.zeros(1, 3, N, C + 2)
    x[..., -2], x[..., -1] = (S - 1) / S, 6 / 7
    pred = model(x)[0]
    assert pred[0, 0, 0] == pytest.approx(pattern(0, 0, 0, 0))
    assert pred[S, 0, 0] == pytest.approx(pattern(1, 0, 0, 0))


def test_fallbacks_and_missing_values():
    vals, tod, dow = weekly_series(weeks=1, start_day=0, start_slot=0)
    vals = vals.copy()
    vals[(dow * 7).round() == 3] = np.nan  # no Thursday observations at all
    vals[:, 2, :] = np.nan  # node 2 never observed
    model = make()
    model.fit_history(torch.from_numpy(vals), torch.from_numpy(tod), torch.from_numpy(dow))
    table = model.table.view(7, S, N, C)
    # Thursday slot falls back to the time-of-day mean over the observed days
    observed_days = [0, 1, 2, 4, 5, 6]
    want = np.mean([pattern(d, 1, 0, 1) for d in observed_days])
    assert table[3, 1, 0, 1].item() == pytest.approx(want, abs=1e-4)
    assert table[4, 1, 0, 1].item() == pytest.approx(pattern(4, 1, 0, 1), abs=1e-5)
    assert torch.all(table[:, :, 2] == 0)  # never observed -> scaled mean 0
    assert torch.isfinite(model.table).all()


def test_daily_mode_and_node_mean_fallback():
    vals, tod, dow = weekly_series(weeks=1, start_day=0, start_slot=0)
    vals = vals.copy()
    vals[np.isclose(tod, 2 / S)] = np.nan  # slot 2 never observed on any day
    model = make(weekly=False)
    model.fit_history(vals, tod, dow)
    assert model.table.shape == (S, N, C)
    want_slot1 = np.mean([pattern(d, 1, 1, 0) for d in range(7)])
    assert model.table[1, 1, 0].item() == pytest.approx(want_slot1, abs=1e-4)
    node_mean = np.nanmean(vals[:, 1, 0])
    assert model.table[2, 1, 0].item() == pytest.approx(node_mean, abs=1e-4)


def test_errors():
    with pytest.raises(DiststError, match="time features"):
        HistoricalAverage(num_nodes=N, input_dim=C + 1, output_dim=C)
    model = make()
    with pytest.raises(DiststError, match="fit_history"):
        model(torch.zeros(1, 3, N, C + 2))
    with pytest.raises(DiststError, match="expected"):
        model.fit_history(np.zeros((5, N + 1, C)), np.zeros(5), np.zeros(5))
    with pytest.raises(DiststError, match="one per step"):
        model.fit_history(np.zeros((5, N, C)), np.zeros(4), np.zeros(5))


def test_data_without_day_of_week_gives_a_daily_table_and_reads_the_last_channel():
    from distst.nn.ha import HistoricalAverage

    # two value channels (speed, flow), target speed, time of day last, no day of week
    ha = HistoricalAverage(num_nodes=3, input_dim=3, output_dim=1, horizon=2, input_len=4,
                           steps_per_day=24, day_of_week=False)
    assert not ha.weekly and ha.tod_channel == 2
    with pytest.raises(DiststError, match="data.time_of_day=true"):
        HistoricalAverage(num_nodes=3, input_dim=2, output_dim=1, time_of_day=False)
