"""Token-budget batching: fairseq's batch counts on its own data, and the invariants of every batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seqloom.data.batching import batch_by_size, filter_by_size, resolve_max_positions
from seqloom.tasks.base import BatchingOptions
from seqloom.tasks.translation import TranslationConfig, TranslationTask


def test_fixture_batch_counts_equal_fairseq(fairseq_fixtures: Path) -> None:
    # fairseq's train.log: "grouped total_num_itrs = 78" (train, --max-tokens 2048) and valid_bsz 28.6
    # (200 sentences in 7 batches), valid_wpb 1260.7 (8825 target tokens / 7)
    task = TranslationTask.setup_task(TranslationConfig(data=str(fairseq_fixtures / "mt" / "data-bin")))
    opts = BatchingOptions(max_tokens=2048, max_positions=(1024, 1024), required_batch_size_multiple=8)
    assert len(task.get_batch_iterator(task.load_dataset("train", combine=True), opts)) == 78
    valid = task.load_dataset("valid")
    assert len(task.get_batch_iterator(valid, opts)) == 7
    assert int(valid.tgt_sizes.sum()) == 8825


@pytest.mark.parametrize("max_tokens,max_sentences,mult", [(100, None, 8), (64, 10, 4), (None, 7, 1), (500, 32, 8)])
def test_batches_respect_limits_and_multiples(max_tokens: int | None, max_sentences: int | None, mult: int) -> None:
    rng = np.random.RandomState(0)
    sizes = rng.randint(1, 30, size=997)
    order = np.argsort(sizes, kind="mergesort")
    batches = batch_by_size(
        order, sizes[order], max_tokens=max_tokens, max_sentences=max_sentences, required_batch_size_multiple=mult
    )
    assert np.array_equal(np.concatenate(batches), order)  # order kept, nothing lost
    for b in batches:
        assert len(b) > 0
        if max_tokens:
            assert len(b) * sizes[b].max() <= max_tokens
        if max_sentences:
            assert len(b) <= max_sentences
    # every batch but the last is a multiple of ``mult`` (or smaller than it)
    for b in batches[:-1]:
        assert len(b) % mult == 0 or len(b) < mult


def test_leftover_past_the_multiple_starts_the_next_batch() -> None:
    # ten samples of 10 tokens, budget 95 tokens: 9 fit, but the batch is cut to 8 (a multiple of 4)
    sizes = np.full(10, 10)
    batches = batch_by_size(np.arange(10), sizes, max_tokens=95, required_batch_size_multiple=4)
    assert [len(b) for b in batches] == [8, 2]


def test_sample_over_budget_is_an_error_naming_the_flag() -> None:
    with pytest.raises(ValueError, match="--max-tokens"):
        batch_by_size(np.arange(3), np.array([5, 50, 5]), max_tokens=10)


def test_filter_and_resolve_max_positions() -> None:
    src, tgt = np.array([3, 10, 5]), np.array([4, 4, 12])
    kept, dropped = filter_by_size(np.arange(3), src, tgt, (8, 10))
    assert kept.tolist() == [0] and dropped.tolist() == [1, 2]
    assert resolve_max_positions((1024, 1024), 500, None, (600, 2000)) == (500, 500)


def test_too_long_samples_fail_or_are_skipped(fairseq_fixtures: Path) -> None:
    task = TranslationTask.setup_task(TranslationConfig(data=str(fairseq_fixtures / "mt" / "data-bin")))
    valid = task.load_dataset("valid")
    strict = BatchingOptions(max_tokens=2048, max_positions=(20, 20))
    with pytest.raises(ValueError, match="--skip-invalid-size-inputs-valid-test"):
        task.get_batch_iterator(valid, strict)
    lenient = BatchingOptions(max_tokens=2048, max_positions=(20, 20), ignore_invalid_inputs=True)
    itr = task.get_batch_iterator(valid, lenient)
    kept = sum(len(b) for b in itr.frozen_batches)
    fits = int(((valid.src_sizes <= 20) & (valid.tgt_sizes <= 20)).sum())
    assert kept == fits and 0 < fits < len(valid)
