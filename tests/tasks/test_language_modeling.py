"""The language_modeling task on fairseq's LM data-bin: the same blocks and batches as fairseq 0.12.3.

The batch ids below were read from fairseq's own ``LanguageModelingTask.get_batch_iterator`` on this data
(``--tokens-per-sample 128 --max-tokens 2048``, ``--required-batch-size-multiple 8``, seed 1).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from seqloom.tasks.base import BatchingOptions, require_batches
from seqloom.tasks.language_modeling import LanguageModelingConfig, LanguageModelingTask


@pytest.fixture(scope="module")
def task(fairseq_fixtures: Path) -> LanguageModelingTask:
    cfg = LanguageModelingConfig(data=str(fairseq_fixtures / "lm" / "data-bin"), tokens_per_sample=128)
    return LanguageModelingTask.setup_task(cfg)


def options(*, training: bool = True) -> BatchingOptions:
    return BatchingOptions(max_tokens=2048, max_positions=(128, 128), required_batch_size_multiple=8, seed=1,
                           drop_partial_last_batch=training)  # fmt: skip


def test_blocks_and_batches_equal_fairseq(task: LanguageModelingTask, caplog: pytest.LogCaptureFixture) -> None:
    assert len(task.source_dictionary) == 1336
    train = task.load_dataset("train")
    assert len(train) == 881 and int(train.sizes.sum()) == 112_656 and train.sizes.min() == 16
    batches = task.get_batch_iterator(train, options()).frozen_batches
    assert len(batches) == 55  # 881 blocks: training drops the last batch of 1, as fairseq does
    assert "1 samples (the last batch, not a multiple of --required-batch-size-multiple 8) are left out" in caplog.text
    assert batches[0][:5].tolist() == [880, 755, 178, 226, 311]
    assert batches[-1].tolist() == [86, 479, 220, 541, 730, 743, 83, 425, 498, 748, 791, 780, 697, 342, 824, 333]
    # evaluating the same blocks keeps that last one (fairseq loses it there too: its issues #5036 and #5351)
    kept = task.get_batch_iterator(train, options(training=False)).frozen_batches
    assert [b.tolist() for b in kept[:55]] == [b.tolist() for b in batches] and len(kept) == 56
    assert len(kept[-1]) == 1 and sorted(int(i) for b in kept for i in b) == list(range(881))
    valid = task.load_dataset("valid")
    first = task.get_batch_iterator(valid, options()).frozen_batches[0]
    assert first.tolist() == [68, 10, 1, 34, 51, 49, 41, 38, 64, 24, 20, 12, 60, 32, 22, 25]


def test_sample_is_the_block_and_its_shifted_input(task: LanguageModelingTask) -> None:
    train = task.datasets.get("train") or task.load_dataset("train")
    a, b = train[0], train[1]
    assert a["source"][0].item() == task.source_dictionary.eos()
    assert a["source"][1:].tolist() == a["target"][:-1].tolist()
    assert b["source"][0].item() == a["target"][-1].item()  # the stream continues across blocks
    batch = train.collater([a, b])
    assert batch["net_input"]["src_tokens"].shape == (2, 128) and batch["ntokens"] == 256


def test_break_modes_on_real_sentences(fairseq_fixtures: Path) -> None:
    data = str(fairseq_fixtures / "lm" / "data-bin")
    eos = LanguageModelingTask.setup_task(LanguageModelingConfig(data=data, sample_break_mode="eos"))
    assert len(eos.load_dataset("valid")) == 200  # one sentence per block
    complete = LanguageModelingTask.setup_task(
        LanguageModelingConfig(data=data, sample_break_mode="complete", tokens_per_sample=128)
    )
    blocks = complete.load_dataset("valid")
    last = int(blocks.sizes.max())
    assert 1 < len(blocks) < 200 and (last <= 128 or blocks.sizes.tolist().count(last) == 1)
    assert int(blocks.sizes.sum()) == int(eos.datasets["valid"].sizes.sum())


def test_missing_split_names_the_files(task: LanguageModelingTask) -> None:
    with pytest.raises(FileNotFoundError, match="valid7.bin"):
        task.load_dataset("valid7")


def test_a_split_with_no_batch_is_an_error_that_says_why(task: LanguageModelingTask) -> None:
    train = task.datasets.get("train") or task.load_dataset("train")
    short = replace(options(), max_positions=(20, 20), ignore_invalid_inputs=True)  # one block of 16 tokens is left
    itr = task.get_batch_iterator(train, short)
    with pytest.raises(ValueError, match=r"nothing to run on 'train': what is left \(1 samples\) makes one batch, "
                       r"which training leaves out as not a multiple of --required-batch-size-multiple 8"):  # fmt: skip
        require_batches(itr, "train")
    assert len(require_batches(task.get_batch_iterator(train, replace(short, drop_partial_last_batch=False)), "t")) == 1
    none_fit = replace(short, max_positions=(8, 8))
    with pytest.raises(ValueError, match=r"all 881 samples are longer than max_positions=\(8, 8\)"):
        require_batches(task.get_batch_iterator(train, none_fit), "train")
