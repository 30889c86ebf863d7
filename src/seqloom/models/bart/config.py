"""``BARTConfig`` and fairseq's BART presets (``bart_base``, ``bart_large``, ``mbart_base``, ``mbart_large``).

BART is fairseq's encoder-decoder transformer with learned positions (``padding_idx + 1`` offset: 1,026 rows
for 1,024 positions), a layer norm on the embeddings, GELU, unscaled embeddings (BART; mBART scales them)
and one embedding table shared by encoder, decoder and output projection. On top come the options of the
sentence-classification heads (``--pooler-*``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from seqloom.config.options import field
from seqloom.models.transformer.config import ActivationFn, TransformerConfig
from seqloom.registry import register_architecture


@dataclass(kw_only=True)
class BARTConfig(TransformerConfig):
    """Options of ``--arch bart_*``: the transformer's, plus the classification heads' (fairseq's names)."""

    pooler_dropout: float = field(0.0, help="dropout before and inside the classification head")
    pooler_activation_fn: ActivationFn = field("tanh", help="nonlinearity of the classification head's hidden layer")
    spectral_norm_classification_head: bool = field(
        False, help="constrain the classification head's output layer with spectral normalization"
    )

    def unsupported(self) -> list[str]:
        flags = super().unsupported()
        if self.spectral_norm_classification_head:
            flags.append("--spectral-norm-classification-head")
        return flags


@register_architecture("bart", "bart_large")
def bart_large() -> BARTConfig:
    """BART large: 12+12 layers, d1024, FFN 4096, 16 heads (406M parameters with the GPT-2 vocabulary)."""
    return BARTConfig(
        encoder_embed_dim=1024,
        encoder_ffn_embed_dim=4 * 1024,
        encoder_layers=12,
        encoder_attention_heads=16,
        encoder_normalize_before=False,
        encoder_learned_pos=True,
        decoder_layers=12,
        decoder_attention_heads=16,
        decoder_normalize_before=False,
        decoder_learned_pos=True,
        attention_dropout=0.0,
        relu_dropout=0.0,
        dropout=0.1,
        max_target_positions=1024,
        max_source_positions=1024,
        share_decoder_input_output_embed=True,
        share_all_embeddings=True,
        no_scale_embedding=True,
        layernorm_embedding=True,
        activation_fn="gelu",
        pooler_activation_fn="tanh",
        pooler_dropout=0.0,
    )


@register_architecture("bart", "bart_base")
def bart_base() -> BARTConfig:
    """BART base: 6+6 layers, d768, FFN 3072, 12 heads (140M parameters with the GPT-2 vocabulary)."""
    return replace(
        bart_large(),
        encoder_embed_dim=768,
        encoder_ffn_embed_dim=4 * 768,
        encoder_layers=6,
        encoder_attention_heads=12,
        decoder_layers=6,
        decoder_attention_heads=12,
    )


@register_architecture("bart", "mbart_large")
def mbart_large() -> BARTConfig:
    """mBART large: BART large with embeddings scaled by sqrt(d)."""
    return replace(bart_large(), no_scale_embedding=False)


@register_architecture("bart", "mbart_base")
def mbart_base() -> BARTConfig:
    """mBART base: BART base with embeddings scaled by sqrt(d)."""
    return replace(bart_base(), no_scale_embedding=False)


@register_architecture("bart", "mbart_base_wmt20")
def mbart_base_wmt20() -> BARTConfig:
    """mBART base without the embedding layer norm (fairseq's WMT20 variant)."""
    return replace(mbart_base(), layernorm_embedding=False)
