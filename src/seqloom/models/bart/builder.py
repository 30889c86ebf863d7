"""Turns a :class:`BARTConfig` into a :class:`BARTModel` with the transformer's builders.

fairseq builds BART as its transformer, then re-initialises every weight with ``init_bert_params``
(N(0, 0.02)); doing the same over the same module tree gives fairseq's initial weights for a seed.
"""

from __future__ import annotations

from seqloom import registry
from seqloom.models.bart.config import BARTConfig
from seqloom.models.bart.model import BARTModel, init_bert_params
from seqloom.models.transformer.builder import Vocabulary, build_encoder_decoder, check_config


def build_model(cfg: BARTConfig, src_dict: Vocabulary, tgt_dict: Vocabulary | None = None) -> BARTModel:
    """BART over ``src_dict`` (and ``tgt_dict``, the same one for ``share_all_embeddings``)."""
    if not isinstance(cfg, BARTConfig):
        raise TypeError(f"bart: expected a BARTConfig, got {type(cfg).__name__} (use an --arch bart_* preset)")
    resolved = cfg.resolved()
    assert isinstance(resolved, BARTConfig)  # dataclasses.replace keeps the class
    cfg = resolved
    tgt_dict = src_dict if tgt_dict is None else tgt_dict
    check_config(cfg, src_dict, tgt_dict)
    encoder, decoder = build_encoder_decoder(cfg, src_dict, tgt_dict)
    model = BARTModel(encoder, decoder, cfg=cfg, eos=_eos(src_dict))
    model.apply(init_bert_params)
    return model


def _eos(vocab: Vocabulary) -> int:
    eos = getattr(vocab, "eos", None)  # stand-in vocabularies of bare checkpoints have no eos(): fairseq's 2
    return int(eos()) if callable(eos) else 2


registry.MODELS.add("bart", BARTModel, config=BARTConfig)
registry.BUILDERS.add("bart", build_model)
