"""Where the commands run: fairseq's rule (the GPU when CUDA is available, unless ``--cpu``).

On the CPU, freed tensor memory stays in the process heap for the next step (:mod:`seqloom.heap`).
On CUDA, cuDNN's attention kernel is turned off for the process. ``F.scaled_dot_product_attention`` prefers
it for bf16/fp16 on Hopper GPUs, but it builds an execution plan for every new input shape: on an H100 with
torch 2.11 each attention call of a bf16 training run cost about 15 ms of CPU time, because token-budget
batches change shape at every step, and bf16 training ran 2.7x slower than fp32. The flash and
memory-efficient kernels take any shape without a plan.
"""

from __future__ import annotations

import torch

from seqloom.heap import keep_freed_memory


def torch_release(version: str | None = None) -> tuple[int, int]:
    """(major, minor) of ``version`` (default: the running torch's), e.g. ``"2.13.0+cpu"`` -> ``(2, 13)``."""
    major, minor = (version or torch.__version__).split("+")[0].split(".")[:2]
    return int(major), int(minor)


def select_device(*, cpu: bool, index: int | None = None) -> torch.device:
    """``cuda`` (or ``cuda:index``) when CUDA is available and ``cpu`` is False; else ``cpu`` (whose runs
    keep freed memory in the heap: :mod:`seqloom.heap`)."""
    if cpu or not torch.cuda.is_available():
        keep_freed_memory()
        return torch.device("cpu")
    avoid_per_shape_attention_plans()
    return torch.device("cuda", index) if index is not None else torch.device("cuda")


def inference_dtype(*, fp16: bool, bf16: bool) -> torch.dtype | None:
    """The dtype ``--fp16``/``--bf16`` cast models to for inference (fairseq's ``model.half()``); None: keep."""
    return torch.float16 if fp16 else torch.bfloat16 if bf16 else None


def avoid_per_shape_attention_plans() -> None:
    """Lets SDPA choose among the kernels that need no per-shape plan (flash, memory-efficient, math)."""
    torch.backends.cuda.enable_cudnn_sdp(False)
