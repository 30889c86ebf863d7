"""Alignment supervision (Garg et al. 2019) as fairseq does it, on a tiny transformer_align model fairseq trained
(tests/fixtures/transformer_align): the collated alignments, the criterion's losses and --print-alignment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from seqloom.cli.train import SPEC
from seqloom.config.parser import parse_args
from seqloom.generation.runtime import load_task
from seqloom.tasks.base import BatchingOptions

HERE = Path(__file__).parents[1] / "fixtures" / "transformer_align"
FAIRSEQ = json.loads((HERE / "fairseq.json").read_text())


@pytest.fixture(scope="module")
def data_bin(fairseq_fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's folder, made by ``seqloom preprocess --align-suffix`` (byte-equal to fairseq's)."""
    out = tmp_path_factory.mktemp("align")
    subprocess.run([sys.executable, str(HERE / "make_data.py"), str(out / "text")], check=True)
    text = out / "text"
    subprocess.run([sys.executable, "-m", "seqloom.cli.preprocess", "--source-lang", "en", "--target-lang", "es",
                    "--trainpref", str(text / "train"), "--validpref", str(text / "valid"), "--align-suffix", "align",
                    "--srcdict", str(text / "dict.en.txt"), "--tgtdict", str(text / "dict.es.txt"), "--destdir",
                    str(out / "data-bin"), "--workers", "1"], check=True, capture_output=True)  # fmt: skip
    return out / "data-bin"


def first_valid_batch(data_bin: Path, *extra: str) -> tuple[Any, dict[str, Any], list[int]]:
    task = load_task(parse_args(SPEC, [str(data_bin), "--arch", "transformer", "--optimizer", "adam",
                                       "--load-alignments", *extra]))  # fmt: skip
    dataset = task.load_dataset("valid")
    ids = next(iter(task.get_batch_iterator(dataset, BatchingOptions(max_tokens=1024, max_positions=(1024, 1024),
                                                                     seed=1)).frozen_batches))  # fmt: skip
    return task, dataset.collater([dataset[i] for i in ids]), ids.tolist()


def test_alignments_are_collated_as_fairseq(data_bin: Path) -> None:
    """Pairs offset into the left-padded sources and the flattened targets; weights 1 / pairs per target index."""
    _, sample, ids = first_valid_batch(data_bin)
    assert ids == FAIRSEQ["batch"] and sample["id"].tolist() == FAIRSEQ["ids"]
    assert sample["alignments"].tolist() == FAIRSEQ["alignments"]
    assert sample["align_weights"].tolist() == FAIRSEQ["align_weights"]


def test_alignments_reaching_the_last_token_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    import torch

    from seqloom.data.language_pair_dataset import collate_alignments

    pairs = [torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 3, 1])]  # the second reaches source token 3 of 4
    out = collate_alignments(pairs, torch.tensor([4, 4]), torch.tensor([3, 3]), src_width=4, tgt_width=3,
                             left_pad_source=True, left_pad_target=False)  # fmt: skip
    assert out["alignments"].tolist() == [[0, 0], [1, 1]] and out["align_weights"].tolist() == [1.0, 1.0]
    assert "alignment size mismatch" in caplog.text
