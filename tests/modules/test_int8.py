"""int8 linear layers (seqloom.modules.int8): exact where quantization is lossless, close to float32 elsewhere,
swapped in place without touching tied embeddings, and refused where int8 products cannot run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqloom.modules import int8
from seqloom.modules.int8 import (
    Int8Linear,
    float_placeholders,
    int8_unavailable,
    is_quantized_state,
    load_quantized,
    quantize_model,
    quantize_rows,
    stack_layers,
)


def integer_rows(rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    """Integer matrix in [-127, 127] whose every row reaches 127 in magnitude (its int8 scale is then exactly 1)."""
    x = torch.randint(-127, 128, (rows, cols), generator=generator).float()
    x[:, 0] = torch.where(torch.rand(rows, generator=generator) < 0.5, -127.0, 127.0)
    return x


def test_integer_operands_with_power_of_two_row_scales_multiply_exactly() -> None:
    g = torch.Generator().manual_seed(0)
    x = integer_rows(7, 33, g) * 2.0 ** torch.randint(-6, 3, (7, 1), generator=g)
    w = integer_rows(5, 33, g) * 2.0 ** torch.randint(-6, 3, (5, 1), generator=g)
    linear = nn.Linear(33, 5)
    with torch.no_grad():
        linear.weight.copy_(w)
    layer = Int8Linear.from_linear(linear)
    assert layer.weight.dtype == torch.int8 and layer.weight_scale.shape == (5,)
    # every operand and partial sum is exact in float64; the int8 route must give the same numbers
    expected = (x.double() @ w.double().t() + linear.bias.double()).float()
    assert torch.equal(layer(x), expected)
    assert torch.equal(layer(x.view(7, 1, 33)), expected.view(7, 1, 5))  # leading dims kept


def test_gaussian_products_are_within_two_percent_of_float32() -> None:
    """Row-wise symmetric rounding: step = amax / 127 with amax ~ 3-4 sigma for 512 Gaussian values, so each
    operand is off by ~0.8% RMS and the product by ~1.2% (measured 1.1%); 2% leaves room for other seeds."""
    g = torch.Generator().manual_seed(1)
    linear = nn.Linear(512, 384)
    x = torch.randn(64, 512, generator=g)
    out = Int8Linear.from_linear(linear)(x)
    ref = linear(x).detach()
    relative = ((out - ref).norm() / ref.norm()).item()
    assert 1e-4 < relative < 0.02


def test_quantize_rows_rounds_each_row_to_its_own_scale() -> None:
    w = torch.tensor([[0.5, -1.0, 0.25], [254.0, 127.0, -63.5]])
    q, scale = quantize_rows(w)
    assert torch.equal(scale, torch.tensor([1.0 / 127, 2.0]))
    assert q.tolist() == [[64, -127, 32], [127, 64, -32]]  # 63.5 and -31.75 round half to even / nearest


def test_empty_input_gives_empty_output() -> None:
    layer = Int8Linear.from_linear(nn.Linear(4, 3))
    assert layer(torch.zeros(0, 2, 4)).shape == (0, 2, 3)


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 8)
        self.hidden = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))
        self.proj = nn.Linear(8, 11, bias=False)
        self.proj.weight = self.embed.weight


def test_quantize_model_swaps_every_linear_and_keeps_the_tied_embedding_float() -> None:
    model = Tied()
    table = model.embed.weight.detach().clone()
    assert quantize_model(model) is model
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert isinstance(model.proj, Int8Linear) and isinstance(model.hidden[0], Int8Linear)
    assert model.embed.weight.dtype == torch.float32 and torch.equal(model.embed.weight, table)
    sd = model.state_dict()
    assert sd["proj.weight"].dtype == torch.int8 and sd["proj.weight"].data_ptr() != sd["embed.weight"].data_ptr()
    assert is_quantized_state(sd) and not is_quantized_state(Tied().state_dict())
    shapes = float_placeholders(sd)
    assert set(shapes) == set(Tied().state_dict()) and shapes["proj.weight"].dtype == torch.float32
    assert shapes["proj.weight"].shape == (11, 8) and shapes["proj.weight"].stride() == (0, 0)  # no memory
    rebuilt = Tied()
    rebuilt.load_state_dict(shapes)  # the tied embedding is overwritten by the placeholder here ...
    load_quantized(rebuilt, sd)  # ... and restored here, with the int8 copy exact
    for name, tensor in rebuilt.state_dict().items():
        assert torch.equal(tensor, sd[name]), name


def test_refused_off_the_cpu_and_without_int8_products(monkeypatch: pytest.MonkeyPatch) -> None:
    model = Tied().to("meta")
    with pytest.raises(ValueError, match=r"quantize='int8': int8 inference runs on the CPU .* add --cpu"):
        quantize_model(model)
    assert isinstance(model.proj, nn.Linear)  # nothing converted
    with pytest.raises(ValueError, match="the known method is 'int8'"):
        quantize_model(Tied(), "int4")

    def missing(*args: object) -> torch.Tensor:
        raise RuntimeError("_int_mm: no kernel for this CPU\nsecond line")

    monkeypatch.setattr(torch, "_int_mm", missing)
    reason = int8_unavailable(torch.device("cpu"))
    assert reason is not None and "cannot multiply int8 matrices on the CPU (_int_mm: no kernel for this CPU)" in reason
    with pytest.raises(ValueError, match="cannot multiply int8 matrices"):
        quantize_model(Tied())


def test_onednn_packed_route_equals_the_int_mm_route(monkeypatch: pytest.MonkeyPatch) -> None:
    """The packed oneDNN product (where it runs) and torch._int_mm give the same exact sums, scaled the same."""
    g = torch.Generator().manual_seed(2)
    layer = Int8Linear.from_linear(nn.Linear(96, 40))
    x = torch.randn(2, 9, 96, generator=g)
    packed = layer(x)
    monkeypatch.setattr(int8, "_onednn_works", False)
    assert int8.packed_weight(layer.weight) is None
    assert torch.equal(layer(x), packed)


def test_packed_weight_follows_weights_loaded_in_place() -> None:
    g = torch.Generator().manual_seed(3)
    first, second = Int8Linear.from_linear(nn.Linear(32, 24)), Int8Linear.from_linear(nn.Linear(32, 24))
    x = torch.randn(5, 32, generator=g)
    first(x)  # packs first's weight
    first.load_state_dict(second.state_dict())  # copies into the same int8 tensor
    assert torch.equal(first(x), second(x))


@pytest.mark.parametrize("bias", [True, False])
def test_stacked_layers_equal_the_separate_products_times_their_factors(bias: bool) -> None:
    """q, k, v of one input stacked: one quantization and one product give each layer's own numbers exactly
    (q's power-of-two factor included), which the fast decoding step relies on."""
    g = torch.Generator().manual_seed(4)
    layers = [Int8Linear.from_linear(nn.Linear(64, out, bias=bias)) for out in (64, 64, 48)]
    stacked = stack_layers(layers, [0.125, 1.0, 1.0])
    assert stacked.weight.shape == (176, 64) and (stacked.bias is not None) == bias
    x = torch.randn(3, 7, 64, generator=g)
    q, k, v = stacked(x).split([64, 64, 48], dim=-1)
    assert torch.equal(q, layers[0](x) * 0.125)
    assert torch.equal(k, layers[1](x)) and torch.equal(v, layers[2](x))


def test_a_spectral_norm_layer_is_quantized_from_the_weight_it_multiplies_by() -> None:
    """``nn.utils.spectral_norm`` recomputes ``weight`` in a pre-forward hook; right after a state dict is loaded the
    attribute is stale, and the int8 copy must come from ``weight_orig`` and the stored singular vectors instead."""
    torch.manual_seed(0)
    layer = torch.nn.utils.spectral_norm(torch.nn.Linear(16, 8)).eval()
    state = layer.state_dict()
    state["weight_orig"] = state["weight_orig"] * 3 + 0.5  # loaded values the hook has not seen yet
    layer.load_state_dict(state)
    int8 = Int8Linear.from_linear(layer)
    x = torch.randn(4, 16)
    with torch.no_grad():
        expected = layer(x)  # the forward recomputes the weight from weight_orig
    torch.testing.assert_close(int8(x), expected, atol=0.05, rtol=0.02)
