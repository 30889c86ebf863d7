"""BART model: presets, fairseq's key layout (published bart.base/bart.large), strict fixture loading, heads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seqloom import registry
from seqloom.checkpoint.io import load_checkpoint
from seqloom.hub.bart import load_dictionary
from seqloom.models.bart import BARTConfig, BARTModel, build_model
from seqloom.models.bart.config import bart_base, bart_large, mbart_base, mbart_large
from seqloom.models.bart.interop import config_from_checkpoint, model_from_state


class Vocab:
    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def pad(self) -> int:
        return 1

    def eos(self) -> int:
        return 2


def test_presets_are_fairseqs() -> None:
    assert registry.ARCHITECTURES.get("bart_base").model == "bart"
    large, base = bart_large().resolved(), bart_base().resolved()
    assert (large.encoder_embed_dim, large.encoder_ffn_embed_dim, large.encoder_layers) == (1024, 4096, 12)
    assert (large.decoder_embed_dim, large.decoder_layers, large.decoder_attention_heads) == (1024, 12, 16)
    assert (base.encoder_embed_dim, base.encoder_ffn_embed_dim, base.encoder_attention_heads) == (768, 3072, 12)
    for cfg in (large, base):
        assert cfg.encoder_learned_pos and cfg.decoder_learned_pos and cfg.layernorm_embedding
        assert cfg.share_all_embeddings and cfg.share_decoder_input_output_embed and cfg.no_scale_embedding
        assert (cfg.activation_fn, cfg.pooler_activation_fn, cfg.pooler_dropout) == ("gelu", "tanh", 0.0)
    assert not mbart_large().no_scale_embedding and not mbart_base().no_scale_embedding
    assert mbart_base().encoder_embed_dim == 768


@pytest.mark.parametrize("preset,dim,layers,params", [(bart_base, 768, 6, 139_420_416)])
def test_published_bart_layout_from_preset(preset: object, dim: int, layers: int, params: int) -> None:
    """bart.base's state dict: 50,265 symbols (dict.txt + 4 specials + <mask>), 1,026 learned positions."""
    with torch.device("meta"):
        model = build_model(preset(), Vocab(50265))  # type: ignore[operator]
    sd = model.state_dict()
    assert sd["encoder.embed_tokens.weight"].shape == (50265, dim)
    assert sd["decoder.output_projection.weight"].shape == (50265, dim)
    assert sd["encoder.embed_positions.weight"].shape == (1026, dim)
    assert sd["decoder.embed_positions.weight"].shape == (1026, dim)
    assert sd["encoder.layernorm_embedding.weight"].shape == (dim,)
    assert f"encoder.layers.{layers - 1}.fc1.weight" in sd and f"encoder.layers.{layers}.fc1.weight" not in sd
    assert "decoder.layers.0.encoder_attn.k_proj.weight" in sd and "decoder.layer_norm.weight" not in sd
    unique = {id(p): p for p in model.parameters()}
    assert sum(p.numel() for p in unique.values()) == params  # one shared embedding table


def test_bart_large_key_count_from_preset() -> None:
    with torch.device("meta"):
        model = build_model(bart_large(), Vocab(50265))
    sd = model.state_dict()
    assert sd["encoder.embed_positions.weight"].shape == (1026, 1024)
    # fairseq's bart.large: 12 * 16 encoder + 12 * 26 decoder layer tensors, embeddings, norms, versions
    assert sum(k.startswith("encoder.layers.") for k in sd) == 12 * 16
    assert sum(k.startswith("decoder.layers.") for k in sd) == 12 * 26


def test_fixture_checkpoint_loads_strictly(fairseq_fixtures: Path) -> None:
    folder = fairseq_fixtures / "bart" / "model"
    state = load_checkpoint(folder / "model.pt")
    dictionary = load_dictionary(folder / "dict.txt")
    assert len(dictionary) == 4089 and dictionary.index("<mask>") == 4088
    cfg = config_from_checkpoint(state)
    assert isinstance(cfg, BARTConfig) and cfg.encoder_embed_dim == 64 and cfg.encoder_layers == 2
    model = model_from_state(state, dictionary, source="model.pt")
    sd = model.state_dict()
    assert set(sd) == set(state["model"])  # fairseq's keys exactly
    for key, value in state["model"].items():
        assert torch.equal(sd[key], value), key


def test_training_forward_gives_vocab_logits(fairseq_fixtures: Path) -> None:
    folder = fairseq_fixtures / "bart" / "model"
    model = model_from_state(load_checkpoint(folder / "model.pt"), load_dictionary(folder / "dict.txt"), source="x")
    model.eval()
    src = torch.tensor([[0, 494, 44, 97, 2], [0, 494, 44, 2, 1]])
    prev = torch.tensor([[2, 0, 494, 44, 97], [2, 0, 494, 44, 1]])
    out = model(src, None, prev)
    assert out.logits.shape == (2, 5, 4089)
    feats = model(src, None, prev, features_only=True).logits
    assert feats.shape == (2, 5, 64)
    assert torch.allclose(model.decoder.output_projection(feats), out.logits, atol=1e-5)


def test_classification_heads_keys_and_restore() -> None:
    torch.manual_seed(0)
    cfg = BARTConfig(encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_layers=1, decoder_layers=1,
                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_learned_pos=True,
                     decoder_learned_pos=True, share_all_embeddings=True, layernorm_embedding=True)  # fmt: skip
    model = build_model(cfg, Vocab(20))
    model.register_classification_head("sentence_classification_head", 3)
    keys = {k for k in model.state_dict() if k.startswith("classification_heads.")}
    assert keys == {f"classification_heads.sentence_classification_head.{m}.{p}"
                    for m in ("dense", "out_proj") for p in ("weight", "bias")}  # fmt: skip
    src = torch.tensor([[0, 5, 6, 2], [0, 7, 2, 1]])
    logits = model(
        src, None, torch.tensor([[2, 0, 5, 6], [2, 0, 7, 1]]), classification_head_name="sentence_classification_head"
    ).logits
    assert logits.shape == (2, 3)
    # a pretrained checkpoint without the head restores into the fine-tuning model (fairseq's upgrade):
    pretrained = build_model(cfg, Vocab(20)).state_dict()
    model.load_state_dict(pretrained, strict=True)
    assert torch.equal(model.encoder.embed_tokens.weight, pretrained["encoder.embed_tokens.weight"])
    # a head the model does not have is dropped; one more embedding row (<mask>) is cut off
    extra = dict(model.state_dict())
    extra["classification_heads.other.dense.weight"] = torch.zeros(16, 16)
    extra["classification_heads.other.out_proj.weight"] = torch.zeros(2, 16)
    grown = torch.cat([extra["encoder.embed_tokens.weight"], torch.ones(1, 16)])
    for key in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.output_projection.weight"):
        extra[key] = grown
    model.load_state_dict(extra, strict=True)
    assert model.encoder.embed_tokens.weight.shape[0] == 20


def test_seeded_init_is_bert_like() -> None:
    torch.manual_seed(1)
    model = build_model(bart_base().__class__(encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_layers=1,
                                              decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                                              share_all_embeddings=True), Vocab(100))  # fmt: skip
    w = model.encoder.layers[0].fc1.weight.detach()
    assert abs(float(w.std()) - 0.02) < 0.003 and float(model.encoder.layers[0].fc1.bias.detach().abs().max()) == 0.0
    assert isinstance(model, BARTModel)


# fairseq 0.12.3.1: torch.manual_seed(1); task.build_model(args) for the BART fixture's recipe (bart_base, 2+2
# layers, d64, FFN 128, 4 heads) over bart/data-bin's dictionary + <mask>: flat values [100:103] and abs sums
FAIRSEQ_INIT = {
    "encoder.embed_tokens.weight": ([0.0074479, 0.0004952, 0.0275442], 4166.7083),
    "decoder.layers.1.encoder_attn.q_proj.weight": ([0.0013899, -0.0205038, -0.0172867], 64.9659),
    "decoder.layers.1.fc2.weight": ([-0.0292059, 0.0134982, -0.0120746], 131.3714),
}


def test_seeded_build_draws_fairseqs_initial_weights() -> None:
    cfg = BARTConfig(**{**vars(bart_base()), "encoder_layers": 2, "decoder_layers": 2, "encoder_embed_dim": 64,
                        "decoder_embed_dim": 64, "encoder_ffn_embed_dim": 128, "decoder_ffn_embed_dim": 128,
                        "encoder_attention_heads": 4, "decoder_attention_heads": 4})  # fmt: skip
    torch.manual_seed(1)
    sd = build_model(cfg, Vocab(4089)).state_dict()
    for key, (values, abs_sum) in FAIRSEQ_INIT.items():
        assert sd[key].flatten()[100:103].tolist() == pytest.approx(values, abs=1e-7), key
        assert float(sd[key].double().abs().sum()) == pytest.approx(abs_sum, abs=1e-3), key


def test_family_dispatch_builds_bart(fairseq_fixtures: Path) -> None:
    """``seqloom validate`` (models.loading) builds BART from a fairseq BART checkpoint."""
    from seqloom.models.loading import model_family
    from seqloom.models.loading import model_from_state as any_from_state

    folder = fairseq_fixtures / "bart" / "model"
    state = load_checkpoint(folder / "model.pt")
    dictionary = load_dictionary(folder / "dict.txt")
    assert model_family(state) == "bart"
    assert isinstance(any_from_state(state, dictionary, dictionary, source="model.pt"), BARTModel)


def test_generation_loads_bart_checkpoints(fairseq_fixtures: Path) -> None:
    """``seqloom generate --path`` (cli.model_loading) builds BART, e.g. a summarizer fine-tuned with translation."""
    from seqloom.cli.model_loading import load_ensemble

    folder = fairseq_fixtures / "bart" / "model"
    dictionary = load_dictionary(folder / "dict.txt")
    task = type("Task", (), {"source_dictionary": dictionary, "target_dictionary": dictionary})()
    (model,) = load_ensemble(str(folder / "model.pt"), task)
    assert isinstance(model, BARTModel) and not model.training
