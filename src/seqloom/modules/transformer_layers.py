"""Transformer encoder and decoder layers, post-norm (the paper's) or pre-norm (``normalize_before``).

Submodule names and construction order are fairseq's (``self_attn``, ``self_attn_layer_norm``,
``encoder_attn``, ``encoder_attn_layer_norm``, ``fc1``, ``fc2``, ``final_layer_norm``), so state dicts
match key for key and a seeded build draws the same initial weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqloom.modules.activations import activation_fn
from seqloom.modules.attention import MultiheadAttention
from seqloom.modules.kv_cache import AttentionCache


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout that is a no-op (and draws no random numbers) when ``p == 0`` or in eval mode."""
    return F.dropout(x, p=p, training=True) if p > 0 and training else x


def dropout_time_major(x: Tensor, p: float, training: bool) -> Tensor:
    """:func:`dropout` of ``x`` ``(B, T, C)`` whose random mask is drawn in ``(T, B, C)`` order.

    fairseq's layers run time-first, so drawing in that order makes a seeded training step drop exactly
    the units fairseq drops (same losses as ``fairseq-train``); the values are those of plain dropout.
    """
    if p <= 0 or not training:
        return x
    if p >= 1 or x.device.type != "cpu":  # elsewhere F.dropout has its own fused kernel (and draws)
        return F.dropout(x.transpose(0, 1).contiguous(), p=p, training=True).transpose(0, 1)
    # F.dropout on the CPU is ``x * bernoulli_(1 - p) / (1 - p)``; drawing that mask in (T, B, C) memory
    # order and multiplying through a transposed view gives the same values without copying ``x`` twice
    b, t, c = x.shape
    keep = x.new_empty((t, b, c)).bernoulli_(1 - p).div_(1 - p)  # (T, B, C)
    return x * keep.transpose(0, 1)


class FeedForwardMixin(nn.Module):
    """The position-wise feed-forward block shared by both layers (``fc1``, activation, ``fc2``)."""

    fc1: nn.Linear
    fc2: nn.Linear
    activation: Callable[[Tensor], Tensor]
    activation_dropout: float
    dropout: float
    normalize_before: bool
    final_layer_norm: nn.LayerNorm
    # NormFormer (decoder layers of language models, fairseq's --scale-fc / --scale-resids)
    ffn_layernorm: nn.LayerNorm | None  # normalizes the activations between fc1 and fc2
    w_resid: nn.Parameter | None  # scales the residual around the block, per feature

    def _feed_forward(self, x: Tensor) -> Tensor:
        residual = x
        if self.normalize_before:
            x = self.final_layer_norm(x)
        x = dropout_time_major(self.activation(self.fc1(x)), self.activation_dropout, self.training)
        if self.ffn_layernorm is not None:
            x = self.ffn_layernorm(x)
        if self.w_resid is not None:
            residual = residual * self.w_resid
        x = residual + dropout_time_major(self.fc2(x), self.dropout, self.training)
        return x if self.normalize_before else self.final_layer_norm(x)


class TransformerEncoderLayer(FeedForwardMixin):
    """Self-attention then feed-forward, each with dropout, residual and layer norm."""

    def __init__(
        self,
        embed_dim: int,
        ffn_embed_dim: int,
        num_heads: int,
        *,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        activation: str = "relu",
        normalize_before: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(embed_dim, num_heads, dropout=attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim)
        self.dropout = dropout
        self.activation = activation_fn(activation)
        self.activation_dropout = activation_dropout
        self.normalize_before = normalize_before
        self.fc1 = nn.Linear(embed_dim, ffn_embed_dim)
        self.fc2 = nn.Linear(ffn_embed_dim, embed_dim)
        self.final_layer_norm = nn.LayerNorm(embed_dim)
        self.ffn_layernorm, self.w_resid = None, None  # (NormFormer: decoder layers only)

    def forward(self, x: Tensor, padding_mask: Tensor | None) -> Tensor:
        """``x`` ``(B, S, C)``, ``padding_mask`` ``(B, S)`` True at pads (or None) -> ``(B, S, C)``."""
        residual = x
        if self.normalize_before:
            x = self.self_attn_layer_norm(x)
        x, _ = self.self_attn(x, key_padding_mask=padding_mask)
        x = residual + dropout_time_major(x, self.dropout, self.training)
        if not self.normalize_before:
            x = self.self_attn_layer_norm(x)
        return self._feed_forward(x)


class TransformerDecoderLayer(FeedForwardMixin):
    """Causal self-attention, cross-attention to the encoder (unless ``cross_attention=False``), feed-forward.

    NormFormer's additions (fairseq's ``--scale-*`` options of language models) are off by default:
    ``scale_heads`` weighs each head's share of the self-attention output (``c_attn``, applied as fairseq does,
    to the projected output's per-head chunks), ``scale_attn`` normalizes that output (``attn_ln``),
    ``scale_fc`` the feed-forward activations (``ffn_layernorm``), and ``scale_resids`` scales the
    feed-forward residual (``w_resid``).
    """

    def __init__(
        self,
        embed_dim: int,
        ffn_embed_dim: int,
        num_heads: int,
        *,
        encoder_embed_dim: int | None = None,
        cross_attention: bool = True,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        activation: str = "relu",
        normalize_before: bool = False,
        scale_attn: bool = False,
        scale_heads: bool = False,
        scale_fc: bool = False,
        scale_resids: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(embed_dim, num_heads, dropout=attention_dropout)
        self.attn_ln = nn.LayerNorm(embed_dim) if scale_attn else None
        self.c_attn = nn.Parameter(torch.ones(num_heads)) if scale_heads else None
        self.dropout = dropout
        self.activation = activation_fn(activation)
        self.activation_dropout = activation_dropout
        self.normalize_before = normalize_before
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim)
        self.encoder_attn: MultiheadAttention | None = None
        self.encoder_attn_layer_norm: nn.LayerNorm | None = None
        if cross_attention:
            kdim = encoder_embed_dim or embed_dim
            self.encoder_attn = MultiheadAttention(
                embed_dim, num_heads, kdim=kdim, vdim=kdim, dropout=attention_dropout
            )
            self.encoder_attn_layer_norm = nn.LayerNorm(embed_dim)
        self.ffn_layernorm = nn.LayerNorm(ffn_embed_dim) if scale_fc else None
        self.w_resid = nn.Parameter(torch.ones(embed_dim)) if scale_resids else None
        self.fc1 = nn.Linear(embed_dim, ffn_embed_dim)
        self.fc2 = nn.Linear(ffn_embed_dim, embed_dim)
        self.final_layer_norm = nn.LayerNorm(embed_dim)

    def scale_attention(self, x: Tensor) -> Tensor:
        """NormFormer's head scaling and normalization of the self-attention output ``(..., C)``."""
        if self.c_attn is not None:
            heads = self.c_attn.numel()
            x = (x.unflatten(-1, (heads, -1)) * self.c_attn.unsqueeze(-1)).flatten(-2)
        if self.attn_ln is not None:
            x = self.attn_ln(x)
        return x

    def forward(
        self,
        x: Tensor,
        encoder_out: Tensor | None,
        encoder_padding_mask: Tensor | None,
        *,
        self_padding_mask: Tensor | None = None,
        self_cache: AttentionCache | None = None,
        cross_cache: AttentionCache | None = None,
        need_attn: bool = False,
        attn_heads: int | None = None,
        causal: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """``x`` ``(B, T, C)`` -> ``(B, T, C)`` and, with ``need_attn``, cross-attention ``(B, T, S)`` averaged over
        all heads (or the first ``attn_heads``). ``causal=False`` lets every position see the whole target
        (transformer_align's full-context alignment pass).

        ``encoder_out`` ``(B, S, Ce)`` with ``encoder_padding_mask`` ``(B, S)``; ``self_padding_mask``
        ``(B, T')`` covers the self-attention keys (cached steps included).
        """
        residual = x
        if self.normalize_before:
            x = self.self_attn_layer_norm(x)
        x, _ = self.self_attn(x, key_padding_mask=self_padding_mask, causal=causal, cache=self_cache)
        x = residual + dropout_time_major(self.scale_attention(x), self.dropout, self.training)
        if not self.normalize_before:
            x = self.self_attn_layer_norm(x)
        attn: Tensor | None = None
        if self.encoder_attn is not None and self.encoder_attn_layer_norm is not None and encoder_out is not None:
            residual = x
            if self.normalize_before:
                x = self.encoder_attn_layer_norm(x)
            x, attn = self.encoder_attn(x, encoder_out, key_padding_mask=encoder_padding_mask, cache=cross_cache,
                                        need_weights=need_attn, weight_heads=attn_heads)  # fmt: skip
            x = residual + dropout_time_major(x, self.dropout, self.training)
            if not self.normalize_before:
                x = self.encoder_attn_layer_norm(x)
        return self._feed_forward(x), attn
