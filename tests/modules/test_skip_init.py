"""skip_random_init / build_and_load: parameters are not drawn, everything computed still is, and a load that
keeps one of the model's own values falls back to the normal build (those values keep their initialisation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from seqloom.modules.positions import SinusoidalPositionalEmbedding
from seqloom.modules.skip_init import build_and_load, skip_random_init


class Toy(nn.Module):
    """A linear layer, an embedding, sinusoidal positions and a head that ``load_state_dict`` fills from the
    model itself when the state dict lacks it (as BART's and RoBERTa's upgrades fill missing heads)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 6)
        nn.init.xavier_uniform_(self.proj.weight)
        self.embed = nn.Embedding(10, 8, padding_idx=1)
        nn.init.normal_(self.embed.weight, mean=0, std=8**-0.5)
        self.positions = SinusoidalPositionalEmbedding(8, padding_idx=1, init_size=16)
        self.head = nn.Linear(6, 3)
        with torch.no_grad():
            self.head.weight.normal_(mean=0.0, std=0.02)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        sd = dict(state_dict)
        for key, value in self.head.state_dict().items():
            sd.setdefault(f"head.{key}", value)
        return super().load_state_dict(sd, strict=strict, assign=assign)


def seeded_toy(seed: int) -> dict[str, Tensor]:
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in Toy().state_dict().items()}


def test_parameters_are_not_drawn_but_other_tensors_are() -> None:
    torch.manual_seed(3)
    before = torch.get_rng_state()
    with skip_random_init():
        toy = Toy()
        assert torch.equal(torch.get_rng_state(), before)  # no parameter was drawn
        drawn = torch.empty(4).uniform_()  # a plain tensor is: only parameters are left alone
    torch.set_rng_state(before)
    assert torch.equal(drawn, torch.empty(4).uniform_())
    normal = SinusoidalPositionalEmbedding(8, padding_idx=1, init_size=16)
    assert torch.equal(toy.positions.weights, normal.weights)  # computed, non-persistent: made as usual
    assert "positions.weights" not in toy.state_dict()


def test_a_full_load_equals_the_checkpoint_and_draws_nothing() -> None:
    sd = seeded_toy(0)
    torch.manual_seed(7)
    before = torch.get_rng_state()
    model = build_and_load(Toy, sd)
    assert torch.equal(torch.get_rng_state(), before)
    for key, value in model.state_dict().items():
        assert torch.equal(value, sd[key]), key
    with_init = build_and_load(Toy, sd, random_init=True)  # fairseq's way: drawn, then replaced
    assert not torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(v, sd[k]) for k, v in with_init.state_dict().items())


def test_a_value_the_load_keeps_from_the_model_gets_its_initialisation() -> None:
    """The head is missing from the state dict, so the model's own head is kept: the fallback builds normally,
    drawing exactly what the normal path draws (same head values, same random state afterwards)."""
    sd = {k: v for k, v in seeded_toy(0).items() if not k.startswith("head.")}
    torch.manual_seed(11)
    model = build_and_load(Toy, sd)
    after = torch.get_rng_state()
    torch.manual_seed(11)
    expected = build_and_load(Toy, sd, random_init=True)
    assert torch.equal(torch.get_rng_state(), after)
    assert torch.equal(model.head.weight, expected.head.weight) and model.head.weight.abs().max() < 0.2
    assert torch.equal(model.head.bias, expected.head.bias)
    assert torch.equal(model.proj.weight, sd["proj.weight"]) and torch.equal(model.embed.weight, sd["embed.weight"])
