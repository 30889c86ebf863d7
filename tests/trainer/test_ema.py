"""The weight average of ``--store-ema``: decay, start update, update frequency, float32 accumulators."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqloom.trainer.ema import ExponentialMovingAverage


def _model(value: float) -> nn.Module:
    model = nn.Linear(2, 1)
    nn.init.constant_(model.weight, value)
    nn.init.constant_(model.bias, value)
    return model


def test_average_with_start_update_and_update_frequency() -> None:
    ema = ExponentialMovingAverage(decay=0.5, start_update=3, update_freq=2)
    values = [1.0, 3.0, 5.0, 7.0, 9.0, 11.0]
    expected = None
    for update, value in enumerate(values, start=1):
        ema.step(_model(value), update)
        if expected is None:
            expected = value  # the average starts at the first update's weights
        if update % 2 == 0:  # every second update; decay 0 before update 3
            decay = 0.0 if update < 3 else 0.5
            expected = decay * expected + (1 - decay) * value
        assert ema.state_dict()["weight"].flatten().tolist() == [pytest.approx(expected)] * 2
    assert ema.decay == 0.5 and expected == pytest.approx(0.5 * (0.5 * 3.0 + 0.5 * 7.0) + 0.5 * 11.0)


def test_fp32_accumulators_keep_what_half_weights_round_away() -> None:
    half = ExponentialMovingAverage(decay=0.999, fp32=True)
    plain = ExponentialMovingAverage(decay=0.999)
    base = _model(1.0).half()
    for update in range(1, 50):
        half.step(base if update == 1 else _model(1.0 + 1e-3 * update).half(), update)
        plain.step(base if update == 1 else _model(1.0 + 1e-3 * update).half(), update)
    fp32 = half.fp32_state_dict()
    assert fp32 is not None and fp32["weight"].dtype == torch.float32
    assert float(fp32["weight"][0, 0]) > 1.0  # accumulated in float32
    assert float(plain.state_dict()["weight"][0, 0]) == 1.0  # the half average never moves: steps round away
    with pytest.raises(ValueError, match="--ema-decay 1.5: a decay is a share, from 0 to 1"):
        ExponentialMovingAverage(decay=1.5)
