"""The hub reproduces fairseq's hub.json: translations, beam hypotheses with scores, encoding, reference scores."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from seqloom.hub import HubBatching, TransformerModel, TranslationHub


def test_translate_beam5_equals_fairseq(mt_hub: TranslationHub, hub_json: dict[str, Any]) -> None:
    # fairseq's Moses detokenizer ran with its default language 'en' (only tokenizer='moses' was passed)
    assert mt_hub.translate(hub_json["inputs"], beam=5) == hub_json["translate_beam5"]


def test_generate_beam5_best_hypotheses_equal_fairseq(mt_hub: TranslationHub, hub_json: dict[str, Any]) -> None:
    hyps = mt_hub.generate([mt_hub.encode(s) for s in hub_json["inputs"]], beam=5)
    assert len(hyps) == len(hub_json["generate_beam5_top"])
    for got, want in zip(hyps, hub_json["generate_beam5_top"]):
        best = got[0]
        assert best.tokens.tolist() == want["tokens"]
        assert best.score == pytest.approx(want["score"], abs=1e-4)  # natural log, length-normalized
        torch.testing.assert_close(best.positional_scores, torch.tensor(want["positional_scores"]), atol=1e-4, rtol=0)


def test_encode_tokenize_bpe_ids_equal_fairseq(mt_hub: TranslationHub, hub_json: dict[str, Any]) -> None:
    for item in hub_json["encode"]:
        assert mt_hub.tokenize(item["sentence"]) == item["tokenized"]
        assert mt_hub.apply_bpe(item["tokenized"]) == item["bpe"]
        assert mt_hub.encode(item["sentence"]).tolist() == item["ids"]  # ends with </s> = 2
        assert mt_hub.remove_bpe(item["bpe"]) == item["tokenized"]
        assert mt_hub.string(mt_hub.binarize(item["bpe"])) == item["bpe"]  # joined dictionary, no unks here


def test_score_pairs_equal_fairseqs_score_reference(mt_hub: TranslationHub, hub_json: dict[str, Any],
                                                    fairseq_fixtures: Path) -> None:  # fmt: skip
    # fairseq's own hub.score() cannot score translation models; seqloom scores (source, target) pairs
    assert hub_json["score_error"].startswith("TypeError") and "prev_output_tokens" in hub_json["score_error"]
    refs = hub_json["score_reference_pairs"]
    as_ids = [
        (mt_hub.src_dict.encode_line(r["source_bpe"]), mt_hub.tgt_dict.encode_line(r["target_bpe"])) for r in refs
    ]
    text = fairseq_fixtures / "mt" / "text"
    raw_src = (text / "test.en").read_text(encoding="utf-8").splitlines()[:3]
    raw_tgt = (text / "test.es").read_text(encoding="utf-8").splitlines()[:3]
    for pairs in (as_ids, list(zip(raw_src, raw_tgt))):
        hyps = mt_hub.score(pairs)
        for hyp, ref in zip(hyps, refs):
            assert hyp.tokens.tolist() == ref["target_ids"]
            assert hyp.score == pytest.approx(ref["score"], abs=1e-4)  # mean positional score, natural log
            torch.testing.assert_close(hyp.positional_scores, torch.tensor(ref["positional_scores"]), atol=1e-4, rtol=0)
    single = mt_hub.score((raw_src[1], raw_tgt[1]))
    assert single.score == pytest.approx(refs[1]["score"], abs=1e-4)
    with pytest.raises(TypeError, match=r"score takes \(source, target\) pairs"):
        mt_hub.score(raw_src[1])  # type: ignore[arg-type]  # (was: "not enough values to unpack")
    with pytest.raises(TypeError, match=r"score: item 1 is not a \(source, target\) pair"):
        mt_hub.score([(raw_src[0], raw_tgt[0]), (raw_src[1],)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"score: target 0 has 2001 tokens, more than the model's 1024 target"):
        mt_hub.score((raw_src[0], torch.full((2001,), 5)))


def test_small_batches_keep_input_order(fairseq_fixtures: Path, mt_kwargs: dict[str, Any],
                                        hub_json: dict[str, Any]) -> None:  # fmt: skip
    hub = TransformerModel.from_pretrained(str(fairseq_fixtures / "mt" / "checkpoints"), **mt_kwargs, max_tokens=60)
    # the checkpoint's required_batch_size_multiple (8) is a training option fairseq's hub does not use
    assert hub.batching == HubBatching(max_tokens=60, batch_size=None, required_batch_size_multiple=1)
    picked = [3, 0, 7, 1, 5]
    sentences = [hub.encode(hub_json["inputs"][i]) for i in picked]
    assert len(hub.plan_batches(sentences)) > 1
    assert hub.translate([hub_json["inputs"][i] for i in picked], beam=5) == [
        hub_json["translate_beam5"][i] for i in picked
    ]


def test_single_inputs_and_generation_overrides(mt_hub: TranslationHub, hub_json: dict[str, Any]) -> None:
    assert mt_hub.translate(hub_json["inputs"][2]) == hub_json["translate_beam5"][2]
    hyps = mt_hub.generate(mt_hub.encode(hub_json["inputs"][2]), beam=4, nbest=3, max_len_b=5)
    assert len(hyps) == 4 and all(len(h.tokens) <= 6 for h in hyps)  # nbest is applied by callers (all K kept)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    torch.manual_seed(3)
    first = mt_hub.sample(hub_json["inputs"][:2], sampling=True, sampling_topk=5, max_len_b=8)
    torch.manual_seed(3)
    assert mt_hub.sample(hub_json["inputs"][:2], sampling=True, sampling_topk=5, max_len_b=8) == first
    with pytest.raises(TypeError, match=r"unknown generation option\(s\) beam_size.*valid options: .*lenpen"):
        mt_hub.translate("hello", beam_size=2)


def test_generation_keywords_of_the_wrong_type_are_named(mt_hub: TranslationHub, fairseq_fixtures: Path,
                                                        mt_kwargs: dict[str, Any]) -> None:  # fmt: skip
    """``beam="5"`` (e.g. read from a config file as text) failed inside generation comparing str with int;
    ``sampling="False"`` would have sampled. Each is a TypeError naming the keyword, in calls and loading."""
    wrong = {"beam": ("5", "expected an int"), "lenpen": ("2", "expected a number"),
             "sampling": ("False", "expected True or False"), "print_alignment": ("yes", "expected one of 'hard'")}  # fmt: skip
    for name, (value, why) in wrong.items():
        with pytest.raises(TypeError, match=f"generation option {name}={value!r}: {why}"):
            mt_hub.translate("hello", **{name: value})
    with pytest.raises(TypeError, match="generation option beam='5': expected an int, got str"):
        TransformerModel.from_pretrained(str(fairseq_fixtures / "mt" / "checkpoints"), **mt_kwargs, beam="5")
    assert mt_hub.translate("hello", beam=2, lenpen=1, max_len_a=0, print_alignment=None)  # ints where floats go


def test_verbose_logs_source_hypothesis_and_positional_scores(
    mt_hub: TranslationHub, hub_json: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="seqloom.hub.base"):
        mt_hub.translate(hub_json["inputs"][0], beam=2, verbose=True, max_len_b=4)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "S\t" + hub_json["encode"][0]["bpe"]
    assert lines[1].startswith("H\t-") and lines[2].startswith("P\t-")


def test_device_and_dtype_moves(fairseq_fixtures: Path, mt_kwargs: dict[str, Any], hub_json: dict[str, Any]) -> None:
    hub = TransformerModel.from_pretrained(str(fairseq_fixtures / "mt" / "checkpoints"), **mt_kwargs)
    assert hub.to("cpu") is hub and hub.eval() is hub and hub.device == torch.device("cpu")
    assert hub.bfloat16() is hub
    assert hub.model.encoder.embed_tokens.weight.dtype == torch.bfloat16
    hyp = hub.generate(hub.encode(hub_json["inputs"][0]), beam=2, max_len_b=5)[0]
    assert hyp.positional_scores.dtype == torch.float32  # log-probs are computed in float32
    assert isinstance(hub.translate(hub_json["inputs"][0], beam=2, max_len_b=5), str)
    assert hub.half().model.decoder.output_projection.weight.dtype == torch.float16
