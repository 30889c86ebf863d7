"""The LM hub against fairseq's ``TransformerLanguageModel`` hub on the same checkpoint (lm/hub.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from seqloom.hub.language_model import TransformerLanguageModel


@pytest.fixture(scope="module")
def ref(fairseq_fixtures: Path) -> dict:
    return json.loads((fairseq_fixtures / "lm" / "hub.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def hub(fairseq_fixtures: Path):
    return TransformerLanguageModel.from_pretrained(
        fairseq_fixtures / "lm" / "checkpoints",
        checkpoint_file="checkpoint_best.pt",
        data_name_or_path=str(fairseq_fixtures / "lm" / "data-bin"),
        tokenizer="moses",
        bpe="subword_nmt",
        bpe_codes=str(fairseq_fixtures / "mt" / "text" / "bpe.codes"),
    )


def test_encode_and_greedy_sample_equal_fairseq(hub, ref: dict) -> None:
    for case in ref["sample"]:
        assert hub.encode(case["prompt"]).tolist() == case["prompt_ids"]
        assert hub.sample(case["prompt"], **ref["sample_kwargs"]) == case["output"]


def test_generate_tokens_and_scores_equal_fairseq(hub, ref: dict) -> None:
    hyps = hub.generate([hub.encode(c["prompt"]) for c in ref["sample"]], **ref["sample_kwargs"])
    for top, expected in zip([h[0] for h in hyps], ref["generate_top"]):
        assert top.tokens.tolist() == expected["tokens"]
        assert top.score == pytest.approx(expected["score"], abs=1e-4)
        torch.testing.assert_close(
            top.positional_scores, torch.tensor(expected["positional_scores"]), atol=1e-4, rtol=0
        )


def test_score_equals_fairseq(hub, ref: dict) -> None:
    scored = hub.score([c["sentence"] for c in ref["score"]])
    for hyp, expected in zip(scored, ref["score"]):
        assert hyp.tokens.tolist() == expected["tokens"]  # the sentence's tokens, without </s>
        assert hyp.score == pytest.approx(expected["score"], abs=1e-4)
        torch.testing.assert_close(
            hyp.positional_scores, torch.tensor(expected["positional_scores"]), atol=1e-4, rtol=0
        )
    one = hub.score(ref["score"][0]["sentence"])
    assert one.tokens.tolist() == ref["score"][0]["tokens"]
    with pytest.raises(ValueError, match=r"score: sentence 1 \(''\) has no token to score"):
        hub.score([ref["score"][0]["sentence"], ""])  # was a Hypothesis with no tokens and a score of -inf


def test_sampling_continues_the_prompt_and_follows_the_seed(hub) -> None:
    prompt = hub.encode("And God said")
    torch.manual_seed(5)
    first = hub.generate(prompt, beam=1, sampling=True, sampling_topk=10, max_len_b=12)[0].tokens
    torch.manual_seed(5)
    again = hub.generate(prompt, beam=1, sampling=True, sampling_topk=10, max_len_b=12)[0].tokens
    assert first.tolist() == again.tolist()
    assert first[: prompt.numel() - 1].tolist() == prompt[:-1].tolist()  # the prompt without its </s>
    assert first.numel() <= 13 and int(first[-1]) == hub.tgt_dict.eos()
    text = hub.sample("And God said", beam=1, sampling=True, sampling_topk=10, max_len_b=12)
    assert text.startswith("And God said")


def test_unknown_keyword_is_named(fairseq_fixtures: Path) -> None:
    with pytest.raises(TypeError, match="bpe_code"):
        TransformerLanguageModel.from_pretrained(
            fairseq_fixtures / "lm" / "checkpoints", checkpoint_file="checkpoint_best.pt", bpe_code="x"
        )
