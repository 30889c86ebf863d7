"""The fast CPU decoding step: the decoder layers' forward for one new token per row, in fewer ops.

On the CPU, decoding one step of a small batch is mostly per-op overhead, so this module runs the same
kernels in the same order as the layers' ``forward`` (the reference, :class:`TransformerDecoderLayer`), on
``(N, C)`` rows through functional calls, and with the ``Dh ** -0.5`` query scale folded into the query
projection where that is exact. Its numbers equal the reference's bit for bit (tests/modules/test_fast_step.py).

One switch, :func:`uses_fast_step`, decides when it runs; the decoder calls :func:`fast_step` then. What it
derives from the weights (the prescaled query projections) lives in a :class:`FastStep` made once per
decoding pass and kept beside that pass's :class:`KVCache` (weights are fixed during a pass; a version
counter would not do, fused optimizers update weights without bumping it). The cache itself holds keys
and values only.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.weak import WeakIdKeyDictionary

from seqloom.modules.attention import EXPLICIT_MAX_QUERIES, MultiheadAttention, attention
from seqloom.modules.int8 import Int8Linear, stack_layers
from seqloom.modules.kv_cache import AttentionCache, KVCache
from seqloom.modules.transformer_layers import TransformerDecoderLayer


def uses_fast_step(layers: nn.ModuleList, tokens: Tensor, encoder_out: Tensor | None, cache: KVCache | None) -> bool:
    """The switch: whether a decoder pass over ``tokens`` ``(B, T)`` runs :func:`fast_step` instead of the layers'
    ``forward``. Only for one new token per row (``T == 1``) with a cache, at inference (gradients off, no
    layer part in training mode, e.g. ``--retain-dropout-modules``), on the CPU, with at most
    :data:`EXPLICIT_MAX_QUERIES` beam rows sharing each source row of ``encoder_out`` ``(Bs, S, Ce)``."""
    if cache is None or tokens.size(1) != 1 or torch.is_grad_enabled() or tokens.device.type != "cpu":
        return False
    if not _pass_of(layers, cache).layers_in_eval:
        return False
    return encoder_out is None or tokens.size(0) // encoder_out.size(0) <= EXPLICIT_MAX_QUERIES


def fast_step(
    layers: nn.ModuleList,
    x: Tensor,
    encoder_out: Tensor | None,
    encoder_padding_mask: Tensor | None,
    *,
    self_padding_mask: Tensor | None,
    cache: KVCache,
    need_attn: bool,
    aligned: int,
    attn_heads: int | None,
) -> tuple[Tensor, Tensor | None]:
    """The ``layers`` over one decoding step's input ``x`` ``(N, 1, C)`` -> ``(N, 1, C)``, and with ``need_attn`` the
    cross-attention of layer ``aligned`` ``(N, 1, S)``; arguments as the layers' ``forward``. Does not advance
    ``cache`` (the decoder does, as for the reference path)."""
    state = _pass_of(layers, cache)
    n = x.size(0)
    h = x.view(n, -1)  # (N, 1, C) -> (N, C)
    attn: Tensor | None = None
    for idx, layer in enumerate(layers):
        assert isinstance(layer, TransformerDecoderLayer)
        h, layer_attn = state.layer_step(
            idx,
            layer,
            h,
            encoder_out,
            encoder_padding_mask,
            self_padding_mask=self_padding_mask,
            cache=cache,
            need_attn=need_attn and idx == aligned,
            attn_heads=attn_heads,
        )
        if idx == aligned:
            attn = layer_attn
    return h.view(n, 1, -1), attn  # (N, C) -> (N, 1, C)


@dataclass(frozen=True, kw_only=True)
class QueryProjection:
    """An attention layer's query projection as the fast step runs it: ``weight``/``bias`` (None: call the
    module, e.g. an int8 layer), carrying the ``Dh ** -0.5`` factor when ``prescaled``."""

    weight: Tensor | None  # (C, C)
    bias: Tensor | None  # (C,)
    prescaled: bool

    @classmethod
    def of(cls, attn: MultiheadAttention) -> QueryProjection:
        """Folds the scale into the weights only when it is a power of two: scaling the weights is then exact
        (the same numbers as scaling the projected queries)."""
        proj = attn.q_proj
        if type(proj) is not nn.Linear:
            return cls(weight=None, bias=None, prescaled=False)
        scale = attn.head_dim**-0.5
        if math.frexp(scale)[0] != 0.5:
            return cls(weight=proj.weight, bias=proj.bias, prescaled=False)
        bias = proj.bias * scale if proj.bias is not None else None
        return cls(weight=proj.weight * scale, bias=bias, prescaled=True)

    def __call__(self, attn: MultiheadAttention, x: Tensor) -> Tensor:
        """``x`` ``(N, C)`` -> queries ``(N, C)``."""
        if self.weight is None:
            return attn.q_proj(x)
        return F.linear(x, self.weight, self.bias)


@dataclass(frozen=True, kw_only=True)
class StackedProjections:
    """An attention layer's int8 projections of one input stacked into one layer (:func:`stack_layers`): self-
    attention's q, k, v (q carrying ``Dh ** -0.5`` when ``prescaled``), or cross-attention's k, v of the source."""

    layer: Int8Linear
    prescaled: bool

    @classmethod
    def of(cls, attn: MultiheadAttention, *, cross: bool) -> StackedProjections | None:
        """None unless every projection is int8 with the same input size and bias presence; q's factor only when
        it is a power of two (then exact, as :meth:`QueryProjection.of`)."""
        projs: list[nn.Module] = [attn.k_proj, attn.v_proj] if cross else [attn.q_proj, attn.k_proj, attn.v_proj]
        layers = [m for m in projs if type(m) is Int8Linear and isinstance(m, Int8Linear)]
        if len(layers) != len(projs) or len({(m.in_features, m.bias is not None) for m in layers}) != 1:
            return None
        scale = attn.head_dim**-0.5
        prescaled = not cross and math.frexp(scale)[0] == 0.5
        factors = [scale if prescaled else 1.0] + [1.0] * (len(layers) - 1)
        return cls(layer=stack_layers(layers, factors), prescaled=prescaled)


class FastStep:
    """What one decoding pass of the fast step derives from the weights, made at the pass's first step."""

    def __init__(self, layers: nn.ModuleList) -> None:
        self.layers_in_eval = not any(m.training for m in layers.modules())  # no layer part drops out
        self._queries: dict[tuple[int, bool], QueryProjection] = {}  # (layer, cross) -> its query projection
        self._stacked: dict[tuple[int, bool], StackedProjections | None] = {}  # (layer, cross) -> int8 q/k/v, k/v

    def _query(self, idx: int, attn: MultiheadAttention, *, cross: bool) -> QueryProjection:
        proj = self._queries.get((idx, cross))
        if proj is None:
            proj = self._queries[(idx, cross)] = QueryProjection.of(attn)
        return proj

    def _stack(self, idx: int, attn: MultiheadAttention, *, cross: bool) -> StackedProjections | None:
        if (idx, cross) not in self._stacked:
            self._stacked[(idx, cross)] = stacked_projections(attn, cross=cross)
        return self._stacked[(idx, cross)]

    def _self_qkv(self, idx: int, attn: MultiheadAttention, x: Tensor) -> tuple[Tensor, Tensor, Tensor, bool]:
        """Self-attention's queries, keys and values ``(N, H, 1, Dh)`` of ``x`` ``(N, C)``, and whether the
        queries carry ``Dh ** -0.5``."""
        n, heads, head_dim, dim = x.size(0), attn.num_heads, attn.head_dim, attn.embed_dim
        stacked = self._stack(idx, attn, cross=False)
        if stacked is not None:
            qkv = stacked.layer(x)  # (N, 3C)
            q, k, v = (qkv[:, i * dim : (i + 1) * dim].view(n, heads, 1, head_dim) for i in range(3))
            return q, k, v, stacked.prescaled
        proj = self._query(idx, attn, cross=False)
        q = proj(attn, x).view(n, heads, 1, head_dim)  # (N, C) -> (N, H, 1, Dh)
        k = linear(attn.k_proj, x).view(n, heads, 1, head_dim)
        v = linear(attn.v_proj, x).view(n, heads, 1, head_dim)
        return q, k, v, proj.prescaled

    def _source_kv(self, idx: int, attn: MultiheadAttention, source: Tensor, cache: AttentionCache
                   ) -> tuple[Tensor, Tensor]:  # fmt: skip
        """Cross-attention's keys and values ``(Bs, H, S, Dh)`` of ``source`` ``(Bs, S, kdim)``, projected once."""
        stacked = None if cache.is_set else self._stack(idx, attn, cross=True)
        if stacked is None:
            return attn.source_keys_values(source, cache)
        bs, s, dim = source.size(0), source.size(1), attn.embed_dim
        kv = stacked.layer(source)  # (Bs, S, 2C)
        k, v = (kv[..., i * dim : (i + 1) * dim].reshape(bs, s, attn.num_heads, attn.head_dim) for i in range(2))
        k, v = k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous()  # (Bs, S, H, Dh) -> (Bs, H, S, Dh)
        cache.set(k, v)
        return k, v

    def attend(
        self,
        idx: int,
        attn: MultiheadAttention,
        query: Tensor,
        source: Tensor | None,
        *,
        cache: AttentionCache,
        key_padding_mask: Tensor | None,
        need_weights: bool = False,
        weight_heads: int | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``attn``'s forward for one query per row, ``query`` ``(N, C)`` -> ``(N, C)`` (weights ``(N, 1, S)``).

        Self-attention (``source`` None) appends to ``cache``; cross-attention's ``source`` ``(Bs, S, kdim)``
        rows are each shared by ``N / Bs`` consecutive query rows, and ``cache`` holds their keys and values."""
        n = query.size(0)
        heads, head_dim = attn.num_heads, attn.head_dim
        excluded = attn_bias = None
        if source is None:
            q, k, v, prescaled = self._self_qkv(idx, attn, query)  # (N, H, 1, Dh) each
            k, v = cache.append(k, v)  # (N, H, L, Dh): every filled step
            if key_padding_mask is not None:
                excluded = key_padding_mask[:, None, None, :]  # (N, 1, 1, L)
        else:
            k, v = self._source_kv(idx, attn, source, cache)  # (Bs, H, S, Dh)
            groups = n // k.size(0)
            proj = self._query(idx, attn, cross=True)
            prescaled = proj.prescaled
            q = proj(attn, query).view(k.size(0), groups, heads, head_dim)  # (N, C) -> (Bs, g, H, Dh)
            q = q.transpose(1, 2)  # (Bs, H, g, Dh)
            if key_padding_mask is not None:
                attn_bias = cache.source_bias(key_padding_mask, q.dtype)  # (Bs, 1, 1, S)
        out, weights = attention(q, k, v, excluded=excluded, bias=attn_bias, need_weights=need_weights,
                                 weight_heads=weight_heads, prescaled=prescaled)  # fmt: skip
        out = out.transpose(1, 2).reshape(n, attn.embed_dim)  # (Bs, H, g, Dh) -> (N, C)
        return linear(attn.out_proj, out), weights.reshape(n, 1, -1) if weights is not None else None

    def layer_step(
        self,
        idx: int,
        layer: TransformerDecoderLayer,
        x: Tensor,
        encoder_out: Tensor | None,
        encoder_padding_mask: Tensor | None,
        *,
        self_padding_mask: Tensor | None,
        cache: KVCache,
        need_attn: bool,
        attn_heads: int | None,
    ) -> tuple[Tensor, Tensor | None]:
        """``layer``'s forward (``idx`` in the stack) at inference for one position per row, ``x`` ``(N, C)``."""
        pre = layer.normalize_before
        residual = x
        x, _ = self.attend(idx, layer.self_attn, norm(layer.self_attn_layer_norm, x) if pre else x, None,
                           cache=cache.self_attn[idx], key_padding_mask=self_padding_mask)  # fmt: skip
        x = residual + layer.scale_attention(x)
        if not pre:
            x = norm(layer.self_attn_layer_norm, x)
        attn: Tensor | None = None
        cross, cross_norm = layer.encoder_attn, layer.encoder_attn_layer_norm
        if cross is not None and cross_norm is not None and encoder_out is not None:
            residual = x
            x, attn = self.attend(idx, cross, norm(cross_norm, x) if pre else x, encoder_out,
                                  cache=cache.cross_attn[idx], key_padding_mask=encoder_padding_mask,
                                  need_weights=need_attn, weight_heads=attn_heads)  # fmt: skip
            x = residual + x
            if not pre:
                x = norm(cross_norm, x)
        residual = x
        x = layer.activation(linear(layer.fc1, norm(layer.final_layer_norm, x) if pre else x))
        if layer.ffn_layernorm is not None:
            x = norm(layer.ffn_layernorm, x)
        if layer.w_resid is not None:
            residual = residual * layer.w_resid
        x = residual + linear(layer.fc2, x)
        return x if pre else norm(layer.final_layer_norm, x), attn


# stacked int8 projections outlive a decoding pass (stacking and packing transformer big's took ~0.3 s a pass):
# attention module -> {cross: (what they were made from, the stack)}
_STACKS = WeakIdKeyDictionary()


def stacked_projections(attn: MultiheadAttention, *, cross: bool) -> StackedProjections | None:
    """:meth:`StackedProjections.of` ``attn``, made again only when its projections changed (other modules, or
    tensors written in place, e.g. by ``load_state_dict``)."""
    projs = (attn.k_proj, attn.v_proj) if cross else (attn.q_proj, attn.k_proj, attn.v_proj)
    made_from = tuple((t, 0 if t.is_inference() else t._version) for m in projs for t in m.buffers())
    memo = _STACKS.setdefault(attn, {})
    found = memo.get(cross)
    if (
        found is None
        or len(found[0]) != len(made_from)
        or any(a is not b or u != w for (a, u), (b, w) in zip(found[0], made_from))
    ):
        found = memo[cross] = (made_from, StackedProjections.of(attn, cross=cross))
    return found[1]


# the fast step's state of each decoding pass, beside (not inside) the pass's cache; gone with the cache
_PASSES: weakref.WeakKeyDictionary[KVCache, FastStep] = weakref.WeakKeyDictionary()


def _pass_of(layers: nn.ModuleList, cache: KVCache) -> FastStep:
    state = _PASSES.get(cache)
    if state is None:
        state = _PASSES[cache] = FastStep(layers)
    return state


def linear(layer: nn.Module, x: Tensor) -> Tensor:
    """``layer(x)``; a plain ``nn.Linear`` as a functional call (no module-call overhead), any other module in
    its place (an int8 layer of :mod:`seqloom.modules.int8`) called as a module."""
    if type(layer) is nn.Linear:
        return F.linear(x, layer.weight, layer.bias)
    return layer(x)


def norm(layer_norm: nn.LayerNorm, x: Tensor) -> Tensor:
    """``layer_norm(x)`` as a functional call (what the module runs, without its call overhead)."""
    return F.layer_norm(x, layer_norm.normalized_shape, layer_norm.weight, layer_norm.bias, layer_norm.eps)
