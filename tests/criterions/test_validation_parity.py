"""label_smoothed_cross_entropy on fairseq's own checkpoint and valid set gives fairseq-validate's figures."""

from __future__ import annotations

import torch

from seqloom.criterions import build_criterion
from seqloom.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyConfig
from seqloom.models.transformer.interop import load_fairseq_model
from seqloom.tasks.translation import TranslationConfig, TranslationTask


def test_valid_loss_equals_fairseq_validate(fairseq_fixtures) -> None:
    mt = fairseq_fixtures / "mt"
    # fairseq-validate printed: loss 8.368 | nll_loss 7.872 | ppl 234.26 | wpb 8825 | bsz 200
    expected = (mt / "outputs/validate.valid.txt").read_text(encoding="utf-8")
    assert "loss 8.368 | nll_loss 7.872 | ppl 234.26 | wps 0 | wpb 8825 | bsz 200" in expected
    task = TranslationTask.setup_task(TranslationConfig(data=str(mt / "data-bin")))
    dataset = task.load_dataset("valid")
    model = load_fairseq_model(mt / "checkpoints/checkpoint_best.pt", task.source_dictionary, task.target_dictionary)
    cfg = LabelSmoothedCrossEntropyConfig(label_smoothing=0.1)  # as trained (train.log's cfg)
    criterion = build_criterion("label_smoothed_cross_entropy", cfg, padding_idx=task.target_dictionary.pad())
    logs = []
    with torch.no_grad():  # the sums do not depend on batching: 4 batches of 50 sentences
        for start in range(0, len(dataset), 50):
            batch = dataset.collater([dataset[i] for i in range(start, min(start + 50, len(dataset)))])
            logs.append(criterion(model, batch)[2])
    m = criterion.reduce_metrics(logs)
    assert (round(m["loss"], 3), round(m["nll_loss"], 3), m["ppl"]) == (8.368, 7.872, 234.26)
    assert (m["ntokens"], m["nsentences"]) == (8825, 200)
