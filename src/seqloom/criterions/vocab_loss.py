"""The training losses' last steps: the (label-smoothed) cross-entropy of given logits, and the vocabulary
projection fused with it.

The logits of a training batch are an ``(N, V)`` float32 matrix: 32 MB for 2,000 target tokens of a
4,089-symbol vocabulary, 400 MB with BART's 50,265. glibc serves blocks over 32 MB with fresh pages from
the kernel at every allocation (:mod:`seqloom.heap` cannot raise that ceiling), and the first write to a
fresh page is a page fault: on the 2-vCPU machine a subtraction into a fresh 32 MB block took 10.7 ms,
into a reused one 5.0 ms. The unfused route fills two such blocks per step (the product, then
``exp(logits - max)``).

:func:`vocab_cross_entropy` multiplies straight into a workspace kept from the previous step, turns it
into ``exp(logits - max)`` in place, and turns that into the logits' gradient in place in the backward
pass (the formulas of :class:`_SmoothedCrossEntropy`, which takes given logits) before both products of
the backward pass read it. The workspace returns to the pool once the backward pass is done, so two
losses alive at once each get their own. Where a vocabulary is narrow enough, the product and the
exponentials run in blocks of rows of about 4 MB, each block turned into exponentials (and, backward, into
gradients and its rows of the input's gradient) while it is still in the cache. Product and loss, forward
and backward, one thread, 64 features: with 50,265 symbols and 1,000 tokens, 440 ms instead of 740 ms
(best of 9); with 4,089 symbols and 1,950 tokens the block stays under 32 MB and the heap already reuses
it (both routes 79 ms), and the blocks take it to 74 ms (84.6 ms as one block, best of 11). Re-run the
comparison with ``benchmarks/vocab_loss.py``.

The fused route runs where that helps: the CPU, in float32 without autocast. Elsewhere (GPUs have their
own caching allocator) it is the plain product followed by :func:`smoothed_cross_entropy`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from seqloom.modules.vocab_projection import padded_rows, vocab_logits


class _SmoothedCrossEntropy(torch.autograd.Function):
    """:func:`label_smoothed_nll_loss` of ``log_softmax(logits)``, differentiated by hand.

    Forward keeps one ``(N, V)`` buffer, ``e = exp(logits - max)``, with its row sums ``s``: the loss needs
    only ``log s``, and backward turns ``e`` into the gradient in place,
    ``d loss / d logits = (a + eps_i V) e / s - a onehot(target) - eps_i`` with ``a = 1 - eps - eps_i``
    (``softmax - onehot`` for the nll). One exponential per logit and no ``(N, V)`` temporaries, which
    matters with a 50k vocabulary (BART), where each such pass costs as much as the rest of the step.
    The gradient can be taken once (a second ``backward`` through it raises, as the buffer was reused).
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, target: Tensor, epsilon: float) -> tuple[Tensor, Tensor]:
        x = logits.float()  # (N, V), possibly a column slice of a wider buffer
        top = x.amax(-1, keepdim=True)  # (N, 1)
        e = torch.sub(x, top).exp_()  # (N, V)
        sums = e.sum(-1, keepdim=True)  # (N, 1)
        lse = sums.log().add_(top).squeeze(-1)  # (N,) log sum_v exp(logits)
        nll = (lse - x.gather(-1, target.unsqueeze(-1)).squeeze(-1)).sum()
        v = x.size(-1)
        eps_i = epsilon / (v - 1)
        loss = (1.0 - epsilon - eps_i) * nll
        if epsilon > 0:
            loss = loss + eps_i * (v * lse.sum() - x.sum())  # smooth = -sum_v log p(v)
        ctx.save_for_backward(e, sums, target)
        ctx.epsilon, ctx.in_dtype = epsilon, logits.dtype
        return loss, nll

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, grad_nll: Tensor) -> tuple[Tensor, None, None]:
        grad, sums, target = ctx.saved_tensors
        v = grad.size(-1)
        eps_i = ctx.epsilon / (v - 1)
        a = 1.0 - ctx.epsilon - eps_i
        scale = grad_loss * (a + eps_i * v) + grad_nll  # 0-d; exactly 1 for a plain cross-entropy's loss.backward()
        grad.mul_(scale / sums)  # softmax, scaled, in the saved buffer
        if eps_i > 0:
            grad.sub_(grad_loss * eps_i)
        gold = -(grad_loss * a + grad_nll)  # 0-d
        grad.scatter_add_(-1, target.unsqueeze(-1), gold.to(grad.dtype).expand(target.numel(), 1))
        return grad.to(ctx.in_dtype), None, None


def smoothed_cross_entropy(logits: Tensor, target: Tensor, epsilon: float) -> tuple[Tensor, Tensor]:
    """(smoothed loss, nll loss) summed over all rows of ``logits`` ``(N, V)`` against ``target`` ``(N,)``.

    Equal to ``label_smoothed_nll_loss(log_softmax(logits), target, epsilon)`` (natural log, float32), in
    less time and memory; ``epsilon = 0`` gives plain cross-entropy twice.
    """
    loss, nll = _SmoothedCrossEntropy.apply(logits, target, epsilon)
    return loss, nll


_pool: list[Tensor] = []  # flat float32 workspaces not in use (at most one is kept)


def _workspace(numel: int, like: Tensor) -> Tensor:
    if _pool and _pool[-1].numel() >= numel:
        return _pool.pop()
    return like.new_empty(numel)


def _give_back(workspace: Tensor) -> None:
    """Keeps the larger of ``workspace`` and the pooled one."""
    if not _pool or _pool[-1].numel() < workspace.numel():
        _pool[:] = [workspace]


def _loss_terms(lse: Tensor, gold: Tensor, logit_sum: Tensor | None, epsilon: float, v: int) -> tuple[Tensor, Tensor]:
    """(smoothed loss, nll) from each row's ``log sum exp`` ``lse`` and gold logit ``gold``, natural log."""
    nll = lse.sum() - gold.sum()
    eps_i = epsilon / (v - 1)
    loss = (1.0 - epsilon - eps_i) * nll
    if logit_sum is not None:
        loss = loss + eps_i * (v * lse.sum() - logit_sum)  # smooth = -sum_v log p(v)
    return loss, nll


# the rows of the product turned into exponentials (and, backward, into gradients) while they are in the
# cache: blocks of about 4 MB; a vocabulary too wide for MIN_CHUNK_ROWS rows in that runs as one block
CHUNK_BYTES = 4 << 20
MIN_CHUNK_ROWS = 64


def chunk_rows(n: int, width: int) -> int:
    rows = CHUNK_BYTES // (4 * width)
    return rows if rows >= MIN_CHUNK_ROWS else n


def _project_and_exp(x: Tensor, w: Tensor, v: int, target: Tensor, epsilon: float, out: Tensor
                     ) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Writes ``exp(x @ w.T - max)`` into ``out`` ``(N, V8)`` block by block (the padded columns hold 0);
    returns (loss, nll, row sums ``(N, 1)``)."""
    n = x.size(0)
    gold, sums, top = x.new_empty(n), x.new_empty(n, 1), x.new_empty(n, 1)
    logit_sum = x.new_zeros(()) if epsilon > 0 else None
    step = chunk_rows(n, w.size(0))
    for s in range(0, n, step):
        e = min(s + step, n)
        logits = torch.mm(x[s:e], w.t(), out=out[s:e])[:, :v]  # (n', V)
        torch.gather(logits, -1, target[s:e].unsqueeze(-1), out=gold[s:e].unsqueeze(-1))
        if logit_sum is not None:
            logit_sum += logits.sum()
        torch.amax(logits, -1, keepdim=True, out=top[s:e])
        torch.sum(logits.sub_(top[s:e]).exp_(), -1, keepdim=True, out=sums[s:e])
    lse = sums.log().add_(top).squeeze(-1)  # (N,) log sum_v exp(logits)
    loss, nll = _loss_terms(lse, gold, logit_sum, epsilon, v)
    return loss, nll, sums


class _VocabCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, target: Tensor, epsilon: float) -> tuple[Tensor, Tensor]:
        v = weight.size(0)
        w = padded_rows(weight) if v % 8 else weight  # (V8, C): MKL writes an odd-width output slowly
        workspace = _workspace(x.size(0) * w.size(0), x)
        out = workspace[: x.size(0) * w.size(0)].view(x.size(0), w.size(0))
        loss, nll, sums = _project_and_exp(x, w, v, target, epsilon, out)
        ctx.save_for_backward(x, weight, target, sums)
        ctx.epsilon, ctx.workspace = epsilon, workspace
        return loss, nll

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, grad_nll: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        if ctx.workspace is None:
            raise RuntimeError("vocab_cross_entropy's gradient can be taken once (its buffer was reused)")
        x, weight, target, sums = ctx.saved_tensors
        n, v = x.size(0), weight.size(0)
        w = padded_rows(weight) if v % 8 else weight
        out = ctx.workspace[: n * w.size(0)].view(n, w.size(0))
        eps_i = ctx.epsilon / (v - 1)
        a = 1.0 - ctx.epsilon - eps_i
        scale = (grad_loss * (a + eps_i * v) + grad_nll) / sums  # (N, 1)
        gold = -(grad_loss * a + grad_nll)  # 0-d
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        step = chunk_rows(n, w.size(0))
        for s in range(0, n, step):
            e = min(s + step, n)
            grad = out[s:e, :v]  # exp(logits - max), turned into d loss / d logits in place
            grad.mul_(scale[s:e])
            if eps_i > 0:
                grad.sub_(grad_loss * eps_i)
            grad.scatter_add_(-1, target[s:e].unsqueeze(-1), gold.to(grad.dtype).expand(e - s, 1))
            if grad_x is not None:  # (n', C); the padded columns are 0
                torch.mm(out[s:e], w, out=grad_x[s:e])
        grad_w = torch.mm(out[:, :v].t(), x) if ctx.needs_input_grad[1] else None  # (V, C), in one product
        _give_back(ctx.workspace)
        ctx.workspace = None
        return grad_x, grad_w, None, None


def fuses(x: Tensor, weight: Tensor) -> bool:
    """Whether :func:`vocab_cross_entropy` takes the workspace route for these operands."""
    return (
        x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and x.dim() == 2
    )


def vocab_cross_entropy(x: Tensor, weight: Tensor, target: Tensor, epsilon: float) -> tuple[Tensor, Tensor]:
    """(smoothed loss, nll loss) of the logits ``x @ weight.T`` against ``target`` ``(N,)``, summed over the
    rows of ``x`` ``(N, C)``; ``weight`` is the ``(V, C)`` vocabulary matrix. Equal to
    ``smoothed_cross_entropy(vocab_logits(x, weight), target, epsilon)`` up to rounding."""
    if not fuses(x, weight):
        return smoothed_cross_entropy(vocab_logits(x, weight), target, epsilon)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        loss, nll = _VocabCrossEntropy.apply(x, weight, target, epsilon)
        return loss, nll
    v = weight.size(0)  # no backward pass will come: the workspace goes back at once
    w = padded_rows(weight) if v % 8 else weight
    workspace = _workspace(x.size(0) * w.size(0), x)
    out = workspace[: x.size(0) * w.size(0)].view(x.size(0), w.size(0))
    loss, nll, _ = _project_and_exp(x, w, v, target, epsilon, out)
    _give_back(workspace)
    return loss, nll
