"""``--bpe fastbpe`` against the fastBPE package's own output (``tests/fixtures/fastbpe``)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from seqloom.tokenizers.bpe import build_bpe
from seqloom.tokenizers.fastbpe import FastBPE, FastBPEConfig

HERE = Path(__file__).parents[1] / "fixtures" / "fastbpe"


@pytest.fixture(scope="module")
def bpe() -> FastBPE:
    return FastBPE(FastBPEConfig(bpe_codes=str(HERE / "codes")))


@pytest.mark.parametrize("lang", ["en", "es"])
def test_segmentation_equals_fastbpe(bpe: FastBPE, fairseq_fixtures: Path, lang: str) -> None:
    """1,000 tokenized Bible lines per language (2,000 merge codes): every line as fastBPE splits it; decoding
    gives the line back (up to fastBPE's collapsing of spaces)."""
    text = (fairseq_fixtures / "mt" / "text" / f"train.tok.{lang}").read_text(encoding="utf-8").splitlines()[:1000]
    expected = gzip.decompress((HERE / f"train.tok.{lang}.bpe.gz").read_bytes()).decode("utf-8").splitlines()
    got = [bpe.encode(line) for line in text]
    assert [i for i, (a, b) in enumerate(zip(got, expected)) if a != b] == [] and len(got) == len(expected)
    assert all(bpe.decode(g) == " ".join(t.split()) for g, t in zip(got, text))


def test_odd_inputs_equal_fastbpe(bpe: FastBPE) -> None:
    for line in (HERE / "odd.txt").read_text(encoding="utf-8").split("\n")[:-1]:
        source, expected = line.split("\t")
        assert bpe.encode(source) == expected, source


def test_registered_and_bad_codes_are_named(tmp_path: Path) -> None:
    built = build_bpe("fastbpe", {"bpe_codes": str(HERE / "codes")})
    assert built.encode("formless") == "for@@ m@@ l@@ ess"
    codes = tmp_path / "codes"
    codes.write_text("t h 10\na n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"codes:2: expected fastBPE's 'left right count', got 'a n'"):
        FastBPE(FastBPEConfig(bpe_codes=str(codes)))
    with pytest.raises(ValueError, match="--bpe-codes is required"):
        FastBPE(FastBPEConfig())


def test_hub_with_fastbpe_translates_like_the_subword_nmt_codes(fairseq_fixtures: Path) -> None:
    """fairseq's WMT'19 usage, ``from_pretrained(..., bpe="fastbpe")``: the same codes in fastBPE's format give the
    fixture model's fairseq hub translations (the two BPEs split these sentences alike)."""
    import json

    from seqloom.hub import TransformerModel

    mt = fairseq_fixtures / "mt"
    expected = json.loads((mt / "hub.json").read_text(encoding="utf-8"))
    hub = TransformerModel.from_pretrained(str(mt / "checkpoints"), checkpoint_file="checkpoint_best.pt",
                                           data_name_or_path=str(mt / "data-bin"), tokenizer="moses", bpe="fastbpe",
                                           bpe_codes=str(HERE / "codes"))  # fmt: skip
    assert hub.translate(expected["inputs"][:3], beam=5) == expected["translate_beam5"][:3]
