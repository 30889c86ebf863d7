"""Each family's checkpoint loader builds without the random initialisation that the weights replace: the loaded
model equals the one built the normal way (parameters, persistent and computed buffers), and loading leaves the
random generator where it was. A head the checkpoint lacks still gets its normal initialisation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from seqloom.checkpoint.io import load_checkpoint
from seqloom.data.dictionary import Dictionary
from seqloom.hub.bart import load_dictionary
from seqloom.models.bart import build_model as build_bart
from seqloom.models.bart.interop import config_from_checkpoint as bart_config
from seqloom.models.bart.interop import model_from_state as load_bart
from seqloom.models.roberta.interop import model_from_state as load_roberta
from seqloom.models.transformer.interop import model_from_state as load_transformer
from seqloom.models.transformer_lm.interop import model_from_state as load_lm
from seqloom.modules.skip_init import build_and_load

ROBERTA = Path(__file__).resolve().parents[1] / "fixtures" / "roberta" / "gpt2"
Loader = Callable[..., nn.Module]


def transformer(fx: Path) -> tuple[dict[str, Any], Loader]:
    mt = fx / "mt"
    en, es = Dictionary.load(mt / "data-bin" / "dict.en.txt"), Dictionary.load(mt / "data-bin" / "dict.es.txt")
    return load_checkpoint(mt / "checkpoints" / "checkpoint_best.pt"), lambda s, **k: load_transformer(s, en, es, **k)


def language_model(fx: Path) -> tuple[dict[str, Any], Loader]:
    d = Dictionary.load(fx / "lm" / "data-bin" / "dict.txt")
    state = load_checkpoint(fx / "lm" / "checkpoints" / "checkpoint_best.pt")
    return state, lambda s, **k: load_lm(s, d, source="lm", **k)


def bart(fx: Path) -> tuple[dict[str, Any], Loader]:
    d = load_dictionary(fx / "bart" / "model" / "dict.txt")
    return load_checkpoint(fx / "bart" / "model" / "model.pt"), lambda s, **k: load_bart(s, d, source="bart", **k)


def roberta(fx: Path) -> tuple[dict[str, Any], Loader]:  # fine-tuned: with a classification head
    d = load_dictionary(ROBERTA / "dict.txt")
    return load_checkpoint(ROBERTA / "finetuned.pt"), lambda s, **k: load_roberta(s, d, source="roberta", **k)


def tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and every buffer, non-persistent ones (sinusoidal tables) included."""
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


@pytest.mark.parametrize("family", [transformer, language_model, bart, roberta])
def test_loaded_model_equals_the_normally_built_one(family: Callable[..., Any], fairseq_fixtures: Path) -> None:
    state, load = family(fairseq_fixtures)
    torch.manual_seed(1)
    before = torch.get_rng_state()
    fast = load(state)
    assert torch.equal(torch.get_rng_state(), before)  # nothing drawn: the initialisation was skipped
    normal = load(state, random_init=True)
    assert not torch.equal(torch.get_rng_state(), before)  # fairseq's build draws its initial weights
    got, expected = tensors(fast), tensors(normal)
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert torch.equal(got[name], value), name
    assert any("classification_heads." in name for name in got) == (family is roberta)


def test_a_head_missing_from_the_checkpoint_keeps_its_initialisation(fairseq_fixtures: Path) -> None:
    """BART's upgrade fills a registered head that the checkpoint lacks from the model: that head gets the values a
    seeded normal build gives it, the checkpoint's weights the checkpoint's values."""
    state, _ = bart(fairseq_fixtures)
    dictionary = load_dictionary(fairseq_fixtures / "bart" / "model" / "dict.txt")
    cfg = bart_config(state)

    def build() -> nn.Module:
        model = build_bart(cfg, dictionary, dictionary)
        model.register_classification_head("new", 3, 16)
        return model

    torch.manual_seed(5)
    model = build_and_load(build, state["model"])
    after = torch.get_rng_state()
    torch.manual_seed(5)
    normal = build()
    normal.load_state_dict(state["model"])
    assert torch.equal(torch.get_rng_state(), after)
    head = dict(model.classification_heads["new"].named_parameters())
    for name, value in normal.classification_heads["new"].named_parameters():
        assert torch.equal(head[name], value), name
    assert head["dense.weight"].std() > 0.01  # BART's N(0, 0.02), not an untouched allocation
    sd = model.state_dict()
    for key, value in state["model"].items():
        assert torch.equal(sd[key], value), key
