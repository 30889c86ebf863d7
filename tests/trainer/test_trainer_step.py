"""The trainer's update on a toy model: accumulation, clipping, loss scaling and overflow skipping."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from seqloom.trainer.distributed import DistInfo
from seqloom.trainer.precision import LossScaler
from seqloom.trainer.trainer import Trainer, TrainerOptions, should_empty_cache


class SumSquares(nn.Module):
    """A criterion on the contract: summed squared error, sample_size = rows."""

    def forward(self, model: nn.Module, sample: dict[str, Any]) -> tuple[torch.Tensor, int, dict[str, Any]]:
        err = model(sample["x"]) - sample["y"]  # (B, 1)
        loss = err.pow(2).sum()
        n = sample["x"].size(0)
        return loss, n, {"loss": loss.detach(), "ntokens": n, "nsentences": n, "sample_size": n}


class ConstantLR:
    def step_update(self, num_updates: int) -> float:
        return 0.1

    def step(self, epoch: int, val_loss: float | None) -> float:
        return 0.1

    def state_dict(self) -> dict[str, Any]:
        return {}


def make(**options: Any) -> Trainer:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return Trainer(
        model,
        SumSquares(),
        opt,
        ConstantLR(),
        dist=DistInfo(0, 1, torch.device("cpu")),
        options=TrainerOptions(**options),
    )


def batch(rows: slice) -> dict[str, Any]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, generator=g)
    return {"x": x[rows], "y": x.sum(dim=1, keepdim=True)[rows]}


def test_two_half_batches_update_like_one_batch() -> None:
    whole, halves = make(), make()
    r1 = whole.train_step([batch(slice(0, 8))])
    r2 = halves.train_step([batch(slice(0, 3)), batch(slice(3, 8))])
    assert r1.sample_size == r2.sample_size == 8
    assert r1.logging_output["loss"] == pytest.approx(r2.logging_output["loss"], rel=1e-6)
    assert r1.gnorm == pytest.approx(r2.gnorm, rel=1e-5)
    for a, b in zip(whole.model.parameters(), halves.model.parameters()):
        torch.testing.assert_close(a, b)
    assert whole.num_updates == halves.num_updates == 1


def test_clip_norm_reports_the_norm_before_clipping() -> None:
    free, clipped = make(), make(clip_norm=0.01)
    before = [p.detach().clone() for p in clipped.model.parameters()]
    r_free = free.train_step([batch(slice(0, 8))])
    r = clipped.train_step([batch(slice(0, 8))])
    assert r.clipped and r.gnorm == pytest.approx(r_free.gnorm) and r.gnorm > 0.01
    step = torch.cat([(p.detach() - b).flatten() for p, b in zip(clipped.model.parameters(), before)])
    assert step.norm().item() == pytest.approx(0.1 * 0.01, rel=1e-3)  # lr * clipped norm


def test_overflow_is_skipped_and_halves_the_scale() -> None:
    scaler = LossScaler(scale=2.0**10, scale_window=100)
    trainer = make(loss_scaler=scaler)
    bad = batch(slice(0, 8))
    bad["y"] = bad["y"] * float("inf")
    before = [p.detach().clone() for p in trainer.model.parameters()]
    r = trainer.train_step([bad])
    assert r.skipped and trainer.num_updates == 0 and scaler.scale == 2.0**9
    for p, b in zip(trainer.model.parameters(), before):
        torch.testing.assert_close(p, b)
    good = trainer.train_step([batch(slice(0, 8))])
    reference = make().train_step([batch(slice(0, 8))])
    assert not good.skipped and trainer.num_updates == 1
    assert good.gnorm == pytest.approx(reference.gnorm, rel=1e-5)  # the scale is divided out again


def test_non_finite_gradients_without_scaler_name_the_fix() -> None:
    trainer = make()
    bad = batch(slice(0, 8))
    bad["y"] = bad["y"] * math.nan
    with pytest.raises(FloatingPointError, match="--clip-norm"):
        trainer.train_step([bad])


def test_loss_scaler_grows_after_a_clean_window_and_stops_at_the_minimum() -> None:
    s = LossScaler(scale=4.0, scale_window=2, min_loss_scale=1.0)
    s.update(False)
    assert s.scale == 4.0
    s.update(False)  # two clean updates since the (virtual) overflow at iteration -1
    assert s.scale == 8.0
    s.update(False)
    s.update(False)
    assert s.scale == 16.0
    s = LossScaler(scale=4.0, scale_window=10, min_loss_scale=1.0)
    s.update(True)
    with pytest.raises(FloatingPointError, match="minimum loss scale"):
        s.update(True)  # 1.0 reaches the minimum (fairseq: <=), and the scale stays at 2.0
    assert s.scale == 2.0


def test_loss_scaler_tolerance_and_threshold() -> None:
    """--fp16-scale-tolerance 0.5: the scale only halves once half the updates since the last rescale
    overflowed; --threshold-loss-scale bounds it from below."""
    s = LossScaler(scale=64.0, scale_window=100, tolerance=0.5)
    seen = []
    for overflow in (False, False, False, True, False, True, True):
        s.update(overflow)
        seen.append(s.scale)
    # rescales: none at iteration 0 (window 100); overflow at 3: 1/4 < 0.5; at 5: 2/6; at 6: 3/7 < 0.5
    assert seen == [64.0] * 7
    s.update(True)  # 4/8 >= 0.5: halve, and count afresh
    assert s.scale == 32.0
    s.update(True)  # 1/1
    assert s.scale == 16.0
    floor = LossScaler(scale=8.0, scale_window=100, threshold=4.0)
    for _ in range(3):
        floor.update(True)
    assert floor.scale == 4.0
    restored = LossScaler()
    restored.load_state_dict(s.state_dict())
    assert restored.state_dict() == s.state_dict()


class HugeGradient(nn.Module):
    """Gradients of 2**53 per weight (8 rows of ones): overflow float32 at loss scales of 2**75 and up."""

    def forward(self, model: nn.Module, sample: dict[str, Any]) -> tuple[torch.Tensor, int, dict[str, Any]]:
        loss = model(sample["x"]).sum() * 2.0**50
        return loss, 1, {"loss": loss.detach(), "ntokens": 8, "nsentences": 8, "sample_size": 1}


@pytest.mark.parametrize(("retries", "applied"), [(2, True), (1, False)])
def test_amp_retries_an_overflowing_batch_at_the_lowered_scale(retries: int, applied: bool) -> None:
    """--amp-batch-retries: 2**76 and 2**75 overflow, 2**74 does not; two retries reach it, one does not."""
    scaler = LossScaler(scale=2.0**76, scale_window=100)
    trainer = make(loss_scaler=scaler, overflow_retries=retries)
    trainer.criterion = HugeGradient()
    result = trainer.train_step([{"x": torch.ones(8, 3)}])
    assert result.skipped is not applied and trainer.num_updates == int(applied)
    assert scaler.scale == 2.0**74


def test_dropout_depends_on_the_update_number_only() -> None:
    class Noisy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(nn.functional.dropout(x, 0.5, self.training))

    a, b = make(seed=5), make(seed=5)
    a.model, b.model = Noisy(), Noisy()
    b.model.load_state_dict(a.model.state_dict())
    a.params, b.params = list(a.model.parameters()), list(b.model.parameters())
    a.optimizer = torch.optim.SGD(a.params, lr=0.1)
    b.optimizer = torch.optim.SGD(b.params, lr=0.1)
    a.num_updates = b.num_updates = 7
    torch.manual_seed(123)  # whatever the global RNG state was, the update reseeds with seed + num_updates
    ra = a.train_step([batch(slice(0, 8))])
    rb = b.train_step([batch(slice(0, 8))])
    assert ra.logging_output["loss"] == rb.logging_output["loss"]


def test_empty_cache_frequency_follows_fairseq() -> None:
    assert [u for u in range(12) if should_empty_cache(u, 4)] == [1, 5, 9]
    assert not any(should_empty_cache(u, 0) for u in range(12))
