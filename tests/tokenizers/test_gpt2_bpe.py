"""gpt2 BPE: fairseq's GPT-2 ids byte for byte (BART fixtures), round trips, errors naming flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seqloom.registry import BPES
from seqloom.tokenizers.bpe import BPE, build_bpe
from seqloom.tokenizers.gpt2_bpe import GPT2BPE, GPT2BPEConfig


@pytest.fixture(scope="module")
def gpt2_files(gpt2_bpe: Path) -> tuple[str, str]:
    return str(gpt2_bpe / "encoder.json"), str(gpt2_bpe / "vocab.bpe")


@pytest.fixture(scope="module")
def gpt2(gpt2_files: tuple[str, str]) -> GPT2BPE:
    encoder_json, vocab_bpe = gpt2_files
    bpe = build_bpe("gpt2", {"gpt2_encoder_json": encoder_json, "gpt2_vocab_bpe": vocab_bpe, "beam": 5})
    assert isinstance(bpe, GPT2BPE)
    return bpe


def test_registered_with_fairseq_flag_names() -> None:
    assert BPES.get("gpt2") is GPT2BPE
    names = set(GPT2BPEConfig.__dataclass_fields__)
    assert names == {"gpt2_encoder_json", "gpt2_vocab_bpe"}


def test_hello_world(gpt2: GPT2BPE) -> None:
    assert isinstance(gpt2, BPE)
    assert gpt2.encode("Hello world") == "15496 995"
    assert gpt2.decode("15496 995") == "Hello world"
    assert gpt2.encode("") == ""


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_fairseq_multiprocessing_bpe_encoder_byte_for_byte(gpt2: GPT2BPE, fairseq_fixtures: Path, split: str) -> None:
    # bart/text/*.bpe = examples/roberta/multiprocessing_bpe_encoder --keep-empty of mt/text/*.en:
    # each line stripped, encoded, ids joined by spaces, one output line per input line
    raw = (fairseq_fixtures / "mt" / "text" / f"{split}.en").read_text(encoding="utf-8")
    expected = (fairseq_fixtures / "bart" / "text" / f"{split}.bpe").read_bytes()
    lines = raw.split("\n")[:-1]
    ours = "".join(gpt2.encode(line.strip()) + "\n" for line in lines).encode("utf-8")
    assert ours == expected
    for line in lines:
        assert gpt2.decode(gpt2.encode(line)) == line


def test_bart_hub_encode_entries(gpt2: GPT2BPE, fairseq_fixtures: Path) -> None:
    hub = json.loads((fairseq_fixtures / "bart" / "hub.json").read_text(encoding="utf-8"))
    entries = [*hub["encode"], hub["encode_oov_example"]]
    assert len(entries) == 4
    for entry in entries:
        assert gpt2.encode(entry["sentence"]) == entry["gpt2_bpe"]
        assert gpt2.decode(entry["gpt2_bpe"]) == entry["sentence"]


def test_bart_dictionary_indexes_the_gpt2_ids(gpt2: GPT2BPE, fairseq_fixtures: Path) -> None:
    # fairseq's Dictionary: <s>=0 <pad>=1 </s>=2 <unk>=3, then dict.txt's lines in order
    lines = (fairseq_fixtures / "bart" / "model" / "dict.txt").read_text(encoding="utf-8").splitlines()
    index = {line.split(" ")[0]: 4 + i for i, line in enumerate(lines)}
    hub = json.loads((fairseq_fixtures / "bart" / "hub.json").read_text(encoding="utf-8"))
    for entry in hub["encode"]:
        assert entry["ids"] == [0, *(index[t] for t in gpt2.encode(entry["sentence"]).split()), 2]


def test_unicode_whitespace_and_contractions_round_trip(gpt2: GPT2BPE) -> None:
    text = "  Don't  stop\t\n’tis  日本語 😀 x\u00a0y\r\n"
    assert gpt2.decode(gpt2.encode(text)) == text
    # GPT-2 splits "'s" off as its own token; " Hello" (with its space) is one token
    assert gpt2.encode("it's") == "270 338"
    assert gpt2.encode(" Hello") == "18435"


def test_decode_literal_specials_and_broken_utf8(gpt2: GPT2BPE) -> None:
    assert gpt2.decode("15496 <mask> 995") == "Hello<mask> world"
    assert gpt2.decode("<unk>") == "<unk>"
    ids = gpt2.encode("😀").split()
    assert len(ids) > 1  # a 4-byte character is several byte-level tokens
    assert gpt2.decode(ids[0]) == "\ufffd"
    with pytest.raises(ValueError, match="not a GPT-2 token id"):
        gpt2.decode("15496 <s>")
    with pytest.raises(ValueError, match="99999999"):
        gpt2.decode("99999999")


def test_is_beginning_of_word(gpt2: GPT2BPE) -> None:
    assert gpt2.is_beginning_of_word("995")  # " world"
    assert not gpt2.is_beginning_of_word("15496")  # "Hello"
    # not ids: counted as word starts, as fairseq's whole-word mask does for specials and madeupwords
    assert gpt2.is_beginning_of_word("<s>")
    assert gpt2.is_beginning_of_word("madeupword0000")
    assert not gpt2.is_beginning_of_word("<mask>")


def test_missing_files_name_the_flag(gpt2_files: tuple[str, str], tmp_path: Path) -> None:
    encoder_json, vocab_bpe = gpt2_files
    with pytest.raises(ValueError, match="--gpt2-encoder-json is required"):
        GPT2BPE(GPT2BPEConfig(gpt2_vocab_bpe=vocab_bpe))
    missing = str(tmp_path / "nope" / "vocab.bpe")
    with pytest.raises(FileNotFoundError, match="--gpt2-vocab-bpe") as err:
        GPT2BPE(GPT2BPEConfig(gpt2_encoder_json=encoder_json, gpt2_vocab_bpe=missing))
    assert missing in str(err.value)
    url = "https://dl.fbaipublicfiles.com/fairseq/gpt2_bpe/encoder.json"
    with pytest.raises(ValueError, match="never downloads"):
        GPT2BPE(GPT2BPEConfig(gpt2_encoder_json=url, gpt2_vocab_bpe=vocab_bpe))


def test_malformed_vocab_bpe_names_file_and_line(gpt2_files: tuple[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "vocab.bpe"
    bad.write_text("#version: 0.2\nĠ t\nthree parts here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab\.bpe:3: expected a merge"):
        GPT2BPE(GPT2BPEConfig(gpt2_encoder_json=gpt2_files[0], gpt2_vocab_bpe=str(bad)))


def test_malformed_encoder_json_names_file_and_line(gpt2_files: tuple[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "encoder.json"
    bad.write_text('{"a": 0,\n "b": }\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"encoder\.json:2: not valid JSON"):
        GPT2BPE(GPT2BPEConfig(gpt2_encoder_json=str(bad), gpt2_vocab_bpe=gpt2_files[1]))
