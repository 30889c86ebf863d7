"""hf_byte_bpe: HF ByteLevelBPETokenizer ids; with GPT-2's files it equals fairseq's gpt2 ids."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import ByteLevelBPETokenizer

from seqloom.registry import BPES
from seqloom.tokenizers.bpe import build_bpe
from seqloom.tokenizers.hf_byte_bpe import HuggingFaceByteLevelBPE, HuggingFaceByteLevelBPEConfig

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "data" / "bible-en-es" / "train.en"


@pytest.fixture(scope="module")
def gpt2_dir(gpt2_bpe: Path) -> Path:
    return gpt2_bpe


def gpt2_files_codec(gpt2_dir: Path, *, prefix_space: bool) -> HuggingFaceByteLevelBPE:
    cfg = {
        "bpe_vocab": str(gpt2_dir / "encoder.json"),
        "bpe_merges": str(gpt2_dir / "vocab.bpe"),
        "bpe_add_prefix_space": prefix_space,
    }
    codec = build_bpe("hf_byte_bpe", cfg)
    assert isinstance(codec, HuggingFaceByteLevelBPE)
    return codec


def test_registered() -> None:
    assert BPES.get("hf_byte_bpe") is HuggingFaceByteLevelBPE
    cfg = HuggingFaceByteLevelBPEConfig()
    assert (cfg.bpe_merges, cfg.bpe_vocab, cfg.bpe_add_prefix_space) == (None, None, False)


def test_gpt2_files_reproduce_fairseq_gpt2_ids(gpt2_dir: Path, fairseq_fixtures: Path) -> None:
    codec = gpt2_files_codec(gpt2_dir, prefix_space=False)
    assert codec.encode("Hello world") == "15496 995"
    raw = (fairseq_fixtures / "mt" / "text" / "valid.en").read_text(encoding="utf-8").split("\n")[:-1]
    expected = (fairseq_fixtures / "bart" / "text" / "valid.bpe").read_text(encoding="utf-8").split("\n")[:-1]
    assert [codec.encode(line.strip()) for line in raw] == expected
    assert all(codec.decode(e) == line for e, line in zip(expected, raw))


def test_prefix_space_and_decode(gpt2_dir: Path) -> None:
    codec = gpt2_files_codec(gpt2_dir, prefix_space=True)
    assert codec.encode("Hello world") == "18435 995"  # " Hello"
    assert codec.decode("18435 995 <mask>") == " Hello world<mask>"
    assert codec.is_beginning_of_word("18435") and not codec.is_beginning_of_word("15496")
    assert codec.is_beginning_of_word("<s>")
    with pytest.raises(ValueError, match="not a token id"):
        codec.decode("12 madeupword0000")


def test_trained_tiny_model_round_trips(tmp_path: Path) -> None:
    lines = CORPUS.read_text(encoding="utf-8").split("\n")[:300]
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(lines, vocab_size=400, min_frequency=2, show_progress=False)
    vocab, merges = trainer.save_model(str(tmp_path))
    codec = HuggingFaceByteLevelBPE(HuggingFaceByteLevelBPEConfig(bpe_vocab=vocab, bpe_merges=merges))
    n_symbols = 0
    for line in lines:
        encoded = codec.encode(line)
        n_symbols += len(encoded.split())
        assert codec.decode(encoded) == line
    assert n_symbols < sum(len(line.encode("utf-8")) for line in lines) / 2  # merges were applied


def test_missing_files_name_the_flag(gpt2_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--bpe-vocab is required"):
        HuggingFaceByteLevelBPE(HuggingFaceByteLevelBPEConfig(bpe_merges=str(gpt2_dir / "vocab.bpe")))
    with pytest.raises(FileNotFoundError, match="--bpe-merges"):
        HuggingFaceByteLevelBPE(
            HuggingFaceByteLevelBPEConfig(bpe_vocab=str(gpt2_dir / "encoder.json"), bpe_merges=str(tmp_path / "m.txt"))
        )
