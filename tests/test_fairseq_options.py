"""Every option fairseq 0.12's commands accept is handled by the seqloom command of the same name: seqloom
defines it, accepts it with a note (it changes nothing here), or stops with the reason (a feature seqloom
lacks). A pasted fairseq command line never ends in "unrecognized argument".

The option lists come from fairseq's own parsers (``fixtures/fairseq_options/dump_options.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seqloom.cli.fairseq_flags import handled_elsewhere
from seqloom.cli.parser import SELECTORS, build_parser

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "fairseq_options" / "options.json").read_text())
FLAGS = {flag: dest for dest, (flag, _) in SELECTORS.items()}


def _spec(command: str):
    from seqloom.cli import eval_lm, generate, interactive, preprocess, train, validate

    modules = {"train": train, "generate": generate, "interactive": interactive, "validate": validate,
               "eval-lm": eval_lm, "preprocess": preprocess}  # fmt: skip
    return modules[command].SPEC


def seqloom_options(command: str, argv: list[str]) -> set[str]:
    """The options of seqloom's ``command`` with the components ``argv`` names."""
    from seqloom.components import import_builtins

    import_builtins()
    spec = _spec(command)
    chosen = dict(spec.selectors)
    for flag, value in zip(argv, argv[1:]):
        if flag in FLAGS and FLAGS[flag] in chosen:
            chosen[FLAGS[flag]] = value
    parser, _ = build_parser(spec, chosen)
    return set(parser.option_names())


def fairseq_options_of(case: dict) -> list[str]:
    dropped = set(case["drops"])
    return [f for f in FIXTURE["commands"][case["command"]] if f not in dropped] + case["adds"]


def unhandled(command: str, argv: list[str], fairseq_options: list[str]) -> list[str]:
    ours = seqloom_options(command, argv)
    return [flag for flag in fairseq_options if flag not in ours and not handled_elsewhere(flag)]


@pytest.mark.parametrize("name", sorted(FIXTURE["cases"]))
def test_every_fairseq_option_of_the_command_is_handled(name: str) -> None:
    case = FIXTURE["cases"][name]
    fairseq_options = fairseq_options_of(case)
    assert unhandled(case["command"], case["argv"], fairseq_options) == []


def test_the_tables_agree_with_fairseq_on_which_options_take_a_value() -> None:
    from seqloom.cli.fairseq_flags import IGNORED, NOT_USED_HERE

    takes_value = FIXTURE["takes_value"]
    for table in (IGNORED, NOT_USED_HERE):
        for flag, (value, _) in table.items():
            if flag in takes_value:
                assert value == takes_value[flag], flag


def test_options_accepted_as_not_used_here_are_options_of_another_seqloom_command() -> None:
    from seqloom.cli.fairseq_flags import NOT_USED_HERE

    defined = set()
    for command in ("train", "generate", "interactive"):
        defined |= seqloom_options(command, [])
    assert sorted(set(NOT_USED_HERE) - defined) == []


def test_a_generate_command_line_with_training_options_parses_with_notes(capsys: pytest.CaptureFixture[str]) -> None:
    from seqloom.cli.parser import parse_args

    argv = ["data-bin", "--path", "a.pt", "--save-dir", "ckpt", "--ddp-backend=c10d", "--reset-optimizer",
            "--eos", "2", "--max-len-b-mt", "200", "--beam", "4"]  # fmt: skip
    args = parse_args(_spec("generate"), argv)
    assert args.namespace.data == "data-bin" and args.namespace.beam == 4
    err = capsys.readouterr().err
    assert "seqloom generate: ignoring fairseq's --save-dir: an option of saving training checkpoints" in err
    assert "--ddp-backend: an option of distributed training, which this command does not do" in err
    assert "--reset-optimizer" in err and "--eos: it applies to the BLEU scorer" in err and "(UnitY) only" in err


def test_preprocess_takes_fairseqs_shared_options_with_a_note(tmp_path: Path, capsys) -> None:
    from seqloom.cli.preprocess import parse

    _, cfg = parse(["--source-lang", "en", "--target-lang", "es", "--bpe", "gpt2", "--optimizer", "adam",
                    "--destdir", str(tmp_path)])  # fmt: skip
    assert cfg.source_lang == "en" and cfg.destdir == str(tmp_path)
    assert "ignoring fairseq's --bpe: an option of generation" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--use-sharded-state", "--char-inputs", "--base-layers=2", "--fix-batches-to-gpus"])
def test_fairseq_options_of_missing_features_stop_training_with_the_reason(flag: str, capsys) -> None:
    from seqloom.cli.parser import parse_args

    with pytest.raises(SystemExit):
        parse_args(_spec("train"), ["data-bin", "--arch", "transformer", flag])
    name = flag.split("=")[0]
    assert f"{name} is a fairseq option that seqloom does not support" in capsys.readouterr().err


def test_train_keeps_tokenizer_and_bpe_in_the_checkpoint_for_the_hub() -> None:
    """fairseq-train saves --tokenizer/--bpe with the checkpoint's options; from_pretrained applies them."""
    from seqloom.cli.parser import parse_args
    from seqloom.cli.train import checkpoint_namespace
    from seqloom.hub.pretrained import checkpoint_groups

    argv = ["data-bin", "--arch", "transformer", "--tokenizer", "moses", "--moses-no-dash-splits",
            "--bpe", "subword_nmt", "--bpe-codes", "codes.txt"]  # fmt: skip
    groups = checkpoint_groups({"args": checkpoint_namespace(parse_args(_spec("train"), argv))})
    assert groups["bpe"]["_name"] == "subword_nmt" and groups["bpe"]["bpe_codes"] == "codes.txt"
    assert groups["tokenizer"]["_name"] == "moses" and groups["tokenizer"]["moses_no_dash_splits"] is True


def test_generate_reads_the_checkpoint_named_by_checkpoint_suffix(
    fairseq_fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from seqloom.cli.generate import main

    mt = fairseq_fixtures / "mt"
    shutil.copy(mt / "checkpoints" / "checkpoint_best.pt", tmp_path / "checkpoint_best-shard0.pt")
    argv = [str(mt / "data-bin"), "--path", str(tmp_path / "checkpoint_best.pt"), "--beam", "1", "--batch-size", "64",
            "--cpu", "--quiet"]  # fmt: skip
    assert main([*argv, "--checkpoint-suffix=-shard0"]) == 0
    assert "Generate test with beam=1: BLEU4" in capsys.readouterr().out
    assert main([*argv, "--checkpoint-suffix=-shard1"]) == 1  # checkpoint_best-shard1.pt does not exist
    assert "checkpoint_best-shard1.pt" in capsys.readouterr().err


CONFIGS = Path(__file__).parent / "fixtures" / "fairseq_options"


@pytest.mark.parametrize(
    ("dump", "expected"),
    [
        ("translation.yaml", {"task": "translation", "arch": "transformer", "criterion": "label_smoothed_cross_entropy",
                              "label_smoothing": 0.1, "encoder_layers": 2, "max_tokens": 2048, "lr": [0.001],
                              "lr_scheduler": "inverse_sqrt", "warmup_updates": 100}),
        ("lm.yaml", {"task": "language_modeling", "arch": "transformer_lm", "tokens_per_sample": 128,
                     "decoder_layers": 2, "max_update": 200}),
        ("bart.yaml", {"task": "denoising", "arch": "bart_base", "mask": 0.3, "poisson_lambda": 3.5,
                       "encoder_layers": 2, "activation_dropout": 0.0}),
    ],
)  # fmt: skip
def test_fairseqs_full_config_dumps_configure_every_command(
    dump: str, expected: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    """fairseq's whole configuration of a checkpoint (hydra's .hydra/config.yaml layout: every group, each
    component section with its _name, the options of all commands) as --config: train takes its options,
    the other commands take theirs and pass over the rest, with few notes."""
    from seqloom.cli.parser import parse_args

    config = ["--config", str(CONFIGS / dump)]
    args = parse_args(_spec("train"), ["data-bin", *config])
    for key, value in expected.items():
        assert getattr(args.namespace, key) == value, key
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) <= 2 and all("ignoring fairseq's" in n for n in notes), notes
    task = expected["task"]
    for command in ("generate", "validate", "eval-lm") if task == "language_modeling" else ("generate", "validate"):
        args = parse_args(_spec(command), ["data-bin", "--path", "x.pt", *config, "--task", task])
        assert args.namespace.path == "x.pt" and args.namespace.task == task
    capsys.readouterr()


@pytest.mark.parametrize("name", ["train-translation", "generate", "interactive", "eval-lm", "train-lm"])
def test_a_command_line_with_every_option_seqloom_notes_parses(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every fairseq option that the command accepts with a note, given at once (with a value where fairseq's
    takes one): the command line parses, each gets its note, and the command's own options keep their values."""
    from seqloom.cli.fairseq_flags import IGNORED, IGNORED_WHEN_OFF, NOT_USED_HERE
    from seqloom.cli.parser import parse_args

    case = FIXTURE["cases"][name]
    ours = seqloom_options(case["command"], case["argv"])
    argv = ["data-bin", *case["argv"], "--seed", "7"]
    noted = []
    for flag in fairseq_options_of(case):
        if flag in ours:
            continue
        if flag in IGNORED_WHEN_OFF:
            argv += [flag, IGNORED_WHEN_OFF[flag][0]]
        elif flag in IGNORED or flag in NOT_USED_HERE:
            argv += [flag, "1"] if FIXTURE["takes_value"][flag] else [flag]
        else:
            continue
        noted.append(flag)
    assert noted
    args = parse_args(_spec(case["command"]), argv)
    assert args.namespace.data == "data-bin" and args.namespace.seed == 7
    err = capsys.readouterr().err
    assert all(f"ignoring fairseq's {flag}" in err for flag in noted)
