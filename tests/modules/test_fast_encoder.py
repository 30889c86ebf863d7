"""The fast eval-mode encoder forward (seqloom.modules.fast_encoder) equals the reference, the modules' forward,
bit for bit (features, inner states, gradients), and its switch picks the reference where it must."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqloom.models.roberta.builder import build_model
from seqloom.models.roberta.config import RobertaConfig
from seqloom.models.roberta.model import RobertaModel, encoder_states
from seqloom.modules import fast_encoder
from seqloom.modules.fast_encoder import fast_encode, uses_fast_encoder
from seqloom.modules.int8 import Int8Linear, int8_unavailable, quantize_model

PAD = 1


class Vocab:
    def __len__(self) -> int:
        return 40

    def pad(self) -> int:
        return PAD


def tiny(**overrides: object) -> RobertaModel:
    torch.manual_seed(0)
    sizes: dict[str, object] = {"encoder_layers": 2, "encoder_embed_dim": 16, "encoder_ffn_embed_dim": 32,
                                "encoder_attention_heads": 4, "max_positions": 64}  # fmt: skip
    return build_model(RobertaConfig(**{**sizes, **overrides}), Vocab()).eval()  # type: ignore[arg-type]


def batch(lengths: list[int]) -> torch.Tensor:
    """Right-padded rows of random ids, ``<s>`` first (B, T)."""
    gen = torch.Generator().manual_seed(1)
    out = torch.full((len(lengths), max(lengths)), PAD, dtype=torch.long)
    for i, n in enumerate(lengths):
        out[i, :n] = torch.randint(4, 40, (n,), generator=gen)
        out[i, 0] = 0
    return out


def reference(model: RobertaModel, tokens: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    return encoder_states(model.encoder.sentence_encoder, tokens)


@pytest.mark.parametrize("normalize_before", [False, True])
@pytest.mark.parametrize("lengths", [[9], [9, 5, 7], [30], [30, 21]])  # short rows take attention's explicit product
def test_equals_the_reference_bit_for_bit(normalize_before: bool, lengths: list[int]) -> None:
    model = tiny(encoder_normalize_before=normalize_before)
    encoder = model.encoder.sentence_encoder
    tokens = batch(lengths)
    assert uses_fast_encoder(encoder)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            want, want_states = reference(model, tokens)
            got, states = fast_encode(encoder, tokens, return_all_hiddens=True)
            assert torch.equal(got, want)
            assert states is not None and len(states) == len(want_states) == 3
            assert all(torch.equal(a, b) for a, b in zip(states, want_states))
            assert torch.equal(fast_encode(encoder, tokens)[0], encoder(tokens).out)


def test_gradients_equal_the_references() -> None:
    model = tiny()
    tokens = batch([12, 8])
    grads = []
    for fast in (False, True):
        model.zero_grad(set_to_none=True)
        features = (fast_encode(model.encoder.sentence_encoder, tokens)[0] if fast
                    else reference(model, tokens)[0])  # fmt: skip
        (features * torch.linspace(-1, 1, features.size(-1))).sum().backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5, msg=name)


def test_the_model_takes_it_in_eval_mode_only(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny()
    calls: list[int] = []
    real = fast_encoder.fast_encode
    monkeypatch.setattr("seqloom.models.roberta.model.fast_encode", lambda *a, **k: calls.append(1) or real(*a, **k))
    tokens = batch([10, 6])
    model(tokens, features_only=True)
    assert calls == [1]
    model.train()
    model(tokens, features_only=True)
    assert calls == [1]


def test_the_switch_says_no_where_the_reference_must_run() -> None:
    model = tiny()
    encoder = model.encoder.sentence_encoder
    assert uses_fast_encoder(encoder)
    encoder.layers[1].self_attn.train()  # attention dropout would be drawn
    assert not uses_fast_encoder(encoder)
    encoder.layers[1].self_attn.eval()
    handle = encoder.layers[0].fc1.register_forward_hook(lambda *args: None)  # the fast path calls no module
    assert not uses_fast_encoder(encoder)
    handle.remove()
    assert uses_fast_encoder(encoder)

    class Scaled(nn.Linear):  # a swapped module computing otherwise
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    encoder.layers[0].fc2.__class__ = Scaled
    assert not uses_fast_encoder(encoder)
    tokens = batch([7])
    want = reference(model, tokens)[0]
    assert torch.equal(model(tokens, features_only=True).logits, want)


def test_int8_models_take_the_fast_path_and_equal_the_reference() -> None:
    """An int8 encoder's fast path runs each int8 layer's own product on the same inputs: the reference's numbers
    bit for bit (features and inner states, with and without padding)."""
    if int8_unavailable(torch.device("cpu")):
        pytest.skip("int8 products need a CPU with int8 kernels")
    model = tiny()
    with torch.no_grad():
        float_features = model(batch([9, 5]), features_only=True).logits
    quantize_model(model)
    encoder = model.encoder.sentence_encoder
    assert isinstance(encoder.layers[0].fc1, Int8Linear) and isinstance(encoder.layers[1].self_attn.q_proj, Int8Linear)
    assert uses_fast_encoder(encoder)
    for lengths in ([9], [9, 5, 7], [30, 21]):
        tokens = batch(lengths)
        with torch.inference_mode():
            want, want_states = reference(model, tokens)
            got, states = fast_encode(encoder, tokens, return_all_hiddens=True)
        assert torch.equal(got, want)
        assert states is not None and all(torch.equal(a, b) for a, b in zip(states, want_states, strict=True))
    with torch.no_grad():
        got = model(batch([9, 5]), features_only=True).logits
    assert 0 < (got - float_features).abs().max() < 0.1  # int8 really ran, close to float32
    handle = encoder.layers[1].fc2.register_forward_hook(lambda *args: None)  # a hooked int8 layer: the reference
    assert not uses_fast_encoder(encoder)
    handle.remove()
