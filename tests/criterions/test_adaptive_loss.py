"""adaptive_loss: the summed NLL of the targets under the adaptive softmax, fairseq's skipped tail index included."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from seqloom.criterions.adaptive_loss import AdaptiveLoss
from seqloom.models.transformer_lm import build_model, presets

REFS = Path(__file__).resolve().parents[1] / "fixtures" / "transformer_lm"


class Vocab:
    def __len__(self) -> int:
        return 204

    def pad(self) -> int:
        return 1


@pytest.fixture(scope="module")
def model():
    ref = torch.load(REFS / "adaptive_untied.pt")
    cfg = dataclasses.replace(
        presets.transformer_lm_baevski_wiki103(), decoder_embed_dim=32, decoder_ffn_embed_dim=64, decoder_layers=2,
        decoder_attention_heads=4, adaptive_input_cutoff="50,120", adaptive_softmax_cutoff="50,120",
        tokens_per_sample=64, tie_adaptive_proj=False, tie_adaptive_weights=False, adaptive_softmax_dropout=0.0,
    )  # fmt: skip
    m = build_model(cfg, Vocab()).eval()
    m.load_state_dict(ref["sd"])
    return m


def sample(src: torch.Tensor, tgt: torch.Tensor) -> dict:
    return {"net_input": {"src_tokens": src, "src_lengths": src.ne(1).sum(1)}, "target": tgt,
            "ntokens": int(tgt.ne(1).sum()), "nsentences": src.size(0)}  # fmt: skip


def test_loss_is_the_nll_of_the_targets(model) -> None:
    torch.manual_seed(0)
    src = torch.randint(4, 204, (2, 9))
    tgt = torch.randint(4, 204, (2, 9))
    tgt[tgt == 51] = 52  # band-relative index 1 (= padding_idx) is skipped by fairseq's loss; avoid it here
    tgt[tgt == 121] = 122
    tgt[1, 6:] = 1
    src[1, 6:] = 1
    crit = AdaptiveLoss(padding_idx=1)
    loss, size, log = crit(model, sample(src, tgt))
    with torch.no_grad():
        lprobs = model.get_normalized_probs(model(src).logits)
    keep = tgt.ne(1)
    expected = -lprobs.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)[keep].sum()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert size == log["ntokens"] == 15
    stats = AdaptiveLoss.reduce_metrics([log])
    assert stats["loss"] == pytest.approx(float(expected) / 15 / torch.log(torch.tensor(2.0)).item(), rel=1e-5)


def test_needs_an_adaptive_softmax() -> None:
    plain = build_model(dataclasses.replace(presets.transformer_lm(), decoder_layers=1, decoder_embed_dim=16,
                                            decoder_input_dim=16, decoder_output_dim=16), Vocab())  # fmt: skip
    src = torch.randint(4, 204, (1, 5))
    with pytest.raises(ValueError, match="adaptive-softmax-cutoff"):
        AdaptiveLoss(padding_idx=1)(plain, sample(src, src))
