"""BART's text noising (fairseq's ``DenoisingDataset``), as pure functions of a token row and a seeded generator.

A row is ``<s> w_1 ... w_n </s>`` (int64 numpy array (T,)); every function returns a new row that still starts
with ``<s>`` and ends with ``</s>`` and draws its randomness only from the ``numpy.random.Generator`` it is
given, so ``noise(row, ..., generator=seeded(seed, epoch, index))`` is reproducible item by item (fairseq
seeds numpy per item but draws most noise from torch's global generator, so its noise also depends on
dropout and order). numpy, not torch: a row is about a hundred tokens, where each torch call's fixed cost
made noising a tenth of a small model's training step.

The steps, in fairseq's order: sentence permutation (``--permute-sentences``), span masking (``--mask``,
``--mask-random``, ``--mask-length``, ``--replace-length``, ``--poisson-lambda``), token permutation
(``--permute``: fairseq 0.12 parses it but never applies it; seqloom does), insertion (``--insert``) and
rotation (``--rotate``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Row = np.ndarray

MaskLength = Literal["subword", "word", "span-poisson"]


@dataclass(kw_only=True)
class NoiseOptions:
    """The noising flags of ``--task denoising`` (fairseq's meanings)."""

    mask: float = 0.0  # fraction of words (or subwords) to mask
    mask_random: float = 0.0  # of the masked ones, this fraction get a random token instead of <mask>
    insert: float = 0.0  # insert this fraction (of the row's length) of extra <mask>/random tokens
    permute: float = 0.0  # permute this fraction of the subwords
    rotate: float = 0.0  # rotate this fraction of the rows
    permute_sentences: float = 0.0  # permute this fraction of the sentences of each row
    replace_length: int = 0  # a masked span becomes 0 tokens, 1 <mask>, or (-1) one <mask> per token
    mask_length: MaskLength = "subword"  # span unit: subword, whole word, or Poisson-length spans of words
    poisson_lambda: float = 3.0  # mean span length for span-poisson

    def check(self) -> None:
        if self.replace_length not in (-1, 0, 1):
            raise ValueError(f"--replace-length must be -1, 0 or 1 (got {self.replace_length})")
        if self.mask_length not in ("subword", "word", "span-poisson"):
            raise ValueError(f"--mask-length must be subword, word or span-poisson (got {self.mask_length!r})")
        if self.mask_length == "subword" and self.replace_length not in (0, 1):
            raise ValueError("--mask-length subword needs --replace-length 0 or 1")


@dataclass(kw_only=True)
class Vocab:
    """The ids noising needs."""

    size: int  # random tokens are drawn from [1, size)
    mask: int
    full_stop: int  # sentence end for --permute-sentences ('.' with the gpt2 BPE, else </s>)


def seeded(*seeds: int) -> np.random.Generator:
    """A generator seeded from several ints (``seed, epoch, index``), as fairseq's ``numpy_seed``."""
    value = 0
    for s in seeds:
        value = (value * 1_000_003 + int(s)) % (2**63 - 1)
    return np.random.default_rng(value)


def poisson_probabilities(lam: float) -> np.ndarray:
    """P(k) of a Poisson(``lam``) for k = 0, 1, ... until a term drops below 1e-7 (at most 128 terms)."""
    probs, term = [], math.exp(-lam)
    for k in range(128):
        probs.append(term)
        if term < 1e-7:
            break
        term *= lam / (k + 1)
    return np.array(probs)


def permute_sentences(row: Row, p: float, full_stop: int, *, generator: np.random.Generator) -> Row:
    """Shuffles ``ceil(p * n)`` of the row's ``n`` sentences (ending at ``full_stop``; the last one at ``</s>``)."""
    stops = row == full_stop
    stops[-2] = True  # the last word always closes a sentence
    ends = np.flatnonzero(stops[1:] & ~stops[:-1]) + 2  # (n,) exclusive ends
    n = ends.size
    k = math.ceil(n * p)
    chosen = generator.permutation(n)[:k]
    order = np.arange(n)
    order[chosen] = chosen[generator.permutation(k)]
    begins = np.concatenate([[1], ends[:-1]])
    return np.concatenate([row[:1], *(row[begins[i] : ends[i]] for i in order), row[ends[-1] if n else 1 :]])


def word_starts(row: Row, table: np.ndarray | None) -> np.ndarray:
    """``(T,)`` int64: 1 where a word (or, without ``table``, any subword) starts; never at ``<s>``/``</s>``."""
    starts = table[row].astype(np.int64) if table is not None else np.ones(row.size, dtype=np.int64)
    starts[0] = 0
    starts[-1] = 0
    return starts


def span_lengths(num_to_mask: int, probs: np.ndarray, *, generator: np.random.Generator) -> np.ndarray:
    """Poisson span lengths whose total is exactly ``num_to_mask`` (the last one cut); zero-length spans kept."""
    probs = probs / probs.sum()
    lengths = generator.choice(probs.size, num_to_mask, p=probs)
    while int(lengths.sum()) < num_to_mask:
        lengths = np.concatenate([lengths, generator.choice(probs.size, num_to_mask, p=probs)])
    cum = np.cumsum(lengths)
    i = int((cum < num_to_mask).sum())  # first span reaching the total
    lengths[i] = num_to_mask - (0 if i == 0 else int(cum[i - 1]))
    return lengths[: i + 1]


def _replace(row: Row, at: np.ndarray, random: np.ndarray, vocab: Vocab, generator: np.random.Generator) -> None:
    row[at] = vocab.mask
    row[at[random]] = generator.integers(1, vocab.size, int(random.sum()))


def mask_spans(row: Row, p: float, opts: NoiseOptions, vocab: Vocab, table: np.ndarray | None, *,
               generator: np.random.Generator) -> Row:  # fmt: skip
    """Masks ``ceil(p * words)`` words in spans (fairseq's ``add_whole_word_mask``).

    Each span starts at a word start and covers whole words (``subword``: one token; ``word``: one word;
    ``span-poisson``: a Poisson number of words, 0-length spans become insertions). The first token of a span
    becomes ``<mask>`` (or with probability ``mask_random`` a random token); the rest are dropped
    (``replace_length`` 1), dropped with the first too (0), or each masked (-1).
    """
    starts = word_starts(row, table)
    num_to_mask = math.ceil(float(starts.sum()) * p)
    if num_to_mask == 0:
        return row
    num_inserts = 0
    lengths: np.ndarray | None = None
    if opts.mask_length == "span-poisson":
        lengths = span_lengths(num_to_mask, poisson_probabilities(opts.poisson_lambda), generator=generator)
        kept = lengths[lengths > 0]
        num_inserts = lengths.size - kept.size
        lengths, num_to_mask = kept, kept.size
        if num_to_mask == 0:
            return insert_tokens(row, num_inserts / row.size, opts.mask_random, vocab, generator=generator)
    candidates = np.flatnonzero(starts)
    at = candidates[generator.permutation(candidates.size)[:num_to_mask]]
    random = generator.random(at.size) < opts.mask_random
    row = row.copy()
    keep = np.ones(row.size, dtype=bool)
    starts[-1] = 255  # a word start past any span: spans never run over </s>
    if opts.replace_length == 0:
        keep[at] = False
    else:
        _replace(row, at, random, vocab, generator)
    remaining = lengths[: at.size] - 1 if lengths is not None else None
    while at.size > 0:
        if remaining is not None:  # span-poisson: count down words
            remaining = remaining - starts[at + 1]
            going = remaining >= 0
            remaining = remaining[going]
        else:  # one word: continue while inside it
            going = starts[at + 1] == 0
        at, random = at[going] + 1, random[going]
        if opts.replace_length != -1:
            keep[at] = False
        else:
            _replace(row, at, random, vocab, generator)
    row = row[keep]
    if num_inserts > 0:
        row = insert_tokens(row, num_inserts / row.size, opts.mask_random, vocab, generator=generator)
    return row


def permute_tokens(row: Row, p: float, *, generator: np.random.Generator) -> Row:
    """Shuffles ``ceil(p * T)`` of the row's inner tokens among their own positions."""
    n = row.size
    k = min(math.ceil(n * p), n - 2)
    picked = generator.permutation(n - 2)[:k] + 1
    row = row.copy()
    row[picked] = row[picked[generator.permutation(k)]]
    return row


def insert_tokens(row: Row, p: float, random_ratio: float, vocab: Vocab, *, generator: np.random.Generator) -> Row:
    """Inserts ``ceil(p * T)`` tokens at random inner positions: ``<mask>``, or random ids for ``random_ratio``."""
    if p == 0.0:
        return row
    n = row.size
    k = math.ceil(n * p)
    at = generator.permutation(n + k - 2)[:k] + 1  # (k,) positions in the longer row
    inserted = np.zeros(n + k, dtype=bool)
    inserted[at] = True
    out = np.full(n + k, -1, dtype=np.int64)
    num_random = math.ceil(k * random_ratio)
    out[at[num_random:]] = vocab.mask
    out[at[:num_random]] = generator.integers(1, vocab.size, num_random)
    out[~inserted] = row
    return out


def rotate(row: Row, *, generator: np.random.Generator) -> Row:
    """Rolls the inner tokens so that the row starts at a random one: ``<s> w_k ... w_n w_1 ... </s>``."""
    high = max(1, row.size - 1)
    offset = int(generator.integers(1, high + 1))
    return np.concatenate([row[:1], row[offset:-1], row[1:offset], row[-1:]])


def add_noise(row: Row, opts: NoiseOptions, vocab: Vocab, *, word_start_table: np.ndarray | None = None,
              generator: np.random.Generator) -> Row:  # fmt: skip
    """The noised source for the clean ``row`` ``<s> ... </s>`` (the target stays ``row``)."""
    source = row
    if opts.permute_sentences > 0:
        source = permute_sentences(source, opts.permute_sentences, vocab.full_stop, generator=generator)
    if opts.mask > 0:
        source = mask_spans(source, opts.mask, opts, vocab, word_start_table, generator=generator)
    if opts.permute > 0:
        source = permute_tokens(source, opts.permute, generator=generator)
    if opts.insert > 0:
        source = insert_tokens(source, opts.insert, opts.mask_random, vocab, generator=generator)
    if opts.rotate > 0 and generator.random() < opts.rotate:
        source = rotate(source, generator=generator)
    return source
