"""One attention for all uses: SDPA equals the explicit path, the projections equal torch's reference
multi-head attention (fairseq's fast path), and KV-cached decoding equals the full forward."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from seqloom.models.transformer import TransformerConfig, TransformerModel, build_model
from seqloom.modules.attention import MultiheadAttention, attention
from seqloom.modules.kv_cache import KVCache
from seqloom.modules.masks import causal_mask, combine_masks, output_positions
from seqloom.modules.transformer import OutputFeatures

PAD, EOS = 1, 2


def test_fused_and_explicit_attention_agree_under_masks() -> None:
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8)
    pad = torch.tensor([[False] * 5, [True, True, False, False, False]])
    excluded = combine_masks(pad, causal_mask(4, 5, offset=1))
    fused, none = attention(q, k, v, excluded=excluded)
    explicit, weights = attention(q, k, v, excluded=excluded, need_weights=True)
    assert none is None and weights is not None
    torch.testing.assert_close(fused, explicit, atol=1e-6, rtol=0)
    assert weights.shape == (2, 4, 5)
    # row 1's first query sees only padded keys: zeros, not NaN, on both paths
    assert fused[1, :, 0].abs().sum() == 0 and weights[1, 0].abs().sum() == 0
    torch.testing.assert_close(weights[0].sum(-1), torch.ones(4))
    assert weights[1, :, :2].abs().sum() == 0  # padded keys get no weight
    assert weights[0, 0, 2:].abs().sum() == 0  # nor do future ones


def test_multihead_attention_equals_torchs_reference_with_padding() -> None:
    torch.manual_seed(0)
    mha = MultiheadAttention(16, 4, kdim=12, vdim=12).eval()
    query, source = torch.randn(2, 3, 16), torch.randn(2, 5, 12)
    pad = torch.tensor([[False] * 5, [True, False, False, False, False]])
    ours, weights = mha(query, source, key_padding_mask=pad, need_weights=True)
    ref, ref_weights = F.multi_head_attention_forward(
        query.transpose(0, 1),
        source.transpose(0, 1),
        source.transpose(0, 1),
        16,
        4,
        torch.empty([0]),
        torch.cat((mha.q_proj.bias, mha.k_proj.bias, mha.v_proj.bias)),
        None,
        None,
        False,
        0.0,
        mha.out_proj.weight,
        mha.out_proj.bias,
        training=False,
        key_padding_mask=pad,
        need_weights=True,
        use_separate_proj_weight=True,
        q_proj_weight=mha.q_proj.weight,
        k_proj_weight=mha.k_proj.weight,
        v_proj_weight=mha.v_proj.weight,
    )
    torch.testing.assert_close(ours, ref.transpose(0, 1), atol=1e-6, rtol=0)
    torch.testing.assert_close(weights, ref_weights, atol=1e-6, rtol=0)


def _tiny(**overrides: object) -> TransformerModel:
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

    class Vocab:
        def __len__(self) -> int:
            return 30

        def pad(self) -> int:
            return PAD

    vocab = Vocab()
    return build_model(cfg, vocab, vocab).eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    src = torch.tensor([[1, 1, 7, 8, 9, 2], [5, 6, 7, 8, 9, 2], [1, 1, 1, 4, 4, 2]])
    prev = torch.tensor([[2, 10, 11, 12, 13, 14, 15], [2, 20, 21, 22, 23, 24, 25], [2, 9, 8, 7, 6, 5, 4]])
    return src, prev


def _step_by_step(model: TransformerModel, src: torch.Tensor, prev: torch.Tensor, chunks: list[int]) -> torch.Tensor:
    encoder_out = model.encode(src)
    cache = model.new_cache(src.size(0), prev.size(1))
    outs, start = [], 0
    for size in chunks:
        outs.append(model.decode(prev[:, start : start + size], encoder_out, cache=cache).logits)
        start += size
    return torch.cat(outs, dim=1)


VARIANTS = [
    {},
    {"encoder_normalize_before": True, "decoder_normalize_before": True, "layernorm_embedding": True},
    {"encoder_learned_pos": True, "decoder_learned_pos": True, "share_all_embeddings": True},
    {"decoder_embed_dim": 24, "decoder_output_dim": 20, "activation_fn": "gelu", "no_scale_embedding": True},
]


@pytest.mark.parametrize("overrides", VARIANTS)
@torch.no_grad()
def test_cached_decoding_equals_full_forward(overrides: dict[str, object]) -> None:
    model = _tiny(**overrides)
    src, prev = _batch()
    full = model(src, None, prev).logits
    assert full.shape == (3, 7, 30)
    torch.testing.assert_close(_step_by_step(model, src, prev, [1] * 7), full, atol=1e-5, rtol=0)
    torch.testing.assert_close(_step_by_step(model, src, prev, [3, 1, 2, 1]), full, atol=1e-5, rtol=0)


@torch.no_grad()
def test_the_caches_unfilled_room_is_never_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The preallocated buffers are uninitialised: filled with NaN, decoding (reordered too) still equals the
    full forward."""
    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **k: real_empty(*a, **k).fill_(float("nan")))
    model = _tiny()
    src, prev = _batch()
    full = model(src, None, prev).logits
    torch.testing.assert_close(_step_by_step(model, src, prev, [1] * 7), full, atol=1e-5, rtol=0)
    encoder_out = model.encode(src)
    cache = model.new_cache(3, 7)
    assert all(torch.isnan(c._buffers[0][0]).all() for c in cache.self_attn)
    for t in range(3):
        model.decode(prev[:, t : t + 1], encoder_out, cache=cache)
    order = torch.tensor([2, 0, 0])
    cache.reorder(order)
    stepped = torch.cat([model.decode(prev[order, t : t + 1], encoder_out.reorder(order), cache=cache).logits
                         for t in range(3, 7)], 1)  # fmt: skip
    torch.testing.assert_close(stepped, model.decode(prev[order], encoder_out.reorder(order)).logits[:, 3:])


@torch.no_grad()
def test_cached_attention_weights_equal_full_ones() -> None:
    model = _tiny()
    src, prev = _batch()
    full = model.decode(prev, model.encode(src), need_attn=True).attn
    encoder_out = model.encode(src)
    cache = model.new_cache(3, 7)
    steps = [model.decode(prev[:, t : t + 1], encoder_out, cache=cache, need_attn=True).attn for t in range(7)]
    assert full is not None and all(s is not None for s in steps)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-6, rtol=0)  # type: ignore[arg-type]
    assert full[0, :, :2].abs().sum() == 0  # left padding of the source gets no attention


@torch.no_grad()
def test_reorder_follows_beam_search_including_a_shrinking_batch() -> None:
    model = _tiny()
    src, prev = _batch()
    encoder_out = model.encode(src)
    cache = model.new_cache(3, 7)
    for t in range(3):
        model.decode(prev[:, t : t + 1], encoder_out, cache=cache)
    new_order = torch.tensor([2, 0])  # keep rows 2 and 0, in that order
    cache.reorder(new_order)
    reordered = encoder_out.reorder(new_order)
    stepped = model.decode(prev[new_order, 3:4], reordered, cache=cache).logits
    full = model.decode(prev[new_order, :4], reordered).logits
    torch.testing.assert_close(stepped[:, 0], full[:, 3], atol=1e-5, rtol=0)
    assert cache.batch_size == 2 and cache.length == 4


@torch.no_grad()
def test_padding_fed_through_the_cache_is_never_attended() -> None:
    # positions differ around a pad (the full forward skips it, the cache counts steps, as in fairseq),
    # so compare without positions: this checks the attention masks alone
    model = _tiny(no_token_positional_embeddings=True)
    src, prev = _batch()
    prev = prev.clone()
    prev[1, 2] = PAD
    full = model(src, None, prev).logits
    stepped = _step_by_step(model, src, prev, [1] * 7)
    keep = prev.ne(PAD)
    torch.testing.assert_close(stepped[keep], full[keep], atol=1e-5, rtol=0)


def test_cache_overflow_is_a_clear_error() -> None:
    model = _tiny()
    src, prev = _batch()
    cache: KVCache = model.new_cache(3, 2)
    encoder_out = model.encode(src)
    with torch.no_grad():
        model.decode(prev[:, :2], encoder_out, cache=cache)
        with pytest.raises(RuntimeError, match="max_len 2"):
            model.decode(prev[:, 2:3], encoder_out, cache=cache)


def test_max_positions_and_normalized_probs() -> None:
    model = _tiny(max_source_positions=40, max_target_positions=50, decoder_learned_pos=True)
    assert model.max_positions() == (40, 50)
    logits = torch.randn(2, 3, 30, dtype=torch.bfloat16)
    lprobs = model.get_normalized_probs(logits)
    assert lprobs.dtype == torch.float32
    torch.testing.assert_close(lprobs.exp().sum(-1), torch.ones(2, 3))


@torch.no_grad()
def test_cached_decoding_under_bf16_autocast_runs() -> None:
    model = _tiny()
    src, prev = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        full = model(src, None, prev).logits
        stepped = _step_by_step(model, src, prev, [1] * 7)
    torch.testing.assert_close(stepped.float(), full.float(), atol=0.1, rtol=0)


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    src, prev = _batch()
    grads = []
    for flag in (False, True):
        model = _tiny(checkpoint_activations=flag, dropout=0.0).train()
        model(src, None, prev).logits.logsumexp(-1).sum().backward()
        grads.append(model.encoder.layers[0].fc1.weight.grad.clone())  # type: ignore[union-attr]
    torch.testing.assert_close(grads[0], grads[1])


def test_layerdrop_only_drops_in_training() -> None:
    model = _tiny(encoder_layerdrop=1.0, decoder_layerdrop=1.0, dropout=0.0)
    src, prev = _batch()
    with torch.no_grad():
        skipped = model.train()(src, None, prev).logits
        no_layers = model.decoder.output_projection(model.decoder.embed(prev))
        torch.testing.assert_close(skipped, no_layers)  # every layer dropped: embeddings straight to the output
        assert not torch.allclose(model.eval()(src, None, prev).logits, skipped)


def test_whole_model_compiles_as_one_graph() -> None:
    """``torch.compile(fullgraph=True)`` traces training forward without a data-dependent break."""
    model = _tiny(dropout=0.0).train()
    src, prev = _batch()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(src, None, prev).logits, model(src, None, prev).logits)
    # a batch wide enough for the padded vocabulary product (30 symbols), gradients included
    wide_src, wide_prev = src.repeat(8, 1), prev.repeat(8, 1)
    out = compiled(wide_src, None, wide_prev).logits
    out.sum().backward()
    grad = model.decoder.output_projection.weight.grad.clone()
    model.zero_grad()
    ref = model(wide_src, None, wide_prev).logits
    ref.sum().backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(grad, model.decoder.output_projection.weight.grad)


def test_the_criterions_output_positions_keep_the_compiled_graph_whole() -> None:
    """Criterions pass the scored positions as flat indices (``output_positions``): a boolean mask there made
    a data-dependent ``nonzero`` inside the graph, which split ``--compile``'s training graph in two."""
    model = _tiny(dropout=0.0).train()
    src, prev = _batch()
    keep = prev.ne(15) & prev.ne(4)  # as if the last tokens of two rows were padding
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    out = compiled(src, None, prev, output_mask=output_positions(keep), project=False)
    assert isinstance(out, OutputFeatures) and out.features.shape == (int(keep.sum()), 16)
    torch.testing.assert_close(out.features, model(src, None, prev, output_mask=keep, project=False).features)


@torch.no_grad()
def test_reorder_within_sentences_can_keep_the_cross_attention_cache() -> None:
    model = _tiny()
    src, prev = _batch()
    src = src[[0, 0, 1, 1]]  # two beams for each of two sentences
    prev = prev[[0, 1, 2, 2]]
    encoder_out = model.encode(src)
    cache = model.new_cache(4, 7)
    for t in range(2):
        model.decode(prev[:, t : t + 1], encoder_out, cache=cache)
    cross_before = cache.cross_attn[0].key
    order = torch.tensor([1, 1, 3, 2])  # each row continues a beam of its own sentence
    cache.reorder(order, keep_static=True)
    assert cache.cross_attn[0].key is cross_before
    for t in range(2, 4):  # two more steps: the swapped spare buffers are used and swapped again
        stepped = model.decode(prev[order, t : t + 1], encoder_out, cache=cache).logits
        if t == 2:
            cache.reorder(torch.arange(4), keep_static=True)
    full = model.decode(prev[order, :4], encoder_out).logits
    torch.testing.assert_close(stepped[:, 0], full[:, 3], atol=1e-5, rtol=0)


@torch.no_grad()
def test_beams_sharing_one_source_row_equal_repeated_sources() -> None:
    """g decoder rows per encoder row (beam search's hypotheses of a sentence) give what repeating the
    encoder output g times gives: logits, attention, cached steps and a reorder that drops a sentence."""
    model = _tiny()
    assert model.shares_source_across_beams
    src, prev = _batch()
    g = 2
    rows = torch.arange(3).repeat_interleave(g)  # (6,) sentence of each decoder row
    prev = prev[rows].clone()
    prev[1::2, 1:] = prev[1::2, 1:].flip(1)  # the second hypothesis of each sentence differs
    shared, repeated = model.encode(src), model.encode(src).reorder(rows)
    full = model.decode(prev, repeated, need_attn=True)
    grouped = model.decode(prev, shared, need_attn=True)
    torch.testing.assert_close(grouped.logits, full.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(grouped.attn, full.attn, atol=1e-6, rtol=0)
    cache = model.new_cache(6, 7)
    for t in range(3):
        model.decode(prev[:, t : t + 1], shared, cache=cache)
    assert cache.cross_attn[0].key is not None and cache.cross_attn[0].key.size(0) == 3  # one row per sentence
    keep = torch.tensor([0, 2])  # sentence 1 is done; beams swap within sentence 2
    order = torch.tensor([0, 1, 5, 4])
    cache.reorder(order, static_order=keep)
    stepped = model.decode(prev[order, 3:4], shared.reorder(keep), cache=cache).logits
    torch.testing.assert_close(stepped[:, 0], full.logits[order, 3], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="cannot share"):
        model.decode(prev[:5], shared)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"decoder_attention_heads": 4}, {"decoder_attention_heads": 4, "decoder_normalize_before": True}],
    ids=["head-dim-8", "head-dim-4", "pre-norm"],  # Dh ** -0.5 is a power of two only for Dh 4: folded into q
)
@torch.no_grad()
def test_stepwise_decoding_gives_the_layers_numbers_exactly(overrides: dict[str, object], monkeypatch) -> None:
    """One token per row at inference runs the fast step (fewer ops per step): bit for bit the numbers of the
    layers' ``forward``, with beams sharing source rows, fed padding, attention weights and a reorder between
    steps."""
    from seqloom.modules import fast_step, transformer

    model = _tiny(**overrides)
    src, prev = _batch()
    rows = torch.arange(3).repeat_interleave(2)  # (6,) two beams per sentence
    prev = prev[rows].clone()
    prev[1::2, 1:] = prev[1::2, 1:].flip(1)
    prev[3, 2] = PAD  # a fed pad: the self-attention mask
    shared = model.encode(src)
    calls = []
    step = fast_step.FastStep.layer_step
    monkeypatch.setattr(fast_step.FastStep, "layer_step", lambda self, *a, **k: calls.append(1) or step(self, *a, **k))

    def decode() -> list[tuple[torch.Tensor, torch.Tensor]]:
        cache = model.new_cache(6, 7)
        outs = []
        for t in range(7):
            if t == 4:
                cache.reorder(torch.tensor([1, 0, 2, 2, 5, 4]), keep_static=True)
            out = model.decode(prev[:, t : t + 1], shared, cache=cache, need_attn=True)
            outs.append((out.logits, out.attn))
        return outs

    fast = decode()
    assert len(calls) == 7 * len(model.decoder.layers)
    monkeypatch.setattr(transformer, "uses_fast_step", lambda *a: False)
    slow = decode()
    assert len(calls) == 7 * len(model.decoder.layers)  # the layers' forward this time
    for (logits, attn), (ref_logits, ref_attn) in zip(fast, slow):
        assert torch.equal(logits, ref_logits) and torch.equal(attn, ref_attn)


def test_cached_decoding_projects_q_k_v_at_once_with_the_weights_of_its_pass() -> None:
    model = _tiny()
    src, prev = _batch()
    with torch.enable_grad():  # gradients enabled: three separate projections
        expected = _step_by_step(model, src, prev, [1] * 7).detach()
    with torch.no_grad():
        torch.testing.assert_close(_step_by_step(model, src, prev, [1] * 7), expected, atol=1e-5, rtol=0)
        # an optimizer may update weights in place without bumping their version (fused AdamW): the next
        # decoding pass (a new cache) must use the new weights
        param = model.decoder.layers[0].self_attn.k_proj.weight
        param.grad = torch.randn_like(param)
        torch.optim.AdamW([param], lr=0.5, fused=True).step()
        after = _step_by_step(model, src, prev, [1] * 7)
    with torch.enable_grad():
        torch.testing.assert_close(after, _step_by_step(model, src, prev, [1] * 7).detach(), atol=1e-5, rtol=0)
    assert not torch.allclose(after, expected)
    assert "decoder.layers.0.self_attn.q_proj.weight" in model.state_dict()


@pytest.mark.parametrize("mask", ["none", "excluded", "bias", "causal"])
def test_inference_over_few_queries_equals_the_fused_kernel(mask: str) -> None:
    """Decoding-time attention (no gradients, a few queries) runs the explicit product; it equals SDPA."""
    torch.manual_seed(0)
    q, k = torch.randn(3, 2, 4, 8), torch.randn(3, 2, 4 if mask == "causal" else 6, 8)
    v = torch.randn_like(k)
    pad = torch.tensor([[False] * 6, [True, True, False, False, False, False], [False] * 5 + [True]])
    kwargs: dict[str, object] = {"excluded": None}
    if mask == "excluded":
        kwargs["excluded"] = combine_masks(pad, None)
    elif mask == "bias":
        kwargs["bias"] = torch.zeros(3, 6).masked_fill(pad, float("-inf"))[:, None, None, :]
    elif mask == "causal":
        kwargs["is_causal"] = True
    fused, _ = attention(q.clone().requires_grad_(), k, v, **kwargs)  # type: ignore[arg-type]
    with torch.no_grad():
        explicit, _ = attention(q, k, v, **kwargs)  # type: ignore[arg-type]
    torch.testing.assert_close(explicit, fused.detach(), atol=1e-6, rtol=0)


@torch.no_grad()
def test_padding_mask_is_dropped_once_no_row_holds_fed_padding() -> None:
    """Beam search feeds pad for -inf beams at first; once those rows are reordered away, later steps
    attend without a mask again (fewer ops per step), with the same results."""
    model = _tiny()
    src, prev = _batch()
    prev = prev.clone()
    prev[1, 1] = PAD  # row 1 is fed a pad at step 1
    encoder_out = model.encode(src)
    cache = model.new_cache(3, 7)
    for t in range(3):
        model.decode(prev[:, t : t + 1], encoder_out, cache=cache)
    assert cache.has_padding
    cache.reorder(torch.tensor([1, 2, 1]))  # rows continue original rows 1, 2, 1: the padded row survives
    assert cache.has_padding
    cache.reorder(torch.tensor([1, 1, 1]))  # all continue original row 2: no fed padding left
    assert not cache.has_padding
    rows = torch.tensor([2, 2, 2])
    stepped = model.decode(prev[rows, 3:4], encoder_out.reorder(rows), cache=cache).logits
    full = model.decode(prev[rows, :4], encoder_out.reorder(rows)).logits
    torch.testing.assert_close(stepped[:, 0], full[:, 3], atol=1e-5, rtol=0)


@torch.no_grad()
def test_unpadded_sources_give_cross_attention_no_mask() -> None:
    """No padding: cross-attention gets no mask (a mask keeps SDPA off the flash kernel on a GPU), and the
    outputs equal those of the same batch with an explicit all-False mask."""
    model = _tiny()
    src, prev = _batch()
    unpadded = src[1:2].repeat(2, 1)  # the one row of _batch without padding
    enc = model.encode(unpadded)
    assert not enc.has_padding and enc.attention_mask is None
    assert not enc.reorder(torch.tensor([1, 0, 1])).has_padding
    padded_enc = model.encode(src)
    assert padded_enc.has_padding and padded_enc.attention_mask is padded_enc.padding_mask
    masked = dataclasses.replace(enc, has_padding=True)  # the same batch, mask applied
    rows = prev[:2]
    torch.testing.assert_close(model.decode(rows, enc).logits, model.decode(rows, masked).logits)
    stepped, stepped_masked = (_step_by_step_with(model, e, rows) for e in (enc, masked))
    torch.testing.assert_close(stepped, stepped_masked)


def _step_by_step_with(model: TransformerModel, encoder_out: object, prev: torch.Tensor) -> torch.Tensor:
    cache = model.new_cache(prev.size(0), prev.size(1))
    return torch.cat(
        [model.decode(prev[:, t : t + 1], encoder_out, cache=cache).logits for t in range(prev.size(1))], 1
    )
