"""Indexed datasets: fairseq's mmap files read and rewritten byte for byte, legacy TNTIDX, raw text, corrupt files."""

from __future__ import annotations

import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from seqloom.data.dictionary import Dictionary
from seqloom.data.formats import data_exists, infer_dataset_impl, make_builder, make_dataset
from seqloom.data.indexed_dataset import (
    IndexedDatasetError,
    MMapIndexedDataset,
    MMapIndexedDatasetBuilder,
    best_fitting_int_dtype,
)
from seqloom.data.legacy_datasets import IndexedDataset, IndexedDatasetBuilder

EXTRA = Path(__file__).parent / "fixtures" / "fairseq_extra"


@pytest.fixture
def mt_train(fairseq_fixtures: Path) -> Path:
    return fairseq_fixtures / "mt/data-bin/train.en-es.en"


def test_reads_fairseq_mmap_dataset(mt_train: Path, fairseq_fixtures: Path) -> None:
    ds = MMapIndexedDataset(mt_train)
    assert len(ds) == 3000 and ds.dtype == np.uint16
    assert int(ds.sizes.sum()) == 112656  # preprocess.log: 3000 sents, 112656 tokens
    assert ds.sizes.dtype == np.int32
    d = Dictionary.load(fairseq_fixtures / "mt/data-bin/dict.en.txt")
    first = (fairseq_fixtures / "mt/text/train.bpe.en").read_text(encoding="utf-8").split("\n", 1)[0]
    item = ds[0]
    assert item.dtype == torch.int64 and torch.equal(item, d.encode_line(first).long())
    assert ds.size(0) == ds.num_tokens(0) == len(item)
    assert torch.equal(ds[-1], ds[len(ds) - 1])
    with pytest.raises(IndexError):
        ds.get_numpy(3000)


def test_reads_are_zero_copy_views(mt_train: Path) -> None:
    ds = MMapIndexedDataset(mt_train)
    view = ds.get_numpy(5)
    assert not view.flags.owndata and not view.flags.writeable
    assert view.base is not None


def test_builder_rewrites_fixture_byte_for_byte(mt_train: Path, tmp_path: Path) -> None:
    ds = MMapIndexedDataset(mt_train)
    out = tmp_path / "copy"
    b = make_builder(f"{out}.bin", "mmap", vocab_size=2056)
    assert b.dtype == np.uint16
    for i in range(0, 1000):
        b.add_item(ds[i])  # one tensor at a time
    rest = np.concatenate([ds.get_numpy(i) for i in range(1000, len(ds))])
    b.add_items(rest, ds.sizes[1000:])  # and in bulk
    b.finalize(f"{out}.idx")
    for ext in ("bin", "idx"):
        assert Path(f"{out}.{ext}").read_bytes() == Path(f"{mt_train}.{ext}").read_bytes()


def test_merge_file_concatenates(mt_train: Path, tmp_path: Path) -> None:
    ds = MMapIndexedDataset(mt_train)
    parts = []
    for k, (a, b) in enumerate([(0, 1234), (1234, 3000)]):
        prefix = tmp_path / f"part{k}"
        builder = MMapIndexedDatasetBuilder(f"{prefix}.bin", dtype=np.uint16)
        for i in range(a, b):
            builder.add_item(ds.get_numpy(i))
        parts.append(prefix)
        if k == 0:
            first = builder
        else:
            builder.finalize(f"{prefix}.idx")
    first.merge_file_(parts[1])
    first.finalize(f"{parts[0]}.idx")
    for ext in ("bin", "idx"):
        assert Path(f"{parts[0]}.{ext}").read_bytes() == Path(f"{mt_train}.{ext}").read_bytes()
    wrong = MMapIndexedDatasetBuilder(tmp_path / "w.bin", dtype=np.int32)
    with pytest.raises(IndexedDatasetError, match="dtype"):
        wrong.merge_file_(parts[1])


def test_dtype_choice_and_empty_dataset(tmp_path: Path) -> None:
    assert best_fitting_int_dtype(65499) == np.uint16
    assert best_fitting_int_dtype(65500) == np.uint32
    assert best_fitting_int_dtype(None) == np.uint32
    assert best_fitting_int_dtype(2**32) == np.int64
    b = make_builder(tmp_path / "big.bin", "mmap", vocab_size=70000)
    b.add_item([69999, 2])
    b.finalize(tmp_path / "big.idx")
    big = MMapIndexedDataset(tmp_path / "big")
    assert big.dtype == np.uint32 and big[0].tolist() == [69999, 2]
    e = make_builder(tmp_path / "empty.bin", "mmap", vocab_size=10)
    e.finalize(tmp_path / "empty.idx")
    empty = MMapIndexedDataset(tmp_path / "empty")
    assert len(empty) == 0 and empty.sizes.shape == (0,)


def test_pickles_by_path(mt_train: Path) -> None:
    ds = pickle.loads(pickle.dumps(MMapIndexedDataset(mt_train)))
    assert len(ds) == 3000 and ds[7].shape == (int(ds.sizes[7]),)


def _copy(prefix: Path, tmp_path: Path) -> Path:
    out = tmp_path / "ds"
    for ext in ("bin", "idx"):
        shutil.copy(f"{prefix}.{ext}", f"{out}.{ext}")
    return out


def _patch(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: _patch(f"{p}.idx", 0, b"XXXXXXX"), "not a mmap index"),
        (lambda p: _patch(f"{p}.idx", 0, b"TNTIDX\x00\x00"), "legacy TNTIDX"),
        (lambda p: _patch(f"{p}.idx", 9, struct.pack("<Q", 2)), "unsupported index version 2"),
        (lambda p: _patch(f"{p}.idx", 17, bytes([42])), "unknown dtype code 42"),
        (lambda p: Path(f"{p}.idx").write_bytes(Path(f"{p}.idx").read_bytes()[:20]), "shorter than the 26-byte header"),
        (lambda p: Path(f"{p}.idx").write_bytes(Path(f"{p}.idx").read_bytes()[:-8]), "truncated index"),
        (lambda p: Path(f"{p}.bin").write_bytes(Path(f"{p}.bin").read_bytes()[:-2]), "overruns"),
        (lambda p: _patch(f"{p}.idx", 26 + 4 * 5, struct.pack("<i", -3)), "sentence 5 (size -3"),
        (lambda p: _patch(f"{p}.idx", 26 + 4 * 3000 + 8 * 9, struct.pack("<q", 10**9)), "sentence 9"),
        (lambda p: Path(f"{p}.bin").unlink(), "data file not found"),
    ],
)
def test_corrupt_mmap_files_are_named(mt_train: Path, tmp_path: Path, damage, message: str) -> None:
    p = _copy(mt_train, tmp_path)
    damage(p)
    with pytest.raises(IndexedDatasetError) as err:
        MMapIndexedDataset(p)
    assert isinstance(err.value, ValueError)
    assert str(p) in str(err.value) and message in str(err.value)


def test_reads_fairseq_legacy_tntidx(mt_train: Path) -> None:
    # lazy/: fairseq-preprocess --dataset-impl lazy on the first 40 lines of the same text
    legacy = IndexedDataset(EXTRA / "lazy/train.en-es.en", fix_lua_indexing=True)
    d = Dictionary.load(EXTRA / "lazy/dict.en.txt")
    lines = (EXTRA / "in/train.en").read_text(encoding="utf-8").splitlines()
    assert len(legacy) == 40
    for i in (0, 17, 39):
        assert torch.equal(legacy[i], d.encode_line(lines[i]).long())
    raw = IndexedDataset(EXTRA / "lazy/train.en-es.en")  # as stored: ids + 1
    assert torch.equal(raw[0], legacy[0] + 1)
    assert torch.equal(make_dataset(EXTRA / "lazy/train.en-es.en", "cached")[17], legacy[17])
    assert infer_dataset_impl(EXTRA / "lazy/train.en-es.en") == "cached"


def test_legacy_builder_writes_fairseqs_bytes(tmp_path: Path) -> None:
    src = IndexedDataset(EXTRA / "lazy/valid.en-es.es", fix_lua_indexing=True)
    out = tmp_path / "v"
    b = IndexedDatasetBuilder(f"{out}.bin")
    for i in range(len(src)):
        b.add_item(src[i].int())
    b.finalize(f"{out}.idx")
    for ext in ("bin", "idx"):
        assert Path(f"{out}.{ext}").read_bytes() == (EXTRA / f"lazy/valid.en-es.es.{ext}").read_bytes()


@pytest.mark.parametrize(
    ("cut", "message"), [(30, "shorter than the header"), (100, "truncated index"), ("bin", "do not match")]
)
def test_corrupt_legacy_files_are_named(tmp_path: Path, cut, message: str) -> None:
    p = _copy(EXTRA / "lazy/train.en-es.en", tmp_path)
    if cut == "bin":
        Path(f"{p}.bin").write_bytes(Path(f"{p}.bin").read_bytes()[:100])
    else:
        Path(f"{p}.idx").write_bytes(Path(f"{p}.idx").read_bytes()[:cut])
    with pytest.raises(IndexedDatasetError, match=message) as err:
        IndexedDataset(p)
    assert str(p) in str(err.value)


def test_mmap_index_given_to_legacy_reader(mt_train: Path) -> None:
    with pytest.raises(IndexedDatasetError, match="use --dataset-impl mmap"):
        IndexedDataset(mt_train)


def test_raw_text_dataset_equals_binarized(fairseq_fixtures: Path) -> None:
    raw_dir, bin_dir = fairseq_fixtures / "mt/data-bin-raw", fairseq_fixtures / "mt/data-bin"
    d = Dictionary.load(raw_dir / "dict.es.txt")
    raw = make_dataset(raw_dir / "valid.en-es.es", "raw", dictionary=d)
    mm = make_dataset(bin_dir / "valid.en-es.es", "mmap")
    assert len(raw) == len(mm) == 200
    assert np.array_equal(raw.sizes, mm.sizes)
    assert all(torch.equal(raw[i], mm[i]) for i in range(200))
    assert raw.get_original_text(0) == (raw_dir / "valid.en-es.es").read_text(encoding="utf-8").split("\n")[0]
    with pytest.raises(ValueError, match="needs a dictionary"):
        make_dataset(raw_dir / "valid.en-es.es", "raw")


def test_exists_and_infer(mt_train: Path, fairseq_fixtures: Path, tmp_path: Path) -> None:
    assert data_exists(mt_train) and data_exists(mt_train, "mmap")
    assert not data_exists(tmp_path / "nothing")
    assert make_dataset(tmp_path / "nothing", "mmap") is None
    assert infer_dataset_impl(mt_train) == "mmap"
    assert infer_dataset_impl(fairseq_fixtures / "mt/data-bin-raw/valid.en-es.en") == "raw"
    assert infer_dataset_impl(tmp_path / "nothing") is None
