"""transformer_lm: presets as fairseq's, strict loading of fairseq's checkpoint, cached == full decoding,
adaptive input/softmax equal to fairseq's outputs on the same weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from seqloom import registry
from seqloom.checkpoint import load_checkpoint
from seqloom.components import import_builtins
from seqloom.data.dictionary import Dictionary
from seqloom.models.transformer_lm import build_model, config_from_checkpoint, load_fairseq_lm, presets

HERE = Path(__file__).resolve().parent
REFS = HERE.parent / "fixtures" / "transformer_lm"


class Vocab:
    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def pad(self) -> int:
        return 1


@pytest.fixture(scope="module")
def lm(fairseq_fixtures: Path):
    dictionary = Dictionary.load(str(fairseq_fixtures / "lm" / "data-bin" / "dict.txt"))
    return load_fairseq_lm(fairseq_fixtures / "lm" / "checkpoints" / "checkpoint_best.pt", dictionary), dictionary


def test_presets_follow_fairseq() -> None:
    import_builtins()
    names = {n for n in registry.ARCHITECTURES.names() if registry.ARCHITECTURES.get(n).model == "transformer_lm"}
    assert {"transformer_lm", "transformer_lm_big", "transformer_lm_baevski_wiki103", "transformer_lm_gpt",
            "transformer_lm_gpt2_small", "transformer_lm_gpt2_medium", "transformer_lm_gpt2_big"} <= names  # fmt: skip
    base = presets.transformer_lm().resolved()
    assert (base.decoder_normalize_before, base.decoder_input_dim, base.decoder_output_dim) == (False, 512, 512)
    small = dataclasses.replace(presets.transformer_lm(), decoder_embed_dim=64).resolved()
    assert (small.decoder_input_dim, small.decoder_output_dim) == (512, 512)  # fairseq's quirk
    big = dataclasses.replace(presets.transformer_lm_big(), decoder_embed_dim=64).resolved()
    assert (big.decoder_normalize_before, big.decoder_input_dim, big.decoder_layers) == (True, 64, 12)
    gpt2 = presets.transformer_lm_gpt2_big()
    assert (gpt2.decoder_embed_dim, gpt2.decoder_ffn_embed_dim, gpt2.decoder_layers, gpt2.decoder_attention_heads) == (
        1600, 6400, 48, 25)  # fmt: skip
    assert gpt2.activation_fn == "gelu" and gpt2.attention_dropout == 0.1
    wiki = presets.transformer_lm_baevski_wiki103()
    assert (wiki.decoder_layers, wiki.decoder_embed_dim, wiki.adaptive_softmax_cutoff, wiki.dropout) == (
        16, 1024, "20000,60000", 0.3)  # fmt: skip
    assert wiki.tie_adaptive_weights and wiki.tie_adaptive_proj and wiki.no_decoder_final_norm
    assert presets.transformer_lm_gpt2_medium().decoder_attention_heads == 20


def test_fixture_checkpoint_loads_strictly_with_fairseq_shapes(lm, fairseq_fixtures: Path) -> None:
    model, _ = lm
    state = load_checkpoint(fairseq_fixtures / "lm" / "checkpoints" / "checkpoint_best.pt")
    cfg = config_from_checkpoint(state)
    assert (cfg.decoder_embed_dim, cfg.decoder_input_dim, cfg.max_target_positions) == (64, 512, 128)
    sd = model.state_dict()
    assert set(sd) == set(state["model"])
    assert sd["decoder.project_in_dim.weight"].shape == (64, 512)
    assert sd["decoder.project_out_dim.weight"].shape == (512, 64)
    assert model.decoder.output_projection.weight is model.decoder.embed_tokens.weight
    assert sum(p.numel() for p in model.parameters()) == 816_512
    assert model.max_positions() == (128, 128)


def test_cached_decoding_equals_full_forward(lm) -> None:
    model, dictionary = lm
    tokens = torch.randint(4, len(dictionary), (3, 12))
    with torch.no_grad():
        full = model.get_normalized_probs(model(tokens).logits)  # (B, T, V)
        cache = model.new_cache(3, 12)
        steps = [model.get_normalized_probs(model.decode(tokens[:, t : t + 1], None, cache=cache).logits)
                 for t in range(12)]  # fmt: skip
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        picked = model.target_log_probs(model(tokens).logits, tokens)  # (B, T) without the (B, T, V) softmax
    torch.testing.assert_close(picked, full.gather(-1, tokens.unsqueeze(-1)).squeeze(-1), atol=1e-5, rtol=1e-5)
    enc = model.encode(tokens)
    assert enc.out.shape[:2] == (3, 0) and enc.reorder(torch.tensor([2, 2, 0])).padding_mask.shape == (3, 0)


@pytest.mark.parametrize("name, tie", [("adaptive_tied.pt", True), ("adaptive_untied.pt", False)])
def test_adaptive_input_and_softmax_equal_fairseq(name: str, tie: bool) -> None:
    """References: fairseq's wiki103 arch shrunk (tests/fixtures/transformer_lm/make_adaptive_reference.py)."""
    ref = torch.load(REFS / name)
    cfg = dataclasses.replace(
        presets.transformer_lm_baevski_wiki103(), decoder_embed_dim=32, decoder_ffn_embed_dim=64, decoder_layers=2,
        decoder_attention_heads=4, adaptive_input_cutoff="50,120", adaptive_softmax_cutoff="50,120",
        tokens_per_sample=64, tie_adaptive_proj=tie, tie_adaptive_weights=tie,
    )  # fmt: skip
    model = build_model(cfg, Vocab(ref["vocab"])).eval()
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in ref["sd"].items()}
    model.load_state_dict(ref["sd"], strict=True)
    tokens = ref["toks"]
    with torch.no_grad():
        features = model(tokens).logits
        lprobs = model.get_normalized_probs(features)
        restricted = model.get_normalized_probs(features, target=tokens)
    keep = tokens.ne(1)
    torch.testing.assert_close(lprobs[keep], ref["lp"][keep], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lprobs.logsumexp(-1), torch.zeros(tokens.shape), atol=1e-5, rtol=0)
    idx = tokens.unsqueeze(-1)
    torch.testing.assert_close(restricted.gather(-1, idx), lprobs.gather(-1, idx))
    torch.testing.assert_close(model.target_log_probs(features, tokens), lprobs.gather(-1, idx).squeeze(-1))


def test_normformer_equals_fairseq_in_full_and_cached_decoding() -> None:
    """--scale-attn --scale-fc --scale-heads --scale-resids with fairseq's weights (its scale parameters
    drawn at random: tests/fixtures/transformer_lm/make_normformer_reference.py): the same state-dict keys
    in the same order, and the same log-probs, also step by step."""
    ref = torch.load(REFS / "normformer.pt")
    cfg = dataclasses.replace(
        presets.transformer_lm(), decoder_embed_dim=32, decoder_input_dim=32, decoder_output_dim=32,
        decoder_ffn_embed_dim=64, decoder_layers=2,
        decoder_attention_heads=4, tokens_per_sample=64, share_decoder_input_output_embed=True,
        decoder_normalize_before=True, scale_attn=True, scale_fc=True, scale_heads=True, scale_resids=True,
    )  # fmt: skip
    model = build_model(cfg, Vocab(ref["vocab"])).eval()
    assert [(k, v.shape) for k, v in model.state_dict().items()] == [(k, v.shape) for k, v in ref["sd"].items()]
    model.load_state_dict(ref["sd"], strict=True)
    tokens = ref["toks"]
    keep = tokens.ne(1)
    with torch.no_grad():
        lprobs = model.get_normalized_probs(model(tokens).logits)
        cache = model.new_cache(2, 10)
        steps = [model.get_normalized_probs(model.decode(tokens[:2, t : t + 1], None, cache=cache).logits)
                 for t in range(10)]  # fmt: skip
    torch.testing.assert_close(lprobs[keep], ref["lp"][keep], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(steps, dim=1), ref["lp"][:2], atol=1e-5, rtol=1e-5)
    plain = build_model(dataclasses.replace(cfg, scale_attn=False, scale_fc=False, scale_heads=False,
                                            scale_resids=False), Vocab(ref["vocab"]))  # fmt: skip
    assert not any(k.endswith(("c_attn", "w_resid")) or "attn_ln" in k for k in plain.state_dict())


def test_unsupported_and_inconsistent_flags_are_named() -> None:
    with pytest.raises(NotImplementedError, match="--character-embeddings"):
        build_model(dataclasses.replace(presets.transformer_lm(), character_embeddings=True), Vocab(10))
    with pytest.raises(ValueError, match="--adaptive-input"):
        build_model(dataclasses.replace(presets.transformer_lm(), tie_adaptive_weights=True), Vocab(10))
    bad = dataclasses.replace(presets.transformer_lm(), adaptive_softmax_cutoff="5,50")
    with pytest.raises(ValueError, match="larger than the vocabulary"):
        build_model(bad, Vocab(20))


def test_folded_output_projection_equals_the_two_products() -> None:
    """project_out_dim and the vocabulary projection run as one folded product when that is cheaper."""
    cfg = dataclasses.replace(presets.transformer_lm(), decoder_layers=1, decoder_embed_dim=16, dropout=0.0,
                              decoder_ffn_embed_dim=32, decoder_attention_heads=2)  # fmt: skip
    model = build_model(cfg, Vocab(40)).eval()
    decoder = model.decoder
    assert decoder.project_out_dim is not None  # 16 -> 512 -> 40
    assert decoder._fold_is_cheaper(14) and not decoder._fold_is_cheaper(2)  # one decoding step: no fold
    tokens = torch.randint(4, 40, (2, 7))
    for _ in range(2):  # the second round after the weights changed in place: nothing stale may be reused
        with torch.no_grad():
            features, _ = decoder.extract_features(tokens, None)  # (B, T, 512), through project_out_dim
            two_products = decoder.output_projection(features)
            torch.testing.assert_close(model(tokens).logits, two_products, atol=1e-5, rtol=1e-5)
            decoder.project_out_dim.weight.mul_(2.0)
    assert set(model.state_dict()) >= {"decoder.project_out_dim.weight", "decoder.output_projection.weight"}


@pytest.mark.parametrize("embed_dim", [16, 512])  # 16 -> 512 folds the output projection; 512 has none to fold
def test_output_mask_projects_exactly_the_masked_positions(embed_dim: int) -> None:
    cfg = dataclasses.replace(presets.transformer_lm(), decoder_layers=1, decoder_embed_dim=embed_dim, dropout=0.0,
                              decoder_ffn_embed_dim=32, decoder_attention_heads=2)  # fmt: skip
    model = build_model(cfg, Vocab(40)).eval()
    assert model.supports_output_mask
    tokens = torch.randint(4, 40, (3, 6))
    mask = torch.rand(3, 6, generator=torch.Generator().manual_seed(1)) > 0.4
    with torch.no_grad():
        full = model(tokens).logits  # (B, T, V)
        picked = model(tokens, output_mask=mask).logits  # (N, V)
    assert picked.shape == (int(mask.sum()), 40)
    torch.testing.assert_close(picked, full[mask], atol=1e-5, rtol=1e-5)
