"""A crafted checkpoint cannot make loading allocate more than its file holds: records whose declared sizes are
huge (a compressed record expanding to hundreds of MB, a stored one larger than the file, a storage the pickle
declares far larger than its record) are refused before any tensor is read, with the file, record, size and
limit in the message. Real checkpoints still load. The crafted files are a few KB on disk."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch

from seqloom.checkpoint import CheckpointError, limits, load_checkpoint

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint"


def saved(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def rewrite(source: bytes, path: Path, replace: dict[str, Any]) -> None:
    """Copies a torch zip to ``path``, records ending with a key of ``replace`` replaced by its bytes, or by a
    ``(chunks, count)`` pair streamed deflated (a large record that stays small on disk)."""
    with zipfile.ZipFile(io.BytesIO(source)) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            new = next((v for k, v in replace.items() if info.filename.endswith(k)), None)
            if isinstance(new, tuple):
                chunk, count = new
                big = zipfile.ZipInfo(info.filename)
                big.compress_type = zipfile.ZIP_DEFLATED
                with dst.open(big, "w", force_zip64=True) as out:
                    for _ in range(count):
                        out.write(chunk)
            else:
                dst.writestr(info, new if new is not None else src.read(info))


def declare_size(path: Path, record: str, size: int) -> None:
    """Makes the zip directory say that stored ``record`` holds ``size`` bytes (its data unchanged)."""
    data = bytearray(path.read_bytes())
    name = record.encode()
    at = data.find(b"PK\x01\x02")  # the central directory's entries
    while at != -1:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if bytes(data[at + 46 : at + 46 + name_len]).endswith(name):
            struct.pack_into("<II", data, at + 20, size, size)  # compressed and uncompressed size
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))


def test_a_compressed_record_expanding_far_beyond_its_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pt"
    rewrite(saved({"model": {"w": torch.zeros(4)}}), path, {"data/0": (bytes(2**20), 96)})  # 96 MiB of zeros
    assert path.stat().st_size < 400_000
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    said = str(err.value)
    assert (
        said.startswith(f"checkpoint {path}: refused to load: record '")
        and "data/0' declares 100,663,296 bytes" in said
    )
    assert "compressed bytes plus 64 MiB" in said and "damaged or crafted" in said


def test_a_stored_record_larger_than_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.pt"
    path.write_bytes(saved({"model": {"w": torch.zeros(4)}}))
    declare_size(path, "data/0", 3 * 2**30)
    with pytest.raises(CheckpointError, match=r"record '\S+/data/0' declares 3,221,225,472 bytes, more than [\d,]+ "
                                              r"\(the file's own size"):  # fmt: skip
        load_checkpoint(path)


class _Storage:
    """Pickles as torch's reference to storage record '0', declaring ``numel`` floats."""

    def __init__(self, numel: int) -> None:
        self.numel = numel


def crafted_pickle(numel: int) -> bytes:
    """A torch pickle whose one tensor's storage declares ``numel`` float32 elements."""

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return ("storage", torch.FloatStorage, "0", "cpu", obj.numel) if isinstance(obj, _Storage) else None

    class Tensor:
        def __reduce__(self) -> Any:
            return torch._utils._rebuild_tensor_v2, (_Storage(numel), 0, (numel,), (1,), False, OrderedDict())

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"model": {"w": Tensor()}})
    return buffer.getvalue()


def test_a_storage_declared_larger_than_its_record_is_refused_before_allocating(tmp_path: Path) -> None:
    path = tmp_path / "huge-storage.pt"
    rewrite(saved({"model": {"w": torch.zeros(4)}}), path, {"data.pkl": crafted_pickle(1_500_000_000)})
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert (f"checkpoint {path}: refused to load: its pickle declares a FloatStorage of 6,000,000,000 bytes for "
            "record 'archive/data/0', which holds 16 bytes (the limit)") in str(err.value)  # fmt: skip
    # the same pickle declaring what the record holds loads: the check is on sizes, not on hand-made pickles
    rewrite(saved({"model": {"w": torch.zeros(4)}}), path, {"data.pkl": crafted_pickle(4)})
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.zeros(4))


def test_tensors_far_beyond_the_models_size_are_refused_when_it_is_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.pt"
    path.write_bytes(saved({"model": {"w": torch.zeros(1000)}}))
    monkeypatch.setattr(limits, "REST_BYTES", 0)  # (the real allowance, 64 MiB, would need a large file)
    assert load_checkpoint(path, expected_params=1000)["model"]["w"].shape == (1000,)
    with pytest.raises(CheckpointError, match=r"its tensors declare 4,000 bytes in all, more than 320 \(the limit "
                                              r"for a model of 10 parameters"):  # fmt: skip
        load_checkpoint(path, expected_params=10)


def test_real_checkpoints_load_within_the_limits(fairseq_fixtures: Path) -> None:
    for path in (FIXTURES / "bleu_metrics.pt", fairseq_fixtures / "mt" / "checkpoints" / "checkpoint_last.pt"):
        weights = load_checkpoint(path)["model"]
        # with Adam's two moments and the weights themselves (the mt file has them) the model's own size suffices
        state = load_checkpoint(path, expected_params=sum(t.numel() for t in weights.values()))
        assert state["model"].keys() == weights.keys()


def test_running_out_of_memory_is_said_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.pt"
    path.write_bytes(saved({"model": {"w": torch.zeros(4)}}))

    def no_memory(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried "
                           "to allocate 6000000000 bytes. Error code 12 (Cannot allocate memory)")  # fmt: skip

    monkeypatch.setattr(torch, "load", no_memory)
    with pytest.raises(CheckpointError, match=rf"checkpoint {path}: not enough memory to load it \(the file is "):
        load_checkpoint(path)


def test_average_checkpoints_bounds_the_others_by_the_first_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from seqloom.cli.average_checkpoints import average_checkpoints

    small, big = tmp_path / "a.pt", tmp_path / "b.pt"
    small.write_bytes(saved({"model": {"w": torch.ones(10)}}))
    big.write_bytes(saved({"model": {"w": torch.ones(10)}, "extra_state": {"x": torch.zeros(1000)}}))
    assert torch.equal(average_checkpoints([str(small), str(small)])["model"]["w"], torch.ones(10))
    monkeypatch.setattr(limits, "REST_BYTES", 0)
    with pytest.raises(CheckpointError, match=rf"checkpoint {big}: refused to load: its tensors declare 4,040 bytes"):
        average_checkpoints([str(small), str(big)])
