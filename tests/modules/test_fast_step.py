"""The fast CPU decoding step (seqloom.modules.fast_step) equals the reference, the layers' forward, bit for bit
(logits, attention and what it leaves in the KV cache), and its switch picks the reference where it must."""

from __future__ import annotations

import pytest
import torch

from seqloom.models.transformer import TransformerConfig, TransformerModel, build_model
from seqloom.modules import fast_step, transformer
from seqloom.modules.fast_step import uses_fast_step
from seqloom.modules.int8 import int8_unavailable, quantize_model
from seqloom.modules.kv_cache import KVCache
from seqloom.modules.transformer_layers import TransformerDecoderLayer

PAD, EOS = 1, 2


class Vocab:
    def __len__(self) -> int:
        return 30

    def pad(self) -> int:
        return PAD


def tiny(*, int8: bool = False, **overrides: object) -> TransformerModel:
    torch.manual_seed(0)
    sizes: dict[str, object] = {
        "encoder_embed_dim": 16,
        "encoder_ffn_embed_dim": 32,
        "encoder_layers": 2,
        "encoder_attention_heads": 4,
        "decoder_layers": 2,
        "decoder_attention_heads": 2,
    }
    cfg = TransformerConfig(**{**sizes, **overrides})  # type: ignore[arg-type]
    model = build_model(cfg, Vocab(), Vocab()).eval()  # type: ignore[arg-type]
    if int8:
        reason = int8_unavailable(torch.device("cpu"))
        if reason is not None:
            pytest.skip(reason)
        quantize_model(model)
    return model


def decode(
    model: TransformerModel, *, record: list[int] | None = None
) -> tuple[list[tuple[torch.Tensor, ...]], KVCache]:
    """Seven steps of two beams per sentence (sharing source rows), one fed pad and a reorder at step 4."""
    src = torch.tensor([[1, 1, 7, 8, 9, 2], [5, 6, 7, 8, 9, 2], [1, 1, 1, 4, 4, 2]])
    prev = torch.tensor([[2, 10, 11, 12, 13, 14, 15], [2, 20, 21, 22, 23, 24, 25], [2, 9, 8, 7, 6, 5, 4]])
    prev = prev[torch.arange(3).repeat_interleave(2)].clone()  # (6, 7)
    prev[1::2, 1:] = prev[1::2, 1:].flip(1)
    prev[3, 2] = PAD
    encoder_out = model.encode(src)
    cache = model.new_cache(6, 7)
    outs = []
    for t in range(7):
        if t == 4:
            cache.reorder(torch.tensor([1, 0, 2, 2, 5, 4]), keep_static=True)
        out = model.decode(prev[:, t : t + 1], encoder_out, cache=cache, need_attn=True)
        assert out.attn is not None
        outs.append((out.logits, out.attn))
    return outs, cache


def cache_contents(cache: KVCache) -> list[torch.Tensor]:
    tensors = [cache.padding[:, : cache.length]]
    for layer in cache.self_attn + cache.cross_attn:
        assert layer.key is not None and layer.value is not None
        tensors += [layer.key[:, :, : layer.length], layer.value[:, :, : layer.length]]
    return tensors


@pytest.mark.parametrize(
    ("overrides", "int8"),
    [
        ({}, False),
        ({"decoder_attention_heads": 4}, False),
        ({"decoder_attention_heads": 4, "decoder_normalize_before": True}, False),
        ({"decoder_attention_heads": 4}, True),
        ({"decoder_normalize_before": True}, True),
    ],
    ids=["post-norm", "prescaled-queries", "pre-norm", "int8", "int8-pre-norm"],  # Dh 4: the scale folds into q
)
@torch.no_grad()
def test_fast_step_equals_the_layers_forward_bit_for_bit(
    overrides: dict[str, object], int8: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny(int8=int8, **overrides)
    calls: list[int] = []
    step = fast_step.FastStep.layer_step
    monkeypatch.setattr(fast_step.FastStep, "layer_step", lambda self, *a, **k: calls.append(1) or step(self, *a, **k))
    fast, fast_cache = decode(model)
    assert len(calls) == 7 * len(model.decoder.layers)
    monkeypatch.setattr(transformer, "uses_fast_step", lambda *a: False)
    reference, reference_cache = decode(model)
    assert len(calls) == 7 * len(model.decoder.layers)  # the layers' forward this time
    for got, want in zip(fast, reference, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    assert fast_cache.length == reference_cache.length == 7
    for got_t, want_t in zip(cache_contents(fast_cache), cache_contents(reference_cache), strict=True):
        assert torch.equal(got_t, want_t)


def test_the_switch_picks_the_reference_where_the_fast_step_does_not_apply() -> None:
    model = tiny()
    layers = model.decoder.layers
    tokens, encoder = torch.ones(6, 1, dtype=torch.long), torch.zeros(3, 5, 16)
    with torch.no_grad():
        assert uses_fast_step(layers, tokens, encoder, model.new_cache(6, 4))
        assert uses_fast_step(layers, tokens, None, model.new_cache(6, 4))  # no encoder (a language model)
        assert not uses_fast_step(layers, tokens, encoder, None)  # no cache: a full pass
        assert not uses_fast_step(layers, torch.ones(6, 2, dtype=torch.long), encoder, model.new_cache(6, 4))
        many = torch.ones(17 * 3, 1, dtype=torch.long)  # 17 beams share each source row: the fused kernel's case
        assert not uses_fast_step(layers, many, encoder, model.new_cache(51, 4))
        assert uses_fast_step(layers, many[:48], encoder, model.new_cache(48, 4))
        off_cpu = torch.ones(6, 1, dtype=torch.long, device="meta")
        assert not uses_fast_step(layers, off_cpu, encoder, model.new_cache(6, 4))
        layers[1].self_attn.train()  # --retain-dropout-modules: a part of a layer drops out
        assert not uses_fast_step(layers, tokens, encoder, model.new_cache(6, 4))
        layers[1].self_attn.eval()
        cache = model.new_cache(6, 4)
        assert uses_fast_step(layers, tokens, encoder, cache)
    assert not uses_fast_step(layers, tokens, encoder, cache)  # gradients enabled: training-time decoding


def test_decoding_with_gradients_runs_the_layers_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny()
    calls: list[int] = []
    monkeypatch.setattr(fast_step.FastStep, "layer_step", lambda *a, **k: calls.append(1))
    encoder_out = model.encode(torch.tensor([[5, 6, 7, 2]]))
    cache = model.new_cache(1, 3)
    with torch.enable_grad():
        for token in (EOS, 9, 10):
            logits = model.decode(torch.tensor([[token]]), encoder_out, cache=cache).logits
    assert not calls and logits.requires_grad


@torch.no_grad()
def test_fast_step_equals_normformer_layers_without_cross_attention() -> None:
    """A language model's layers (no encoder) with NormFormer's head scales, norms and residual scales."""
    torch.manual_seed(0)
    layers = torch.nn.ModuleList(
        TransformerDecoderLayer(
            16,
            32,
            4,
            cross_attention=False,
            normalize_before=True,
            scale_attn=True,
            scale_heads=True,
            scale_fc=True,
            scale_resids=True,
        )  # fmt: skip
        for _ in range(2)
    ).eval()
    for name, param in layers.named_parameters():
        if name.endswith(("c_attn", "w_resid")):
            param.uniform_(0.5, 1.5)  # not the identity they start as
    x = torch.randn(7, 4, 1, 16)  # 7 steps of 4 rows

    def new_cache() -> KVCache:
        return KVCache(num_layers=2, batch_size=4, num_heads=4, head_dim=4, max_len=7, dtype=torch.float32,
                       device=torch.device("cpu"))  # fmt: skip

    fast_cache, ref_cache = new_cache(), new_cache()
    for step in x:
        fast, _ = fast_step.fast_step(layers, step, None, None, self_padding_mask=None, cache=fast_cache,
                                      need_attn=False, aligned=1, attn_heads=None)  # fmt: skip
        ref = step
        for idx, layer in enumerate(layers):
            ref, _ = layer(ref, None, None, self_cache=ref_cache.self_attn[idx])
        fast_cache.advance(1)
        ref_cache.advance(1)
        assert torch.equal(fast, ref)
    for idx in range(2):
        for got, want in ((fast_cache.self_attn[idx].key, ref_cache.self_attn[idx].key),
                          (fast_cache.self_attn[idx].value, ref_cache.self_attn[idx].value)):  # fmt: skip
            assert got is not None and want is not None and torch.equal(got[:, :, :7], want[:, :, :7])


@torch.no_grad()
def test_int8_stacked_projections_follow_weights_loaded_between_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stacked int8 q/k/v kept across decoding passes are made again when the layers' weights change."""
    model, other = tiny(int8=True, decoder_attention_heads=4), tiny(int8=True, decoder_attention_heads=4)
    with torch.no_grad():
        for t in other.state_dict().values():
            if t.dtype == torch.float32:
                t.mul_(0.5)
    decode(model)  # stacks model's projections
    model.load_state_dict(other.state_dict())
    fast, _ = decode(model)
    monkeypatch.setattr(transformer, "uses_fast_step", lambda *a: False)
    reference, _ = decode(other)
    for got, want in zip(fast, reference, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
