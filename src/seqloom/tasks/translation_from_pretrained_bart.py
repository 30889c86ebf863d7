"""``--task translation_from_pretrained_bart``: fine-tuning a multilingual denoising model (mBART) to translate.

As fairseq's task of that name: both dictionaries get one ``[lang]`` symbol per ``--langs`` entry (in that
order, as in pretraining) and ``<mask>``, so that their sizes match the pretrained checkpoint. Each source
ends with ``[src]`` after its ``</s>`` and each target with ``[tgt]``; ``[tgt]`` also starts the decoder
input and ends generated targets (the generator's eos). ``--prepend-bos`` puts ``<s>`` first in both, as
in mBART pretraining. Interactive inputs get ``[src]`` appended (no ``<s>``, as in fairseq).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import Tensor

from seqloom import registry
from seqloom.config.options import field
from seqloom.data.dictionary import Dictionary
from seqloom.data.language_pair_dataset import AffixTokens, InMemoryTokens, LanguagePairDataset, TokenDataset
from seqloom.tasks.translation import TranslationConfig, TranslationTask


@dataclass(kw_only=True)
class TranslationFromPretrainedBARTConfig(TranslationConfig):
    """Options of ``--task translation_from_pretrained_bart`` (fairseq's names and defaults)."""

    langs: Optional[str] = field(
        None,
        help="the pretrained model's languages, comma-separated and in its order (such as en,de,fr); all of them, even those not fine-tuned on, since each gets a token",
    )
    prepend_bos: bool = field(False, help="start each sentence with <s>, as mBART pretraining did")


@registry.TASKS.register("translation_from_pretrained_bart", config=TranslationFromPretrainedBARTConfig)
class TranslationFromPretrainedBARTTask(TranslationTask):
    """Translation with language tokens after each sentence, for models initialized from mBART."""

    cfg: TranslationFromPretrainedBARTConfig

    def __init__(self, cfg: TranslationFromPretrainedBARTConfig, src_dict: Dictionary, tgt_dict: Dictionary, *,
                 dataset_impl: str | None = None) -> None:  # fmt: skip
        super().__init__(cfg, src_dict, tgt_dict, dataset_impl=dataset_impl)
        if not cfg.langs:
            raise ValueError(
                "translation_from_pretrained_bart: --langs is required, the pretraining languages in their "
                "order (e.g. --langs ar_AR,cs_CZ,de_DE,en_XX,...)"
            )
        ignored = [flag for flag, used in (("--truncate-source", cfg.truncate_source),
                                           ("--num-batch-buckets", cfg.num_batch_buckets > 0)) if used]  # fmt: skip
        if ignored:  # fairseq's task passes neither to its dataset: refused rather than silently ignored
            raise ValueError(f"translation_from_pretrained_bart: {', '.join(ignored)} is not supported by this task")
        self.lang_codes = cfg.langs.split(",")
        for lang in self.langs:
            if lang not in self.lang_codes:
                raise ValueError(f"translation_from_pretrained_bart: language {lang!r} is not in --langs {cfg.langs}")
        for d in (src_dict, tgt_dict):
            for code in self.lang_codes:
                d.add_symbol(f"[{code}]")
            d.add_symbol("<mask>")

    @property
    def generation_eos(self) -> int:
        """``[tgt]``: generated targets end with it (and the decoder starts from it)."""
        return int(self.tgt_dict.index(f"[{self.langs[1]}]"))

    def _pair_dataset(self, src: TokenDataset, tgt: TokenDataset, split: str) -> LanguagePairDataset:
        src_lang, tgt_lang = self.langs
        bos = self.src_dict.bos() if self.cfg.prepend_bos else None
        src = AffixTokens(src, prepend=bos, append=self.src_dict.index(f"[{src_lang}]"))
        tgt = AffixTokens(tgt, prepend=bos, append=self.generation_eos)
        return LanguagePairDataset(
            src,
            self.src_dict,
            tgt,
            self.tgt_dict,
            left_pad_source=self.cfg.left_pad_source,
            left_pad_target=self.cfg.left_pad_target,
            shuffle=True,  # fairseq's task shuffles every split, the test split included (translation does not)
            pad_to_multiple=self.pad_to_multiple,
            eos=self.generation_eos,
        )

    def build_dataset_for_inference(self, tokens: list[Tensor]) -> LanguagePairDataset:
        src_id = self.src_dict.index(f"[{self.langs[0]}]")
        return LanguagePairDataset(AffixTokens(InMemoryTokens(tokens), append=src_id), self.src_dict, None,
                                   self.tgt_dict, left_pad_source=self.cfg.left_pad_source)  # fmt: skip
