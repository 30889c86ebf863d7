"""Turns a :class:`RobertaConfig` into a :class:`RobertaModel` from seqloom's encoder modules.

Modules are created in fairseq's order (token embedding, positions, embedding norm, layers, final norm, then the
LM head) and the whole model is re-initialised with ``init_bert_params`` (N(0, 0.02)), as fairseq does.
"""

from __future__ import annotations

from typing import cast

from torch import nn

from seqloom import registry
from seqloom.models.bart.model import init_bert_params
from seqloom.models.roberta.config import RobertaConfig
from seqloom.models.roberta.model import LMHead, RobertaEncoder, RobertaModel
from seqloom.models.transformer.builder import Vocabulary, build_encoder_stack
from seqloom.modules.transformer import TransformerEncoder


def build_sentence_encoder(cfg: RobertaConfig, embed_tokens: nn.Embedding) -> TransformerEncoder:
    """fairseq's ``TransformerEncoder`` as RoBERTa configures it (``cfg`` resolved)."""
    assert cfg.max_positions is not None, "pass cfg.resolved()"
    pad = int(embed_tokens.padding_idx if embed_tokens.padding_idx is not None else 1)
    return build_encoder_stack(cfg, embed_tokens, pad=pad, max_positions=cfg.max_positions)


def build_model(cfg: RobertaConfig, src_dict: Vocabulary, tgt_dict: Vocabulary | None = None) -> RobertaModel:
    """RoBERTa over ``src_dict`` (the task's dictionary, ``<mask>`` included)."""
    if not isinstance(cfg, RobertaConfig):
        raise TypeError(f"roberta: expected a RobertaConfig, got {type(cfg).__name__} (use an --arch roberta* preset)")
    cfg = cfg.resolved()
    cfg.check()
    # a plain table (one draw), as fairseq's RobertaEncoder builds it: a seed then gives fairseq's initial weights
    embed_tokens = nn.Embedding(len(src_dict), cfg.encoder_embed_dim, src_dict.pad())
    sentence_encoder = build_sentence_encoder(cfg, embed_tokens)
    sentence_encoder.apply(init_bert_params)
    tied = None if cfg.untie_weights_roberta else cast(nn.Parameter, embed_tokens.weight)
    lm_head = LMHead(cfg.encoder_embed_dim, len(src_dict), activation=cfg.activation_fn, weight=tied)
    model = RobertaModel(RobertaEncoder(sentence_encoder, lm_head), cfg=cfg)
    model.apply(init_bert_params)
    return model


registry.MODELS.add("roberta", RobertaModel, config=RobertaConfig)
registry.MODELS.add("xlmr", RobertaModel, config=RobertaConfig)  # fairseq's name of XLM-R checkpoints' model
registry.BUILDERS.add("roberta", build_model)
registry.BUILDERS.add("xlmr", build_model)
