"""Float32 decoding on the CPU with weights packed once for MKL (opt-in: ``--packed-weights``).

``F.linear`` on the CPU calls MKL's ``sgemm``, which copies the weight into its working layout at every call
before multiplying; in a decoding step, where each weight is read from memory once per step for a few hundred
rows at most, that copy is a sixth of the step on one thread. MKL can instead pack a weight once and multiply
the packed copy at every call (``cblas_sgemm_pack``/``cblas_sgemm_compute``, which CTranslate2 uses on Intel
CPUs); PyTorch exposes them as ``torch.ops.mkl._mkl_reorder_linear_weight`` and ``torch.ops.mkl._mkl_linear``.

The trade-offs, and why this is not the default:

* the packed product sums in another order: its results differ from ``F.linear``'s (and so from fairseq's) by
  a few units in the 6th–7th significant digit, so scores move in their last printed digits and a near-tied
  hypothesis may change (none did in this project's runs);
* MKL sizes a packed copy at 1.7–3.3x the weight (not all of it is written: decoding peaks measured 300 MiB
  higher for transformer big and 640 MiB for bart.large), kept beside the float weights the model still holds.

:func:`pack_linears` switches a module's plain ``nn.Linear`` layers (and its vocabulary projection) to the
packed product in place, by class: parameters, state-dict keys and training are unchanged, and outside
inference on float32 CPU tensors (gradients on, another dtype or device) the layers run ``F.linear`` as before.
``benchmarks/linear_kernels.py`` times the two products on transformer-big weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.weak import WeakIdKeyDictionary

from seqloom.modules.vocab_projection import PaddedLogits, VocabProjection

# the row count MKL is told when packing: it picks the packed layout by it, and with hints from about 150 rows up the
# packed product stayed ahead at every row count measured (5 to 320; with 64 it fell behind at 160 rows)
PACK_ROWS = 512
_PACKED = WeakIdKeyDictionary()  # weight -> (its version, the packed copy)


def packed_unavailable(device: torch.device) -> str | None:
    """Why packed float32 products cannot run on ``device`` (None: they can)."""
    if device.type != "cpu":
        return f"packed weights are for float32 on the CPU and the model is on {device}; add --cpu"
    if not torch.backends.mkl.is_available() or not hasattr(torch.ops.mkl, "_mkl_linear"):
        return f"this PyTorch build ({torch.__version__}) has no MKL packed product (torch.ops.mkl._mkl_linear)"
    try:
        w = torch.ones(4, 8)
        torch.ops.mkl._mkl_linear(torch.ones(2, 8), torch.ops.mkl._mkl_reorder_linear_weight(w, 2), w, None, 2)
    except RuntimeError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return f"this PyTorch build ({torch.__version__}) cannot run MKL's packed product ({first})"
    return None


def packed_weight(weight: Tensor) -> Tensor:
    """MKL's packed copy of ``weight`` ``(out, in)``, made once per weight and version (a weight written in place,
    e.g. by ``load_state_dict``, is packed again)."""
    version = 0 if weight.is_inference() else weight._version
    found = _PACKED.get(weight)
    if found is None or found[0] != version:
        with torch.no_grad():
            found = _PACKED[weight] = (version, torch.ops.mkl._mkl_reorder_linear_weight(weight.detach(), PACK_ROWS))
    return found[1]


def packs(x: Tensor, weight: Tensor) -> bool:
    """Whether :func:`packed_product` multiplies ``x`` by ``weight`` packed (else it runs ``F.linear``)."""
    return (
        not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and x.numel() > 0
        and not torch.is_autocast_enabled("cpu")
    )


def packed_product(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear(x, weight, bias)`` for ``x`` ``(..., in)``, on ``weight`` packed where :func:`packs` says so."""
    if not packs(x, weight):
        return F.linear(x, weight, bias)
    rows = x.numel() // x.size(-1)
    return torch.ops.mkl._mkl_linear(x.contiguous(), packed_weight(weight), weight, bias, rows)


class PackedLinear(nn.Linear):
    """An ``nn.Linear`` multiplying by its weight packed for MKL at inference (:func:`packed_product`)."""

    def forward(self, x: Tensor) -> Tensor:
        return packed_product(x, self.weight, self.bias)


class PackedVocabProjection(VocabProjection):
    """A vocabulary projection multiplying by its packed weight at inference, whole rows (no padded route)."""

    def forward(self, x: Tensor) -> Tensor:
        if packs(x, self.weight):
            return packed_product(x, self.weight, None)
        return super().forward(x)

    def decoding(self, x: Tensor, memo: dict[str, Tensor]) -> Tensor | PaddedLogits:
        if packs(x, self.weight):
            return packed_product(x, self.weight, None)
        return super().decoding(x, memo)


def pack_linears(module: nn.Module) -> int:
    """Switches ``module``'s plain ``nn.Linear`` layers and vocabulary projections (hook-free, float32, on the CPU)
    to the packed product in place, packing their weights now; returns how many it switched."""
    switched = 0
    for child in module.modules():
        kind = {nn.Linear: PackedLinear, VocabProjection: PackedVocabProjection}.get(type(child))
        if kind is None or child._forward_hooks or child._forward_pre_hooks:
            continue
        assert isinstance(child, nn.Linear)
        if child.weight.dtype != torch.float32 or child.weight.device.type != "cpu":
            continue
        child.__class__ = kind
        packed_weight(child.weight)  # now, before any worker process forks: they share it
        switched += 1
    return switched
