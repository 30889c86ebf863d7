"""--task/--criterion sentence_prediction: fine-tune fairseq's tiny BART (--restore-file, --reset-*) on a made-up
labelled set, classification and regression, through seqloom preprocess and seqloom train."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from seqloom.checkpoint.io import load_checkpoint
from seqloom.criterions.sentence_prediction import SentencePredictionCriterion, SentencePredictionCriterionConfig
from seqloom.data.sentence_prediction_dataset import PairTokens

BART_SIZE = ["--encoder-layers", "2", "--decoder-layers", "2", "--encoder-embed-dim", "64", "--decoder-embed-dim",
             "64", "--encoder-ffn-embed-dim", "128", "--decoder-ffn-embed-dim", "128", "--encoder-attention-heads",
             "4", "--decoder-attention-heads", "4"]  # fmt: skip


def make_data(fairseq_fixtures: Path, root: Path, labels: tuple[str, str] = ("pos", "neg")) -> Path:
    """GPT-2 ids of fairseq's BART test text; label 'pos' (``labels[0]``) when the sentence holds ' the' (id 262)."""
    from seqloom.cli.preprocess import main as preprocess

    bart = fairseq_fixtures / "bart"
    lines = (bart / "text" / "test.bpe").read_text(encoding="utf-8").splitlines()[:48]
    splits = {"train": lines[:32], "valid": lines[32:]}
    for split, rows in splits.items():
        (root / f"{split}.input0").write_text("\n".join(rows) + "\n", encoding="utf-8")
        classes = [labels[0] if "262" in r.split() else labels[1] for r in rows]
        (root / f"{split}.label").write_text("\n".join(classes) + "\n", encoding="utf-8")
        (root / f"{split}.score").write_text("\n".join(str(len(r.split()) / 10) for r in rows) + "\n")
    data = root / "data"
    for kind, extra in (("input0", ["--srcdict", str(bart / "model" / "dict.txt")]), ("label", [])):
        argv = ["--only-source", "--trainpref", str(root / f"train.{kind}"), "--validpref", str(root / f"valid.{kind}"),
                "--destdir", str(data / kind), "--workers", "1", *extra]  # fmt: skip
        assert preprocess(argv) == 0
    for split in splits:  # regression targets: {split}.label text files of numbers
        (data / "regression").mkdir(exist_ok=True)
        (data / "regression" / f"{split}.label").write_text((root / f"{split}.score").read_text())
    return data


def train(data: Path, save_dir: Path, fairseq_fixtures: Path, *extra: str) -> None:
    from seqloom.cli.train import main

    argv = [str(data), "--task", "sentence_prediction", "--arch", "bart_base", *BART_SIZE,
            "--restore-file", str(fairseq_fixtures / "bart" / "model" / "model.pt"), "--reset-optimizer",
            "--reset-dataloader", "--reset-meters", "--reset-lr-scheduler", "--init-token", "0",
            "--separator-token", "2", "--add-prev-output-tokens", "--criterion", "sentence_prediction",
            "--max-positions", "256", "--batch-size", "8", "--max-update", "4", "--optimizer", "adam", "--lr", "1e-3",
            "--dropout", "0.0", "--seed", "1", "--save-dir", str(save_dir), "--cpu", "--no-epoch-checkpoints",
            "--log-format", "json", "--log-interval", "1", *extra]  # fmt: skip
    assert main(argv) == 0


def test_pair_tokens_layout() -> None:
    class Toks:
        def __init__(self, rows: list[list[int]]) -> None:
            self.rows = [torch.tensor(r) for r in rows]
            self.sizes = [len(r) for r in rows]

        def __len__(self) -> int:
            return len(self.rows)

        def __getitem__(self, i: int) -> torch.Tensor:
            return self.rows[i]

    pairs = PairTokens(Toks([[5, 6, 2]]), Toks([[7, 2]]), init_token=0, separator_token=2)
    assert pairs[0].tolist() == [0, 5, 6, 2, 2, 7, 2] and list(pairs.sizes) == [7]


def test_criterion_classification_and_regression() -> None:
    class Model(torch.nn.Module):
        classification_heads = {"sentence_classification_head": None}

        def forward(self, src_tokens: torch.Tensor, src_lengths: torch.Tensor, *, features_only: bool,
                    classification_head_name: str) -> object:  # fmt: skip
            return type("Out", (), {"logits": torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])})()

    sample = {"net_input": {"src_tokens": torch.zeros(3, 4), "src_lengths": torch.tensor([4, 4, 4])},
              "target": torch.tensor([[0], [0], [0]]), "ntokens": 12}  # fmt: skip
    crit = SentencePredictionCriterion(padding_idx=1)
    loss, size, log = crit(Model(), sample)
    lprobs = torch.log_softmax(torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), dim=-1)
    assert size == 3 and float(loss) == pytest.approx(-float(lprobs[:, 0].sum()))
    metrics = crit.reduce_metrics([log])
    assert metrics["accuracy"] == pytest.approx(66.667) and metrics["loss"] == pytest.approx(
        float(loss) / 3 / 0.6931, 1e-3
    )
    reg = SentencePredictionCriterion(SentencePredictionCriterionConfig(regression_target=True), padding_idx=1)

    class One(Model):
        def forward(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
            return type("Out", (), {"logits": torch.tensor([[0.5], [1.0], [2.0]])})()

    sample["target"] = torch.tensor([[1.0], [1.0], [1.0]])
    loss, size, log = reg(One(), sample)
    assert float(loss) == pytest.approx(0.25 + 0 + 1) and "ncorrect" not in log


def test_fine_tune_bart_classifier_end_to_end(fairseq_fixtures: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
                                              ) -> None:  # fmt: skip
    data = make_data(fairseq_fixtures, tmp_path)
    train(data, tmp_path / "ck", fairseq_fixtures, "--num-classes", "2")
    state = load_checkpoint(tmp_path / "ck" / "checkpoint_last.pt")
    sd = state["model"]
    assert sd["classification_heads.sentence_classification_head.out_proj.weight"].shape == (2, 64)
    assert sd["encoder.embed_tokens.weight"].shape == (4089, 64)  # dict.txt + <mask>: the BART checkpoint fits
    pretrained = load_checkpoint(fairseq_fixtures / "bart" / "model" / "model.pt")["model"]
    moved = (sd["encoder.layers.0.fc1.weight"] - pretrained["encoder.layers.0.fc1.weight"]).abs().max()
    assert 0 < float(moved) < 0.05  # restored from the pretrained weights, then a few small updates
    assert state["optimizer_history"][-1]["num_updates"] == 4
    logs = capfd.readouterr().err.splitlines()
    inner = [json.loads(line.split("| train_inner | ")[1]) for line in logs if "| train_inner | " in line]
    valid = [json.loads(line.split("| valid | ")[1]) for line in logs if "| valid | " in line]
    # the pinned run (fixed seed, dropout 0): losses (base 2, per sentence) and accuracies of each update
    assert [r["loss"] for r in inner] == ["0.857", "0.334", "0.848", "1.705"]
    assert [r["accuracy"] for r in inner] == ["75", "100", "75", "50"]
    assert valid[-1]["valid_accuracy"] == "81.25" and valid[-1]["valid_loss"] == "0.716"


def test_fine_tune_regression(fairseq_fixtures: Path, tmp_path: Path) -> None:
    data = make_data(fairseq_fixtures, tmp_path)
    (data / "label").rename(data / "classes")
    (data / "regression").rename(data / "label")
    train(data, tmp_path / "ck", fairseq_fixtures, "--num-classes", "1", "--regression-target", "--max-update", "2")
    sd = load_checkpoint(tmp_path / "ck" / "checkpoint_last.pt")["model"]
    assert sd["classification_heads.sentence_classification_head.out_proj.weight"].shape == (1, 64)


def test_glue_metrics_equal_scikit_learn_and_scipy() -> None:
    """Reference figures from sklearn's matthews_corrcoef and f1_score and scipy's pearsonr and spearmanr (what
    fairseq's --report-* flags call), computed once on these vectors."""
    from seqloom.criterions.sentence_prediction import glue_metrics

    pred, targ = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1], [1, 0, 0, 1, 0, 1, 1, 0, 1, 0]
    logs = [{"pred": pred[:4], "targ": targ[:4], "report_mcc": 1, "report_acc_and_f1": 1},
            {"pred": pred[4:], "targ": targ[4:], "report_mcc": 1, "report_acc_and_f1": 1}]  # fmt: skip
    assert glue_metrics(logs) == {"mcc": 40.8, "acc_and_f1": round((0.7 + 0.727272727) / 2 * 100, 1), "f1": 72.7}
    three = {"pred": [0, 1, 2, 2, 1, 0, 2, 1], "targ": [0, 1, 1, 2, 1, 0, 0, 2], "report_mcc": 1}
    assert glue_metrics([three]) == {"mcc": 45.2}
    scores = {"pred": [0.5, 1.0, 2.0, 2.0, 3.5, 0.1], "targ": [0.4, 1.5, 1.5, 2.2, 3.0, 0.3],
              "report_pearson_and_spearman": 1}  # fmt: skip
    assert glue_metrics([scores]) == {"pearson_and_spearman": 95.4, "pearson": 95.1, "spearman": 95.6}
    assert glue_metrics([{"pred": [1], "targ": [1]}]) == {}  # no --report-* flag, no figure


def test_reported_f1_is_that_of_label_1_whatever_its_class_index(fairseq_fixtures: Path, tmp_path: Path,
                                                                 capfd: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """Labels 0/1, with '1' the more frequent (class index 0 in the label dictionary): validation reports mcc,
    f1 and acc_and_f1 of the label values, as fairseq maps classes back to labels before scoring."""
    data = make_data(fairseq_fixtures, tmp_path, labels=("1", "0"))
    symbols = (data / "label" / "dict.txt").read_text(encoding="utf-8").split()[::2]
    assert symbols[0] == "1"  # the more frequent label comes first
    train(data, tmp_path / "ck", fairseq_fixtures, "--num-classes", "2", "--report-mcc", "--report-acc-and-f1")
    logs = capfd.readouterr().err.splitlines()
    valid = [json.loads(line.split("| valid | ")[1]) for line in logs if "| valid | " in line][-1]
    assert {"valid_mcc", "valid_f1", "valid_acc_and_f1"} <= set(valid)
    acc, f1 = float(valid["valid_accuracy"]), float(valid["valid_f1"])
    assert float(valid["valid_acc_and_f1"]) == pytest.approx((acc + f1) / 2, abs=0.11)
    assert not any("valid_pred" in line for line in logs)  # the lists are not printed


def test_inputs_and_labels_of_different_counts_name_the_split_and_files(fairseq_fixtures: Path, tmp_path: Path,
                                                                        capfd: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A label file one line short (a common slip when splitting a corpus): one error naming both files."""
    from seqloom.cli.train import main

    data = make_data(fairseq_fixtures, tmp_path)
    short = (tmp_path / "valid.score").read_text().splitlines()[:-1]
    (data / "label").rename(data / "classes")
    (data / "label").mkdir()
    (data / "label" / "train.label").write_text((tmp_path / "train.score").read_text())
    (data / "label" / "valid.label").write_text("\n".join(short) + "\n")
    argv = [str(data), "--task", "sentence_prediction", "--arch", "bart_base", *BART_SIZE, "--num-classes", "1",
            "--regression-target", "--criterion", "sentence_prediction", "--max-positions", "256", "--batch-size", "8",
            "--max-update", "1", "--optimizer", "adam", "--lr", "1e-3", "--no-save", "--cpu"]  # fmt: skip
    assert main(argv) == 1
    err = capfd.readouterr().err
    assert f"sentence_prediction: split 'valid' has 16 inputs ({data}/input0/valid.bin) but 15 labels " in err
    assert f"({data}/label/valid.label)" in err
