"""Transformer encoder and decoder stacks and their results (``EncoderOut``, ``DecoderOut``).

The stacks take already-built submodules (builders compose, modules don't read config) and keep
fairseq's attribute names, so their state dicts match fairseq's key for key. Tensors are batch-first.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from seqloom.modules.fast_step import fast_step, uses_fast_step
from seqloom.modules.kv_cache import KVCache
from seqloom.modules.masks import any_true, padding_mask, select_positions
from seqloom.modules.positions import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEmbedding,
    make_positions,
)
from seqloom.modules.transformer_layers import TransformerDecoderLayer, TransformerEncoderLayer, dropout
from seqloom.modules.vocab_projection import PaddedLogits, VocabProjection

PositionalEmbedding = SinusoidalPositionalEmbedding | LearnedPositionalEmbedding


@dataclass
class EncoderOut:
    """What the encoder hands the decoder."""

    out: Tensor  # (B, S, C) last layer's output
    padding_mask: Tensor  # (B, S) bool, True at padding
    # False when no row has padding: cross-attention then takes no mask (on a GPU, a mask rules out the
    # flash kernel), without a device sync per decoding step to find that out
    has_padding: bool = True

    def reorder(self, new_order: Tensor) -> EncoderOut:
        """The rows ``new_order`` of the batch (beam search's expansion and reordering)."""
        return EncoderOut(
            self.out.index_select(0, new_order), self.padding_mask.index_select(0, new_order), self.has_padding
        )

    @property
    def attention_mask(self) -> Tensor | None:
        """The padding mask cross-attention needs: None when there is no padding."""
        return self.padding_mask if self.has_padding else None


@dataclass
class DecoderOut:
    """What the decoder returns."""

    logits: Tensor  # (B, T, V) unnormalised scores
    attn: Tensor | None  # (B, T, S) cross-attention of the alignment layer (default the last), head-averaged
    padded: PaddedLogits | None = None  # decoding only: the logits inside a -inf-padded buffer (log_softmax it)


@dataclass
class OutputFeatures:
    """A decoder's output before its vocabulary projection (``forward(..., project=False)``): the features at
    the scored positions and the matrix whose product with them gives the logits, so that a criterion can
    fuse the product with its loss (:mod:`seqloom.criterions.vocab_loss`)."""

    features: Tensor  # (N, C)
    weight: Tensor  # (V, C): logits = features @ weight.T


# what the vocabulary projection derives from its weight for one decoding pass (the padded matrix), kept
# beside the pass's cache (which holds keys and values only) and gone with it
_VOCAB_MEMOS: weakref.WeakKeyDictionary[KVCache, dict[str, Tensor]] = weakref.WeakKeyDictionary()


def project_vocab(projection: nn.Module, x: Tensor, attn: Tensor | None, cache: KVCache | None) -> DecoderOut:
    """The decoder's output: ``projection(x)``; while decoding with a cache, padded logits where they pay."""
    if cache is not None and isinstance(projection, VocabProjection):
        out = projection.decoding(x, _VOCAB_MEMOS.setdefault(cache, {}))
        if isinstance(out, PaddedLogits):
            return DecoderOut(logits=out.logits, attn=attn, padded=out)
        return DecoderOut(logits=out, attn=attn)
    return DecoderOut(logits=projection(x), attn=attn)


def layers_to_run(num_layers: int, layerdrop: float, training: bool) -> list[bool]:
    """Which layers run: all, or in training each with probability ``1 - layerdrop`` (LayerDrop)."""
    if not training or layerdrop <= 0:
        return [True] * num_layers
    draws = torch.empty(num_layers).uniform_()  # one draw per layer, as fairseq's LayerDropModuleList
    return [p > layerdrop for p in draws.tolist()]


def run_layer(layer: nn.Module, *args: Any, checkpoint: bool = False, **kwargs: Any) -> Any:
    """Calls ``layer``; with ``checkpoint``, recomputes its activations in the backward pass instead of storing them."""
    if checkpoint:
        return torch.utils.checkpoint.checkpoint(layer, *args, use_reentrant=False, **kwargs)
    return layer(*args, **kwargs)


def embedding_scale(embed_dim: int, no_scale_embedding: bool) -> float:
    return 1.0 if no_scale_embedding else math.sqrt(embed_dim)


class TransformerEncoder(nn.Module):
    """Token + position embeddings, then ``layers``, then (pre-norm) a final ``layer_norm``."""

    def __init__(
        self,
        embed_tokens: nn.Embedding,
        embed_positions: PositionalEmbedding | None,
        layers: Sequence[TransformerEncoderLayer],
        *,
        embed_scale: float,
        dropout: float,
        layernorm_embedding: nn.LayerNorm | None = None,
        layer_norm: nn.LayerNorm | None = None,
        max_source_positions: int = 1024,
        layerdrop: float = 0.0,
        checkpoint_activations: bool = False,
    ) -> None:
        super().__init__()
        self.register_buffer("version", torch.Tensor([3]))  # fairseq's state-dict version marker
        self.embed_tokens = embed_tokens
        self.embed_positions = embed_positions
        self.layernorm_embedding = layernorm_embedding
        self.layers = nn.ModuleList(layers)
        self.layer_norm = layer_norm
        self.padding_idx = int(embed_tokens.padding_idx if embed_tokens.padding_idx is not None else 1)
        self.embed_scale = embed_scale
        self.dropout = dropout
        self.layerdrop = layerdrop
        self.retains_dropout = False  # --retain-dropout: dropout in train mode while generating, LayerDrop off
        self.max_source_positions = max_source_positions
        self.checkpoint_activations = checkpoint_activations

    def embed(self, src_tokens: Tensor) -> Tensor:
        """``(B, S)`` tokens -> ``(B, S, C)`` scaled embeddings plus positions, normalised, dropped out."""
        x = self.embed_scale * self.embed_tokens(src_tokens)  # (B, S, C)
        if self.embed_positions is not None:
            positions = make_positions(src_tokens, self.padding_idx)
            x = x + self.embed_positions(positions, span=src_tokens.size(1))
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
        return dropout(x, self.dropout, self.training)

    def forward(self, src_tokens: Tensor) -> EncoderOut:
        """``src_tokens`` ``(B, S)`` (left- or right-padded) -> :class:`EncoderOut`."""
        pad = padding_mask(src_tokens, self.padding_idx)  # (B, S)
        has_pads = any_true(pad)
        x = self.embed(src_tokens)
        if has_pads:
            x = x * (1 - pad.unsqueeze(-1).type_as(x))  # zero the padding rows, as fairseq
        run_these = layers_to_run(len(self.layers), self.layerdrop, self.training and not self.retains_dropout)
        for layer, run in zip(self.layers, run_these):
            if run:
                x = run_layer(
                    layer, x, pad if has_pads else None, checkpoint=self.checkpoint_activations and self.training
                )
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return EncoderOut(out=x, padding_mask=pad, has_padding=has_pads)

    def max_positions(self) -> int:
        if self.embed_positions is None:
            return self.max_source_positions
        return min(self.max_source_positions, self.embed_positions.max_positions)


class TransformerDecoder(nn.Module):
    """Embeddings, causal ``layers`` with cross-attention, final norm, output projection to the vocabulary."""

    def __init__(
        self,
        embed_tokens: nn.Embedding,
        embed_positions: PositionalEmbedding | None,
        layers: Sequence[TransformerDecoderLayer],
        output_projection: nn.Linear,
        *,
        embed_scale: float,
        dropout: float,
        project_in_dim: nn.Linear | None = None,
        layernorm_embedding: nn.LayerNorm | None = None,
        layer_norm: nn.LayerNorm | None = None,
        project_out_dim: nn.Linear | None = None,
        max_target_positions: int = 1024,
        layerdrop: float = 0.0,
        checkpoint_activations: bool = False,
        alignment_layer: int | None = None,
        alignment_heads: int | None = None,
    ) -> None:
        """``alignment_layer``/``alignment_heads``: whose cross-attention ``need_attn`` returns (default the last
        layer, all heads; transformer_align supervises one layer's first heads with word alignments)."""
        super().__init__()
        self.register_buffer("version", torch.Tensor([3]))
        self.embed_tokens = embed_tokens
        self.project_in_dim = project_in_dim
        self.embed_positions = embed_positions
        self.layernorm_embedding = layernorm_embedding
        self.layers = nn.ModuleList(layers)
        self.layer_norm = layer_norm
        self.project_out_dim = project_out_dim
        self.output_projection = output_projection
        self.padding_idx = int(embed_tokens.padding_idx if embed_tokens.padding_idx is not None else 1)
        self.embed_scale = embed_scale
        self.dropout = dropout
        self.layerdrop = layerdrop
        self.retains_dropout = False  # --retain-dropout: dropout in train mode while generating, LayerDrop off
        self.max_target_positions = max_target_positions
        self.checkpoint_activations = checkpoint_activations
        self.alignment_layer, self.alignment_heads = alignment_layer, alignment_heads
        first = layers[0] if len(layers) else None
        self.num_heads = first.self_attn.num_heads if first is not None else 1
        self.head_dim = first.self_attn.head_dim if first is not None else 1

    def embed(self, tokens: Tensor, *, start: int | None = None) -> Tensor:
        """``(B, T)`` tokens -> ``(B, T, C)`` decoder input.

        ``start`` (incremental decoding) is the number of cached steps before these tokens; positions
        then continue from it, as fairseq's incremental decoder counts them. Without it, positions skip
        padding (:func:`make_positions`).
        """
        x = self.embed_scale * self.embed_tokens(tokens)  # (B, T, Cin)
        if self.project_in_dim is not None:
            x = self.project_in_dim(x)  # (B, T, C)
        if self.embed_positions is not None:
            b, t = tokens.shape
            if start is None:
                positions = make_positions(tokens, self.padding_idx)
                x = x + self.embed_positions(positions, span=t)
            else:  # the same for every row: (1, T, C) rows of the table, broadcast over the batch
                x = x + self.embed_positions.steps(self.padding_idx + 1 + start, t)
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
        return dropout(x, self.dropout, self.training)

    def extract_features(
        self,
        tokens: Tensor,
        encoder_out: EncoderOut | None,
        *,
        cache: KVCache | None = None,
        need_attn: bool = False,
        full_context: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """``(B, T)`` tokens -> features ``(B, T, Cout)`` and, with ``need_attn``, the cross-attention of the
        alignment layer (default the last) averaged over its alignment heads (default all) ``(B, T, S)``.
        ``full_context`` drops the causal mask (every position sees the whole target; not with a cache)."""
        assert not (full_context and cache is not None), "a full-context pass does not decode incrementally"
        x = self.embed(tokens, start=cache.length if cache is not None else None)
        pad = padding_mask(tokens, self.padding_idx)  # (B, T)
        if cache is not None:
            self_padding = cache.record_padding(pad)  # (B, start + T) or None
        else:
            self_padding = pad if any_true(pad) else None
        enc = encoder_out.out if encoder_out is not None else None
        enc_pad = encoder_out.attention_mask if encoder_out is not None else None
        attn: Tensor | None = None
        aligned = len(self.layers) - 1 if self.alignment_layer is None else self.alignment_layer
        if uses_fast_step(self.layers, tokens, enc, cache):  # the same numbers as the loop below, in fewer ops
            assert cache is not None
            x, attn = fast_step(self.layers, x, enc, enc_pad, self_padding_mask=self_padding, cache=cache,
                                need_attn=need_attn, aligned=aligned, attn_heads=self.alignment_heads)  # fmt: skip
            cache.advance(1)
            return self._finish(x), attn
        run = layers_to_run(len(self.layers), self.layerdrop, self.training and not self.retains_dropout)
        for idx, layer in enumerate(self.layers):
            if not run[idx]:
                continue
            x, layer_attn = run_layer(
                layer,
                x,
                enc,
                enc_pad,
                self_padding_mask=self_padding,
                self_cache=cache.self_attn[idx] if cache is not None else None,
                cross_cache=cache.cross_attn[idx] if cache is not None else None,
                need_attn=need_attn and idx == aligned,
                attn_heads=self.alignment_heads,
                causal=not full_context,
                checkpoint=self.checkpoint_activations and self.training and cache is None,
            )
            if idx == aligned:
                attn = layer_attn
        if cache is not None:
            cache.advance(tokens.size(1))
        return self._finish(x), attn

    def _finish(self, x: Tensor) -> Tensor:
        """The layers' output ``(B, T, C)`` -> features ``(B, T, Cout)``: final norm and output dimension."""
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        if self.project_out_dim is not None:
            x = self.project_out_dim(x)
        return x

    def forward(
        self,
        tokens: Tensor,
        encoder_out: EncoderOut | None,
        *,
        cache: KVCache | None = None,
        need_attn: bool = False,
        output_mask: Tensor | None = None,
        project: bool = True,
    ) -> DecoderOut | OutputFeatures:
        """``tokens`` ``(B, T)`` (with a cache: only the newest, usually ``(B, 1)``) -> :class:`DecoderOut`.

        ``output_mask`` ``(B, T)`` bool (or the flat indices of its True entries, :func:`output_positions`)
        projects only those positions: logits ``(N, V)`` for its ``N`` True entries in row-major order (training skips the padding's share of the largest product). With it,
        ``project=False`` returns :class:`OutputFeatures` instead, where the output layer is a plain
        vocabulary matrix.
        """
        x, attn = self.extract_features(tokens, encoder_out, cache=cache, need_attn=need_attn)
        if output_mask is not None:
            x = select_positions(x, output_mask)  # (N, C)
            if not project and isinstance(self.output_projection, VocabProjection):
                return OutputFeatures(x, self.output_projection.weight)
        return project_vocab(self.output_projection, x, attn, cache)

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        """An empty cache for ``batch_size`` rows and up to ``max_len`` decoding steps, on the model's device."""
        ref = self.embed_tokens.weight
        return KVCache(
            num_layers=len(self.layers),
            batch_size=batch_size,
            num_heads=self.num_heads,
            head_dim=self.head_dim,
            max_len=max_len,
            dtype=ref.dtype,
            device=ref.device,
        )

    def max_positions(self) -> int:
        if self.embed_positions is None:
            return self.max_target_positions
        return min(self.max_target_positions, self.embed_positions.max_positions)
