"""The decoding loop: beam search (or sampling) over a model ensemble with fairseq's exact semantics.

Per step: one token per live hypothesis goes through the decoder (KV cache), the log-probs are masked
(pad, unk penalty, length limits, prefix, repeated n-grams), the search proposes 2K candidates per sentence,
candidates ending in eos are finalized, and the best K others continue. A sentence is done once K of its
hypotheses are finalized (or at ``max_len``) and leaves the batch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from seqloom.config.options import check_bounds
from seqloom.generation.beam_state import BeamState
from seqloom.generation.config import GenerationConfig
from seqloom.generation.constraints import apply_prefix, mask_lprobs
from seqloom.generation.decoding_model import AnyDecodingModel, TargetDictionary
from seqloom.generation.dropout import apply_retain_dropout
from seqloom.generation.ensemble import EnsembleDecoder
from seqloom.generation.hypotheses import Hypothesis, finalize_hypotheses, sort_by_score
from seqloom.generation.memory import DecodingSize, cache_bytes_per_step, check_fits
from seqloom.generation.ngram import block_repeated_ngrams
from seqloom.generation.search import Search, SearchStep
from seqloom.generation.strategies import build_search


class SequenceGenerator:
    """Generates K hypotheses per source sentence with ``models`` (one or an ensemble)."""

    def __init__(self, models: Sequence[AnyDecodingModel], tgt_dict: TargetDictionary,
                 cfg: GenerationConfig | None = None, *, search: Search | None = None,
                 lm_model: AnyDecodingModel | None = None, eos: int | None = None) -> None:  # fmt: skip
        """``lm_model``: a language model over ``tgt_dict`` whose log-probs, times ``cfg.lm_weight``, are added
        to the models' at every step (shallow fusion, fairseq's ``--lm-path``/``--lm-weight``). ``eos``: the
        symbol that starts and ends hypotheses (default ``tgt_dict.eos()``; mBART: the target language)."""
        self.cfg = cfg = cfg or GenerationConfig()
        check_bounds(cfg)  # a nan --lenpen, a --temperature of 0, a --beam below 1: named, not decoded
        self.models = list(models)
        self.decoder = EnsembleDecoder(self.models)
        self.lm = EnsembleDecoder([lm_model]) if lm_model is not None else None
        self.pad, self.unk = tgt_dict.pad(), tgt_dict.unk()
        self.eos = tgt_dict.eos() if eos is None else eos
        self.vocab_size = len(tgt_dict)
        self.beam_size = min(cfg.beam, self.vocab_size - 1)  # pad is never selected
        self.search = search or build_search(
            eos=self.eos, sampling=cfg.sampling, sampling_topk=cfg.sampling_topk, sampling_topp=cfg.sampling_topp,
            diverse_beam_groups=cfg.diverse_beam_groups, diverse_beam_strength=cfg.diverse_beam_strength,
            diversity_rate=cfg.diversity_rate,
            match_source_len=cfg.match_source_len, constraints=cfg.constraints, vocab_size=self.vocab_size,
        )  # fmt: skip
        self.need_attn = cfg.print_alignment is not None or cfg.replace_unk is not None
        self._aranges: dict[tuple[int, torch.device], Tensor] = {}
        self._made_with = (tgt_dict, search, lm_model)
        self._cache_bytes: int | None = None  # KV-cache bytes per row and step (for the memory check)

    def replica(self) -> SequenceGenerator:
        """A generator of the same models and options with state of its own (a generator keeps per-batch
        state while it runs, so concurrent batches each need one)."""
        tgt_dict, search, lm_model = self._made_with
        return SequenceGenerator(self.models, tgt_dict, self.cfg, search=copy.deepcopy(search), lm_model=lm_model,
                                 eos=self.eos)  # fmt: skip

    def _arange(self, n: int, device: torch.device) -> Tensor:
        """``arange(n)`` on ``device``, made once per size (the loop asks for a few sizes at every step)."""
        key = (n, device)
        found = self._aranges.get(key)
        if found is None:
            found = self._aranges[key] = torch.arange(n, device=device)
        return found

    def max_len(self, src_len: int, src_lengths: Tensor) -> int:
        """The longest output (without eos): ``min(a * S + b, max_positions - 1)``, S the padded source width."""
        if self.cfg.match_source_len:
            return int(src_lengths.max())
        positions = min(d.max_decoder_positions() for d in (self.decoder, self.lm) if d is not None)
        return min(int(self.cfg.max_len_a * src_len + self.cfg.max_len_b), positions - 1)

    def generate(self, src_tokens: Tensor, *, prefix_tokens: Tensor | None = None, bos_token: int | None = None,
                 src_lengths: Tensor | None = None, constraints: Tensor | None = None
                 ) -> list[list[Hypothesis]]:  # fmt: skip
        """Hypotheses of each sentence of ``src_tokens`` (B, S) (padded like the training data), best first.

        ``src_lengths`` (B,) are the lengths ``--match-source-len`` follows; by default each row's tokens other
        than pad and eos (fairseq's fallback when a batch has no ``net_input["src_lengths"]``). ``constraints``
        (B, L) are each sentence's lexical constraints in fairseq's packed form
        (:func:`seqloom.generation.constraint_states.pack_constraints`), for a generator built with
        ``--constraints``.

        Decoding runs under ``torch.inference_mode`` (about 10% faster than ``no_grad`` here); the returned
        tensors are ordinary ones, usable anywhere afterwards.
        """
        with torch.inference_mode():
            found = self._generate(src_tokens, prefix_tokens, bos_token, src_lengths, constraints)
        for hyps in found:
            for h in hyps:
                h.tokens, h.positional_scores = h.tokens.clone(), h.positional_scores.clone()
                h.attention = h.attention.clone() if h.attention is not None else None
        return found

    def _generate(self, src_tokens: Tensor, prefix_tokens: Tensor | None, bos_token: int | None,
                  src_lengths: Tensor | None, constraints: Tensor | None) -> list[list[Hypothesis]]:  # fmt: skip
        for model in self.models:
            apply_retain_dropout(model, self.cfg.retain_dropout, self.cfg.retain_dropout_modules)
        bsz, src_len = src_tokens.shape
        k = self.beam_size
        if src_lengths is None:
            src_lengths = (src_tokens.ne(self.eos) & src_tokens.ne(self.pad)).long().sum(dim=1)  # (B,)
        max_len = self.max_len(src_len, src_lengths)
        if self.cfg.min_len > max_len:
            raise ValueError(f"--min-len {self.cfg.min_len} is larger than the maximum length {max_len}")
        self._check_memory(bsz, k, src_len, max_len, src_tokens.device)
        self.search.init_constraints(constraints, bsz, k, max_len=max_len)
        self.decoder.start(src_tokens, beam_size=k, max_steps=max_len + 1, need_attn=self.need_attn)
        if self.lm is not None:
            self.lm.start(src_tokens, beam_size=k, max_steps=max_len + 1, need_attn=False)
        tokens = src_tokens.new_full((bsz * k, max_len + 2), self.pad, dtype=torch.long)
        tokens[:, 0] = self.eos if bos_token is None else bos_token
        state = BeamState(
            tokens=tokens,
            scores=torch.zeros(bsz * k, max_len + 1, device=src_tokens.device),
            attn=None,
            ignore=torch.zeros(bsz, k, dtype=torch.bool, device=src_tokens.device),
            src_lengths=src_lengths,
            prefix=prefix_tokens,
            sent_ids=list(range(bsz)),
        )
        finalized: list[list[Hypothesis]] = [[] for _ in range(bsz)]
        for step in range(max_len + 1):  # one step more than max_len for the final eos
            cand = self._propose(step, max_len, state)
            done, eos_mask = self._finalize(step, max_len, cand, state, finalized)
            if len(done) == len(state.sent_ids) or (self.search.stop_on_max_len and step >= max_len):
                break
            assert step < max_len, f"{step} < {max_len}"
            rows, kept = self._advance(step, cand, eos_mask, done, state)
            self.decoder.reorder(rows, kept)
            if self.lm is not None:
                self.lm.reorder(rows, kept)
        return [sort_by_score(hyps) for hyps in finalized]

    def _check_memory(self, bsz: int, k: int, src_len: int, max_len: int, device: torch.device) -> None:
        """Refuses a batch whose beam search would not fit in memory (the estimate in the message)."""
        models = self.models + ([self.lm.models[0]] if self.lm is not None else [])
        if self._cache_bytes is None:
            self._cache_bytes = cache_bytes_per_step(models, 8)
        size = DecodingSize(sentences=bsz, beam=k, vocab=self.vocab_size, max_len=max_len, src_len=src_len,
                            cache_bytes_per_step=self._cache_bytes, shared_source=all(self.decoder.shared))  # fmt: skip
        check_fits(size, device, requested_beam=self.cfg.beam)

    def _propose(self, step: int, max_len: int, state: BeamState) -> SearchStep:
        """Decodes the newest tokens and lets the search propose candidates (B, C)."""
        lprobs, attn = self.decoder.step(state.tokens[:, step : step + 1], self.cfg.temperature)  # (N, V), (N, S)
        if self.lm is not None:
            lm_lprobs, _ = self.lm.step(state.tokens[:, step : step + 1])  # (N, V), no temperature (as fairseq)
            lprobs += lm_lprobs * self.cfg.lm_weight
        mask_lprobs(lprobs, step=step, max_len=max_len, pad=self.pad, unk=self.unk, eos=self.eos,
                    unk_penalty=self.cfg.unkpen)  # fmt: skip
        if state.prefix is not None and step < state.prefix.size(1) and step < max_len:
            lprobs = apply_prefix(step, lprobs, state, self.beam_size, pad=self.pad, eos=self.eos)
        elif step < self.cfg.min_len:
            lprobs[:, self.eos] = -math.inf
        if attn is not None:
            if state.attn is None:
                state.attn = attn.new_empty(state.tokens.size(0), attn.size(1), max_len + 2)
            state.attn[:, :, step + 1].copy_(attn)
        if self.search.needs_src_lengths:
            self.search.set_src_lengths(state.src_lengths)
        block_repeated_ngrams(
            state.tokens, lprobs, step, self.cfg.no_repeat_ngram_size, mode=self.cfg.no_repeat_ngram_mode
        )
        bsz = len(state.sent_ids)
        return self.search.step(step, lprobs.view(bsz, -1, self.vocab_size),
                                state.scores.view(bsz, self.beam_size, -1)[:, :, :step],
                                original_batch_idxs=torch.tensor(state.sent_ids) if self.search.needs_batch_rows
                                else None)  # fmt: skip

    def _finalize(self, step: int, max_len: int, cand: SearchStep, state: BeamState,
                  finalized: list[list[Hypothesis]]) -> tuple[list[int], Tensor]:  # fmt: skip
        """Moves candidates ending in eos (among the top K) to ``finalized``.

        Returns the batch rows now done and the eos mask (B, C) of the candidates.
        """
        k = self.beam_size
        offsets = self._arange(len(state.sent_ids), cand.beams.device).unsqueeze(1) * k  # (B, 1)
        cand.beams = cand.beams + offsets  # now rows of the (B*K) buffers
        eos_mask = cand.tokens.eq(self.eos) & cand.scores.ne(-math.inf)  # (B, C)
        eos_mask[:, :k] &= ~state.ignore
        rows = torch.masked_select(cand.beams[:, :k], mask=eos_mask[:, :k])
        if rows.numel() == 0:
            return [], eos_mask
        eos_scores = torch.masked_select(cand.scores[:, :k], mask=eos_mask[:, :k])
        hyps = finalize_hypotheses(step, rows, eos_scores, tokens=state.tokens, scores=state.scores, attn=state.attn,
                                   eos=self.eos, lenpen=self.cfg.lenpen, normalize=not self.cfg.unnormalized)  # fmt: skip
        batch_rows = torch.div(rows, k, rounding_mode="trunc").tolist()
        for row, hyp in zip(batch_rows, hyps):
            if self.cfg.match_source_len and step > int(state.src_lengths[row]):
                hyp.score = -math.inf
            if len(finalized[state.sent_ids[row]]) < k:
                finalized[state.sent_ids[row]].append(hyp)
        done = [r for r in sorted(set(batch_rows)) if len(finalized[state.sent_ids[r]]) == k or step == max_len]
        return done, eos_mask

    def _advance(self, step: int, cand: SearchStep, eos_mask: Tensor, done: list[int], state: BeamState
                 ) -> tuple[Tensor, Tensor | None]:  # fmt: skip
        """Drops done sentences and keeps the K best non-eos candidates of the others.

        Returns the rows (B'*K,) of the previous step's caches that the new hypotheses continue, and, if
        sentences left the batch, one previous row (B'*K,) of each new row's sentence (for encoder outputs).
        """
        k = self.beam_size
        corr: Tensor | None = None
        if done:
            keep = torch.ones(len(state.sent_ids), dtype=torch.bool, device=eos_mask.device)
            keep[done] = False
            batch_idxs = keep.nonzero().squeeze(1)  # (B',)
            corr = (batch_idxs - torch.arange(batch_idxs.numel(), device=batch_idxs.device)) * k  # (B',)
            eos_mask = eos_mask[batch_idxs]
            beams = cand.beams[batch_idxs] - corr.unsqueeze(1)  # rows of the shrunk buffers
            cand = SearchStep(cand.scores[batch_idxs], cand.tokens[batch_idxs], beams)
            state.keep(batch_idxs, k)
            self.search.prune(batch_idxs)
        cand_size = 2 * k
        eos_mask[:, :k] |= state.ignore  # finalized or ignored slots sort after the live ones
        order = eos_mask.long() * cand_size + self._arange(eos_mask.size(1), eos_mask.device)  # (B, C)
        new_ignore, active = torch.topk(order, k=k, dim=1, largest=False)  # (B, K)
        state.ignore = new_ignore.ge(cand_size)[:, :k]
        self.search.select(active)
        rows = torch.gather(cand.beams, dim=1, index=active).view(-1)  # (B*K,)
        bsz = len(state.sent_ids)
        # whole rows in one gather each: past the current step every row still holds the same fill (pad, 0)
        state.tokens = state.tokens.index_select(0, rows)
        state.tokens.view(bsz, k, -1)[:, :, step + 1] = torch.gather(cand.tokens, dim=1, index=active)
        state.scores = state.scores.index_select(0, rows)
        state.scores.view(bsz, k, -1)[:, :, step] = torch.gather(cand.scores, dim=1, index=active)
        if state.attn is not None:
            state.attn[:, :, : step + 2] = state.attn[:, :, : step + 2].index_select(0, rows)
        if corr is None:
            return rows, None
        cache_rows = (rows.view(-1, k) + corr.unsqueeze(1)).view(-1)  # the caches still hold the B sentences
        kept = (batch_idxs * k).repeat_interleave(k)  # (B'*K,)
        return cache_rows, kept
