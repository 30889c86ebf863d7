"""``--score-reference``: the models' log-probs of the reference targets, as hypotheses.

One teacher-forced pass per model; an ensemble averages probabilities. The sentence score is the mean
positional score (no length penalty), as fairseq's ``SequenceScorer`` computes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from seqloom.generation.alignment import hard_alignment
from seqloom.generation.decoding_model import TargetDictionary
from seqloom.generation.hypotheses import Hypothesis


class SequenceScorer:
    """Scores given target sequences with one model or an ensemble."""

    def __init__(self, models: Sequence[nn.Module], tgt_dict: TargetDictionary, *, compute_alignment: bool = False,
                 eos: int | None = None) -> None:  # fmt: skip
        self.models = list(models)
        self.pad, self.eos = tgt_dict.pad(), tgt_dict.eos() if eos is None else eos
        self.compute_alignment = compute_alignment

    def _model_probs(self, model: Any, src_tokens: Tensor, prev_output_tokens: Tensor, target: Tensor,
                     log_probs: bool) -> tuple[Tensor, Tensor | None]:  # fmt: skip
        """Target-token (log-)probs (B, T) and cross-attention (B, T, S) of one model."""
        out = model.decode(prev_output_tokens, model.encode(src_tokens), need_attn=self.compute_alignment)
        probs = model.get_normalized_probs(out.logits, log_probs=log_probs)  # (B, T, V)
        return probs.gather(dim=2, index=target.unsqueeze(-1)).squeeze(-1), out.attn

    @torch.no_grad()
    def score(self, src_tokens: Tensor, prev_output_tokens: Tensor, target: Tensor) -> list[list[Hypothesis]]:
        """One hypothesis per sentence: the reference ``target`` (B, T) (right-padded), with its scores."""
        single = len(self.models) == 1
        avg: Tensor | None = None
        attn: Tensor | None = None
        for model in self.models:
            model.eval()
            probs, model_attn = self._model_probs(model, src_tokens, prev_output_tokens, target, single)
            avg = probs if avg is None else avg + probs
            if model_attn is not None:
                attn = model_attn if attn is None else attn + model_attn
        assert avg is not None
        if not single:
            avg = (avg / len(self.models)).log()
            attn = attn / len(self.models) if attn is not None else None
        hyps = []
        for i in range(target.size(0)):
            ref = target[i][target[i].ne(self.pad)]
            positional = avg[i, : ref.numel()]
            hyp = Hypothesis(ref, float(positional.sum() / ref.numel()), positional)
            if attn is not None:
                hyp.attention = attn[i].transpose(0, 1)  # (S, T)
                if self.compute_alignment:
                    hyp.alignment = hard_alignment(attn[i], src_tokens[i], target[i], pad=self.pad, eos=self.eos)
            hyps.append([hyp])
        return hyps
