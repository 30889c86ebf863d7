"""build_bpe and the --bpe flags: every built-in codec is reachable by name with fairseq's flags."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from seqloom.cli.parser import CommandSpec, parse_args
from seqloom.components import BUILTIN_MODULES, import_builtins
from seqloom.registry import BPES
from seqloom.tokenizers.bpe import BPE, build_bpe, require_file
from seqloom.tokenizers.gpt2_bpe import GPT2BPE, GPT2BPEConfig

SPEC = CommandSpec(prog="seqloom bpe-test", description="bpe flags", groups=(), selectors={"bpe": None})
MODULES = ("gpt2_bpe", "sentencepiece_bpe", "characters_bpe", "bytes_bpe", "hf_byte_bpe")


@pytest.fixture(scope="module")
def gpt2_dir(gpt2_bpe: Path) -> Path:
    return gpt2_bpe


def test_builtin_codecs_are_registered() -> None:
    assert {f"seqloom.tokenizers.{m}" for m in MODULES} <= set(BUILTIN_MODULES)
    import_builtins()
    assert {"gpt2", "sentencepiece", "characters", "bytes", "hf_byte_bpe"} <= set(BPES.names())
    for name in ("characters", "bytes"):
        assert isinstance(build_bpe(name), BPE)


def test_flags_parse_into_the_codec_config(gpt2_dir: Path) -> None:
    encoder_json, vocab_bpe = str(gpt2_dir / "encoder.json"), str(gpt2_dir / "vocab.bpe")
    argv = ["--bpe", "gpt2", "--gpt2-encoder-json", encoder_json, "--gpt2-vocab-bpe", vocab_bpe]
    args = parse_args(SPEC, argv)
    cfg = args.configs["bpe"]
    assert cfg == GPT2BPEConfig(gpt2_encoder_json=encoder_json, gpt2_vocab_bpe=vocab_bpe)
    assert build_bpe(args.namespace.bpe, cfg).encode("Hello world") == "15496 995"
    # a Namespace (fairseq's args) works too; keys of other components are ignored
    ns = argparse.Namespace(gpt2_encoder_json=encoder_json, gpt2_vocab_bpe=vocab_bpe, beam=5)
    assert isinstance(build_bpe("gpt2", ns), GPT2BPE)


def test_sentencepiece_flags() -> None:
    args = parse_args(
        SPEC, ["--bpe", "sentencepiece", "--sentencepiece-model", "m.model", "--sentencepiece-alpha", "0.1"]
    )
    cfg = args.configs["bpe"]
    assert (cfg.sentencepiece_model, cfg.sentencepiece_alpha, cfg.sentencepiece_enable_sampling) == (
        "m.model",
        0.1,
        False,
    )


def test_unknown_codec_names_the_nearest() -> None:
    with pytest.raises(KeyError, match="Did you mean 'gpt2'"):
        build_bpe("gtp2")


def test_require_file_messages(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--x is required: pass the path to a thing"):
        require_file(None, flag="--x", what="a thing")
    with pytest.raises(FileNotFoundError, match=r"--x .*nope\.txt: no such file \(a thing\)"):
        require_file(str(tmp_path / "nope.txt"), flag="--x", what="a thing")
    with pytest.raises(FileNotFoundError):
        require_file(str(tmp_path), flag="--x", what="a thing")  # a directory is not the file
    real = tmp_path / "ok.txt"
    real.write_text("x", encoding="utf-8")
    assert require_file(str(real), flag="--x", what="a thing") == real
