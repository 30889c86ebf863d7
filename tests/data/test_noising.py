"""BART noising: pure, seeded functions; masking ratios, span lengths, whole words, insertion, rotation."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from seqloom.data.noising import (
    NoiseOptions,
    Vocab,
    add_noise,
    insert_tokens,
    mask_spans,
    permute_sentences,
    permute_tokens,
    poisson_probabilities,
    rotate,
    seeded,
    span_lengths,
)

MASK = 99
VOCAB = Vocab(size=100, mask=MASK, full_stop=13)


def row(n: int = 50) -> np.ndarray:
    """``<s> 10 11 ... </s>``: n distinct inner tokens."""
    return np.array([0, *range(10, 10 + n), 2])


def test_same_seed_same_noise_other_epoch_other_noise() -> None:
    opts = NoiseOptions(mask=0.3, mask_random=0.1, mask_length="span-poisson", replace_length=1, rotate=0.5)
    a = add_noise(row(), opts, VOCAB, generator=seeded(1, 1, 7))
    b = add_noise(row(), opts, VOCAB, generator=seeded(1, 1, 7))
    c = add_noise(row(), opts, VOCAB, generator=seeded(1, 2, 7))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    r = row()
    add_noise(r, opts, VOCAB, generator=seeded(1, 1, 7))
    assert np.array_equal(r, row())  # the input is never modified in place


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_subword_masking_ratio_is_exact(p: float) -> None:
    for seed in range(20):
        out = mask_spans(row(), p, NoiseOptions(mask=p, replace_length=1), VOCAB, None, generator=seeded(seed))
        assert out.size == 52 and out[0] == 0 and out[-1] == 2
        assert int((out == MASK).sum()) == math.ceil(50 * p)


def test_mask_random_fraction() -> None:
    opts = NoiseOptions(mask=0.5, mask_random=0.2, replace_length=1)
    changed = masked = 0
    for seed in range(200):
        out = mask_spans(row(), 0.5, opts, VOCAB, None, generator=seeded(seed))
        masked += int((out == MASK).sum())
        changed += int((out != row()).sum())
    random = changed - masked  # (a random id may rarely equal the original: then it is not counted)
    assert 0.15 < random / changed < 0.25


def test_poisson_span_lengths() -> None:
    probs = poisson_probabilities(3.5)
    assert probs.sum() == pytest.approx(1.0, abs=1e-5) and probs[3] == pytest.approx(math.exp(-3.5) * 3.5**3 / 6)
    lengths = np.concatenate([span_lengths(15, probs, generator=seeded(s)) for s in range(300)])
    totals = [int(span_lengths(15, probs, generator=seeded(s)).sum()) for s in range(50)]
    assert set(totals) == {15}  # spans always add up to the number of words to mask
    # all but each draw's last (cut) span follow Poisson(3.5): mean near 3.5 with the cut ones pulling it down
    assert 2.3 < float(lengths.mean()) < 3.6


def test_span_poisson_replace_length_variants() -> None:
    inserted = 0
    opts = NoiseOptions(mask=0.3, mask_length="span-poisson", poisson_lambda=3.5)
    for seed in range(30):
        g = [seeded(seed) for _ in range(3)]
        each = mask_spans(row(), 0.3, NoiseOptions(**{**vars(opts), "replace_length": -1}), VOCAB, None, generator=g[0])
        one = mask_spans(row(), 0.3, NoiseOptions(**{**vars(opts), "replace_length": 1}), VOCAB, None, generator=g[1])
        none = mask_spans(row(), 0.3, NoiseOptions(**{**vars(opts), "replace_length": 0}), VOCAB, None, generator=g[2])
        if each.size != 52:  # a 0-length span becomes an inserted <mask> (fairseq's rule)
            assert each.size > 52 and int((each == MASK).sum()) >= each.size - 52
            inserted += 1
            continue
        masked = int((each == MASK).sum())
        assert 0 < masked <= 15  # overlapping / end-cut spans can only mask fewer
        # replace-length 1: each span (same draws -> same spans) becomes one <mask>
        spans = int((one == MASK).sum())
        assert one.size == 52 - masked + spans and 0 < spans <= masked
        assert none.size == 52 - masked and int((none == MASK).sum()) == 0
        assert none[0] == 0 and none[-1] == 2
    assert inserted < 30


def test_whole_word_masking_masks_whole_words() -> None:
    table = np.zeros(100, dtype=bool)
    table[[0, 1, 2, 3]] = True
    starts = list(range(10, 60, 3))  # words of three subwords: 10 11 12 | 13 14 15 | ...
    table[starts] = True
    for mask_length in ("word", "span-poisson"):
        opts = NoiseOptions(mask=0.3, mask_length=mask_length, replace_length=-1)
        for seed in range(20):
            out = mask_spans(row(48), 0.3, opts, VOCAB, table, generator=seeded(seed))
            if out.size != 50:
                continue  # 0-length spans were turned into insertions
            masked = np.flatnonzero(out == MASK).tolist()
            for i in masked:  # a masked subword's whole word is masked
                word_start = i
                while int(row(48)[word_start]) not in starts:
                    word_start -= 1
                assert all(out[j] == MASK for j in range(word_start, min(word_start + 3, 49)))
            if mask_length == "word":
                assert len(masked) == 3 * math.ceil(16 * 0.3)


def test_insertion() -> None:
    out = insert_tokens(row(), 0.1, 0.0, VOCAB, generator=seeded(3))
    assert out.size == 52 + math.ceil(52 * 0.1) and int((out == MASK).sum()) == math.ceil(52 * 0.1)
    assert np.array_equal(out[out != MASK], row()) and out[0] == 0 and out[-1] == 2


def test_rotation_keeps_bos_eos_and_tokens() -> None:
    for seed in range(10):
        out = rotate(row(), generator=seeded(seed))
        assert out[0] == 0 and out[-1] == 2 and sorted(out.tolist()) == sorted(row().tolist())
        start = int(out[1]) - 10
        assert out[1:-1].tolist() == [10 + (start + i) % 50 for i in range(50)]


def test_permute_sentences_moves_whole_sentences() -> None:
    sentences = [[20, 21, 13], [30, 13], [40, 41, 42, 13], [50, 51]]
    source = np.array([0, *[t for s in sentences for t in s], 2])
    seen = set()
    for seed in range(30):
        out = permute_sentences(source, 1.0, 13, generator=seeded(seed))
        assert out[0] == 0 and out[-1] == 2 and Counter(out.tolist()) == Counter(source.tolist())
        inner = out[1:-1].tolist()
        order = []
        while inner:  # the output reads as whole sentences, each one once
            sentence = next(s for s in sentences if inner[: len(s)] == s and s not in order)
            order.append(sentence)
            inner = inner[len(sentence) :]
        seen.add(tuple(map(tuple, order)))
    assert len(seen) > 5


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="--replace-length"):
        NoiseOptions(replace_length=2).check()
    with pytest.raises(ValueError, match="subword"):
        NoiseOptions(mask_length="subword", replace_length=-1).check()


def test_token_permutation_shuffles_a_fraction_in_place() -> None:
    out = permute_tokens(row(), 0.2, generator=seeded(4))
    assert out[0] == 0 and out[-1] == 2 and sorted(out.tolist()) == sorted(row().tolist())
    assert 2 <= int((out != row()).sum()) <= math.ceil(52 * 0.2)


def test_permute_sentences_of_one_sentence_or_none() -> None:
    one = np.array([0, 20, 21, 22, 2])  # no full stop: the whole row is one sentence
    assert np.array_equal(permute_sentences(one, 1.0, 13, generator=seeded(0)), one)
    empty = np.array([0, 2])
    assert np.array_equal(permute_sentences(empty, 1.0, 13, generator=seeded(0)), empty)
