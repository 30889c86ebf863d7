"""What the generator needs of a model (generation/decoding_model.py): models that offer it decode through the
hub's conversion unchanged; a model that cannot generate is refused with its missing methods named."""

from __future__ import annotations

import pytest
import torch
from scripted_model import ToyDict

from seqloom.generation.config import GenerationConfig
from seqloom.generation.decoding_model import as_decoding_models
from seqloom.generation.generator import SequenceGenerator
from seqloom.models.roberta import RobertaConfig
from seqloom.models.roberta import build_model as build_roberta
from seqloom.models.transformer import TransformerConfig, build_model
from seqloom.models.transformer_lm import build_model as build_lm
from seqloom.models.transformer_lm import presets


def test_a_transformer_and_a_language_model_pass_and_decode() -> None:
    torch.manual_seed(0)
    vocab = ToyDict(20)
    cfg = TransformerConfig(encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_layers=1,
                            encoder_attention_heads=2, decoder_layers=1, decoder_attention_heads=2)  # fmt: skip
    mt = build_model(cfg, vocab, vocab).eval()
    lm_cfg = presets.transformer_lm()
    lm_cfg.decoder_layers, lm_cfg.decoder_embed_dim, lm_cfg.decoder_ffn_embed_dim = 1, 16, 32
    lm_cfg.decoder_attention_heads = 2
    lm = build_lm(lm_cfg, vocab).eval()
    models = as_decoding_models(torch.nn.ModuleList([mt, lm]))
    assert models[0] is mt and models[1] is lm
    src = torch.tensor([[5, 6, 7, vocab.eos()]])
    hyps = SequenceGenerator(models[:1], vocab, GenerationConfig(beam=2, max_len_b=5)).generate(src)
    direct = SequenceGenerator([mt], vocab, GenerationConfig(beam=2, max_len_b=5)).generate(src)
    assert [h.tokens.tolist() for h in hyps[0]] == [h.tokens.tolist() for h in direct[0]]


def test_an_encoder_only_model_is_refused_with_what_it_lacks() -> None:
    vocab = ToyDict(20)
    cfg = RobertaConfig(encoder_layers=1, encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_attention_heads=2,
                        max_positions=16)  # fmt: skip
    roberta = build_roberta(cfg, vocab)
    with pytest.raises(TypeError, match=r"RobertaModel cannot generate: it has no encode, decode, new_cache"):
        as_decoding_models([roberta])
    with pytest.raises(TypeError, match=r"Linear cannot generate: .*get_normalized_probs, max_positions"):
        as_decoding_models([torch.nn.Linear(2, 2)])
