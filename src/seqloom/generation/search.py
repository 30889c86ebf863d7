"""Search strategies: given next-token log-probs of every live hypothesis, propose candidates.

Each strategy's ``step`` sees ``lprobs`` (B, K, V) (natural log, already masked by the generator) and the
cumulative scores so far ``scores`` (B, K, step) and returns a :class:`SearchStep` of candidates with
cumulative scores. Beam search proposes 2K candidates so that K survive after the ones ending in eos are
finalized. Semantics (tie order included) follow fairseq's ``search.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from seqloom.generation.chunked_topk import chunked_topk


@dataclass
class SearchStep:
    """Candidates of one step, best first within each sentence."""

    scores: Tensor  # (B, C) cumulative log-prob of each candidate (natural log)
    tokens: Tensor  # (B, C) the token each candidate appends
    beams: Tensor  # (B, C) the hypothesis (0..K-1) each candidate extends


class Search:
    """Base class: strategies needing the source lengths set ``needs_src_lengths``."""

    needs_src_lengths = False
    needs_batch_rows = False  # whether step() needs ``original_batch_idxs``
    stop_on_max_len = False

    def __init__(self) -> None:
        self.src_lengths: Tensor | None = None

    def set_src_lengths(self, src_lengths: Tensor) -> None:
        self.src_lengths = src_lengths

    def step(
        self, step: int, lprobs: Tensor, scores: Tensor | None, *, original_batch_idxs: Tensor | None = None
    ) -> SearchStep:
        """Candidates for ``lprobs`` (B, K, V); ``original_batch_idxs`` (B,) are the rows' sentences in the
        batch as it started (only searches that keep per-sentence state need them)."""
        raise NotImplementedError

    def init_constraints(self, packed: Tensor | None, bsz: int, beam_size: int, *, max_len: int) -> None:
        """Lexical constraints (fairseq's packed (B, L) form) of a new batch; only constrained search takes any."""
        if packed is not None:
            raise ValueError(
                "constraints were given, but the search is not constrained (--constraints ordered|unordered)"
            )

    def prune(self, batch_idxs: Tensor) -> None:
        """Sentences left the batch: only the rows ``batch_idxs`` (B',) remain (for per-sentence state)."""

    def select(self, active: Tensor) -> None:
        """The new hypotheses continue the candidates ``active`` (B, K) of the last step (for per-hypothesis
        state)."""


class BeamSearch(Search):
    """Keeps the ``candidate_multiple * K`` (2K) best continuations of the K hypotheses of each sentence."""

    def step(
        self,
        step: int,
        lprobs: Tensor,
        scores: Tensor | None,
        *,
        original_batch_idxs: Tensor | None = None,
        candidate_multiple: int = 2,
    ) -> SearchStep:
        bsz, beam_size, vocab_size = lprobs.shape
        if step == 0:
            lprobs = lprobs[:, ::beam_size, :]  # all beams are equal: use the first
            offsets = None
        else:
            assert scores is not None
            offsets = scores[:, :, step - 1]  # (B, K)
        k = min(beam_size * candidate_multiple, lprobs.size(1) * vocab_size - 1)
        found = chunked_topk(lprobs, offsets, k)
        if found is None:
            cumulative = lprobs.contiguous() if offsets is None else lprobs + offsets.unsqueeze(-1)  # (B, K', V)
            found = torch.topk(cumulative.view(bsz, -1), k=k)  # over (B, K'*V)
        top_scores, top_indices = found
        beams = torch.div(top_indices, vocab_size, rounding_mode="trunc")
        return SearchStep(top_scores, top_indices.fmod(vocab_size), beams)


class LengthConstrainedBeamSearch(Search):
    """Beam search whose outputs have between ``a*src_len+b`` tokens (``--match-source-len``: exactly src_len)."""

    needs_src_lengths = True

    def __init__(self, eos: int, *, min_len_a: float, min_len_b: int, max_len_a: float, max_len_b: int) -> None:
        super().__init__()
        self.eos = eos
        self.min_len_a, self.min_len_b = min_len_a, min_len_b
        self.max_len_a, self.max_len_b = max_len_a, max_len_b
        self.beam = BeamSearch()

    def step(
        self, step: int, lprobs: Tensor, scores: Tensor | None, *, original_batch_idxs: Tensor | None = None
    ) -> SearchStep:
        assert self.src_lengths is not None, "LengthConstrainedBeamSearch needs set_src_lengths()"
        min_lens = self.min_len_a * self.src_lengths + self.min_len_b  # (B,)
        max_lens = self.max_len_a * self.src_lengths + self.max_len_b  # (B,)
        eos = lprobs[:, :, self.eos]  # (B, K) view: written in place
        eos.masked_fill_((step < min_lens).unsqueeze(1), -math.inf)
        eos.masked_fill_((step >= max_lens).unsqueeze(1), 0)
        return self.beam.step(step, lprobs, scores)


class DiverseBeamSearch(Search):
    """Diverse beam search (Vijayakumar et al. 2016) as fairseq 0.12 implements it.

    The K beams form G groups searched one after another; group g's log-probs are lowered by
    ``diversity_strength`` times a penalty on each token that earlier groups chose at this step. The
    penalty is cumulative (fairseq's default, ``diversity_discount`` 1): ``1 +`` how often the two groups
    already chose the same tokens at the same positions. Each group proposes only K/G candidates
    (``candidate_multiple`` 1). fairseq indexes its per-sentence overlap by dataset ids and fails once an
    id exceeds the batch size; here it is indexed by the sentence's row in the starting batch.
    """

    needs_batch_rows = True

    def __init__(
        self,
        num_groups: int,
        diversity_strength: float,
        *,
        diversity_discount: float = 1.0,
        candidate_multiple: int = 1,
    ) -> None:
        super().__init__()
        self.num_groups = num_groups
        self.diversity_strength = diversity_strength  # subtracted, times the penalty
        self.diversity_discount = diversity_discount
        self.candidate_multiple = candidate_multiple
        self.beam = BeamSearch()
        self.group_overlap = torch.empty(0)  # (B0, G, G) discounted counts of shared tokens between groups

    def step(
        self, step: int, lprobs: Tensor, scores: Tensor | None, *, original_batch_idxs: Tensor | None = None
    ) -> SearchStep:
        bsz, beam_size, vocab = lprobs.shape
        groups = self.num_groups
        if beam_size % groups != 0:
            raise ValueError(f"--diverse-beam-groups {groups} must divide --beam {beam_size} (DiverseBeamSearch)")
        sentences = torch.arange(bsz) if original_batch_idxs is None else original_batch_idxs
        width = beam_size // groups * self.candidate_multiple  # candidates per group
        # candidate c of group g sits at [:, c, g]: read row-major, the groups' candidates interleave
        cand_scores = lprobs.new_empty(bsz, width, groups)
        cand_tokens = torch.empty(bsz, width, groups, dtype=torch.long, device=lprobs.device)
        cand_beams = torch.empty_like(cand_tokens)
        for g in range(groups):
            group_lprobs = lprobs[:, g::groups, :]  # (B, K/G, V): beams g, g+G, ...
            if g == 0:
                group_lprobs = group_lprobs.contiguous()
            else:
                weights = self._overlap_weights(step, sentences, g)  # (B, g)
                penalty = token_penalty(cand_tokens[:, :, :g], weights, vocab).to(lprobs)  # (B, V)
                group_lprobs = torch.add(group_lprobs, penalty.unsqueeze(1), alpha=-self.diversity_strength)
            past = None if step == 0 or scores is None else scores[:, g::groups, :]
            found = self.beam.step(step, group_lprobs, past, candidate_multiple=self.candidate_multiple)
            cand_scores[:, :, g] = found.scores
            cand_tokens[:, :, g] = found.tokens
            cand_beams[:, :, g] = found.beams * groups + g  # the group's beam j is beam j*G+g of the sentence
        self._record_overlap(step, sentences, cand_tokens)
        return SearchStep(cand_scores.view(bsz, -1), cand_tokens.view(bsz, -1), cand_beams.view(bsz, -1))

    def _overlap_weights(self, step: int, sentences: Tensor, g: int) -> Tensor:
        """(B, g): the penalty weight of each earlier group's tokens for group ``g``."""
        if step == 0:
            return torch.ones(len(sentences), g)
        return 1 + self.group_overlap[sentences, g, :g]

    def _record_overlap(self, step: int, sentences: Tensor, cand_tokens: Tensor) -> None:
        """Adds this step's agreements (same token at the same candidate rank) of every pair of groups."""
        agree = cand_tokens.unsqueeze(3) == cand_tokens.unsqueeze(2)  # (B, P, G, G)
        now = self.diversity_discount * agree.sum(dim=1)  # (B, G, G)
        if step == 0:
            self.group_overlap = now
        else:
            self.group_overlap[sentences] = self.group_overlap[sentences] * self.diversity_discount + now


def token_penalty(tokens: Tensor, weights: Tensor, vocab: int) -> Tensor:
    """(B, V) weighted counts: ``weights[b, h]`` for every time group h chose a token in ``tokens`` (B, P, h).

    A histogram over ``b * V + token``; its sums are of small integers (exact in any order) as long as the
    discount is 1 or 0, the only values the command line can set.
    """
    bsz = tokens.size(0)
    bins = (tokens + (torch.arange(bsz, device=tokens.device) * vocab).view(bsz, 1, 1)).flatten()
    counts = torch.bincount(bins, weights.unsqueeze(1).expand(tokens.shape).flatten().double(), minlength=bsz * vocab)
    return counts.view(bsz, vocab)


class DiverseSiblingsSearch(Search):
    """Sibling-penalized beam search (Li et al. 2016, "A Simple, Fast Diverse Decoding Algorithm").

    Each hypothesis ranks its own 2K best continuations; the r-th of them loses ``r * diversity_rate`` before
    all hypotheses' continuations compete, so that no single parent fills the beam. As in fairseq, the
    penalty stays in the candidates' cumulative scores (and so in the hypotheses' scores). Rate 0 is beam
    search.
    """

    def __init__(self, diversity_rate: float) -> None:
        super().__init__()
        self.diversity_rate = diversity_rate
        self.beam = BeamSearch()

    def step(
        self, step: int, lprobs: Tensor, scores: Tensor | None, *, original_batch_idxs: Tensor | None = None
    ) -> SearchStep:
        if step == 0:
            return self.beam.step(step, lprobs, scores)
        assert scores is not None
        bsz, beam_size, vocab_size = lprobs.shape
        k = min(2 * beam_size, beam_size * vocab_size - 1)
        lprobs = lprobs + scores[:, :, step - 1].unsqueeze(-1)  # (B, K, V) cumulative
        sib_scores, sib_tokens = torch.topk(lprobs, k, dim=2)  # (B, K, k) each hypothesis' best, in rank order
        ranks = torch.arange(1, k + 1, device=lprobs.device, dtype=lprobs.dtype)
        sib_scores = sib_scores - ranks * self.diversity_rate
        top_scores, top = torch.topk(sib_scores.view(bsz, -1), k)  # (B, k) over all K*k siblings
        tokens = torch.gather(sib_tokens.view(bsz, -1), 1, top)
        return SearchStep(top_scores, tokens, torch.div(top, k, rounding_mode="trunc"))


class Sampling(Search):
    """Samples one continuation per hypothesis, optionally from the top-k or the top-p (nucleus) set."""

    def __init__(self, sampling_topk: int = -1, sampling_topp: float = -1.0) -> None:
        super().__init__()
        self.sampling_topk = sampling_topk
        self.sampling_topp = sampling_topp

    def _pool(self, lprobs: Tensor) -> tuple[Tensor, Tensor | None]:
        """The weights (B, K', W) to draw from, and the token of each column (None: column j is token j)."""
        if self.sampling_topp > 0:
            return nucleus(lprobs, self.sampling_topp)
        if self.sampling_topk > 0:
            top, ids = lprobs.topk(self.sampling_topk)
            return top.exp(), ids
        return lprobs.exp(), None

    def step(
        self, step: int, lprobs: Tensor, scores: Tensor | None, *, original_batch_idxs: Tensor | None = None
    ) -> SearchStep:
        bsz, beam_size, _ = lprobs.shape
        first = step == 0
        # at step 0 the K beams of a sentence are one and the same: K draws from beam 0 (fairseq's RNG use)
        weights, ids = self._pool(lprobs[:, :1] if first else lprobs)  # (B, 1 or K, W)
        if first:
            picks = torch.multinomial(weights.reshape(bsz, -1), beam_size, replacement=True)  # (B, K)
        else:
            picks = torch.multinomial(weights.reshape(bsz * beam_size, -1), 1, replacement=True).view(bsz, beam_size)
        where = picks.unsqueeze(2)  # (B, K, 1)
        # the score is the log of the drawn weight (as fairseq: not the log-prob it came from, bit for bit)
        cand_scores = weights.expand(bsz, beam_size, -1).gather(2, where).squeeze(2).log()  # (B, K)
        tokens = picks if ids is None else ids.expand(bsz, beam_size, -1).gather(2, where).squeeze(2)
        if first:
            beams = torch.zeros_like(tokens)
        else:
            assert scores is not None
            beams = torch.arange(beam_size, device=tokens.device).expand(bsz, -1)
            cand_scores = cand_scores + scores[:, :, step - 1]
        return SearchStep(cand_scores, tokens, beams)


def nucleus(lprobs: Tensor, p: float) -> tuple[Tensor, Tensor]:
    """Top-p sets of ``lprobs`` (B, K, V): the most likely tokens, up to and including the one whose
    cumulative probability reaches ``p`` (all V at most).

    Returns their probabilities (B, K, W), zero past each row's set, and their ids (B, K, W); W is the
    largest set's size.
    """
    probs, ids = lprobs.exp().sort(dim=2, descending=True)
    below = probs.cumsum(dim=2) < p  # (B, K, V) true on a prefix of each row
    last = below.sum(dim=2, keepdim=True).clamp_(max=probs.size(2) - 1)  # (B, K, 1) index of the set's last token
    width = int(last.max()) + 1
    inside = torch.arange(width, device=probs.device) <= last  # (B, K, W)
    return torch.where(inside, probs[:, :, :width], 0), ids[:, :, :width]
