"""Collation into fairseq's sample dict, length ordering, and the resumable epoch iterator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqloom.data.batching import batch_by_size
from seqloom.data.iterators import EpochBatchIterator
from seqloom.data.language_pair_dataset import ConcatTokens, LanguagePairDataset, bucketed_sizes, length_buckets

PAD, EOS = 1, 2


class Toks:
    """A list of 1-D tensors with ``sizes``, like an indexed dataset."""

    def __init__(self, rows: list[list[int]]) -> None:
        self.rows = [torch.tensor(r, dtype=torch.int32) for r in rows]
        self.sizes = np.array([len(r) for r in rows])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.rows[i]

    def __len__(self) -> int:
        return len(self.rows)


class Dict:
    def pad(self) -> int:
        return PAD

    def eos(self) -> int:
        return EOS


def test_collate_pads_and_shifts_like_fairseq() -> None:
    src = Toks([[5, 6, EOS], [7, 8, 9, 10, EOS]])
    tgt = Toks([[11, EOS], [12, 13, 14, EOS]])
    ds = LanguagePairDataset(src, Dict(), tgt, Dict())
    batch = ds.collater([ds[0], ds[1]])
    # rows sorted by decreasing source length; source padded left, target right
    assert batch["id"].tolist() == [1, 0]
    assert batch["nsentences"] == 2 and batch["ntokens"] == 6
    assert batch["net_input"]["src_tokens"].tolist() == [[7, 8, 9, 10, EOS], [PAD, PAD, 5, 6, EOS]]
    assert batch["net_input"]["src_lengths"].tolist() == [5, 3]
    assert batch["target"].tolist() == [[12, 13, 14, EOS], [11, EOS, PAD, PAD]]
    assert batch["net_input"]["prev_output_tokens"].tolist() == [[EOS, 12, 13, 14], [EOS, 11, PAD, PAD]]
    assert batch["target"].dtype == torch.long


def test_ordered_indices_sort_by_source_then_target_length() -> None:
    src = Toks([[1] * n for n in (3, 1, 3, 2, 3)])
    tgt = Toks([[1] * n for n in (2, 5, 1, 1, 2)])
    ds = LanguagePairDataset(src, Dict(), tgt, Dict(), shuffle=False)
    assert ds.ordered_indices().tolist() == [1, 3, 2, 0, 4]
    shuffled = LanguagePairDataset(src, Dict(), tgt, Dict(), shuffle=True)
    a = shuffled.ordered_indices(np.random.RandomState(1)).tolist()
    assert a == shuffled.ordered_indices(np.random.RandomState(1)).tolist()
    assert a[:3] == [1, 3, 2] and set(a[3:]) == {0, 4}  # only the tie (src 3, tgt 2) is shuffled


def test_truncate_source_keeps_eos() -> None:
    ds = LanguagePairDataset(Toks([[5, 6, 7, 8, EOS]]), Dict(), Toks([[9, EOS]]), Dict(), truncate_source_to=3)
    assert ds[0]["source"].tolist() == [5, 6, EOS]
    assert ds.src_sizes.tolist() == [3]


def test_concat_with_upsampling() -> None:
    cat = ConcatTokens([Toks([[1], [2]]), Toks([[3]])], ratios=[2, 1])
    assert len(cat) == 5
    assert [cat[i].tolist()[0] for i in range(5)] == [1, 2, 1, 2, 3]
    assert cat.sizes.tolist() == [1, 1, 1, 1, 1]


def _iterator(n: int = 40, **kw: object) -> EpochBatchIterator:
    ds = LanguagePairDataset(
        Toks([[i + 3, EOS] for i in range(n)]), Dict(), Toks([[i + 3, EOS] for i in range(n)]), Dict()
    )
    idx = ds.ordered_indices(np.random.RandomState(1))
    batches = batch_by_size(idx, ds.num_tokens_vec(idx), max_sentences=4)
    return EpochBatchIterator(ds, batches, ds.collater, seed=3, **kw)  # type: ignore[arg-type]


def _ids(itr: object) -> list[list[int]]:
    return [sorted(b["id"].tolist()) for b in itr]  # type: ignore[attr-defined]


def test_epochs_reshuffle_deterministically_and_resume_mid_epoch() -> None:
    a = _iterator()
    first = _ids(a.next_epoch_itr())
    second = _ids(a.next_epoch_itr())
    assert a.epoch == 2 and first != second and sorted(first) == sorted(second)
    assert first == _ids(_iterator().next_epoch_itr())  # same seed, same order
    # stop after 3 batches of epoch 2, save, resume in a fresh iterator
    b = _iterator()
    _ids(b.next_epoch_itr())  # epoch 1, consumed
    for _ in b.next_epoch_itr():
        if b.iterations_in_epoch == 3:
            break
    state = b.state_dict()
    assert state == {"version": 2, "epoch": 2, "iterations_in_epoch": 3, "shuffle": True}
    c = _iterator()
    c.load_state_dict(state)
    assert _ids(c.next_epoch_itr()) == second[3:]
    # a finished epoch resumes at the next one
    d = _iterator()
    d.load_state_dict({"epoch": 1, "iterations_in_epoch": len(d)})
    itr = d.next_epoch_itr()
    assert d.epoch == 2 and _ids(itr) == second


def test_shards_split_batches_round_robin_with_padding() -> None:
    whole = _ids(_iterator(n=36).next_epoch_itr())  # 9 batches
    r0 = [b for b in _iterator(n=36, num_shards=2, shard_id=0).next_epoch_itr()]
    r1 = [b for b in _iterator(n=36, num_shards=2, shard_id=1).next_epoch_itr()]
    assert len(r0) == len(r1) == 5 and r1[-1] == {}
    assert [sorted(b["id"].tolist()) for b in r0] == whole[0::2]
    assert [sorted(b["id"].tolist()) for b in r1[:-1]] == whole[1::2]


@pytest.mark.parametrize(("num_shards", "shard_id", "message"), [
    (2, 2, "--shard-id 2 with --num-shards 2: shard ids run from 0 to 1"),  # translated nothing, silently
    (2, -1, "--shard-id -1 with --num-shards 2"),
    (0, 0, "--num-shards must be at least 1 \\(got 0\\)"),  # a "slice step cannot be zero" error before
])  # fmt: skip
def test_a_shard_outside_the_shards_is_refused_by_name(num_shards: int, shard_id: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _iterator(num_shards=num_shards, shard_id=shard_id)


def test_grouped_shuffling_keeps_groups_of_num_shards_batches_together() -> None:
    """--grouped-shuffling, restated from fairseq: the frozen batches are cut into groups of num_shards, the
    groups shuffled under the epoch's seed, the remainder left out; rank r takes the r-th of each group."""
    frozen = _ids(_iterator(n=36).next_epoch_itr(shuffle=False))  # 9 batches, 4 groups of 2 + 1 left over
    groups = [frozen[i * 2 : (i + 1) * 2] for i in range(len(frozen) // 2)]
    np.random.seed(3 + 1)  # fairseq's numpy_seed(seed + epoch)
    np.random.shuffle(groups)
    expected = [b for g in groups for b in g]
    ranks = [_ids(_iterator(n=36, num_shards=2, shard_id=r, grouped_shuffling=True).next_epoch_itr()) for r in (0, 1)]
    assert ranks[0] == expected[0::2] and ranks[1] == expected[1::2]
    one = _ids(_iterator(n=36, grouped_shuffling=True).next_epoch_itr())
    assert one == _ids(_iterator(n=36).next_epoch_itr())  # groups of one: the plain shuffle


def test_skip_remainder_batch_leaves_out_the_epochs_last_batch_and_a_partial_update() -> None:
    """fairseq's --skip-remainder-batch: the iterator takes all but the shard's last batch, and the grouping
    by --update-freq drops a last group that is not whole; the epoch then counts as finished."""
    whole = _ids(_iterator(n=36).next_epoch_itr())  # 9 batches
    itr = _iterator(n=36, skip_remainder_batch=True)
    assert len(itr) == 8
    epoch = itr.next_epoch_itr()
    groups = [[sorted(b["id"].tolist()) for b in g] for g in epoch.take_groups(3, whole_only=True)]
    assert groups == [whole[0:3], whole[3:6]]  # 8 batches: two updates of 3, the last 2 batches left out
    assert not epoch.has_next() and itr.next_epoch_idx == 2
    plain = _iterator(n=36).next_epoch_itr()
    assert [len(g) for g in plain.take_groups(4)] == [4, 4, 1]


def test_worker_processes_give_the_same_batches() -> None:
    assert _ids(_iterator(num_workers=1).next_epoch_itr()) == _ids(_iterator().next_epoch_itr())


def _fairseq_bucket_rule(sizes: np.ndarray, num_buckets: int) -> np.ndarray:
    """fairseq's rule restated as a loop: boundaries at the 'lower' percentiles; each size to the first one
    that holds it."""
    bounds = sorted({int(np.percentile(sizes, q, method="lower")) for q in np.linspace(0, 100, num_buckets + 1)[1:]})
    out = sizes.copy()
    start = -1
    for end in bounds:
        out[(sizes > start) & (sizes <= end)] = end
        start = end
    return out


def test_length_buckets_follow_fairseqs_percentile_rule() -> None:
    rng = np.random.default_rng(0)
    for n_buckets in (1, 3, 8, 50):
        sizes = rng.integers(2, 90, size=300)
        buckets = length_buckets(sizes, n_buckets)
        assert len(buckets) <= n_buckets and buckets[-1] == sizes.max()
        assert np.array_equal(bucketed_sizes(sizes, buckets), _fairseq_bucket_rule(sizes, n_buckets))
        assert (bucketed_sizes(sizes, buckets) >= sizes).all()


def test_bucketed_items_pad_to_their_bucket_and_collate_like_the_plain_ones() -> None:
    rows = [[5 + i] * n + [EOS] for i, n in enumerate((1, 2, 3, 5, 6, 9))]
    targets = [[20 + i] * n + [EOS] for i, n in enumerate((2, 2, 4, 4, 7, 8))]
    plain = LanguagePairDataset(Toks(rows), Dict(), Toks(targets), Dict(), shuffle=False)
    ds = LanguagePairDataset(Toks(rows), Dict(), Toks(targets), Dict(), shuffle=False, num_buckets=2)
    assert len(set(ds.src_sizes.tolist())) <= 2 and len(set(ds.tgt_sizes.tolist())) <= 2
    for i in range(6):  # source padded on the left, target on the right, to the bucketed sizes
        item = ds[i]
        assert len(item["source"]) == ds.src_sizes[i] and item["source"][-len(rows[i]) :].tolist() == rows[i]
        assert len(item["target"]) == ds.tgt_sizes[i] and item["target"][: len(targets[i])].tolist() == targets[i]
    a, b = plain.collater([plain[i] for i in range(6)]), ds.collater([ds[i] for i in range(6)])
    assert a["id"].tolist() == b["id"].tolist() and a["ntokens"] == b["ntokens"]
    assert torch.equal(a["net_input"]["src_lengths"], b["net_input"]["src_lengths"])  # real lengths
    assert torch.equal(
        a["net_input"]["src_tokens"], b["net_input"]["src_tokens"][:, -a["net_input"]["src_tokens"].size(1) :]
    )
    assert torch.equal(a["target"], b["target"][:, : a["target"].size(1)])
    # fairseq orders bucketed datasets by the bucketed batch cost alone
    assert ds.ordered_indices().tolist() == np.argsort(ds.num_tokens_vec(np.arange(6)), kind="mergesort").tolist()
