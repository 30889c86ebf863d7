"""Criterions on a tiny fake model, against the smoothed-target cross-entropy written out by hand."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqloom import registry
from seqloom.criterions import DISPLAY_ROUND, build_criterion
from seqloom.criterions.cross_entropy import CrossEntropyCriterion
from seqloom.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyConfig,
    LabelSmoothedCrossEntropyCriterion,
    label_smoothed_nll_loss,
    reduce_metrics,
    smoothed_cross_entropy,
)
from seqloom.modules.masks import select_positions

PAD, EOS, V = 1, 2, 11


@dataclass
class FakeDecoderOut:
    logits: Tensor  # (B, T, V)
    attn: Tensor | None = None


class FakeModel(nn.Module):
    """logits[b, t] = table[prev_output_tokens[b, t]] + mean of the source embeddings: enough to have gradients."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.table = nn.Parameter(torch.randn(V, V, generator=g) * 2)
        self.src = nn.Embedding(V, V, padding_idx=PAD)

    def forward(self, src_tokens: Tensor, src_lengths: Tensor, prev_output_tokens: Tensor) -> FakeDecoderOut:
        src = self.src(src_tokens).sum(1, keepdim=True) / src_lengths.view(-1, 1, 1)  # (B, 1, V)
        return FakeDecoderOut(logits=self.table[prev_output_tokens] + src)  # (B, T, V)

    def get_normalized_probs(self, logits: Tensor, log_probs: bool = True) -> Tensor:
        return F.log_softmax(logits.float(), dim=-1) if log_probs else F.softmax(logits.float(), dim=-1)


class MaskingFakeModel(FakeModel):
    """:class:`FakeModel` that projects only the positions a criterion asks for (``output_mask``), as the
    transformer models do; it records the masks it was given."""

    supports_output_mask = True

    def __init__(self) -> None:
        super().__init__()
        self.masks: list[Tensor] = []

    def forward(  # type: ignore[override]
        self, src_tokens: Tensor, src_lengths: Tensor, prev_output_tokens: Tensor, *, output_mask: Tensor | None = None
    ) -> FakeDecoderOut:
        out = super().forward(src_tokens, src_lengths, prev_output_tokens)
        if output_mask is None:
            return out
        self.masks.append(output_mask)
        return FakeDecoderOut(logits=select_positions(out.logits, output_mask))  # (N, V)


MODELS = [FakeModel, MaskingFakeModel]


def make_sample() -> dict:
    target = torch.tensor([[5, 6, 7, 8, EOS], [9, 4, EOS, PAD, PAD], [3, 10, 0, 7, EOS]])  # (B, T), right-padded
    prev = torch.tensor([[EOS, 5, 6, 7, 8], [EOS, 9, 4, PAD, PAD], [EOS, 3, 10, 0, 7]])
    src = torch.tensor([[PAD, 4, 5, EOS], [6, 7, 8, EOS], [PAD, PAD, 9, EOS]])  # left-padded
    ntokens = int(target.ne(PAD).sum())
    return {
        "id": torch.arange(3),
        "nsentences": 3,
        "ntokens": ntokens,
        "net_input": {"src_tokens": src, "src_lengths": src.ne(PAD).sum(1), "prev_output_tokens": prev},
        "target": target,
    }


def reference_losses(model: FakeModel, sample: dict, eps: float, skip: int = 0) -> tuple[float, float]:
    """(smoothed, nll) summed over non-pad targets, as -sum_v q(v) log p(v) with q = (1-eps) gold + eps/(V-1) else."""
    with torch.no_grad():
        lp = model.get_normalized_probs(model(**sample["net_input"]).logits).double()
    loss = nll = 0.0
    for b, row in enumerate(sample["target"].tolist()):
        for t, y in enumerate(row):
            if y == PAD or t < skip:
                continue
            q = torch.full((V,), eps / (V - 1), dtype=torch.float64)
            q[y] = 1 - eps
            loss += float(-(q * lp[b, t]).sum())
            nll += float(-lp[b, t, y])
    return loss, nll


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("model_cls", MODELS)
def test_label_smoothed_loss_is_fairseqs_formula(eps: float, model_cls: type[FakeModel]) -> None:
    model, sample = model_cls(), make_sample()
    crit = build_criterion(
        "label_smoothed_cross_entropy", LabelSmoothedCrossEntropyConfig(label_smoothing=eps), padding_idx=PAD
    )
    loss, sample_size, log = crit(model, sample)
    ref_loss, ref_nll = reference_losses(model, sample, eps)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-6)
    assert log["nll_loss"].item() == pytest.approx(ref_nll, rel=1e-6)
    assert sample_size == sample["ntokens"] == 13
    assert (log["ntokens"], log["nsentences"], log["sample_size"]) == (13, 3, 13)
    assert not log["loss"].requires_grad


@pytest.mark.parametrize("model_cls", MODELS)
def test_pad_is_ignored_and_loss_is_summed(model_cls: type[FakeModel]) -> None:
    model, sample = model_cls(), make_sample()
    crit = LabelSmoothedCrossEntropyCriterion(LabelSmoothedCrossEntropyConfig(label_smoothing=0.1), padding_idx=PAD)
    loss, _, _ = crit(model, sample)
    # changing what the model predicts at padded positions changes nothing
    sample2 = make_sample()
    sample2["net_input"]["prev_output_tokens"][1, 3:] = 7
    assert crit(model, sample2)[0].item() == pytest.approx(loss.item(), rel=1e-6)
    # summing: two copies of the batch give twice the loss
    double = make_sample()
    for key in ("src_tokens", "src_lengths", "prev_output_tokens"):
        double["net_input"][key] = torch.cat([double["net_input"][key]] * 2)
    double["target"] = torch.cat([double["target"]] * 2)
    double["ntokens"] *= 2
    assert crit(model, double)[0].item() == pytest.approx(2 * loss.item(), rel=1e-6)


@pytest.mark.parametrize("model_cls", MODELS)
def test_zero_smoothing_equals_cross_entropy_and_gradients_flow(model_cls: type[FakeModel]) -> None:
    model, sample = model_cls(), make_sample()
    ls = build_criterion("label_smoothed_cross_entropy", None, padding_idx=PAD)
    ce = build_criterion("cross_entropy", None, padding_idx=PAD)
    assert isinstance(ce, CrossEntropyCriterion)
    l1, _, log1 = ls(model, sample)
    l2, _, log2 = ce(model, sample)
    assert (
        l1.item()
        == pytest.approx(l2.item(), rel=1e-6)
        == pytest.approx(reference_losses(model, sample, 0.0)[1], rel=1e-6)
    )
    l2.backward()
    assert model.table.grad is not None and model.table.grad.abs().sum() > 0
    assert set(log2) == {"loss", "ntokens", "nsentences", "sample_size"}


def test_function_matches_on_flat_inputs_and_eps_i_uses_v_minus_1() -> None:
    lprobs = torch.log_softmax(torch.randn(4, V, generator=torch.Generator().manual_seed(3)), -1)
    target = torch.tensor([3, PAD, 5, 0])
    loss, nll = label_smoothed_nll_loss(lprobs, target, 0.2, ignore_index=PAD)
    keep = target.ne(PAD)
    nll_ref = -lprobs[keep].gather(1, target[keep].unsqueeze(1)).sum()
    smooth_ref = -lprobs[keep].sum()
    eps_i = 0.2 / (V - 1)
    torch.testing.assert_close(nll, nll_ref)
    torch.testing.assert_close(loss, (1 - 0.2 - eps_i) * nll_ref + eps_i * smooth_ref)


@pytest.mark.parametrize("model_cls", MODELS)
def test_ignore_prefix_size_drops_leading_target_positions(model_cls: type[FakeModel]) -> None:
    model, sample = model_cls(), make_sample()
    cfg = LabelSmoothedCrossEntropyConfig(label_smoothing=0.1, ignore_prefix_size=2)
    loss, sample_size, log = build_criterion("label_smoothed_cross_entropy", cfg, padding_idx=PAD)(model, sample)
    ref_loss, ref_nll = reference_losses(model, sample, 0.1, skip=2)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-6) and log["nll_loss"].item() == pytest.approx(
        ref_nll, rel=1e-6
    )
    assert sample_size == 13  # fairseq keeps ntokens as the collater counted it


@pytest.mark.parametrize("model_cls", MODELS)
def test_report_accuracy_counts_argmax_hits_on_non_pad_tokens(model_cls: type[FakeModel]) -> None:
    model, sample = model_cls(), make_sample()
    with torch.no_grad():  # make two predictions right: after EOS comes 5 (right in row 0 only), after 5 comes 6
        model.table[EOS, 5] = 100.0
        model.table[5, 6] = 100.0
    cfg = LabelSmoothedCrossEntropyConfig(report_accuracy=True)
    _, _, log = build_criterion("label_smoothed_cross_entropy", cfg, padding_idx=PAD)(model, sample)
    lp = model.get_normalized_probs(model(**sample["net_input"]).logits)
    mask = sample["target"].ne(PAD)
    expected = int((lp.argmax(-1).eq(sample["target"]) & mask).sum())
    assert (int(log["n_correct"]), int(log["total"])) == (expected, 13) and expected >= 2
    metrics = reduce_metrics([log, log])
    assert metrics["accuracy"] == round(100.0 * expected / 13, 3)


def test_sentence_avg_uses_sentences_as_sample_size() -> None:
    model, sample = FakeModel(), make_sample()
    _, size, log = build_criterion("label_smoothed_cross_entropy", None, padding_idx=PAD, sentence_avg=True)(
        model, sample
    )
    assert size == 3 and log["sample_size"] == 3


def test_reduce_metrics_is_fairseqs_base_2_arithmetic() -> None:
    logs = [
        {"loss": torch.tensor(20.0), "nll_loss": torch.tensor(15.0), "ntokens": 10, "nsentences": 2, "sample_size": 10},
        {"loss": 7.0, "nll_loss": 5.0, "ntokens": 4, "nsentences": 1, "sample_size": 4},
    ]
    m = reduce_metrics(logs)
    assert m["loss"] == pytest.approx(27.0 / 14 / math.log(2))
    assert m["nll_loss"] == pytest.approx(20.0 / 14 / math.log(2))
    assert m["ppl"] == round(2 ** (20.0 / 14 / math.log(2)), 2)
    assert (m["ntokens"], m["nsentences"], m["sample_size"]) == (14, 3, 14)
    assert "accuracy" not in m
    # sentence-level: loss per sentence, nll per token
    logs_s = [dict(log, sample_size=log["nsentences"]) for log in logs]
    assert reduce_metrics(logs_s)["loss"] == pytest.approx(27.0 / 3 / math.log(2))
    assert DISPLAY_ROUND["loss"] == 3 and DISPLAY_ROUND["ppl"] == 2


def test_cross_entropy_reports_nll_loss_only_with_sentence_avg() -> None:
    tok = [{"loss": 14.0, "ntokens": 10, "nsentences": 2, "sample_size": 10}]
    m = CrossEntropyCriterion.reduce_metrics(tok)
    assert "nll_loss" not in m and m["ppl"] == round(2 ** (1.4 / math.log(2)), 2)
    sent = [{"loss": 14.0, "ntokens": 10, "nsentences": 2, "sample_size": 2}]
    m = CrossEntropyCriterion.reduce_metrics(sent)
    assert m["loss"] == pytest.approx(7.0 / math.log(2)) and m["nll_loss"] == pytest.approx(1.4 / math.log(2))


def test_perplexity_overflow_is_inf_and_flags_are_fairseqs() -> None:
    assert reduce_metrics([{"loss": 1e6, "nll_loss": 1e6, "ntokens": 1, "sample_size": 1}])["ppl"] == math.inf
    cfg = registry.CRITERIONS.config_cls("label_smoothed_cross_entropy")()
    assert (cfg.label_smoothing, cfg.report_accuracy, cfg.ignore_prefix_size) == (0.0, False, 0)
    with pytest.raises(ValueError, match="--label-smoothing"):
        LabelSmoothedCrossEntropyCriterion(LabelSmoothedCrossEntropyConfig(label_smoothing=1.5), padding_idx=PAD)


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_smoothed_cross_entropy_from_logits_equals_log_softmax_route(eps: float, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(5)
    logits = (torch.randn(6, V, generator=g) * 3).to(dtype).requires_grad_()
    target = torch.tensor([3, 0, 5, 10, 2, 3])
    w_loss, w_nll = torch.randn(2, generator=g).tolist()  # weigh both outputs so both backward paths count
    loss, nll = smoothed_cross_entropy(logits, target, eps)
    (w_loss * loss + w_nll * nll).backward()
    ref = logits.detach().double().requires_grad_()
    ref_loss, ref_nll = label_smoothed_nll_loss(F.log_softmax(ref, -1), target, eps)
    (w_loss * ref_loss + w_nll * ref_nll).backward()
    assert loss.dtype == nll.dtype == torch.float32 and logits.grad is not None and logits.grad.dtype == dtype
    torch.testing.assert_close(loss.double(), ref_loss, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(nll.double(), ref_nll, rtol=1e-6, atol=1e-5)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(logits.grad.double(), ref.grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ["label_smoothed_cross_entropy", "cross_entropy"])
def test_masking_models_are_projected_on_scored_positions_only(name: str) -> None:
    model, sample = MaskingFakeModel(), make_sample()
    plain = FakeModel()
    plain.load_state_dict(model.state_dict(), strict=False)
    cfg = LabelSmoothedCrossEntropyConfig(label_smoothing=0.1, ignore_prefix_size=1) if "smoothed" in name else None
    crit = build_criterion(name, cfg, padding_idx=PAD)
    loss, _, _ = crit(model, sample)
    (positions,) = model.masks  # the flat indices of the scored positions (output_positions)
    expected = sample["target"].ne(PAD)
    if cfg is not None:
        expected[:, :1] = False
    assert torch.equal(positions, expected.reshape(-1).nonzero().squeeze(1))  # padding (and the ignored prefix)
    # never reach the projection
    loss.backward()
    ref, _, _ = crit(plain, sample)
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(model.table.grad, plain.table.grad)


def test_smoothed_cross_entropy_refuses_a_second_backward_instead_of_a_wrong_gradient() -> None:
    logits = torch.randn(4, V, requires_grad=True)
    loss, _ = smoothed_cross_entropy(logits, torch.tensor([1, 2, 3, 4]), 0.1)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
