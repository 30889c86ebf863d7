"""The vocabulary product fused with the loss (seqloom.criterions.vocab_loss): the same loss and gradients as
``log_softmax(x @ W.T)`` with fairseq's label-smoothed formula, a workspace that two live losses never
share, and criterions giving the same figures with the fusion on and off."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from seqloom.criterions import vocab_loss
from seqloom.criterions.cross_entropy import CrossEntropyCriterion
from seqloom.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyConfig,
    LabelSmoothedCrossEntropyCriterion,
    label_smoothed_nll_loss,
)
from seqloom.criterions.vocab_loss import vocab_cross_entropy
from seqloom.models.transformer import TransformerConfig
from seqloom.models.transformer import build_model as build_transformer
from seqloom.models.transformer_lm import build_model as build_lm
from seqloom.models.transformer_lm import presets
from seqloom.modules.transformer import OutputFeatures


def operands(n: int, c: int, v: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g), torch.randn(v, c, generator=g) * 0.5, torch.randint(0, v, (n,), generator=g)


def reference(x: torch.Tensor, w: torch.Tensor, target: torch.Tensor, eps: float):
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    loss, nll = label_smoothed_nll_loss(F.log_softmax(x @ w.t(), dim=-1), target, eps)
    (loss + 0.5 * nll).backward()
    return loss.detach(), nll.detach(), x.grad, w.grad


def fused(x: torch.Tensor, w: torch.Tensor, target: torch.Tensor, eps: float):
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    loss, nll = vocab_cross_entropy(x, w, target, eps)
    (loss + 0.5 * nll).backward()
    return loss.detach(), nll.detach(), x.grad, w.grad


@pytest.mark.parametrize("v", [37, 40])  # an odd vocabulary takes the padded product, a multiple of 8 not
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("rows", [None, 32])  # one block, or blocks of 32 rows (the last one shorter)
def test_loss_and_gradients_equal_log_softmax_of_the_product(v: int, eps: float, rows: int | None,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    if rows is not None:
        monkeypatch.setattr(vocab_loss, "MIN_CHUNK_ROWS", 1)
        monkeypatch.setattr(vocab_loss, "CHUNK_BYTES", 4 * rows * (v + -v % 8))
        assert vocab_loss.chunk_rows(90, v + -v % 8) == rows
    x, w, target = operands(90, 12, v)
    for got, want in zip(fused(x, w, target, eps), reference(x, w, target, eps)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # validation: no backward pass, the same figures
        loss, nll = vocab_cross_entropy(x, w, target, eps)
    torch.testing.assert_close(loss, reference(x, w, target, eps)[0], rtol=1e-5, atol=1e-5)
    assert vocab_loss._pool and vocab_loss._pool[-1].numel() >= 90 * 40  # the workspace came back


def test_two_live_losses_keep_their_own_workspaces() -> None:
    """Two forward passes before one backward (e.g. a sum of losses): the second must not overwrite the
    first's buffer, which its backward pass still reads."""
    (x1, w, t1), (x2, _, t2) = operands(50, 8, 29, seed=1), operands(50, 8, 29, seed=2)
    w1 = w.clone().requires_grad_()
    a, b = x1.clone().requires_grad_(), x2.clone().requires_grad_()
    total = vocab_cross_entropy(a, w1, t1, 0.1)[0] + vocab_cross_entropy(b, w1, t2, 0.1)[0]
    total.backward()
    ref_w = w.clone().requires_grad_()
    ref_a, ref_b = x1.clone().requires_grad_(), x2.clone().requires_grad_()
    ref = (label_smoothed_nll_loss(F.log_softmax(ref_a @ ref_w.t(), -1), t1, 0.1)[0]
           + label_smoothed_nll_loss(F.log_softmax(ref_b @ ref_w.t(), -1), t2, 0.1)[0])  # fmt: skip
    ref.backward()
    for got, want in ((a.grad, ref_a.grad), (b.grad, ref_b.grad), (w1.grad, ref_w.grad)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_a_second_backward_pass_is_refused() -> None:
    x, w, target = operands(20, 8, 17)
    x.requires_grad_()
    loss, _ = vocab_cross_entropy(x, w, target, 0.0)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="can be taken once"):
        loss.backward()


class Vocab:
    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def pad(self) -> int:
        return 1


def batch(v: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(4, v, (3, 7), generator=g)
    target[0, 5:] = 1  # padding
    prev = torch.cat([torch.full((3, 1), 2), target[:, :-1]], dim=1)
    src = torch.randint(4, v, (3, 6), generator=g)
    return {"net_input": {"src_tokens": src, "src_lengths": torch.full((3,), 6), "prev_output_tokens": prev},
            "target": target, "ntokens": int(target.ne(1).sum())}  # fmt: skip


def criterion_figures(criterion, model, sample) -> tuple[float, float, list[torch.Tensor]]:
    model.zero_grad()
    loss, _, log = criterion(model, sample)
    loss.backward()
    loss = loss.detach()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    return float(loss), float(log.get("nll_loss", loss)), grads


@pytest.mark.parametrize("smoothing", [None, 0.1])  # cross_entropy, label_smoothed_cross_entropy
def test_criterions_give_the_same_figures_fused_and_not(smoothing: float | None) -> None:
    v = 45
    torch.manual_seed(0)
    model = build_transformer(TransformerConfig(encoder_embed_dim=16, encoder_ffn_embed_dim=16, encoder_layers=1,
                                                decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                                                dropout=0.0, share_decoder_input_output_embed=True),
                              Vocab(v), Vocab(v))  # fmt: skip
    if smoothing is None:
        criterion = CrossEntropyCriterion(padding_idx=1)
    else:
        criterion = LabelSmoothedCrossEntropyCriterion(LabelSmoothedCrossEntropyConfig(label_smoothing=smoothing),
                                                       padding_idx=1)  # fmt: skip
    sample = batch(v)
    keep = sample["target"].ne(1)
    assert isinstance(model(**sample["net_input"], output_mask=keep, project=False), OutputFeatures)
    on = criterion_figures(criterion, model, sample)
    model.supports_output_features = False  # the logits route
    off = criterion_figures(criterion, model, sample)
    assert on[0] == pytest.approx(off[0], rel=1e-6) and on[1] == pytest.approx(off[1], rel=1e-6)
    assert len(on[2]) == len(off[2])
    for got, want in zip(on[2], off[2]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("embed_dim", [16, 512])  # 16 -> 512 folds project_out_dim into the vocabulary matrix
def test_language_models_hand_out_features_whose_product_is_the_logits(embed_dim: int) -> None:
    cfg = dataclasses.replace(presets.transformer_lm(), decoder_layers=1, decoder_embed_dim=embed_dim, dropout=0.0,
                              decoder_ffn_embed_dim=32, decoder_attention_heads=2)  # fmt: skip
    model = build_lm(cfg, Vocab(40)).eval()
    tokens = torch.randint(4, 40, (3, 6))
    mask = torch.rand(3, 6, generator=torch.Generator().manual_seed(1)) > 0.4
    with torch.no_grad():
        out = model(tokens, output_mask=mask, project=False)
        assert isinstance(out, OutputFeatures)
        torch.testing.assert_close(out.features @ out.weight.t(), model(tokens).logits[mask], atol=1e-5, rtol=1e-5)
