"""A model whose next-token log-probs are a fixed function of (source sentence, history): for search tests.

It implements the decoding interface of seqloom's models (encode / decode with a cache / new_cache /
get_normalized_probs / max_positions), so the generator runs unchanged on it, and ``lprobs(sent, history)``
gives the very same numbers to brute-force reference searches.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BOS, PAD, EOS, UNK = 0, 1, 2, 3


class ToyDict:
    def __init__(self, size: int) -> None:
        self.size = size

    def pad(self) -> int:
        return PAD

    def eos(self) -> int:
        return EOS

    def unk(self) -> int:
        return UNK

    def bos(self) -> int:
        return BOS

    def __len__(self) -> int:
        return self.size


@dataclass
class Enc:
    sent: Tensor  # (B,) sentence id
    src: Tensor  # (B, S)

    def reorder(self, order: Tensor) -> Enc:
        return Enc(self.sent.index_select(0, order), self.src.index_select(0, order))


@dataclass
class Out:
    logits: Tensor  # (B, T, V)
    attn: Tensor | None  # (B, T, S)


class HistoryCache:
    def __init__(self, n: int) -> None:
        self.history: list[list[int]] = [[] for _ in range(n)]

    def reorder(self, order: Tensor, *, keep_static: bool = False) -> None:
        self.history = [list(self.history[i]) for i in order.tolist()]


class ScriptedModel(nn.Module):
    """``vocab`` symbols; only ``allowed`` tokens (and eos) get finite logits."""

    def __init__(self, vocab: int, allowed: list[int], seed: int = 0, scale: float = 2.0) -> None:
        super().__init__()
        self.vocab, self.allowed, self.seed, self.scale = vocab, allowed, seed, scale

    def logits(self, sent: int, history: list[int]) -> Tensor:
        key = zlib.crc32(repr((self.seed, sent, history)).encode())
        g = torch.Generator().manual_seed(key)
        out = torch.full((self.vocab,), float("-inf"))
        ids = torch.tensor([EOS, *self.allowed])
        out[ids] = torch.randn(len(ids), generator=g) * self.scale
        return out

    def lprobs(self, sent: int, history: list[int]) -> Tensor:
        return F.log_softmax(self.logits(sent, history), dim=-1)

    def encode(self, src_tokens: Tensor) -> Enc:
        return Enc(src_tokens[:, 0].clone(), src_tokens)

    def new_cache(self, batch_size: int, max_len: int) -> HistoryCache:
        return HistoryCache(batch_size)

    def decode(self, prev: Tensor, enc: Enc, *, cache: HistoryCache, need_attn: bool = False) -> Out:
        rows = []
        for i, tok in enumerate(prev[:, -1].tolist()):
            cache.history[i].append(tok)
            rows.append(self.logits(int(enc.sent[i]), cache.history[i][1:]))
        attn = None
        if need_attn:
            valid = enc.src.ne(PAD).float()
            length = len(cache.history[0])
            raw = torch.sin(torch.arange(enc.src.size(1)) * (length + 1.0) + enc.sent.unsqueeze(1)) * valid
            attn = torch.where(valid.bool(), raw, torch.tensor(float("-inf"))).softmax(-1).unsqueeze(1)
        return Out(torch.stack(rows).unsqueeze(1), attn)

    def get_normalized_probs(self, logits: Tensor, log_probs: bool = True) -> Tensor:
        return F.log_softmax(logits.float(), dim=-1) if log_probs else F.softmax(logits.float(), dim=-1)

    def max_positions(self) -> tuple[int, int]:
        return 1024, 1024


def sources(sent_ids: list[int], length: int = 4) -> Tensor:
    """(B, S) source rows whose first token is the sentence id (left as the model's key)."""
    rows = [[s] + [4] * (length - 2) + [EOS] for s in sent_ids]
    return torch.tensor(rows)
