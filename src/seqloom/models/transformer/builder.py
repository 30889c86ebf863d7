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
from seqloom.modules.positions import LearnedPositionalEmbedding, SinusoidalPositionalEmbedding, positional_embedding
from seqloom.modules.transformer import TransformerDecoder, TransformerEncoder, embedding_scale
from seqloom.modules.transformer_layers import TransformerDecoderLayer, TransformerEncoderLayer
from seqloom.modules.vocab_projection import VocabProjection


class Vocabulary(Protocol):
    def __len__(self) -> int: ...
    def pad(self) -> int: ...


class LayerShape(Protocol):
    """The options that encoder and decoder configs share: dropouts, activation, embedding extras."""

    @property
    def dropout(self) -> float: ...
    @property
    def attention_dropout(self) -> float: ...
    @property
    def activation_dropout(self) -> float: ...
    @property
    def activation_fn(self) -> str: ...
    @property
    def no_token_positional_embeddings(self) -> bool: ...
    @property
    def layernorm_embedding(self) -> bool: ...


class EncoderShape(LayerShape, Protocol):
    """The encoder options that the transformer's and RoBERTa's configs share."""

    @property
    def encoder_embed_dim(self) -> int: ...
    @property
    def encoder_ffn_embed_dim(self) -> int: ...
    @property
    def encoder_layers(self) -> int: ...
    @property
    def encoder_attention_heads(self) -> int: ...
    @property
    def encoder_normalize_before(self) -> bool: ...
    @property
    def encoder_learned_pos(self) -> bool: ...
    @property
    def encoder_layerdrop(self) -> float: ...
    @property
    def no_scale_embedding(self) -> bool: ...
    @property
    def checkpoint_activations(self) -> bool: ...


class DecoderShape(LayerShape, Protocol):
    """The decoder options that the transformer's and the language model's configs share."""

    @property
    def decoder_embed_dim(self) -> int | None: ...
    @property
    def decoder_output_dim(self) -> int | None: ...
    @property
    def max_target_positions(self) -> int | None: ...
    @property
    def decoder_learned_pos(self) -> bool: ...
    @property
    def decoder_normalize_before(self) -> bool: ...
    @property
    def no_decoder_final_norm(self) -> bool: ...
    @property
    def tie_adaptive_weights(self) -> bool: ...
    @property
    def decoder_ffn_embed_dim(self) -> int | None: ...
    @property
    def decoder_layers(self) -> int: ...
    @property
    def decoder_attention_heads(self) -> int: ...
    @property
    def scale_attn(self) -> bool: ...
    @property
    def scale_heads(self) -> bool: ...
    @property
    def scale_fc(self) -> bool: ...
    @property
    def scale_resids(self) -> bool: ...


Positions = SinusoidalPositionalEmbedding | LearnedPositionalEmbedding


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


def decoder_inputs(
    cfg: DecoderShape, in_dim: int, pad: int
) -> tuple[nn.Linear | None, Positions | None, nn.LayerNorm | None]:
    """``project_in_dim``, positions and ``layernorm_embedding`` of a resolved decoder config, in fairseq's
    order; they are made before the layers (the order of random draws fixes the initial weights)."""
    dim, max_positions = cfg.decoder_embed_dim, cfg.max_target_positions
    assert dim is not None and max_positions is not None, "pass cfg.resolved()"
    project_in_dim = xavier_linear(in_dim, dim) if dim != in_dim else None
    positions = None
    if not cfg.no_token_positional_embeddings:
        positions = positional_embedding(max_positions, dim, pad, learned=cfg.decoder_learned_pos)
    layernorm_embedding = nn.LayerNorm(dim) if cfg.layernorm_embedding else None
    return project_in_dim, positions, layernorm_embedding


def build_decoder_layers(
    cfg: DecoderShape, *, cross_attention: bool, encoder_embed_dim: int | None = None
) -> list[TransformerDecoderLayer]:
    """The ``cfg.decoder_layers`` layers of a resolved decoder config; ``cross_attention`` over
    ``encoder_embed_dim``-wide encoder states (a language model has none)."""
    dim, ffn_dim = cfg.decoder_embed_dim, cfg.decoder_ffn_embed_dim
    assert dim is not None and ffn_dim is not None, "pass cfg.resolved()"
    return [
        TransformerDecoderLayer(
            dim,
            ffn_dim,
            cfg.decoder_attention_heads,
            encoder_embed_dim=encoder_embed_dim,
            cross_attention=cross_attention,
            dropout=cfg.dropout,
            attention_dropout=cfg.attention_dropout,
            activation_dropout=cfg.activation_dropout,
            activation=cfg.activation_fn,
            normalize_before=cfg.decoder_normalize_before,
            scale_attn=cfg.scale_attn,
            scale_heads=cfg.scale_heads,
            scale_fc=cfg.scale_fc,
            scale_resids=cfg.scale_resids,
        )
        for _ in range(cfg.decoder_layers)
    ]


def decoder_outputs(cfg: DecoderShape) -> tuple[nn.LayerNorm | None, nn.Linear | None]:
    """The final layer norm and ``project_out_dim`` of a resolved decoder config, made after the layers."""
    dim, out_dim = cfg.decoder_embed_dim, cfg.decoder_output_dim
    assert dim is not None and out_dim is not None, "pass cfg.resolved()"
    final_norm = cfg.decoder_normalize_before and not cfg.no_decoder_final_norm
    layer_norm = nn.LayerNorm(dim) if final_norm else None
    project_out_dim = xavier_linear(dim, out_dim) if dim != out_dim and not cfg.tie_adaptive_weights else None
    return layer_norm, project_out_dim


def output_projection(out_dim: int, vocab_size: int, *, tied_to: nn.Embedding | None) -> nn.Linear:
    """The vocabulary projection: tied to the embedding ``tied_to`` or its own N(0, out_dim^-0.5) matrix."""
    if tied_to is not None:
        # fairseq builds (and initialises) a fresh Linear before tying it; doing the same keeps the
        # random stream, hence every later weight, identical to fairseq's for a given seed
        proj = VocabProjection(tied_to.weight.shape[1], tied_to.weight.shape[0])
        proj.weight = tied_to.weight
        return proj
    proj = VocabProjection(out_dim, vocab_size)
    nn.init.normal_(proj.weight, mean=0, std=out_dim**-0.5)
    return proj


def build_encoder_stack(
    cfg: EncoderShape, embed_tokens: nn.Embedding, *, pad: int, max_positions: int
) -> TransformerEncoder:
    """fairseq's ``TransformerEncoder`` over ``embed_tokens`` for a resolved encoder config: positions (``pad`` is
    their padding index, ``max_positions`` their number), the layers, then the norms, in fairseq's order."""
    dim = cfg.encoder_embed_dim
    positions = None
    if not cfg.no_token_positional_embeddings:
        positions = positional_embedding(max_positions, dim, pad, learned=cfg.encoder_learned_pos)
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
        max_source_positions=max_positions,
        layerdrop=cfg.encoder_layerdrop,
        checkpoint_activations=cfg.checkpoint_activations,
    )


def build_encoder(cfg: TransformerConfig, embed_tokens: nn.Embedding) -> TransformerEncoder:
    pad = int(embed_tokens.padding_idx or 0)
    return build_encoder_stack(cfg, embed_tokens, pad=pad, max_positions=cfg.max_source_positions)


def build_decoder(cfg: TransformerConfig, embed_tokens: nn.Embedding, vocab_size: int) -> TransformerDecoder:
    """The decoder for a resolved ``cfg``; ``vocab_size`` rows in the output projection."""
    assert cfg.decoder_embed_dim is not None and cfg.decoder_output_dim is not None, "pass cfg.resolved()"
    assert cfg.decoder_ffn_embed_dim is not None
    dim, pad = cfg.decoder_embed_dim, int(embed_tokens.padding_idx or 0)
    project_in_dim, positions, layernorm_embedding = decoder_inputs(cfg, embed_tokens.embedding_dim, pad)
    layers = build_decoder_layers(
        cfg, cross_attention=not cfg.no_cross_attention, encoder_embed_dim=cfg.encoder_embed_dim
    )
    layer_norm, project_out_dim = decoder_outputs(cfg)
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
        alignment_layer=cfg.alignment_layer,
        alignment_heads=cfg.alignment_heads,
    )


def build_output_projection(cfg: TransformerConfig, embed_tokens: nn.Embedding, vocab_size: int) -> nn.Linear:
    """The decoder's vocabulary projection (see :func:`output_projection`)."""
    assert cfg.decoder_output_dim is not None
    tied_to = embed_tokens if cfg.share_decoder_input_output_embed else None
    return output_projection(cfg.decoder_output_dim, vocab_size, tied_to=tied_to)


def check_config(cfg: TransformerConfig, src_dict: Vocabulary, tgt_dict: Vocabulary) -> None:
    unsupported = cfg.unsupported()
    if unsupported:
        raise NotImplementedError(f"transformer: {', '.join(unsupported)} not supported by seqloom; drop the flag(s)")
    if cfg.encoder_embed_path or cfg.decoder_embed_path:
        raise NotImplementedError("transformer: --encoder/decoder-embed-path (pre-trained embeddings) not supported")
    if cfg.share_all_embeddings:
        if src_dict != tgt_dict:
            raise ValueError(
                "--share-all-embeddings needs one dictionary for source and target: the data's two dict files differ (preprocess with --joined-dictionary)"
            )
        if cfg.encoder_embed_dim != cfg.decoder_embed_dim:
            raise ValueError(
                f"--share-all-embeddings requires --encoder-embed-dim ({cfg.encoder_embed_dim}) "
                f"to match --decoder-embed-dim ({cfg.decoder_embed_dim})"
            )


def build_encoder_decoder(
    cfg: TransformerConfig, src_dict: Vocabulary, tgt_dict: Vocabulary
) -> tuple[TransformerEncoder, TransformerDecoder]:
    """The embeddings (one table for ``share_all_embeddings``), encoder and decoder of a resolved ``cfg``."""
    assert cfg.decoder_embed_dim is not None
    encoder_embed = build_embedding(len(src_dict), cfg.encoder_embed_dim, src_dict.pad())
    if cfg.share_all_embeddings:
        decoder_embed = encoder_embed
    else:
        decoder_embed = build_embedding(len(tgt_dict), cfg.decoder_embed_dim, tgt_dict.pad())
    return build_encoder(cfg, encoder_embed), build_decoder(cfg, decoder_embed, len(tgt_dict))


def build_model(cfg: TransformerConfig, src_dict: Vocabulary, tgt_dict: Vocabulary) -> TransformerModel:
    """The transformer for ``cfg`` over the source and target dictionaries (their sizes and pad ids)."""
    cfg = cfg.resolved()
    check_config(cfg, src_dict, tgt_dict)
    encoder, decoder = build_encoder_decoder(cfg, src_dict, tgt_dict)
    return TransformerModel(encoder, decoder, cfg=cfg)


registry.MODELS.add("transformer", TransformerModel, config=TransformerConfig)
registry.BUILDERS.add("transformer", build_model)
