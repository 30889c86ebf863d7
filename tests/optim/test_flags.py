"""The optimizer, schedule and criterion flags of fairseq commands parse into our configs unchanged."""

from __future__ import annotations

import torch

from seqloom.cli.parser import CommandSpec, parse_args
from seqloom.criterions import build_criterion
from seqloom.optim import build_lr_scheduler, build_optimizer

SPEC = CommandSpec(
    prog="seqloom flags-test",
    description="optimizer/schedule/criterion flags",
    groups=(),
    selectors={"optimizer": None, "lr_scheduler": "fixed", "criterion": "cross_entropy"},
)


def test_the_fixture_training_command_builds_fairseqs_setup() -> None:
    # the optimizer/schedule/criterion part of fixtures/fairseq/mt/checkpoints' fairseq-train command
    argv = "--optimizer adam --adam-betas (0.9,0.98) --lr-scheduler inverse_sqrt --warmup-updates 100".split()
    argv += ["--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"]
    args = parse_args(SPEC, argv)
    adam, sched_cfg, crit_cfg = args["optimizer"], args["lr_scheduler"], args["criterion"]
    assert (adam.adam_betas, adam.adam_eps, adam.weight_decay) == ((0.9, 0.98), 1e-8, 0.0)
    assert (sched_cfg.warmup_updates, sched_cfg.warmup_init_lr) == (100, -1.0)
    assert (crit_cfg.label_smoothing, crit_cfg.report_accuracy, crit_cfg.ignore_prefix_size) == (0.1, False, 0)
    model = torch.nn.Linear(4, 4)
    opt = build_optimizer("adam", adam, model.parameters(), lr=1e-3)
    sched = build_lr_scheduler("inverse_sqrt", sched_cfg, opt, lr=[1e-3])
    assert opt.param_groups[0]["betas"] == (0.9, 0.98) and sched.step_update(110) == 1e-3 * 100**0.5 * 110**-0.5
    assert build_criterion("label_smoothed_cross_entropy", crit_cfg, padding_idx=1).cfg.label_smoothing == 0.1


def test_fairseq_spellings_of_the_other_components() -> None:
    args = parse_args(SPEC, ["--optimizer", "nag", "--wd", "0.0001", "--lr-scheduler", "fixed", "--fa", "5"])
    assert (args["optimizer"].momentum, args["optimizer"].weight_decay) == (0.99, 0.0001)
    assert (args["lr_scheduler"].force_anneal, args["lr_scheduler"].lr_shrink) == (5, 0.1)
    argv = ["--optimizer", "adafactor", "--adafactor-eps", "(1e-30, 1e-2)", "--beta1", "0.9", "--scale-parameter"]
    argv += ["--lr-scheduler", "tri_stage", "--phase-ratio", "(0.1, 0.4, 0.5)", "--final-lr-scale", "0.05"]
    args = parse_args(SPEC, argv)
    assert args["optimizer"].adafactor_eps == (1e-30, 1e-2) and args["optimizer"].scale_parameter is True
    assert args["lr_scheduler"].phase_ratio == (0.1, 0.4, 0.5) and args["lr_scheduler"].final_lr_scale == 0.05
    argv = ["--lr-scheduler", "cosine", "--t-mult", "2", "--lr-period-updates", "500", "--min-lr", "1e-6"]
    cosine = parse_args(SPEC, argv)["lr_scheduler"]
    assert (cosine.t_mult, cosine.lr_period_updates, cosine.min_lr) == (2.0, 500.0, 1e-6)
    plateau = parse_args(SPEC, ["--lr-scheduler", "reduce_lr_on_plateau", "--lr-patience", "2"])["lr_scheduler"]
    assert (plateau.lr_patience, plateau.lr_threshold, plateau.lr_shrink) == (2, 1e-4, 0.1)
    poly = parse_args(SPEC, ["--lr-scheduler", "polynomial_decay", "--total-num-update", "1000", "--power", "2"])
    assert (poly["lr_scheduler"].total_num_update, poly["lr_scheduler"].power) == (1000.0, 2.0)


def test_lamb_takes_fairseqs_flags() -> None:
    args = parse_args(SPEC, ["--optimizer", "lamb", "--lamb-betas", "(0.9,0.98)", "--lamb-eps", "1e-6", "--wd", "0.01"])
    opt = build_optimizer("lamb", args["optimizer"], torch.nn.Linear(4, 4).parameters(), lr=2e-3)
    group = opt.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (2e-3, (0.9, 0.98), 1e-6, 0.01)
    assert (group["bias_correction"], group["grad_averaging"], group["max_grad_norm"]) == (True, True, 1.0)
    defaults = parse_args(SPEC, ["--optimizer", "lamb"])["optimizer"]
    assert (defaults.lamb_betas, defaults.lamb_eps, defaults.weight_decay) == ((0.9, 0.999), 1e-8, 0.0)
