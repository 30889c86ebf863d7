"""Checkpoint files: safe loading (no pickled code runs), clear errors, atomic saving."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqloom.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint"


def test_round_trip_keeps_namespace_args_and_tensors(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint_last.pt"
    state = {"args": argparse.Namespace(arch="transformer", lr=[0.25]), "model": {"w": torch.arange(4.0)}}
    save_checkpoint(state, path)
    loaded = load_checkpoint(path)
    assert loaded["args"] == state["args"]
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_last.pt"]  # no temp file left


def test_fairseqs_checkpoint_loads_safely(fairseq_fixtures: Path) -> None:
    state = load_checkpoint(fairseq_fixtures / "mt" / "checkpoints" / "checkpoint_last.pt")
    assert isinstance(state["cfg"]["model"], argparse.Namespace)
    assert state["cfg"]["model"].arch == "transformer"
    assert "encoder.embed_tokens.weight" in state["model"] and "last_optimizer_state" in state


def test_pickled_omegaconf_cfg_reads_as_plain_data_without_omegaconf() -> None:
    state = load_checkpoint(FIXTURES / "omegaconf_cfg.pt")
    cfg = state["cfg"]
    assert type(cfg) is dict and type(cfg["model"]) is dict
    assert cfg["model"]["encoder"] == {"embed_dim": 8, "ffn_embed_dim": 16, "layers": 1}
    assert cfg["model"]["decoder"]["output_dim"] == "${model.decoder.embed_dim}"
    assert cfg["optimization"]["update_freq"] == [1, 2] and cfg["task"]["left_pad_source"] is True
    assert "omegaconf" not in sys.modules


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_malicious_global_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": _Evil(marker)}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert not marker.exists()
    assert str(path) in str(err.value) and "system" in str(err.value)


def test_missing_and_truncated_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    path = tmp_path / "cut.pt"
    save_checkpoint({"model": {"w": torch.randn(1000)}}, path)
    path.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(CheckpointError, match=r"cut\.pt.*truncated or corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "data",
    [b"hello\n", b"", bytes(range(256)) * 4, b"\x80\x02K\x05."],
    ids=["text", "empty", "binary", "pickled-int"],
)
def test_a_file_of_another_format_is_a_checkpoint_error_naming_it(tmp_path: Path, data: bytes) -> None:
    # the weights-only unpickler fails on foreign bytes with KeyError/IndexError, not only UnpicklingError
    path = tmp_path / "notes.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=r"notes\.pt"):
        load_checkpoint(path)


def test_failed_save_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint_last.pt"
    save_checkpoint({"step": 1}, path)

    def broken_save(obj: object, f: object) -> None:
        f.write(b"partial")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(CheckpointError, match=r"checkpoint_last\.pt: writing failed \(disk full\); the file there"):
        save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_last.pt"]


CRASHING_SAVE = """
import os, sys, torch
from seqloom.checkpoint import save_checkpoint
os.replace = lambda *a: os._exit(9)  # the process dies after writing the temp file, before the rename
save_checkpoint({"step": 2, "w": torch.randn(10000)}, sys.argv[1])
"""


def test_a_folder_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(CheckpointError, match=r"x\.pt: cannot be written \(.*taken is a file, not a folder\)"):
        save_checkpoint({"step": 1}, tmp_path / "taken" / "x.pt")


def test_process_killed_during_save_leaves_the_old_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint_last.pt"
    save_checkpoint({"step": 1}, path)
    proc = subprocess.run([sys.executable, "-c", CRASHING_SAVE, str(path)], capture_output=True)
    assert proc.returncode == 9, proc.stderr.decode()
    assert load_checkpoint(path) == {"step": 1}


def test_dictconfig_built_by_fairseq_reads_as_plain_data() -> None:
    """The DictConfig fairseq's own ``convert_namespace_to_omegaconf`` builds (model args as a Namespace)."""
    from seqloom.models.transformer import config_from_checkpoint

    state = load_checkpoint(FIXTURES / "fairseq_dictconfig_cfg.pt")
    assert state["cfg"]["optimization"]["lr"] == [0.001] and state["cfg"]["dataset"]["max_tokens"] == 2048
    assert isinstance(state["cfg"]["model"], argparse.Namespace)
    cfg = config_from_checkpoint(state)
    assert (cfg.encoder_embed_dim, cfg.decoder_layers, cfg.share_decoder_input_output_embed) == (64, 2, True)
    assert "omegaconf" not in sys.modules
