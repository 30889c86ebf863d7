"""int8 linear layers (seqloom.modules.int8): exact where quantization is lossless, close to float32 elsewhere,
swapped in place without touching tied embeddings, and refused where int8 products cannot run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqloom.modules.int8 import (
    Int8Linear,
    float_placeholders,
    int8_unavailable,
    is_quantized_state,
    load_quantized,
    quantize_model,
    quantize_rows,
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
