"""Code written for fairseq's hub runs with ``fairseq`` replaced by ``seqloom``: hypotheses read as fairseq's dicts,
and fairseq's import paths give model classes whose ``from_pretrained`` returns the hub."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from seqloom.generation.hypotheses import Hypothesis
from seqloom.hub import TranslationHub


def test_hypothesis_reads_as_fairseqs_dict_with_fairseqs_types() -> None:
    hyp = Hypothesis(torch.tensor([5, 6, 2]), -0.5, torch.tensor([-0.25, -0.5, -0.75]))
    assert isinstance(hyp, Mapping)
    assert list(hyp.keys()) == ["tokens", "score", "attention", "alignment", "positional_scores"]
    assert "positional_scores" in hyp and "text" not in hyp and len(hyp) == 5
    assert hyp["tokens"] is hyp.tokens and hyp["positional_scores"] is hyp.positional_scores
    score = hyp["score"]  # fairseq: a 0-dim float32 tensor; the attribute stays a float
    assert torch.is_tensor(score) and score.dim() == 0 and score.dtype == torch.float32 and score.item() == -0.5
    assert isinstance(hyp.score, float)
    # nothing recorded: empty tensors, as fairseq's beam search fills them
    assert hyp["attention"].numel() == 0 and hyp["alignment"].numel() == 0
    hyp.alignment = [(0, 0), (1, 1)]
    hyp.attention = torch.rand(4, 3)
    assert hyp["alignment"] == [(0, 0), (1, 1)] and hyp["attention"] is hyp.attention
    assert hyp.get("missing") is None and dict(hyp)["tokens"] is hyp.tokens
    with pytest.raises(KeyError, match="positional_score"):
        hyp["positional_score"]


def test_generate_results_subscript_like_fairseqs(mt_hub: TranslationHub, hub_json: dict[str, Any]) -> None:
    """hub.json was written by fairseq with h[0]['tokens'], h[0]['score'], h[0]['positional_scores']."""
    gen = mt_hub.generate([mt_hub.encode(s) for s in hub_json["inputs"][:4]], beam=5)
    for beams, want in zip(gen, hub_json["generate_beam5_top"]):
        assert beams[0]["tokens"].tolist() == want["tokens"]
        assert float(beams[0]["score"]) == pytest.approx(want["score"], abs=1e-4)
        assert beams[0]["positional_scores"].tolist() == pytest.approx(want["positional_scores"], abs=1e-4)


def test_fairseq_import_paths_give_model_classes_with_from_pretrained(fairseq_fixtures: Path) -> None:
    """Run in a fresh interpreter: importing the model modules loads no hub, and from_pretrained finds it."""
    script = f"""
import sys
from seqloom.models.transformer import TransformerModel
from seqloom.models.transformer_lm import TransformerLanguageModel
from seqloom.models.bart import BARTModel
assert not [m for m in sys.modules if m.startswith(("seqloom.hub", "seqloom.generation"))], "models import no hub"
fix = {str(fairseq_fixtures)!r}
mt = TransformerModel.from_pretrained(fix + "/mt/checkpoints", checkpoint_file="checkpoint_best.pt",
    data_name_or_path=fix + "/mt/data-bin", tokenizer="moses", bpe="subword_nmt",
    bpe_codes=fix + "/mt/text/bpe.codes")
assert type(mt).__name__ == "TranslationHub" and isinstance(mt.models[0], TransformerModel)
lm = TransformerLanguageModel.from_pretrained(fix + "/lm/checkpoints", "checkpoint_best.pt",
    data_name_or_path=fix + "/lm/data-bin", tokenizer="moses", bpe="subword_nmt",
    bpe_codes=fix + "/mt/text/bpe.codes")
assert type(lm).__name__ == "LanguageModelHub" and isinstance(lm.models[0], TransformerLanguageModel)
import seqloom.hub
assert seqloom.hub.TransformerModel is TransformerModel and seqloom.hub.TransformerLanguageModel is TransformerLanguageModel
assert seqloom.hub.BARTModel is BARTModel and issubclass(BARTModel, TransformerModel)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


def test_hub_task_gives_what_fairseq_hub_code_reads(mt_hub: TranslationHub) -> None:
    """fairseq's own hub.json script read ``hub.task.source_dictionary``; seqloom keeps no task object."""
    assert mt_hub.task.source_dictionary is mt_hub.src_dict and mt_hub.task.target_dictionary is mt_hub.tgt_dict
    assert mt_hub.task.max_positions() == (1024, 1024)
    assert mt_hub.task.source_dictionary.index("the") != mt_hub.task.source_dictionary.unk()
    with pytest.raises(AttributeError, match=r"hub.task has no 'build_generator': seqloom's hubs keep no fairseq"):
        mt_hub.task.build_generator  # noqa: B018
