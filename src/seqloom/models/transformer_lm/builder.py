"""Turns a :class:`TransformerLMConfig` into a :class:`TransformerLM`.

Modules are created in fairseq's order (token embedding, then in the decoder: ``project_in_dim``, positions,
layers, final norm, ``project_out_dim``, output projection or adaptive softmax) with fairseq's
initialisation, so the same ``torch.manual_seed`` gives the same initial weights as ``fairseq-train``.
"""

from __future__ import annotations

from torch import nn

from seqloom import registry
from seqloom.models.transformer.builder import (
    Vocabulary,
    build_decoder_layers,
    build_embedding,
    decoder_inputs,
    decoder_outputs,
    output_projection,
)
from seqloom.models.transformer_lm.config import TransformerLMConfig, parse_cutoff
from seqloom.models.transformer_lm.model import LMDecoder, TransformerLM
from seqloom.modules.adaptive_input import AdaptiveInput
from seqloom.modules.adaptive_softmax import AdaptiveSoftmax
from seqloom.modules.transformer import embedding_scale


def build_token_embedding(cfg: TransformerLMConfig, vocab: Vocabulary) -> nn.Embedding | AdaptiveInput:
    """A plain ``decoder_input_dim``-wide table, or adaptive input bands projected to ``decoder_embed_dim``."""
    assert cfg.decoder_input_dim is not None, "pass cfg.resolved()"
    if cfg.adaptive_input:
        cutoff = parse_cutoff(cfg.adaptive_input_cutoff, flag="--adaptive-input-cutoff")
        return AdaptiveInput(
            len(vocab), vocab.pad(), cfg.decoder_input_dim, cfg.adaptive_input_factor, cfg.decoder_embed_dim, cutoff
        )
    return build_embedding(len(vocab), cfg.decoder_input_dim, vocab.pad())


def build_output(
    cfg: TransformerLMConfig, embed_tokens: nn.Module, vocab_size: int
) -> tuple[nn.Linear | None, AdaptiveSoftmax | None]:
    """The vocabulary projection (tied to the embedding or its own), or an adaptive softmax."""
    assert cfg.decoder_output_dim is not None
    if cfg.adaptive_softmax_cutoff is not None:
        tied = embed_tokens if cfg.tie_adaptive_weights and isinstance(embed_tokens, AdaptiveInput) else None
        softmax = AdaptiveSoftmax(
            vocab_size,
            cfg.decoder_output_dim,
            parse_cutoff(cfg.adaptive_softmax_cutoff, flag="--adaptive-softmax-cutoff"),
            dropout=cfg.adaptive_softmax_dropout,
            factor=cfg.adaptive_softmax_factor,
            adaptive_inputs=tied,
            tie_proj=cfg.tie_adaptive_proj,
        )
        return None, softmax
    tied_to = None
    if cfg.share_decoder_input_output_embed:
        if not isinstance(embed_tokens, nn.Embedding):
            raise ValueError("--share-decoder-input-output-embed needs a plain embedding (drop --adaptive-input)")
        tied_to = embed_tokens
    return output_projection(cfg.decoder_output_dim, vocab_size, tied_to=tied_to), None


def build_decoder(cfg: TransformerLMConfig, embed_tokens: nn.Embedding | AdaptiveInput, vocab_size: int) -> LMDecoder:
    """The decoder for a resolved ``cfg``; ``vocab_size`` outputs."""
    assert cfg.max_target_positions is not None and cfg.decoder_output_dim is not None, "pass cfg.resolved()"
    pad = embed_tokens.padding_idx
    dim, pad = cfg.decoder_embed_dim, int(pad if pad is not None else 1)
    project_in_dim, positions, layernorm_embedding = decoder_inputs(cfg, int(embed_tokens.embedding_dim), pad)
    layers = build_decoder_layers(cfg, cross_attention=False)
    layer_norm, project_out_dim = decoder_outputs(cfg)
    projection, adaptive_softmax = build_output(cfg, embed_tokens, vocab_size)
    return LMDecoder(
        embed_tokens,
        positions,
        layers,
        projection,
        embed_scale=embedding_scale(dim, cfg.no_scale_embedding),
        dropout=cfg.dropout,
        project_in_dim=project_in_dim,
        layernorm_embedding=layernorm_embedding,
        layer_norm=layer_norm,
        project_out_dim=project_out_dim,
        adaptive_softmax=adaptive_softmax,
        max_target_positions=cfg.max_target_positions,
        layerdrop=cfg.decoder_layerdrop,
        checkpoint_activations=cfg.checkpoint_activations,
    )


def build_model(cfg: TransformerLMConfig, src_dict: Vocabulary, tgt_dict: Vocabulary | None = None) -> TransformerLM:
    """The language model for ``cfg`` reading ``src_dict`` ids and predicting ``tgt_dict`` ids (default the same)."""
    cfg = cfg.resolved()
    cfg.check()
    tgt_dict = src_dict if tgt_dict is None else tgt_dict
    embed_tokens = build_token_embedding(cfg, src_dict)
    decoder = build_decoder(cfg, embed_tokens, len(tgt_dict))
    return TransformerLM(decoder, cfg=cfg)


registry.MODELS.add("transformer_lm", TransformerLM, config=TransformerLMConfig)
registry.BUILDERS.add("transformer_lm", build_model)
