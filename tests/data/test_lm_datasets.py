"""LM blocks, samples, context windows and shortening: fairseq's cutting rules on small hand-checked streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqloom.data.lm_context_window_dataset import LMContextWindowDataset
from seqloom.data.monolingual_dataset import MonolingualDataset
from seqloom.data.shorten_dataset import RandomCropDataset, TruncateDataset, maybe_shorten
from seqloom.data.token_block_dataset import TokenBlockDataset, block_to_dataset_index, slice_indices

EOS, PAD = 2, 1


class Sentences:
    """Sentences of distinct tokens (10, 11, ...), each ending in eos."""

    def __init__(self, lengths: list[int]) -> None:
        self.items = []
        nxt = 10
        for n in lengths:
            body = list(range(nxt, nxt + n - 1)) if n > 1 else []
            nxt += max(n - 1, 0)
            self.items.append(torch.tensor(body + [EOS], dtype=torch.long))
        self.sizes = np.array(lengths, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.items[i]


class Vocab:
    def __len__(self) -> int:
        return 100

    def pad(self) -> int:
        return PAD

    def eos(self) -> int:
        return EOS

    def bos(self) -> int:
        return 0

    def unk(self) -> int:
        return 3


def test_slice_indices_per_break_mode() -> None:
    sizes = np.array([3, 5, 1, 4, 2])
    assert slice_indices(sizes, "none", 4).tolist() == [[0, 4], [4, 8], [8, 12], [12, 15]]
    assert slice_indices(sizes, "eos", None).tolist() == [[0, 3], [3, 8], [8, 9], [9, 13], [13, 15]]
    # complete: whole sentences up to 6 tokens; the 5-token sentence cannot join the 3-token one
    assert slice_indices(sizes, "complete", 6).tolist() == [[0, 3], [3, 9], [9, 15]]
    # complete_doc: a 1-token sentence (an empty line + eos) separates documents and is dropped
    assert slice_indices(sizes, "complete_doc", 10).tolist() == [[0, 8], [9, 15]]
    with pytest.raises(ValueError, match="sample-break-mode"):
        slice_indices(sizes, "sentence", 4)


def test_block_to_dataset_index_finds_first_offset_last() -> None:
    sizes = np.array([3, 5, 1, 4, 2])
    index = block_to_dataset_index(sizes, slice_indices(sizes, "none", 4))
    assert index.tolist() == [[0, 0, 1], [1, 1, 1], [2, 0, 3], [3, 3, 4]]


def test_blocks_shift_source_right_with_eos_first() -> None:
    data = Sentences([3, 5, 2])
    stream = torch.cat(data.items)
    blocks = TokenBlockDataset(data, data.sizes, 4, pad=PAD, eos=EOS, break_mode="none", include_targets=True)
    assert blocks.sizes.tolist() == [4, 4, 2]
    src, tgt, _ = blocks[0]
    assert tgt.tolist() == stream[:4].tolist() and src.tolist() == [EOS] + stream[:3].tolist()
    src, tgt, _ = blocks[1]
    assert tgt.tolist() == stream[4:8].tolist() and src.tolist() == stream[3:7].tolist()


def test_monolingual_samples_collate_and_order() -> None:
    data = Sentences([3, 5, 2, 4])
    blocks = TokenBlockDataset(data, data.sizes, None, pad=PAD, eos=EOS, break_mode="eos", include_targets=True)
    ds = MonolingualDataset(blocks, blocks.sizes, Vocab(), shuffle=True, add_bos_token=True)
    item = ds[0]
    assert item["source"].tolist() == [0, EOS, 10, 11] and item["target"].tolist() == [0, 10, 11, EOS]
    batch = ds.collater([ds[1], ds[2]])
    assert batch["net_input"]["src_tokens"].shape == (2, 6) and batch["ntokens"] == 9
    assert batch["target"][1].tolist()[-3:] == [PAD, PAD, PAD]
    order = ds.ordered_indices(np.random.RandomState(1))
    perm = np.random.RandomState(1).permutation(4)
    assert order.tolist() == np.lexsort([perm, ds.sizes]).tolist() and ds.sizes[order].tolist() == [2, 3, 4, 5]


def test_context_window_prefixes_earlier_tokens() -> None:
    data = Sentences([4, 4, 4])
    blocks = TokenBlockDataset(data, data.sizes, 4, pad=PAD, eos=EOS, break_mode="none", include_targets=True)
    ds = MonolingualDataset(blocks, blocks.sizes, Vocab(), shuffle=False)
    cw = LMContextWindowDataset(ds, tokens_per_sample=4, context_window=2, pad_idx=PAD)
    first = cw.collater([cw[0], cw[1]])
    assert first["start_indices"] == [0, 2]
    assert first["net_input"]["src_tokens"][1, :2].tolist() == ds[0]["source"][-2:].tolist()
    assert first["target"][1, :2].tolist() == [PAD, PAD] and first["target"][1, 2:].tolist() == ds[1]["target"].tolist()
    second = cw.collater([cw[2]])  # the state carries over to the next batch
    assert second["start_indices"] == [2]


def test_shortening() -> None:
    data = Sentences([6, 2])
    assert TruncateDataset(data, 4)[0].tolist() == data[0][:4].tolist()
    crop = RandomCropDataset(data, 4, seed=1)
    window = crop[0].tolist()
    assert len(window) == 4 and window == crop[0].tolist() and crop[1].tolist() == data[1].tolist()
    assert maybe_shorten(data, "valid", split_list="train", method="truncate", length=4, seed=1) is data
    assert isinstance(maybe_shorten(data, "train", split_list="", method="truncate", length=4, seed=1), TruncateDataset)
