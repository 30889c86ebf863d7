"""Alignment supervision (Garg et al. 2019) as fairseq does it, on a tiny transformer_align model fairseq trained
(tests/fixtures/transformer_align): the collated alignments, the criterion's losses and --print-alignment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from seqloom.cli.decoding import load_task
from seqloom.cli.parser import parse_args
from seqloom.cli.train import SPEC
from seqloom.tasks.base import BatchingOptions

sys.path.insert(0, str(Path(__file__).parents[1] / "generation"))
from fixture_compare import compare_lines  # noqa: E402

HERE = Path(__file__).parents[1] / "fixtures" / "transformer_align"
FAIRSEQ = json.loads((HERE / "fairseq.json").read_text())


@pytest.fixture(scope="module")
def data_bin(fairseq_fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's folder, made by ``seqloom preprocess --align-suffix`` (byte-equal to fairseq's)."""
    out = tmp_path_factory.mktemp("align")
    subprocess.run(
        [sys.executable, str(HERE / "make_data.py"), str(out / "text"), str(fairseq_fixtures / "mt")], check=True
    )
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
    assert "alignment is left out" in caplog.text


@pytest.mark.parametrize("full_context", [False, True])
def test_criterion_losses_equal_fairseqs(data_bin: Path, full_context: bool) -> None:
    """fairseq's checkpoint (alignment layer 1, heads 2), first validation batch, eval mode: the loss (with
    --alignment-lambda 0.5), nll_loss and alignment_loss equal fairseq's, also with --full-context-alignment."""
    import dataclasses

    import torch

    from seqloom.cli.model_loading import load_ensemble
    from seqloom.criterions.label_smoothed_cross_entropy_with_alignment import (
        LabelSmoothedCrossEntropyWithAlignmentConfig,
        LabelSmoothedCrossEntropyWithAlignmentCriterion,
    )

    task, sample, _ = first_valid_batch(data_bin)
    model = load_ensemble(str(HERE / "checkpoint.pt"), task)[0].eval()
    assert (model.cfg.alignment_layer, model.cfg.alignment_heads) == (1, 2)
    model.cfg = dataclasses.replace(model.cfg, full_context_alignment=full_context)
    cfg = LabelSmoothedCrossEntropyWithAlignmentConfig(label_smoothing=0.1, alignment_lambda=0.5)
    criterion = LabelSmoothedCrossEntropyWithAlignmentCriterion(cfg, padding_idx=task.target_dictionary.pad())
    with torch.no_grad():
        loss, sample_size, log = criterion(model, sample)
    want = FAIRSEQ["full_context" if full_context else "causal"]
    assert sample_size == want["sample_size"]
    assert float(loss) == pytest.approx(want["loss"], rel=1e-6)
    assert float(log["nll_loss"]) == pytest.approx(want["nll_loss"], rel=1e-6)
    assert float(log["alignment_loss"]) == pytest.approx(want["alignment_loss"], rel=1e-6)
    # the logged loss leaves the alignment term out, as fairseq's
    assert float(log["loss"]) == pytest.approx(want["loss"] - 0.5 * want["alignment_loss"], rel=1e-6)


def test_print_alignment_reads_the_supervised_heads(data_bin: Path, capsys) -> None:
    """fairseq-generate's decoder ignores transformer_align's alignment layer and heads (its generator calls the
    decoder directly), so its A- lines average all heads of the last layer. Here they come from the supervised
    heads; with those reset to all heads (--model-overrides) every line equals fairseq's, and by default the
    translations and scores are the same and only the A- lines change."""
    from seqloom.cli.generate import main as generate

    argv = [str(data_bin), "--cpu", "--path", str(HERE / "checkpoint.pt"), "--gen-subset", "valid", "--batch-size",
            "16", "--beam", "2", "--max-len-a", "0", "--max-len-b", "12", "--print-alignment", "--no-progress-bar"]  # fmt: skip
    expected = (HERE / "generate.print-alignment.txt").read_text().splitlines()

    def lines(*extra: str) -> list[str]:
        assert generate([*argv, *extra]) == 0
        return [line for line in capsys.readouterr().out.splitlines() if line[:2] in ("S-", "H-", "P-", "A-")][:160]

    assert compare_lines(expected, lines("--model-overrides", "{'alignment_heads': None}")) == []
    supervised = lines()
    assert compare_lines(expected, supervised, skip=("A-",)) == []
    assert [x for x in supervised if x.startswith("A-")] != [x for x in expected if x.startswith("A-")]


def test_transformer_align_trains_with_the_alignment_loss(data_bin: Path, tmp_path: Path, capfd) -> None:
    from seqloom.checkpoint.io import load_checkpoint
    from seqloom.cli.train import main as train

    argv = [str(data_bin), "--cpu", "--arch", "transformer_align", "--encoder-layers", "2", "--decoder-layers", "2",
            "--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
            "--decoder-ffn-embed-dim", "32", "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
            "--share-all-embeddings", "--alignment-layer", "1", "--full-context-alignment", "--load-alignments",
            "--criterion", "label_smoothed_cross_entropy_with_alignment", "--label-smoothing", "0.1",
            "--optimizer", "adam", "--lr", "0.003", "--max-update", "4", "--max-tokens", "2048", "--save-dir",
            str(tmp_path), "--no-epoch-checkpoints", "--log-format", "json", "--log-interval", "1"]  # fmt: skip
    assert train(argv) == 0
    rows = [json.loads(line.split("| train_inner | ")[1]) for line in capfd.readouterr().err.splitlines()
            if "| train_inner | " in line]  # fmt: skip
    assert len(rows) == 4 and all(float(r["alignment_loss"]) > 0 for r in rows)
    state = load_checkpoint(tmp_path / "checkpoint_last.pt")
    args = state["args"]
    assert (args.arch, args.alignment_layer, args.alignment_heads, args.full_context_alignment) == (
        "transformer_align", 1, 1, True)  # fmt: skip
