"""The state of beam search between steps: live hypotheses of the sentences still in the batch."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(kw_only=True)
class BeamState:
    """The live hypotheses of the sentences still in the batch (B sentences, K beams each)."""

    tokens: Tensor  # (B*K, max_len + 2) bos, generated tokens, then pad
    scores: Tensor  # (B*K, max_len + 1) cumulative log-probs
    attn: Tensor | None  # (B*K, S, max_len + 2) attention of each generated position
    ignore: Tensor  # (B, K) bool: candidate slots standing for already finalized hypotheses
    src_lengths: Tensor  # (B,) source lengths without pad and eos
    prefix: Tensor | None  # (B, P) forced target prefix
    sent_ids: list[int]  # original sentence index of each batch row

    def keep(self, batch_idxs: Tensor, beam_size: int) -> None:
        """Drops the sentences not in ``batch_idxs`` (B',)."""
        bsz = len(self.sent_ids)
        self.tokens = self.tokens.view(bsz, -1)[batch_idxs].view(batch_idxs.numel() * beam_size, -1)
        self.scores = self.scores.view(bsz, -1)[batch_idxs].view(batch_idxs.numel() * beam_size, -1)
        if self.attn is not None:
            width = self.attn.size(1)
            self.attn = self.attn.view(bsz, -1)[batch_idxs].view(batch_idxs.numel() * beam_size, width, -1)
        self.ignore, self.src_lengths = self.ignore[batch_idxs], self.src_lengths[batch_idxs]
        self.prefix = self.prefix[batch_idxs] if self.prefix is not None else None
        self.sent_ids = [self.sent_ids[i] for i in batch_idxs.tolist()]
