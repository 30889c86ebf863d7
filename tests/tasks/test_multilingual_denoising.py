"""--task multilingual_denoising against fairseq's task on the same two-language folder
(tests/fixtures/multilingual_denoising): dictionary, blocks, per-epoch language resampling, batch order, batches
and per-language validation subsets; then a tiny mBART pretrains on it and validates per language."""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from seqloom.checkpoint.io import load_checkpoint
from seqloom.cli.decoding import load_task
from seqloom.cli.parser import parse_args
from seqloom.cli.train import SPEC, main
from seqloom.data.resampling import ConcatDataset, ResampledDataset
from seqloom.tasks.base import BatchingOptions
from seqloom.tasks.multilingual_denoising import sampling_ratios

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "multilingual_denoising"
FAIRSEQ = json.loads(gzip.decompress((HERE / "fairseq.json.gz").read_bytes()))
MODEL = ["--arch", "mbart_base", "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "16",
         "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32", "--decoder-ffn-embed-dim", "32",
         "--encoder-attention-heads", "2", "--decoder-attention-heads", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def data_bin(fairseq_fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mld")
    env = {**os.environ, "SEQLOOM_FAIRSEQ_FIXTURES": str(fairseq_fixtures)}
    subprocess.run(["bash", str(HERE / "make_data.sh"), str(out), sys.executable, "-m", "seqloom.cli.preprocess"],
                   check=True, env=env)  # fmt: skip
    return out / "data-bin"


def task_for(data_bin: Path, config: str) -> Any:
    """The task fairseq's dump was made with (the same command-line options)."""
    return load_task(parse_args(SPEC, [str(data_bin), *FAIRSEQ[config]["args"], "--optimizer", "adam"]))


def batching(task: Any, epoch: int) -> BatchingOptions:
    return BatchingOptions(max_tokens=256, max_positions=(1024, 1024), seed=task.cfg.seed, epoch=epoch)


def split_as_fairseq(task: Any, dataset: Any, epoch: int, *, targets: bool = True) -> dict[str, Any]:
    itr = task.get_batch_iterator(dataset, batching(task, epoch))
    out = {"order": dataset.ordered_indices().tolist(), "sizes": [int(s) for s in dataset.sizes],
           "batches": [b.tolist() for b in itr.frozen_batches]}  # fmt: skip
    if targets:
        out["targets"] = [dataset[i]["target"].tolist() for i in range(len(dataset))]
    return out


@pytest.mark.parametrize("config", ["lang_tokens", "plain"])
def test_dictionary_and_validation_splits_equal_fairseqs(data_bin: Path, config: str) -> None:
    task = task_for(data_bin, config)
    want = FAIRSEQ[config]
    d = task.dictionary
    assert len(d) == want["dict_len"] and task.mask_idx == want["mask"]
    assert {s: d.index(s) for s in ("[en]", "[es]") if s in d.indices} == want["lang_ids"]
    task.load_dataset("valid")
    assert ",".join(["valid", *task.language_subsets["valid"]]) == want["valid_subset"]
    for split in ("valid", "valid_es"):
        assert split_as_fairseq(task, task.datasets[split], 1) == want[split], split


@pytest.mark.parametrize("config", ["lang_tokens", "plain"])
def test_training_mixture_equals_fairseqs_over_epochs(data_bin: Path, config: str) -> None:
    """The resampled languages, their blocks, the fixed batching order and each epoch's batches."""
    task = task_for(data_bin, config)
    dataset = task.load_dataset("train", epoch=1, combine=True)
    for epoch in ("1", "2", "3"):
        got = split_as_fairseq(task, dataset, int(epoch), targets=epoch == "1")
        want = {k: v for k, v in FAIRSEQ[config]["train"][epoch].items() if k in got}
        assert got == want, f"epoch {epoch}"
        if config == "lang_tokens":  # every block ends with its language's token
            ends = {int(dataset[i]["target"][-1]) for i in range(len(dataset))}
            assert ends == set(FAIRSEQ[config]["lang_ids"].values())


def test_sampling_ratios_upsample_the_smaller_language() -> None:
    ratios = sampling_ratios(np.array([300.0, 100.0]), 0.5)
    probs = ratios * np.array([300.0, 100.0]) / 400
    assert math.isclose(probs.sum(), 1.0) and math.isclose(probs[0] / probs[1], math.sqrt(3))
    assert ratios[1] > 1 > ratios[0]
    assert np.allclose(sampling_ratios(np.array([300.0, 100.0]), 1.0), 1.0)


def test_resampled_dataset_draws_per_epoch_and_refuses_bad_ratios() -> None:
    base = ConcatDataset([_Items(list(range(10)))])
    r = ResampledDataset(base, size_ratio=1.5, replace=True, seed=1)
    first = [r[i] for i in range(len(r))]
    assert len(r) == 15 and set(first) <= set(range(10))
    r.set_epoch(2)
    assert [r[i] for i in range(len(r))] != first and not r.can_reuse_epoch_itr_across_epochs
    with pytest.raises(ValueError, match="without replacement"):
        ResampledDataset(base, size_ratio=1.0, replace=False, seed=1)


def test_missing_language_folder_is_named(data_bin: Path, tmp_path: Path) -> None:
    argv = [str(data_bin), "--task", "multilingual_denoising", "--langs", "en,de", "--arch", "bart_base",
            "--optimizer", "adam"]  # fmt: skip
    task = load_task(parse_args(SPEC, argv))
    with pytest.raises(FileNotFoundError, match=r"data-bin/de.*'de'"):
        task.load_dataset("valid")


def test_tiny_mbart_pretrains_and_validates_per_language(data_bin: Path, tmp_path: Path,
                                                         capfd: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    argv = [str(data_bin), "--cpu", "--task", "multilingual_denoising", "--add-lang-token",
            "--multilang-sampling-alpha", "0.5", "--tokens-per-sample", "64", "--mask", "0.3", "--rotate", "0",
            "--permute-sentences", "1", *MODEL, "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "256",
            "--max-epoch", "2", "--required-batch-size-multiple", "1", "--save-dir", str(tmp_path), "--no-epoch-checkpoints",
            "--num-workers", "0",
            "--log-format", "json", "--seed", "3"]  # fmt: skip
    assert main(argv) == 0
    err = capfd.readouterr().err
    for subset in ("valid", "valid_en", "valid_es"):
        rows = [json.loads(line.split(f"| {subset} | ")[1]) for line in err.splitlines() if f"| {subset} | " in line]
        assert len(rows) == 2 and all(math.isfinite(float(r[f"{subset}_loss"])) for r in rows), subset
    # the epochs have the batches of fairseq's dump (35, then 42 after the languages were drawn again)
    state = load_checkpoint(tmp_path / "checkpoint_last.pt")
    batches = sum(len(FAIRSEQ["lang_tokens"]["train"][e]["batches"]) for e in ("1", "2"))
    assert state["optimizer_history"][-1]["num_updates"] == batches
    assert state["model"]["encoder.embed_tokens.weight"].shape[0] == FAIRSEQ["lang_tokens"]["dict_len"]


class _Items:
    def __init__(self, items: list[int]) -> None:
        self.items, self.sizes = items, np.ones(len(items), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> int:
        return self.items[index]


def test_bart_hub_loads_the_pretrained_checkpoint_with_its_language_tokens(data_bin: Path, tmp_path: Path) -> None:
    from seqloom.hub import BARTModel

    argv = [str(data_bin), "--cpu", "--task", "multilingual_denoising", "--add-lang-token", "--tokens-per-sample",
            "64", "--mask", "0.3", *MODEL, "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "256",
            "--max-update", "2", "--save-dir", str(tmp_path), "--no-epoch-checkpoints", "--num-workers", "0"]  # fmt: skip
    assert main(argv) == 0
    want = FAIRSEQ["lang_tokens"]
    # languages from the data folder's sub-folders (no --langs was saved), as fairseq's hub finds them
    hub = BARTModel.from_pretrained(tmp_path, "checkpoint_last.pt", data_name_or_path=str(data_bin), bpe=None)
    assert len(hub.src_dict) == want["dict_len"] and hub.src_dict.index("<mask>") == want["mask"]
    assert {s: hub.src_dict.index(s) for s in want["lang_ids"]} == want["lang_ids"]
    tokens = hub.src_dict.encode_line("<s> In the beginning </s> [en]", append_eos=False).long()
    assert hub.extract_features(tokens).shape == (1, 6, 16)
    swapped = BARTModel.from_pretrained(tmp_path, "checkpoint_last.pt", data_name_or_path=str(data_bin), bpe=None,
                                        langs="es,en")  # fmt: skip
    assert swapped.src_dict.index("[es]") == want["lang_ids"]["[en]"]
    with pytest.raises(ValueError, match="403 rows but the dictionary has 404"):  # three languages named
        BARTModel.from_pretrained(tmp_path, "checkpoint_last.pt", data_name_or_path=str(data_bin), bpe=None,
                                  langs="en,es,fr")  # fmt: skip


def test_resume_inside_a_resampled_epoch_is_exact(data_bin: Path, tmp_path: Path) -> None:
    """Stopped 10 updates into epoch 2 and resumed == straight through 2 epochs (same weights)."""

    def argv(save: Path, *stop: str) -> list[str]:
        return [str(data_bin), "--cpu", "--task", "multilingual_denoising", "--add-lang-token",
                "--multilang-sampling-alpha", "0.5", "--tokens-per-sample", "64", "--mask", "0.3", *MODEL,
                "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "256", "--seed", "3", "--save-dir", str(save),
                "--no-epoch-checkpoints", "--num-workers", "0", "--disable-validation", *stop]  # fmt: skip

    first_epoch = len(FAIRSEQ["lang_tokens"]["train"]["1"]["batches"])
    assert main(argv(tmp_path / "straight", "--max-epoch", "2")) == 0
    assert main(argv(tmp_path / "resumed", "--max-update", str(first_epoch + 10))) == 0
    assert main(argv(tmp_path / "resumed", "--max-epoch", "2")) == 0
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint_last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoint_last.pt")
    assert resumed["optimizer_history"][-1]["num_updates"] == straight["optimizer_history"][-1]["num_updates"]
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
