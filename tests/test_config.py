"""The dataclass -> flags machinery: names, defaults, presets, YAML, and errors that name the flag."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import pytest

from seqloom import registry
from seqloom.cli.parser import CommandSpec, parse_args
from seqloom.config import field
from seqloom.config.options import parse_literal_tuple


@dataclass(kw_only=True)
class ToyGroup:
    data: Optional[str] = field(None, help="data directory", positional=True)
    max_tokens: Optional[int] = field(None, help="maximum tokens in a batch")
    lr: list[float] = field([0.25], help="learning rate")
    valid_subset: str = field("valid", help="comma separated list of subsets")
    no_epoch_checkpoints: bool = field(False, help="only store last and best checkpoints")
    log_format: Optional[Literal["json", "simple"]] = field(None, help="log format")


@dataclass(kw_only=True)
class ToyModelConfig:
    embed_dim: int = field(512, help="embedding dimension")
    dropout: float = field(0.1, help="dropout probability")
    max_source_positions: int = field(1024, help="max source positions")


@dataclass(kw_only=True)
class ToyOptimizerConfig:
    adam_betas: tuple[float, float] = field((0.9, 0.999), help="betas for Adam")


registry.MODELS.add("toy_model_cfgtest", object, config=ToyModelConfig)
registry.OPTIMIZERS.add("toy_adam_cfgtest", object, config=ToyOptimizerConfig)


@registry.register_architecture("toy_model_cfgtest", "toy_arch_cfgtest")
def toy_arch() -> ToyModelConfig:
    return ToyModelConfig()


@registry.register_architecture("toy_model_cfgtest", "toy_arch_cfgtest_small")
def toy_arch_small() -> ToyModelConfig:
    return ToyModelConfig(embed_dim=64, dropout=0.3)


SPEC = CommandSpec(
    prog="seqloom toy",
    description="toy",
    groups=(("toy", ToyGroup),),
    selectors={"arch": "toy_arch_cfgtest", "optimizer": None},
)


def test_flags_have_fairseq_names_and_defaults() -> None:
    args = parse_args(SPEC, ["data-bin", "--max-tokens", "4096", "--no-epoch-checkpoints", "--lr", "0.001"])
    toy = args["toy"]
    assert toy.data == "data-bin"
    assert toy.max_tokens == 4096
    assert toy.no_epoch_checkpoints is True
    assert toy.lr == [0.001]
    assert toy.valid_subset == "valid"
    assert args["model"] == ToyModelConfig()


def test_arch_preset_gives_defaults_and_flags_override_it() -> None:
    args = parse_args(SPEC, ["--arch", "toy_arch_cfgtest_small", "--dropout", "0.2"])
    assert args["model"].embed_dim == 64
    assert args["model"].dropout == 0.2


def test_tuple_option_reads_fairseq_spelling() -> None:
    args = parse_args(SPEC, ["--optimizer", "toy_adam_cfgtest", "--adam-betas", "(0.9, 0.98)"])
    assert args["optimizer"].adam_betas == (0.9, 0.98)
    assert parse_literal_tuple("0.9,0.98") == (0.9, 0.98)


def test_unknown_flag_names_it_and_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(SPEC, ["--max-token", "10"])
    err = capsys.readouterr().err
    assert "--max-token" in err and "did you mean --max-tokens" in err


def test_no_abbreviations(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(SPEC, ["--max-tok", "10"])
    assert "--max-tok" in capsys.readouterr().err


def test_bad_value_names_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(SPEC, ["--max-tokens", "lots"])
    err = capsys.readouterr().err
    assert "--max-tokens" in err and "lots" in err


def test_bad_choice_names_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(SPEC, ["--log-format", "xml"])
    assert "--log-format" in capsys.readouterr().err


def test_unknown_component_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="toy_arch_cfgtest"):
        parse_args(SPEC, ["--arch", "toy_arch_cfgtst"])


def test_yaml_config_with_cli_overrides(tmp_path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("max-tokens: 1000\nmodel:\n  _name: toy_arch_cfgtest_small\n  dropout: 0.5\nlr: [0.5]\n")
    args = parse_args(SPEC, ["--config", str(cfg), "--dropout", "0.25"])
    assert args["toy"].max_tokens == 1000
    assert args["toy"].lr == [0.5]
    assert args["model"].embed_dim == 64  # preset named in the YAML
    assert args["model"].dropout == 0.25  # the command line wins over the YAML


def test_yaml_unknown_key_names_it(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("max_tokns: 1000\n")
    with pytest.raises(SystemExit):
        parse_args(SPEC, ["--config", str(cfg)])
    err = capsys.readouterr().err
    assert "max_tokns" in err and "max_tokens" in err and "run.yaml" in err


def test_help_is_grouped(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(SPEC, ["--arch", "toy_arch_cfgtest_small", "--help"])
    out = capsys.readouterr().out
    assert "model (toy_arch_cfgtest_small)" in out and "--embed-dim" in out and "--max-tokens" in out


def test_registry_rejects_duplicates() -> None:
    reg: registry.Registry[object] = registry.Registry("thing")
    reg.add("a", object)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", object)
    with pytest.raises(KeyError, match="Did you mean 'a'"):
        reg.get("b" if False else "aa")


def test_user_dir_plugin_registers_components(tmp_path) -> None:
    plugin = tmp_path / "my_plugin_cfgtest"
    plugin.mkdir()
    (plugin / "__init__.py").write_text(
        "from seqloom import registry\nregistry.CRITERIONS.add('my_criterion_cfgtest', object)\n"
    )
    spec = CommandSpec(prog="t", description="t", groups=(), selectors={"criterion": None})
    args = parse_args(spec, ["--user-dir", str(plugin), "--criterion", "my_criterion_cfgtest"])
    assert args.namespace.criterion == "my_criterion_cfgtest"


def test_user_dir_that_is_no_package_is_a_usage_error(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = CommandSpec(prog="seqloom t", description="t", groups=(), selectors={"criterion": None})
    for path, why in ((tmp_path, "a package needs an __init__.py"), (tmp_path / "gone", "no such file or directory")):
        with pytest.raises(SystemExit) as exited:
            parse_args(spec, ["--user-dir", str(path)])
        assert exited.value.code == 2
        assert f"seqloom t: error: --user-dir {path}: {why}" in capsys.readouterr().err


def _command_specs() -> dict[str, CommandSpec]:
    from seqloom.cli import eval_lm, generate, interactive, train, validate

    return {m.__name__: m.SPEC for m in (train, generate, interactive, validate, eval_lm)}


def test_fairseq_flags_that_change_nothing_here_are_accepted_with_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    from seqloom.cli.train import SPEC as TRAIN

    argv = ["--fast-stat-sync", "--all-gather-list-size", "16384", "data-bin", "--distributed-no-spawn"]
    args = parse_args(TRAIN, [*argv, "--arch", "transformer", "--all-gather-list-size=8", "--heartbeat-timeout", "-1"])
    assert args.namespace.data == "data-bin"  # the option's value was not taken for the positional
    err = capsys.readouterr().err
    assert "ignoring fairseq's --heartbeat-timeout -1: -1 turns fairseq's heartbeat watchdog off" in err
    assert "seqloom train: ignoring fairseq's --fast-stat-sync: seqloom already sums" in err
    assert err.count("ignoring fairseq's --all-gather-list-size") == 2 and "--distributed-no-spawn" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--use-bmuf"], "--use-bmuf is a fairseq option that seqloom does not support: BMUF training is not "
                         "implemented; use torchrun with --ddp-backend pytorch_ddp or fully_sharded"),
        (["--azureml-logging"], "use --tensorboard-logdir or --wandb-project"),
        (["--heartbeat-timeout", "600"], "--heartbeat-timeout is a fairseq option that seqloom does not support"),
    ],
)  # fmt: skip
def test_fairseq_flags_seqloom_lacks_stop_with_the_reason(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from seqloom.cli.train import SPEC as TRAIN

    with pytest.raises(SystemExit):
        parse_args(TRAIN, ["data-bin", "--arch", "transformer", *argv])
    err = capsys.readouterr().err
    assert expected in err and "did you mean" not in err


def test_the_fairseq_flag_tables_name_no_option_a_command_defines() -> None:
    """A flag seqloom gains must leave the tables, or its users would get the note or the error instead."""
    from seqloom.cli.fairseq_flags import IGNORED, IGNORED_WHEN_OFF, UNSUPPORTED
    from seqloom.cli.parser import build_parser

    for name, spec in _command_specs().items():
        parser, _ = build_parser(spec, dict(spec.selectors))
        defined = set(parser.option_names())
        assert not defined & (set(IGNORED) | set(IGNORED_WHEN_OFF) | set(UNSUPPORTED)), name


def test_a_config_files_fairseq_options_follow_the_same_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In ``--config``: options that change nothing here get a note; those of missing features pass when off
    (fairseq writes them out at their defaults) and stop with the reason when on."""
    from seqloom.cli.train import SPEC as TRAIN

    config = tmp_path / "run.yaml"
    config.write_text(
        "common: {fast_stat_sync: true, tpu: false, model_parallel_size: 1, heartbeat_timeout: -1}\n"
        "distributed_training: {ddp_comm_hook: none, plasma_path: /tmp/plasma}\n",
        encoding="utf-8",
    )
    args = parse_args(TRAIN, ["data-bin", "--arch", "transformer", "--config", str(config)])
    assert args.namespace.data == "data-bin"
    err = capsys.readouterr().err
    assert "ignoring fairseq's --fast-stat-sync" in err
    # off, or a parameter of a feature that is off (--use-plasma-view): nothing to say
    assert "--tpu" not in err and "--model-parallel-size" not in err and "--plasma-path" not in err
    config.write_text("common: {model_parallel_size: 2}\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        parse_args(TRAIN, ["data-bin", "--arch", "transformer", "--config", str(config)])
    err = capsys.readouterr().err
    assert f"--config {config}: --model-parallel-size is a fairseq option that seqloom does not support" in err
    config.write_text("common: {no_such_option: 1}\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        parse_args(TRAIN, ["data-bin", "--arch", "transformer", "--config", str(config)])
    assert "unknown option 'no_such_option'" in capsys.readouterr().err


def test_a_config_files_references_to_other_options_take_their_values(tmp_path: Path) -> None:
    """OmegaConf interpolations as fairseq's hydra configs write them: ``${optimization.lr}``."""
    from seqloom.cli.train import SPEC as TRAIN

    config = tmp_path / "run.yaml"
    config.write_text(
        "optimization: {lr: [0.0005], max_update: 1000}\n"
        "lr_scheduler: {_name: polynomial_decay, total_num_update: '${optimization.max_update}',"
        " warmup_updates: '${optimization.no_such}'}\n",
        encoding="utf-8",
    )
    args = parse_args(TRAIN, ["data-bin", "--arch", "transformer", "--config", str(config)])
    assert args.namespace.total_num_update == 1000 and args.namespace.lr == [0.0005]
    assert args.namespace.warmup_updates == 0  # an unset reference leaves the default


@pytest.mark.parametrize("order", ["activation_first", "relu_first"])
def test_a_config_files_old_option_names_set_the_option_unless_it_has_a_value(order: str, tmp_path: Path) -> None:
    """fairseq's old checkpoints write ``activation_dropout`` and its old name ``relu_dropout``; the model reads
    ``activation_dropout or relu_dropout``, whichever key comes first."""
    from seqloom.cli.train import SPEC as TRAIN

    keys = ["activation_dropout: 0.0", "relu_dropout: 0.2"]
    config = tmp_path / "run.yaml"
    config.write_text("\n".join(keys if order == "activation_first" else keys[::-1]) + "\n", encoding="utf-8")
    args = parse_args(TRAIN, ["data-bin", "--arch", "transformer", "--config", str(config)])
    assert args.namespace.activation_dropout == 0.2
    config.write_text("relu_dropout: 0.2\nactivation_dropout: 0.1\n", encoding="utf-8")
    args = parse_args(TRAIN, ["data-bin", "--arch", "transformer", "--config", str(config)])
    assert args.namespace.activation_dropout == 0.1
