"""RoBERTa's model: fairseq's presets and state-dict keys, learned positions with the padding offset, the tied
LM head, --untie-weights-roberta, pre-norm, LayerDrop, spectral-normalised heads, masked-row projection, and the
key upgrades of fairseq's older checkpoints (the released roberta.base layout)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from seqloom import registry
from seqloom.checkpoint.io import load_checkpoint
from seqloom.components import import_builtins
from seqloom.data.dictionary import Dictionary
from seqloom.models.roberta.builder import build_model
from seqloom.models.roberta.config import RobertaConfig
from seqloom.models.roberta.interop import model_from_state

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "roberta"
TINY = dict(encoder_layers=2, encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_attention_heads=2)


def vocab(n: int = 40) -> Dictionary:
    d = Dictionary()
    for i in range(n):
        d.add_symbol(f"w{i}")
    d.add_symbol("<mask>")
    return d


def tiny(**changes: object) -> RobertaConfig:
    return replace(RobertaConfig(), **{**TINY, "max_positions": 32, **changes})  # type: ignore[arg-type]


def test_presets_are_fairseqs() -> None:
    import_builtins()
    shapes = {name: (c.encoder_layers, c.encoder_embed_dim, c.encoder_ffn_embed_dim, c.encoder_attention_heads)
              for name in ("roberta", "roberta_base", "roberta_large", "roberta_prenorm", "xlm")
              for c in [registry.ARCHITECTURES.get(name).preset()]}  # fmt: skip
    assert shapes == {"roberta": (12, 768, 3072, 12), "roberta_base": (12, 768, 3072, 12),
                      "roberta_large": (24, 1024, 4096, 16), "roberta_prenorm": (12, 768, 3072, 12),
                      "xlm": (16, 1280, 5120, 16)}  # fmt: skip
    prenorm = registry.ARCHITECTURES.get("roberta_prenorm").preset()
    assert prenorm.encoder_normalize_before and not prenorm.layernorm_embedding
    base = RobertaConfig()
    assert (base.activation_fn, base.dropout, base.attention_dropout, base.no_scale_embedding) == (
        "gelu",
        0.1,
        0.1,
        True,
    )


def test_keys_match_fairseqs_checkpoint() -> None:
    state = load_checkpoint(FIXTURES / "gpt2" / "model.pt")
    d = Dictionary.load(str(FIXTURES / "gpt2" / "dict.txt"))
    d.add_symbol("<mask>")
    model = build_model(replace(RobertaConfig(), encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
                                encoder_attention_heads=2, max_positions=128), d)  # fmt: skip
    assert set(model.state_dict()) == set(state["model"])
    for key, value in model.state_dict().items():
        assert value.shape == state["model"][key].shape, key


def test_positions_offset_and_tied_head() -> None:
    model = build_model(tiny(), vocab())
    enc = model.encoder.sentence_encoder
    assert enc.embed_positions is not None and enc.embed_positions.weight.shape == (32 + 2, 16)  # pad + 1 offset
    assert model.encoder.lm_head.weight is enc.embed_tokens.weight
    assert enc.layernorm_embedding is not None and enc.layer_norm is None
    untied = build_model(tiny(untie_weights_roberta=True), vocab())
    assert untied.encoder.lm_head.weight is not untied.encoder.sentence_encoder.embed_tokens.weight
    prenorm = build_model(tiny(encoder_normalize_before=True, layernorm_embedding=False), vocab())
    assert prenorm.encoder.sentence_encoder.layer_norm is not None
    assert prenorm.encoder.sentence_encoder.layernorm_embedding is None
    assert model.max_positions() == 32


def test_masked_rows_equal_the_full_projection() -> None:
    torch.manual_seed(0)
    model = build_model(tiny(), vocab()).eval()
    tokens = torch.randint(4, 40, (3, 9))
    tokens[1, 6:] = 1  # padding
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[0, 2], mask[2, 5], mask[1, 1] = True, True, True
    full = model(tokens).logits  # (B, T, V)
    rows = model(tokens, masked_tokens=mask).logits  # (N, V)
    torch.testing.assert_close(rows, full[mask])
    features = model(tokens, features_only=True, return_all_hiddens=True)
    assert features.logits.shape == (3, 9, 16) and features.inner_states is not None
    assert len(features.inner_states) == 3


def test_layerdrop_skips_layers_in_training_only() -> None:
    torch.manual_seed(0)
    model = build_model(tiny(encoder_layers=6, encoder_layerdrop=0.5), vocab())
    tokens = torch.randint(4, 40, (2, 7))
    model.train()
    counts = {len(model(tokens, features_only=True, return_all_hiddens=True).inner_states or []) for _ in range(20)}
    assert len(counts) > 1 and max(counts) <= 7
    model.eval()
    assert len(model(tokens, features_only=True, return_all_hiddens=True).inner_states or []) == 7


def test_spectral_norm_head_keys_and_head_reads_bos() -> None:
    model = build_model(tiny(spectral_norm_classification_head=True), vocab())
    model.register_classification_head("h", num_classes=3)
    keys = {k for k in model.state_dict() if k.startswith("classification_heads.h.")}
    assert {"classification_heads.h.out_proj.weight_orig", "classification_heads.h.out_proj.weight_u",
            "classification_heads.h.out_proj.weight_v", "classification_heads.h.dense.weight"} <= keys  # fmt: skip
    model.eval()
    tokens = torch.randint(4, 40, (2, 5))
    out = model(tokens, classification_head_name="h").logits
    assert out.shape == (2, 3)
    with pytest.raises(KeyError, match="register_classification_head"):
        model(tokens, classification_head_name="other")


def test_old_fairseq_layout_loads(tmp_path: Path) -> None:
    """fairseq <= 0.9 RoBERTa keys (released roberta.base): ``decoder.*``, ``emb_layer_norm``, fused ``in_proj``;
    roberta.base's shape of tables: 50,265 symbols with ``<mask>`` and 514 positions."""
    d = Dictionary()
    for i in range(50260):
        d.add_symbol(str(i))
    d.add_symbol("<mask>")
    assert len(d) == 50265
    cfg = replace(RobertaConfig(), encoder_layers=1, encoder_embed_dim=8, encoder_ffn_embed_dim=16,
                  encoder_attention_heads=2, max_positions=512)  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg, d).eval()
    old = {}
    for key, value in model.state_dict().items():
        key = key.replace("encoder.", "decoder.", 1).replace(".layernorm_embedding.", ".emb_layer_norm.")
        old[key] = value.clone()
    for kind in ("weight", "bias"):
        prefix = "decoder.sentence_encoder.layers.0.self_attn."
        old[prefix + f"in_proj_{kind}"] = torch.cat(
            [old.pop(prefix + f"{p}.{kind}") for p in ("q_proj", "k_proj", "v_proj")]
        )
    args = {"arch": "roberta_base", "encoder_layers": 1, "encoder_embed_dim": 8, "encoder_ffn_embed_dim": 16,
            "encoder_attention_heads": 2, "max_positions": 512}  # fmt: skip
    loaded = model_from_state({"args": args, "model": old}, d, source="old.pt").eval()
    assert loaded.encoder.sentence_encoder.embed_positions.weight.shape == (514, 8)
    tokens = torch.randint(4, 50265, (2, 6))
    torch.testing.assert_close(loaded(tokens).logits, model(tokens).logits)
    with pytest.raises(ValueError, match="50265 rows but the dictionary has 45 symbols"):
        model_from_state({"args": args, "model": old}, vocab(), source="old.pt")


def test_family_found_through_the_registry_for_fairseqs_names() -> None:
    """models.loading finds RoBERTa by fairseq's arch names and by the model name 'xlmr' of XLM-R checkpoints
    (250,002 symbols: 4 specials, 249,997 SentencePiece entries, <mask>)."""
    from seqloom.models.loading import model_family
    from seqloom.models.loading import model_from_state as load_any

    d = Dictionary()
    for i in range(249997):
        d.add_symbol(f"p{i}")
    d.add_symbol("<mask>")
    cfg = replace(RobertaConfig(), encoder_layers=1, encoder_embed_dim=4, encoder_ffn_embed_dim=8,
                  encoder_attention_heads=1, max_positions=512)  # fmt: skip
    model = build_model(cfg, d)
    sizes = {"encoder_layers": 1, "encoder_embed_dim": 4, "encoder_ffn_embed_dim": 8, "encoder_attention_heads": 1,
             "max_positions": 512}  # fmt: skip
    for name in ("xlmr", "roberta_large"):
        state = {"cfg": {"model": {"_name": name, **sizes}}, "model": model.state_dict()}
        assert model_family(state) in ("roberta", "xlmr")
        loaded = load_any(state, d, d, source=f"{name}.pt")
        assert loaded.encoder.lm_head.weight.shape == (250002, 4)
        assert loaded.encoder.sentence_encoder.embed_positions.weight.shape == (514, 4)


def test_prenorm_untied_equals_fairseqs_seeded_model() -> None:
    """roberta_prenorm with --untie-weights-roberta, built by fairseq after torch.manual_seed(0)
    (fixtures/roberta/prenorm_untied.pt): the same seed builds the same weights here, and the outputs agree."""
    from seqloom.models.roberta.interop import config_from_fairseq_args

    ref = load_checkpoint(FIXTURES / "prenorm_untied.pt")
    d = Dictionary()
    for symbol in ref["symbols"][d.nspecial :]:
        d.add_symbol(symbol)
    cfg = config_from_fairseq_args(ref["args"])
    assert cfg.encoder_normalize_before and not cfg.layernorm_embedding and cfg.untie_weights_roberta
    torch.manual_seed(0)
    model = build_model(cfg, d).eval()
    own = model.state_dict()
    assert set(own) == set(ref["model"])
    for key, value in ref["model"].items():
        torch.testing.assert_close(own[key], value, msg=key)  # fairseq's seeded initial weights
    assert model.encoder.lm_head.weight is not model.encoder.sentence_encoder.embed_tokens.weight
    with torch.no_grad():
        torch.testing.assert_close(model(ref["tokens"]).logits, ref["logits"], atol=1e-5, rtol=1e-5)
        out = model(ref["tokens"], features_only=True, return_all_hiddens=True)
    torch.testing.assert_close(out.logits, ref["features"], atol=1e-5, rtol=1e-5)
    assert out.inner_states is not None and len(out.inner_states) == len(ref["inner_states"]) == 3
    for mine, theirs in zip(out.inner_states, ref["inner_states"]):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
