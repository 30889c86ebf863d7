"""moses / space tokenizers and subword_nmt BPE reproduce fairseq's hub encode() on the fixture."""

from __future__ import annotations

import json

import pytest

from seqloom import registry
from seqloom.tokenizers.bpe import build_bpe
from seqloom.tokenizers.tokenizer import build_tokenizer


def test_moses_and_subword_nmt_match_fairseq_hub_encode(fairseq_fixtures) -> None:
    mt = fairseq_fixtures / "mt"
    hub = json.loads((mt / "hub.json").read_text(encoding="utf-8"))
    tok = build_tokenizer("moses", {"source_lang": "en", "target_lang": "en"})
    bpe = build_bpe("subword_nmt", {"bpe_codes": str(mt / "text" / "bpe.codes")})
    for item in hub["encode"]:
        assert tok.encode(item["sentence"]) == item["tokenized"]
        assert bpe.encode(item["tokenized"]) == item["bpe"]
        assert bpe.decode(item["bpe"]) == item["tokenized"]


def test_moses_escapes_unless_told_not_to() -> None:
    assert build_tokenizer("moses").encode('He said "yes"') == "He said &quot; yes &quot;"
    assert build_tokenizer("moses", {"moses_no_escape": True}).encode('He said "yes"') == 'He said " yes "'
    assert build_tokenizer("moses").decode("Hello , world !") == "Hello, world!"


def test_space_tokenizer_and_registry_names() -> None:
    assert build_tokenizer("space").encode("a  b\t c") == "a b c"
    assert {"moses", "space"} <= set(registry.TOKENIZERS.names())
    assert "subword_nmt" in registry.BPES.names()


def test_missing_bpe_codes_names_the_flag(tmp_path) -> None:
    with pytest.raises(ValueError, match="--bpe-codes"):
        build_bpe("subword_nmt", {})
    with pytest.raises(FileNotFoundError, match="--bpe-codes"):
        build_bpe("subword_nmt", {"bpe_codes": str(tmp_path / "nope.codes")})
