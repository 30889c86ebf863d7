"""The decoding loop against brute force on a scripted model (fixed log-probs per history)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scripted_model import EOS, UNK, ScriptedModel, ToyDict, sources

from seqloom.generation.config import GenerationConfig
from seqloom.generation.generator import SequenceGenerator

ALLOWED = [UNK, 4, 5]


def brute_force(models, sent, *, max_len, min_len=1, lenpen=1.0, unkpen=0.0, ngram=0):
    """Every finite hypothesis (tokens incl. eos, normalized score, positional scores), best first."""
    out = []
    for length in range(min_len, max_len + 1):
        for seq in itertools.product(ALLOWED, repeat=length):
            if ngram and _repeats(seq, ngram):
                continue
            full = [*seq, EOS]
            pos = []
            for i, tok in enumerate(full):
                lp = torch.logsumexp(torch.stack([m.lprobs(sent, list(full[:i])) for m in models]), 0) - math.log(
                    len(models)
                )
                pos.append(float(lp[tok]) - (unkpen if tok == UNK else 0.0))
            out.append((full, sum(pos) / (len(full) ** lenpen), pos))
    return sorted(out, key=lambda h: -h[1])


def _repeats(seq, n):
    grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]
    return len(grams) != len(set(grams))


def _check_exhaustive(models, cfg, **kw):
    gen = SequenceGenerator(models, ToyDict(50), cfg)
    hyps = gen.generate(sources([7, 9]))
    for row, sent in enumerate([7, 9]):
        expected = brute_force(models, sent, max_len=cfg.max_len_b, min_len=cfg.min_len, lenpen=cfg.lenpen,
                               unkpen=cfg.unkpen, ngram=cfg.no_repeat_ngram_size)  # fmt: skip
        got = [h for h in hyps[row] if h.score > -math.inf]
        assert [h.tokens.tolist() for h in got] == [e[0] for e in expected]
        for h, (_, score, pos) in zip(got, expected):
            assert abs(h.score - score) < 1e-5
            assert torch.allclose(h.positional_scores, torch.tensor(pos), atol=1e-5)


def test_wide_beam_finds_every_hypothesis_in_brute_force_order() -> None:
    _check_exhaustive([ScriptedModel(50, ALLOWED)], GenerationConfig(beam=40, max_len_b=3))


def test_lenpen_unkpen_min_len_and_ngram_blocking_match_brute_force() -> None:
    cfg = GenerationConfig(
        beam=40, max_len_b=3, min_len=2, lenpen=2.0, unkpen=1.5, no_repeat_ngram_size=2, no_repeat_ngram_mode="strict"
    )
    _check_exhaustive([ScriptedModel(50, ALLOWED, seed=3)], cfg)


def test_ensemble_averages_probabilities() -> None:
    models = [ScriptedModel(50, ALLOWED, seed=1), ScriptedModel(50, ALLOWED, seed=2)]
    _check_exhaustive(models, GenerationConfig(beam=40, max_len_b=3))


def greedy(model, sent, max_len, min_len=1):
    seq: list[int] = []
    while True:
        lp = model.lprobs(sent, seq).clone()
        if len(seq) < min_len:
            lp[EOS] = -math.inf
        if len(seq) >= max_len:
            return [*seq, EOS]
        tok = int(lp.argmax())
        seq.append(tok)
        if tok == EOS:
            return seq


def test_beam_one_is_greedy_and_sentences_leave_the_batch_independently() -> None:
    model = ScriptedModel(12, [4, 5, 6, 7, 8], seed=5, scale=1.0)
    sents = [10, 11, 12, 13, 14, 15]
    gen = SequenceGenerator([model], ToyDict(12), GenerationConfig(beam=1, max_len_b=12, min_len=2))
    hyps = gen.generate(sources(sents))
    lengths = set()
    for row, sent in enumerate(sents):
        assert hyps[row][0].tokens.tolist() == greedy(model, sent, 12, 2)
        lengths.add(len(hyps[row][0].tokens))
    assert len(lengths) > 1  # sentences really finished at different steps


def test_batched_beam_search_equals_one_sentence_at_a_time() -> None:
    model = ScriptedModel(12, [4, 5, 6, 7, 8], seed=6, scale=1.0)
    gen = SequenceGenerator([model], ToyDict(12), GenerationConfig(beam=3, max_len_b=10))
    sents = [10, 11, 12, 13]
    together = gen.generate(sources(sents))
    for row, sent in enumerate(sents):
        alone = gen.generate(sources([sent]))[0]
        assert [h.tokens.tolist() for h in together[row]] == [h.tokens.tolist() for h in alone]
        assert [h.score for h in together[row]] == [h.score for h in alone]


def test_max_len_follows_padded_source_width() -> None:
    gen = SequenceGenerator([ScriptedModel(12, [4])], ToyDict(12), GenerationConfig(max_len_a=1.2, max_len_b=10))
    assert gen.max_len(7, torch.tensor([5])) == int(1.2 * 7 + 10)
    gen = SequenceGenerator([ScriptedModel(12, [4])], ToyDict(12), GenerationConfig(max_len_b=5000))
    assert gen.max_len(7, torch.tensor([5])) == 1023


def test_sampling_from_top1_or_tiny_topp_is_greedy() -> None:
    model = ScriptedModel(12, [4, 5, 6, 7], seed=8, scale=1.5)
    for cfg in (GenerationConfig(beam=3, sampling=True, sampling_topk=1, max_len_b=8),
                GenerationConfig(beam=3, sampling=True, sampling_topp=1e-6, max_len_b=8)):  # fmt: skip
        hyps = SequenceGenerator([model], ToyDict(12), cfg).generate(sources([10, 11]))
        for row, sent in enumerate([10, 11]):
            assert len(hyps[row]) == 3
            for h in hyps[row]:
                assert h.tokens.tolist() == greedy(model, sent, 8)


def test_sampling_draws_from_the_model() -> None:
    torch.manual_seed(0)
    model = ScriptedModel(12, [4, 5, 6, 7], seed=8, scale=0.5)
    cfg = GenerationConfig(beam=8, sampling=True, max_len_b=6)
    hyps = SequenceGenerator([model], ToyDict(12), cfg).generate(sources([10]))[0]
    assert len({tuple(h.tokens.tolist()) for h in hyps}) > 1
    for h in hyps:  # positional scores are the model's log-probs of the sampled tokens
        toks = h.tokens.tolist()
        expected = [float(model.lprobs(10, toks[:i])[t]) for i, t in enumerate(toks)]
        assert torch.allclose(h.positional_scores, torch.tensor(expected), atol=1e-5)


def test_diverse_beam_search_penalizes_tokens_of_earlier_groups() -> None:
    model = ScriptedModel(12, [4, 5, 6, 7, 8], seed=9, scale=1.0)
    plain = GenerationConfig(beam=4, max_len_b=6, diverse_beam_groups=2, diverse_beam_strength=0.0)
    free = SequenceGenerator([model], ToyDict(12), plain).generate(sources([10, 11]))
    strong = GenerationConfig(beam=4, max_len_b=6, diverse_beam_groups=2, diverse_beam_strength=50.0)
    hyps = SequenceGenerator([model], ToyDict(12), strong).generate(sources([10, 11]))
    for row in range(2):
        assert len(hyps[row]) == 4
        # without a penalty both groups search alike; with a huge one they never start with the same token
        assert len({h.tokens[0].item() for h in free[row]}) < len({h.tokens[0].item() for h in hyps[row]})


def test_prefix_tokens_are_forced() -> None:
    model = ScriptedModel(12, [4, 5, 6, 7, 8], seed=10, scale=1.0)
    gen = SequenceGenerator([model], ToyDict(12), GenerationConfig(beam=3, max_len_b=6))
    prefix = torch.tensor([[8, 8], [7, 1]])  # the second sentence has a one-token prefix (pad after)
    hyps = gen.generate(sources([10, 11]), prefix_tokens=prefix)
    for h in hyps[0]:
        assert h.tokens[:2].tolist() == [8, 8]
        assert abs(float(h.positional_scores[0]) - float(model.lprobs(10, [])[8])) < 1e-5
    for h in hyps[1]:
        assert h.tokens[0].item() == 7


def test_match_source_len_gives_outputs_as_long_as_the_source() -> None:
    model = ScriptedModel(12, [4, 5, 6], seed=11)
    gen = SequenceGenerator([model], ToyDict(12), GenerationConfig(beam=2, match_source_len=True))
    src = torch.tensor([[10, 4, 4, 4, 4, EOS], [1, 1, 11, 4, 4, EOS]])  # 5 and 3 real tokens (left-padded)
    hyps = gen.generate(src)
    assert len(hyps[0][0].tokens) == 6 and len(hyps[1][0].tokens) == 4


def test_attention_is_recorded_for_alignments() -> None:
    model = ScriptedModel(12, [4, 5, 6], seed=12)
    gen = SequenceGenerator([model], ToyDict(12), GenerationConfig(beam=2, max_len_b=5, print_alignment="hard"))
    hyps = gen.generate(sources([10, 11], length=6))
    for sentence in hyps:
        for h in sentence:
            assert h.attention is not None and h.attention.shape == (6, len(h.tokens))
            assert torch.allclose(h.attention.sum(0), torch.ones(len(h.tokens)))


def test_hypotheses_are_ordinary_tensors_after_inference_mode_decoding() -> None:
    """Decoding runs under torch.inference_mode; what it returns can be edited and used with autograd."""
    model = ScriptedModel(12, [4, 5])
    cfg = GenerationConfig(beam=2, max_len_b=6)
    (hyps,) = SequenceGenerator([model], ToyDict(12), cfg).generate(sources([10]))
    h = hyps[0]
    assert not h.tokens.is_inference() and not h.positional_scores.is_inference()
    h.tokens[0] = h.tokens[0]  # an in-place edit would raise on an inference tensor
    w = torch.ones((), requires_grad=True)
    (w * h.positional_scores).sum().backward()  # saved for backward: would raise on an inference tensor
    assert w.grad is not None


def test_a_beam_or_nbest_below_one_is_refused_by_name() -> None:
    model = ScriptedModel(12, [4, 5, 6, 7, 8], seed=5, scale=1.0)
    with pytest.raises(ValueError, match=r"--beam must be at least 1 \(got 0\)"):
        SequenceGenerator([model], ToyDict(12), GenerationConfig(beam=0))
    with pytest.raises(ValueError, match=r"--nbest must be at least 1 \(got 0\)"):  # no hypothesis would be printed
        SequenceGenerator([model], ToyDict(12), GenerationConfig(nbest=0))
