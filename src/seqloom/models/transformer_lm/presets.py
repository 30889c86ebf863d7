"""fairseq's named language-model architectures (``--arch``), as functions returning configs.

``transformer_lm`` is the config's defaults (fairseq registers it with a no-op arch function). Every other
preset starts from :func:`base_lm` (fairseq's ``base_lm_architecture``: pre-norm, input/output dims that
follow ``--decoder-embed-dim``) and sets what fairseq's arch function sets, so flags override them as in fairseq.
"""

from __future__ import annotations

from dataclasses import replace

from seqloom.models.transformer_lm.config import TransformerLMConfig
from seqloom.registry import register_architecture

MODEL = "transformer_lm"


@register_architecture(MODEL, "transformer_lm")
def transformer_lm() -> TransformerLMConfig:
    """The dataclass defaults: 6 post-norm layers, d512, FFN 2048, 8 heads, input/output dims 512."""
    return TransformerLMConfig()


def base_lm() -> TransformerLMConfig:
    """fairseq's ``base_lm_architecture``: pre-norm; input and output dims default to the embedding dim."""
    return replace(
        TransformerLMConfig(), decoder_normalize_before=True, decoder_input_dim=None, decoder_output_dim=None
    )


@register_architecture(MODEL, "transformer_lm_big")
def transformer_lm_big() -> TransformerLMConfig:
    return replace(
        base_lm(), decoder_layers=12, decoder_embed_dim=1024, decoder_ffn_embed_dim=4096, decoder_attention_heads=16
    )


@register_architecture(MODEL, "transformer_lm_baevski_wiki103")
def transformer_lm_baevski_wiki103() -> TransformerLMConfig:
    """Baevski & Auli's WikiText-103 model: 16 layers, adaptive input and softmax with tied weights."""
    return replace(
        transformer_lm_big(),
        decoder_layers=16,
        decoder_attention_heads=8,
        dropout=0.3,
        adaptive_input=True,
        tie_adaptive_weights=True,
        adaptive_input_cutoff="20000,60000",
        adaptive_softmax_cutoff="20000,60000",
        adaptive_softmax_dropout=0.2,
        attention_dropout=0.1,
        activation_dropout=0.1,
        no_decoder_final_norm=True,
        tie_adaptive_proj=True,
    )


register_architecture(MODEL, "transformer_lm_wiki103")(transformer_lm_baevski_wiki103)


@register_architecture(MODEL, "transformer_lm_baevski_gbw")
def transformer_lm_baevski_gbw() -> TransformerLMConfig:
    return replace(
        transformer_lm_big(), decoder_embed_dim=512, dropout=0.1, attention_dropout=0.1, no_decoder_final_norm=True
    )


register_architecture(MODEL, "transformer_lm_gbw")(transformer_lm_baevski_gbw)


def _gpt(embed: int, ffn: int, layers: int, heads: int) -> TransformerLMConfig:
    """The GPT family: GELU, dropout and attention dropout 0.1."""
    return replace(
        base_lm(),
        decoder_embed_dim=embed,
        decoder_ffn_embed_dim=ffn,
        decoder_layers=layers,
        decoder_attention_heads=heads,
        dropout=0.1,
        attention_dropout=0.1,
        activation_fn="gelu",
    )


@register_architecture(MODEL, "transformer_lm_gpt")
def transformer_lm_gpt() -> TransformerLMConfig:
    return _gpt(768, 3072, 12, 12)


@register_architecture(MODEL, "transformer_lm_gpt2_small")
def transformer_lm_gpt2_small() -> TransformerLMConfig:
    return _gpt(1024, 4096, 24, 16)


@register_architecture(MODEL, "transformer_lm_gpt2_tiny")
def transformer_lm_gpt2_tiny() -> TransformerLMConfig:
    return _gpt(64, 64, 2, 1)


@register_architecture(MODEL, "transformer_lm_gpt2_medium")
def transformer_lm_gpt2_medium() -> TransformerLMConfig:
    return _gpt(1280, 5120, 36, 20)


@register_architecture(MODEL, "transformer_lm_gpt2_big")
def transformer_lm_gpt2_big() -> TransformerLMConfig:
    return _gpt(1600, 6400, 48, 25)
