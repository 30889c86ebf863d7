"""Cutting a stream of sentences into language-model blocks (fairseq's ``TokenBlockDataset``).

The sentences of a dataset are read as one token stream (each ends in eos) and cut into blocks by
``--sample-break-mode``:

* ``none``: equal blocks of ``block_size`` tokens, crossing sentence boundaries (the last may be shorter);
* ``complete``: whole sentences packed up to ``block_size`` (a longer sentence is a block of its own);
* ``complete_doc``: as ``complete``, but never across a document boundary (an empty line, i.e. a
  sentence of ``document_sep_len`` tokens, which is dropped; blocks of one token are dropped too);
* ``eos``: one sentence per block.

With ``include_targets`` an item is ``(source, target, past_target)``: ``target`` is the block,
``source`` the same stream shifted right by one (eos before the very first token), as fairseq builds them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from seqloom.data.language_pair_dataset import TokenDataset

BreakMode = Literal["none", "complete", "complete_doc", "eos"]


def slice_indices(sizes: np.ndarray, break_mode: str, block_size: int | None, document_sep_len: int = 1) -> np.ndarray:
    """``(N, 2)`` int64 [start, end) offsets of each block in the flat token stream."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if break_mode == "none":
        if not block_size or block_size <= 0:
            raise ValueError("--sample-break-mode none needs --tokens-per-sample > 0")
        total = int(sizes.sum())
        starts = np.arange(0, total, block_size, dtype=np.int64)
        return np.stack([starts, np.minimum(starts + block_size, total)], axis=1).reshape(-1, 2)
    if break_mode == "eos":
        ends = np.cumsum(sizes)
        return np.stack([ends - sizes, ends], axis=1).reshape(-1, 2)
    if break_mode in ("complete", "complete_doc"):
        if block_size is None:
            raise ValueError(f"--sample-break-mode {break_mode} needs --tokens-per-sample")
        return np.asarray(_pack(sizes.tolist(), break_mode == "complete_doc", block_size, document_sep_len),
                          dtype=np.int64).reshape(-1, 2)  # fmt: skip
    raise ValueError(f"invalid --sample-break-mode {break_mode!r}: choose none, complete, complete_doc or eos")


def _pack(sizes: list[int], by_doc: bool, block_size: int, sep_len: int) -> list[tuple[int, int]]:
    """Greedy packing of whole sentences into blocks (``complete`` / ``complete_doc``)."""
    blocks: list[tuple[int, int]] = []
    start = 0  # stream offset of the running block
    size = 0  # tokens in the running block
    i = 0
    while i < len(sizes):
        fits = size + sizes[i] <= block_size or size == 0
        if fits and not (by_doc and sizes[i] == sep_len):
            size += sizes[i]
            i += 1
            continue
        if size > (1 if by_doc else 0):  # complete_doc keeps only blocks of more than one token
            blocks.append((start, start + size))
        start, size = start + size, 0
        if by_doc and sizes[i] == sep_len:  # skip the document separator itself
            start += sizes[i]
            i += 1
    if size > (1 if by_doc else 0):
        blocks.append((start, start + size))
    return blocks


def block_to_dataset_index(sizes: np.ndarray, slices: np.ndarray) -> np.ndarray:
    """``(N, 3)``: first sentence of each block, the block's offset in it, and its last sentence."""
    ends = np.cumsum(np.asarray(sizes, dtype=np.int64))  # exclusive end of each sentence in the stream
    starts, stops = slices[:, 0], slices[:, 1]
    first = np.searchsorted(ends, starts, side="right")
    offset = starts - (ends[first] - np.asarray(sizes, dtype=np.int64)[first]) if len(first) else starts
    last = np.where(stops > starts, np.searchsorted(ends, np.maximum(stops - 1, 0), side="right"), first)
    return np.stack([first, offset, last], axis=1).astype(np.int64).reshape(-1, 3)


class TokenBlockDataset:
    """Blocks of ``dataset``'s token stream; ``sizes`` are the block lengths."""

    def __init__(
        self,
        dataset: TokenDataset,
        sizes: np.ndarray,
        block_size: int | None,
        *,
        pad: int,
        eos: int,
        break_mode: str = "none",
        include_targets: bool = False,
        document_sep_len: int = 1,
    ) -> None:
        if len(dataset) == 0:
            raise ValueError("TokenBlockDataset: the dataset is empty")
        if len(dataset) != len(sizes):
            raise ValueError(f"TokenBlockDataset: {len(dataset)} sentences but {len(sizes)} sizes")
        self.dataset = dataset
        self.pad, self.eos = pad, eos
        self.include_targets = include_targets
        self.slices = slice_indices(np.asarray(sizes), break_mode, block_size, document_sep_len)
        self.sizes = (self.slices[:, 1] - self.slices[:, 0]).astype(np.int64)
        self.index = block_to_dataset_index(np.asarray(sizes), self.slices)

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, i: int) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        first, offset, last = self.index[i].tolist()
        stream = torch.cat([self.dataset[k].long() for k in range(first, last + 1)])  # sentences first..last
        span = slice(offset, offset + int(self.sizes[i]))
        if not self.include_targets:
            return stream[span]
        source, past = delayed_inputs(stream, span, pad=self.pad, eos=self.eos)
        return source, stream[span], past


def delayed_inputs(stream: Tensor, span: slice, *, pad: int, eos: int) -> tuple[Tensor, Tensor]:
    """The block ``stream[span]`` read one token late (the model's input) and two tokens late (fairseq's past
    target); eos stands before the stream's first token, and pad before that."""
    lead = stream.new_tensor([pad, eos])
    behind = torch.cat([lead, stream[: span.stop]])  # stream position p is position p + 2 here
    source = behind[span.start + 1 : span.stop + 1]
    # a block ending at the stream's first token: fairseq slices stream[0:-1], which wraps (two tokens too many)
    past = behind[span.start : span.stop] if span.stop > 1 else torch.cat([lead, stream[:-1]])
    return source, past
