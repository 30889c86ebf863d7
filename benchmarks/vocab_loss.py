"""The last product and the loss of a training step, forward and backward, three ways, in one process:

* ``fairseq``: what fairseq's ``label_smoothed_cross_entropy`` computes, ``log_softmax(x @ W.T)`` then the
  gathered and summed label-smoothed NLL (plain torch ops, so fairseq itself is not needed);
* ``unfused``: seqloom's route for given logits, the padded product and ``smoothed_cross_entropy``;
* ``fused``: ``vocab_cross_entropy``, the product inside the loss (what training on the CPU runs).

The three alternate ``--repeats`` times; the best and median milliseconds of each and the ratios are
printed, with the largest difference of the gradients against the ``fairseq`` route. As the commands do,
the process first keeps freed memory in the heap (``seqloom.heap``; ``--no-heap`` leaves glibc's defaults).

    python benchmarks/vocab_loss.py [--tokens 1950] [--dim 64] [--vocab 4089] [--threads 1] [--repeats 11]
    python benchmarks/vocab_loss.py --tokens 1000 --vocab 50265   # BART's vocabulary
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from seqloom.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss  # noqa: E402
from seqloom.criterions.vocab_loss import smoothed_cross_entropy, vocab_cross_entropy  # noqa: E402
from seqloom.heap import keep_freed_memory  # noqa: E402
from seqloom.modules.vocab_projection import vocab_logits  # noqa: E402

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]


def fairseq_route(x: torch.Tensor, w: torch.Tensor, target: torch.Tensor, eps: float) -> tuple[torch.Tensor, ...]:
    return label_smoothed_nll_loss(F.log_softmax(F.linear(x, w).float(), dim=-1), target, eps)


def unfused_route(x: torch.Tensor, w: torch.Tensor, target: torch.Tensor, eps: float) -> tuple[torch.Tensor, ...]:
    return smoothed_cross_entropy(vocab_logits(x, w), target, eps)


def step(loss_fn: Loss, x0: torch.Tensor, w0: torch.Tensor, target: torch.Tensor, eps: float
         ) -> tuple[float, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Seconds of one forward and backward pass; the gradients of ``x`` and ``w``."""
    x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
    start = time.perf_counter()
    loss, _ = loss_fn(x, w, target, eps)
    loss.backward()
    seconds = time.perf_counter() - start
    assert x.grad is not None and w.grad is not None
    return seconds, x.grad, w.grad


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=1950, help="target tokens of the batch (rows)")
    p.add_argument("--dim", type=int, default=64, help="decoder output features")
    p.add_argument("--vocab", type=int, default=4089, help="vocabulary size (BART's fixture: 4089; bart.base: 50265)")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=11)
    p.add_argument("--no-heap", action="store_true", help="leave glibc's malloc thresholds as they are")
    args = p.parse_args()
    if not args.no_heap:
        keep_freed_memory()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(args.tokens, args.dim, generator=g)
    w0 = torch.randn(args.vocab, args.dim, generator=g) * 0.1
    target = torch.randint(0, args.vocab, (args.tokens,), generator=g)
    routes: dict[str, Loss] = {"fairseq": fairseq_route, "unfused": unfused_route, "fused": vocab_cross_entropy}
    for fn in routes.values():  # warm-up: first-touch of buffers, kernel selection
        step(fn, x0, w0, target, args.label_smoothing)
    times: dict[str, list[float]] = {name: [] for name in routes}
    grads: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for _ in range(args.repeats):
        for name, fn in routes.items():
            seconds, gx, gw = step(fn, x0, w0, target, args.label_smoothing)
            times[name].append(seconds)
            grads[name] = (gx, gw)
    print(f"product + label-smoothed loss, forward and backward: {args.tokens} tokens, {args.dim} features, "
          f"{args.vocab} symbols, {args.threads} thread(s), {args.repeats} alternating runs"
          f"{'' if args.no_heap else ', heap reuse on'}")  # fmt: skip
    for name in routes:
        diff = max(float((a - b).abs().max()) for a, b in zip(grads[name], grads["fairseq"]))
        print(f"  {name:8s} best {min(times[name]) * 1e3:8.1f} ms   median {statistics.median(times[name]) * 1e3:8.1f} ms"
              f"   max |grad - fairseq's| {diff:.2e}")  # fmt: skip
    for name in ("unfused", "fused"):
        ratio = statistics.median(times["fairseq"]) / statistics.median(times[name])
        print(f"  fairseq / {name}: {ratio:.2f}x (medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
