"""int8 inference on the CPU: a built model's linear layers swapped, in place, for int8 ones.

:func:`quantize_model` replaces every ``nn.Linear`` of a model (the vocabulary projection included) by an
:class:`Int8Linear`: its weight rounded to int8 with one float32 scale per output row (symmetric, the row's
largest magnitude maps to 127). At run time each input row is quantized the same way, the two int8 matrices
are multiplied with int32 sums by oneDNN's int8 product on a weight packed once (``torch.ops.onednn``, where
it runs) or else by ``torch._int_mm``, and the sums are scaled back to float32. That is CTranslate2's int8 scheme (per-row activations,
per-channel weights).

Why PyTorch's own int8 products rather than a library: ``torch.ao.quantization.quantize_dynamic`` is
deprecated in torch 2.13 (its quantized tensors are to be removed), and torchao's int8 configs wrap weights in
tensor subclasses that safetensors cannot store as plain int8 tensors and that call the same CPU product. The
oneDNN ops take and give plain int8/float32 tensors (no quantized dtypes); the packed weight is kept beside the
layer (:func:`packed_weight`), so state dicts hold plain int8. On a 2-core AVX-512 machine, a
``(160, 1024) x (1024, 4096)`` product took ~3 ms against ~21 ms in float32.

The fast decoding step (:mod:`seqloom.modules.fast_step`) stacks an attention layer's int8 q/k/v (and cross-
attention's k/v) with :func:`stack_layers`: one quantization and one product per input instead of three.

Only modules are swapped: the model code is unchanged and calls the layers as modules (the decoding fast
paths that read ``nn.Linear`` weights directly take plain ``nn.Linear`` only; the encoder's fast path
runs :func:`int8_linear` on an int8 layer's buffers). A vocabulary projection tied to the embedding table gets
its own int8 copy; the embedding stays float32. A module that multiplies by a raw weight parameter rather than
through an ``nn.Linear`` (RoBERTa's LM head) converts it itself: ``quantize_model`` calls its ``quantize_int8()``
(:func:`quantize_parameter`), and its forward runs :func:`int8_linear` where the weight is int8.

Quantized state dicts keep the float model's keys: ``X.weight`` holds int8 values and ``X.weight_scale`` the
row scales. :func:`float_placeholders` gives the float model's keys and shapes without float weights, so the
model is built by the usual loaders before :func:`load_quantized` converts it and loads the int8 tensors.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.utils.weak import WeakIdKeyDictionary

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


def quantize_activations(rows: Tensor) -> tuple[Tensor, Tensor]:
    """Float32 ``rows`` ``(N, C)`` as int8 ``(N, C)`` and scales ``(N, 1)`` (each row's largest magnitude maps to
    127), in three passes over the rows: magnitudes' maximum, divide, round in place, then the int8 cast."""
    scale = rows.abs().amax(dim=1, keepdim=True).clamp_(min=torch.finfo(torch.float32).tiny).div_(INT8_MAX)  # (N, 1)
    q = torch.div(rows, scale).round_()  # |rows / scale| <= 127 up to rounding
    return q.to(torch.int8), scale


# oneDNN's int8 product with a weight packed once (torch.ops.onednn, the kernels behind Inductor's x86 int8): on
# a 2-core AVX-512 VNNI machine it multiplies 80 rows by transformer big's 32k x 1024 output projection in ~17 ms
# against ~36 ms for torch._int_mm, which re-lays the weight out at every call. Where it is missing or fails its
# check, torch._int_mm runs instead.
_PACKED = WeakIdKeyDictionary()  # weight -> (its version, packed); by identity (tensors' == is elementwise)
_ZERO_POINTS: dict[int, Tensor] = {}
_onednn_works: bool | None = None


def onednn_available() -> bool:
    """Whether oneDNN's packed int8 product runs here and gives ``torch._int_mm``'s sums (checked once)."""
    global _onednn_works
    if _onednn_works is None:
        try:
            w = torch.arange(-60, 68, dtype=torch.int8).view(8, 16)
            x = torch.arange(-127, 128, 8, dtype=torch.int8)[:32].view(2, 16)
            ones = torch.ones(8)
            got = torch.ops.onednn.qlinear_pointwise(
                x, 1.0, 0, torch.ops.onednn.qlinear_prepack(w, None), ones, torch.zeros(8, dtype=torch.long), None,
                1.0, 0, torch.float32, "none", [None], "",
            )  # fmt: skip
            _onednn_works = bool(torch.equal(got, (x.float() @ w.float().t())))
        except (AttributeError, NotImplementedError, RuntimeError):
            _onednn_works = False
    return _onednn_works


def packed_weight(weight: Tensor) -> Tensor | None:
    """``weight`` int8 ``(out, in)`` packed for oneDNN (made once per weight and version), or None without oneDNN.
    Kept beside the layer, not in its state: a packed tensor has no storage to save or copy."""
    if not onednn_available():
        return None
    version = 0 if weight.is_inference() else weight._version  # inference tensors cannot change in place
    found = _PACKED.get(weight)
    if found is None or found[0] != version:
        found = _PACKED[weight] = (version, torch.ops.onednn.qlinear_prepack(weight, None))
    return found[1]


def _zero_points(n: int) -> Tensor:
    found = _ZERO_POINTS.get(n)
    if found is None:
        found = _ZERO_POINTS[n] = torch.zeros(n, dtype=torch.long)
    return found


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
        q, scale = quantize_rows(effective_weight(linear))
        layer.weight, layer.weight_scale = q.to(linear.weight.device), scale.to(linear.weight.device)
        if linear.bias is not None:
            layer.bias = linear.bias.detach().float().clone()
        # in the replaced layer's mode: a model in eval mode stays so (else decoding leaves the fast step)
        return layer.train(linear.training)

    def forward(self, x: Tensor) -> Tensor:
        return int8_linear(x, self.weight, self.weight_scale, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def int8_linear(x: Tensor, weight: Tensor, weight_scale: Tensor, bias: Tensor | None) -> Tensor:
    """``x @ W^T + bias`` for ``x`` ``(..., in)`` and ``W`` int8 ``(out, in)`` with float32 row scales ``(out,)``:
    each input row quantized to int8, the int32 sums scaled back to float32; output in ``x``'s dtype."""
    out_features, in_features = weight.shape
    rows = x.reshape(-1, in_features).float()  # (N, in)
    if rows.size(0) == 0:
        return x.new_zeros(*x.shape[:-1], out_features)
    q, x_scale = quantize_activations(rows)  # (N, in) int8, (N, 1)
    out = _weight_scaled_product(q, weight, weight_scale)  # (N, out): int32 sums times the weight's row scales
    if bias is not None:  # out = bias + out * x_scale, in place: one pass over the output
        out = torch.addcmul(bias, out, x_scale, out=out)
    else:
        out.mul_(x_scale)
    return out.view(*x.shape[:-1], out_features).to(x.dtype)


def _weight_scaled_product(q: Tensor, weight: Tensor, weight_scale: Tensor) -> Tensor:
    """``q`` int8 ``(N, in)`` -> float32 ``(N, out)``: ``(q W^T) * weight_scale``, exact sums rounded once."""
    packed = packed_weight(weight)
    if packed is not None:
        return torch.ops.onednn.qlinear_pointwise(
            q, 1.0, 0, packed, weight_scale, _zero_points(weight.size(0)), None, 1.0, 0,
            torch.float32, "none", [None], "",
        )  # fmt: skip
    return torch._int_mm(q, weight.t()).float().mul_(weight_scale)


def quantize_parameter(module: nn.Module, name: str) -> None:
    """Replaces ``module``'s float weight parameter ``name`` ``(out, in)`` (used as ``x @ W^T``) by int8 buffers:
    ``name`` (the int8 rows) and ``name + "_scale"`` (their float32 scales), the keys an int8 state dict holds. A
    parameter shared with another module (a vocabulary matrix tied to the embedding) stays float32 there.

    For modules that multiply by a raw parameter rather than through an ``nn.Linear``: they define
    ``quantize_int8(self)`` calling this, which :func:`quantize_model` calls, and run :func:`int8_linear` where
    the parameter is int8."""
    q, scale = quantize_rows(getattr(module, name))
    delattr(module, name)
    module.register_buffer(name, q)
    module.register_buffer(name + "_scale", scale)


def stack_layers(layers: Sequence[Int8Linear], factors: Sequence[float]) -> Int8Linear:
    """One layer computing ``layers`` (same input size) side by side: ``(N, in)`` -> ``(N, sum of outs)``, the
    outputs of ``layers[i]`` times ``factors[i]``. The input is quantized once and multiplied once; each output
    equals its own layer's times the factor exactly when the factors are powers of two (the int32 sums and the
    scaling are the same, and a power-of-two factor on the row scales and bias only shifts exponents)."""
    stacked = Int8Linear(layers[0].in_features, sum(m.out_features for m in layers), bias=layers[0].bias is not None)
    stacked.weight = torch.cat([m.weight for m in layers])
    stacked.weight_scale = torch.cat([m.weight_scale * f for m, f in zip(layers, factors)])
    if stacked.bias is not None:
        stacked.bias = torch.cat([m.bias * f if m.bias is not None else m.weight_scale.new_zeros(m.out_features)
                                  for m, f in zip(layers, factors)])  # fmt: skip
    return stacked


def effective_weight(linear: nn.Linear) -> Tensor:
    """The weight ``linear`` multiplies by in eval mode. A layer under ``nn.utils.spectral_norm`` (RoBERTa's
    ``--spectral-norm-classification-head``) makes its ``weight`` from ``weight_orig`` and the stored singular
    vectors in a pre-forward hook, so the attribute is stale until a forward ran (e.g. right after loading)."""
    from torch.nn.utils.spectral_norm import SpectralNorm

    for hook in linear._forward_pre_hooks.values():
        if isinstance(hook, SpectralNorm) and hook.name == "weight":
            with torch.no_grad():
                return hook.compute_weight(linear, do_power_iteration=False)
    return linear.weight


def quantize_model(model: nn.Module, method: str = "int8", *, pack: bool = True) -> nn.Module:
    """Replaces every ``nn.Linear`` of ``model`` (subclasses included) by an :class:`Int8Linear`, in place;
    returns ``model``. Refuses (``ValueError``) where the int8 product cannot run on the model's device.
    ``pack``: packs the weights for oneDNN now (:func:`pack_weights`)."""
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
    for module in list(model.modules()):  # modules multiplying by raw parameters convert those themselves
        convert = getattr(module, "quantize_int8", None)
        if callable(convert):
            convert()
    if pack:
        release_freed_memory()
        pack_weights(model)
    return model


def release_freed_memory() -> None:
    """Hands the float weights' freed memory back to the system (glibc keeps freed blocks under 32 MiB in its
    heap, where the packed weights would otherwise be added on top of them in the resident size)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def pack_weights(model: nn.Module) -> None:
    """Packs every int8 weight (``X`` int8 beside its ``X_scale``: layers' and :func:`quantize_parameter`'s) for
    oneDNN (where it runs) now, with the model's loading, rather than inside the first batch's decoding: ~2 s for
    bart.large's 200 layers on one thread."""
    for module in model.modules():
        buffers = module._buffers
        for name, tensor in buffers.items():
            if tensor is not None and tensor.dtype == torch.int8 and buffers.get(name + "_scale") is not None:
                packed_weight(tensor)


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
    quantize_model(model, pack=False)
    model.load_state_dict(dict(state_dict), strict=True)
    release_freed_memory()
    pack_weights(model)  # after loading: loading writes the weights in place, which a packed copy would miss
    return model
