"""BERT-style masking (--task masked_lm): the seeded draws equal fairseq's MaskTokensDataset item for item.

tests/fixtures/roberta/reference.json holds fairseq's masked inputs and targets of the fixture's valid blocks
for six option sets and two epochs (scripts/make_roberta_fixtures.sh).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seqloom.data.dictionary import Dictionary
from seqloom.data.mask_tokens_dataset import MaskingOptions, MaskTokensDataset, mask_tokens, replacement_weights
from seqloom.tokenizers.gpt2_bpe import GPT2BPE, GPT2BPEConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "roberta"
REFERENCE = json.loads((FIXTURES / "reference.json").read_text())


class Blocks:
    def __init__(self, rows: list[list[int]]) -> None:
        self.rows = [torch.tensor(r) for r in rows]
        self.sizes = np.array([len(r) for r in rows])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.rows[i]


def dictionary() -> Dictionary:
    d = Dictionary.load(str(FIXTURES / "gpt2" / "dict.txt"))
    d.add_symbol("<mask>")
    return d


def word_starts(d: Dictionary, files: Path) -> np.ndarray:
    bpe = GPT2BPE(GPT2BPEConfig(gpt2_encoder_json=str(files / "encoder.json"), gpt2_vocab_bpe=str(files / "vocab.bpe")))

    def begins(i: int) -> bool:
        return i < d.nspecial or d[i].startswith("madeupword") or bpe.is_beginning_of_word(d[i])

    return np.array([begins(i) for i in range(len(d))])


OPTIONS = {
    "default": MaskingOptions(),
    "whole_words_freq": MaskingOptions(freq_weighted_replacement=True),
    "multiple3": MaskingOptions(mask_multiple_length=3, mask_prob=0.1),
    "no_random": MaskingOptions(random_token_prob=0.0),
    "no_unmask": MaskingOptions(leave_unmasked_prob=0.0),
    "stdev": MaskingOptions(mask_multiple_length=2, mask_stdev=1.0),
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_masking_equals_fairseq(name: str, fairseq_fixtures: Path) -> None:
    d = dictionary()
    blocks = Blocks(REFERENCE["masking"]["blocks"])
    gpt2 = Path(__file__).resolve().parents[1] / "fixtures" / "gpt2-bpe"
    starts = word_starts(d, gpt2) if name == "whole_words_freq" else None
    dataset = MaskTokensDataset(blocks, blocks.sizes, OPTIONS[name], vocab=d, mask_idx=d.index("<mask>"), seed=1,
                                word_starts=starts)  # fmt: skip
    for epoch in ("1", "2"):
        dataset.set_epoch(int(epoch))
        expected = REFERENCE["masking"][name][epoch]
        for i in range(len(dataset)):
            item = dataset[i]
            assert item["source"].tolist() == expected["source"][i], (name, epoch, i)
            assert item["target"].tolist() == expected["target"][i], (name, epoch, i)


def test_masking_statistics_follow_the_probabilities() -> None:
    """Over many seeded items: 15% chosen, of those 80% <mask>, 10% random, 10% left; specials never drawn."""
    d = dictionary()
    weights = replacement_weights(d.count, d.nspecial, by_frequency=False)
    item = np.arange(d.nspecial, d.nspecial + 400, dtype=np.int64)
    chosen = masked = kept = 0
    for k in range(300):
        source, target = mask_tokens(item, MaskingOptions(), np.random.default_rng(k), mask_idx=d.index("<mask>"),
                                     pad=d.pad(), weights=weights)  # fmt: skip
        picked = target != d.pad()
        chosen += picked.sum()
        masked += (source[picked] == d.index("<mask>")).sum()
        kept += (source[picked] == item[picked]).sum()
        assert (source[~picked] == item[~picked]).all()
    total = 300 * len(item)
    assert abs(chosen / total - 0.15) < 0.005
    assert abs(masked / chosen - 0.8) < 0.02
    assert abs(kept / chosen - 0.1) < 0.02  # (a random draw equal to the token itself is rare)
    assert weights[: d.nspecial].sum() == 0 and abs(weights.sum() - 1) < 1e-9


def test_bad_probabilities_are_named() -> None:
    with pytest.raises(ValueError, match="--leave-unmasked-prob plus --random-token-prob"):
        MaskingOptions(leave_unmasked_prob=0.6, random_token_prob=0.6).check()
    with pytest.raises(ValueError, match="--mask-prob"):
        MaskingOptions(mask_prob=0.0).check()


def test_batches_pad_targets_and_count_tokens() -> None:
    d = dictionary()
    blocks = Blocks(REFERENCE["masking"]["blocks"][:4])
    dataset = MaskTokensDataset(blocks, blocks.sizes, MaskingOptions(), vocab=d, mask_idx=d.index("<mask>"))
    dataset.set_epoch(1)
    batch = dataset.collater([dataset[i] for i in range(4)])
    assert batch["net_input"]["src_tokens"].shape == batch["target"].shape
    assert batch["ntokens"] == int(blocks.sizes.sum()) and batch["nsentences"] == 4
    order = dataset.ordered_indices()
    assert (np.diff(blocks.sizes[order]) >= 0).all()  # by length, ties in the seeded order


def test_skip_masking_keeps_every_token_as_input_and_target() -> None:
    d = dictionary()
    blocks = Blocks(REFERENCE["masking"]["blocks"][:2])
    dataset = MaskTokensDataset(blocks, blocks.sizes, MaskingOptions(skip=True), vocab=d, mask_idx=d.index("<mask>"))
    item = dataset[1]
    assert item["source"].tolist() == item["target"].tolist() == REFERENCE["masking"]["blocks"][1]


def test_validation_epochs_keep_the_first_epochs_masks() -> None:
    """Training re-masks every epoch; validation (``set_dataset_epoch=False``, as fairseq's) masks as in epoch 1 at
    every pass, so validation losses of one run compare across epochs and equal fairseq's."""
    from seqloom.data.batching import batch_by_size
    from seqloom.data.iterators import EpochBatchIterator

    d = dictionary()
    blocks = Blocks(REFERENCE["masking"]["blocks"][:8])
    dataset = MaskTokensDataset(blocks, blocks.sizes, MaskingOptions(), vocab=d, mask_idx=d.index("<mask>"))
    order = dataset.ordered_indices()

    def passes(*, set_dataset_epoch: bool) -> list[list[list[int]]]:
        dataset.set_epoch(1)  # as get_batch_iterator leaves a freshly built iterator's dataset
        itr = EpochBatchIterator(dataset, batch_by_size(order, dataset.num_tokens_vec(order), max_sentences=4),
                                 dataset.collater, seed=1)  # fmt: skip
        return [[b["net_input"]["src_tokens"].tolist() for b in itr.next_epoch_itr(shuffle=False,
                 set_dataset_epoch=set_dataset_epoch)] for _ in range(3)]  # fmt: skip

    frozen = passes(set_dataset_epoch=False)
    assert frozen[0] == frozen[1] == frozen[2] and dataset.epoch == 1
    remasked = passes(set_dataset_epoch=True)
    assert remasked[0] == frozen[0] and remasked[1] != remasked[0] and dataset.epoch == 3
