"""From scored tokens to ``eval-lm``'s figures: summed loss, per-word probabilities and word statistics.

With ``--post-process subword_nmt`` (or ``@@ ``) a word split into BPE pieces counts once: each
continuation piece's score is added to the next piece and zeroed, and the continuation pieces are not
counted. Scores are natural-log probabilities; :attr:`EvalLMTotals.loss` converts to base 2, as fairseq.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from torch import Tensor

from seqloom.data.dictionary import Dictionary
from seqloom.evaluation.lm_scorer import ScoredSequence
from seqloom.tokenizers.word_starts import SymbolTable

logger = logging.getLogger(__name__)

# (word, natural-log probability, whether it was split into BPE pieces, the next word's log-prob or None)
Word = tuple[str, float, bool, "float | None"]


@dataclass
class WordStat:
    """Counts for one word (``--output-word-stats``): occurrences, summed log-probs, the next word's log-probs."""

    word: str
    is_bpe: bool
    log_prob: float = 0.0
    next_word_prob: float = 0.0
    count: int = 0
    missing_next_words: int = 0

    def add(self, log_prob: float, next_word_prob: float | None) -> None:
        if next_word_prob is None:
            self.missing_next_words += 1
        else:
            self.next_word_prob += next_word_prob
        self.log_prob += log_prob
        self.count += 1

    def line(self) -> str:
        """fairseq's columns: word, count, log-prob sum, is_bpe, next-word log-prob sum, next words counted."""
        values = (self.word, self.count, self.log_prob, self.is_bpe, self.next_word_prob)
        return "\t".join(str(v) for v in values) + f"\t{self.count - self.missing_next_words}"


def bpe_continuations(dictionary: SymbolTable, post_process: str | None) -> tuple[set[int], int]:
    """The ids of BPE continuation symbols (ending in ``@@``) and the marker's length; empty without BPE."""
    if post_process is None:
        return set(), 0
    if post_process not in ("subword_nmt", "@@ "):
        raise NotImplementedError(f"--post-process={post_process} is not implemented for eval-lm (use subword_nmt)")
    marker = "@@"
    return {i for i in range(len(dictionary)) if dictionary[i].endswith(marker)}, len(marker)


@dataclass
class EvalLMTotals:
    """Running sums over all scored rows."""

    score_sum: float = 0.0  # natural log
    count: int = 0
    word_stats: dict[str, WordStat] = field(default_factory=dict)

    @property
    def loss(self) -> float:
        """Average negative log-likelihood per (word) token, base 2."""
        return -self.score_sum / self.count / math.log(2) if self.count > 0 else 0.0

    @property
    def perplexity(self) -> float:
        return 2**self.loss


def merge_bpe(tokens: Tensor, scores: Tensor, bpe_ids: set[int]) -> tuple[Tensor, int]:
    """Moves each continuation piece's score onto the next piece; returns the scores and pieces merged."""
    scores = scores.clone()
    skipped = 0
    ids = tokens.tolist()
    for i in range(len(ids) - 1):
        if ids[i] in bpe_ids:
            skipped += 1
            scores[i + 1] += scores[i]
            scores[i] = 0
    return scores, skipped


def word_probs(tokens: Tensor, scores: Tensor, dictionary: SymbolTable, bpe_ids: set[int], bpe_len: int
               ) -> list[Word]:  # fmt: skip
    """(word, log-prob, was split into BPE pieces, the next word's log-prob or None) for every word."""
    out = []
    ids, values = tokens.tolist(), scores.tolist()
    word, is_bpe = "", False
    for i, idx in enumerate(ids):
        word += dictionary[idx]
        if idx in bpe_ids:
            word, is_bpe = word[:-bpe_len], True
            continue
        following = next((v for v in values[i + 1 :] if v != 0), None)
        out.append((word, values[i], is_bpe, following))
        word, is_bpe = "", False
    return out


def format_word_probs(sample_id: int, words: list[Word]) -> str:
    """fairseq's ``--output-word-probs`` line: the row id, then ``word [log-prob]`` pairs joined by tabs."""
    return f"{sample_id} " + "\t".join(f"{w} [{p:2f}]" for w, p, _, _ in words)


def accumulate(totals: EvalLMTotals, hypo: ScoredSequence, dictionary: Dictionary, *, bpe: tuple[set[int], int],
               remove_bos: int | None, words: bool) -> list[Word]:  # fmt: skip
    """Adds one scored row to ``totals``; with ``words``, also its words (returned) to the word statistics."""
    tokens, scores = hypo.tokens, hypo.positional_scores.float()
    if remove_bos is not None:
        if int(tokens[0]) != remove_bos:
            raise ValueError(f"--add-bos-token: row {hypo.id} does not start with the bos symbol")
        tokens, scores = tokens[1:], scores[1:]
    bpe_ids, bpe_len = bpe
    skipped = 0
    if bpe_ids:
        scores, skipped = merge_bpe(tokens, scores, bpe_ids)
    finite = scores.isfinite()
    if not bool(finite.all()):
        logger.info("skipping tokens with inf scores: %s", dictionary.string(tokens[~finite]))
    totals.score_sum += float(scores[finite].sum())
    totals.count += int(finite.sum()) - skipped
    if not words:
        return []
    found = word_probs(tokens, scores, dictionary, bpe_ids, bpe_len)
    for word, prob, is_bpe, following in found:
        totals.word_stats.setdefault(word, WordStat(word, is_bpe)).add(prob, following)
    return found
