"""The decoder's KV cache: an explicit object passed down the layers (no dict-of-dicts keyed by uuids).

Self-attention keys and values live in two buffers preallocated for ``max_len`` steps (contiguous views
of their front are what attention reads); cross-attention keys and values are computed once per source.
``reorder(new_order)`` follows beam search's reordering (and shrinking) of the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from seqloom.modules.masks import any_true


class AttentionCache:
    """Cached keys and values of one attention layer, ``(B, H, L, Dh)`` each.

    A *growing* cache (self-attention) owns two preallocated flat buffers of capacity ``max_len`` steps.
    ``key``/``value`` are always *contiguous* ``(B, H, length, Dh)`` views of the front of one of them, so
    that SDPA reads them without a copy: a step that appends re-lays the filled steps out once (and beam
    reordering does that gather anyway, leaving room for the next step), alternating between the buffers.
    A *static* cache (cross-attention) holds the projected source once ``set`` was called, and ``length``
    is the source length.
    """

    def __init__(self, key: Tensor | None, value: Tensor | None, *, growing: bool) -> None:
        self.growing = growing
        self.key = key
        self.value = value
        self.length = 0 if growing else (key.size(2) if key is not None else 0)
        self.max_len = key.size(2) if key is not None else 0
        self._buffers: list[tuple[Tensor, Tensor]] = []  # growing: the two flat (key, value) storages
        self._bias: tuple[Tensor, int, torch.dtype, Tensor | None] | None = None  # static: source_bias's memo
        if growing and key is not None and value is not None:
            self._buffers = [(key.reshape(-1), value.reshape(-1))]
            self.key, self.value = self._views(0, key.size(0), 0)

    @classmethod
    def preallocated(
        cls, batch_size: int, num_heads: int, max_len: int, head_dim: int, *, dtype: torch.dtype, device: torch.device
    ) -> AttentionCache:
        """Uninitialised: only the filled front of each buffer is ever read (writing zeros to every step's
        room cost 6 ms per layer at 160 beam rows and 201 steps, most of it first-touch page faults)."""
        shape = (batch_size, num_heads, max_len, head_dim)
        return cls(
            torch.empty(shape, dtype=dtype, device=device), torch.empty(shape, dtype=dtype, device=device), growing=True
        )

    @classmethod
    def empty_static(cls) -> AttentionCache:
        return cls(None, None, growing=False)

    @property
    def is_set(self) -> bool:
        return self.key is not None

    def _views(self, which: int, batch: int, steps: int) -> tuple[Tensor, Tensor]:
        """Contiguous ``(batch, H, steps, Dh)`` views of the front of flat buffer ``which``."""
        assert self.key is not None
        _, heads, _, head_dim = self.key.shape
        numel = batch * heads * steps * head_dim
        if which == len(self._buffers):  # the second buffer, made on first use
            flat_k, flat_v = self._buffers[0]
            self._buffers.append((torch.empty_like(flat_k), torch.empty_like(flat_v)))
        flat_k, flat_v = self._buffers[which]
        if flat_k.numel() < numel:
            flat_k, flat_v = flat_k.new_empty(numel), flat_v.new_empty(numel)
            self._buffers[which] = (flat_k, flat_v)
        shape = (batch, heads, steps, head_dim)
        return flat_k[:numel].view(shape), flat_v[:numel].view(shape)

    def _relayout(self, batch: int, steps: int, order: Tensor | None) -> None:
        """Copies the filled steps (rows ``order``, or all) into the other buffer, shaped for ``steps`` steps."""
        assert self.key is not None and self.value is not None
        other = 1 if self._buffers[0][0].data_ptr() == self.key.data_ptr() else 0
        key, value = self._views(other, batch, steps)
        n = self.length
        if order is None:
            key[:, :, :n] = self.key[:, :, :n]
            value[:, :, :n] = self.value[:, :, :n]
        else:
            torch.index_select(self.key[:, :, :n], 0, order, out=key[:, :, :n])
            torch.index_select(self.value[:, :, :n], 0, order, out=value[:, :, :n])
        self.key, self.value = key, value

    def append(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Writes ``key``/``value`` ``(B, H, T, Dh)`` after the filled steps; returns all filled ``(B, H, L', Dh)``."""
        assert self.growing and self.key is not None and self.value is not None
        if self.length == 0 and key.dtype != self.key.dtype:  # e.g. decoding under autocast: follow the activations
            self._buffers = [(k.to(key.dtype), v.to(value.dtype)) for k, v in self._buffers]
            self.key, self.value = self._views(0, self.key.size(0), 0)
        start, end = self.length, self.length + key.size(2)
        if end > self.max_len:
            raise RuntimeError(
                f"KV cache overflow: decoding step {end} exceeds the cache's max_len {self.max_len}; "
                "create the cache with a larger max_len (model.new_cache(batch_size, max_len))"
            )
        if self.key.size(2) != end:
            self._relayout(self.key.size(0), end, None)
        self.key[:, :, start:end] = key
        self.value[:, :, start:end] = value
        self.length = end
        return self.key, self.value

    def source_bias(self, key_padding_mask: Tensor, dtype: torch.dtype) -> Tensor | None:
        """The additive attention mask ``(B, 1, 1, S)`` (0, or -inf at padding) of a static cache's source
        padding ``key_padding_mask`` ``(B, S)``, or None when nothing is padded.

        Made once per padding tensor (its identity and version), not at every decoding step."""
        version = 0 if key_padding_mask.is_inference() else key_padding_mask._version  # inference tensors have none
        memo = self._bias
        if memo is None or memo[0] is not key_padding_mask or memo[1] != version or memo[2] != dtype:
            bias = None
            if any_true(key_padding_mask):
                bias = torch.zeros(key_padding_mask.shape, dtype=dtype, device=key_padding_mask.device)
                bias = bias.masked_fill_(key_padding_mask, float("-inf"))[:, None, None, :]
            memo = self._bias = (key_padding_mask, version, dtype, bias)
        return memo[3]

    def set(self, key: Tensor, value: Tensor) -> None:
        """Stores the projected source ``(B, H, S, Dh)`` of a static (cross-attention) cache."""
        assert not self.growing
        self.key, self.value, self.length = key, value, key.size(2)

    def reorder(self, new_order: Tensor) -> None:
        """Keeps rows ``new_order``; a growing cache gathers its filled steps with room for one more step."""
        if self.key is None or self.value is None:
            return
        if not self.growing:
            self.key = self.key.index_select(0, new_order)
            self.value = self.value.index_select(0, new_order)
            return
        self._relayout(new_order.numel(), min(self.length + 1, self.max_len), new_order)


class KVCache:
    """All cached state of an incremental decoder: one self- and one cross-attention cache per layer.

    ``padding`` ``(B, max_len)`` records which fed tokens were padding, so that later steps never attend
    to them (fairseq's ``prev_key_padding_mask``); ``has_padding`` says whether any was.
    """

    def __init__(
        self,
        *,
        num_layers: int,
        batch_size: int,
        num_heads: int,
        head_dim: int,
        max_len: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.max_len = max_len
        self.self_attn = [
            AttentionCache.preallocated(batch_size, num_heads, max_len, head_dim, dtype=dtype, device=device)
            for _ in range(num_layers)
        ]
        self.cross_attn = [AttentionCache.empty_static() for _ in range(num_layers)]
        self.padding = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)
        self.has_padding = False
        self.length = 0  # decoding steps already fed

    @property
    def batch_size(self) -> int:
        return self.padding.size(0)

    def record_padding(self, pad: Tensor) -> Tensor | None:
        """Records the pad mask ``(B, T)`` of the newest tokens; returns the key mask ``(B, length + T)`` or None."""
        end = self.length + pad.size(1)
        if end > self.max_len:
            raise RuntimeError(
                f"KV cache overflow: decoding step {end} exceeds the cache's max_len {self.max_len}; "
                "create the cache with a larger max_len (model.new_cache(batch_size, max_len))"
            )
        self.padding[:, self.length : end] = pad
        self.has_padding = self.has_padding or any_true(pad)
        return self.padding[:, :end] if self.has_padding else None

    def advance(self, steps: int) -> None:
        self.length += steps

    def reorder(self, new_order: Tensor, *, keep_static: bool = False, static_order: Tensor | None = None) -> None:
        """Keeps batch rows ``new_order`` (beam search: their new order; may repeat or drop rows).

        ``keep_static`` leaves the cross-attention caches alone: a caller that only permutes the beams of
        each sentence among themselves (whose cross-attention keys/values are identical) may skip that copy.
        ``static_order`` reorders them by their own rows instead (a cross-attention cache with one row per
        sentence, shared by its beams, keeps the sentences ``static_order``).
        """
        for cache in self.self_attn:
            cache.reorder(new_order)
        if static_order is not None or not keep_static:
            for cache in self.cross_attn:
                cache.reorder(new_order if static_order is None else static_order)
        padding = self.padding.index_select(0, new_order)
        if padding.shape == self.padding.shape:
            self.padding.copy_(padding)
        else:
            self.padding = padding
        if self.has_padding:  # the rows that were fed padding (e.g. -inf beams) may all have been dropped
            self.has_padding = any_true(self.padding[:, : self.length])
