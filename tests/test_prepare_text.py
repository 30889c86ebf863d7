"""examples/prepare_text.py (the demo's text pipeline) reproduces fairseq's fixture text byte for byte."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_moses_and_joint_bpe_equal_the_fixture_text(fairseq_fixtures, tmp_path) -> None:
    text = fairseq_fixtures / "mt" / "text"
    raw = tmp_path / "raw"
    raw.mkdir()
    for split in ("train", "valid", "test"):
        for lang in ("en", "es"):
            shutil.copy(text / f"{split}.{lang}", raw / f"{split}.{lang}")
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "examples" / "prepare_text.py"), "--input", str(raw), "--output", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    for name in ("bpe.codes", "train.tok.en", "test.tok.es", "train.bpe.en", "valid.bpe.es", "test.bpe.en"):
        assert (out / name).read_bytes() == (text / name).read_bytes(), name
