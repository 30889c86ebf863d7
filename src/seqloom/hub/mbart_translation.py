"""The translation hub over a model fine-tuned with ``--task translation_from_pretrained_bart`` (mBART).

``TransformerModel.from_pretrained`` hands such checkpoints here, as fairseq's hub builds them through the
checkpoint's task: the dictionaries get the ``[lang]`` tokens of the task's ``langs`` and ``<mask>``, every
source gets ``[src]`` appended after its ``</s>``, generation starts from and ends at ``[tgt]``, which
decoding leaves out. (fairseq 0.12's own hub fails on these checkpoints: its task reads an attribute that is
never set.) ``score`` scores targets as ``generate --score-reference`` does; ``seqloom export`` writes them with their
task and languages, and ``from_pretrained`` builds this hub from the export again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seqloom.data.batching import resolve_max_positions
from seqloom.data.dictionary import Dictionary
from seqloom.hub.codecs import build_codec
from seqloom.hub.spec import PretrainedSpec
from seqloom.hub.translation import Text, TranslationHub


class MBartTranslationHub(TranslationHub):
    """A :class:`TranslationHub` whose sources end with ``[src]`` and whose outputs end with ``[tgt]``."""

    def __init__(self, models: Sequence[nn.Module], *, src_lang_id: int, tgt_lang_id: int, langs: str = "",
                 **parts: Any) -> None:  # fmt: skip
        super().__init__(models, **parts)
        self.src_lang_id, self.tgt_lang_id = src_lang_id, tgt_lang_id
        self.langs = langs  # the task's --langs (comma-separated), which grew the dictionaries
        self.generation_eos = tgt_lang_id

    def _collate_sources(self, batch: list[Tensor]) -> tuple[Tensor, Tensor]:
        return super()._collate_sources([torch.cat([t, t.new_tensor([self.src_lang_id])]) for t in batch])

    def string(self, tokens: Tensor) -> str:
        return self.tgt_dict.string(tokens, extra_symbols_to_ignore={self.tgt_lang_id})

    def reference_ids(self, target: Text) -> Tensor:
        """As :meth:`TranslationHub.reference_ids` (text or ids ending with ``</s>``), then ``[tgt]``, which
        :meth:`score` scores too, as ``generate --score-reference`` scores the task's references."""
        ids = super().reference_ids(target)
        return torch.cat([ids, ids.new_tensor([self.tgt_lang_id])])


def is_mbart_translation(groups: Mapping[str, Any]) -> bool:
    task = groups.get("task") or {}  # an args-layout checkpoint (released mBART models) names it "task"
    return (task.get("_name") or task.get("task")) == "translation_from_pretrained_bart"


def build_mbart_hub(model_dir: Path, groups: Mapping[str, Any], states: Sequence[Mapping[str, Any]],
                    paths: Sequence[Path], spec: PretrainedSpec) -> MBartTranslationHub:  # fmt: skip
    """The hub of ``states`` (their task's languages, dictionaries grown as the task grows them)."""
    from seqloom.models.bart.interop import model_from_state

    langs = str((groups.get("task") or {}).get("langs") or "")
    if not langs:
        raise ValueError(f"{paths[0]}: a translation_from_pretrained_bart checkpoint without its task's langs")
    src_dict, tgt_dict = Dictionary.load(spec.src_dict_path), Dictionary.load(spec.tgt_dict_path)
    for d in (src_dict, tgt_dict):
        for code in langs.split(","):
            d.add_symbol(f"[{code}]")
        d.add_symbol("<mask>")
    models = [model_from_state(state, src_dict, source=str(path)).eval() for state, path in zip(states, paths)]
    limits = [(spec.max_source_positions, spec.max_target_positions), *[m.max_positions() for m in models]]
    hub = MBartTranslationHub(
        models,
        src_lang_id=src_dict.index(f"[{spec.source_lang}]"),
        tgt_lang_id=tgt_dict.index(f"[{spec.target_lang}]"),
        langs=langs,
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
