"""``--bpe byte_bpe`` against fairseq's own ``ByteBPE`` (``tests/fixtures/byte_bpe``)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from seqloom.tokenizers.bpe import build_bpe
from seqloom.tokenizers.byte_bpe import ByteBPE, ByteBPEConfig

HERE = Path(__file__).parents[1] / "fixtures" / "byte_bpe"


def test_encode_and_decode_equal_fairseq() -> None:
    """200 raw lines and odd inputs (whitespace runs, CJK, emoji): fairseq's pieces and decodings, also of
    the pieces with the last one cut off (a broken byte sequence keeps what still decodes)."""
    rows = [json.loads(x) for x in gzip.decompress((HERE / "reference.jsonl.gz").read_bytes()).decode().splitlines()]
    bpe = build_bpe("byte_bpe", {"sentencepiece_model_path": str(HERE / "spm.model")})
    assert len(rows) == 206
    assert [r["line"] for r in rows if bpe.encode(r["line"]) != r["encoded"]] == []
    assert [r["encoded"] for r in rows if bpe.decode(r["encoded"]) != r["decoded"]] == []
    assert [r["broken"] for r in rows if bpe.decode(r["broken"]) != r["broken_decoded"]] == []
    assert sum(len(r["broken_decoded"]) < len(r["decoded"]) for r in rows) > 100


def test_model_is_required() -> None:
    with pytest.raises(ValueError, match="--sentencepiece-model-path is required"):
        ByteBPE(ByteBPEConfig())
