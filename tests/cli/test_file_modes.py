"""Every file seqloom writes gets the mode a plain ``open`` would give it under the user's umask: the atomic
checkpoint write (a temp file, then a rename) included, which used to leave ``checkpoint_best.pt`` 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from seqloom.cli import preprocess
from seqloom.cli.main import main as seqloom_main
from seqloom.cli.parser import parse_args
from seqloom.cli.train import SPEC, run
from seqloom.paths import current_umask, plain_file_mode

UMASK = 0o027  # group may read, others nothing: neither mkstemp's 0600 nor the usual 0644
EXPECTED = 0o640


@pytest.fixture
def umask() -> Iterator[int]:
    old = os.umask(UMASK)
    try:
        yield UMASK
    finally:
        os.umask(old)


def _modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir() if p.is_file()}


def _preprocess(root: Path) -> Path:
    words = [" ".join(f"w{(i * 7 + j) % 13}" for j in range(3 + i % 5)) for i in range(40)]
    for split in ("train", "valid"):
        (root / f"{split}.src").write_text("\n".join(words) + "\n", encoding="utf-8")
        (root / f"{split}.tgt").write_text("\n".join(reversed(words)) + "\n", encoding="utf-8")
    argv = ["--source-lang", "src", "--target-lang", "tgt", "--trainpref", str(root / "train")]
    argv += ["--validpref", str(root / "valid"), "--destdir", str(root / "data-bin"), "--workers", "1"]
    assert preprocess.main(argv) == 0
    return root / "data-bin"


def test_the_umask_is_read_without_changing_it(umask: int) -> None:
    assert current_umask() == UMASK and current_umask() == UMASK
    assert plain_file_mode() == EXPECTED


def test_preprocess_train_and_export_outputs_follow_the_umask(umask: int, tmp_path: Path) -> None:
    data = _preprocess(tmp_path)
    assert _modes(data) and set(_modes(data).values()) == {EXPECTED}, _modes(data)
    save = tmp_path / "checkpoints"
    model = ["--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "8"]
    model += ["--decoder-embed-dim", "8", "--encoder-ffn-embed-dim", "16", "--decoder-ffn-embed-dim", "16"]
    model += ["--encoder-attention-heads", "2", "--decoder-attention-heads", "2"]
    rest = ["--optimizer", "adam", "--lr", "0.001", "--max-tokens", "200", "--max-epoch", "2", "--cpu"]
    rest += ["--num-workers", "0", "--no-progress-bar", "--save-dir", str(save), "--save-interval-updates", "3"]
    run(parse_args(SPEC, [str(data), *model, *rest]))
    modes = _modes(save)
    assert {"checkpoint_last.pt", "checkpoint_best.pt", "checkpoint1.pt", "checkpoint2.pt"} <= modes.keys()
    assert any(name.startswith("checkpoint_2_3") for name in modes)  # the --save-interval-updates ones too
    assert set(modes.values()) == {EXPECTED}, modes
    out = tmp_path / "export"
    argv = ["export", "--path", str(save / "checkpoint_best.pt"), "--data", str(data), "--out", str(out)]
    assert seqloom_main(argv) == 0
    assert _modes(out) and set(_modes(out).values()) == {EXPECTED}, _modes(out)
