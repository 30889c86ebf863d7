"""BERT-style masking for ``--task masked_lm``: each ``<s> ...`` block -> (masked input, targets at the masked
positions).

Per item, a generator seeded from ``hash((seed, epoch, index)) % 10**6`` (so a seeded run masks the very
positions fairseq's ``MaskTokensDataset`` masks) draws, in fairseq's order: the number of masks
(``mask_prob * n / mask_multiple_length`` plus a uniform draw, truncated), their start positions without
replacement (each extended to ``mask_multiple_length``, or to a normal length with ``mask_stdev``), which chosen
positions are kept or randomized (``leave_unmasked_prob``, ``random_token_prob``), and the random tokens
(uniform, or by dictionary counts with ``freq_weighted_replacement``; specials never, ``<mask>`` possibly).
With a word-start table (``--mask-whole-words``) positions are words and a chosen word masks all its tokens.
The target keeps the original token at every chosen position (also those left or randomized), pad elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqloom.data.dictionary import Dictionary
from seqloom.data.language_pair_dataset import TokenDataset, collate_tokens
from seqloom.data.sized import OneSidedSizes


@dataclass(frozen=True)
class MaskingOptions:
    """fairseq's masking probabilities (the masked_lm task's flags)."""

    mask_prob: float = 0.15
    leave_unmasked_prob: float = 0.1
    random_token_prob: float = 0.1
    freq_weighted_replacement: bool = False
    mask_multiple_length: int = 1
    mask_stdev: float = 0.0
    skip: bool = False  # --skip-masking: input and target are the block as it is

    def check(self) -> None:
        problems = []
        if not 0.0 < self.mask_prob < 1.0:
            problems.append(f"--mask-prob {self.mask_prob} must lie strictly between 0 and 1")
        for flag, p in (("--leave-unmasked-prob", self.leave_unmasked_prob),
                        ("--random-token-prob", self.random_token_prob)):  # fmt: skip
            if not 0.0 <= p <= 1.0:
                problems.append(f"{flag} {p} must lie between 0 and 1")
        if self.leave_unmasked_prob + self.random_token_prob > 1.0:
            problems.append("--leave-unmasked-prob plus --random-token-prob must not exceed 1")
        if self.mask_multiple_length < 1:
            problems.append(f"--mask-multiple-length {self.mask_multiple_length} must be at least 1")
        if self.mask_stdev < 0:
            problems.append(f"--mask-stdev {self.mask_stdev} must not be negative")
        if problems:
            raise ValueError("masked_lm: " + "; ".join(problems))


def replacement_weights(counts: Sequence[int], nspecial: int, *, by_frequency: bool) -> np.ndarray:
    """``(V,)`` probabilities of each symbol as a random replacement: uniform or by count, specials 0."""
    weights = np.array(counts, dtype=np.float64) if by_frequency else np.ones(len(counts))
    weights[:nspecial] = 0
    return weights / weights.sum()


def item_generator(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one item's draws: fairseq's ``hash((seed, epoch, index)) % 1e6`` seed."""
    return np.random.default_rng(int(hash((int(seed), int(epoch), int(index))) % 1e6))


def choose_positions(n: int, opts: MaskingOptions, rng: np.random.Generator) -> np.ndarray:
    """``(n,)`` bool: the positions (words, with a word table) chosen for prediction."""
    count = int(opts.mask_prob * n / float(opts.mask_multiple_length) + rng.random())
    starts = rng.choice(n, count, replace=False)
    if opts.mask_stdev > 0.0:
        lengths = [max(0, int(round(x))) for x in rng.normal(opts.mask_multiple_length, opts.mask_stdev, size=count)]
        picked = np.asarray([s + k for s, n_k in zip(starts, lengths) for k in range(n_k)], dtype=np.int64)
    else:
        picked = np.concatenate([starts + k for k in range(opts.mask_multiple_length)])
    chosen = np.zeros(n, dtype=bool)
    chosen[picked[picked < n]] = True
    return chosen


def split_chosen(chosen: np.ndarray, opts: MaskingOptions, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """(positions that become ``<mask>``, positions that get a random token or None) of the ``chosen`` ones."""
    either = opts.random_token_prob + opts.leave_unmasked_prob
    if either <= 0.0:
        return chosen, None
    changed = chosen & (rng.random(len(chosen)) < either)
    if opts.random_token_prob == 0.0:
        return chosen ^ changed, None
    if opts.leave_unmasked_prob == 0.0:
        return chosen ^ changed, changed
    leave = rng.random(len(chosen)) < opts.leave_unmasked_prob / either
    return chosen ^ (changed & leave), changed & ~leave


def mask_tokens(item: np.ndarray, opts: MaskingOptions, rng: np.random.Generator, *, mask_idx: int, pad: int,
                weights: np.ndarray | None, word_starts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``item`` ``(T,)`` -> (masked input ``(T,)``, target ``(T,)``: the original token where chosen, else pad)."""
    word_lens = None
    n = len(item)
    if word_starts is not None:
        begins = word_starts[item]  # (T,) bool
        starts = begins.nonzero()[0]
        word_lens = np.diff(np.append(starts, n))
        n = len(starts)

    def tokens_of(words: np.ndarray) -> np.ndarray:
        return words if word_lens is None else np.repeat(words, word_lens)

    chosen = choose_positions(n, opts, rng)
    target = np.full(len(item), pad, dtype=item.dtype)
    chosen_tokens = tokens_of(chosen)
    target[chosen_tokens] = item[chosen_tokens]
    masked, randomized = split_chosen(chosen, opts, rng)
    source = item.copy()
    source[tokens_of(masked)] = mask_idx
    if randomized is not None and randomized.sum() > 0:
        assert weights is not None
        at = tokens_of(randomized)
        source[at] = rng.choice(len(weights), int(at.sum()), p=weights)
    return source, target


class MaskTokensDataset(OneSidedSizes):
    """``<s> ...`` blocks masked per epoch; batches ``{"net_input": {src_tokens, src_lengths}, "target"}``.

    Batches go by length, ties in a seeded random order (fairseq's ``SortDataset(sort_order=[shuffle, sizes])``).
    """

    def __init__(self, blocks: TokenDataset, sizes: np.ndarray, opts: MaskingOptions, *, vocab: Dictionary, mask_idx: int,
                 seed: int = 1, word_starts: np.ndarray | None = None) -> None:  # fmt: skip
        opts.check()
        self.blocks, self.opts = blocks, opts
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.pad, self.mask_idx, self.seed = vocab.pad(), mask_idx, seed
        self.word_starts = word_starts
        self.weights = None
        if opts.random_token_prob > 0.0:
            self.weights = replacement_weights(vocab.count, vocab.nspecial, by_frequency=opts.freq_weighted_replacement)
        self.shuffle = np.random.RandomState(seed).permutation(len(self.sizes))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.blocks[index].numpy()
        if (item == self.mask_idx).any():
            raise ValueError(f"masked_lm: block {index} already holds <mask> (id {self.mask_idx}); the data must not")
        if self.opts.skip:
            return {"id": index, "source": torch.from_numpy(item.copy()), "target": torch.from_numpy(item.copy())}
        rng = item_generator(self.seed, self.epoch, index)
        source, target = mask_tokens(item, self.opts, rng, mask_idx=self.mask_idx, pad=self.pad,
                                     weights=self.weights, word_starts=self.word_starts)  # fmt: skip
        return {"id": index, "source": torch.from_numpy(source), "target": torch.from_numpy(target)}

    def ordered_indices(self, rng: np.random.RandomState | None = None) -> np.ndarray:
        return np.lexsort([self.shuffle, self.sizes]).astype(np.int64)

    def collater(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not samples:
            return {}
        sources = [s["source"] for s in samples]
        return {
            "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
            "nsentences": len(samples),
            "ntokens": sum(t.numel() for t in sources),
            "net_input": {
                "src_tokens": collate_tokens(sources, self.pad),  # (B, T) right-padded
                "src_lengths": torch.tensor([t.numel() for t in sources], dtype=torch.long),
            },
            "target": collate_tokens([s["target"] for s in samples], self.pad),  # (B, T)
        }


class PrependTokenDataset:
    """Each item with ``token`` in front (fairseq's ``PrependTokenDataset``); ``sizes`` grow by 1."""

    def __init__(self, dataset: Any, token: int) -> None:  # as BosEosDataset's ``dataset``
        self.dataset, self.token = dataset, token
        self.sizes = np.asarray(dataset.sizes, dtype=np.int64) + 1

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tensor:
        item = self.dataset[index].long()
        return torch.cat([item.new_tensor([self.token]), item])
