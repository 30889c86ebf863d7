"""fairseq RoBERTa / XLM-R checkpoints <-> seqloom's :class:`RobertaModel`.

fairseq 0.9-0.12 RoBERTa checkpoints (and seqloom's own) load with the module names as they are. What fairseq
does on top when it loads RoBERTa weights, done here too:

================================================  ======================================================
checkpoint                                         what happens
================================================  ======================================================
``decoder.*`` (fairseq <= 0.9 RoBERTa)             renamed ``encoder.*``
``*.emb_layer_norm.*``                             renamed ``*.layernorm_embedding.*``
fused ``in_proj_weight``/``in_proj_bias``          split into ``q_proj``/``k_proj``/``v_proj``
``encoder.sentence_encoder.embed_positions``        kept: learned positions, offset ``pad + 1`` (514 rows for
                                                   512 positions in roberta.base and xlmr.base)
``classification_heads.{name}.*`` the model lacks  from_pretrained / ``--load-checkpoint-heads``: registered;
                                                   otherwise dropped with a warning
a head of other sizes than the model's             dropped with a warning (the model's is kept)
a head of the model missing from the checkpoint    the model's (fresh) head is kept (GLUE fine-tuning)
``encoder.lm_head.weight``                         the embedding matrix itself unless
                                                   ``--untie-weights-roberta`` (the tie survives loading)
================================================  ======================================================

The vocabulary: the masked_lm and sentence_prediction tasks append ``<mask>`` to ``dict.txt``, so the rows are
4 specials + ``dict.txt`` + ``<mask>``: 50,265 for roberta.base (GPT-2 BPE), 250,002 for xlmr.base
(SentencePiece; its ``dict.txt`` has 249,997 lines).
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from seqloom import registry
from seqloom.checkpoint.io import load_checkpoint
from seqloom.models.roberta.builder import build_model
from seqloom.models.roberta.config import RobertaConfig
from seqloom.models.roberta.model import RobertaModel
from seqloom.models.transformer.builder import Vocabulary
from seqloom.models.transformer.interop import _coerce, _is_optional, fairseq_model_args
from seqloom.modules.skip_init import build_and_load

FAIRSEQ_ARCHS = ("roberta", "xlmr", "roberta_base", "roberta_large", "roberta_prenorm", "xlm")


def config_from_fairseq_args(args: Mapping[str, Any]) -> RobertaConfig:
    """A :class:`RobertaConfig` from fairseq's flat model options over the ``arch`` preset."""
    arch = str(args.get("arch") or args.get("_name") or "roberta")
    if arch in registry.ARCHITECTURES and registry.ARCHITECTURES.get(arch).model == "roberta":
        base = registry.ARCHITECTURES.get(arch).preset()
    elif arch in FAIRSEQ_ARCHS or arch.startswith(("roberta", "xlmr")):
        base = RobertaConfig()
    else:
        raise ValueError(f"checkpoint holds a {arch!r} model, not RoBERTa (load it with its own family's loader)")
    hints = typing.get_type_hints(RobertaConfig)
    updates: dict[str, Any] = {}
    for f in dataclasses.fields(RobertaConfig):
        if f.name in args:
            value = _coerce(args[f.name], hints[f.name])
            if value is not None or _is_optional(hints[f.name]):
                updates[f.name] = value
    if updates.get("max_positions") is None and isinstance(args.get("max_source_positions"), int):
        updates["max_positions"] = args["max_source_positions"]
    return dataclasses.replace(base, **updates)


def config_from_checkpoint(state: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> RobertaConfig:
    """The resolved model config of a loaded RoBERTa checkpoint dict (``overrides`` replace options by name)."""
    return config_from_fairseq_args({**fairseq_model_args(state), **(overrides or {})}).resolved()


def check_vocab_size(sd: Mapping[str, Tensor], size: int, *, source: str) -> None:
    """A clear error when the dictionary (``<mask>`` included) and the checkpoint's embedding table disagree."""
    for key in ("encoder.sentence_encoder.embed_tokens.weight", "decoder.sentence_encoder.embed_tokens.weight"):
        table = sd.get(key)
        if table is not None and table.shape[0] != size:
            raise ValueError(
                f"{source}: {key} has {table.shape[0]} rows but the dictionary has {size} symbols (with <mask>); "
                "load the dict.txt the model was trained with (data_name_or_path=DIR)"
            )


def model_from_state(state: Mapping[str, Any], dictionary: Vocabulary, *, source: str,
                     load_checkpoint_heads: bool = True, overrides: Mapping[str, Any] | None = None,
                     random_init: bool = False) -> RobertaModel:  # fmt: skip
    """The RoBERTa model of a loaded checkpoint dict, weights loaded strictly (heads registered first unless
    ``load_checkpoint_heads`` is False); the build skips the random initialisation unless ``random_init``
    (:func:`seqloom.modules.skip_init.build_and_load`)."""
    cfg = config_from_checkpoint(state, {**(overrides or {}), "load_checkpoint_heads": load_checkpoint_heads})
    if not isinstance(state.get("model"), Mapping):
        raise ValueError(f"checkpoint {source}: has no 'model' state dict (is it an optimizer-only file?)")
    sd = dict(state["model"])
    check_vocab_size(sd, len(dictionary), source=source)
    return build_and_load(lambda: build_model(cfg, dictionary), sd, random_init=random_init)


def load_fairseq_roberta(path: str | os.PathLike[str], dictionary: Vocabulary) -> RobertaModel:
    """Reads a fairseq (or seqloom) RoBERTa checkpoint file into an eval-mode model."""
    return model_from_state(load_checkpoint(path), dictionary, source=str(path)).eval()


def _load_for_task(state: Mapping[str, Any], src_dict: Vocabulary, tgt_dict: Vocabulary | None = None, *,
                   source: str = "checkpoint", overrides: Mapping[str, Any] | None = None,
                   random_init: bool = False) -> RobertaModel:  # fmt: skip
    """``registry.CHECKPOINT_LOADERS``' signature: RoBERTa has one dictionary, the source's."""
    return model_from_state(state, src_dict, source=source, overrides=overrides, random_init=random_init)


registry.CHECKPOINT_LOADERS.add("roberta", _load_for_task)
registry.CHECKPOINT_LOADERS.add("xlmr", _load_for_task)
