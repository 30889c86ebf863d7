"""--task denoising on fairseq's BART data: fairseq's dictionary, blocks and batches; a tiny BART trains on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seqloom.checkpoint.io import load_checkpoint
from seqloom.data.noising import NoiseOptions
from seqloom.hub.bart import load_dictionary
from seqloom.models.bart.interop import model_from_state
from seqloom.tasks.base import BatchingOptions
from seqloom.tasks.denoising import DenoisingConfig, DenoisingTask, word_start_table

# as fairseq's bart/checkpoints/train.log: --tokens-per-sample 128, complete_doc
FAIRSEQ_BLOCKS = {"train": 946, "valid": 70}
# fairseq's StripTokenDataset + TokenBlockDataset over bart/data-bin, summed over all blocks (run once with fairseq)
FAIRSEQ_BLOCK_TOKEN_SUMS = {"train": 28235282, "valid": 2222477}


@pytest.fixture(scope="module")
def task(fairseq_fixtures: Path) -> DenoisingTask:
    cfg = DenoisingConfig(data=str(fairseq_fixtures / "bart" / "data-bin"), tokens_per_sample=128, mask=0.3,
                          mask_random=0.1, poisson_lambda=3.5, permute_sentences=1, mask_length="span-poisson",
                          replace_length=1, rotate=0.0)  # fmt: skip
    return DenoisingTask.setup_task(cfg)


def test_mask_symbol_appended_as_fairseq(task: DenoisingTask, fairseq_fixtures: Path) -> None:
    assert len(task.dictionary) == 4089 and task.mask_idx == 4088
    model = load_checkpoint(fairseq_fixtures / "bart" / "model" / "model.pt")["model"]
    assert model["encoder.embed_tokens.weight"].shape[0] == len(task.dictionary)


@pytest.mark.parametrize("split", ["train", "valid"])
def test_blocks_equal_fairseqs(task: DenoisingTask, split: str) -> None:
    blocks = task.blocks(split)
    assert len(blocks) == FAIRSEQ_BLOCKS[split]
    total = sum(int(blocks[i][1:-1].sum()) for i in range(len(blocks)))
    assert total == FAIRSEQ_BLOCK_TOKEN_SUMS[split]
    first = blocks[0]
    assert first[0] == 0 and first[-1] == 2 and 2 not in first[1:-1].tolist()
    if split == "train":
        assert first[1:11].tolist() == [184, 29, 4, 18, 16, 293, 89, 32, 486, 4] and blocks.sizes[0] == 106


def test_batches(task: DenoisingTask) -> None:
    dataset = task.load_dataset("valid")
    itr = task.get_batch_iterator(dataset, BatchingOptions(max_tokens=2048, max_positions=(1024, 1024)))
    batch = next(iter(itr.next_epoch_itr(shuffle=False)))
    src, prev, target = batch["net_input"]["src_tokens"], batch["net_input"]["prev_output_tokens"], batch["target"]
    lengths = batch["net_input"]["src_lengths"]
    assert torch.equal(lengths, lengths.sort(descending=True).values)
    assert (src[:, 0] == 0).all() and (target[:, 0] == 0).all() and (prev[:, 0] == 2).all()
    for i in range(target.size(0)):  # the decoder reads the target shifted right, </s> first
        n = int((target[i] != 1).sum())
        assert torch.equal(prev[i, 1:n], target[i, : n - 1]) and target[i, n - 1] == 2
    assert batch["ntokens"] == int((target != 1).sum())
    masked = int((src == task.mask_idx).sum())
    assert masked > 0 and src.size(1) < target.size(1)  # spans of several tokens became one <mask>
    item = dataset[3]
    dataset.set_epoch(2)
    assert torch.equal(item["target"], dataset[3]["target"]) and not torch.equal(item["source"], dataset[3]["source"])


def test_gpt2_word_starts(gpt2_bpe: Path, task: DenoisingTask) -> None:
    gpt2 = gpt2_bpe
    cfg = DenoisingConfig(bpe="gpt2", gpt2_encoder_json=str(gpt2 / "encoder.json"),
                          gpt2_vocab_bpe=str(gpt2 / "vocab.bpe"), mask_length="word")  # fmt: skip
    table = word_start_table(cfg, task.dictionary)
    assert table is not None and table.shape == (4089,)
    d = task.dictionary
    assert table[: d.nspecial].all() and not table[d.index("<mask>")]  # as fairseq: "<mask>" has no space
    assert table[d.index("262")] and not table[d.index("13")]  # " the" starts a word, "." does not
    assert word_start_table(DenoisingConfig(mask_length="word"), d) is None  # no --bpe: every subword
    assert word_start_table(DenoisingConfig(**{**vars(cfg), "mask_length": "subword"}), d) is None
    whole = word_start_table(DenoisingConfig(**{**vars(cfg), "mask_length": "subword", "mask_whole_words": True}), d)
    assert whole is not None and np.array_equal(whole, table)
    with pytest.raises(ValueError, match="--mask-whole-words needs --bpe"):
        word_start_table(DenoisingConfig(mask_whole_words=True), d)


def test_bad_flags_are_named() -> None:
    with pytest.raises(ValueError, match="--replace-length"):
        NoiseOptions(replace_length=5).check()


def tiny_argv(data: Path, save_dir: Path, max_update: int) -> list[str]:
    return [str(data), "--task", "denoising", "--arch", "bart_base", "--encoder-layers", "1", "--decoder-layers",
            "1", "--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
            "--decoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
            "--mask", "0.3", "--mask-random", "0.1", "--mask-length", "span-poisson", "--replace-length", "1",
            "--permute-sentences", "1", "--rotate", "0", "--tokens-per-sample", "64", "--max-tokens", "512",
            "--max-update", str(max_update), "--optimizer", "adam", "--lr", "1e-3", "--seed", "1",
            "--disable-validation", "--save-dir", str(save_dir), "--cpu", "--no-epoch-checkpoints"]  # fmt: skip


def test_tiny_bart_trains_and_loads(fairseq_fixtures: Path, tmp_path: Path) -> None:
    from seqloom.cli.train import main

    data = fairseq_fixtures / "bart" / "data-bin"
    assert main(tiny_argv(data, tmp_path, 3)) == 0
    state = load_checkpoint(tmp_path / "checkpoint_last.pt")
    model = model_from_state(state, load_dictionary(data / "dict.txt"), source="checkpoint_last.pt")
    assert model.encoder.embed_positions.weight.shape == (1026, 16)
    assert state["optimizer_history"][-1]["num_updates"] == 3


def test_resume_mid_epoch_is_exact(fairseq_fixtures: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The noise is a function of (seed, epoch, index): 2 updates + restart + 2 more == 4 straight."""
    from seqloom.cli.train import main

    data = fairseq_fixtures / "bart" / "data-bin"
    assert main(tiny_argv(data, tmp_path / "straight", 4)) == 0
    assert main(tiny_argv(data, tmp_path / "resumed", 2)) == 0
    capfd.readouterr()
    assert main(tiny_argv(data, tmp_path / "resumed", 4)) == 0
    assert "(epoch 1 @ 2 updates)" in capfd.readouterr().err  # the restart really resumed mid-epoch
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint_last.pt")["model"]
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoint_last.pt")["model"]
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key


def test_reading_ahead_changes_no_update(fairseq_fixtures: Path, tmp_path: Path) -> None:
    """--data-buffer-size (default 10) without worker processes: batches noised in a background thread while
    the model trains give the same weights as batches read in turn (0), dropout included, since no data code
    draws from torch's generator (a ``torch.rand`` in the dataset's ``__getitem__`` makes this fail)."""
    from seqloom.cli.train import main

    data = fairseq_fixtures / "bart" / "data-bin"
    dropout = ["--dropout", "0.1", "--attention-dropout", "0.1", "--num-workers", "0"]  # bart_base has no dropout
    assert main([*tiny_argv(data, tmp_path / "ahead", 4), *dropout]) == 0
    assert main([*tiny_argv(data, tmp_path / "in_turn", 4), *dropout, "--data-buffer-size", "0"]) == 0
    ahead = load_checkpoint(tmp_path / "ahead" / "checkpoint_last.pt")["model"]
    in_turn = load_checkpoint(tmp_path / "in_turn" / "checkpoint_last.pt")["model"]
    for key, value in ahead.items():
        assert torch.equal(value, in_turn[key]), key
