"""fairseq's own mt checkpoint loads strictly, key for key, and scores its reference pairs as fairseq did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from seqloom.checkpoint import load_checkpoint
from seqloom.data.dictionary import Dictionary
from seqloom.models.transformer import TransformerModel, build_model, config_from_checkpoint

PAD, EOS = 1, 2


@pytest.fixture(scope="module")
def mt(fairseq_fixtures: Path) -> dict[str, Any]:
    root = fairseq_fixtures / "mt"
    state = load_checkpoint(root / "checkpoints" / "checkpoint_best.pt")
    dictionary = Dictionary.load(root / "data-bin" / "dict.en.txt")
    model = build_model(config_from_checkpoint(state), dictionary, dictionary)
    model.load_state_dict(state["model"], strict=True)
    hub = json.loads((root / "hub.json").read_text(encoding="utf-8"))
    return {"state": state, "dict": dictionary, "model": model.eval(), "hub": hub}


def test_state_dict_keys_and_shapes_equal_fairseqs(mt: dict[str, Any]) -> None:
    ours = mt["model"].state_dict()
    theirs = mt["state"]["model"]
    assert list(ours) == list(theirs)  # same keys, same order
    for key, value in theirs.items():
        assert ours[key].shape == value.shape, key
        assert torch.equal(ours[key], value), key
    assert not any("embed_positions" in k for k in ours)  # sinusoidal positions are computed


def _encode(dictionary: Dictionary, bpe: str) -> torch.Tensor:
    return dictionary.encode_line(bpe, add_if_not_exist=False, append_eos=True).long()


def _gathered(model: TransformerModel, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    prev = torch.cat([tgt.new_tensor([EOS]), tgt[:-1]])
    with torch.no_grad():
        logits = model(src[None], None, prev[None]).logits
    return model.get_normalized_probs(logits)[0].gather(-1, tgt[:, None])[:, 0]


def test_reference_scores_one_at_a_time(mt: dict[str, Any]) -> None:
    for pair in mt["hub"]["score_reference_pairs"]:
        src = _encode(mt["dict"], pair["source_bpe"])
        tgt = torch.tensor(pair["target_ids"])
        scores = _gathered(mt["model"], src, tgt)
        torch.testing.assert_close(scores, torch.tensor(pair["positional_scores"]), atol=1e-5, rtol=0)
        assert scores.mean().item() == pytest.approx(pair["score"], abs=1e-5)


def test_reference_scores_in_a_left_padded_batch(mt: dict[str, Any]) -> None:
    pairs = mt["hub"]["score_reference_pairs"]
    srcs = [_encode(mt["dict"], p["source_bpe"]) for p in pairs]
    tgts = [torch.tensor(p["target_ids"]) for p in pairs]
    assert len({len(s) for s in srcs}) == len(srcs)  # really different lengths: padding matters
    src_len, tgt_len = max(map(len, srcs)), max(map(len, tgts))
    src_batch = torch.full((len(pairs), src_len), PAD)
    prev_batch = torch.full((len(pairs), tgt_len), PAD)
    for i, (s, t) in enumerate(zip(srcs, tgts)):
        src_batch[i, src_len - len(s) :] = s  # fairseq's left_pad_source=True
        prev_batch[i, : len(t)] = torch.cat([t.new_tensor([EOS]), t[:-1]])
    model = mt["model"]
    with torch.no_grad():
        lprobs = model.get_normalized_probs(model(src_batch, None, prev_batch).logits)
    for i, (t, pair) in enumerate(zip(tgts, pairs)):
        scores = lprobs[i, : len(t)].gather(-1, t[:, None])[:, 0]
        torch.testing.assert_close(scores, torch.tensor(pair["positional_scores"]), atol=1e-5, rtol=0)


def test_beam_hypotheses_rescored_incrementally(mt: dict[str, Any]) -> None:
    """fairseq's beam-5 best hypotheses, fed token by token through the KV cache, get fairseq's scores."""
    model = mt["model"]
    for enc, hyp in zip(mt["hub"]["encode"], mt["hub"]["generate_beam5_top"]):
        src = torch.tensor(enc["ids"])[None]
        tokens = torch.tensor(hyp["tokens"])
        encoder_out = model.encode(src)
        cache = model.new_cache(1, len(tokens))
        prev = torch.cat([tokens.new_tensor([EOS]), tokens[:-1]])
        scores = []
        with torch.no_grad():
            for step in range(len(tokens)):
                logits = model.decode(prev[None, step : step + 1], encoder_out, cache=cache).logits
                scores.append(model.get_normalized_probs(logits)[0, 0, tokens[step]])
        torch.testing.assert_close(torch.stack(scores), torch.tensor(hyp["positional_scores"]), atol=1e-4, rtol=0)
