"""How much memory a batch's beam search needs, and how much there is: a beam too wide for the machine is
refused with the estimate, before it is allocated (an out-of-memory kill or a 15 GB allocation traceback
otherwise).

The estimate counts what grows with the beam: per hypothesis row (sentences x beam), the step's log-probs
over the vocabulary (float32, about four live copies: logits, log-softmax, scores, the search's top-k input),
the decoder's preallocated key/value caches for every step (and the cross-attention's, per source token),
and the token and score buffers. Weights and activations of one step are left out: it is a lower bound.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from seqloom.generation.decoding_model import AnyDecodingModel

GB = 1e9
CHECK_FROM_BYTES = 256 * 2**20  # smaller estimates are not checked (no reading of /proc for every batch)
VOCAB_COPIES = 4


@dataclass(frozen=True)
class DecodingSize:
    """What sets a beam search's memory: ``rows`` = sentences x beam."""

    sentences: int
    beam: int
    vocab: int
    max_len: int
    src_len: int
    cache_bytes_per_step: int  # the decoders' key/value cache of one row and one step (all models, layers)
    shared_source: bool  # cross-attention caches hold one row per sentence, not per hypothesis

    def bytes(self) -> int:
        rows = self.sentences * self.beam
        steps = self.max_len + 2
        per_row = VOCAB_COPIES * 4 * self.vocab + 2 * self.cache_bytes_per_step * steps + 12 * steps
        cross_rows = self.sentences if self.shared_source else rows
        return rows * per_row + cross_rows * self.cache_bytes_per_step * self.src_len


def cache_bytes_per_step(models: Sequence[AnyDecodingModel], max_steps: int) -> int:
    """Bytes the models' KV caches take per hypothesis row and decoding step (measured on a one-row cache)."""
    total = 0
    for model in models:
        seen: set[int] = set()
        for t in _tensors(model.new_cache(1, max_steps), depth=4):
            ptr = t.untyped_storage().data_ptr()
            if ptr not in seen:
                seen.add(ptr)
                total += t.untyped_storage().nbytes()
    return total // max(max_steps, 1)


def _tensors(obj: object, depth: int) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth > 0 and isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item, depth - 1)
    elif depth > 0 and hasattr(obj, "__dict__"):
        for item in vars(obj).values():
            yield from _tensors(item, depth - 1)


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device``: the GPU's free memory (with the blocks torch caches unused), or on the CPU the smaller of ``MemAvailable`` and
    what the cgroup (a container's limit) still allows; None where it cannot be told."""
    if device.type == "cuda":  # the driver's free memory plus what torch's allocator holds unused
        free, _ = torch.cuda.mem_get_info(device)
        return int(free) + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type != "cpu":
        return None
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
            used = int(f.read().strip())
        if limit != "max":
            found.append(max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def check_fits(size: DecodingSize, device: torch.device, *, requested_beam: int) -> None:
    """Raises ValueError with the estimate if ``size`` would not fit in ``device``'s free memory."""
    need = size.bytes()
    if need < CHECK_FROM_BYTES:
        return
    free = available_bytes(device)
    if free is None or need <= free:
        return
    raise ValueError(
        f"--beam {requested_beam}: decoding {size.sentences} sentence(s) at once would need about "
        f"{need / GB:.1f} GB ({size.sentences * size.beam:,} hypotheses, each with log-probs over "
        f"{size.vocab:,} words and key/value caches for up to {size.max_len + 1} steps), more than the "
        f"{free / GB:.1f} GB free on {device}; use a smaller --beam, or fewer sentences a batch (--batch-size, "
        "--max-tokens)"
    )
