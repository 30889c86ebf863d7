"""fairseq-built pre-norm/learned-position and shared-embedding transformers load through the hub and export.

The reference files (tests/fixtures/transformer, written by fairseq) hold each model's weights, its args and
fairseq's logits for a batch; the hub's teacher-forced scores must equal fairseq's log-softmax of them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from seqloom.checkpoint import load_checkpoint
from seqloom.hub import TransformerModel
from seqloom.hub.export import write_export

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "transformer"


def _model_dir(tmp_path: Path, ref: dict[str, Any]) -> Path:
    """A fairseq-layout folder: model.pt with an args Namespace, and w0, w1, ... dictionaries."""
    folder = tmp_path / "model"
    folder.mkdir()
    for lang, size in (("src", ref["src_vocab"]), ("tgt", ref["tgt_vocab"])):
        lines = "".join(f"w{i} 1\n" for i in range(size - 4))  # 4 special symbols come first
        (folder / f"dict.{lang}.txt").write_text(lines, encoding="utf-8")
    args = argparse.Namespace(**ref["args"], source_lang="src", target_lang="tgt")
    torch.save({"args": args, "model": ref["model"]}, folder / "model.pt")
    return folder


def _pairs_and_expected(ref: dict[str, Any]) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[torch.Tensor]]:
    lprobs = torch.log_softmax(ref["logits"].float(), dim=-1)  # (B, T, V), fairseq's forward
    pairs, expected = [], []
    for i in range(ref["src_tokens"].size(0)):
        src = ref["src_tokens"][i][ref["src_tokens"][i].ne(1)]
        tgt = ref["target"][i][ref["target"][i].ne(1)]
        pairs.append((src, tgt))
        expected.append(lprobs[i, : tgt.numel()].gather(-1, tgt[:, None])[:, 0])
    return pairs, expected


@pytest.mark.parametrize("variant", ["prenorm_learned", "shared_sinusoidal"])
def test_fairseq_variant_scores_through_hub_and_export(variant: str, tmp_path: Path) -> None:
    ref = load_checkpoint(REFERENCE / f"{variant}.pt")
    hub = TransformerModel.from_pretrained(str(_model_dir(tmp_path, ref)))
    cfg = hub.model.cfg
    assert cfg.encoder_normalize_before == (variant == "prenorm_learned") == cfg.decoder_learned_pos
    pairs, expected = _pairs_and_expected(ref)
    scored = hub.score(pairs)
    for hyp, want in zip(scored, expected):
        torch.testing.assert_close(hyp.positional_scores, want, atol=1e-5, rtol=0)
    out = write_export(hub, tmp_path / "export")
    tied = json.loads((out / "config.json").read_text(encoding="utf-8"))["tied_weights"]
    if variant == "shared_sinusoidal":  # encoder, decoder and output tables are one tensor, stored once
        assert tied == {
            "decoder.embed_tokens.weight": "encoder.embed_tokens.weight",
            "decoder.output_projection.weight": "encoder.embed_tokens.weight",
        }
    again = TransformerModel.from_pretrained(str(out))
    assert again.model.encoder.embed_tokens.weight is again.model.decoder.embed_tokens.weight or not tied
    for a, b in zip(again.score(pairs), scored):
        assert torch.equal(a.positional_scores, b.positional_scores)
