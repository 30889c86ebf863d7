"""preprocess -> train end to end: fairseq-readable checkpoints, pinned determinism, exact resume, DDP.

The corpus is made here: 160 synthetic sentence pairs (the target is the source reversed, with its own
words), small enough that a 1+1-layer d16 transformer trains for a few dozen updates in seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from seqloom.checkpoint.io import load_checkpoint
from seqloom.cli import average_checkpoints, preprocess, validate
from seqloom.cli.build import build_task
from seqloom.cli.parser import parse_args
from seqloom.cli.train import SPEC, run
from seqloom.devices import torch_release
from seqloom.trainer.sharding import CPU_FSDP_SINCE

REPO = Path(__file__).resolve().parents[2]


def _corpus(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    src, tgt = [], []
    for _ in range(n):
        words = [rng.randrange(24) for _ in range(rng.randint(3, 11))]
        src.append(" ".join(f"s{w}" for w in words))
        tgt.append(" ".join(f"t{w}" for w in reversed(words)))
    return src, tgt


@pytest.fixture(scope="module")
def data_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train-e2e")
    for split, n, seed in (("train", 160, 1), ("valid", 24, 2)):
        src, tgt = _corpus(n, seed)
        (root / f"{split}.src").write_text("\n".join(src) + "\n", encoding="utf-8")
        (root / f"{split}.tgt").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    argv = ["--source-lang", "src", "--target-lang", "tgt", "--trainpref", str(root / "train")]
    argv += ["--validpref", str(root / "valid"), "--destdir", str(root / "data-bin"), "--workers", "1"]
    assert preprocess.main(argv) == 0
    return root / "data-bin"


def train_args(data: Path, save_dir: Path, *extra: str, max_update: int = 24, dropout: str = "0.1") -> list[str]:
    model = ["--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1"]
    model += ["--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32"]
    model += ["--decoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2"]
    model += ["--dropout", dropout, "--share-decoder-input-output-embed"]
    optim = ["--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "0.005", "--lr-scheduler", "inverse_sqrt"]
    optim += ["--warmup-updates", "4", "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"]
    run_ = ["--max-tokens", "160", "--max-update", str(max_update), "--seed", "3", "--cpu", "--num-workers", "0"]
    run_ += ["--log-format", "json", "--log-interval", "1", "--save-dir", str(save_dir), "--no-epoch-checkpoints"]
    return [str(data), *model, *optim, *run_, *extra]


def train(argv: list[str]) -> list[dict[str, float]]:
    return run(parse_args(SPEC, argv)).history


@pytest.fixture(scope="module")
def baseline(data_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, float]]]:
    save = tmp_path_factory.mktemp("baseline")
    return save, train(train_args(data_bin, save, "--save-interval-updates", "4", "--keep-interval-updates", "2"))


def test_losses_finite_decreasing_and_pinned_by_the_seed(
    data_bin: Path, baseline: tuple[Path, list[dict[str, float]]], tmp_path: Path
) -> None:
    _, history = baseline
    losses = [h["loss"] for h in history]
    assert [h["num_updates"] for h in history] == list(range(1, 25))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.5
    again = train(train_args(data_bin, tmp_path / "again", max_update=8))
    assert [h["loss"] for h in again] == losses[:8]
    assert [h["gnorm"] for h in again] == [h["gnorm"] for h in history[:8]]


def test_checkpoint_is_fairseq_shaped(baseline: tuple[Path, list[dict[str, float]]]) -> None:
    save, _ = baseline
    names = sorted(p.name for p in save.glob("*.pt"))
    # 12 batches an epoch: updates 12 and 24 end epochs (no update checkpoint, and epoch checkpoints are
    # off); --keep-interval-updates 2 pruned checkpoint_1_4 and checkpoint_1_8
    assert names == ["checkpoint_2_16.pt", "checkpoint_2_20.pt", "checkpoint_best.pt", "checkpoint_last.pt"]
    state = load_checkpoint(save / "checkpoint_last.pt")
    assert {"args", "model", "optimizer_history", "extra_state", "last_optimizer_state"} <= set(state)
    args = state["args"]
    assert isinstance(args, argparse.Namespace)
    assert (args.arch, args.task, args.criterion, args.optimizer) == (
        "transformer",
        "translation",
        "label_smoothed_cross_entropy",
        "adam",
    )
    assert (args.encoder_embed_dim, args.decoder_input_dim, args.encoder_layers) == (16, 16, 1)
    assert args.adam_betas == "(0.9, 0.98)" and args.lr == [0.005] and args.max_tokens == 160
    last = state["optimizer_history"][-1]
    assert last["criterion_name"] == "LabelSmoothedCrossEntropyCriterion" and last["optimizer_name"] == "FairseqAdam"
    assert last["num_updates"] == 24 and "best" in last["lr_scheduler_state"]
    extra = state["extra_state"]
    assert extra["train_iterator"] == {"version": 2, "epoch": 2, "iterations_in_epoch": 12, "shuffle": True}
    assert extra["val_loss"] is not None and extra["best"] <= extra["val_loss"]
    assert "encoder.layers.0.self_attn.k_proj.weight" in state["model"]


def test_validate_and_average_read_our_checkpoints(
    data_bin: Path, baseline: tuple[Path, list[dict[str, float]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save, _ = baseline
    out = tmp_path / "avg.pt"
    argv = ["--inputs", str(save), "--num-update-checkpoints", "2", "--output", str(out)]
    assert average_checkpoints.main(argv) == 0
    a, b = (load_checkpoint(save / f"checkpoint_2_{u}.pt")["model"] for u in (16, 20))
    avg = load_checkpoint(out)["model"]
    key = "decoder.layers.0.fc1.weight"
    torch.testing.assert_close(avg[key], (a[key] + b[key]) / 2)
    assert validate.main([str(data_bin), "--cpu", "--path", str(out), "--batch-size", "8", "--num-workers", "0"]) == 0
    assert "valid on 'valid' subset | loss" in capsys.readouterr().err
    missing = ["--inputs", str(save / "checkpoint_2_16.pt"), str(tmp_path / "nosuch.pt"), "--output", str(out)]
    assert average_checkpoints.main(missing) == 1  # one line naming the file, no traceback


def test_average_of_different_models_is_named(fairseq_fixtures: Path, tmp_path: Path, capfd) -> None:
    mt, lm = (fairseq_fixtures / name / "checkpoints" / "checkpoint_best.pt" for name in ("mt", "lm"))
    argv = ["--inputs", str(mt), str(lm), "--output", str(tmp_path / "avg.pt")]
    assert average_checkpoints.main(argv) == 1
    assert "its model keys differ" in capfd.readouterr().err and not (tmp_path / "avg.pt").exists()
    folder = ["--inputs", str(mt.parent), "--num-epoch-checkpoints", "2", "--output", str(tmp_path / "avg.pt")]
    assert average_checkpoints.main(folder) == 1  # the fixture folder holds no checkpoint<N>.pt: a line, no traceback
    err = capfd.readouterr().err
    assert "found 0 epoch checkpoint files but need at least 2" in err and "Traceback" not in err
    (tmp_path / "taken").write_text("a file, not a folder")
    assert average_checkpoints.main(["--inputs", str(mt), "--output", str(tmp_path / "taken" / "avg.pt")]) == 1
    err = capfd.readouterr().err
    assert f"{tmp_path / 'taken'} is a file, not a folder" in err and "Traceback" not in err


def test_sigkill_mid_epoch_then_restart_continues_exactly(
    data_bin: Path, baseline: tuple[Path, list[dict[str, float]]], tmp_path: Path
) -> None:
    _, uninterrupted = baseline
    argv = train_args(data_bin, tmp_path / "ckpt", "--save-interval-updates", "4")
    # a child process that SIGKILLs itself just before update 11 (the last save was at update 8, mid-epoch 1)
    killer = (
        "import os, signal, sys\n"
        "from seqloom.trainer.trainer import Trainer\n"
        "step = Trainer.train_step\n"
        "def dying(self, samples):\n"
        "    if self.num_updates == 10:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return step(self, samples)\n"
        "Trainer.train_step = dying\n"
        "from seqloom.cli.train import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", killer, *argv], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    saved = load_checkpoint(tmp_path / "ckpt" / "checkpoint_last.pt")["extra_state"]["train_iterator"]
    assert saved["epoch"] == 1 and saved["iterations_in_epoch"] == 8  # mid-epoch (of 12 batches)
    resumed = train(argv)  # the same command again
    assert [h["num_updates"] for h in resumed] == list(range(9, 25))
    for got, want in zip(resumed, uninterrupted[8:]):
        assert (got["loss"], got["nll_loss"]) == (want["loss"], want["nll_loss"])
        assert got["gnorm"] == pytest.approx(want["gnorm"], rel=1e-6)


def test_ctrl_c_ends_with_a_resume_hint_not_a_traceback(data_bin: Path, tmp_path: Path) -> None:
    argv = train_args(data_bin, tmp_path / "ckpt", "--save-interval-updates", "4", "--disable-validation")
    interrupter = (
        "import os, signal, sys\n"
        "from seqloom.trainer.trainer import Trainer\n"
        "step = Trainer.train_step\n"
        "def interrupted(self, samples):\n"
        "    if self.num_updates == 6:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return step(self, samples)\n"
        "Trainer.train_step = interrupted\n"
        "from seqloom.cli.train import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", interrupter, *argv], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "interrupted: run the same command again to resume" in proc.stderr and "Traceback" not in proc.stderr
    saved = load_checkpoint(tmp_path / "ckpt" / "checkpoint_last.pt")
    assert saved["optimizer_history"][-1]["num_updates"] == 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_gloo_processes_equal_one_process_with_update_freq_2(data_bin: Path, tmp_path: Path) -> None:
    one = train_args(
        data_bin, tmp_path / "one", "--update-freq", "2", "--disable-validation", dropout="0.0", max_update=6
    )
    train(one)
    two = train_args(data_bin, tmp_path / "two", "--disable-validation", dropout="0.0", max_update=6)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port"]
    launcher += [str(_free_port()), "-m", "seqloom.train"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*launcher, *two], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_checkpoint(tmp_path / "one" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoint_last.pt")
    assert a["optimizer_history"][-1]["num_updates"] == b["optimizer_history"][-1]["num_updates"] == 6
    for key, value in a["model"].items():
        if key.endswith("k_proj.bias"):
            # softmax ignores a bias shared by all keys: its gradient is rounding noise, which Adam
            # normalises into lr-sized steps, so it differs between any two summation orders
            continue
        torch.testing.assert_close(b["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert (a["args"].distributed_world_size, b["args"].distributed_world_size) == (1, 2)


def test_ddp_with_find_unused_parameters_and_an_output_matrix_of_its_own(data_bin: Path, tmp_path: Path) -> None:
    """An untied output matrix is used by the loss only when the loss fuses the vocabulary product; DDP with
    ``--find-unused-parameters`` would then count it as unused and fail in backward. The criterion keeps the
    product inside ``forward`` there, and the run equals one process with ``--update-freq 2`` (also with
    small buckets whose views are the gradients)."""
    common = (
        "--disable-validation",
        "--find-unused-parameters",
        "--bucket-cap-mb",
        "1",
        "--gradient-as-bucket-view",
        "--broadcast-buffers",
    )  # DDP's knobs, passed on to it (one process ignores them)
    one = train_args(data_bin, tmp_path / "one", "--update-freq", "2", *common, dropout="0.0", max_update=3)
    two = train_args(data_bin, tmp_path / "two", *common, dropout="0.0", max_update=3)
    for argv in (one, two):
        argv.remove("--share-decoder-input-output-embed")
    train(one)
    _torchrun(two)
    a = load_checkpoint(tmp_path / "one" / "checkpoint_last.pt")["model"]
    b = load_checkpoint(tmp_path / "two" / "checkpoint_last.pt")["model"]
    assert "decoder.output_projection.weight" in a
    _assert_same_weights(a, b)


def _torchrun(argv: list[str]) -> str:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port"]
    launcher += [str(_free_port()), "-m", "seqloom.train"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*launcher, *argv], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if key.endswith("k_proj.bias"):  # rounding noise that Adam normalises (see the DDP test)
            continue
        torch.testing.assert_close(b[key], value, rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.skipif(
    torch_release() < CPU_FSDP_SINCE, reason="this torch's fully_shard fails on the CPU (see sharding.py)"
)
def test_fsdp_two_processes_equal_one_process_and_checkpoints_stay_whole(data_bin: Path, tmp_path: Path) -> None:
    """``--ddp-backend fully_sharded`` (FSDP): the same updates as one process with ``--update-freq 2``; the
    checkpoint is fairseq's single full file; a sharded run resumes from it (and validates) like one process."""
    one = train_args(data_bin, tmp_path / "one", "--update-freq", "2", dropout="0.0", max_update=6)
    train([*one, "--disable-validation"])
    two = train_args(data_bin, tmp_path / "two", "--ddp-backend", "fully_sharded", dropout="0.0", max_update=6)
    log = _torchrun([*two, "--disable-validation", "--min-params-to-wrap", "0"])
    assert "FSDP over 2 ranks: 2 transformer layer(s) in their own unit, the rest in the root unit" in log
    a = load_checkpoint(tmp_path / "one" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoint_last.pt")
    assert b["optimizer_history"][-1]["num_updates"] == 6 and b["args"].distributed_world_size == 2
    _assert_same_weights(a["model"], b["model"])
    moments = b["last_optimizer_state"]["state"]
    assert len(moments) == len(a["last_optimizer_state"]["state"])
    for i, state in moments.items():  # whole moments, shaped like the unsharded parameters
        assert state["exp_avg"].shape == a["last_optimizer_state"]["state"][i]["exp_avg"].shape
    # resume both for 3 more updates (with validation): the sharded run restores weights and moments, here
    # as one unit (fairseq's default wrapping), kept gathered between forward and backward, offloaded
    train([*one, "--max-update", "9"])
    log = _torchrun([*two, "--max-update", "9", "--no-reshard-after-forward", "--cpu-offload"])
    assert "FSDP over 2 ranks: 0 transformer layer(s) in their own unit" in log  # fairseq's default: 1e8 params
    assert "Loaded checkpoint" in log and "| valid | {" in log
    a = load_checkpoint(tmp_path / "one" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoint_last.pt")
    assert b["optimizer_history"][-1]["num_updates"] == 9
    _assert_same_weights(a["model"], b["model"])
    assert b["extra_state"]["val_loss"] == pytest.approx(a["extra_state"]["val_loss"], rel=1e-4)


def test_num_batch_buckets_pads_items_without_changing_the_loss(
    data_bin: Path, baseline: tuple[Path, list[dict[str, float]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--num-batch-buckets``: items padded to a few lengths; padding is masked, so validating a checkpoint
    gives the same loss with and without it, and training with it learns."""
    save, _ = baseline
    losses = []
    for extra in ([], ["--num-batch-buckets", "3"]):
        argv = [str(data_bin), "--cpu", "--path", str(save / "checkpoint_last.pt"), "--batch-size", "8", *extra]
        assert validate.main([*argv, "--num-workers", "0"]) == 0
        line = next(x for x in capsys.readouterr().err.splitlines() if "valid on 'valid' subset" in x)
        losses.append(float(line.split("| loss ")[1].split(" ")[0]))
    assert losses[0] == losses[1]
    history = train(train_args(data_bin, tmp_path, "--num-batch-buckets", "3", "--disable-validation", max_update=12))
    assert all(torch.isfinite(torch.tensor([h["loss"] for h in history])))
    assert history[-1]["loss"] < history[0]["loss"]


def test_eval_bleu_is_the_best_checkpoint_metric(data_bin: Path, tmp_path: Path) -> None:
    bleu = ["--eval-bleu", "--eval-bleu-args", '{"beam": 1, "max_len_b": 12}', "--best-checkpoint-metric", "bleu"]
    bleu += ["--maximize-best-checkpoint-metric"]
    train(train_args(data_bin, tmp_path, *bleu, max_update=3))
    extra = load_checkpoint(tmp_path / "checkpoint_best.pt")["extra_state"]
    assert 0.0 <= extra["val_loss"] <= 100.0 and extra["best"] == extra["val_loss"]


def test_colon_separated_data_dirs_take_turns_by_epoch(data_bin: Path, tmp_path: Path) -> None:
    src, tgt = _corpus(48, seed=5)
    (tmp_path / "more.src").write_text("\n".join(src) + "\n", encoding="utf-8")
    (tmp_path / "more.tgt").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    second = tmp_path / "second"
    argv = ["--source-lang", "src", "--target-lang", "tgt", "--trainpref", str(tmp_path / "more")]
    argv += ["--srcdict", str(data_bin / "dict.src.txt"), "--tgtdict", str(data_bin / "dict.tgt.txt")]
    assert preprocess.main([*argv, "--destdir", str(second), "--workers", "1"]) == 0
    data = f"{data_bin}{os.pathsep}{second}"
    history = train(train_args(Path(data), tmp_path / "ckpt", "--max-epoch", "3", "--disable-validation", max_update=0))
    itr = load_checkpoint(tmp_path / "ckpt" / "checkpoint_last.pt")["extra_state"]["train_iterator"]
    # epoch 1 and 3 read the first folder (12 batches), epoch 2 the second (fewer sentences, fewer batches)
    per_epoch = len(history) - 2 * 12
    assert 0 < per_epoch < 12 and itr["epoch"] == 3 and itr["iterations_in_epoch"] == 12


def test_mixed_precision_flags_train(data_bin: Path, tmp_path: Path) -> None:
    for flag in ("--bf16", "--amp", "--memory-efficient-bf16"):
        history = train(train_args(data_bin, tmp_path / flag, flag, "--disable-validation", max_update=3))
        assert len(history) >= 2 and all(torch.isfinite(torch.tensor([h["loss"] for h in history])))
    parsed = parse_args(SPEC, train_args(data_bin, tmp_path, "--memory-efficient-fp16"))
    assert parsed["common"].fp16 and parsed.namespace.fp16  # fairseq's rule: the variant implies --fp16


@pytest.mark.parametrize(
    "flags",
    [("--ddp-backend", "slowmo"), ("--eval-bleu", "--ddp-backend", "fully_sharded")],
)  # fmt: skip
def test_unsupported_options_are_refused_by_name_not_ignored(data_bin: Path, tmp_path: Path, flags: tuple) -> None:
    with pytest.raises(SystemExit, match=f"{flags[0]}.* not supported yet"):
        train(train_args(data_bin, tmp_path, *flags, "--disable-validation", max_update=1))
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_best_checkpoint_metric_that_validation_never_reports_is_named(
    data_bin: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """fairseq fails with a KeyError after the first validation; here bleu without --eval-bleu is refused
    up front, and any other missing figure is a warning (training and checkpoint_last.pt go on)."""
    with pytest.raises(SystemExit, match="--best-checkpoint-metric bleu needs --eval-bleu"):
        train([*train_args(data_bin, tmp_path / "a", max_update=1), "--best-checkpoint-metric", "bleu"])
    assert not (tmp_path / "a").exists()
    with caplog.at_level(logging.WARNING):
        train([*train_args(data_bin, tmp_path / "b", max_update=2), "--best-checkpoint-metric", "accuracy"])
    (warning,) = [r.getMessage() for r in caplog.records if "--best-checkpoint-metric" in r.getMessage()]
    assert "accuracy: validation on 'valid' reports no such figure (it reports " in warning and "loss" in warning
    assert (tmp_path / "b" / "checkpoint_last.pt").exists() and not (tmp_path / "b" / "checkpoint_best.pt").exists()


def test_disable_validation_needs_no_validation_split(data_bin: Path, tmp_path: Path) -> None:
    """fairseq reads the --valid-subset splits only when validating; a data folder without them trains."""
    import shutil

    train_only = tmp_path / "data-bin"
    train_only.mkdir()
    for path in data_bin.iterdir():
        if not path.name.startswith("valid"):
            shutil.copy(path, train_only / path.name)
    with pytest.raises(FileNotFoundError, match="split 'valid' not found"):
        train(train_args(train_only, tmp_path / "a", max_update=2))
    history = train(train_args(train_only, tmp_path / "b", "--disable-validation", max_update=2))
    assert [h["num_updates"] for h in history] == [1, 2]
    assert (tmp_path / "b" / "checkpoint_last.pt").exists()


@pytest.mark.parametrize("flag", ["--max-epoch", "--max-update"])
def test_a_negative_max_epoch_or_update_is_refused_by_name(data_bin: Path, tmp_path: Path, flag: str) -> None:
    """fairseq stops before the first update and reports success; 0 means no limit."""
    argv = [*train_args(data_bin, tmp_path, "--disable-validation", max_update=1), flag, "-1"]
    with pytest.raises(SystemExit, match=f"{flag} -1: must be at least 0 \\(0 means no limit\\)"):
        train(argv)
    assert not any(tmp_path.iterdir())


def test_optimizer_betas_take_exactly_two_numbers(data_bin: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A third beta was silently dropped (fairseq's torch Adam fails at the first step)."""
    with pytest.raises(SystemExit):
        train([*train_args(data_bin, tmp_path, max_update=1), "--adam-betas", "(0.9, 0.98, 0.7)"])
    assert "argument --adam-betas: expected 2 numbers such as '(0.9, 0.98)', got '(0.9, 0.98, 0.7)'" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("flags", [("--update-freq", "2,0"), ("--ema-update-freq", "0")])
def test_an_update_frequency_below_one_is_refused_by_name(data_bin: Path, tmp_path: Path, flags: tuple) -> None:
    with pytest.raises(SystemExit, match=f"{flags[0]} {flags[1]}: every value must be at least 1"):
        train(train_args(data_bin, tmp_path, *flags, "--disable-validation", max_update=1))


def test_required_seq_len_multiple_pads_batches_and_leaves_the_losses(data_bin: Path, tmp_path: Path) -> None:
    # no dropout: its masks are drawn over the (wider) batch shapes
    plain = train(train_args(data_bin, tmp_path / "plain", "--disable-validation", max_update=4, dropout="0"))
    padded_argv = train_args(data_bin, tmp_path / "padded", "--disable-validation", "--required-seq-len-multiple",
                             "8", max_update=4, dropout="0")  # fmt: skip
    padded = train(padded_argv)
    for a, b in zip(plain, padded, strict=True):  # padding is masked out: same losses (up to summation order)
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)
    widths = []
    for argv in (train_args(data_bin, tmp_path / "plain"), padded_argv):
        dataset = build_task(parse_args(SPEC, argv)).load_dataset("train")
        batch = dataset.collater([dataset[i] for i in range(5)])
        widths.append((batch["net_input"]["src_tokens"].size(1), batch["target"].size(1)))
    (src, tgt), (src8, tgt8) = widths
    assert src % 8 and tgt % 8  # the natural widths are not multiples of 8 ...
    assert (src8, tgt8) == (src + 8 - src % 8, tgt + 8 - tgt % 8)  # ... the padded ones are the next


def test_unused_valid_subsets_are_an_error_unless_combined_or_ignored(
    fairseq_fixtures: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = fairseq_fixtures / "mt" / "data-bin-separate"  # valid and valid1 (fairseq-preprocess --validpref a,b)
    with pytest.raises(SystemExit, match="subsets valid1 .* would be ignored"):
        train(train_args(data, tmp_path / "a", max_update=1))
    assert not (tmp_path / "a").exists()
    train(train_args(data, tmp_path / "b", "--ignore-unused-valid-subsets", "--no-save", max_update=1))
    caplog.set_level(logging.INFO)
    train(train_args(data, tmp_path / "c", "--combine-valid-subsets", "--no-save", max_update=1))
    loaded = [r.getMessage() for r in caplog.records if " valid en-es " in r.getMessage()]
    assert loaded and loaded[-1].endswith(" 400 examples")  # valid (200 lines) + valid1 (200 lines) as one subset


def test_finetune_and_resets(data_bin: Path, baseline: tuple[Path, list[dict[str, float]]], tmp_path: Path) -> None:
    save, uninterrupted = baseline
    tuned = train(
        train_args(
            data_bin, tmp_path / "ft", "--finetune-from-model", str(save / "checkpoint_last.pt"), "--disable-validation",
            max_update=2,
        )
    )  # fmt: skip
    # weights come from the trained checkpoint; updates, optimizer and data position start afresh
    assert [h["num_updates"] for h in tuned] == [1, 2] and tuned[0]["loss"] < uninterrupted[0]["loss"] - 0.5
    restored = train(
        train_args(
            data_bin, tmp_path / "rs", "--restore-file", str(save / "checkpoint_2_16.pt"), "--reset-optimizer",
            "--disable-validation", max_update=2,
        )
    )  # fmt: skip
    assert [h["num_updates"] for h in restored] == [1, 2]
    with pytest.raises(ValueError, match="--finetune-from-model"):
        train(train_args(data_bin, tmp_path / "x", "--finetune-from-model", "a.pt", "--reset-optimizer"))
    with pytest.raises(FileNotFoundError, match="--restore-file"):
        train(train_args(data_bin, tmp_path / "y", "--restore-file", str(tmp_path / "missing.pt")))


def test_tensorboard_logdir_gets_event_files(data_bin: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch.utils.tensorboard", reason="tensorboard is not a dependency of seqloom")
    train(train_args(data_bin, tmp_path / "ck", "--tensorboard-logdir", str(tmp_path / "tb"), max_update=2))
    assert list((tmp_path / "tb" / "train_inner").glob("events.out.tfevents.*"))
    assert list((tmp_path / "tb" / "valid").glob("events.out.tfevents.*"))


def test_tensorboard_logdir_without_tensorboard_warns_and_trains(
    data_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # not installed
    with caplog.at_level(logging.WARNING):
        history = train(train_args(data_bin, tmp_path / "ck", "--tensorboard-logdir", str(tmp_path / "tb"),
                                   max_update=2))  # fmt: skip
    assert len(history) == 2 and "TensorBoard's writer is missing" in caplog.text and not (tmp_path / "tb").exists()


class _FakeWandb(types.ModuleType):
    """What seqloom calls of ``wandb`` (init, config.update, log), recorded."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.inits: list[dict[str, object]] = []
        self.logs: list[tuple[dict[str, float], int]] = []
        self.config = types.SimpleNamespace(values={}, update=lambda d: self.config.values.update(d))

    def init(self, **kwargs: object) -> None:
        self.inits.append(kwargs)

    def log(self, data: dict[str, float], step: int) -> None:
        self.logs.append((data, step))


def test_wandb_project_logs_every_number_under_its_tag(
    data_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``--wandb-project``: fairseq's run (named after the save dir), its options, and ``{tag}/{key}`` numbers
    at the update number; without the wandb package, a warning and the run goes on."""
    fake = _FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    train(train_args(data_bin, tmp_path / "ck", "--wandb-project", "demo", max_update=2))
    assert fake.inits == [{"project": "demo", "reinit": False, "name": "ck"}]
    assert fake.config.values["arch"] == "transformer" and fake.config.values["wandb_project"] == "demo"
    steps = {key: step for data, step in fake.logs for key in data}
    assert steps["train_inner/loss"] == 2 and steps["valid/loss"] == 2 and steps["train/loss"] == 2
    assert not any(key.endswith("/num_updates") for data, _ in fake.logs for key in data)
    assert all(isinstance(v, float | int) for data, _ in fake.logs for v in data.values())
    monkeypatch.setenv("WANDB_NAME", "named")
    train(train_args(data_bin, tmp_path / "ck2", "--wandb-project", "demo", "--disable-validation", max_update=1))
    assert fake.inits[-1]["name"] == "named"
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed: import fails
    with caplog.at_level(logging.WARNING):
        history = train(train_args(data_bin, tmp_path / "ck3", "--wandb-project", "demo", max_update=1))
    assert history and "the wandb package is missing" in caplog.text


def test_resumes_fairseqs_own_checkpoint_mid_epoch(fairseq_fixtures: Path, tmp_path: Path) -> None:
    """fairseq's checkpoint_last.pt (300 updates, Adam state, epoch 4 at batch 66 of 78) continues here."""
    mt = fairseq_fixtures / "mt"
    model = ["--arch", "transformer", "--encoder-layers", "2", "--decoder-layers", "2", "--encoder-embed-dim", "64"]
    model += ["--decoder-embed-dim", "64", "--encoder-ffn-embed-dim", "128", "--decoder-ffn-embed-dim", "128"]
    model += ["--encoder-attention-heads", "4", "--decoder-attention-heads", "4", "--share-decoder-input-output-embed"]
    optim = ["--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "1e-3", "--lr-scheduler", "inverse_sqrt"]
    optim += ["--warmup-updates", "100", "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"]
    run_ = ["--max-tokens", "2048", "--max-update", "302", "--cpu", "--num-workers", "0", "--disable-validation"]
    run_ += ["--save-dir", str(tmp_path), "--restore-file", str(mt / "checkpoints" / "checkpoint_last.pt")]
    history = train([str(mt / "data-bin"), *model, *optim, *run_])
    assert [h["num_updates"] for h in history] == [301, 302]
    assert history[-1]["lr"] == pytest.approx(1e-3 * (100 / 302) ** 0.5)  # inverse_sqrt after 302 updates
    assert all(8.0 < h["loss"] < 8.6 for h in history)  # fairseq's train loss there: ~8.2-8.4
    state = load_checkpoint(tmp_path / "checkpoint_last.pt")
    assert state["extra_state"]["train_iterator"]["epoch"] == 4
    assert state["extra_state"]["train_iterator"]["iterations_in_epoch"] == 68
    assert state["optimizer_history"][-1]["num_updates"] == 302


def test_store_ema_follows_the_updates_and_resumes_exactly(data_bin: Path, tmp_path: Path) -> None:
    """--store-ema --ema-decay 0.8: the checkpoint's extra_state['ema'] equals the average recomputed from the
    weights saved after every update (it starts at update 1's weights, as fairseq's lazily built copy
    does); a run stopped at update 3 and resumed ends with the same average."""
    ema = ["--store-ema", "--ema-decay", "0.8", "--disable-validation"]
    history = train(train_args(data_bin, tmp_path / "full", *ema, "--save-interval-updates", "1", max_update=6))
    assert len(history) == 6
    states = [load_checkpoint(str(tmp_path / "full" / f"checkpoint_1_{u}.pt"))["model"] for u in range(1, 7)]
    expected = {k: v.clone() for k, v in states[0].items()}
    for weights in states[1:]:
        for k, v in weights.items():
            if "version" not in k:
                expected[k] = expected[k] * 0.8 + v * 0.2
    last = load_checkpoint(str(tmp_path / "full" / "checkpoint_last.pt"))
    got = last["extra_state"]["ema"]
    assert got.keys() == last["model"].keys()
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-5, atol=1e-6)
    assert not torch.equal(got["encoder.embed_tokens.weight"], last["model"]["encoder.embed_tokens.weight"])
    train(train_args(data_bin, tmp_path / "resumed", *ema, max_update=3))
    train(train_args(data_bin, tmp_path / "resumed", *ema, max_update=6))
    resumed = load_checkpoint(str(tmp_path / "resumed" / "checkpoint_last.pt"))["extra_state"]["ema"]
    for k in got:
        torch.testing.assert_close(resumed[k], got[k], rtol=0, atol=0)


def test_ema_options_seed_start_and_log(data_bin: Path, tmp_path: Path, caplog) -> None:
    """--ema-seed-model starts from another checkpoint's average; before --ema-start-update the average copies
    the model (decay 0, logged last as ema_decay 0); --ema-fp32 saves the float32 accumulators; bad seeds and
    a resumed run without an average are named."""
    base = ["--store-ema", "--disable-validation"]
    train(train_args(data_bin, tmp_path / "seed", *base, "--ema-decay", "0.5", max_update=2))
    with caplog.at_level(logging.INFO):
        train(train_args(data_bin, tmp_path / "late", *base, "--ema-start-update", "100", "--ema-fp32", max_update=3))
    assert '"ema_decay": "0"' in caplog.text or '"ema_decay": 0' in caplog.text
    late = load_checkpoint(str(tmp_path / "late" / "checkpoint_last.pt"))
    for k, v in late["model"].items():
        assert torch.equal(late["extra_state"]["ema"][k], v)
        assert torch.equal(late["extra_state"]["ema_fp32_params"][k], v.float())
    seed = str(tmp_path / "seed" / "checkpoint_last.pt")
    seeded_argv = train_args(data_bin, tmp_path / "seeded", *base, "--ema-seed-model", seed, "--ema-decay", "1.0",
                             max_update=1)  # fmt: skip
    train(seeded_argv)  # decay 1: the average stays the seed's
    seeded = load_checkpoint(str(tmp_path / "seeded" / "checkpoint_last.pt"))["extra_state"]["ema"]
    for k, v in load_checkpoint(seed)["extra_state"]["ema"].items():
        assert torch.equal(seeded[k], v)
    with pytest.raises(FileNotFoundError, match="--ema-seed-model .*missing.pt: no such checkpoint file"):
        train(train_args(data_bin, tmp_path / "bad", *base, "--ema-seed-model", str(tmp_path / "missing.pt")))
    train(train_args(data_bin, tmp_path / "plain", "--disable-validation", max_update=1))
    plain = str(tmp_path / "plain" / "checkpoint_last.pt")
    with pytest.raises(ValueError, match="holds no EMA weights"):
        train(train_args(data_bin, tmp_path / "bad", *base, "--ema-seed-model", plain, max_update=1))
    with caplog.at_level(logging.WARNING):  # resuming a run without an average: it restarts from the weights
        train(train_args(data_bin, tmp_path / "plain", *base, max_update=2))
    assert "holds no EMA weights but --store-ema is set" in caplog.text


def test_zero_sharding_two_processes_equal_one_process_and_resume(data_bin: Path, tmp_path: Path) -> None:
    """``--zero-sharding os`` (ZeRO-1): the same updates as one process with ``--update-freq 2``; the checkpoint
    holds the whole optimizer state (gathered from both ranks), and a sharded run resumes from it like one
    process does."""
    one = train_args(data_bin, tmp_path / "one", "--update-freq", "2", "--disable-validation", dropout="0.0",
                     max_update=6)  # fmt: skip
    train(one)
    two = train_args(data_bin, tmp_path / "two", "--zero-sharding", "os", "--disable-validation", dropout="0.0",
                     max_update=6)  # fmt: skip
    assert "ZeRO: the optimizer state is sharded over 2 ranks" in _torchrun(two)
    a = load_checkpoint(tmp_path / "one" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoint_last.pt")
    _assert_same_weights(a["model"], b["model"])
    sa, sb = a["last_optimizer_state"], b["last_optimizer_state"]
    assert sa["state"].keys() == sb["state"].keys() and len(sb["state"]) == len(sa["param_groups"][0]["params"])
    for i, state in sa["state"].items():
        torch.testing.assert_close(sb["state"][i]["exp_avg"], state["exp_avg"], rtol=1e-3, atol=1e-6)
    train([*one, "--max-update", "9"])
    assert "Loaded checkpoint" in _torchrun([*two, "--max-update", "9"])
    a = load_checkpoint(tmp_path / "one" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoint_last.pt")
    assert b["optimizer_history"][-1]["num_updates"] == 9
    _assert_same_weights(a["model"], b["model"])


def test_asynchronous_checkpoints_equal_synchronous_ones(data_bin: Path, tmp_path: Path, monkeypatch) -> None:
    """--write-checkpoints-asynchronously: a thread writes while training goes on (each write slowed down here,
    so that later updates change the live weights meanwhile); every checkpoint equals the synchronous run's,
    and --keep-interval-updates still prunes."""
    import time

    from seqloom.checkpoint import io

    common = ("--save-interval-updates", "2", "--keep-interval-updates", "2", "--disable-validation")
    train(train_args(data_bin, tmp_path / "sync", *common, max_update=6))
    write = io.save_checkpoint

    def slow_write(state, path):  # type: ignore[no-untyped-def]
        time.sleep(0.3)
        write(state, path)

    monkeypatch.setattr(io, "save_checkpoint", slow_write)
    train(train_args(data_bin, tmp_path / "async", *common, "--write-checkpoints-asynchronously", max_update=6))
    names = sorted(p.name for p in (tmp_path / "async").glob("*.pt"))
    assert names == sorted(p.name for p in (tmp_path / "sync").glob("*.pt"))
    assert names == ["checkpoint_1_4.pt", "checkpoint_1_6.pt", "checkpoint_last.pt"]
    for name in names:
        a, b = load_checkpoint(tmp_path / "sync" / name), load_checkpoint(tmp_path / "async" / name)
        for key, value in a["model"].items():
            assert torch.equal(b["model"][key], value), (name, key)
        for i, state in a["last_optimizer_state"]["state"].items():
            assert torch.equal(b["last_optimizer_state"]["state"][i]["exp_avg"], state["exp_avg"])


def test_per_epoch_batches_resume_exactly(data_bin: Path, tmp_path: Path) -> None:
    """--grouped-shuffling --update-ordered-indices-seed (new batches each epoch, seeded by the epoch): epoch 2
    trains on other batches than the default run's, and stopping after epoch 1 then resuming gives the
    uninterrupted run's losses and weights."""
    flags = ("--grouped-shuffling", "--update-ordered-indices-seed", "--disable-validation", "--max-update", "0")
    full = train(train_args(data_bin, tmp_path / "full", *flags, "--max-epoch", "2", dropout="0.0"))
    first = train(train_args(data_bin, tmp_path / "split", *flags, "--max-epoch", "1", dropout="0.0"))
    second = train(train_args(data_bin, tmp_path / "split", *flags, "--max-epoch", "2", dropout="0.0"))
    assert [h["loss"] for h in full] == [h["loss"] for h in first + second]
    a = load_checkpoint(tmp_path / "full" / "checkpoint_last.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "checkpoint_last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain = train(train_args(data_bin, tmp_path / "plain", "--disable-validation", "--max-update", "0",
                             "--max-epoch", "2", dropout="0.0"))  # fmt: skip
    assert [h["wpb"] for h in plain[len(first) :]] != [h["wpb"] for h in second]


def test_skip_remainder_batch_trains_whole_updates_and_ends_each_epoch(data_bin: Path, tmp_path: Path) -> None:
    """--skip-remainder-batch --update-freq 3: each epoch leaves out its last batch and a partial update, and
    still ends (checkpoint, next epoch) after its last whole update."""
    common = ("--max-epoch", "2", "--disable-validation", "--no-save")
    batches = len(train(train_args(data_bin, tmp_path / "b", *common, max_update=1000))) // 2  # per epoch
    common = ("--update-freq", "3", "--max-epoch", "2", "--disable-validation")
    plain = train(train_args(data_bin, tmp_path / "plain", *common, max_update=1000))
    skip = train(train_args(data_bin, tmp_path / "skip", *common, "--skip-remainder-batch", max_update=1000))
    assert len(plain) == 2 * -(-batches // 3) and len(skip) == 2 * ((batches - 1) // 3) < len(plain)
    last = load_checkpoint(tmp_path / "skip" / "checkpoint_last.pt")
    assert last["extra_state"]["train_iterator"]["epoch"] == 2
    assert last["optimizer_history"][-1]["num_updates"] == len(skip)


def test_a_save_dir_holding_another_models_checkpoint_is_one_clear_error(
    data_bin: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Resuming from a checkpoint_last.pt of other sizes: one message that sums the differences up (and
    names the way out), not torch's traceback listing every mismatched weight."""
    from seqloom.cli.train import main

    train(train_args(data_bin, tmp_path / "ck", "--disable-validation", max_update=2))
    wider = train_args(data_bin, tmp_path / "ck", "--disable-validation", max_update=4)
    wider[wider.index("--encoder-embed-dim") + 1] = "32"
    capfd.readouterr()
    assert main(wider) == 1
    (message,) = [line for line in capfd.readouterr().err.splitlines() if "| ERROR |" in line]
    assert "checkpoint_last.pt: the checkpoint's weights do not fit the model built from these options" in message
    assert "weights differ in size (checkpoint vs model, encoder.embed_tokens.weight: (" in message
    assert "use a new one" in message and "size mismatch for" not in message


def test_a_training_or_validation_split_with_no_batch_stops_before_training(data_bin: Path, tmp_path: Path) -> None:
    """Every sample longer than --max-tokens: an error naming the split, not endless empty epochs (the old
    behaviour: epochs of no update never reach --max-update); a validation split likewise, before training."""
    for extra, split in ((("--max-tokens", "2"), "train"), (("--max-tokens-valid", "2"), "valid")):
        argv = [*train_args(data_bin, tmp_path / split, max_update=4), *extra, "--max-epoch", "3"]
        argv += ["--skip-invalid-size-inputs-valid-test"]
        with pytest.raises(ValueError, match=f"nothing to run on '{split}': all .* samples are longer than "):
            train(argv)
        assert not (tmp_path / split / "checkpoint_last.pt").exists()


def test_an_unwritable_save_dir_stops_before_training(data_bin: Path, tmp_path: Path,
                                                      capfd: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """--save-dir below a file: one error naming the folder before the first update (as fairseq's check of
    the folder), not an OSError traceback when the first checkpoint is written after an epoch of training."""
    from seqloom.cli.train import main

    (tmp_path / "taken").write_text("a file, not a folder")
    argv = train_args(data_bin, tmp_path / "taken" / "ck", max_update=4)
    assert main(argv) == 1
    (message,) = [line for line in capfd.readouterr().err.splitlines() if "| ERROR |" in line]
    assert f"--save-dir {tmp_path / 'taken' / 'ck'}: checkpoints cannot be written there" in message
    assert f"({tmp_path / 'taken'} is a file, not a folder)" in message
    assert main([*argv, "--no-save"]) == 0  # nothing is written: the folder does not matter
