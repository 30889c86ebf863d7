"""Source/target sentence pairs and their collation into fairseq's sample dict.

A sample dict (what criterions and generators read), all tensors batch-first:

* ``id`` (B,) int64 sample ids, ``nsentences`` B, ``ntokens`` non-pad target tokens;
* ``net_input.src_tokens`` (B, S) left-padded by default, ``net_input.src_lengths`` (B,);
* ``net_input.prev_output_tokens`` (B, T): the target shifted right with eos moved to the front;
* ``target`` (B, T) right-padded by default.

Rows are sorted by decreasing source length, as fairseq sorts them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from seqloom.data.dictionary import Dictionary

logger = logging.getLogger(__name__)


class TokenDataset(Protocol):
    """What a dataset of token sequences offers (``MMapIndexedDataset`` and friends)."""

    @property
    def sizes(self) -> np.ndarray: ...

    def __getitem__(self, index: int) -> Tensor: ...

    def __len__(self) -> int: ...


class ConcatTokens:
    """Several token datasets read as one; ``ratios[k]`` repeats dataset ``k`` (fairseq's upsampling)."""

    def __init__(self, datasets: Sequence[TokenDataset], ratios: Sequence[int] | None = None) -> None:
        ratios = list(ratios or [1] * len(datasets))
        self.datasets = list(datasets)
        lengths = [len(d) * r for d, r in zip(self.datasets, ratios)]
        self.offsets = np.cumsum([0] + lengths)
        self.sizes = np.concatenate([np.tile(np.asarray(d.sizes), r) for d, r in zip(self.datasets, ratios)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> Tensor:
        k = int(np.searchsorted(self.offsets, index, side="right") - 1)
        dataset = self.datasets[k]
        return dataset[(index - int(self.offsets[k])) % len(dataset)]


class InMemoryTokens:
    """Token sequences held in memory (encoded input lines), with the ``sizes`` a dataset offers."""

    def __init__(self, tokens: Sequence[Tensor]) -> None:
        self.tokens = list(tokens)
        self.sizes = np.array([len(t) for t in self.tokens], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> Tensor:
        return self.tokens[index]


class AffixTokens:
    """A token dataset with ``prepend`` before and ``append`` after every item (None: nothing), as fairseq's
    ``PrependTokenDataset``/``AppendTokenDataset``; sizes grow to match."""

    def __init__(self, dataset: TokenDataset, *, prepend: int | None = None, append: int | None = None) -> None:
        self.dataset, self.prepend, self.append = dataset, prepend, append
        self.sizes = np.asarray(dataset.sizes) + (prepend is not None) + (append is not None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tensor:
        item = self.dataset[index]
        parts = [item.new_tensor([t]) for t in (self.prepend,) if t is not None]
        parts += [item, *(item.new_tensor([t]) for t in (self.append,) if t is not None)]
        return torch.cat(parts) if len(parts) > 1 else item


def length_buckets(sizes: np.ndarray, num_buckets: int) -> np.ndarray:
    """fairseq's ``--num-batch-buckets`` boundaries: the distinct ``num_buckets`` quantiles (rounded down to
    a size that occurs) of ``sizes``; the last is the longest size."""
    return np.unique(np.percentile(sizes, np.linspace(0, 100, num_buckets + 1), method="lower")[1:]).astype(np.int64)


def bucketed_sizes(sizes: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    """Each size raised to the smallest bucket boundary that holds it."""
    return buckets[np.searchsorted(buckets, sizes, side="left")]


def pad_to(tokens: Tensor, length: int, pad_idx: int, *, left: bool) -> Tensor:
    """``tokens`` (T,) padded with ``pad_idx`` to ``length`` on the left or the right."""
    extra = length - tokens.size(0)
    if extra <= 0:
        return tokens
    padding = tokens.new_full((extra,), pad_idx)
    return torch.cat([padding, tokens] if left else [tokens, padding])


def collate_tokens(
    values: Sequence[Tensor],
    pad_idx: int,
    *,
    eos_idx: int | None = None,
    left_pad: bool = False,
    move_eos_to_beginning: bool = False,
    pad_to_multiple: int = 1,
) -> Tensor:
    """Stacks 1-D token tensors into (B, T), padding on the left or right.

    With ``move_eos_to_beginning`` each row becomes ``[eos, x_0, ..., x_{n-2}]`` (the decoder input).
    """
    size = max(int(v.size(0)) for v in values)
    if pad_to_multiple > 1 and size % pad_to_multiple:
        size += pad_to_multiple - size % pad_to_multiple
    out = values[0].new_full((len(values), size), pad_idx)  # (B, T)
    for i, v in enumerate(values):
        row = out[i, size - len(v) :] if left_pad else out[i, : len(v)]
        if move_eos_to_beginning:
            row[0] = v[-1] if eos_idx is None else eos_idx
            row[1:] = v[:-1]
        else:
            row.copy_(v)
    return out


def collate(
    samples: Sequence[dict[str, Any]],
    *,
    pad_idx: int,
    eos_idx: int,
    left_pad_source: bool = True,
    left_pad_target: bool = False,
    pad_to_multiple: int = 1,
) -> dict[str, Any]:
    """Builds fairseq's sample dict from ``{"id", "source", "target"}`` items (empty dict if none)."""
    if not samples:
        return {}
    ids = torch.tensor([s["id"] for s in samples], dtype=torch.long)
    src_tokens = collate_tokens(
        [s["source"] for s in samples],
        pad_idx,
        eos_idx=eos_idx,
        left_pad=left_pad_source,
        pad_to_multiple=pad_to_multiple,
    )
    src_lengths = src_tokens.ne(pad_idx).long().sum(dim=1)  # (B,)
    # fairseq's (unstable) descending sort, so that rows come out in the same order as fairseq's
    src_lengths, order = src_lengths.sort(descending=True)
    batch: dict[str, Any] = {
        "id": ids.index_select(0, order),
        "nsentences": len(samples),
        "ntokens": int(src_lengths.sum()),
        "net_input": {"src_tokens": src_tokens.index_select(0, order), "src_lengths": src_lengths},
        "target": None,
    }
    if samples[0].get("target") is not None:
        targets = [s["target"] for s in samples]
        target = collate_tokens(
            targets, pad_idx, eos_idx=eos_idx, left_pad=left_pad_target, pad_to_multiple=pad_to_multiple
        )
        prev = collate_tokens(
            targets,
            pad_idx,
            eos_idx=eos_idx,
            left_pad=left_pad_target,
            move_eos_to_beginning=True,
            pad_to_multiple=pad_to_multiple,
        )
        target = target.index_select(0, order)  # (B, T)
        batch["target"] = target
        batch["ntokens"] = int(target.ne(pad_idx).sum())
        batch["net_input"]["prev_output_tokens"] = prev.index_select(0, order)  # (B, T)
        if samples[0].get("alignment") is not None:
            tgt_lengths = target.ne(pad_idx).long().sum(dim=1)  # (B,) in batch order
            batch.update(collate_alignments([samples[i]["alignment"] for i in order.tolist()], src_lengths, tgt_lengths,
                                            src_width=src_tokens.size(1), tgt_width=target.size(1),
                                            left_pad_source=left_pad_source, left_pad_target=left_pad_target))  # fmt: skip
    return batch


def collate_alignments(alignments: Sequence[Tensor], src_lengths: Tensor, tgt_lengths: Tensor, *, src_width: int,
                       tgt_width: int, left_pad_source: bool, left_pad_target: bool) -> dict[str, Tensor]:  # fmt: skip
    """fairseq's ``alignments`` ``(N, 2)`` and ``align_weights`` ``(N,)`` of a batch (rows in batch order).

    Each row's ``i-j`` pairs (flat ``(2k,)`` source/target token indices, no eos) become indices into the padded
    source ``(B, S)`` and the flattened target ``(B*T)``; a row whose pairs reach its last token (or that has
    none) is left out, with a warning for the former, as fairseq does. Each pair weighs ``1 / (number of pairs
    with its target index)``. Empty when no row is kept.
    """
    kept = []
    for row, (pairs, src_len, tgt_len) in enumerate(zip(alignments, src_lengths.tolist(), tgt_lengths.tolist())):
        pairs = pairs.long().view(-1, 2)  # (k, 2) source index, target index
        if len(pairs) == 0:
            continue
        if int(pairs[:, 0].max()) >= src_len - 1 or int(pairs[:, 1].max()) >= tgt_len - 1:
            logger.warning("an alignment points past the end of its sentence pair: that pair's alignment is left out")
            continue
        offset = pairs.new_tensor([src_width - src_len if left_pad_source else 0,
                                   row * tgt_width + (tgt_width - tgt_len if left_pad_target else 0)])  # fmt: skip
        kept.append(pairs + offset)
    if not kept:
        return {}
    joined = torch.cat(kept)  # (N, 2)
    _, inverse, counts = torch.unique(joined[:, 1], return_inverse=True, return_counts=True)
    return {"alignments": joined, "align_weights": 1.0 / counts[inverse].float()}


class LanguagePairDataset:
    """Pairs ``src[i]``/``tgt[i]``; sizes, length ordering and collation as fairseq's dataset of that name."""

    def __init__(
        self,
        src: TokenDataset,
        src_dict: Dictionary,
        tgt: TokenDataset | None = None,
        tgt_dict: Dictionary | None = None,
        *,
        left_pad_source: bool = True,
        left_pad_target: bool = False,
        shuffle: bool = True,
        truncate_source_to: int | None = None,
        pad_to_multiple: int = 1,
        num_buckets: int = 0,
        eos: int | None = None,
        align: TokenDataset | None = None,
    ) -> None:
        """``eos``: the symbol moved to the front of the decoder input (default the dictionary's ``</s>``; the
        target language token for mBART fine-tuning, whose targets end with it). ``align``: each pair's word
        alignments (see :meth:`with_alignments`)."""
        if tgt is not None and len(src) != len(tgt):
            raise ValueError(
                f"{len(src)} source sentences but {len(tgt)} target sentences: the two sides must pair up one to one"
            )
        if align is not None and (tgt is None or len(align) != len(src)):
            raise ValueError("alignments need a target and one alignment per sentence pair")
        self.src, self.tgt, self.align = src, tgt, align
        self.src_dict, self.tgt_dict = src_dict, tgt_dict if tgt_dict is not None else src_dict
        self.left_pad_source, self.left_pad_target = left_pad_source, left_pad_target
        self.shuffle = shuffle
        self.truncate_source_to = truncate_source_to
        self.pad_to_multiple = pad_to_multiple
        self.eos = eos if eos is not None else self.src_dict.eos()
        self.src_sizes = np.asarray(src.sizes, dtype=np.int64)
        if truncate_source_to is not None:
            self.src_sizes = np.minimum(self.src_sizes, truncate_source_to)
        self.tgt_sizes = np.asarray(tgt.sizes, dtype=np.int64) if tgt is not None else None
        # --num-batch-buckets: every item is padded to its length bucket, so batches take few distinct shapes
        self.bucketed = num_buckets > 0
        if self.bucketed:
            self.src_sizes = bucketed_sizes(self.src_sizes, length_buckets(self.src_sizes, num_buckets))
            if self.tgt_sizes is not None:
                self.tgt_sizes = bucketed_sizes(self.tgt_sizes, length_buckets(self.tgt_sizes, num_buckets))

    def with_alignments(self, align: TokenDataset) -> LanguagePairDataset:
        """Adds ``align`` (one flat ``(2k,)`` tensor of ``i-j`` token index pairs per sentence pair, fairseq's
        ``--load-alignments`` data); batches then carry ``alignments`` and ``align_weights``."""
        if self.tgt is None or len(align) != len(self.src):
            raise ValueError(f"alignments: {len(align)} entries for {len(self.src)} sentence pairs (with targets)")
        self.align = align
        return self

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, index: int) -> dict[str, Any]:
        source = self.src[index].long()
        if self.truncate_source_to is not None and len(source) > self.truncate_source_to:
            eos = self.src_dict.eos()
            body = source[:-1] if int(source[-1]) == eos else source
            source = torch.cat([body[: self.truncate_source_to - 1], source.new_tensor([eos])])
        target = self.tgt[index].long() if self.tgt is not None else None
        if self.bucketed:
            pad = self.src_dict.pad()
            source = pad_to(source, int(self.src_sizes[index]), pad, left=self.left_pad_source)
            if target is not None and self.tgt_sizes is not None:
                target = pad_to(target, int(self.tgt_sizes[index]), pad, left=self.left_pad_target)
        item = {"id": index, "source": source, "target": target}
        if self.align is not None:
            item["alignment"] = self.align[index]
        return item

    def collater(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return collate(
            samples,
            pad_idx=self.src_dict.pad(),
            eos_idx=self.eos,
            left_pad_source=self.left_pad_source,
            left_pad_target=self.left_pad_target,
            pad_to_multiple=self.pad_to_multiple,
        )

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        """Per-sample batch cost: the longer of source and target."""
        sizes = self.src_sizes[indices]
        return sizes if self.tgt_sizes is None else np.maximum(sizes, self.tgt_sizes[indices])

    def size(self, index: int) -> tuple[int, int]:
        return int(self.src_sizes[index]), int(self.tgt_sizes[index]) if self.tgt_sizes is not None else 0

    def ordered_indices(self, rng: np.random.RandomState | None = None) -> np.ndarray:
        """Ids sorted by source length, ties by target length; ties beyond that in a seeded shuffle.

        ``rng`` is the generator fairseq seeds with ``--seed`` (``np.random.RandomState(seed)``).
        """
        if self.shuffle:
            indices = (rng or np.random).permutation(len(self)).astype(np.int64)
        else:
            indices = np.arange(len(self), dtype=np.int64)
        if self.bucketed:  # fairseq: by the bucketed batch cost alone
            return indices[np.argsort(self.num_tokens_vec(indices), kind="mergesort")]
        if self.tgt_sizes is not None:
            indices = indices[np.argsort(self.tgt_sizes[indices], kind="mergesort")]
        return indices[np.argsort(self.src_sizes[indices], kind="mergesort")]
