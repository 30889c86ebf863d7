"""Float32 products of a decoding step: the plain MKL product against MKL's product on weights packed once.

seqloom (like fairseq) multiplies with ``F.linear``, which calls MKL's ``sgemm``: every call first copies the
weight into MKL's working layout, then multiplies. CTranslate2 on Intel CPUs packs each weight once at load
(its log says ``SGEMM backend: MKL (packed: true)``) and multiplies the packed copy at every step. PyTorch
reaches the same packed API through ``torch.ops.mkl._mkl_reorder_linear_weight`` / ``torch.ops.mkl._mkl_linear``.

This benchmark times both on one decoder's worth of transformer-big weights (6 layers of q, k, v, out,
cross-attention q and out, 1024 x 1024 each, and the 1024 x 4096 feed-forward pair: 336 MB of float32),
multiplied in turn as decoding does, so that every weight comes from memory, not from the caches. For each
row count (beam rows in a step) it prints milliseconds per pass over the 48 products, the ratio, whether the
results equal the plain product's bit for bit, their largest difference, and the packed weights' size
against the plain ones.

    python benchmarks/linear_kernels.py               # one thread; run it on an idle machine
    python benchmarks/linear_kernels.py --threads 2 --rows 5,20,160
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LAYER_SHAPES = [(1024, 1024)] * 6 + [(4096, 1024), (1024, 4096)]  # (out, in) of one decoder layer's products


def packed_api_available() -> bool:
    return hasattr(torch.ops.mkl, "_mkl_linear") and torch.backends.mkl.is_available()


def products(weights: list[tuple[Tensor, Tensor]], packed: list[Tensor] | None, inputs: dict[int, Tensor]
             ) -> Callable[[], list[Tensor]]:  # fmt: skip
    """One pass over ``weights`` with ``inputs`` (by input size): plain ``F.linear``, or MKL's product on ``packed``."""
    if packed is None:
        return lambda: [F.linear(inputs[w.size(1)], w, b) for w, b in weights]
    return lambda: [
        torch.ops.mkl._mkl_linear(inputs[w.size(1)], pw, w, b, inputs[w.size(1)].size(0))
        for (w, b), pw in zip(weights, packed)
    ]


def seconds_per_pass(fn: Callable[[], list[Tensor]], repeat: int) -> float:
    fn()  # warm-up: first-touch of outputs, MKL's own set-up
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default="5,10,25,40,80,160", help="comma separated row counts (beam rows per step)")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--pack-rows", type=int, default=64, help="the row count MKL is told when packing")
    args = p.parse_args()
    if not packed_api_available():
        print("this PyTorch has no MKL packed product (torch.ops.mkl._mkl_linear); nothing to compare", file=sys.stderr)
        return 0
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    weights = [
        (torch.randn(out, inp, generator=gen) * inp**-0.5, torch.randn(out, generator=gen) * 0.1)
        for _ in range(args.layers)
        for out, inp in LAYER_SHAPES
    ]
    packed = [torch.ops.mkl._mkl_reorder_linear_weight(w, args.pack_rows) for w, _ in weights]
    size_ratio = sum(p.numel() for p in packed) / sum(w.numel() for w, _ in weights)
    mb = sum(w.numel() for w, _ in weights) * 4 / 1e6
    print(f"{len(weights)} products over {mb:.0f} MB of float32 weights, {args.threads} thread(s); "
          f"packed weights take {size_ratio:.2f}x the plain ones' memory")  # fmt: skip
    print(f"{'rows':>5} {'plain ms':>9} {'packed ms':>10} {'plain/packed':>13} {'equal':>6} {'max diff':>9}")
    for rows in (int(r) for r in args.rows.split(",")):
        inputs = {n: torch.randn(rows, n, generator=gen) for n in {inp for _, inp in LAYER_SHAPES}}

        plain = products(weights, None, inputs)
        packed_product = products(weights, packed, inputs)
        a, b = plain(), packed_product()
        equal = all(torch.equal(x, y) for x, y in zip(a, b))
        diff = max(float((x - y).abs().max()) for x, y in zip(a, b))
        t_plain = seconds_per_pass(plain, args.repeat)
        t_packed = seconds_per_pass(packed_product, args.repeat)
        print(f"{rows:>5} {t_plain * 1e3:>9.1f} {t_packed * 1e3:>10.1f} {t_plain / t_packed:>12.2f}x "
              f"{'yes' if equal else 'no':>6} {diff:>9.1e}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
