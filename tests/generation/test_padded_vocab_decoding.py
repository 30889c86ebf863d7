"""Decoding with an odd-sized vocabulary: the -inf-padded logits give the same hypotheses as the plain product."""

from __future__ import annotations

import pytest
import torch
from scripted_model import ToyDict

from seqloom.generation.config import GenerationConfig
from seqloom.generation.generator import SequenceGenerator
from seqloom.models.transformer import TransformerConfig, build_model
from seqloom.modules import vocab_projection
from seqloom.modules.vocab_projection import PaddedLogits, VocabProjection

VOCAB = 37  # not a multiple of 8


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = TransformerConfig(
        encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_layers=1, encoder_attention_heads=2,
        decoder_layers=1, decoder_attention_heads=2, share_decoder_input_output_embed=True,
    )  # fmt: skip
    vocab = ToyDict(VOCAB)
    return build_model(cfg, vocab, vocab).eval()


def _sources() -> torch.Tensor:
    torch.manual_seed(1)
    src = torch.randint(4, VOCAB, (24, 7))
    src[:, -1] = 2
    src[::3, :2] = 1  # some left padding
    return src


CONFIGS = {
    "beam": GenerationConfig(beam=4, max_len_b=8),
    "sampling": GenerationConfig(beam=3, max_len_b=6, sampling=True, sampling_topk=5),
    "diverse": GenerationConfig(beam=4, max_len_b=6, diverse_beam_groups=2, diverse_beam_strength=0.5),
    "match_source_len": GenerationConfig(beam=3, match_source_len=True),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_padded_and_plain_vocabulary_products_decode_alike(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model, src = _model(), _sources()
    padded_steps = 0
    decoding = VocabProjection.decoding

    def counting(self: VocabProjection, x: torch.Tensor, memo: dict[str, torch.Tensor]) -> object:
        nonlocal padded_steps
        out = decoding(self, x, memo)
        padded_steps += isinstance(out, PaddedLogits)
        return out

    def run() -> list:
        torch.manual_seed(5)
        return SequenceGenerator([model], ToyDict(VOCAB), CONFIGS[name]).generate(src)

    monkeypatch.setattr(VocabProjection, "decoding", counting)
    padded = run()
    assert padded_steps > 0  # the batch is wide enough for the padded route
    monkeypatch.setattr(vocab_projection, "MIN_PADDED_ROWS", 10**9)
    plain = run()
    for p_hyps, q_hyps in zip(padded, plain):
        assert [h.tokens.tolist() for h in p_hyps] == [h.tokens.tolist() for h in q_hyps]
        for p, q in zip(p_hyps, q_hyps):
            torch.testing.assert_close(p.positional_scores, q.positional_scores, atol=1e-5, rtol=0)


def test_inference_logits_outside_decoding_are_contiguous() -> None:
    weight, x = torch.randn(VOCAB, 16), torch.randn(3, 40, 16)
    with torch.no_grad():
        out = vocab_projection.vocab_logits(x, weight)
    assert out.is_contiguous() and out.shape == (3, 40, VOCAB)
    torch.testing.assert_close(out, x @ weight.t())
