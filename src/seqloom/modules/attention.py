"""Multi-head attention on ``F.scaled_dot_product_attention``: one module for self- and cross-attention,
training and incremental decoding, with fairseq's parameter names (``q_proj``, ``k_proj``, ``v_proj``,
``out_proj``) and initialisation.

Attention weights are computed explicitly only when a caller asks for them (``need_weights``), e.g.
for the alignment layer; otherwise the fused kernel runs, also during incremental decoding.
On the CPU, attention dropout draws the same masks as fairseq's (both go through the same kernel).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqloom.modules.kv_cache import AttentionCache
from seqloom.modules.masks import causal_mask, combine_masks

# Inference with at most this many queries per row (decoding steps; a beam group's queries in cross-attention)
# runs the explicit product: for so few queries the fused CPU kernel costs up to 4x more
EXPLICIT_MAX_QUERIES = 16


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    excluded: Tensor | None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    need_weights: bool = False,
    bias: Tensor | None = None,
    weight_heads: int | None = None,
    prescaled: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Scaled dot-product attention of ``q`` ``(B, H, T, Dh)`` over ``k``/``v`` ``(B, H, S, Dh)``.

    ``excluded`` is a bool mask broadcastable to ``(B, H, T, S)``, True where a query may not look;
    ``is_causal`` adds the top-left aligned future mask (only with ``excluded=None``); ``bias`` is an
    additive mask (0 or -inf) made beforehand, used instead of ``excluded``. Returns the output
    ``(B, H, T, Dh)`` and, with ``need_weights``, the probabilities averaged over heads ``(B, T, S)`` (over the
    first ``weight_heads`` heads only, when given: transformer_align's supervised heads). ``prescaled``: ``q``
    already carries the ``Dh ** -0.5`` factor (explicit path only).

    Training runs the fused kernel (``F.scaled_dot_product_attention``), as does inference over many
    queries; the explicit product serves ``need_weights`` and inference over a few queries per row.
    """
    assert bias is None or (excluded is None and not is_causal)
    if dropout_p > 0 and not need_weights and bias is None and is_padding_only(excluded) and q.device.type == "cpu":
        return padded_dropout_attention(q, k, v, excluded, dropout_p), None  # type: ignore[arg-type]
    inference = dropout_p == 0 and not (torch.is_grad_enabled() and q.requires_grad)
    if not need_weights and not (inference and q.size(2) <= EXPLICIT_MAX_QUERIES and q.device.type == "cpu"):
        assert not prescaled, "the fused kernel scales the queries itself"
        mask = bias if bias is not None else None if excluded is None else ~excluded
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
        return out, None
    scores = torch.matmul(q if prescaled else q * q.size(-1) ** -0.5, k.transpose(-2, -1))  # (B, H, T, S)
    if is_causal:
        excluded = causal_mask(q.size(2), k.size(2), device=q.device)
    if bias is not None:  # rows of a source-padding bias always have a visible key (the source's eos)
        scores = scores + bias
    if excluded is not None:
        scores = scores.masked_fill(excluded, float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32)  # (B, H, T, S), float32 like fairseq
    if excluded is not None:
        probs = probs.masked_fill(excluded, 0.0)  # a query with no visible key gets zeros (as SDPA), not NaN
    dropped = F.dropout(probs.type_as(scores), p=dropout_p) if dropout_p > 0 else probs.type_as(scores)
    weights = (probs if weight_heads is None else probs[:, :weight_heads]).mean(dim=1) if need_weights else None
    return torch.matmul(dropped, v), weights


def is_padding_only(excluded: Tensor | None) -> bool:
    """``excluded`` is a ``(B, 1, 1, S)`` key padding mask leaving every row at least one key."""
    return (
        excluded is not None
        and excluded.dim() == 4
        and excluded.shape[1:3] == (1, 1)
        and not bool(excluded.all(dim=-1).any())
    )


def padded_dropout_attention(q: Tensor, k: Tensor, v: Tensor, excluded: Tensor, dropout_p: float) -> Tensor:
    """Training attention on the CPU with dropout over padded keys: the very operations of
    ``F.scaled_dot_product_attention``'s math kernel (the only CPU kernel with dropout), so the same values,
    gradients and dropout masks (fairseq's), less the kernel's guard against fully masked rows (three more passes
    over the ``(B, H, T, S)`` scores), which ``excluded`` ``(B, 1, 1, S)`` cannot produce (see
    :func:`is_padding_only`). ``q`` ``(B, H, T, Dh)``, ``k``/``v`` ``(B, H, S, Dh)`` -> ``(B, H, T, Dh)``."""
    root_scale = math.sqrt(1.0 / math.sqrt(q.size(-1)))  # the kernel scales q and k by sqrt(Dh ** -0.5) each
    scores = torch.matmul(q * root_scale, k.transpose(-2, -1) * root_scale)  # (B, H, T, S)
    scores.add_(
        torch.zeros(excluded.shape, dtype=scores.dtype, device=scores.device).masked_fill_(excluded, float("-inf"))
    )  # (B, 1, 1, S) broadcast: 0 where visible, -inf at pads
    probs = F.dropout(torch.softmax(scores, dim=-1), p=dropout_p, training=True)
    return torch.matmul(probs, v)


class MultiheadAttention(nn.Module):
    """Multi-head attention over ``(B, T, C)`` inputs.

    Self-attention when ``forward`` gets no ``source``; cross-attention (to ``source`` ``(B, S, kdim)``)
    otherwise. ``kdim``/``vdim`` default to ``embed_dim``.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        kdim: int | None = None,
        vdim: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by the number of attention heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        kdim = embed_dim if kdim is None else kdim
        vdim = embed_dim if vdim is None else vdim
        # construction order k, v, q, out is fairseq's: same state-dict order, same RNG draws at init
        self.k_proj = nn.Linear(kdim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(vdim, embed_dim, bias=bias)
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.reset_parameters(same_dim=kdim == embed_dim and vdim == embed_dim)

    def reset_parameters(self, *, same_dim: bool) -> None:
        """fairseq's init: Xavier (gain 1/sqrt 2 when q, k, v share a size), zero output bias."""
        gain = 1 / math.sqrt(2) if same_dim else 1.0
        for proj in (self.k_proj, self.v_proj, self.q_proj):
            nn.init.xavier_uniform_(proj.weight, gain=gain)
        nn.init.xavier_uniform_(self.out_proj.weight)
        if self.out_proj.bias is not None:
            nn.init.constant_(self.out_proj.bias, 0.0)

    def _split_heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # (B, T, C) -> (B, H, T, Dh)

    def _self_queries_keys_values(self, query: Tensor, cache: AttentionCache | None) -> tuple[Tensor, Tensor, Tensor]:
        """``(B, H, T, Dh)`` queries, and keys/values (with a cache: all filled steps) of self-attention."""
        q, k, v = self.q_proj(query), self.k_proj(query), self.v_proj(query)
        q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)  # (B, H, T, Dh)
        if cache is not None:
            k, v = cache.append(k, v)
        return q, k, v

    def source_keys_values(self, source: Tensor, cache: AttentionCache | None) -> tuple[Tensor, Tensor]:
        """Cross-attention keys and values ``(B, H, S, Dh)`` of ``source`` ``(B, S, kdim)``: with a cache, projected
        once per source."""
        if cache is not None and cache.is_set:
            assert cache.key is not None and cache.value is not None
            return cache.key, cache.value  # projected once per source
        k = self._split_heads(self.k_proj(source))  # (B, H, S, Dh)
        v = self._split_heads(self.v_proj(source))
        if cache is not None:  # laid out (B, H, S, Dh) once, so that no decoding step copies them again
            k, v = k.contiguous(), v.contiguous()
            cache.set(k, v)
        return k, v

    def forward(
        self,
        query: Tensor,
        source: Tensor | None = None,
        *,
        key_padding_mask: Tensor | None = None,
        causal: bool = False,
        cache: AttentionCache | None = None,
        need_weights: bool = False,
        weight_heads: int | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attends from ``query`` ``(B, T, C)`` to itself or to ``source`` ``(B, S, kdim)``.

        ``source`` may also have ``B / g`` rows, each shared by ``g`` consecutive query rows (beam search's
        hypotheses of one sentence); ``key_padding_mask`` then has the source's rows too.

        ``key_padding_mask`` ``(B, S)`` is True at keys to ignore (with a self-attention ``cache``: over
        all cached steps plus the new ones). ``causal`` hides future keys; with a cache, the new queries
        sit after the cached steps. Returns ``(B, T, C)`` and, with ``need_weights``, the head-averaged
        attention probabilities ``(B, T, S)`` (of the first ``weight_heads`` heads, when given).
        """
        rows = query.size(0)
        groups = 1
        if source is not None and source.size(0) != rows:
            # g consecutive query rows share one source row (beam search's hypotheses of one sentence): attend
            # as one row of g*T queries, so the source's keys/values are projected, cached and read once
            if source.size(0) == 0 or rows % source.size(0):
                raise ValueError(f"{rows} query rows cannot share {source.size(0)} source rows")
            groups = rows // source.size(0)
            query = query.reshape(source.size(0), groups * query.size(1), query.size(2))  # (Bs, g*T, C)
        offset = cache.length if cache is not None and source is None else 0
        if source is None:
            q, k, v = self._self_queries_keys_values(query, cache)  # (B, H, T, Dh), (B, H, S, Dh) x 2
        else:
            q = self._split_heads(self.q_proj(query))
            k, v = self.source_keys_values(source, cache)
        tgt_len, src_len = q.size(2), k.size(2)
        causal = causal and tgt_len > 1  # a single new query may see every cached key
        # the plain training case lets the kernel build the mask itself (``is_causal``)
        use_is_causal = causal and key_padding_mask is None and offset == 0 and tgt_len == src_len
        excluded = bias = None
        if source is not None and cache is not None and key_padding_mask is not None and not need_weights:
            bias = cache.source_bias(key_padding_mask, q.dtype)  # made once per source, not per decoding step
        elif not use_is_causal:
            future = causal_mask(tgt_len, src_len, offset=offset, device=q.device) if causal else None
            excluded = combine_masks(key_padding_mask, future)
        out, weights = attention(
            q,
            k,
            v,
            excluded=excluded,
            is_causal=use_is_causal,
            dropout_p=self.dropout if self.training else 0.0,
            need_weights=need_weights,
            bias=bias,
            weight_heads=weight_heads,
        )
        b, _, t, _ = out.shape
        out = out.transpose(1, 2).reshape(b, t, self.embed_dim)  # (B, H, T, Dh) -> (B, T, C)
        out = self.out_proj(out)
        if groups > 1:  # back to one row per query row
            out = out.reshape(rows, t // groups, self.embed_dim)
            weights = weights.reshape(rows, t // groups, -1) if weights is not None else None
        return out, weights
