"""Presets equal fairseq's arch functions, flags derive like fairseq's, and interop upgrades old checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from seqloom import registry
from seqloom.cli.parser import CommandSpec, parse_args
from seqloom.models.transformer import (
    TransformerConfig,
    build_model,
    config_from_checkpoint,
    fairseq_args_namespace,
    upgrade_state_dict,
)
from seqloom.models.transformer.interop import model_from_state
from seqloom.modules.masks import output_positions

# (encoder dim, ffn, heads, decoder dim, ffn, heads, layers enc/dec, dropout, attn dropout, act dropout, pre-norm)
# as fairseq 0.12's transformer_legacy.py arch functions leave the args
FAIRSEQ_PRESETS = {
    "transformer": (512, 2048, 8, 512, 2048, 8, 6, 6, 0.1, 0.0, 0.0, False),
    "transformer_tiny": (64, 64, 2, 64, 64, 2, 2, 2, 0.1, 0.0, 0.0, False),
    "transformer_iwslt_de_en": (512, 1024, 4, 512, 1024, 4, 6, 6, 0.1, 0.0, 0.0, False),
    "transformer_wmt_en_de": (512, 2048, 8, 512, 2048, 8, 6, 6, 0.1, 0.0, 0.0, False),
    "transformer_vaswani_wmt_en_de_big": (1024, 4096, 16, 1024, 4096, 16, 6, 6, 0.3, 0.0, 0.0, False),
    "transformer_vaswani_wmt_en_fr_big": (1024, 4096, 16, 1024, 4096, 16, 6, 6, 0.1, 0.0, 0.0, False),
    "transformer_wmt_en_de_big": (1024, 4096, 16, 1024, 4096, 16, 6, 6, 0.3, 0.1, 0.0, False),
    "transformer_wmt_en_de_big_t2t": (1024, 4096, 16, 1024, 4096, 16, 6, 6, 0.3, 0.1, 0.1, True),
}


@pytest.mark.parametrize("arch", sorted(FAIRSEQ_PRESETS))
def test_presets_equal_fairseqs_arch_functions(arch: str) -> None:
    entry = registry.ARCHITECTURES.get(arch)
    assert entry.model == "transformer"
    c = entry.preset().resolved()
    got = (
        c.encoder_embed_dim,
        c.encoder_ffn_embed_dim,
        c.encoder_attention_heads,
        c.decoder_embed_dim,
        c.decoder_ffn_embed_dim,
        c.decoder_attention_heads,
        c.encoder_layers,
        c.decoder_layers,
        c.dropout,
        c.attention_dropout,
        c.activation_dropout,
        c.encoder_normalize_before and c.decoder_normalize_before,
    )
    assert got == FAIRSEQ_PRESETS[arch]
    assert c.decoder_input_dim == c.decoder_output_dim == c.decoder_embed_dim
    assert (c.max_source_positions, c.max_target_positions, c.activation_fn) == (1024, 1024, "relu")


SPEC = CommandSpec(prog="seqloom test", description="", groups=(), selectors={"arch": "transformer"})


def test_flags_override_presets_and_derived_sizes_follow_like_fairseq() -> None:
    cfg = parse_args(SPEC, ["--arch", "transformer_tiny", "--encoder-embed-dim", "32", "--relu-dropout", "0.2"])[
        "model"
    ]
    assert isinstance(cfg, TransformerConfig)
    resolved = cfg.resolved()
    assert resolved.decoder_embed_dim == 32 and resolved.decoder_output_dim == 32  # follows the encoder
    assert resolved.encoder_attention_heads == 2 and resolved.activation_dropout == 0.2
    big = parse_args(SPEC, ["--arch", "transformer_vaswani_wmt_en_de_big", "--encoder-embed-dim", "512"])["model"]
    assert big.resolved().decoder_embed_dim == 1024  # set explicitly by the preset, as in fairseq


def test_share_all_embeddings_ties_all_three_tables() -> None:
    class Vocab:
        def __len__(self) -> int:
            return 12

        def pad(self) -> int:
            return 1

    v = Vocab()
    model = build_model(TransformerConfig(encoder_embed_dim=8, encoder_ffn_embed_dim=8, encoder_layers=1,
                                          decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                                          share_all_embeddings=True), v, v)  # fmt: skip
    shared = model.encoder.embed_tokens.weight
    assert model.decoder.embed_tokens.weight is shared and model.decoder.output_projection.weight is shared
    with pytest.raises(NotImplementedError, match="--adaptive-input"):
        build_model(TransformerConfig(adaptive_input=True), v, v)


def test_config_from_hydra_style_nested_dict_with_interpolations() -> None:
    state = {
        "args": None,
        "cfg": {
            "model": {
                "_name": "transformer_tiny",
                "encoder": {"embed_dim": 32, "layers": 3, "learned_pos": True},
                "decoder": {"embed_dim": 32, "output_dim": "${model.decoder.embed_dim}", "normalize_before": True},
                "dropout": 0.2,
            }
        },
    }
    cfg = config_from_checkpoint(state)
    assert (cfg.encoder_embed_dim, cfg.encoder_layers, cfg.encoder_learned_pos) == (32, 3, True)
    assert cfg.decoder_output_dim == 32 and cfg.decoder_normalize_before and cfg.dropout == 0.2
    assert cfg.encoder_attention_heads == 2  # from the transformer_tiny preset


def _tiny_args(**extra: object) -> argparse.Namespace:
    return argparse.Namespace(arch="transformer_tiny", encoder_embed_dim=8, encoder_ffn_embed_dim=16, **extra)


def _old_style(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same weights laid out as fairseq <= 0.6 stored them (fused projections, layer_norms.N, embed_out)."""
    old: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key.endswith(
            ("q_proj.weight", "k_proj.weight", "v_proj.weight", "q_proj.bias", "k_proj.bias", "v_proj.bias")
        ):
            continue
        for new, idx in (("self_attn_layer_norm", "0"), ("encoder_attn_layer_norm", "1"), ("final_layer_norm", "2")):
            if f".{new}." in key:
                idx = "1" if key.startswith("encoder") and new == "final_layer_norm" else idx
                key = key.replace(f".{new}.", f".layer_norms.{idx}.")
        old["decoder.embed_out" if key == "decoder.output_projection.weight" else key] = value
    for prefix in {k.rsplit(".", 2)[0] for k in sd if k.endswith("q_proj.weight")}:
        for kind in ("weight", "bias"):
            old[f"{prefix}.in_proj_{kind}"] = torch.cat([sd[f"{prefix}.{p}_proj.{kind}"] for p in "qkv"])
    old["encoder.embed_positions._float_tensor"] = torch.zeros(1)
    del old["encoder.version"], old["decoder.version"]  # fairseq < 0.6 had no version buffers
    return old


def test_old_fairseq_keys_are_upgraded_and_load_strictly() -> None:
    torch.manual_seed(0)
    state = {"args": _tiny_args(), "model": None}
    cfg = config_from_checkpoint(state)

    class Vocab:
        def __len__(self) -> int:
            return 10

        def pad(self) -> int:
            return 1

    reference = build_model(cfg, Vocab(), Vocab()).eval()
    sd = reference.state_dict()
    state["model"] = _old_style(sd)
    assert "decoder.layers.0.self_attn.in_proj_weight" in state["model"]
    upgraded = upgrade_state_dict(state["model"], cfg)
    assert set(upgraded) == set(sd)
    model = model_from_state(state).eval()
    src, prev = torch.tensor([[1, 4, 5, 2]]), torch.tensor([[2, 6, 7]])
    with torch.no_grad():
        torch.testing.assert_close(model(src, None, prev).logits, reference(src, None, prev).logits)


def test_vocabulary_size_mismatch_names_both_sizes(fairseq_fixtures: Path) -> None:
    from seqloom.checkpoint import load_checkpoint

    state = load_checkpoint(fairseq_fixtures / "mt" / "checkpoints" / "checkpoint_best.pt")

    class Vocab:
        def __len__(self) -> int:
            return 2000

        def pad(self) -> int:
            return 1

    with pytest.raises(ValueError, match=r"2056 rows but the source dictionary has 2000 symbols"):
        model_from_state(state, Vocab(), Vocab())


def test_args_written_for_fairseq_round_trip_to_the_same_config() -> None:
    cfg = TransformerConfig(encoder_embed_dim=16, decoder_output_dim=8, decoder_learned_pos=True, dropout=0.3)
    args = fairseq_args_namespace(cfg, arch="transformer_tiny")
    assert args.arch == "transformer_tiny" and args.decoder_embed_dim == 16 and args.decoder_input_dim == 16
    assert config_from_checkpoint({"args": args}) == cfg.resolved()
    assert config_from_checkpoint({"args": None, "cfg": {"model": args}}) == cfg.resolved()


class SizedVocab:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def pad(self) -> int:
        return 1


def test_output_mask_gives_the_masked_rows_of_the_full_logits() -> None:
    cfg = parse_args(SPEC, ["--arch", "transformer_tiny", "--dropout", "0"])["model"]
    model = build_model(cfg, SizedVocab(30), SizedVocab(25)).eval()
    src = torch.randint(4, 30, (2, 5))
    prev = torch.randint(4, 25, (2, 4))
    prev[1, 3] = 1  # padding
    mask = prev.ne(1)
    with torch.no_grad():
        full = model(src, None, prev).logits  # (B, T, V)
        picked = model(src, None, prev, output_mask=mask).logits  # (N, V)
        indexed = model(src, None, prev, output_mask=output_positions(mask)).logits  # flat indices: the same rows
    assert model.supports_output_mask and picked.shape == (7, 25)
    torch.testing.assert_close(picked, full[mask])
    assert torch.equal(indexed, picked)
