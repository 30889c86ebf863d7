"""Lexically constrained beam search with dynamic beam allocation (``--constraints ordered|unordered``).

Post & Vilar (2018), "Fast Lexically Constrained Decoding with Dynamic Beam Allocation", with Hu et al.'s
(2019) trie for unordered constraints. Each hypothesis carries a constraint state
(:mod:`seqloom.generation.constraint_states`). Per step and sentence the candidates are the 2K best
continuations overall, the best continuation of each hypothesis, and every next constraint token of each
hypothesis. They are grouped into banks by the constraint tokens they have generated and picked
round-robin across the banks, most advanced bank first, so that hypotheses at every stage of meeting the
constraints stay in the beam. A hypothesis may only end once its constraints are met.

Candidate order, ties and the sort key follow fairseq 0.12 (its key is ``score - 100 * (N - bank)``, N the
number of distinct constraint tokens, in float32), so outputs equal fairseq's. Two deliberate differences:

- candidates of score -inf (impossible: a forced prefix, a blocked n-gram) go after all others. fairseq's
  round-robin can keep them ahead of possible ones, and beams that take them can never end: with a prefix
  (``--prefix-size``, or a language model's prompt) every beam could die and generation fail;
- when a sentence reaches the length limit and none of its hypotheses has met the constraints, fairseq fails
  with an assertion (no hypothesis may end); here that sentence's hypotheses end as in plain beam search, and
  a warning says that they miss constraints.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import Tensor

from seqloom.generation.constraint_states import ConstraintState, initial_states
from seqloom.generation.search import Search, SearchStep

logger = logging.getLogger(__name__)

BANK_WEIGHT = -100  # fairseq's MAX_SCORE: how much one bank outweighs score in the candidate sort


class LexicallyConstrainedBeamSearch(Search):
    """Beam search whose finished hypotheses contain every constraint of their sentence."""

    def __init__(self, eos: int, vocab_size: int, representation: str) -> None:
        super().__init__()
        self.eos, self.vocab_size, self.representation = eos, vocab_size, representation
        self.states: list[list[ConstraintState]] = []  # per sentence: per hypothesis, or per candidate after step()
        self.max_len = math.inf

    def init_constraints(self, packed: Tensor | None, bsz: int, beam_size: int, *, max_len: int) -> None:
        """Starting states of the ``bsz`` sentences from fairseq's packed constraints (B, L) (None: none)."""
        self.max_len = max_len
        if packed is None:
            packed = torch.zeros(bsz, 1, dtype=torch.long)
        if packed.size(0) != bsz:
            raise ValueError(f"constraints for {packed.size(0)} sentences, but the batch has {bsz}")
        self.states = [[initial_states(row, self.representation)] * beam_size for row in packed.cpu()]

    def prune(self, batch_idxs: Tensor) -> None:
        """Keeps the sentences ``batch_idxs`` (B',) still in the batch."""
        self.states = [self.states[i] for i in batch_idxs.tolist()]

    def select(self, active: Tensor) -> None:
        """The new hypotheses continue candidates ``active`` (B, K) of the last step."""
        self.states = [[cands[i] for i in row] for cands, row in zip(self.states, active.tolist())]

    def step(
        self, step: int, lprobs: Tensor, scores: Tensor | None, *, original_batch_idxs: Tensor | None = None
    ) -> SearchStep:
        bsz, beam_size, vocab = lprobs.shape
        num_cands = min(2 * beam_size, beam_size * vocab - 1)
        stuck = self._stuck_sentences() if step >= self.max_len else set()
        if step > 0:
            self._block_unfinished_eos(lprobs, stuck)
            lprobs = lprobs + scores[:, :, step - 1].unsqueeze(-1)  # type: ignore[index]  # (B, K, V) cumulative
        else:
            lprobs = lprobs[:, :1, :]  # all beams are equal: use the first
        top_scores, top_ids = torch.topk(lprobs.reshape(bsz, -1), num_cands)  # (B, 2K)
        cand_scores, cand_tokens = [top_scores], [top_ids.fmod(vocab)]
        cand_beams = [torch.div(top_ids, vocab, rounding_mode="trunc")]
        if step > 0:  # and the best continuation of every hypothesis
            best_scores, best_tokens = torch.topk(lprobs, k=1, dim=2)  # (B, K, 1)
            cand_scores.append(best_scores.view(bsz, -1))
            cand_tokens.append(best_tokens.view(bsz, -1))
            cand_beams.append(torch.arange(beam_size, device=lprobs.device).repeat(bsz, 1))
        all_scores, all_tokens, all_beams = (torch.cat(c, dim=1) for c in (cand_scores, cand_tokens, cand_beams))
        out = SearchStep(lprobs.new_zeros(bsz, num_cands), all_tokens.new_zeros(bsz, num_cands),
                         all_beams.new_zeros(bsz, num_cands))  # fmt: skip
        for b in range(bsz):
            if b in stuck:  # only eos is left and no hypothesis may end: plain beam search
                out.scores[b], out.tokens[b], out.beams[b] = top_scores[b], cand_tokens[0][b], cand_beams[0][b]
                continue
            picked = self._step_sentence(b, lprobs[b], all_scores[b], all_tokens[b], all_beams[b], num_cands)
            out.scores[b], out.tokens[b], out.beams[b] = picked
        return out

    def _stuck_sentences(self) -> set[int]:
        """Rows whose hypotheses all miss a constraint at the length limit (fairseq fails there)."""
        stuck = {b for b, states in enumerate(self.states) if not any(s.finished for s in states)}
        if stuck:
            logger.warning("%d sentence(s) reached the length limit with no hypothesis meeting all constraints; "
                           "their hypotheses miss some (raise --max-len-a/--max-len-b)", len(stuck))  # fmt: skip
        return stuck

    def _block_unfinished_eos(self, lprobs: Tensor, stuck: set[int]) -> None:
        """In place on ``lprobs`` (B, K, V): hypotheses with unmet constraints cannot end (but in ``stuck``)."""
        flat = [b * lprobs.size(1) + k for b, states in enumerate(self.states) for k, s in enumerate(states)
                if not s.finished and b not in stuck]  # fmt: skip
        if flat:
            lprobs.view(-1, lprobs.size(2))[torch.tensor(flat, device=lprobs.device), self.eos] = -math.inf

    def _step_sentence(self, b: int, lprobs: Tensor, scores: Tensor, tokens: Tensor, beams: Tensor,
                       num_cands: int) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
        """Sentence ``b``'s candidates: adds the constraint tokens, then sorts, de-duplicates and stripes.

        ``lprobs`` (K or 1, V) are cumulative; ``scores``/``tokens``/``beams`` (C,) the candidates so far.
        """
        hyp_states = self.states[b]
        extra_tokens, extra_beams = [], []
        for beam in range(lprobs.size(0)):  # at step 0 only the first hypothesis
            nexts = list(hyp_states[beam].next_tokens())
            extra_tokens += nexts
            extra_beams += [beam] * len(nexts)
        if extra_tokens:
            new_tokens = torch.tensor(extra_tokens, device=tokens.device)
            new_beams = torch.tensor(extra_beams, device=tokens.device)
            tokens, beams = torch.cat([tokens, new_tokens]), torch.cat([beams, new_beams])
            scores = torch.cat([scores, lprobs[new_beams, new_tokens]])
        states = [hyp_states[k].advance(t) for k, t in zip(beams.tolist(), tokens.tolist())]
        banks = torch.tensor([s.bank for s in states], device=tokens.device)
        key = (hyp_states[0].num_distinct_tokens - banks) * BANK_WEIGHT + scores
        order = torch.sort(key, descending=True, stable=True).indices.tolist()
        order = self._without_repeats(order, beams.tolist(), tokens.tolist())
        stripes = stripe(banks[order].tolist(), hyp_states[0].num_distinct_tokens)
        dead = torch.isinf(scores[order]).tolist()  # impossible continuations (e.g. against a forced prefix)
        chosen = [order[i] for i in sorted(range(len(order)), key=lambda i: (dead[i], stripes[i]))][:num_cands]
        self.states[b] = [states[i] for i in chosen]
        index = torch.tensor(chosen, device=tokens.device)
        return scores[index], tokens[index], beams[index]

    @staticmethod
    def _without_repeats(order: list[int], beams: list[int], tokens: list[int]) -> list[int]:
        """Drops a candidate equal (same hypothesis and token) to the one before it in ``order``."""
        kept = order[:1]
        for prev, cur in zip(order, order[1:]):
            if (beams[cur], tokens[cur]) != (beams[prev], tokens[prev]):
                kept.append(cur)
        return kept


def stripe(banks: list[int], num_distinct: int) -> list[int]:
    """Round-robin ranks over runs of equal banks: the best of each run first (most advanced run first),
    then the second best of each, and so on (fairseq's stripe codes)."""
    width = len(banks) + 1
    codes, count = [], -1
    for i, bank in enumerate(banks):
        count = count + 1 if i > 0 and bank == banks[i - 1] else 0
        codes.append(num_distinct - bank + count * width)
    return codes
