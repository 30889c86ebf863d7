"""int8 inference on the CPU: a built model's linear layers swapped, in place, for int8 ones.

:func:`quantize_model` replaces every ``nn.Linear`` of a model (the vocabulary projection included) by an
:class:`Int8Linear`: its weight rounded to int8 with one float32 scale per output row (symmetric, the row's
largest magnitude maps to 127). At run time each input row is quantized the same way, the two int8 matrices
are multiplied by PyTorch's int8 product ``torch._int_mm`` (int32 sums; on x86 it runs oneDNN's VNNI/AMX
kernels), and the sums are scaled back to float32. That is CTranslate2's int8 scheme (per-row activations,
per-channel weights).

Why ``torch._int_mm`` rather than a library: ``torch.ao.quantization.quantize_dynamic`` is deprecated in
torch 2.13 (its quantized tensors are to be removed), and torchao's int8 configs wrap weights in tensor
subclasses that safetensors cannot store as plain int8 tensors and that call the same CPU product. On a
2-core AVX-512 machine, a ``(160, 1024) x (1024, 4096)`` product took ~3 ms against ~21 ms in float32.

Only modules are swapped: the model code is unchanged and calls the layers as modules (the decoding fast
paths that read ``nn.Linear`` weights directly take plain ``nn.Linear`` only). A vocabulary projection tied
to the embedding table gets its own int8 copy; the embedding stays float32.

Quantized state dicts keep the float model's keys: ``X.weight`` holds int8 values and ``X.weight_scale`` the
row scales. :func:`float_placeholders` gives the float model's keys and shapes without float weights, so the
model is built by the usual loaders before :func:`load_quantized` converts it and loads the int8 tensors.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

INT8_MAX = 127
SCALE_SUFFIX = ".weight_scale"
METHODS = ("int8",)


def int8_unavailable(device: torch.device) -> str | None:
    """Why int8 products cannot run on ``device`` (None: they can)."""
    if device.type != "cpu":
        return (
            f"int8 inference runs on the CPU and the model is on {device}; add --cpu (hub: call .cpu() "
            "before quantizing), or drop the int8 option and use --fp16/--bf16 on the GPU"
        )
    if not hasattr(torch, "_int_mm"):
        return f"this PyTorch ({torch.__version__}) has no int8 matrix product (torch._int_mm); use torch >= 2.2"
    try:
        torch._int_mm(torch.ones(1, 8, dtype=torch.int8), torch.ones(8, 8, dtype=torch.int8))
    except RuntimeError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return f"this PyTorch build ({torch.__version__}) cannot multiply int8 matrices on the CPU ({first})"
    return None


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"quantize={method!r}: the known method is 'int8' (int8 weights, per-row scales, CPU)")


def quantize_rows(weight: Tensor) -> tuple[Tensor, Tensor]:
    """``weight`` ``(R, C)`` as int8 ``(R, C)`` and float32 scales ``(R,)``: ``weight ~= q * scale[:, None]``."""
    scale = weight.detach().float().abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / INT8_MAX
    q = torch.round(weight.detach().float() / scale[:, None]).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale


class Int8Linear(nn.Module):
    """``y = x W^T + b`` with ``W`` stored as int8 rows and their scales; inputs quantized per row when called.

    Buffers (no gradients): ``weight`` int8 ``(out, in)``, ``weight_scale`` float32 ``(out,)``, ``bias``
    float32 ``(out,)`` or absent. Output in the input's dtype.
    """

    weight: Tensor
    weight_scale: Tensor
    bias: Tensor | None

    def __init__(self, in_features: int, out_features: int, *, bias: bool) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        """The int8 copy of ``linear`` (which is left as it is; a weight tied elsewhere stays float)."""
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        q, scale = quantize_rows(linear.weight)
        layer.weight, layer.weight_scale = q.to(linear.weight.device), scale.to(linear.weight.device)
        if linear.bias is not None:
            layer.bias = linear.bias.detach().float().clone()
        # in the replaced layer's mode: a model in eval mode stays so (else decoding leaves the fast step)
        return layer.train(linear.training)

    def forward(self, x: Tensor) -> Tensor:
        rows = x.reshape(-1, self.in_features).float()  # (N, in)
        if rows.size(0) == 0:
            return x.new_zeros(*x.shape[:-1], self.out_features)
        x_scale = rows.abs().amax(dim=1, keepdim=True).clamp_(min=torch.finfo(torch.float32).tiny) / INT8_MAX  # (N, 1)
        q = torch.round(rows / x_scale).to(torch.int8)  # |rows / x_scale| <= 127 up to rounding
        out = torch._int_mm(q, self.weight.t()).float()  # (N, out) int32 sums -> float
        out.mul_(x_scale).mul_(self.weight_scale)
        if self.bias is not None:
            out.add_(self.bias)
        return out.view(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantize_model(model: nn.Module, method: str = "int8") -> nn.Module:
    """Replaces every ``nn.Linear`` of ``model`` (subclasses included) by an :class:`Int8Linear`, in place;
    returns ``model``. Refuses (``ValueError``) where the int8 product cannot run on the model's device."""
    check_method(method)
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    reason = int8_unavailable(device)
    if reason is not None:
        raise ValueError(f"quantize={method!r}: {reason}")
    # (parent, name) pairs, not the layers themselves: each float weight is freed as soon as its layer is replaced
    targets = [(parent, name) for parent in model.modules() for name, child in parent.named_children()
               if isinstance(child, nn.Linear)]  # fmt: skip
    for parent, name in targets:
        setattr(parent, name, Int8Linear.from_linear(getattr(parent, name)))
    return model


def is_quantized_state(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether a state dict holds int8 linear layers (``X.weight_scale`` keys)."""
    return any(key.endswith(SCALE_SUFFIX) for key in state_dict)


def float_placeholders(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The float model's state dict in shape only: each int8 ``X.weight`` (with its ``X.weight_scale``) replaced by
    float32 zeros broadcast to its shape (a view of one number: no memory), the other tensors kept. Enough to build
    the float model with the usual strict loaders before :func:`load_quantized` puts the int8 tensors in."""
    out = {k: v for k, v in state_dict.items() if not k.endswith(SCALE_SUFFIX)}
    for key in state_dict:
        if key.endswith(SCALE_SUFFIX):
            weight_key = key[: -len(SCALE_SUFFIX)] + ".weight"
            out[weight_key] = torch.zeros((), dtype=torch.float32).expand(state_dict[weight_key].shape)
    return out


def load_quantized(model: nn.Module, state_dict: Mapping[str, Tensor]) -> nn.Module:
    """Quantizes ``model`` (built from :func:`float_placeholders`) and loads the int8 tensors (and every other
    tensor, so that an embedding the placeholders overwrote through a tied projection is restored) exactly."""
    quantize_model(model)
    model.load_state_dict(dict(state_dict), strict=True)
    return model
