"""``--task translation_multi_simple_epoch``: one model for many language pairs (M2M-100, mBART-50), as fairseq's.

For one direction ``-s SRC -t TGT`` (``generate``, ``validate``, ``interactive``, and ``train`` on that pair):
the dictionaries (``--fixed-dictionary``, or ``--source-dict``/``--target-dict``, or ``dict.{lang}.txt``) get
one language token per language of ``--langs``/``--lang-dict`` (else of ``--lang-pairs``, sorted) in that
order, ``__xx__`` (``--lang-tok-style multilingual``) or ``[xx]`` (``mbart``, which also adds ``<mask>``).
``--encoder-langtok src|tgt`` puts the source or target language token before each source sentence;
``--decoder-langtok`` puts the target's before each target sentence, so a generated translation starts with it
(forced, as fairseq's task passes it as the prefix) and the printed text leaves it out (unless
``--keep-inference-langtok``). Data files are ``{split}.{src}-{tgt}.{lang}`` (or ``{tgt}-{src}``), sorted by
length without shuffling, as fairseq's task loads them for one direction.

Training over several ``--lang-pairs`` at once (fairseq's sampled multi-dataset, with temperature sampling and
virtual epochs) is not supported: such a command is refused by name, as are the options that only it reads.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from seqloom import registry
from seqloom.config.options import field
from seqloom.data.dictionary import Dictionary
from seqloom.data.language_pair_dataset import AffixTokens, InMemoryTokens, LanguagePairDataset
from seqloom.tasks.translation import TranslationConfig, TranslationTask, data_paths

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class TranslationMultiSimpleEpochConfig(TranslationConfig):
    """Options of ``--task translation_multi_simple_epoch`` (fairseq's names and defaults)."""

    lang_pairs: Optional[str] = field(
        None, help="comma-separated list of language pairs (in training order): en-de,en-fr,de-fr (or a file of them)"
    )
    keep_inference_langtok: bool = field(
        False, help="keep language tokens in inference output (e.g. for analysis or debugging)"
    )
    sampling_method: Literal["uniform", "temperature", "concat", "RoundRobin"] = field(
        "concat", help="the method to sample data per language pairs (training over --lang-pairs: not supported)"
    )
    sampling_temperature: float = field(1.5, help="only work with --sampling-method temperature")
    langs: Optional[str] = field(
        None,
        help="a list of comma sperated languages which can appear in lang-pairs; note that the ordering determines "
        "language token IDs",
    )
    lang_dict: Optional[str] = field(
        None,
        help="an external file which contains a list of languages which can appear in lang-pairs; note that the "
        "ordering determines language token IDs; --langs and --lang-dict are two exclusive options",
    )
    source_dict: Optional[str] = field(
        None, help="path to source dictionary; if specified it will override per language dictionary loading"
    )
    target_dict: Optional[str] = field(
        None, help="path to target dictionary; if specified it will override per language dictionary loading"
    )
    lang_tok_style: Literal["multilingual", "mbart"] = field("multilingual", help="language token styles")
    encoder_langtok: Optional[Literal["src", "tgt"]] = field(
        None, help="prepend to the beginning of source sentence the source or target language token. (src/tgt)"
    )
    decoder_langtok: bool = field(False, help="prepend to the beginning of target sentence the target language token")
    lang_tok_replacing_bos_eos: bool = field(False, help="replace </s> by language tokens (not supported)")
    enable_lang_ids: bool = field(False, help="whether to include language IDs in samples (not supported)")
    enable_reservsed_directions_shared_datasets: bool = field(
        False, help="whether to allow datasets be used in reversed directions"
    )
    extra_data: Optional[str] = field(None, help="a dictionary of data name to this path (not supported)")
    extra_lang_pairs: Optional[str] = field(
        None, help="a dictionary of data name to the language pairs they serve (not supported)"
    )
    fixed_dictionary: Optional[str] = field(None, help="Fixed dictionary to use with model path")
    langtoks_specs: str = field("main", help="comma separated data types with their own language tokens (main only)")
    langtoks: Optional[str] = field(None, help="a dictionary of how to add language tokens (not supported)")
    sampling_weights_from_file: Optional[str] = field(
        None, help="a file contain a python dictionary of how to sample data sets (not supported)"
    )
    sampling_weights: Optional[str] = field(None, help="a dictionary of how to sample data sets (not supported)")
    virtual_epoch_size: Optional[int] = field(None, help="virtual epoch size to speed up data loading (not supported)")
    virtual_data_size: Optional[int] = field(None, help="virtual data size of the whole joint dataset (not supported)")


def file_or_value(value: str) -> str:
    """fairseq's ``FileContentsAction``: a path's file contents, or the value itself."""
    return Path(value).read_text(encoding="utf-8").strip() if os.path.isfile(value) else value


def lang_token(lang: str, style: str) -> str:
    return f"[{lang}]" if style == "mbart" else f"__{lang}__"


@registry.TASKS.register("translation_multi_simple_epoch", config=TranslationMultiSimpleEpochConfig)
class TranslationMultiSimpleEpochTask(TranslationTask):
    """Translation in one direction of a many-to-many model, with language tokens."""

    cfg: TranslationMultiSimpleEpochConfig

    def __init__(self, cfg: TranslationMultiSimpleEpochConfig, src_dict: Any, tgt_dict: Any, *,
                 dataset_impl: str | None = None) -> None:  # fmt: skip
        super().__init__(cfg, src_dict, tgt_dict, dataset_impl=dataset_impl)
        src, tgt = self.langs
        self.src_langtok = self._langtok(src_dict, src if cfg.encoder_langtok == "src" else tgt, cfg.encoder_langtok)
        self.tgt_langtok = self._langtok(tgt_dict, tgt, "tgt" if cfg.decoder_langtok else None)

    def _langtok(self, dictionary: Dictionary, lang: str, spec: str | None) -> int | None:
        if spec is None:
            return None
        symbol = lang_token(lang, self.cfg.lang_tok_style)
        index = dictionary.index(symbol)
        if index == dictionary.unk():
            raise ValueError(f"translation_multi_simple_epoch: cannot find language token {symbol} in the dictionary")
        return index

    @classmethod
    def setup_task(cls, cfg: TranslationConfig, *, dataset_impl: str | None = None) -> TranslationMultiSimpleEpochTask:
        assert isinstance(cfg, TranslationMultiSimpleEpochConfig)
        refuse_unsupported(cfg)
        if cfg.lang_pairs is None:
            raise ValueError(
                "translation_multi_simple_epoch: --lang-pairs is required. List all the language pairs in the "
                "training objective."
            )
        pairs = [p.split("-") for p in file_or_value(cfg.lang_pairs).split(",")]
        if cfg.source_lang is None or cfg.target_lang is None:
            raise ValueError(
                "translation_multi_simple_epoch: training over all --lang-pairs at once (fairseq's sampled "
                "multi-dataset) is not supported; pass -s/--source-lang and -t/--target-lang to generate, validate "
                "or train one direction"
            )
        langs = language_list(cfg, pairs)
        missing = [lang for lang in (cfg.source_lang, cfg.target_lang) if lang not in langs]
        if missing:
            raise ValueError(
                f"translation_multi_simple_epoch: language pair {cfg.source_lang}-{cfg.target_lang} contains "
                f"languages that are not in the language dictionary; langs: {langs}"
            )
        first = data_paths(cfg.data)[0]

        def load(path: str) -> Dictionary:
            if not os.path.exists(path):
                raise FileNotFoundError(f"translation_multi_simple_epoch: dictionary {path} not found")
            d = Dictionary.load(path)
            for lang in langs:
                d.add_symbol(lang_token(lang, cfg.lang_tok_style))
            if cfg.lang_tok_style == "mbart":
                d.add_symbol("<mask>")
            return d

        if cfg.fixed_dictionary is not None:
            src_dict = tgt_dict = load(cfg.fixed_dictionary)
        else:
            src_dict = load(cfg.source_dict or os.path.join(first, f"dict.{cfg.source_lang}.txt"))
            tgt_dict = load(cfg.target_dict or os.path.join(first, f"dict.{cfg.target_lang}.txt"))
        logger.info("[%s] dictionary: %d types", cfg.target_lang, len(tgt_dict))
        return cls(cfg, src_dict, tgt_dict, dataset_impl=dataset_impl)

    @property
    def symbols_to_strip_from_output(self) -> frozenset[int]:
        """The target language token, left out of printed hypotheses and references (fairseq's)."""
        if self.tgt_langtok is None or self.cfg.keep_inference_langtok:
            return frozenset()
        return frozenset({self.tgt_langtok})

    @property
    def inference_prefix_token(self) -> int | None:
        """The token every generated target starts with (the target language's), unless ``--prefix-size``."""
        return self.tgt_langtok

    def _pair_dataset(self, src: Any, tgt: Any, split: str) -> LanguagePairDataset:
        return LanguagePairDataset(
            AffixTokens(src, prepend=self.src_langtok),
            self.src_dict,
            AffixTokens(tgt, prepend=self.tgt_langtok),
            self.tgt_dict,
            left_pad_source=self.cfg.left_pad_source,
            left_pad_target=self.cfg.left_pad_target,
            shuffle=False,  # fairseq's task wraps the pair in a ConcatDataset: by length, no shuffling
        )

    def build_dataset_for_inference(self, tokens: list[Any]) -> LanguagePairDataset:
        return LanguagePairDataset(AffixTokens(InMemoryTokens(tokens), prepend=self.src_langtok), self.src_dict,
                                   None, self.tgt_dict, left_pad_source=self.cfg.left_pad_source)  # fmt: skip


def language_list(cfg: TranslationMultiSimpleEpochConfig, pairs: list[list[str]]) -> list[str]:
    """``--langs``, ``--lang-dict``'s lines, or the languages of ``--lang-pairs`` sorted (fairseq's order)."""
    if cfg.langs and cfg.lang_dict:
        raise ValueError("translation_multi_simple_epoch: --langs and --lang-dict can not both be specified")
    if cfg.lang_dict:
        return [line.strip() for line in Path(cfg.lang_dict).read_text(encoding="utf-8").splitlines() if line.strip()]
    if cfg.langs:
        return cfg.langs.split(",")
    logger.warning("no --langs/--lang-dict: the language tokens follow the sorted languages of --lang-pairs")
    return sorted({lang for pair in pairs for lang in pair})


def refuse_unsupported(cfg: TranslationMultiSimpleEpochConfig) -> None:
    """Options of fairseq's task that this one does not implement: an error naming them, not silence."""
    used = [flag for flag, on in (
        ("--lang-tok-replacing-bos-eos", cfg.lang_tok_replacing_bos_eos), ("--enable-lang-ids", cfg.enable_lang_ids),
        ("--extra-data", cfg.extra_data), ("--extra-lang-pairs", cfg.extra_lang_pairs), ("--langtoks", cfg.langtoks),
        ("--langtoks-specs", cfg.langtoks_specs != "main"), ("--sampling-weights", cfg.sampling_weights),
        ("--sampling-weights-from-file", cfg.sampling_weights_from_file),
        ("--virtual-epoch-size", cfg.virtual_epoch_size), ("--virtual-data-size", cfg.virtual_data_size),
        ("--truncate-source", cfg.truncate_source), ("--load-alignments", cfg.load_alignments),
        ("--num-batch-buckets", cfg.num_batch_buckets > 0), ("--eval-bleu", cfg.eval_bleu),
    ) if on]  # fmt: skip
    if used:
        raise ValueError(f"translation_multi_simple_epoch: {', '.join(used)} is not supported by this task yet")
