"""--retain-dropout and --retain-dropout-modules: which modules drop out during generation, by fairseq's names."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqloom.cli.generate import main as generate
from seqloom.generation.dropout import apply_retain_dropout, parse_modules, retained
from seqloom.hub import TransformerModel


@pytest.fixture(scope="module")
def model(fairseq_fixtures: Path):
    mt = fairseq_fixtures / "mt"
    hub = TransformerModel.from_pretrained(str(mt / "checkpoints"), checkpoint_file="checkpoint_best.pt",
                                           data_name_or_path=str(mt / "data-bin"))  # fmt: skip
    return hub.models[0]


@pytest.mark.parametrize(("modules", "expected"), [
    ('["MultiheadAttention"]', ["MultiheadAttention"]),
    ("TransformerEncoderLayerBase", ["TransformerEncoderLayer"]),
    ("TransformerDecoderLayerBase,TransformerDecoder", ["TransformerDecoder", "TransformerDecoderLayer"]),
])  # fmt: skip
def test_only_the_named_modules_drop_out(model, modules: str, expected: list[str]) -> None:
    apply_retain_dropout(model, True, modules)
    assert retained(model) == expected
    apply_retain_dropout(model, False, modules)  # without --retain-dropout the list does nothing (as fairseq)
    assert retained(model) == []
    apply_retain_dropout(model, True, None)  # every module
    assert "TransformerEncoderLayer" in retained(model) and "MultiheadAttention" in retained(model)
    model.eval()


def test_unknown_module_names_are_named(model) -> None:
    with pytest.raises(ValueError, match="no module of this model is named TransformerLayerX"):
        apply_retain_dropout(model, True, "TransformerLayerX")
    assert (
        parse_modules("['A', 'B']") == ["A", "B"] and parse_modules("A B") == ["A", "B"] and parse_modules("") is None
    )


def test_generate_with_retained_decoder_dropout_varies(fairseq_fixtures: Path, capsys) -> None:
    """Dropout (0.1) kept in the decoder layers changes some hypotheses; the plain run is deterministic."""
    mt = fairseq_fixtures / "mt"
    argv = [str(mt / "data-bin"), "--path", str(mt / "checkpoints" / "checkpoint_best.pt"), "--gen-subset", "valid",
            "--beam", "2", "--batch-size", "16", "--max-sentences", "16", "--max-len-a", "0", "--max-len-b", "12",
            "--no-progress-bar", "--cpu", "--num-shards", "10", "--shard-id", "0"]  # fmt: skip

    def hypotheses(*extra: str) -> list[str]:
        assert generate([*argv, *extra]) == 0
        return [line for line in capsys.readouterr().out.splitlines() if line.startswith("H-")]

    plain = hypotheses()
    assert hypotheses() == plain
    kept = hypotheses("--retain-dropout", "--retain-dropout-modules", "TransformerDecoderLayerBase")
    assert len(kept) == len(plain) and kept != plain


def test_retained_dropout_leaves_layerdrop_off() -> None:
    """fairseq keeps the model in eval mode under --retain-dropout (only its dropout modules apply), so
    LayerDrop, which follows that mode, never drops a layer while generating; training still drops them."""
    import torch

    from seqloom.models.transformer import TransformerConfig, build_model

    class Vocab:
        def __len__(self) -> int:
            return 20

        def pad(self) -> int:
            return 1

    torch.manual_seed(0)
    cfg = TransformerConfig(encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_layers=3, encoder_attention_heads=2,
                            decoder_layers=3, decoder_attention_heads=2, encoder_layerdrop=0.5, decoder_layerdrop=0.5)  # fmt: skip
    model = build_model(cfg, Vocab(), Vocab())
    calls = []
    for layer in [*model.encoder.layers, *model.decoder.layers]:
        layer.register_forward_hook(lambda module, args, out: calls.append(module))
    src, prev = torch.tensor([[5, 6, 7, 2]]), torch.tensor([[2, 5, 6]])
    for modules in (None, "TransformerDecoder,TransformerEncoder"):
        apply_retain_dropout(model, True, modules)
        calls.clear()
        with torch.no_grad():
            for _ in range(20):
                model(src, None, prev)
        assert len(calls) == 20 * 6, modules  # every layer, every time
    apply_retain_dropout(model, False, None)
    model.train()
    calls.clear()
    for _ in range(20):
        model(src, None, prev)
    assert len(calls) < 20 * 6  # training: LayerDrop drops some
