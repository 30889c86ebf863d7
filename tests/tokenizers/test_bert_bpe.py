"""``--bpe bert`` against transformers' ``BertTokenizer``, which fairseq's ``bert`` BPE calls."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from seqloom.tokenizers.bert_bpe import BertBPE, BertBPEConfig
from seqloom.tokenizers.bpe import build_bpe

HERE = Path(__file__).parents[1] / "fixtures" / "bert_bpe"


@pytest.mark.parametrize("name", ["cased", "uncased"])
def test_encode_and_decode_equal_transformers(name: str) -> None:
    """300 raw English/Spanish lines and odd inputs (accents, CJK, control characters, literal [UNK], spacing):
    the pieces and fairseq's decoding of them equal transformers' ``BertTokenizer``'s."""
    rows = [
        json.loads(line) for line in gzip.decompress((HERE / f"{name}.jsonl.gz").read_bytes()).decode().splitlines()
    ]
    bpe = BertBPE(BertBPEConfig(bpe_cased=name == "cased", bpe_vocab_file=str(HERE / "vocab.txt")))
    assert len(rows) == 310
    assert [r["line"] for r in rows if bpe.encode(r["line"]) != r["encoded"]] == []
    assert [r["encoded"] for r in rows if bpe.decode(r["encoded"]) != r["decoded"]] == []
    assert any("##" in r["encoded"] for r in rows) and any(r["line"].lower() != r["line"] for r in rows)


def test_word_starts_and_required_vocab() -> None:
    bpe = build_bpe("bert", {"bpe_vocab_file": str(HERE / "vocab.txt"), "bpe_cased": True})
    pieces = bpe.encode("Unaffable formlessness").split()
    assert [bpe.is_beginning_of_word(p) for p in pieces] == [not p.startswith("##") for p in pieces]
    assert sum(bpe.is_beginning_of_word(p) for p in pieces) == 2
    with pytest.raises(ValueError, match="--bpe-vocab-file is required"):
        BertBPE(BertBPEConfig())
