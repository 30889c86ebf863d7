"""The parsed options live in one place: the configs. The flat namespace (a checkpoint's ``args``) is made from
them, so a change through ``ParsedArgs.set`` reaches both, a write to the namespace is refused, and a config
written to behind ``set``'s back is caught instead of silently disagreeing with the others."""

from __future__ import annotations

import argparse
import random
import typing
from pathlib import Path

import pytest

from seqloom.checkpoint.io import load_checkpoint
from seqloom.cli import preprocess, specs
from seqloom.cli.parsed import ParsedArgs
from seqloom.cli.parser import parse_args
from seqloom.cli.train import SPEC, checkpoint_namespace, run
from seqloom.trainer.checkpoints import fairseq_args

MODEL = ["--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "8",
         "--decoder-embed-dim", "8", "--encoder-ffn-embed-dim", "16", "--decoder-ffn-embed-dim", "16",
         "--encoder-attention-heads", "2", "--decoder-attention-heads", "2"]  # fmt: skip


def train_argv(data: str, *extra: str) -> list[str]:
    return [data, *MODEL, "--optimizer", "adam", "--max-tokens", "64", *extra]


def test_a_change_through_set_reaches_every_config_and_the_checkpoint_args() -> None:
    parsed = parse_args(SPEC, train_argv("data-bin"))
    parsed.set(max_tokens_valid=77, max_source_positions=33)
    args = fairseq_args(checkpoint_namespace(parsed))  # what a checkpoint stores as ``args``
    assert parsed["dataset"].max_tokens_valid == parsed.namespace.max_tokens_valid == args.max_tokens_valid == 77
    # an option two configs share (fairseq's task and model both read --max-source-positions) changes in both
    assert parsed["task"].max_source_positions == parsed["model"].max_source_positions == 33
    assert args.max_source_positions == 33


def test_the_namespace_is_read_only_and_a_write_behind_set_is_caught() -> None:
    parsed = parse_args(SPEC, train_argv("data-bin"))
    with pytest.raises(AttributeError, match=r"ParsedArgs.set\(lr=...\)"):
        parsed.namespace.lr = [0.1]
    assert parsed.namespace.lr == parsed["optimization"].lr == [0.25]  # fairseq's default, untouched
    parsed["model"].max_source_positions = 12  # not through set: the task's copy still says 1024
    with pytest.raises(RuntimeError, match="option max_source_positions: the task config holds 1024 but the model"):
        checkpoint_namespace(parsed)


def test_set_refuses_what_is_not_a_config_option_and_checks_values() -> None:
    parsed = parse_args(SPEC, train_argv("data-bin"))
    with pytest.raises(ValueError, match="'arch' cannot be changed after parsing: it is a component choice"):
        parsed.set(arch="transformer_lm")
    with pytest.raises(ValueError, match="'beam' cannot be changed after parsing"):
        parsed.set(beam=4)  # a generation option: train has none
    with pytest.raises(ValueError, match="option max_tokens = '9': expected an int"):
        parsed.set(max_tokens="9")
    with pytest.raises(ValueError, match=r"option beam = 0: --beam must be at least 1 \(got 0\)"):
        parse_args(specs.GENERATE, ["data-bin", "--path", "x.pt"]).set(beam=0)
    with pytest.raises(ValueError):  # one bad value: none of the others is applied either
        parsed.set(seed=5, max_tokens="9")
    assert parsed["common"].seed == parsed.namespace.seed == 1


@pytest.mark.parametrize("spec, argv", [
    (specs.TRAIN, train_argv("data-bin", "--criterion", "label_smoothed_cross_entropy", "--tokenizer", "moses",
                             "--memory-efficient-fp16")),
    (specs.GENERATE, ["data-bin", "--path", "x.pt", "--beam", "3", "--bpe", "gpt2"]),
    (specs.INTERACTIVE, ["data-bin", "--path", "x.pt", "--buffer-size", "2"]),
    (specs.VALIDATE, ["data-bin", "--path", "x.pt", "--task", "language_modeling"]),
    (specs.EVAL_LM, ["data-bin", "--path", "x.pt", "--context-window", "2"]),
    (specs.EXPORT, ["--path", "x.pt", "--out", "o", "--tokenizer", "moses"]),
    (specs.SCORE, ["-s", "a", "-r", "b"]),
])  # fmt: skip
def test_the_namespace_is_argparses_own_in_values_and_order(
    spec: specs.CommandSpec, argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, object]] = []
    made = ParsedArgs.from_namespace.__func__  # type: ignore[attr-defined]

    def recording(cls: type[ParsedArgs], ns: argparse.Namespace, *args: object, **kwargs: object) -> ParsedArgs:
        seen.append(dict(vars(ns)))
        return made(cls, ns, *args, **kwargs)

    monkeypatch.setattr(ParsedArgs, "from_namespace", classmethod(recording))
    parsed = parse_args(spec, argv)
    assert list(vars(parsed.namespace).items()) == list(seen[0].items())
    for dest in spec.selectors:  # the selectors' typed home holds what argparse parsed
        assert getattr(parsed.components, dest) == seen[0][dest]


def test_every_commands_groups_have_the_types_parsed_promises() -> None:
    overloads = typing.get_overloads(ParsedArgs.__getitem__)
    promised = {}
    for fn in overloads:
        hints = typing.get_type_hints(fn)
        (key,) = typing.get_args(hints["key"]) or (None,)
        if key is not None:
            promised[key] = hints["return"]
    for spec in (*specs.ALL_SPECS, specs.EXPORT, specs.SCORE):
        for title, cls in spec.groups:
            assert promised.get(title) is cls, (spec.prog, title)


def test_a_missing_component_is_named_with_its_flag() -> None:
    parsed = parse_args(SPEC, ["data-bin", "--max-tokens", "64"])
    assert parsed.components.arch is None and parsed.components.task == "translation"
    with pytest.raises(SystemExit, match=r"--arch is required \(choose from a, b\)"):
        parsed.components.required("arch", ["a", "b"])
    with pytest.raises(SystemExit, match="--lr-scheduler is required"):
        type(parsed.components)().required("lr_scheduler")


def test_a_training_run_saves_the_options_its_configs_hold(tmp_path: Path) -> None:
    rng = random.Random(0)
    for split, n in (("train", 24), ("valid", 6)):
        words = [[f"w{rng.randrange(12)}" for _ in range(rng.randint(2, 6))] for _ in range(n)]
        (tmp_path / f"{split}.src").write_text("\n".join(" ".join(w) for w in words) + "\n", encoding="utf-8")
        (tmp_path / f"{split}.tgt").write_text("\n".join(" ".join(w[::-1]) for w in words) + "\n", encoding="utf-8")
    data = tmp_path / "data-bin"
    assert preprocess.main(["-s", "src", "-t", "tgt", "--trainpref", str(tmp_path / "train"), "--validpref",
                            str(tmp_path / "valid"), "--destdir", str(data), "--workers", "1"]) == 0  # fmt: skip
    parsed = parse_args(SPEC, train_argv(str(data), "--max-update", "1", "--cpu", "--num-workers", "0",
                                         "--save-dir", str(tmp_path / "ckpt"), "--no-epoch-checkpoints"))  # fmt: skip
    run(parsed)
    saved = vars(load_checkpoint(tmp_path / "ckpt" / "checkpoint_last.pt")["args"])
    # filled in after parsing (--max-tokens-valid follows --max-tokens; the world size the run found): in both
    assert saved["max_tokens_valid"] == parsed["dataset"].max_tokens_valid == 64
    assert saved["distributed_world_size"] == parsed["distributed_training"].distributed_world_size == 1
    # the languages the task inferred from the data folder are the task's; the options keep what was given
    assert saved["source_lang"] is None and parsed["task"].source_lang is None
    for name, value in vars(fairseq_args(parsed.namespace)).items():
        if name not in ("decoder_input_dim", "decoder_output_dim"):  # sizes the checkpoint resolves
            assert saved[name] == value, name


def test_a_yaml_component_or_user_dir_that_is_not_text_is_named_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "task.yaml").write_text("task:\n  _name: 3\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="argument --task: unknown task '3'"):
        parse_args(SPEC, ["data-bin", "--config", str(tmp_path / "task.yaml")])
    (tmp_path / "user_dir.yaml").write_text("user_dir: 5\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        parse_args(SPEC, ["data-bin", "--config", str(tmp_path / "user_dir.yaml")])
    assert "error: --user-dir 5: no such file or directory" in capsys.readouterr().err
