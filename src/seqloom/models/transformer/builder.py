"""Turns a :class:`TransformerConfig` into a :class:`TransformerModel`.

Modules are created in fairseq's order (source embedding, target embedding, encoder: positions, layers,
final norm; decoder: positions, layers, final norm, output projection), with fairseq's initialisation,
so that the same ``torch.manual_seed`` gives the same initial weights as ``fairseq-train``.
"""

from __future__ import annotations

from typing import Protocol

from torch import nn

from seqloom import registry
from seqloom.models.transformer.config import TransformerConfig
from seqloom.models.transformer.model import TransformerModel
from seqloom.modules.positions import positional_embedding
from seqloom.modules.transformer import TransformerDecoder, TransformerEncoder, embedding_scale
from seqloom.modules.transformer_layers import TransformerDecoderLayer, TransformerEncoderLayer


class Vocabulary(Protocol):
    def __len__(self) -> int: ...
    def pad(self) -> int: ...


def build_embedding(num_embeddings: int, embed_dim: int, padding_idx: int) -> nn.Embedding:
    """fairseq's token embedding: N(0, embed_dim^-0.5), zero padding row."""
    emb = nn.Embedding(num_embeddings, embed_dim, padding_idx=padding_idx)
    nn.init.normal_(emb.weight, mean=0, std=embed_dim**-0.5)
    nn.init.constant_(emb.weight[padding_idx], 0)
    return emb


def xavier_linear(in_features: int, out_features: int) -> nn.Linear:
    """fairseq's ``Linear`` helper without bias (``project_in_dim``/``project_out_dim``)."""
    m = nn.Linear(in_features, out_features, bias=False)
    nn.init.xavier_uniform_(m.weight)
    return m


def build_encoder(cfg: TransformerConfig, embed_tokens: nn.Embedding) -> TransformerEncoder:
    dim, pad = cfg.encoder_embed_dim, int(embed_tokens.padding_idx or 0)
    positions = None
    if not cfg.no_token_positional_embeddings:
        positions = positional_embedding(cfg.max_source_positions, dim, pad, learned=cfg.encoder_learned_pos)
    layernorm_embedding = nn.LayerNorm(dim) if cfg.layernorm_embedding else None
    layers = [
        TransformerEncoderLayer(
            dim,
            cfg.encoder_ffn_embed_dim,
            cfg.encoder_attention_heads,
            dropout=cfg.dropout,
            attention_dropout=cfg.attention_dropout,
            activation_dropout=cfg.activation_dropout,
            activation=cfg.activation_fn,
            normalize_before=cfg.encoder_normalize_before,
        )
        for _ in range(cfg.encoder_layers)
    ]
    return TransformerEncoder(
        embed_tokens,
        positions,
        layers,
        embed_scale=embedding_scale(dim, cfg.no_scale_embedding),
        dropout=cfg.dropout,
        layernorm_embedding=layernorm_embedding,
        layer_norm=nn.LayerNorm(dim) if cfg.encoder_normalize_before else None,
        max_source_positions=cfg.max_source_positions,
        layerdrop=cfg.encoder_layerdrop,
        checkpoint_activations=cfg.checkpoint_activations,
    )


def build_decoder(cfg: TransformerConfig, embed_tokens: nn.Embedding, vocab_size: int) -> TransformerDecoder:
    """The decoder for a resolved ``cfg``; ``vocab_size`` rows in the output projection."""
    assert cfg.decoder_embed_dim is not None and cfg.decoder_output_dim is not None, "pass cfg.resolved()"
    assert cfg.decoder_ffn_embed_dim is not None
    dim, out_dim, pad = cfg.decoder_embed_dim, cfg.decoder_output_dim, int(embed_tokens.padding_idx or 0)
    in_dim = embed_tokens.embedding_dim
    project_in_dim = xavier_linear(in_dim, dim) if dim != in_dim else None
    positions = None
    if not cfg.no_token_positional_embeddings:
        positions = positional_embedding(cfg.max_target_positions, dim, pad, learned=cfg.decoder_learned_pos)
    layernorm_embedding = nn.LayerNorm(dim) if cfg.layernorm_embedding else None
    layers = [
        TransformerDecoderLayer(
            dim,
            cfg.decoder_ffn_embed_dim,
            cfg.decoder_attention_heads,
            encoder_embed_dim=cfg.encoder_embed_dim,
            cross_attention=not cfg.no_cross_attention,
            dropout=cfg.dropout,
            attention_dropout=cfg.attention_dropout,
            activation_dropout=cfg.activation_dropout,
            activation=cfg.activation_fn,
            normalize_before=cfg.decoder_normalize_before,
        )
        for _ in range(cfg.decoder_layers)
    ]
    final_norm = cfg.decoder_normalize_before and not cfg.no_decoder_final_norm
    layer_norm = nn.LayerNorm(dim) if final_norm else None
    project_out_dim = xavier_linear(dim, out_dim) if dim != out_dim and not cfg.tie_adaptive_weights else None
    return TransformerDecoder(
        embed_tokens,
        positions,
        layers,
        build_output_projection(cfg, embed_tokens, vocab_size),
        embed_scale=embedding_scale(dim, cfg.no_scale_embedding),
        dropout=cfg.dropout,
        project_in_dim=project_in_dim,
        layernorm_embedding=layernorm_embedding,
        layer_norm=layer_norm,
        project_out_dim=project_out_dim,
        max_target_positions=cfg.max_target_positions,
        layerdrop=cfg.decoder_layerdrop,
        checkpoint_activations=cfg.checkpoint_activations,
    )


def build_output_projection(cfg: TransformerConfig, embed_tokens: nn.Embedding, vocab_size: int) -> nn.Linear:
    """The vocabulary projection: tied to ``embed_tokens`` or its own N(0, out_dim^-0.5) matrix."""
    if cfg.share_decoder_input_output_embed:
        # fairseq builds (and initialises) a fresh Linear before tying it; doing the same keeps the
        # random stream, hence every later weight, identical to fairseq's for a given seed
        proj = nn.Linear(embed_tokens.weight.shape[1], embed_tokens.weight.shape[0], bias=False)
        proj.weight = embed_tokens.weight
        return proj
    assert cfg.decoder_output_dim is not None
    proj = nn.Linear(cfg.decoder_output_dim, vocab_size, bias=False)
    nn.init.normal_(proj.weight, mean=0, std=cfg.decoder_output_dim**-0.5)
    return proj


def check_config(cfg: TransformerConfig, src_dict: Vocabulary, tgt_dict: Vocabulary) -> None:
    unsupported = cfg.unsupported()
    if unsupported:
        raise NotImplementedError(f"transformer: {', '.join(unsupported)} not supported by seqloom; drop the flag(s)")
    if cfg.encoder_embed_path or cfg.decoder_embed_path:
        raise NotImplementedError("transformer: --encoder/decoder-embed-path (pre-trained embeddings) not supported")
    if cfg.share_all_embeddings:
        if src_dict != tgt_dict:
            raise ValueError(
                "--share-all-embeddings requires a joined dictionary (preprocess with --joined-dictionary)"
            )
        if cfg.encoder_embed_dim != cfg.decoder_embed_dim:
            raise ValueError(
                f"--share-all-embeddings requires --encoder-embed-dim ({cfg.encoder_embed_dim}) "
                f"to match --decoder-embed-dim ({cfg.decoder_embed_dim})"
            )


def build_model(cfg: TransformerConfig, src_dict: Vocabulary, tgt_dict: Vocabulary) -> TransformerModel:
    """The transformer for ``cfg`` over the source and target dictionaries (their sizes and pad ids)."""
    cfg = cfg.resolved()
    check_config(cfg, src_dict, tgt_dict)
    assert cfg.decoder_embed_dim is not None
    encoder_embed = build_embedding(len(src_dict), cfg.encoder_embed_dim, src_dict.pad())
    if cfg.share_all_embeddings:
        decoder_embed = encoder_embed
    else:
        decoder_embed = build_embedding(len(tgt_dict), cfg.decoder_embed_dim, tgt_dict.pad())
    encoder = build_encoder(cfg, encoder_embed)
    decoder = build_decoder(cfg, decoder_embed, len(tgt_dict))
    return TransformerModel(encoder, decoder, cfg=cfg)


registry.MODELS.add("transformer", TransformerModel, config=TransformerConfig)
