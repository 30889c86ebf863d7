"""The ``translation`` task: binarized sentence pairs from fairseq-style ``data-bin`` folders.

A data folder holds ``dict.{src}.txt``, ``dict.{tgt}.txt`` and ``{split}.{src}-{tgt}.{lang}.{bin,idx}``
(``split1``, ``split2``... are further shards of the same training split). ``DATA`` may list several
folders separated by ``:``; epoch ``e`` trains on folder ``(e - 1) % n`` and validates on the first.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from torch import Tensor

from seqloom import registry
from seqloom.config.options import field
from seqloom.data import formats
from seqloom.data.dictionary import Dictionary
from seqloom.data.language_pair_dataset import ConcatTokens, InMemoryTokens, LanguagePairDataset, TokenDataset
from seqloom.tasks import base
from seqloom.tasks.base import Task

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class TranslationConfig:
    """Options of ``--task translation`` (fairseq's names and defaults)."""

    data: Optional[str] = field(
        None,
        help="the binarized data folder; several separated by ':' are used one per epoch in turn",
        positional=True,
    )
    source_lang: Optional[str] = field(
        None,
        help="source language suffix of the files, such as en in train.en-de.en (unset: found from the file names)",
        aliases=("-s",),
    )
    target_lang: Optional[str] = field(
        None, help="target language suffix of the files (unset: found from the file names)", aliases=("-t",)
    )
    load_alignments: bool = field(
        False, help="also read the word alignments of each pair (DATA/<split>.align.<src>-<tgt>)"
    )
    left_pad_source: bool = field(True, help="put the source's padding before its tokens (False: after them)")
    left_pad_target: bool = field(False, help="put the target's padding before its tokens (False: after them)")
    max_source_positions: int = field(1024, help="longest source, in tokens, the task feeds the model")
    max_target_positions: int = field(1024, help="longest target, in tokens, the task feeds the model")
    upsample_primary: int = field(
        -1, help="with several training splits (train, train1, ...), repeat the first this many times (-1: once)"
    )
    truncate_source: bool = field(
        False, help="cut sources longer than --max-source-positions to that length instead of refusing them"
    )
    num_batch_buckets: int = field(
        0,
        help="pad batches only to N fixed lengths, spread over the length range (0: pad each batch to its own longest sentence)",
    )
    eval_bleu: bool = field(
        False, help="decode the validation split with beam search at every validation and report its BLEU"
    )
    eval_bleu_args: Optional[str] = field(
        "{}", help='decoding options for --eval-bleu as a JSON object, such as \'{"beam": 4, "lenpen": 0.6}\''
    )
    eval_bleu_detok: str = field(
        "space",
        help="tokenizer whose detokenization is applied before --eval-bleu scores (space: none, join the words with spaces)",
    )
    eval_bleu_detok_args: Optional[str] = field(
        "{}", help="options of the --eval-bleu-detok tokenizer as a JSON object"
    )
    eval_tokenized_bleu: bool = field(
        False, help="score --eval-bleu on the tokenized text instead of sacrebleu's own tokenization"
    )
    eval_bleu_remove_bpe: Optional[str] = field(
        None, help="undo this subword segmentation before --eval-bleu scores (such as @@ for subword-nmt)", const="@@ "
    )
    eval_bleu_print_samples: bool = field(False, help="log one decoded sentence and its reference per validation batch")


def data_paths(data: str | None) -> list[str]:
    return base.data_paths(data, task="translation", example="data-bin/wmt")


# "{split}.{src}-{tgt}.{rest}": the second dot-separated field holds the pair, with exactly one hyphen
PAIR_IN_NAME = re.compile(r"[^.]*\.([^.-]*)-([^.-]*)\.")


def infer_language_pair(path: str) -> tuple[str, str]:
    """Reads ``(src, tgt)`` from a file named ``{split}.{src}-{tgt}.{lang}...`` in ``path``."""
    for name in sorted(os.listdir(path)):
        pair = PAIR_IN_NAME.match(name)
        if pair:
            return pair.group(1), pair.group(2)
    raise ValueError(
        f"translation: could not infer the language pair from the files in {path!r} "
        "(expected e.g. train.en-de.en.bin); pass --source-lang and --target-lang"
    )


@registry.TASKS.register("translation", config=TranslationConfig)
class TranslationTask(Task):
    """Translate from ``source_lang`` into ``target_lang``."""

    def __init__(
        self, cfg: TranslationConfig, src_dict: Dictionary, tgt_dict: Dictionary, *, dataset_impl: str | None = None
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.src_dict, self.tgt_dict = src_dict, tgt_dict
        self.dataset_impl = dataset_impl
        self.pad_to_multiple = 1  # --required-seq-len-multiple: batch widths (source and target) a multiple of it

    @property
    def source_dictionary(self) -> Dictionary:
        return self.src_dict

    @property
    def target_dictionary(self) -> Dictionary:
        return self.tgt_dict

    @classmethod
    def setup_task(cls, cfg: TranslationConfig, *, dataset_impl: str | None = None) -> TranslationTask:
        """Reads the dictionaries of the first data folder (inferring the languages if not given)."""
        from seqloom.data.dictionary import Dictionary

        paths = data_paths(cfg.data)
        if cfg.source_lang is None or cfg.target_lang is None:
            src, tgt = infer_language_pair(paths[0])
            cfg.source_lang = cfg.source_lang or src
            cfg.target_lang = cfg.target_lang or tgt
        dicts = []
        for lang in (cfg.source_lang, cfg.target_lang):
            path = Path(paths[0]) / f"dict.{lang}.txt"
            if not path.exists():
                raise FileNotFoundError(
                    f"translation: dictionary {path} not found (check DATA and --source-lang/--target-lang)"
                )
            d = Dictionary.load(str(path))
            logger.info("[%s] dictionary: %d types", lang, len(d))
            dicts.append(d)
        src_dict, tgt_dict = dicts
        if (src_dict.pad(), src_dict.eos(), src_dict.unk()) != (tgt_dict.pad(), tgt_dict.eos(), tgt_dict.unk()):
            raise ValueError("translation: source and target dictionaries disagree on pad/eos/unk ids")
        return cls(cfg, src_dict, tgt_dict, dataset_impl=dataset_impl)

    def validation_extras(self) -> tuple[Any, Any]:
        """``(hook, reduce)`` for the training loop: BLEU counts per batch and BLEU from their sums
        with ``--eval-bleu``; ``(None, None)`` otherwise."""
        if not self.cfg.eval_bleu:
            return None, None
        from seqloom.tasks.translation_bleu import BleuValidator, bleu_from_sums

        return BleuValidator(self.cfg, self.tgt_dict, eos=self.generation_eos), bleu_from_sums

    @property
    def langs(self) -> tuple[str, str]:
        """(source, target) language codes (known once the task is set up)."""
        src, tgt = self.cfg.source_lang, self.cfg.target_lang
        if src is None or tgt is None:
            raise ValueError("translation: the language pair is unknown; pass --source-lang and --target-lang")
        return src, tgt

    def max_positions(self) -> tuple[int, int]:
        return self.cfg.max_source_positions, self.cfg.max_target_positions

    @property
    def generation_eos(self) -> int | None:
        """The symbol that ends a generated target (None: the target dictionary's ``</s>``)."""
        return None

    def build_dataset_for_inference(self, tokens: list[Tensor]) -> LanguagePairDataset:
        """Source-only pairs for ``interactive`` from encoded lines (``tokens``: each a 1-D tensor)."""
        return LanguagePairDataset(InMemoryTokens(tokens), self.src_dict, None, self.tgt_dict,
                                   left_pad_source=self.cfg.left_pad_source)  # fmt: skip

    def load_dataset(self, split: str, *, epoch: int = 1, combine: bool = False) -> LanguagePairDataset:
        """Loads ``split`` from the epoch's data folder; ``combine`` also reads ``split1``, ``split2``..."""
        paths = data_paths(self.cfg.data)
        path = paths[(epoch - 1) % len(paths)]
        src_parts, tgt_parts = self._load_shards(path, split, combine)
        ratios = None
        if len(src_parts) > 1 and self.cfg.upsample_primary > 1:
            ratios = [self.cfg.upsample_primary] + [1] * (len(src_parts) - 1)
        src = src_parts[0] if len(src_parts) == 1 else ConcatTokens(src_parts, ratios)
        tgt = tgt_parts[0] if len(tgt_parts) == 1 else ConcatTokens(tgt_parts, ratios)
        dataset = self._pair_dataset(src, tgt, split)
        if self.cfg.load_alignments:
            align = self._load_alignments(path, split)
            if align is not None:  # as fairseq: a split without an alignment file simply has none
                dataset.with_alignments(align)
        logger.info("%s %s %s-%s %d examples", path, split, self.cfg.source_lang, self.cfg.target_lang, len(dataset))
        self.datasets[split] = dataset
        return dataset

    def _pair_dataset(self, src: TokenDataset, tgt: TokenDataset, split: str) -> LanguagePairDataset:
        return LanguagePairDataset(
            src,
            self.src_dict,
            tgt,
            self.tgt_dict,
            left_pad_source=self.cfg.left_pad_source,
            left_pad_target=self.cfg.left_pad_target,
            truncate_source_to=self.cfg.max_source_positions if self.cfg.truncate_source else None,
            shuffle=split != "test",  # fairseq: the test split keeps file order among equal lengths
            pad_to_multiple=self.pad_to_multiple,
            num_buckets=self.cfg.num_batch_buckets,
        )

    def _load_shards(self, path: str, split: str, combine: bool) -> tuple[list[TokenDataset], list[TokenDataset]]:
        src, tgt = self.langs
        srcs: list[TokenDataset] = []
        tgts: list[TokenDataset] = []
        k = 0
        while True:
            name = split + (str(k) if k > 0 else "")
            prefix = self._find_prefix(path, name)
            if prefix is None:
                if k > 0:
                    break
                raise FileNotFoundError(
                    f"translation: split {split!r} not found in {path}: expected {name}.{src}-{tgt}.{src}.bin/.idx "
                    f"and {name}.{src}-{tgt}.{tgt}.bin/.idx (or {name}.{tgt}-{src}.*); check --train-subset/"
                    "--valid-subset and the languages"
                )
            srcs.append(self._open(prefix + src, self.src_dict))
            tgts.append(self._open(prefix + tgt, self.tgt_dict))
            if not combine:
                break
            k += 1
        return srcs, tgts

    def _load_alignments(self, path: str, split: str) -> Any:
        """``{split}.align.{src}-{tgt}`` (``preprocess --align-suffix``), or None where there is none."""
        src, tgt = self.langs
        prefix = os.path.join(path, f"{split}.align.{src}-{tgt}")
        if not formats.data_exists(prefix, self.dataset_impl):
            return None
        return self._open(prefix, None)

    def _open(self, path: str, dictionary: Dictionary | None) -> TokenDataset:
        impl = self.dataset_impl or formats.infer_dataset_impl(path)
        dataset = formats.make_dataset(path, impl, dictionary=dictionary) if impl else None
        if dataset is None:
            raise FileNotFoundError(f"translation: cannot read {path} as --dataset-impl {impl} (.bin/.idx or text)")
        logger.info("loaded %d examples from: %s", len(dataset), path)
        return dataset

    def _find_prefix(self, path: str, name: str) -> str | None:
        src, tgt = self.langs
        for a, b in ((src, tgt), (tgt, src)):
            prefix = os.path.join(path, f"{name}.{a}-{b}.")
            impl = self.dataset_impl
            if formats.data_exists(prefix + src, impl) and formats.data_exists(prefix + tgt, impl):
                return prefix
        return None
