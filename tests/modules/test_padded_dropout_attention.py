"""Training attention with dropout over padded keys on the CPU (``padded_dropout_attention``): the same outputs,
gradients, dropout masks and random-number use as ``F.scaled_dot_product_attention``, bit for bit, so that a seeded
run trains exactly as before (and as fairseq, whose attention runs that kernel)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqloom.modules.attention import MultiheadAttention, attention, is_padding_only, padded_dropout_attention


@pytest.mark.parametrize("shape", [(3, 2, 9, 9, 8), (2, 4, 5, 11, 16), (4, 3, 17, 17, 24)])
def test_equals_the_fused_kernel_bit_for_bit(shape: tuple[int, int, int, int, int]) -> None:
    b, h, t, s, d = shape
    excluded = torch.zeros(b, s, dtype=torch.bool)
    excluded[::2, -(s // 3) :] = True  # every other row padded
    excluded = excluded[:, None, None, :]  # (B, 1, 1, S)
    # (B, T, H, Dh) storage seen as (B, H, T, Dh), as MultiheadAttention hands them over
    inputs = [torch.randn(b, n, h, d) for n in (t, s, s)]
    runs = []
    for fn in (
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=~excluded, dropout_p=0.2),
        lambda q, k, v: padded_dropout_attention(q, k, v, excluded, 0.2),
    ):
        leaves = [x.clone().requires_grad_() for x in inputs]
        torch.manual_seed(3)
        out = fn(*(x.transpose(1, 2) for x in leaves))
        out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
        runs.append([out.detach(), *(x.grad for x in leaves), torch.rand(4)])  # the RNG left in the same state
    for ours, theirs in zip(*runs):
        assert torch.equal(ours, theirs)


def test_only_padding_masks_that_leave_a_key_take_it() -> None:
    pad = torch.tensor([[False, True], [False, False]])
    assert is_padding_only(pad[:, None, None, :])
    assert not is_padding_only(None)
    assert not is_padding_only(torch.tensor([[False, True], [True, True]])[:, None, None, :])  # a row sees nothing
    assert not is_padding_only(torch.ones(2, 2, dtype=torch.bool).triu(1)[None, None])  # (1, 1, T, S) causal


def test_a_fully_padded_row_falls_back_to_the_kernel_zeros() -> None:
    q = k = v = torch.randn(2, 1, 3, 4)
    excluded = torch.tensor([[False, False, True], [True, True, True]])[:, None, None, :]
    out, _ = attention(q, k, v, excluded=excluded, dropout_p=0.5)
    assert torch.isfinite(out).all() and (out[1] == 0).all()  # SDPA's zeros, not NaN


def test_the_layer_in_training_uses_it_and_trains_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    import seqloom.modules.attention as module

    calls = []
    monkeypatch.setattr(module, "padded_dropout_attention", lambda *a: calls.append(1) or padded_dropout_attention(*a))
    torch.manual_seed(0)
    layer = MultiheadAttention(16, 2, dropout=0.1).train()
    x = torch.randn(3, 6, 16)
    pad = torch.zeros(3, 6, dtype=torch.bool)
    pad[1, 4:] = True
    torch.manual_seed(1)
    ours, _ = layer(x, key_padding_mask=pad)
    torch.manual_seed(1)
    q, k, v = (layer._split_heads(p(x)) for p in (layer.q_proj, layer.k_proj, layer.v_proj))
    fused = F.scaled_dot_product_attention(q, k, v, attn_mask=~pad[:, None, None, :], dropout_p=0.1)
    expected = layer.out_proj(fused.transpose(1, 2).reshape(3, 6, 16))
    assert torch.equal(ours, expected) and calls == [1]
