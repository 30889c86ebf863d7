"""A CPU shortcut for beam search's top-k over (beam x vocabulary) rows, equal to ``torch.topk``.

Kept apart from the search strategies: :class:`~seqloom.generation.search.BeamSearch` asks it first and
runs ``torch.topk`` itself whenever it answers None (off the CPU, on several threads, on small inputs and
wherever ties could order the result differently), so the strategies read as plain top-k.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# chunked_topk: columns per chunk, and the fewest elements (B*K*V) for which it pays on one CPU thread
CHUNK = 64
CHUNKED_MIN_ELEMENTS = 1 << 17


def chunked_topk(lprobs: Tensor, offsets: Tensor | None, k: int) -> tuple[Tensor, Tensor] | None:
    """``torch.topk((lprobs + offsets[..., None]).view(B, -1), k)`` for ``lprobs`` (B, K, V) and ``offsets``
    (B, K) (None: 0), found without forming the sum, or None where this route does not apply.

    torch's CPU topk copies each row into (value, index) pairs before selecting: with 3-5 beams and a few
    thousand symbols it was the costliest op of a decoding step. Here each row of V is cut into chunks of
    ``CHUNK`` columns; the k best chunk maxima (offset added: rounding is monotonic, so
    ``max(x) + s == max(x + s)`` exactly) name the only chunks that can hold the k best elements, and one
    topk over those k chunks finds them. The result equals torch.topk's, indices and order, or this returns
    None (and the caller runs torch.topk) whenever ties could make the order differ: a chunk maximum equal
    to the k-th best one, or equal values among the k + 1 best elements found.

    It runs on one intra-op thread (``--threads 1``, ``--decode-threads``) with at least
    ``CHUNKED_MIN_ELEMENTS``: one thread, 24 sentences, 3 beams, 4,089 symbols, 383 us instead of 713 us for
    the sum and torch.topk; 32 sentences, 5 beams, 2,056 symbols, 636 us instead of 823 us. With more threads
    torch.topk shares its rows among them and is as fast or faster (543 us against 622 us, 2 threads).
    """
    bsz, beams, vocab = lprobs.shape
    full = vocab // CHUNK
    if (lprobs.device.type != "cpu" or full < 2 or bsz * beams * vocab < CHUNKED_MIN_ELEMENTS
            or torch.get_num_threads() != 1):  # fmt: skip
        return None
    rows = lprobs.reshape(bsz * beams, vocab)  # a view for the generator's (strided) buffers
    chunk_max = rows[:, : full * CHUNK].unflatten(1, (full, CHUNK)).amax(-1)  # (BK, n)
    if full * CHUNK < vocab:  # the last, shorter chunk
        chunk_max = torch.cat([chunk_max, rows[:, full * CHUNK :].amax(-1, keepdim=True)], 1)
    chunks = chunk_max.size(1)
    if k >= beams * chunks:
        return None
    if offsets is not None:
        chunk_max += offsets.reshape(bsz * beams, 1)
    chunk_max = chunk_max.view(bsz, beams * chunks)
    top, chosen = chunk_max.topk(k)  # (B, k)
    if bool((chunk_max >= top[:, -1:]).sum(1).ne(k).any()):  # a tie at the k-th chunk maximum
        return None
    chosen = chosen.sort(dim=1).values  # in index order, as the elements lie in the row
    beam = chosen // chunks  # (B, k)
    cols = (chosen % chunks).unsqueeze(-1) * CHUNK + torch.arange(CHUNK)  # (B, k, CHUNK)
    outside = cols >= vocab  # past the end of a shorter last chunk
    cols.clamp_(max=vocab - 1)
    # the elements, read through their storage offsets (the generator's lprobs are a strided view)
    s0, s1, s2 = lprobs.stride()
    span = (bsz - 1) * s0 + (beams - 1) * s1 + (vocab - 1) * s2 + 1
    storage = lprobs.as_strided((span,), (1,))
    where = (torch.arange(bsz).mul_(s0)[:, None] + beam * s1).unsqueeze(-1) + cols * s2  # (B, k, CHUNK)
    values = storage.take(where)  # (B, k, CHUNK)
    if offsets is not None:
        values += offsets.gather(1, beam).unsqueeze(-1)
    values.masked_fill_(outside, -math.inf)
    best, at = values.view(bsz, -1).topk(k + 1)  # (B, k + 1)
    if bool(best[:, 1:].eq(best[:, :-1]).any()):  # equal values: torch.topk's order among them is its own
        return None
    indices = (beam.unsqueeze(-1) * vocab + cols).view(bsz, -1).gather(1, at[:, :k])
    return best[:, :k], indices
