"""Token-budget batching with fairseq's semantics (``batch_by_size``) and size filtering.

Sentences arrive already ordered (usually by length); consecutive runs of them are grouped so that
``len(batch) * max_len(batch) <= max_tokens`` and ``len(batch) <= max_sentences``, and each batch closed
on overflow is as large as possible while being a multiple of ``required_batch_size_multiple``.
Samples left over past the last multiple stay as the start of the next batch, exactly as fairseq does.
"""

from __future__ import annotations

import numpy as np


def batch_by_size(
    indices: np.ndarray,
    num_tokens: np.ndarray,
    *,
    max_tokens: int | None = None,
    max_sentences: int | None = None,
    required_batch_size_multiple: int = 1,
) -> list[np.ndarray]:
    """Splits ``indices`` (in order) into batches; returns views of ``indices``.

    ``num_tokens[i]`` is the size of sample ``indices[i]`` (already gathered, same length as
    ``indices``). ``None`` or a value <= 0 disables a limit. Raises ``ValueError`` when one sample alone
    exceeds ``max_tokens`` (filter with :func:`filter_by_size` first).
    """
    indices = np.asarray(indices, dtype=np.int64)
    sizes = np.asarray(num_tokens, dtype=np.int64)
    if len(indices) != len(sizes):
        raise ValueError(f"batch_by_size: {len(indices)} indices but {len(sizes)} sizes")
    if len(indices) == 0:
        return []
    max_tokens = int(max_tokens or 0)
    max_sentences = int(max_sentences or 0)
    if max_tokens > 0 and int(sizes.max()) > max_tokens:
        pos = int(sizes.argmax())
        raise ValueError(
            f"sample {int(indices[pos])} has {int(sizes[pos])} tokens, more than --max-tokens {max_tokens}; "
            "raise --max-tokens or drop long samples (--skip-invalid-size-inputs-valid-test)"
        )
    ends = _batch_ends(sizes.tolist(), max_tokens, max_sentences, max(1, int(required_batch_size_multiple)))
    return np.split(indices, ends)


def _batch_ends(sizes: list[int], max_tokens: int, max_sentences: int, mult: int) -> list[int]:
    """The split points of fairseq's batching (one pass, plain Python ints for speed).

    A running batch has a committed part ``[start, end)`` (whose size is a valid multiple) and a tail
    ``[end, pos]``. The tail is committed whenever the batch size becomes a multiple of ``mult``; when
    adding ``pos`` breaks a limit, the committed part is emitted and the tail starts the next batch
    (split once more if the tail alone breaks ``max_tokens``).
    """
    ends: list[int] = []  # split points of emitted batches
    start = 0  # first sample of the running batch
    end = 0  # end of the running batch's committed part
    batch_max = 0  # longest sample in the committed part
    tail_max = 0  # longest sample in the tail
    for pos, size in enumerate(sizes):
        if size > tail_max:
            tail_max = size
        count = pos + 1 - start
        longest = batch_max if batch_max > tail_max else tail_max
        overflow = (max_sentences > 0 and count > max_sentences) or (max_tokens > 0 and count * longest > max_tokens)
        if overflow:
            if max_tokens > 0 and tail_max * (pos + 1 - end) > max_tokens:
                # the tail itself is too big: it becomes a batch of its own without ``pos``
                ends.append(end)
                end = pos
                tail_max = size
            ends.append(end)
            start = end
            longest = tail_max
        if overflow or count < mult or count % mult == 0:
            end = pos + 1
            batch_max = longest
            tail_max = 0
    if end != len(sizes):
        ends.append(end)
    return [e for e in ends if 0 < e < len(sizes)]


def filter_by_size(
    indices: np.ndarray,
    src_sizes: np.ndarray,
    tgt_sizes: np.ndarray | None,
    max_positions: tuple[int | None, int | None],
) -> tuple[np.ndarray, np.ndarray]:
    """Keeps samples whose source/target lengths fit ``max_positions``; returns (kept, dropped) ids."""
    indices = np.asarray(indices, dtype=np.int64)
    max_src, max_tgt = max_positions
    ok = np.ones(len(indices), dtype=bool)
    if max_src is not None:
        ok &= src_sizes[indices] <= max_src
    if tgt_sizes is not None and max_tgt is not None:
        ok &= tgt_sizes[indices] <= max_tgt
    return indices[ok], indices[~ok]


def resolve_max_positions(*limits: int | tuple[int | None, int | None] | None) -> tuple[int | None, int | None]:
    """The element-wise minimum of (source, target) limits; a plain int limits both, None none."""
    src: int | None = None
    tgt: int | None = None
    for limit in limits:
        if limit is None:
            continue
        s, t = (limit, limit) if isinstance(limit, int) else limit
        src = s if src is None else (src if s is None else min(src, s))
        tgt = t if tgt is None else (tgt if t is None else min(tgt, t))
    return src, tgt
