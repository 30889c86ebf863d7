"""The padded vocabulary product equals the plain one, forward and backward, and keeps nn.Linear's interface."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seqloom.modules.vocab_projection import MIN_PADDED_ROWS, VocabProjection, uses_padded_product, vocab_logits


@pytest.mark.parametrize("shape", [(130, 16), (3, 50, 16)])
def test_padded_product_matches_linear_forward_and_backward(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    weight = torch.randn(37, 16, dtype=torch.float32, requires_grad=True)
    x = torch.randn(*shape, requires_grad=True)
    assert uses_padded_product(x, weight)
    out = vocab_logits(x, weight)
    assert out.shape == (*shape[:-1], 37)
    grad = torch.randn(out.shape)
    (out * grad).sum().backward()
    gx, gw = x.grad.clone(), weight.grad.clone()
    x.grad = weight.grad = None
    ref = F.linear(x, weight)
    (ref * grad).sum().backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(gx, x.grad)
    torch.testing.assert_close(gw, weight.grad)


def test_padded_logits_feed_log_softmax_like_plain_ones() -> None:
    torch.manual_seed(1)
    weight, x = torch.randn(4089, 8), torch.randn(200, 8)
    with torch.inference_mode():
        torch.testing.assert_close(vocab_logits(x, weight).log_softmax(-1), F.linear(x, weight).log_softmax(-1))


def test_plain_product_where_padding_does_not_pay() -> None:
    weight = torch.randn(37, 16)
    assert not uses_padded_product(torch.randn(MIN_PADDED_ROWS - 1, 16), weight)  # few rows
    assert not uses_padded_product(torch.randn(500, 16), torch.randn(40, 16))  # already a multiple of 8
    assert not uses_padded_product(torch.randn(500, 16, dtype=torch.float64), weight.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not uses_padded_product(torch.randn(500, 16), weight)


def test_projection_is_a_linear_with_its_key_and_tied_gradient() -> None:
    torch.manual_seed(2)
    embed = nn.Embedding(41, 16)
    proj = VocabProjection(16, 41)
    assert isinstance(proj, nn.Linear) and proj.bias is None
    assert list(proj.state_dict()) == ["weight"]
    proj.weight = embed.weight
    x = torch.randn(100, 16)
    proj(x).sum().backward()
    expected = torch.ones(100, 41).t() @ x
    torch.testing.assert_close(embed.weight.grad, expected)


def test_same_initialisation_stream_as_linear() -> None:
    torch.manual_seed(3)
    a = nn.Linear(16, 41, bias=False).weight.detach().clone()
    torch.manual_seed(3)
    torch.testing.assert_close(VocabProjection(16, 41).weight.detach(), a)
