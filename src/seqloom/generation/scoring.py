"""Corpus metrics of the closing ``Generate ... with beam=N: ...`` line (fairseq's ``--scoring``).

``bleu`` is fairseq's own BLEU on token ids (its C extension, reimplemented): leading pads and trailing
eos/pads are trimmed (one token always stays), reference unks never match, n-gram matches are clipped.
``sacrebleu`` and ``chrf`` score detokenized strings with sacrebleu, ``wer`` with ``editdistance``.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from seqloom.generation.config import ScoringConfig

UNK_NEVER_MATCHES = -999


@dataclass
class BleuStats:
    """Sufficient statistics of corpus BLEU: lengths and, per order, matches and candidate n-grams."""

    reflen: int = 0
    predlen: int = 0
    match: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    count: list[int] = field(default_factory=lambda: [0, 0, 0, 0])


def _trim(tokens: Sequence[int], pad: int, eos: int) -> list[int]:
    start = 0
    while start < len(tokens) and tokens[start] == pad:
        start += 1
    out = list(tokens[start:])
    end = len(out) - 1
    while end > 0 and out[end] in (eos, pad):
        end -= 1
    return out[: end + 1] if out else out


FNV_OFFSET, FNV_PRIME = 14695981039346656037, 0x100000001B3


def ngram_hashes(tokens: list[int], n: int) -> Counter[int]:
    """Counts of the n-grams of ``tokens`` keyed by fairseq's hash of them.

    fairseq's C code identifies an n-gram by FNV-1a over its int32 bytes, each byte read as a *signed*
    char (sign-extended before the xor). That hash collides now and then, and the collisions count as
    matches in fairseq's BLEU, so it is reproduced here bit for bit (uint64 arithmetic wraps in numpy).
    """
    if len(tokens) < n:
        return Counter()
    ids = np.asarray(tokens, dtype="<i4")
    grams = np.lib.stride_tricks.sliding_window_view(ids, n)  # (K, n)
    data = np.ascontiguousarray(grams).view(np.int8).astype(np.int64).astype(np.uint64)  # (K, 4n) sign-extended
    h = np.full(len(grams), FNV_OFFSET, dtype=np.uint64)
    prime = np.uint64(FNV_PRIME)
    for col in range(data.shape[1]):
        h ^= data[:, col]
        h *= prime
    return Counter(h.tolist())


class BleuScorer:
    """fairseq's ``--scoring bleu`` (``fairseq.scoring.bleu.Scorer``) on token ids."""

    def __init__(self, *, pad: int = 1, eos: int = 2, unk: int = 3, smoothed: bool = False) -> None:
        self.pad, self.eos, self.unk = pad, eos, unk
        self.stat = BleuStats()
        if smoothed:  # fairseq's reset(one_init=True): +1 on every match and count (sentence BLEU)
            self.stat.match, self.stat.count = [1, 1, 1, 1], [1, 1, 1, 1]

    def add(self, ref: Sequence[int], pred: Sequence[int]) -> None:
        """Adds one sentence pair of token ids (``ref`` may hold unk, which then never matches)."""
        ref = _trim([UNK_NEVER_MATCHES if t == self.unk else int(t) for t in ref], self.pad, self.eos)
        pred = _trim([int(t) for t in pred], self.pad, self.eos)
        self.stat.reflen += len(ref)
        self.stat.predlen += len(pred)
        for n in range(1, 5):
            if len(pred) < n:
                continue
            self.stat.count[n - 1] += len(pred) - n + 1
            if len(ref) >= n:
                self.stat.match[n - 1] += sum((ngram_hashes(pred, n) & ngram_hashes(ref, n)).values())

    def precision(self) -> list[float]:
        return [m / c if c > 0 else 0.0 for m, c in zip(self.stat.match, self.stat.count)]

    def brevity(self) -> float:
        if self.stat.predlen == 0:
            return 0.0
        r = self.stat.reflen / self.stat.predlen
        return min(1.0, math.exp(1 - r))

    def ratio(self) -> float:
        return self.stat.predlen / self.stat.reflen if self.stat.reflen else 0.0

    def score(self, order: int = 4) -> float:
        precisions = self.precision()[:order]
        if not all(p > 0 for p in precisions):
            return 0.0  # one n-gram order without a match: the geometric mean is 0
        mean_log = sum(map(math.log, precisions)) / order  # the geometric mean, in log space
        return self.brevity() * math.exp(mean_log) * 100

    def result_string(self, order: int = 4) -> str:
        precisions = "/".join(f"{p * 100:2.1f}" for p in self.precision()[:order])
        return (
            f"BLEU{order} = {self.score(order):2.2f}, {precisions} (BP={self.brevity():.3f}, "
            f"ratio={self.ratio():.3f}, syslen={self.stat.predlen}, reflen={self.stat.reflen})"
        )


class SacrebleuScorer:
    """``--scoring sacrebleu``: corpus BLEU of detokenized strings (tokenized once, here, as fairseq does)."""

    def __init__(self, cfg: ScoringConfig) -> None:
        import sacrebleu

        self.sacrebleu = sacrebleu
        self.tokenize = sacrebleu.BLEU(tokenize=cfg.sacrebleu_tokenizer).tokenizer
        self.lowercase, self.char_level = cfg.sacrebleu_lowercase, cfg.sacrebleu_char_level
        self.refs: list[str] = []
        self.preds: list[str] = []

    def _prepare(self, text: str) -> str:
        text = self.tokenize(text)
        if self.char_level:
            text = " ".join(" ".join(word) for word in text.split())
        return text.lower() if self.lowercase else text

    def add_string(self, ref: str, pred: str) -> None:
        self.refs.append(self._prepare(ref))
        self.preds.append(self._prepare(pred))

    def score(self, order: int = 4) -> float:
        return self.sacrebleu.corpus_bleu(self.preds, [self.refs], tokenize="none").score

    def result_string(self, order: int = 4) -> str:
        return self.sacrebleu.corpus_bleu(self.preds, [self.refs], tokenize="none").format()


class ChrfScorer:
    """``--scoring chrf``: sacrebleu's corpus chrF of the strings."""

    def __init__(self) -> None:
        import sacrebleu

        self.sacrebleu = sacrebleu
        self.refs: list[str] = []
        self.preds: list[str] = []

    def add_string(self, ref: str, pred: str) -> None:
        self.refs.append(ref)
        self.preds.append(pred)

    def score(self, order: int = 4) -> float:
        return self.sacrebleu.corpus_chrf(self.preds, [self.refs]).score

    def result_string(self, order: int = 4) -> str:
        return self.sacrebleu.corpus_chrf(self.preds, [self.refs]).format()


class WerScorer:
    """``--scoring wer``: word error rate in percent, the word-level edit distance of the detokenized strings
    over the reference's word count, after fairseq's evaluation tokenizer: a sacrebleu tokenizer
    (``--wer-tokenizer``), then ``--wer-remove-punct``, ``--wer-char-level`` and ``--wer-lowercase``."""

    SPACE_ESCAPE = chr(9601)  # what a space becomes at character level

    def __init__(self, cfg: ScoringConfig) -> None:
        try:
            import editdistance
        except ImportError as err:
            raise ImportError("--scoring wer needs the editdistance package: pip install 'seqloom[wer]'") from err
        import sacrebleu

        self.edit_distance = editdistance.eval
        self.tokenize = sacrebleu.BLEU(tokenize=cfg.wer_tokenizer).tokenizer
        self.cfg = cfg
        self.distance = 0
        self.ref_length = 0

    def _words(self, text: str) -> list[str]:
        text = self.tokenize(text)
        if self.cfg.wer_remove_punct:  # tokens made only of punctuation go, empty ones (double spaces) too
            text = " ".join(t for t in text.split(" ") if not all(unicodedata.category(c)[0] == "P" for c in t))
        if self.cfg.wer_char_level:
            text = " ".join(text.replace(" ", self.SPACE_ESCAPE))
        if self.cfg.wer_lowercase:
            text = text.lower()
        return text.split()

    def add_string(self, ref: str, pred: str) -> None:
        ref_words = self._words(ref)
        self.distance += self.edit_distance(ref_words, self._words(pred))
        self.ref_length += len(ref_words)

    def score(self, order: int = 4) -> float:
        return 100.0 * self.distance / self.ref_length if self.ref_length > 0 else 0.0

    def result_string(self, order: int = 4) -> str:
        return f"WER: {self.score():.2f}"


def build_scorer(
    cfg: ScoringConfig, *, pad: int = 1, eos: int = 2, unk: int = 3
) -> BleuScorer | SacrebleuScorer | ChrfScorer | WerScorer:
    if cfg.scoring == "sacrebleu":
        return SacrebleuScorer(cfg)
    if cfg.scoring == "chrf":
        return ChrfScorer()
    if cfg.scoring == "wer":
        return WerScorer(cfg)
    return BleuScorer(pad=pad, eos=eos, unk=unk)
