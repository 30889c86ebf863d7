"""The fast eval-mode forward of a :class:`TransformerEncoder`: its layers' kernels, in fewer Python steps.

A forward over one short sentence on the CPU is mostly the cost of the Python around each kernel (module
calls, the generality of :class:`MultiheadAttention`: caches, groups, causal masks), not of the kernels. This
module runs the same kernels in the same order as the layers' ``forward`` (the reference,
:class:`TransformerEncoderLayer`) through functional calls on the layers' own parameters, so its numbers
equal the reference's bit for bit and gradients flow through it alike (tests/modules/test_fast_encoder.py).

One switch, :func:`uses_fast_encoder`, decides when it runs: in eval mode only (the reference then draws no
dropout and drops no layer), on plain layers (``nn.Linear`` or int8 linear layers of
:mod:`seqloom.modules.int8`, no other swapped modules, no hooks). An int8 layer runs its own product
(:func:`~seqloom.modules.int8.int8_linear` on its buffers, what calling it does), so an int8 model's numbers equal
its reference's too. Nothing is cached between calls: the path reads the parameters as they are at each call,
whatever updated them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqloom.modules.attention import MultiheadAttention, attention
from seqloom.modules.int8 import Int8Linear, int8_linear
from seqloom.modules.masks import any_true, padding_mask
from seqloom.modules.positions import LearnedPositionalEmbedding, SinusoidalPositionalEmbedding, make_positions
from seqloom.modules.transformer import TransformerEncoder
from seqloom.modules.transformer_layers import TransformerEncoderLayer

# the submodules the fast path reads the parameters of, and the classes each may be exactly (a linear part: a
# float or an int8 layer)
_LINEAR = (nn.Linear, Int8Linear)
_LAYER_PARTS: dict[str, tuple[type[nn.Module], ...]] = {
    "self_attn_layer_norm": (nn.LayerNorm,),
    "fc1": _LINEAR,
    "fc2": _LINEAR,
    "final_layer_norm": (nn.LayerNorm,),
}
_ATTENTION_PARTS: dict[str, tuple[type[nn.Module], ...]] = {
    "q_proj": _LINEAR,
    "k_proj": _LINEAR,
    "v_proj": _LINEAR,
    "out_proj": _LINEAR,
}


def _plain(module: object, kind: type[nn.Module]) -> bool:
    """``module`` is exactly a ``kind`` (not a subclass that computes otherwise) and has no forward hooks (the
    fast path does not call modules, so it would skip them)."""
    return type(module) is kind and not module._forward_hooks and not module._forward_pre_hooks  # type: ignore[attr-defined]


def _plain_parts(module: nn.Module, parts: dict[str, tuple[type[nn.Module], ...]]) -> bool:
    children = module._modules  # read directly: the per-call check must stay cheap beside a small forward
    for name, kinds in parts.items():
        child: Any = children.get(name)
        if type(child) not in kinds or child._forward_hooks or child._forward_pre_hooks:
            return False
    return True


def _plain_layer(layer: nn.Module) -> bool:
    if not _plain(layer, TransformerEncoderLayer) or layer.training:
        return False
    attn = layer._modules["self_attn"]
    if attn is None or not _plain(attn, MultiheadAttention) or attn.training:
        return False
    assert isinstance(layer, TransformerEncoderLayer)
    if layer.ffn_layernorm is not None or layer.w_resid is not None:
        return False
    return _plain_parts(layer, _LAYER_PARTS) and _plain_parts(attn, _ATTENTION_PARTS)


def uses_fast_encoder(encoder: TransformerEncoder) -> bool:
    """The switch: whether :func:`fast_encode` may stand in for ``encoder``'s forward. Yes when neither the
    encoder (embedding dropout, LayerDrop) nor any layer or attention (dropouts) is in training mode and every
    layer is a plain :class:`TransformerEncoderLayer` of ``nn.Linear``/``nn.LayerNorm`` modules without hooks."""
    if encoder.training or torch.compiler.is_compiling() or encoder._forward_hooks:
        return False
    table, positions, norm = encoder.embed_tokens, encoder.embed_positions, encoder.layernorm_embedding
    if not _plain(table, nn.Embedding) or table.max_norm is not None or table.sparse or table.scale_grad_by_freq:
        return False
    if positions is not None and not _plain(positions, type(positions)):
        return False
    if type(positions) not in (LearnedPositionalEmbedding, SinusoidalPositionalEmbedding, type(None)):
        return False
    if norm is not None and not _plain(norm, nn.LayerNorm):
        return False
    for layer in encoder.layers:
        if not _plain_layer(layer):
            return False
    return True


# Parameters and submodules are read from the modules' own dicts (``_parameters``, ``_modules``): what
# ``nn.Module.__getattr__`` returns, without its cost (about a quarter of a small layer's time on the CPU).
# The switch has checked that each module is exactly its class, so nothing computes its weight on access.


def _linear(module: Any, x: Tensor) -> Tensor:
    p = module._parameters
    if p:  # nn.Linear (an Int8Linear holds buffers only)
        return F.linear(x, p["weight"], p["bias"])
    b = module._buffers
    return int8_linear(x, b["weight"], b["weight_scale"], b["bias"])


def _layer_norm(norm: Any, x: Tensor) -> Tensor:
    p = norm._parameters
    return F.layer_norm(x, norm.normalized_shape, p["weight"], p["bias"], norm.eps)


def _self_attention(attn: Any, x: Tensor, shape: tuple[int, int], excluded: Tensor | None) -> Tensor:
    """The reference's self-attention (no cache, not causal, no weights) of the rows ``x`` ``(B*T, C)`` of a
    ``(B, T) = shape`` batch."""
    (b, t), heads, head_dim = shape, attn.num_heads, attn.head_dim
    parts: dict[str, Any] = attn._modules
    q = _linear(parts["q_proj"], x).view(b, t, heads, head_dim).transpose(1, 2)  # (B*T, C) -> (B, H, T, Dh)
    k = _linear(parts["k_proj"], x).view(b, t, heads, head_dim).transpose(1, 2)
    v = _linear(parts["v_proj"], x).view(b, t, heads, head_dim).transpose(1, 2)
    out, _ = attention(q, k, v, excluded=excluded)  # (B, H, T, Dh)
    out = out.transpose(1, 2).reshape(b * t, heads * head_dim)  # (B, H, T, Dh) -> (B*T, C)
    return _linear(parts["out_proj"], out)


def _layer(layer: Any, x: Tensor, shape: tuple[int, int], excluded: Tensor | None) -> Tensor:
    """:meth:`TransformerEncoderLayer.forward` in eval mode, on the rows ``x`` ``(B*T, C)`` -> ``(B*T, C)``
    (2-D operands: the CPU's matrix products dispatch faster than on ``(B, T, C)``, to the same kernels)."""
    pre = layer.normalize_before
    parts: dict[str, Any] = layer._modules
    residual = x
    if pre:
        x = _layer_norm(parts["self_attn_layer_norm"], x)
    x = residual + _self_attention(parts["self_attn"], x, shape, excluded)
    if not pre:
        x = _layer_norm(parts["self_attn_layer_norm"], x)
    residual = x
    if pre:
        x = _layer_norm(parts["final_layer_norm"], x)
    hidden = layer.activation(_linear(parts["fc1"], x))  # (B*T, F)
    x = residual + _linear(parts["fc2"], hidden)
    return x if pre else _layer_norm(parts["final_layer_norm"], x)


def _embed(encoder: TransformerEncoder, src_tokens: Tensor, has_pads: bool) -> Tensor:
    """:meth:`TransformerEncoder.embed` in eval mode ``(B, T)`` -> ``(B, T, C)``; without padding, the positions
    ``padding_idx + 1 ...`` are a slice of the table (what the lookup would read)."""
    table = encoder.embed_tokens
    x = F.embedding(src_tokens, table.weight, table.padding_idx)  # (B, T, C)
    if encoder.embed_scale != 1.0:
        x = encoder.embed_scale * x
    positions = encoder.embed_positions
    if positions is not None:
        t = src_tokens.size(1)
        if has_pads:
            x = x + positions(make_positions(src_tokens, encoder.padding_idx), span=t)
        else:
            x = x + positions.steps(encoder.padding_idx + 1, t)  # (1, T, C)
    if encoder.layernorm_embedding is not None:
        x = _layer_norm(encoder.layernorm_embedding, x)
    return x


def fast_encode(
    encoder: TransformerEncoder, src_tokens: Tensor, *, return_all_hiddens: bool = False
) -> tuple[Tensor, list[Tensor] | None]:
    """``encoder``'s output ``(B, T, C)`` for ``src_tokens`` ``(B, T)`` (padded with ``encoder.padding_idx``) and,
    with ``return_all_hiddens``, the inner states ``(B, T, C)`` each (the pad-zeroed embeddings, then every
    layer's output; a pre-norm encoder's final norm touches the output only). Call it where
    :func:`uses_fast_encoder` says yes."""
    pad = padding_mask(src_tokens, encoder.padding_idx)  # (B, T)
    has_pads = any_true(pad)
    x = _embed(encoder, src_tokens, has_pads)  # (B, T, C)
    excluded = None
    if has_pads:
        x = x * (1 - pad.unsqueeze(-1).type_as(x))  # zero the padding rows, as the reference
        excluded = pad[:, None, None, :]  # (B, 1, 1, T): keys no query may see
    b, t, c = x.shape
    states = [x] if return_all_hiddens else None
    x = x.reshape(b * t, c)  # (B, T, C) -> (B*T, C)
    for layer in encoder.layers:
        x = _layer(layer, x, (b, t), excluded)
        if states is not None:
            states.append(x.view(b, t, c))
    if encoder.layer_norm is not None:
        x = _layer_norm(encoder.layer_norm, x)
    return x.view(b, t, c), states
