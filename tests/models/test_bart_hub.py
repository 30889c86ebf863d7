"""The BART hub reproduces fairseq's bart/hub.json, and leaves fairseq's three BART hub bugs behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from seqloom.hub import BARTModel
from seqloom.hub.bart import BARTHub


@pytest.fixture(scope="module")
def ref(fairseq_fixtures: Path) -> dict[str, Any]:
    return json.loads((fairseq_fixtures / "bart" / "hub.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def hub(fairseq_fixtures: Path, gpt2_bpe: Path) -> BARTHub:
    """Loaded with fairseq's own from_pretrained call of hub.json (which fails in fairseq 0.12)."""
    gpt2 = gpt2_bpe
    return BARTModel.from_pretrained(
        str(fairseq_fixtures / "bart" / "model"),
        checkpoint_file="model.pt",
        data_name_or_path=str(fairseq_fixtures / "bart" / "model"),
        bpe="gpt2",
        gpt2_encoder_json=str(gpt2 / "encoder.json"),
        gpt2_vocab_bpe=str(gpt2 / "vocab.bpe"),
    )


def test_from_pretrained_loads_where_fairseq_fails(hub: BARTHub, ref: dict[str, Any], fairseq_fixtures: Path) -> None:
    assert "ValidationError" in ref["from_pretrained_error"]  # fairseq's from_pretrained(bpe='gpt2') failed
    kwargs = ref["from_pretrained"]  # fairseq's call, with its sample_break_mode keyword spelled out
    gpt2 = Path(__file__).resolve().parents[1] / "fixtures" / "gpt2-bpe"
    again = BARTModel.from_pretrained(str(fairseq_fixtures / "bart" / "model"), kwargs["checkpoint_file"],
                                      str(fairseq_fixtures / "bart" / "model"), "gpt2", sample_break_mode="eos",
                                      gpt2_encoder_json=str(gpt2 / "encoder.json"),
                                      gpt2_vocab_bpe=str(gpt2 / "vocab.bpe"))  # fmt: skip
    assert again.encode(ref["encode"][0]["sentence"]).tolist() == ref["encode"][0]["ids"]
    assert len(hub.src_dict) == ref["dictionary_size_with_mask"] == 4089
    assert hub.src_dict[4088] == "<mask>"


def test_encode_ids(hub: BARTHub, ref: dict[str, Any]) -> None:
    for entry in ref["encode"]:
        ids = hub.encode(entry["sentence"])
        assert ids.tolist() == entry["ids"]
        assert hub.decode(ids) == entry["sentence"]


def test_encode_oov_maps_to_unk_instead_of_growing_the_dictionary(hub: BARTHub, ref: dict[str, Any]) -> None:
    entry = ref["encode_oov_example"]
    ids = hub.encode(entry["sentence"]).tolist()
    grown = [i for i in entry["ids"] if i >= 4089]  # fairseq added the OOV GPT-2 ids as new symbols
    assert grown == [4089, 4090] and entry["dictionary_size_after"] == 4091
    expected = [hub.src_dict.unk() if i >= 4089 else i for i in entry["ids"]]
    assert ids == expected and len(hub.src_dict) == 4089
    assert hub.extract_features(torch.tensor(ids)).shape == (1, len(ids), 64)  # fairseq: IndexError


def test_encode_truncates_to_max_positions(hub: BARTHub) -> None:
    ids = hub.encode(" the" * 1500)
    assert ids.numel() == 1024 and ids[0] == 0 and ids[-1] == 2


def test_extract_features(hub: BARTHub, ref: dict[str, Any]) -> None:
    entry = ref["extract_features"]
    feats = hub.extract_features(torch.tensor(entry["ids"]))
    assert list(feats.shape) == entry["shape"]
    torch.testing.assert_close(feats[0], torch.tensor(entry["all"]), atol=1e-4, rtol=0)
    states = hub.extract_features(torch.tensor(entry["ids"]), return_all_hiddens=True)
    assert len(states) == 3 and torch.allclose(states[-1], feats)  # embeddings + 2 layers; post-norm: last == features


def test_sample_beam1(hub: BARTHub, ref: dict[str, Any]) -> None:
    inputs = [e["input"] for e in ref["sample_beam1"]]
    assert hub.sample(inputs, beam=1) == [e["output"] for e in ref["sample_beam1"]]


def test_fill_mask_then_features_and_beam1(hub: BARTHub, ref: dict[str, Any]) -> None:
    """fill_mask (beam 3, batched) as fairseq; then a plain forward and a beam-1 search still work (in fairseq
    BART keeps the last beam size > 1 and both fail)."""
    results = hub.fill_mask([e["input"] for e in ref["fill_mask"]], topk=3)
    for got, entry in zip(results, ref["fill_mask"]):
        assert [text for text, _ in got] == [text for text, _ in entry["topk"]]
        for (_, score), (_, expected) in zip(got, entry["topk"]):
            assert torch.is_tensor(score) and float(score) == pytest.approx(expected, abs=1e-4)  # as fairseq
    entry = ref["extract_features"]
    feats = hub.extract_features(torch.tensor(entry["ids"]))
    torch.testing.assert_close(feats[0], torch.tensor(entry["all"]), atol=1e-4, rtol=0)
    assert hub.sample(ref["sample_beam1"][1]["input"], beam=1) == ref["sample_beam1"][1]["output"]


def test_generate_options(hub: BARTHub) -> None:
    src = hub.encode("In the beginning God created the heavens and the earth.")
    hyps = hub.generate([src], beam=4, lenpen=2.0, max_len_b=12, min_len=5, no_repeat_ngram_size=2)[0]
    assert len(hyps) == 4
    for hyp in hyps:
        assert hyp.tokens[0] == 0 and hyp.tokens[-1] == 2  # <s> ... </s>
        assert 5 <= hyp.tokens.numel() - 1 <= 12


def test_classification_head_predict(hub: BARTHub) -> None:
    torch.manual_seed(0)
    hub.register_classification_head("demo", num_classes=3)
    tokens = hub.encode("Noah went out.")
    lprobs = hub.predict("demo", tokens)
    assert lprobs.shape == (1, 3) and torch.allclose(lprobs.exp().sum(), torch.tensor(1.0))
    feats = hub.extract_features(tokens)
    head = hub.bart.classification_heads["demo"]
    with torch.no_grad():
        expected = head(feats[0, -1].unsqueeze(0))  # the last </s> of the row
    torch.testing.assert_close(hub.predict("demo", tokens, return_logits=True), expected)
    with pytest.raises(KeyError, match="register_classification_head"):
        hub.predict("missing", tokens)
    with pytest.raises(ValueError, match="extract_features: tokens is empty"):
        hub.extract_features(torch.tensor([], dtype=torch.long))  # an index error inside the model before
    for bad in (0, -2, "3"):  # an empty head, a torch error about a negative dimension, a str
        with pytest.raises(ValueError, match=f"head 'bad': num_classes must be a positive int \\(got {bad!r}\\)"):
            hub.register_classification_head("bad", num_classes=bad)  # type: ignore[arg-type]
    assert "bad" not in hub.bart.classification_heads


def test_batches_keep_input_order(hub: BARTHub) -> None:
    """fairseq's BART hub batches consecutive inputs (no length sorting): fill_mask's lengths depend on it."""
    sentences = [torch.ones(n, dtype=torch.long) for n in (30, 5, 30, 5, 30)]
    assert hub.plan_batches(sentences) == [[0, 1, 2, 3, 4]]  # 5 * 30 tokens <= the checkpoint's --max-tokens 2048
    hub.batching.max_tokens = 64
    try:
        assert hub.plan_batches(sentences) == [[0, 1], [2, 3], [4]]
    finally:
        hub.batching.max_tokens = 2048


def test_translation_hub_points_to_bart(fairseq_fixtures: Path) -> None:
    from seqloom.hub import TransformerModel

    with pytest.raises(ValueError, match="BARTModel.from_pretrained"):
        TransformerModel.from_pretrained(str(fairseq_fixtures / "bart" / "model"))


def test_encode_pairs_and_decode_documents(hub: BARTHub, ref: dict[str, Any]) -> None:
    first, second = ref["encode"][0], ref["encode"][1]
    joined = hub.encode(first["sentence"], second["sentence"])
    assert joined.tolist() == first["ids"] + second["ids"][1:]  # <s> a </s> b </s>
    separated = hub.encode(first["sentence"], second["sentence"], no_separator=False)
    assert separated.tolist() == first["ids"] + [2] + second["ids"][1:]  # <s> a </s> </s> b </s>
    assert hub.decode(separated) == [first["sentence"], second["sentence"]]


def test_errors_name_the_fix(hub: BARTHub, fairseq_fixtures: Path) -> None:
    folder = str(fairseq_fixtures / "bart" / "model")
    with pytest.raises(ValueError, match="gpt2_encoder_json=PATH"):
        BARTModel.from_pretrained(folder)  # GPT-2's files are never downloaded
    with pytest.raises(TypeError, match="beem"):
        BARTModel.from_pretrained(folder, beem=3)
    # fairseq's signature has sample_break_mode='eos'; another mode would chunk the inputs differently
    with pytest.raises(ValueError, match="sample_break_mode='complete' is not supported"):
        BARTModel.from_pretrained(folder, sample_break_mode="complete")
    with pytest.raises(ValueError, match="has no <mask>"):
        hub.fill_mask(["no mask here"])
    with pytest.raises(ValueError, match=r"fill_mask: topk must be at least 1 \(got 0\)"):
        hub.fill_mask(["the <mask> sat"], topk=0)
    with pytest.raises(ValueError, match="maximum length"):
        hub.extract_features(torch.full((1025,), 5))


def test_translation_checkpoint_without_languages_reads_them_from_the_data_folder(
    hub: BARTHub, fairseq_fixtures: Path, gpt2_bpe: Path, tmp_path: Path
) -> None:
    """fairseq-train --task translation without -s/-t saves no source_lang/target_lang; fairseq's translation
    task then reads the pair from the data folder's split files (test.src-tgt.src.idx), and so does the hub."""
    import shutil

    from seqloom.checkpoint.io import load_checkpoint, save_checkpoint

    state = load_checkpoint(fairseq_fixtures / "bart" / "model" / "model.pt")
    state["cfg"]["task"] = {"_name": "translation", "data": "data-bin", "source_lang": None, "target_lang": None}
    save_checkpoint(state, tmp_path / "checkpoint.pt")
    data = tmp_path / "data-bin"
    data.mkdir()
    words = (fairseq_fixtures / "bart" / "model" / "dict.txt").read_text(encoding="utf-8") + "<mask> 1\n"
    for side in ("src", "tgt"):  # the translation task adds no <mask>: the dictionaries hold it
        (data / f"dict.{side}.txt").write_text(words, encoding="utf-8")
        (data / f"test.src-tgt.{side}.idx").write_bytes(b"")
    shutil.copyfile(fairseq_fixtures / "bart" / "model" / "dict.txt", tmp_path / "dict.txt")
    loaded = BARTModel.from_pretrained(str(tmp_path), checkpoint_file="checkpoint.pt", data_name_or_path=str(data),
                                       gpt2_encoder_json=str(gpt2_bpe / "encoder.json"),
                                       gpt2_vocab_bpe=str(gpt2_bpe / "vocab.bpe"))  # fmt: skip
    assert len(loaded.src_dict) == len(hub.src_dict) == 4089
    text = "The quick brown fox jumps over the lazy dog."
    assert loaded.sample([text], beam=2) == hub.sample([text], beam=2)
    no_split_files = tmp_path / "no-splits"
    no_split_files.mkdir()
    for side in ("src", "tgt"):
        shutil.copyfile(data / f"dict.{side}.txt", no_split_files / f"dict.{side}.txt")
    with pytest.raises(ValueError, match="source_lang= and target_lang="):
        BARTModel.from_pretrained(str(tmp_path), checkpoint_file="checkpoint.pt",
                                  data_name_or_path=str(no_split_files))  # fmt: skip
    named = BARTModel.from_pretrained(str(tmp_path), checkpoint_file="checkpoint.pt",
                                      data_name_or_path=str(no_split_files), source_lang="src", target_lang="tgt",
                                      gpt2_encoder_json=str(gpt2_bpe / "encoder.json"),
                                      gpt2_vocab_bpe=str(gpt2_bpe / "vocab.bpe"))  # fmt: skip
    assert named.sample([text], beam=2) == hub.sample([text], beam=2)
