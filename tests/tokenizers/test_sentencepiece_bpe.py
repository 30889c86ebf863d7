"""sentencepiece BPE: a tiny model trained here on the bundled corpus; fairseq's piece/decoding rules."""

from __future__ import annotations

import io
import unicodedata
from pathlib import Path

import pytest
import sentencepiece as spm

from seqloom.registry import BPES
from seqloom.tokenizers.bpe import build_bpe
from seqloom.tokenizers.sentencepiece_bpe import SentencepieceBPE, SentencepieceConfig

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "data" / "bible-en-es" / "train.en"


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return CORPUS.read_text(encoding="utf-8").split("\n")[:400]


@pytest.fixture(scope="module")
def model_path(lines: list[str], tmp_path_factory: pytest.TempPathFactory) -> str:
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        vocab_size=400,
        model_type="bpe",
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    path = tmp_path_factory.mktemp("spm") / "tiny.model"
    path.write_bytes(buf.getvalue())
    return str(path)


@pytest.fixture(scope="module")
def codec(model_path: str) -> SentencepieceBPE:
    bpe = build_bpe("sentencepiece", SentencepieceConfig(sentencepiece_model=model_path))
    assert isinstance(bpe, SentencepieceBPE)
    return bpe


def test_registered_with_fairseq_flag_names() -> None:
    assert BPES.get("sentencepiece") is SentencepieceBPE
    cfg = SentencepieceConfig()
    assert (cfg.sentencepiece_model, cfg.sentencepiece_enable_sampling, cfg.sentencepiece_alpha) == (None, False, None)


def test_encode_gives_the_models_pieces_and_decode_restores_text(codec: SentencepieceBPE, lines: list[str]) -> None:
    vocab = {codec.sp.IdToPiece(i) for i in range(codec.sp.GetPieceSize())}
    for line in lines:
        encoded = codec.encode(line)
        pieces = encoded.split(" ")
        assert all(p in vocab for p in pieces), line
        assert pieces[0].startswith("\u2581")
        # SentencePiece's default normalizer: NFKC, whitespace runs collapsed, ends trimmed
        assert codec.decode(encoded) == " ".join(unicodedata.normalize("NFKC", line).split())


def test_decode_is_fairseqs_string_rule(codec: SentencepieceBPE) -> None:
    assert codec.decode("\u2581He ll o \u2581world") == "Hello world"
    assert codec.decode("\u2581a b \u2581 \u2581c \u2581") == "ab  c"
    assert codec.encode("") == ""


def test_is_beginning_of_word(codec: SentencepieceBPE) -> None:
    assert codec.is_beginning_of_word("\u2581the")
    assert not codec.is_beginning_of_word("ing")
    for special in ("<unk>", "<s>", "</s>", "<pad>"):
        assert codec.is_beginning_of_word(special)


def test_sampling_varies_segmentation_but_not_text(model_path: str) -> None:
    sampler = SentencepieceBPE(
        SentencepieceConfig(sentencepiece_model=model_path, sentencepiece_enable_sampling=True, sentencepiece_alpha=0.5)
    )
    text = "In the beginning God created the heavens and the earth."
    encodings = {sampler.encode(text) for _ in range(20)}
    assert len(encodings) > 1
    assert {sampler.decode(e) for e in encodings} == {text}


def test_missing_or_bad_model_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--sentencepiece-model is required"):
        SentencepieceBPE(SentencepieceConfig())
    with pytest.raises(FileNotFoundError, match="--sentencepiece-model"):
        SentencepieceBPE(SentencepieceConfig(sentencepiece_model=str(tmp_path / "missing.model")))
    junk = tmp_path / "junk.model"
    junk.write_text("not a model\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        SentencepieceBPE(SentencepieceConfig(sentencepiece_model=str(junk)))
