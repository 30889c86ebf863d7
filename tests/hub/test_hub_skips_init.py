"""``from_pretrained`` builds its models without the random initialisation the weights replace: it draws nothing
from the random generator (a seed set before loading is the seed of what follows), its models hold the
checkpoint's values, and a head registered afterwards is initialised as usual."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from seqloom.checkpoint.io import load_checkpoint
from seqloom.hub import BARTModel, TransformerModel
from seqloom.models.bart.model import ClassificationHead


def test_translation_hub_loads_the_checkpoint_and_draws_nothing(fairseq_fixtures: Path,
                                                                 mt_kwargs: dict[str, Any]) -> None:  # fmt: skip
    torch.manual_seed(2)
    before = torch.get_rng_state()
    hub = TransformerModel.from_pretrained(str(fairseq_fixtures / "mt" / "checkpoints"), **mt_kwargs)
    assert torch.equal(torch.get_rng_state(), before)
    sd = hub.models[0].state_dict()
    checkpoint = load_checkpoint(fairseq_fixtures / "mt" / "checkpoints" / "checkpoint_best.pt")["model"]
    for key, value in checkpoint.items():
        assert torch.equal(sd[key], value), key


def test_bart_hub_head_registered_after_loading_is_initialised(fairseq_fixtures: Path, gpt2_bpe: Path) -> None:
    folder = str(fairseq_fixtures / "bart" / "model")
    torch.manual_seed(4)
    before = torch.get_rng_state()
    hub = BARTModel.from_pretrained(folder, checkpoint_file="model.pt", data_name_or_path=folder, bpe="gpt2",
                                    gpt2_encoder_json=str(gpt2_bpe / "encoder.json"),
                                    gpt2_vocab_bpe=str(gpt2_bpe / "vocab.bpe"))  # fmt: skip
    assert torch.equal(torch.get_rng_state(), before)
    hub.register_classification_head("new", num_classes=3)
    dim = hub.bart.cfg.encoder_embed_dim
    torch.set_rng_state(before)
    expected = ClassificationHead(dim, dim, 3, activation=hub.bart.cfg.pooler_activation_fn, pooler_dropout=0.0)
    got = dict(hub.bart.classification_heads["new"].named_parameters())
    for name, value in expected.named_parameters():
        assert torch.equal(got[name], value), name
