"""The translation hub over a many-to-many model trained with ``--task translation_multi_simple_epoch``.

``TransformerModel.from_pretrained(dir, ..., source_lang='en', target_lang='es')`` hands such checkpoints here,
as fairseq's hub builds them through the checkpoint's task: the dictionaries get the task's language tokens
(``__xx__``, or ``[xx]`` and ``<mask>`` with ``--lang-tok-style mbart``) in the task's language order, sources
start with the ``--encoder-langtok`` token, and with ``--decoder-langtok`` every translation is forced to start
with the target language's token, which decoding leaves out. ``score`` scores each target after that token
(and the token), as ``generate --score-reference`` does; fairseq's hub ``score`` fails on translation models.
Transformer and BART-architecture models (mBART-50-style fine-tuning, ``--arch mbart_large``) are both taken.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seqloom.data.dictionary import Dictionary
from seqloom.generation.config import GenerationConfig
from seqloom.generation.decoding_model import as_decoding_models
from seqloom.generation.generator import SequenceGenerator
from seqloom.generation.hypotheses import Hypothesis
from seqloom.hub.spec import PretrainedSpec
from seqloom.hub.translation import Text, TranslationHub, _unsort

TASK = "translation_multi_simple_epoch"


class MultilingualTranslationHub(TranslationHub):
    """A :class:`TranslationHub` for one direction of a many-to-many model (language tokens added and stripped)."""

    # translation_multi_simple_epoch seeds numpy with its plain seed (1) while ordering sentences
    order_seed = 1

    def __init__(self, models: Sequence[nn.Module], *, src_langtok: int | None, tgt_langtok: int | None,
                 languages: Mapping[str, Any] | None = None, **parts: Any) -> None:  # fmt: skip
        """``languages``: the task's language options, the languages resolved into ``langs`` (export writes them)."""
        super().__init__(models, **parts)
        self.src_langtok, self.tgt_langtok = src_langtok, tgt_langtok
        self.languages = dict(languages or {})

    def _collate_sources(self, batch: list[Tensor]) -> tuple[Tensor, Tensor]:
        if self.src_langtok is not None:
            batch = [torch.cat([t.new_tensor([self.src_langtok]), t]) for t in batch]
        return super()._collate_sources(batch)

    def inference_step(self, cfg: GenerationConfig, batch: list[Tensor], constraints: Tensor | None = None,
                       prefix_tokens: Tensor | None = None) -> list[list[Hypothesis]]:  # fmt: skip
        """As :meth:`TranslationHub.inference_step`; with ``--decoder-langtok`` the forced prefix starts with the
        target language token, then ``prefix_tokens``."""
        src_tokens, order = self._collate_sources(batch)
        packed = constraints[order].to(src_tokens.device) if constraints is not None else None
        prefix = prefix_tokens[order] if prefix_tokens is not None else None  # (B, P)
        if self.tgt_langtok is not None:
            langtok = src_tokens.new_full((src_tokens.size(0), 1), self.tgt_langtok)  # (B, 1)
            prefix = langtok if prefix is None else torch.cat([langtok, prefix], dim=1)
        hyps = SequenceGenerator(as_decoding_models(self.models), self.tgt_dict, cfg).generate(
            src_tokens, prefix_tokens=prefix, constraints=packed
        )
        return _unsort(hyps, order)

    def reference_ids(self, target: Text) -> Tensor:
        """As :meth:`TranslationHub.reference_ids`, after the target language token, which :meth:`score` scores
        too (as ``generate --score-reference`` scores the reference)."""
        ids = super().reference_ids(target)
        if self.tgt_langtok is None:
            return ids
        return torch.cat([ids.new_tensor([self.tgt_langtok]), ids])

    def string(self, tokens: Tensor) -> str:
        strip = set() if self.tgt_langtok is None else {self.tgt_langtok}
        return self.tgt_dict.string(tokens, extra_symbols_to_ignore=strip)


def is_multilingual_translation(groups: Mapping[str, Any]) -> bool:
    task = groups.get("task") or {}
    return (task.get("_name") or task.get("task")) == TASK


def is_bart_architecture(groups: Mapping[str, Any]) -> bool:
    """Whether the checkpoint's model is BART-shaped (``--arch mbart_large`` etc., as mBART-50 fine-tuning uses)."""
    model = groups.get("model") or {}
    arch = str(model.get("_name") or model.get("arch") or "")
    return arch == "bart" or arch.startswith(("bart_", "mbart"))


def build_bart_hub(task: Mapping[str, Any], states: Sequence[Mapping[str, Any]], paths: Sequence[Path],
                   spec: PretrainedSpec) -> MultilingualTranslationHub:  # fmt: skip
    """The hub of BART-architecture ``states`` trained with the task (one dictionary shared by both sides);
    ``task``: its language options (:func:`language_options`)."""
    from seqloom.data.batching import resolve_max_positions
    from seqloom.hub.codecs import build_codec
    from seqloom.models.bart.interop import model_from_state

    src_dict, tgt_dict, src_langtok, tgt_langtok, langs = language_dictionaries(spec, task)
    models = [model_from_state(state, src_dict, source=str(path)).eval() for state, path in zip(states, paths)]
    limits = [(spec.max_source_positions, spec.max_target_positions), *[m.max_positions() for m in models]]
    hub = MultilingualTranslationHub(
        models,
        src_langtok=src_langtok,
        tgt_langtok=tgt_langtok,
        languages=resolved_languages(task, langs),
        src_dict=src_dict,
        tgt_dict=tgt_dict,
        tokenizer=build_codec("tokenizer", spec.tokenizer),
        bpe=build_codec("bpe", spec.bpe),
        generation=spec.generation,
        batching=spec.batching,
        max_positions=resolve_max_positions(*limits),
        left_pad_source=spec.left_pad_source,
    )
    hub.spec = spec  # what seqloom export copies
    return hub


# the task options a hub reads (from the checkpoint, or from_pretrained keywords of these names)
LANGUAGE_OPTIONS = ("langs", "lang_dict", "lang_pairs", "lang_tok_style", "encoder_langtok", "decoder_langtok")


def language_options(task: Mapping[str, Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint's language options, overridden by the ``from_pretrained`` keywords of the same names."""
    return {k: kwargs[k] if k in kwargs else task.get(k) for k in LANGUAGE_OPTIONS}


def language_dictionaries(
    spec: PretrainedSpec, task: Mapping[str, Any]
) -> tuple[Dictionary, Dictionary, int | None, int | None, list[str]]:
    """The source and target dictionaries with the task's language tokens, the source/target language tokens
    the hub adds (None where the task adds none), and the languages in token order."""
    from seqloom.tasks.translation_multi_simple_epoch import (
        TranslationMultiSimpleEpochConfig,
        file_or_value,
        lang_token,
        language_list,
    )

    cfg = TranslationMultiSimpleEpochConfig(langs=task.get("langs") or None, lang_dict=task.get("lang_dict"))
    if isinstance(cfg.langs, (list, tuple)):  # fairseq stores --langs as a parsed list
        cfg.langs = ",".join(cfg.langs)
    if cfg.lang_dict and not cfg.langs and not Path(cfg.lang_dict).is_file():
        raise FileNotFoundError(
            f"{TASK}: the model's --lang-dict {cfg.lang_dict} is not here; pass lang_dict='path/to/langs.txt' (or "
            "langs='en,fr,...', in the training order) to from_pretrained"
        )
    if cfg.langs:
        cfg.lang_dict = None
    pairs = task.get("lang_pairs") or []
    if isinstance(pairs, str):
        pairs = file_or_value(pairs).split(",")
    langs = language_list(cfg, [str(p).split("-") for p in pairs])
    style = str(task.get("lang_tok_style") or "multilingual")
    dicts = []
    for path in (spec.src_dict_path, spec.tgt_dict_path):
        d = Dictionary.load(path)
        for lang in langs:
            d.add_symbol(lang_token(lang, style))
        if style == "mbart":
            d.add_symbol("<mask>")
        dicts.append(d)
    src_dict, tgt_dict = dicts

    def index(d: Dictionary, lang: str) -> int:
        i = d.index(lang_token(lang, style))
        if i == d.unk():
            raise ValueError(f"{TASK}: language {lang!r} is not one of the model's languages {langs}")
        return int(i)

    encoder = task.get("encoder_langtok")
    src_langtok = None
    if encoder is not None:
        src_langtok = index(src_dict, spec.source_lang if str(encoder).startswith("src") else spec.target_lang)
    tgt_langtok = index(tgt_dict, spec.target_lang) if task.get("decoder_langtok") else None
    return src_dict, tgt_dict, src_langtok, tgt_langtok, langs


def resolved_languages(task: Mapping[str, Any], langs: Sequence[str]) -> dict[str, Any]:
    """``task``'s language options with its languages spelled out as ``langs`` (for an export)."""
    return {"langs": ",".join(langs), "lang_tok_style": str(task.get("lang_tok_style") or "multilingual"),
            "encoder_langtok": task.get("encoder_langtok"), "decoder_langtok": bool(task.get("decoder_langtok"))}  # fmt: skip
