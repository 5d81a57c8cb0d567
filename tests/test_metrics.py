import json
import math

import numpy as np
import pytest
import torch

from distst.errors import DiststError
from distst.metrics import (
    StreamingMetrics,
    masked_error_sum,
    masked_mae,
    masked_mape,
    masked_mse,
    masked_rmse,
)

NAN = float("nan")


def test_hand_computed_with_nan():
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0])
    target = torch.tensor([2.0, NAN, 1.0, 8.0])
    # observed: errors -1, 2, -4
    assert masked_mae(pred, target).item() == pytest.approx(7 / 3)
    assert masked_mse(pred, target).item() == pytest.approx(21 / 3)
    assert masked_rmse(pred, target).item() == pytest.approx(math.sqrt(7))
    # |-1/2| + |2/1| + |-4/8| = 3 over 3 entries -> 100 %
    assert masked_mape(pred, target).item() == pytest.approx(100.0)


def test_null_value_zero_and_mape_eps():
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0])
    target = torch.tensor([2.0, 0.0, 1.0, 8.0])
    # zeros count by default (only NaN is missing) ...
    assert masked_mae(pred, target).item() == pytest.approx(9 / 4)
    assert masked_rmse(pred, target).item() == pytest.approx(math.sqrt(25 / 4))
    # ... but MAPE skips |y| < mape_eps
    assert masked_mape(pred, target).item() == pytest.approx(100.0)
    # null_value=0 makes zeros missing everywhere
    assert masked_mae(pred, target, null_value=0.0).item() == pytest.approx(7 / 3)
    assert masked_rmse(pred, target, null_value=0.0).item() == pytest.approx(math.sqrt(7))
    # a tiny target is excluded from MAPE only
    t2 = torch.tensor([2.0, 1e-4, 1.0, 8.0])
    assert masked_mape(pred, t2).item() == pytest.approx(100.0)
    assert masked_mape(pred, t2, mape_eps=1e-5).item() == pytest.approx(
        100 * (3 + abs(2 - 1e-4) / 1e-4) / 4, rel=1e-5
    )


def test_numpy_inputs_and_shape_error():
    assert masked_mae(np.array([1.0, 3.0]), np.array([2.0, 2.0])).item() == pytest.approx(1.0)
    with pytest.raises(DiststError, match="shape"):
        masked_mae(torch.zeros(3), torch.zeros(4))
    with pytest.raises(DiststError, match="train.loss"):
        masked_error_sum(torch.zeros(3), torch.zeros(3), "huber2")


@pytest.mark.parametrize("fn", [masked_mae, masked_mse, masked_rmse, masked_mape])
def test_gradient_finite_when_nothing_observed(fn):
    pred = torch.randn(2, 3, 4, 1, requires_grad=True)
    target = torch.full((2, 3, 4, 1), NAN)
    loss = fn(pred, target)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad == 0).all()


@pytest.mark.parametrize("fn", [masked_mae, masked_rmse, masked_mape])
def test_gradient_finite_with_missing_and_zero_error(fn):
    target = torch.tensor([[1.0, NAN], [0.0, 2.0]])
    pred = target.nan_to_num(5.0).clone().requires_grad_(True)  # zero error where observed
    fn(pred, target).backward()
    assert torch.isfinite(pred.grad).all()
    # the missing entry never receives gradient
    assert pred.grad[0, 1] == 0
    pred2 = torch.tensor([[3.0, 1.0], [1.0, 2.0]], requires_grad=True)
    fn(pred2, target).backward()
    assert torch.isfinite(pred2.grad).all() and pred2.grad[0, 1] == 0 and pred2.grad[0, 0] != 0


def _random_batch(gen, b, h=4, n=5, c=2, missing=0.3):
    pred = torch.randn(b, h, n, c, generator=gen, dtype=torch.float64) * 3 + 10
    target = torch.randn(b, h, n, c, generator=gen, dtype=torch.float64) * 3 + 10
    target[torch.rand(b, h, n, c, generator=gen) < missing] = NAN
    return pred, target


def test_streaming_hand_computed():
    # B=1, H=2, N=2, C=1
    pred = torch.tensor([[[[1.0], [2.0]], [[3.0], [5.0]]]])
    target = torch.tensor([[[[2.0], [NAN]], [[1.0], [4.0]]]])
    m = StreamingMetrics(horizon=2)
    m.update(pred, target)
    r = m.compute()
    assert r["mae"] == pytest.approx([1.0, 1.5])
    assert r["rmse"] == pytest.approx([1.0, math.sqrt(2.5)])
    assert r["mape"] == pytest.approx([50.0, 100 * (2.0 + 0.25) / 2])
    assert r["count"] == [1, 2]
    # pooled: (1 + 2 + 1) / 3, not the mean of the step means (1.25)
    assert r["avg"]["mae"] == pytest.approx(4 / 3)
    assert r["avg"]["rmse"] == pytest.approx(math.sqrt(6 / 3))
    assert r["avg"]["mape"] == pytest.approx(100 * 2.75 / 3)
    assert r["avg"]["count"] == 3


def test_streaming_equals_one_shot_and_masked_losses():
    gen = torch.Generator().manual_seed(0)
    batches = [_random_batch(gen, b) for b in (3, 1, 5)]
    m = StreamingMetrics(horizon=4)
    for p, t in batches:
        m.update(p.float(), t.float())
    pred = torch.cat([p for p, _ in batches]).float()
    target = torch.cat([t for _, t in batches]).float()
    one = StreamingMetrics(horizon=4)
    one.update(pred, target)
    assert torch.allclose(m.state(), one.state(), rtol=1e-12)
    r = m.compute()
    for h in range(4):
        assert r["mae"][h] == pytest.approx(masked_mae(pred[:, h], target[:, h]).item(), rel=1e-5)
        assert r["rmse"][h] == pytest.approx(masked_rmse(pred[:, h], target[:, h]).item(), rel=1e-5)
        assert r["mape"][h] == pytest.approx(masked_mape(pred[:, h], target[:, h]).item(), rel=1e-5)
    assert r["avg"]["mae"] == pytest.approx(masked_mae(pred, target).item(), rel=1e-5)
    assert r["avg"]["rmse"] == pytest.approx(masked_rmse(pred, target).item(), rel=1e-5)
    assert r["avg"]["mape"] == pytest.approx(masked_mape(pred, target).item(), rel=1e-5)


def test_streaming_null_value_zero():
    pred = torch.tensor([[[1.0, 2.0, 3.0]]]).reshape(1, 1, 3, 1)
    target = torch.tensor([[[2.0, 0.0, 1.0]]]).reshape(1, 1, 3, 1)
    m = StreamingMetrics(horizon=1, null_value=0.0)
    m.update(pred, target)
    assert m.compute()["mae"] == pytest.approx([1.5])
    m0 = StreamingMetrics(horizon=1)
    m0.update(pred, target)
    assert m0.compute()["mae"] == pytest.approx([5 / 3])
    assert m0.compute()["mape"] == pytest.approx([100 * 2.5 / 2])  # 0 excluded by mape_eps


def test_merge_two_states_equals_single_stream():
    gen = torch.Generator().manual_seed(1)
    batches = [_random_batch(gen, b) for b in (2, 4, 3, 1)]
    a, b, both = StreamingMetrics(4), StreamingMetrics(4), StreamingMetrics(4)
    for i, (p, t) in enumerate(batches):
        (a if i % 2 == 0 else b).update(p, t)
        both.update(p, t)
    summed = a.state() + b.state()  # what an all-reduce(SUM) produces
    merged = StreamingMetrics.from_state(summed, horizon=4)
    a.merge_state(b.state())
    for x in (merged, a):
        assert torch.allclose(x.state(), both.state(), rtol=1e-12)
        assert x.compute()["avg"]["mae"] == pytest.approx(both.compute()["avg"]["mae"])
    assert summed.dtype == torch.float64 and summed.shape == (5 * 4,)
    with pytest.raises(DiststError, match="horizon"):
        StreamingMetrics(3).merge_state(both.state())


def test_update_detaches_and_leaves_inputs_alone():
    pred = torch.ones(2, 3, 4, 1, requires_grad=True)
    target = torch.zeros(2, 3, 4, 1)
    m = StreamingMetrics(3)
    m.update(pred * 2, target)
    assert m.compute()["mae"] == pytest.approx([2.0] * 3)
    assert pred.grad is None
    with pytest.raises(DiststError, match="horizon=3"):
        m.update(torch.zeros(2, 4, 4, 1), torch.zeros(2, 4, 4, 1))


def test_report_keys_and_missing_steps():
    gen = torch.Generator().manual_seed(2)
    m = StreamingMetrics(12)
    p, t = _random_batch(gen, 2, h=12)
    t[:, 5] = NAN  # step 6 has nothing observed -> NaN, not 0
    m.update(p, t)
    rep = m.report()
    assert list(rep) == ["15min", "30min", "60min", "avg"]
    r = m.compute()
    assert rep["15min"]["mae"] == r["mae"][2] and rep["60min"]["rmse"] == r["rmse"][11]
    assert math.isnan(rep["30min"]["mae"]) and r["count"][5] == 0
    assert math.isfinite(rep["avg"]["mae"])
    json.dumps(rep)  # plain floats
    short = StreamingMetrics(4)
    short.update(*_random_batch(gen, 1, h=4))
    assert list(short.report(steps=(3, 6, 12))) == ["15min", "avg"]
    assert list(short.report(steps=(1, 2), step_minutes=2.5)) == ["2.5min", "5min", "avg"]


def test_masked_error_sum_kinds_and_missing():
    from distst.metrics import masked_error_sum

    pred = torch.tensor([1.0, 2.0, 4.0, 0.0])
    y = torch.tensor([0.0, 4.0, float("nan"), 3.0])
    for kind, want in (("mae", 1 + 2 + 3), ("mse", 1 + 4 + 9), ("mae_mse", 0.5 * (6 + 14))):
        total, count = masked_error_sum(pred, y, kind)
        assert float(total) == pytest.approx(want) and int(count) == 3
    # the mean of the sum matches masked_mae exactly, so switching the trainer changed nothing
    total, count = masked_error_sum(pred, y, "mae")
    assert torch.equal(total / count.clamp(min=1), masked_mae(pred, y))
    # huber, delta 1.5: |e| = 1 -> e^2/2; |e| = 2, 3 -> 1.5 * (|e| - 0.75)
    total, count = masked_error_sum(pred, y, "huber", delta=1.5)
    assert float(total) == pytest.approx(0.5 + 1.5 * 1.25 + 1.5 * 2.25) and int(count) == 3
    # scale: the error divided by the std (the loss on the normalised scale); mask unchanged
    total, count = masked_error_sum(pred, y, "mae_mse", scale=torch.tensor([2.0]))
    assert float(total) == pytest.approx(0.5 * (3.0 + (0.25 + 1 + 2.25))) and int(count) == 3
    with pytest.raises(DiststError, match="huber"):
        masked_error_sum(pred, y, "hubr")
