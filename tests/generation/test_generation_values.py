"""Numeric generation options out of range (nan, negative, zero where it divides) are refused by name when
parsed, in the generator and in the hub; a beam too wide for the memory is refused with the estimate."""

from __future__ import annotations

import re

import pytest
import torch

from seqloom.cli import generate, interactive, train
from seqloom.cli.parser import parse_args
from seqloom.generation.config import GenerationConfig
from seqloom.generation.generator import SequenceGenerator
from seqloom.generation.memory import DecodingSize, available_bytes

BAD = [
    ("--lenpen", "inf", "must be a finite number"),
    ("--unkpen", "-inf", "must be a finite number"),
    ("--beam", "-2", "must be at least 1"),
    ("--beam", "0", "must be at least 1"),
    ("--nbest", "0", "must be at least 1"),
    ("--temperature", "0", "must be greater than 0"),
    ("--temperature", "-1.5", "must be greater than 0"),
    ("--sampling-topp", "1.5", r"must be -1 \(off\) or in \(0, 1\]"),
    ("--sampling-topp", "0", r"must be -1 \(off\) or in \(0, 1\]"),
    ("--sampling-topk", "0", r"must be -1 \(off\) or at least 1"),
    ("--max-len-a", "-1", "must be at least 0"),
    ("--max-len-b", "-5", "must be at least 0"),
    ("--no-repeat-ngram-size", "-1", "must be at least 0"),
    ("--diverse-beam-groups", "0", r"must be -1 \(off\) or at least 1"),
]


@pytest.mark.parametrize("module", [generate, interactive], ids=["generate", "interactive"])
@pytest.mark.parametrize(("flag", "value", "message"), BAD)
def test_out_of_range_generation_values_are_refused_when_parsed(
    module, flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args(module.SPEC, ["data", "--path", "x.pt", f"{flag}={value}"])
    err = capsys.readouterr().err
    assert f"error: argument {flag}: " in err
    assert re.search(message + rf" \(got '{re.escape(value)}'\)", err), err


def test_nan_is_not_a_number_for_generation_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(generate.SPEC, ["data", "--lenpen", "nan"])
    assert "error: argument --lenpen: expected a number, got 'nan'" in capsys.readouterr().err


def test_edge_values_inside_the_range_parse() -> None:
    ns = parse_args(generate.SPEC, ["d", "--sampling-topp", "1", "--temperature", "0.01", "--lenpen", "-0.5"])
    assert (ns.namespace.sampling_topp, ns.namespace.temperature, ns.namespace.lenpen) == (1.0, 0.01, -0.5)


def test_nan_is_refused_for_every_float_option(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--clip-norm", "--lr", "--stop-min-lr", "--ema-decay"):
        with pytest.raises(SystemExit):
            parse_args(train.SPEC, ["data", flag, "nan"])
        assert f"argument {flag}: expected a number, got 'nan'" in capsys.readouterr().err


def test_the_generator_refuses_a_config_built_in_python() -> None:
    from scripted_model import ScriptedModel, ToyDict

    model = ScriptedModel(12, [4, 5, 6, 7, 8], seed=5, scale=1.0)
    for cfg, message in (
        (GenerationConfig(lenpen=float("nan")), r"--lenpen must be a finite number \(got nan\)"),
        (GenerationConfig(sampling=True, sampling_topp=2.0), r"--sampling-topp must be -1 \(off\) or in \(0, 1\]"),
        (GenerationConfig(temperature=0.0), r"--temperature must be greater than 0 \(got 0.0\)"),
    ):
        with pytest.raises(ValueError, match=message):
            SequenceGenerator([model], ToyDict(12), cfg)


def test_the_memory_estimate_grows_with_the_beam_and_counts_the_vocabulary() -> None:
    size = DecodingSize(sentences=2, beam=3, vocab=1000, max_len=8, src_len=5, cache_bytes_per_step=100,
                        shared_source=True)  # fmt: skip
    # 6 rows x (4 copies x 4 bytes x 1000 + 2 x 100 x 10 steps + 12 x 10) + 2 sentences x 100 x 5
    assert size.bytes() == 6 * (16_000 + 2_000 + 120) + 1_000
    free = available_bytes(torch.device("cpu"))
    assert free is not None and free > 0
