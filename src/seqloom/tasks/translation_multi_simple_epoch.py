"""``--task translation_multi_simple_epoch``: one model for many language pairs (M2M-100, mBART-50), as fairseq's.

The dictionaries (``--fixed-dictionary``, or ``--source-dict``/``--target-dict``, or ``dict.{lang}.txt``) get
one language token per language of ``--langs``/``--lang-dict`` (else of ``--lang-pairs``, sorted) in that
order, ``__xx__`` (``--lang-tok-style multilingual``) or ``[xx]`` (``mbart``, which also adds ``<mask>``).
``--encoder-langtok src|tgt`` puts the source or target language token before each source sentence;
``--decoder-langtok`` puts the target's before each target sentence. Data files are ``{split}.{src}-{tgt}.{lang}``
(or ``{tgt}-{src}``).

With ``-s SRC -t TGT`` the task serves that one direction (``generate``, ``validate``, ``interactive``, ``train``):
a generated translation is forced to start with the target language token (fairseq's task passes it as the
prefix) and printed without it (unless ``--keep-inference-langtok``); the data is sorted by length without
shuffling, as fairseq's task loads it for one direction.

Without them ``train`` learns all ``--lang-pairs`` at once: the training split mixes the pairs as fairseq's
sampled multi-dataset does (``--sampling-method concat`` keeps every sentence pair once; ``temperature`` draws
each pair in proportion to ``(n_pair / n)^(1 / --sampling-temperature)``, ``uniform`` equally, the draws made
anew every epoch, over fairseq's virtual data size or ``--virtual-data-size``); ``--virtual-epoch-size`` serves
the mixture in epochs of that many items (a new draw at the start of each pass over it); the validation splits
are the pairs concatenated. ``--sampling-weights``/``--sampling-weights-from-file`` give each pair's weight
(keys ``main:src-tgt``) instead. Extra data (``--extra-data``, ``--langtoks``) is refused by name.
"""

from __future__ import annotations

import ast
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from torch import Tensor

from seqloom import registry
from seqloom.config.options import field
from seqloom.data.dictionary import Dictionary
from seqloom.data.language_pair_dataset import (
    AffixTokens,
    ConcatTokens,
    InMemoryTokens,
    LanguagePairDataset,
    TokenDataset,
)
from seqloom.data.resampling import MultiPairDataset, VirtualEpochMultiPairDataset
from seqloom.tasks.translation import TranslationConfig, TranslationTask, data_paths

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class TranslationMultiSimpleEpochConfig(TranslationConfig):
    """Options of ``--task translation_multi_simple_epoch`` (fairseq's names and defaults)."""

    lang_pairs: Optional[str] = field(
        None,
        help="language pairs to train on, comma-separated as src-tgt (en-de,en-fr,de-fr), in this order; or a file of them",
    )
    keep_inference_langtok: bool = field(False, help="leave the language tokens in the decoded output")
    sampling_method: Literal["uniform", "temperature", "concat", "RoundRobin"] = field(
        "concat",
        help="how often each language pair is drawn: concat and RoundRobin in proportion to its size, temperature flattened by --sampling-temperature, uniform equally",
    )
    sampling_temperature: float = field(
        1.5,
        help="with --sampling-method temperature, each pair's share is its size to the power 1/T (1: in proportion to size)",
    )
    langs: Optional[str] = field(
        None,
        help="comma-separated languages that may appear in --lang-pairs; their order sets the language tokens' indices",
    )
    lang_dict: Optional[str] = field(
        None,
        help="file of the languages that may appear in --lang-pairs, one a line; their order sets the language tokens' indices (instead of --langs)",
    )
    source_dict: Optional[str] = field(
        None, help="dictionary file for every source language, instead of one per language in DATA"
    )
    target_dict: Optional[str] = field(
        None, help="dictionary file for every target language, instead of one per language in DATA"
    )
    lang_tok_style: Literal["multilingual", "mbart"] = field(
        "multilingual", help="spelling of the language tokens: multilingual is __en__, mbart is [en_XX]"
    )
    encoder_langtok: Optional[Literal["src", "tgt"]] = field(
        None,
        help="put a language token first in each source: src for the source's language, tgt for the target's (unset: none)",
    )
    decoder_langtok: bool = field(False, help="start each target with its language's token")
    lang_tok_replacing_bos_eos: bool = field(
        False, help="use language tokens in place of </s> (not supported: refused)"
    )
    enable_lang_ids: bool = field(False, help="add the languages' numbers to each sample (not supported: refused)")
    enable_reservsed_directions_shared_datasets: bool = field(
        False, help="let a pair's data serve the reversed direction too (de-en from en-de files)"
    )
    extra_data: Optional[str] = field(None, help="more data folders by name (not supported: refused)")
    extra_lang_pairs: Optional[str] = field(None, help="language pairs of those folders (not supported: refused)")
    fixed_dictionary: Optional[str] = field(
        None, help="one dictionary file for all languages, such as the one a pretrained model came with"
    )
    langtoks_specs: str = field("main", help="comma separated data types with their own language tokens (main only)")
    langtoks: Optional[str] = field(None, help="language-token rules per data type (not supported: refused)")
    sampling_weights_from_file: Optional[str] = field(
        None, help='file holding a dict of sampling weights per data set, such as {"main:en-es": 0.7}'
    )
    sampling_weights: Optional[str] = field(
        None, help="sampling weights per data set as a dict, such as {'main:en-es': 0.2, 'main:es-en': 0.8}"
    )
    virtual_epoch_size: Optional[int] = field(
        None, help="samples per epoch drawn from the mixture (unset: the whole mixture each epoch)"
    )
    virtual_data_size: Optional[int] = field(
        None,
        help="total size the mixture is resampled to (unset: the sum of its data sets)",
    )
    seed: int = field(1, help="seed of the task's random choices (sampling, shuffling)")
    train_subset: str = field("train", help="the training split (set from the common --train-subset)")


def file_or_value(value: str) -> str:
    """fairseq's ``FileContentsAction``: a path's file contents, or the value itself."""
    return Path(value).read_text(encoding="utf-8").strip() if os.path.isfile(value) else value


def lang_token(lang: str, style: str) -> str:
    return f"[{lang}]" if style == "mbart" else f"__{lang}__"


@registry.TASKS.register("translation_multi_simple_epoch", config=TranslationMultiSimpleEpochConfig)
class TranslationMultiSimpleEpochTask(TranslationTask):
    """Translation with language tokens: one direction (``-s``/``-t``), or training over all ``--lang-pairs``."""

    cfg: TranslationMultiSimpleEpochConfig

    def __init__(self, cfg: TranslationMultiSimpleEpochConfig, src_dict: Dictionary, tgt_dict: Dictionary, *,
                 dataset_impl: str | None = None) -> None:  # fmt: skip
        self._loading: tuple[str, str] | None = None  # the pair whose files are being read
        super().__init__(cfg, src_dict, tgt_dict, dataset_impl=dataset_impl)
        self.training = cfg.source_lang is None and cfg.target_lang is None
        pairs = [tuple(p.split("-")) for p in file_or_value(cfg.lang_pairs or "").split(",")]
        self.pairs: list[tuple[str, str]] = (
            [(p[0], p[1]) for p in pairs if len(p) == 2] if self.training else [self.langs]
        )

    @property
    def langs(self) -> tuple[str, str]:
        if self._loading is not None:
            return self._loading
        if self.cfg.source_lang is None or self.cfg.target_lang is None:
            raise ValueError(
                "translation_multi_simple_epoch: this command works on one direction; pass -s/--source-lang and "
                "-t/--target-lang (without them, only train learns all --lang-pairs)"
            )
        return self.cfg.source_lang, self.cfg.target_lang

    def langtoks(self, src: str, tgt: str) -> tuple[int | None, int | None]:
        """The tokens put before the sources and the targets of the pair ``src``-``tgt`` (None: none)."""
        cfg = self.cfg
        src_tok = None
        if cfg.encoder_langtok is not None:
            src_tok = self._langtok(self.src_dict, src if cfg.encoder_langtok == "src" else tgt)
        tgt_tok = self._langtok(self.tgt_dict, tgt) if cfg.decoder_langtok else None
        return src_tok, tgt_tok

    def _langtok(self, dictionary: Dictionary, lang: str) -> int:
        symbol = lang_token(lang, self.cfg.lang_tok_style)
        index = dictionary.index(symbol)
        if index == dictionary.unk():
            raise ValueError(
                f"translation_multi_simple_epoch: the dictionary has no language token {symbol} (was it built with these --langs?)"
            )
        return int(index)

    @classmethod
    def setup_task(cls, cfg: TranslationConfig, *, dataset_impl: str | None = None) -> TranslationMultiSimpleEpochTask:
        assert isinstance(cfg, TranslationMultiSimpleEpochConfig)
        refuse_unsupported(cfg)
        if cfg.lang_pairs is None:
            raise ValueError(
                "translation_multi_simple_epoch: --lang-pairs is required: name every pair to train on, such as "
                "en-de,de-en"
            )
        pairs = [p.split("-") for p in file_or_value(cfg.lang_pairs).split(",")]
        if (cfg.source_lang is None) != (cfg.target_lang is None):
            raise ValueError(
                "translation_multi_simple_epoch: pass both -s/--source-lang and -t/--target-lang, or neither"
            )
        training = cfg.source_lang is None
        langs = language_list(cfg, pairs)
        wanted: list[list[str]] = pairs if training else [[str(cfg.source_lang), str(cfg.target_lang)]]
        bad = [f"{p[0]}-{p[-1]}" for p in wanted if len(p) != 2 or p[0] not in langs or p[1] not in langs]
        if bad:
            raise ValueError(
                f"translation_multi_simple_epoch: language pair(s) {', '.join(bad)} use languages missing from the "
                f"language list {langs} (--langs or --lang-dict)"
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
            sides = []
            for side, given in ((0, cfg.source_dict), (1, cfg.target_dict)):
                side_langs = sorted({p[side] for p in wanted})
                if given is not None:
                    sides.append(load(given))
                    continue
                dicts = [load(os.path.join(first, f"dict.{lang}.txt")) for lang in side_langs]
                if any(d.symbols != dicts[0].symbols for d in dicts[1:]):
                    raise ValueError(
                        f"translation_multi_simple_epoch: the {'source' if side == 0 else 'target'} languages "
                        f"{side_langs} have different dictionaries; the task needs one shared dictionary per side "
                        "(or --source-dict/--target-dict, or --fixed-dictionary)"
                    )
                sides.append(dicts[0])
            src_dict, tgt_dict = sides
        logger.info("dictionary: %d types", len(tgt_dict))
        return cls(cfg, src_dict, tgt_dict, dataset_impl=dataset_impl)

    @property
    def src_langtok(self) -> int | None:
        return self.langtoks(*self.langs)[0]

    @property
    def tgt_langtok(self) -> int | None:
        return self.langtoks(*self.langs)[1]

    @property
    def symbols_to_strip_from_output(self) -> frozenset[int]:
        """The target language token, left out of printed hypotheses and references (fairseq's)."""
        tok = self.tgt_langtok
        return frozenset() if tok is None or self.cfg.keep_inference_langtok else frozenset({tok})

    @property
    def inference_prefix_token(self) -> int | None:
        """The token every generated target starts with (the target language's), unless ``--prefix-size``."""
        return self.tgt_langtok

    def load_dataset(self, split: str, *, epoch: int = 1, combine: bool = False) -> Any:
        if not self.training:
            return super().load_dataset(split, epoch=epoch, combine=combine)
        path = data_paths(self.cfg.data)[(epoch - 1) % len(data_paths(self.cfg.data))]
        datasets = []
        for pair in self.pairs:
            self._loading = pair
            try:
                src_parts, tgt_parts = self._load_shards(path, split, combine)
            finally:
                self._loading = None
            src = src_parts[0] if len(src_parts) == 1 else ConcatTokens(src_parts, None)
            tgt = tgt_parts[0] if len(tgt_parts) == 1 else ConcatTokens(tgt_parts, None)
            datasets.append(self._lang_pair_dataset(src, tgt, pair))
            logger.info("%s %s %s-%s %d examples", path, split, *pair, len(datasets[-1]))
        dataset: MultiPairDataset
        if split == self.cfg.train_subset:
            ratios = given_weights(self.cfg, self.pairs) or sampling_ratios(self.cfg, [len(d) for d in datasets])
            if ratios is not None:
                logger.info("| Upsample ratios: %s", list(zip(["-".join(p) for p in self.pairs], ratios)))
            if self.cfg.virtual_epoch_size is not None:
                dataset = VirtualEpochMultiPairDataset(datasets, ratios, virtual_epoch_size=self.cfg.virtual_epoch_size,
                                                       epoch=epoch, order_seed=self.cfg.seed,
                                                       size=self.cfg.virtual_data_size)  # fmt: skip
            else:
                dataset = MultiPairDataset(datasets, ratios, epoch=epoch, order_seed=self.cfg.seed,
                                           size=self.cfg.virtual_data_size)  # fmt: skip
        else:  # fairseq concatenates the validation pairs, in order, by length
            dataset = MultiPairDataset(datasets, None, shuffle=False)
        self.datasets[split] = dataset
        return dataset

    def _lang_pair_dataset(self, src: TokenDataset, tgt: TokenDataset, pair: tuple[str, str]) -> LanguagePairDataset:
        src_tok, tgt_tok = self.langtoks(*pair)
        return LanguagePairDataset(
            AffixTokens(src, prepend=src_tok),
            self.src_dict,
            AffixTokens(tgt, prepend=tgt_tok),
            self.tgt_dict,
            left_pad_source=self.cfg.left_pad_source,
            left_pad_target=self.cfg.left_pad_target,
            shuffle=False,  # fairseq's task wraps the pair in a ConcatDataset: by length, no shuffling
        )

    def _pair_dataset(self, src: TokenDataset, tgt: TokenDataset, split: str) -> LanguagePairDataset:
        return self._lang_pair_dataset(src, tgt, self.langs)

    def build_dataset_for_inference(self, tokens: list[Tensor]) -> LanguagePairDataset:
        return LanguagePairDataset(AffixTokens(InMemoryTokens(tokens), prepend=self.src_langtok), self.src_dict,
                                   None, self.tgt_dict, left_pad_source=self.cfg.left_pad_source)  # fmt: skip


def given_weights(cfg: TranslationMultiSimpleEpochConfig, pairs: list[tuple[str, str]]) -> list[float] | None:
    """``--sampling-weights-from-file`` (a JSON object) or ``--sampling-weights`` (a dict literal), keyed
    ``main:src-tgt``: the weight of each pair, in ``pairs`` order (None when neither is given)."""
    if cfg.sampling_weights_from_file:
        path = Path(cfg.sampling_weights_from_file)
        if not path.is_file():
            raise FileNotFoundError(f"--sampling-weights-from-file: {path} not found")
        try:
            weights = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"--sampling-weights-from-file: {path} is not JSON ({err})") from None
        if cfg.sampling_weights:
            logger.info("| ignoring --sampling-weights when loading sampling weights from %s", path)
    elif cfg.sampling_weights:
        try:
            weights = ast.literal_eval(cfg.sampling_weights)
        except (ValueError, SyntaxError):
            raise ValueError(f"--sampling-weights: {cfg.sampling_weights!r} is not a dictionary") from None
    else:
        return None
    if not isinstance(weights, dict):
        raise ValueError("--sampling-weights: expected a dictionary like {'main:en-es': 0.7, 'main:es-en': 0.3}")
    keys = [f"main:{src}-{tgt}" for src, tgt in pairs]
    missing = [k for k in keys if k not in weights]
    if missing:
        raise ValueError(f"--sampling-weights: no weight for {', '.join(missing)} (keys are main:src-tgt)")
    return [float(weights[k]) for k in keys]


def sampling_ratios(cfg: TranslationMultiSimpleEpochConfig, lengths: list[int]) -> list[float] | None:
    """``--sampling-method``'s weight of each pair (None: concatenated, as ``concat`` and ``RoundRobin``)."""
    if cfg.sampling_method == "uniform":
        return [1.0] * len(lengths)
    if cfg.sampling_method == "temperature":
        total = sum(lengths)
        return [(n / total) ** (1.0 / cfg.sampling_temperature) for n in lengths]
    return None


def language_list(cfg: TranslationMultiSimpleEpochConfig, pairs: list[list[str]]) -> list[str]:
    """``--langs``, ``--lang-dict``'s lines, or the languages of ``--lang-pairs`` sorted (fairseq's order)."""
    if cfg.langs and cfg.lang_dict:
        raise ValueError(
            "translation_multi_simple_epoch: give the languages with --langs or with --lang-dict, not both"
        )
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
        ("--langtoks-specs", cfg.langtoks_specs != "main"),         ("--virtual-epoch-size with several data folders (fairseq's shards)",
         cfg.virtual_epoch_size is not None and len(data_paths(cfg.data)) > 1),
        ("--truncate-source", cfg.truncate_source), ("--load-alignments", cfg.load_alignments),
        ("--num-batch-buckets", cfg.num_batch_buckets > 0), ("--eval-bleu", cfg.eval_bleu),
    ) if on]  # fmt: skip
    if used:
        raise ValueError(f"translation_multi_simple_epoch: {', '.join(used)} is not supported by this task yet")
