"""Step-wise decoding with one model or an ensemble, each model with its own encoder output and KV cache."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from seqloom.generation.decoding_model import AnyDecodingModel, EncodedSource, StepCache


class EnsembleDecoder:
    """Feeds one token per hypothesis per step to every model and combines their next-token log-probs.

    An ensemble's distribution is the average of the models' probabilities (fairseq's
    ``logsumexp(log_probs) - log(n)``), and its attention the average of their attentions.
    """

    def __init__(self, models: Sequence[AnyDecodingModel]) -> None:
        if not models:
            raise ValueError("EnsembleDecoder needs at least one model")
        self.models = list(models)
        self.encoder_outs: list[EncodedSource] = []
        self.caches: list[StepCache] = []
        self.need_attn = False
        self.beam_size = 1
        # models whose decoders let the K beams of a sentence share one encoder-output row (and one
        # cross-attention cache row): their encoder outputs are never repeated K times
        self.shared = [bool(getattr(m, "shares_source_across_beams", False)) for m in self.models]

    def max_decoder_positions(self) -> int:
        return min(int(m.max_positions()[1]) for m in self.models)

    def start(self, src_tokens: Tensor, *, beam_size: int, max_steps: int, need_attn: bool) -> None:
        """Encodes ``src_tokens`` (B, S), repeats each sentence ``beam_size`` times and allocates the caches."""
        bsz = src_tokens.size(0)
        order = torch.arange(bsz, device=src_tokens.device).repeat_interleave(beam_size)  # (B*K,)
        self.need_attn = need_attn
        self.beam_size = beam_size
        encoded = [m.encode(src_tokens) for m in self.models]
        self.encoder_outs = [enc if shared else enc.reorder(order) for enc, shared in zip(encoded, self.shared)]
        self.caches = [m.new_cache(bsz * beam_size, max_steps) for m in self.models]

    def step(self, prev_tokens: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor | None]:
        """Log-probs (N, V) (float32, natural log) of the token after ``prev_tokens`` (N, 1), and attention (N, S)."""
        lprobs: list[Tensor] = []
        attn_sum: Tensor | None = None
        for model, enc, cache in zip(self.models, self.encoder_outs, self.caches):
            out = model.decode(prev_tokens, enc, cache=cache, need_attn=self.need_attn)
            # a -inf-padded buffer (odd vocabularies) normalises over whole rows; its (N, V) columns are kept
            padded = getattr(out, "padded", None)  # (a model's own output type may lack it)
            logits = (padded.padded if padded is not None else out.logits)[:, -1:, :]  # (N, 1, V or V8)
            if temperature != 1.0:
                logits = logits / temperature
            lprobs.append(model.get_normalized_probs(logits, log_probs=True)[:, -1, : out.logits.size(-1)])
            if out.attn is not None:
                attn = out.attn[:, -1, :]  # (N, S)
                attn_sum = attn if attn_sum is None else attn_sum + attn
        if len(lprobs) == 1:
            return lprobs[0], attn_sum
        n = len(lprobs)
        avg = torch.logsumexp(torch.stack(lprobs, dim=0), dim=0) - math.log(n)
        return avg, attn_sum / n if attn_sum is not None else None

    def reorder(self, order: Tensor, sentence_rows: Tensor | None = None) -> None:
        """Continues hypothesis ``order[i]`` in row ``i`` of every KV cache (N',).

        Beams of one sentence share their encoder output, so the encoder outputs only change when
        sentences leave the batch: ``sentence_rows`` (N',) then names a previous row of each new row's sentence.
        """
        sentences = None
        if sentence_rows is not None:
            sentences = sentence_rows.view(-1, self.beam_size)[:, 0] // self.beam_size  # (B',) kept sentences
            self.encoder_outs = [
                enc.reorder(sentences if shared else sentence_rows)
                for enc, shared in zip(self.encoder_outs, self.shared)
            ]
        for cache, shared in zip(self.caches, self.shared):
            if shared:  # cross-attention caches hold one row per sentence
                cache.reorder(order, keep_static=True, static_order=sentences)
            else:  # cross-attention: identical within a sentence, so only dropped sentences need a copy
                cache.reorder(order, keep_static=sentence_rows is None)
