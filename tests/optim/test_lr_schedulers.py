"""LR schedules: tables of (update -> lr) from fairseq's formulas, fairseq's own log, and torch's plateau logic."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from seqloom import registry
from seqloom.optim import build_lr_scheduler
from seqloom.optim.lr_scheduler.cosine import CosineConfig, cosine_lr
from seqloom.optim.lr_scheduler.fixed import FixedConfig, fixed_lr
from seqloom.optim.lr_scheduler.inverse_sqrt import InverseSqrtConfig, inverse_sqrt_lr
from seqloom.optim.lr_scheduler.polynomial_decay import PolynomialDecayConfig, polynomial_decay_lr
from seqloom.optim.lr_scheduler.reduce_lr_on_plateau import ReduceLROnPlateauConfig, plateau_lr_after
from seqloom.optim.lr_scheduler.tri_stage import TriStageConfig, TriStagePhases, tri_stage_lr


def optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def table(fn, rows: list[tuple[int, float]], **kwargs) -> None:
    for n, expected in rows:
        assert fn(n, **kwargs) == pytest.approx(expected, rel=1e-12, abs=1e-15), f"update {n}"


# ---- inverse_sqrt ------------------------------------------------------------------------------


def test_inverse_sqrt_table() -> None:
    rows = [(0, 0.0), (1, 2.5e-4), (3, 7.5e-4), (4, 1e-3), (16, 5e-4), (100, 2e-4), (400, 1e-4)]
    table(inverse_sqrt_lr, rows, lr=1e-3, warmup_updates=4)
    # an explicit --warmup-init-lr: linear from it to --lr
    table(inverse_sqrt_lr, [(0, 1e-4), (2, 5.5e-4), (4, 1e-3)], lr=1e-3, warmup_updates=4, warmup_init_lr=1e-4)
    assert InverseSqrtConfig().warmup_updates == 4000 and InverseSqrtConfig().warmup_init_lr == -1


def test_inverse_sqrt_without_warmup_is_an_error_naming_the_flag() -> None:
    # fairseq divides by --warmup-updates (ZeroDivisionError); the decay would be 0 anyway
    with pytest.raises(ValueError, match="--warmup-updates > 0"):
        build_lr_scheduler("inverse_sqrt", InverseSqrtConfig(warmup_updates=0), optimizer(), lr=[1e-3])


def test_inverse_sqrt_equals_fairseqs_training_log(fairseq_fixtures) -> None:
    """fairseq-train --lr 1e-3 --warmup-updates 100 logged the rate every 10 updates (6 significant digits)."""
    log = (fairseq_fixtures / "mt/checkpoints/train.log").read_text(encoding="utf-8").splitlines()
    stats = [json.loads(line.split("| train_inner | ", 1)[1]) for line in log if "| train_inner | " in line]
    assert len(stats) == 30
    sched = build_lr_scheduler("inverse_sqrt", InverseSqrtConfig(warmup_updates=100), optimizer(), lr=[1e-3])
    for s in stats:
        n = int(s["num_updates"])
        assert f"{sched.step_update(n):g}" == s["lr"], n
    # and the rate stored in checkpoint_last.pt's optimizer state, bit for bit
    assert inverse_sqrt_lr(300, lr=1e-3, warmup_updates=100) == 0.0005773502691896258


def test_scheduler_sets_every_param_group_and_rejects_lr_lists() -> None:
    opt = torch.optim.SGD(
        [{"params": [torch.nn.Parameter(torch.zeros(1))]}, {"params": [torch.nn.Parameter(torch.zeros(1))]}], lr=9.0
    )
    sched = build_lr_scheduler("inverse_sqrt", InverseSqrtConfig(warmup_updates=4), opt, lr=[1e-3])
    assert [g["lr"] for g in opt.param_groups] == [0.0, 0.0]  # the rate of the first update
    sched.step_update(2)
    assert [g["lr"] for g in opt.param_groups] == [5e-4, 5e-4]
    with pytest.raises(ValueError, match="--lr-scheduler fixed"):
        build_lr_scheduler("inverse_sqrt", None, optimizer(), lr=[1e-3, 1e-4])


# ---- fixed ---------------------------------------------------------------------------------------


def test_fixed_table_per_epoch_with_force_anneal_and_warmup() -> None:
    lrs = [1.0, 0.5, 0.25]
    for epoch, expected in [(1, 1.0), (2, 0.5), (3, 0.25), (7, 0.25)]:
        assert fixed_lr(100, epoch, lrs=lrs) == expected
    # from --force-anneal on: lrs[-1] * shrink ** (epoch + 1 - force_anneal)
    for epoch, expected in [(1, 1.0), (2, 0.5), (3, 0.05), (4, 0.005)]:
        assert fixed_lr(100, epoch, lrs=[1.0, 0.5], force_anneal=3, lr_shrink=0.1) == pytest.approx(expected)
    # warmup: (n + 1) / warmup of the epoch's rate
    table(lambda n: fixed_lr(n, 1, lrs=[2.0], warmup_updates=4), [(0, 0.5), (1, 1.0), (3, 2.0), (4, 2.0), (50, 2.0)])
    table(lambda n: fixed_lr(n, 1, lrs=[2.0], warmup_updates=0), [(0, 2.0), (9, 2.0)])


def test_fixed_scheduler_follows_epochs() -> None:
    opt = optimizer()
    sched = build_lr_scheduler("fixed", FixedConfig(force_anneal=2, lr_shrink=0.5), opt, lr=[0.8])
    assert opt.param_groups[0]["lr"] == 0.8
    assert sched.step_begin_epoch(2) == pytest.approx(0.8 * 0.5)
    assert sched.step_update(10) == pytest.approx(0.4)
    assert sched.state_dict()["lr"] == pytest.approx(0.4)  # fairseq's key: the epoch's rate
    assert registry.LR_SCHEDULERS.config_cls("fixed") is FixedConfig


# ---- polynomial_decay ------------------------------------------------------------------------------


def test_polynomial_decay_table() -> None:
    kw = dict(lr=1.0, total_num_update=10, warmup_updates=2, end_learning_rate=0.1, power=2.0)
    table(polynomial_decay_lr, [(0, 0.0), (1, 0.5), (2, 1.0), (6, 0.325), (10, 0.1), (12, 0.1)], **kw)
    # no warmup, linear
    table(polynomial_decay_lr, [(0, 1.0), (5, 0.55), (9, 0.19)], lr=1.0, total_num_update=10, end_learning_rate=0.1)


def test_polynomial_decay_defaults_to_max_update_and_needs_a_length() -> None:
    sched = build_lr_scheduler("polynomial_decay", None, optimizer(), lr=[1.0], max_update=20)
    assert sched.step_update(10) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="--total-num-update or --max-update"):
        build_lr_scheduler("polynomial_decay", None, optimizer(), lr=[1.0])


class FairseqPolynomialDecay:
    """fairseq's stateful PolynomialDecayLRSchedule, transcribed, driven as its trainer drives it."""

    def __init__(self, lrs: list[float], warmup: int, total: int, force_anneal: int | None) -> None:
        self.lrs, self.warmup, self.total, self.force_anneal = lrs, warmup, total, force_anneal
        self.lr = lrs[0]
        self.warmup_factor = 1.0 / warmup if warmup > 0 else 1
        self.opt_lr = self.warmup_factor * self.lr

    def step_begin_epoch(self, epoch: int) -> None:
        if self.force_anneal is None or epoch < self.force_anneal:
            self.lr = self.lrs[min(epoch, len(self.lrs) - 1)]
        else:
            self.lr = self.opt_lr
        self.opt_lr = self.warmup_factor * self.lr

    def step_update(self, n: int) -> float:
        if self.warmup > 0 and n <= self.warmup:
            self.warmup_factor = n / float(self.warmup)
            self.opt_lr = self.warmup_factor * self.lr
        elif n >= self.total:
            self.opt_lr = 0.0
        else:
            self.opt_lr = self.lr * (1 - (n - self.warmup) / (self.total - self.warmup))
        return self.opt_lr


@pytest.mark.parametrize("lrs,force_anneal", [([1.0], None), ([1.0, 0.6], None), ([1.0], 3)])
def test_polynomial_decay_follows_fairseq_across_epochs(lrs: list[float], force_anneal: int | None) -> None:
    ref = FairseqPolynomialDecay(lrs, warmup=3, total=40, force_anneal=force_anneal)
    cfg = PolynomialDecayConfig(warmup_updates=3, total_num_update=40, force_anneal=force_anneal)
    ours = build_lr_scheduler("polynomial_decay", cfg, optimizer(), lr=lrs)
    n = 0
    for epoch in range(1, 6):
        ref.step_begin_epoch(epoch)
        ours.step_begin_epoch(epoch)
        assert ours.step_update(n) == pytest.approx(ref.step_update(n), rel=1e-12)
        for _ in range(9):
            n += 1
            assert ours.step_update(n) == pytest.approx(ref.step_update(n), rel=1e-12), (epoch, n)


# ---- cosine ----------------------------------------------------------------------------------------


def test_cosine_table_t_mult_1() -> None:
    kw = dict(lr=1.0, period=10, min_lr=0.0, lr_shrink=0.5)
    table(cosine_lr, [(0, 1.0), (5, 0.5), (10, 0.5), (15, 0.25), (20, 0.25)], **kw)
    # warmup from --min-lr (warmup_init_lr < 0), then the cosine starts at n = warmup
    kw = dict(lr=1.0, period=10, min_lr=0.1, warmup_updates=4)
    table(cosine_lr, [(0, 0.1), (2, 0.55), (4, 1.0), (9, 0.55)], **kw)


def test_cosine_table_t_mult_2() -> None:
    # periods of 10, 20, 40 updates starting at 0, 10, 30; each restart shrinks the range by 0.5
    kw = dict(lr=1.0, period=10, min_lr=0.2, t_mult=2.0, lr_shrink=0.5)
    rows = [(0, 1.0), (5, 0.6), (10, 0.5), (20, 0.3), (30, 0.25), (50, 0.15)]
    table(cosine_lr, rows, **kw)


def test_cosine_period_defaults_to_max_update_and_checks_min_lr() -> None:
    sched = build_lr_scheduler("cosine", CosineConfig(warmup_updates=10), optimizer(), lr=[1.0], max_update=110)
    assert sched.step_update(60) == pytest.approx(0.5)  # half of the 100-update period
    with pytest.raises(ValueError, match="--lr-period-updates or --max-update"):
        build_lr_scheduler("cosine", None, optimizer(), lr=[1.0])
    with pytest.raises(ValueError, match="--min-lr"):
        build_lr_scheduler("cosine", CosineConfig(min_lr=2.0), optimizer(), lr=[1.0], max_update=10)


# ---- tri_stage -------------------------------------------------------------------------------------


def test_tri_stage_table() -> None:
    phases = TriStagePhases(warmup=4, hold=2, decay=4)
    rows = [(0, 0.01), (2, 0.505), (4, 1.0), (5, 1.0), (6, 1.0), (8, 0.1), (10, 0.01), (11, 0.01), (99, 0.01)]
    table(tri_stage_lr, rows, lr=1.0, phases=phases)
    # no warmup: starts at the peak
    table(tri_stage_lr, [(0, 1.0), (1, 0.1)], lr=1.0, phases=TriStagePhases(warmup=0, hold=0, decay=2))


def test_tri_stage_phase_ratio_and_missing_decay() -> None:
    sched = build_lr_scheduler(
        "tri_stage", TriStageConfig(phase_ratio=(0.1, 0.4, 0.5)), optimizer(), lr=[1.0], max_update=100
    )
    assert sched.phases == TriStagePhases(warmup=10, hold=40, decay=50)
    assert sched.step_update(30) == 1.0 and sched.step_update(100) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="--decay-steps"):
        build_lr_scheduler("tri_stage", TriStageConfig(warmup_steps=5), optimizer(), lr=[1.0])
    with pytest.raises(ValueError, match="add up to 1"):
        build_lr_scheduler(
            "tri_stage", TriStageConfig(phase_ratio=(0.5, 0.4, 0.5)), optimizer(), lr=[1.0], max_update=10
        )


# ---- reduce_lr_on_plateau --------------------------------------------------------------------------


def torch_plateau_lrs(history: list[float], cfg: ReduceLROnPlateauConfig, lr: float, maximize: bool) -> list[float]:
    """What fairseq does: torch's ReduceLROnPlateau as fairseq configures it, one step per validation."""
    opt = optimizer(lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt,
        patience=cfg.lr_patience,
        factor=cfg.lr_shrink,
        mode="max" if maximize else "min",
        threshold=cfg.lr_threshold,
    )
    out = []
    for val in history:
        sched.step(val)
        out.append(opt.param_groups[0]["lr"])
    return out


@pytest.mark.parametrize("patience,maximize", [(0, False), (1, False), (2, False), (0, True)])
def test_plateau_is_a_pure_function_of_the_validation_history(patience: int, maximize: bool) -> None:
    history = [5.0, 4.0, 4.1, 3.0, 3.0, 2.9999, 3.5, 3.5, 2.0, 2.0, 2.0, 2.1, 1.0]
    cfg = ReduceLROnPlateauConfig(lr_patience=patience, lr_shrink=0.5)
    expected = torch_plateau_lrs(history, cfg, 1.0, maximize)
    ours = [plateau_lr_after(history[: i + 1], lr=1.0, cfg=cfg, maximize=maximize) for i in range(len(history))]
    assert ours == expected
    assert min(expected) < 1.0


def test_plateau_literal_table_and_floor() -> None:
    cfg = ReduceLROnPlateauConfig(lr_shrink=0.5)
    assert [plateau_lr_after([5, 4, 4.1, 3, 3][: i + 1], lr=1.0, cfg=cfg) for i in range(5)] == [1, 1, 0.5, 0.5, 0.25]
    # torch ignores changes below 1e-8, so the rate stops shrinking there
    assert plateau_lr_after([1.0] * 40, lr=1e-6, cfg=ReduceLROnPlateauConfig(lr_shrink=0.1)) == pytest.approx(1e-8)


def test_plateau_warmup_ignores_early_validation_and_round_trips_state() -> None:
    opt = optimizer()
    cfg = ReduceLROnPlateauConfig(warmup_updates=4, lr_shrink=0.5)
    sched = build_lr_scheduler("reduce_lr_on_plateau", cfg, opt, lr=[1.0])
    assert [sched.step_update(n) for n in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    fresh = build_lr_scheduler("reduce_lr_on_plateau", cfg, optimizer(), lr=[1.0])
    fresh.step_update(2)
    fresh.step(1, 3.0)  # during warmup: ignored, as in fairseq
    fresh.step(2, 3.0)
    assert fresh.state.best == math.inf and fresh.state.last_epoch == 2
    sched.step(1, 3.0)
    sched.step(2, 3.0)  # no improvement, patience 0 -> shrink
    assert sched.step_update(7) == 0.5
    state = sched.state_dict()
    assert state == {"best": 3.0, "last_epoch": 2, "num_bad_epochs": 0, "lr": 0.5}
    # a fairseq checkpoint has no "lr": the reduced rate lives in the optimizer state, loaded first
    resumed_opt = optimizer(0.5)
    resumed = build_lr_scheduler("reduce_lr_on_plateau", cfg, resumed_opt, lr=[1.0])
    resumed_opt.param_groups[0]["lr"] = 0.5
    resumed.load_state_dict({k: v for k, v in state.items() if k != "lr"})
    assert resumed.step_update(9) == 0.5 and resumed.state.best == 3.0


def test_every_schedule_is_registered_with_fairseqs_defaults() -> None:
    assert registry.LR_SCHEDULERS.names() == [
        "cosine", "fixed", "inverse_sqrt", "manual", "polynomial_decay", "reduce_lr_on_plateau", "step", "tri_stage",
        "triangular",
    ]  # fmt: skip
    step, triangular = registry.LR_SCHEDULERS.config_cls("step")(), registry.LR_SCHEDULERS.config_cls("triangular")()
    assert (step.lr_deacy_period, step.lr_decay, step.warmup_init_lr) == (25000, 0.5, -1.0)
    assert (triangular.lr_period_updates, triangular.lr_shrink, triangular.shrink_min) == (5000, 0.1, False)
    assert (ReduceLROnPlateauConfig().lr_threshold, ReduceLROnPlateauConfig().lr_patience) == (1e-4, 0)
    assert (TriStageConfig().init_lr_scale, TriStageConfig().final_lr_scale) == (0.01, 0.01)
    assert (CosineConfig().t_mult, CosineConfig().lr_period_updates, CosineConfig().lr_shrink) == (1.0, -1.0, 0.1)
    assert (PolynomialDecayConfig().power, PolynomialDecayConfig().end_learning_rate) == (1.0, 0.0)


def test_scheduler_state_of_fairseqs_checkpoint_loads(fairseq_fixtures) -> None:
    import argparse

    torch.serialization.add_safe_globals([argparse.Namespace])
    path = fairseq_fixtures / "mt/checkpoints/checkpoint_last.pt"
    history = torch.load(path, map_location="cpu", weights_only=True)["optimizer_history"][-1]
    sched = build_lr_scheduler("inverse_sqrt", InverseSqrtConfig(warmup_updates=100), optimizer(), lr=[1e-3])
    sched.load_state_dict(history["lr_scheduler_state"])
    assert sched.best == 8.548 and sched.state_dict() == {"best": 8.548}
    assert sched.step_update(history["num_updates"]) == 0.0005773502691896258
    sched.step(5, 8.4)
    assert sched.best == 8.4


# ---- step, triangular, manual: fairseq's own schedules, driven as its trainer drives them ------------------------


def _fairseq_cases() -> list[dict]:
    path = Path(__file__).parents[1] / "fixtures" / "lr_schedulers" / "fairseq.json"
    return json.loads(path.read_text())


@pytest.mark.parametrize("case", _fairseq_cases(), ids=lambda c: f"{c['name']}-{sorted(c['options'])}")
def test_step_triangular_manual_equal_fairseqs_schedules(case: dict) -> None:
    """Every epoch start and update of 4 epochs x 30 updates (tests/fixtures/lr_schedulers, from fairseq 0.12.3)."""
    options = {k: v for k, v in case["options"].items() if k != "lr"}
    cfg = registry.LR_SCHEDULERS.config_cls(case["name"])(**options)
    opt = optimizer()
    sched = build_lr_scheduler(case["name"], cfg, opt, lr=case["options"]["lr"])
    assert opt.param_groups[0]["lr"] == pytest.approx(case["initial"], rel=1e-12)
    for kind, at, want in case["rates"]:
        got = sched.step_begin_epoch(at) if kind == "epoch" else sched.step_update(at)
        if want is not None:  # fairseq's step/triangular return nothing at an epoch start
            assert got == pytest.approx(want, rel=1e-12, abs=1e-18), f"{kind} {at}"


@pytest.mark.parametrize(("name", "options", "message"), [
    ("triangular", {}, "needs --max-lr"),
    ("triangular", {"max_lr": 1e-4}, "--max-lr .* must be more than --lr"),
    ("step", {"lr_deacy_period": 0}, "--lr-deacy-period must be positive"),
    ("step", {"min_lr": 0.01}, "must be more than --min-lr"),
    ("manual", {"update2lr": "[1, 2]"}, "--update2lr: .* must evaluate to a dictionary"),
])  # fmt: skip
def test_bad_schedule_options_are_named(name: str, options: dict, message: str) -> None:
    cfg = registry.LR_SCHEDULERS.config_cls(name)(**options)
    with pytest.raises(ValueError, match=message):
        build_lr_scheduler(name, cfg, optimizer(), lr=[1e-3])


def test_manual_schedule_resumes_its_rate() -> None:
    cfg = registry.LR_SCHEDULERS.config_cls("manual")(epoch2lr='{"1": 0.1, "3": 0.02}')
    sched = build_lr_scheduler("manual", cfg, optimizer(), lr=[0.3])
    sched.step_begin_epoch(3)
    state = sched.state_dict()
    fresh = build_lr_scheduler("manual", cfg, optimizer(), lr=[0.3])
    fresh.load_state_dict(state)
    assert state["lr"] == 0.02 and fresh.lr == 0.02
