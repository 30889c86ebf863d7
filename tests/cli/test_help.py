"""``--help`` a newcomer can read: a short usage line, whole or typed metavars, lines that fit 100 columns, one
line per command in ``seqloom --help``, and a word on where an architecture's options are."""

from __future__ import annotations

import re

import pytest

from seqloom.cli.main import COMMANDS, main, usage

WIDTH = 100
# (argv, the usage line it should open with)
HELPS = [
    (["train"], "usage: seqloom train DATA [options]"),
    (["train", "--arch", "transformer", "--optimizer", "adam", "--lr-scheduler", "inverse_sqrt"], None),
    (["train", "--task", "language_modeling", "--arch", "transformer_lm"], None),
    (["generate"], "usage: seqloom generate DATA [options]"),
    (["interactive"], "usage: seqloom interactive DATA [options]"),
    (["validate"], "usage: seqloom validate DATA [options]"),
    (["eval-lm"], "usage: seqloom eval-lm DATA [options]"),
    (["preprocess"], "usage: seqloom preprocess [options]"),
    (["export"], "usage: seqloom export [options]"),
    (["score"], "usage: seqloom score [options]"),
    (["average-checkpoints"], "usage: seqloom average-checkpoints --inputs FILE [FILE ...] --output FILE [options]"),
]


def _help(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: the text still stops at 100 columns
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(("argv", "first"), HELPS, ids=[" ".join(a[:3]) for a, _ in HELPS])
def test_help_fits_100_columns_with_whole_metavars_and_a_short_usage(
    argv: list[str], first: str | None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _help(argv, capsys, monkeypatch)
    lines = text.splitlines()
    assert lines[0] == (first or f"usage: seqloom {argv[0]} DATA [options]")
    assert lines[1] == ""  # the usage is one line, not a block of every option
    too_long = [line for line in lines if len(line) > WIDTH]
    assert not too_long, too_long
    assert "(default: None)" not in text and "(default: False)" not in text
    metavars: dict[str, set[str]] = {}
    for line in lines:
        for flag, metavar in re.findall(r"(?:^|, )(--[\w-]+) ([A-Z][\w,.-]*|\{[^}]*\}|'\([^)]*\)')", line.strip()):
            metavars.setdefault(flag, set()).add(metavar)
    for flag, found in metavars.items():
        for metavar in found:
            word = metavar.rstrip(".,").split(",")[0]
            # whole (the option's own name), or a type word: never a name cut short (VALIDATE-INT)
            typed = {"N", "FLOAT", "FILE", "DIR", "NAME", "YAML", "SRC", "TARGET", "FP", "ALIGN", "INPUTS"}
            whole = flag[2:].upper()
            assert word in typed or metavar.startswith(("{", "'(")) or whole.endswith(word) or word.startswith(whole), (
                flag,
                metavar,
            )


def test_the_metavars_of_the_issue_are_whole_or_typed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _help(["train", "--arch", "transformer", "--optimizer", "adam"], capsys, monkeypatch)
    for flag, metavar in [("--validate-interval", "N"), ("--validate-interval-updates", "N"), ("--encoder-layers", "N"),
                          ("--tensorboard-logdir", "DIR"), ("--adam-betas", "'(FLOAT, FLOAT)'"), ("--lr", "FLOAT,..."),
                          ("--save-dir", "DIR"), ("--valid-subset", "VALID-SUBSET"), ("--dropout", "FLOAT")]:  # fmt: skip
        assert re.search(rf"  {flag} {re.escape(metavar)}\s", text), flag
    assert not re.search(r"\b(ENCODER-LAYE|TENSORBOARD-|VALIDATE-INT)\b", text)


def test_train_help_says_how_to_see_an_architectures_options(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = _help(["train"], capsys, monkeypatch)
    assert "--encoder-layers" not in plain
    assert "`seqloom train --arch NAME --help` lists them" in " ".join(plain.split())
    with_arch = _help(["train", "--arch", "transformer"], capsys, monkeypatch)
    assert "--encoder-layers N" in with_arch and "--arch NAME --help" not in " ".join(with_arch.split())


def test_seqloom_help_gives_each_command_one_line() -> None:
    lines = usage().splitlines()
    for name in COMMANDS:
        (line,) = [line for line in lines if line.strip().split()[:1] == [name]]
        assert len(line.split()) > 3 and len(line) <= WIDTH, line
    assert "--arch NAME --help" in usage()
