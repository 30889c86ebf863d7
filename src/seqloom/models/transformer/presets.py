"""fairseq's named transformer architectures (``--arch``), as functions returning configs.

Each preset sets exactly what fairseq's arch function sets; everything else keeps the base default,
so a flag on the command line overrides a preset just as in fairseq.
"""

from __future__ import annotations

from dataclasses import replace

from seqloom.models.transformer.config import TransformerConfig
from seqloom.registry import register_architecture


@register_architecture("transformer", "transformer")
def transformer() -> TransformerConfig:
    """Transformer base (Vaswani et al., 2017): 6+6 layers, d512, FFN 2048, 8 heads."""
    return TransformerConfig()


@register_architecture("transformer", "transformer_tiny")
def transformer_tiny() -> TransformerConfig:
    return replace(
        transformer(),
        encoder_embed_dim=64,
        encoder_ffn_embed_dim=64,
        encoder_layers=2,
        encoder_attention_heads=2,
        decoder_layers=2,
        decoder_attention_heads=2,
    )


@register_architecture("transformer", "transformer_iwslt_de_en")
def transformer_iwslt_de_en() -> TransformerConfig:
    return replace(
        transformer(),
        encoder_embed_dim=512,
        encoder_ffn_embed_dim=1024,
        encoder_attention_heads=4,
        encoder_layers=6,
        decoder_embed_dim=512,
        decoder_ffn_embed_dim=1024,
        decoder_attention_heads=4,
        decoder_layers=6,
    )


@register_architecture("transformer", "transformer_wmt_en_de")
def transformer_wmt_en_de() -> TransformerConfig:
    return transformer()


@register_architecture("transformer", "transformer_vaswani_wmt_en_de_big")
def transformer_vaswani_wmt_en_de_big() -> TransformerConfig:
    """Transformer big from "Attention Is All You Need": d1024, FFN 4096, 16 heads, dropout 0.3."""
    return replace(
        transformer(),
        encoder_embed_dim=1024,
        encoder_ffn_embed_dim=4096,
        encoder_attention_heads=16,
        encoder_normalize_before=False,
        decoder_embed_dim=1024,
        decoder_ffn_embed_dim=4096,
        decoder_attention_heads=16,
        dropout=0.3,
    )


@register_architecture("transformer", "transformer_vaswani_wmt_en_fr_big")
def transformer_vaswani_wmt_en_fr_big() -> TransformerConfig:
    return replace(transformer_vaswani_wmt_en_de_big(), dropout=0.1)


@register_architecture("transformer", "transformer_wmt_en_de_big")
def transformer_wmt_en_de_big() -> TransformerConfig:
    return replace(transformer_vaswani_wmt_en_de_big(), attention_dropout=0.1)


@register_architecture("transformer", "transformer_wmt_en_de_big_t2t")
def transformer_wmt_en_de_big_t2t() -> TransformerConfig:
    """tensor2tensor's defaults: the big model with pre-norm and attention/activation dropout 0.1."""
    return replace(
        transformer_vaswani_wmt_en_de_big(),
        encoder_normalize_before=True,
        decoder_normalize_before=True,
        attention_dropout=0.1,
        activation_dropout=0.1,
    )


@register_architecture("transformer", "transformer_align")
def transformer_align() -> TransformerConfig:
    """Transformer base whose 5th decoder layer's first cross-attention head learns word alignments (Garg et al.,
    2019), supervised by ``--criterion label_smoothed_cross_entropy_with_alignment``."""
    return replace(transformer(), alignment_heads=1, alignment_layer=4)


@register_architecture("transformer", "transformer_wmt_en_de_big_align")
def transformer_wmt_en_de_big_align() -> TransformerConfig:
    return replace(transformer_wmt_en_de_big(), alignment_heads=1, alignment_layer=4)
