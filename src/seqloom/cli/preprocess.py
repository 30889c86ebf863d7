"""``seqloom preprocess``: build dictionaries and binarize text, as ``fairseq-preprocess`` (same flags, same files).

Outputs ``dict.{lang}.txt`` and ``{split}.{src}-{tgt}.{lang}.{bin,idx}`` (``dict.txt`` and
``{split}.{bin,idx}`` with ``--only-source``), byte-identical to fairseq's, and ``preprocess.log`` with
fairseq's statistics lines. torch is never imported here: start-up stays fast.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from seqloom.cli.specs import PREPROCESS as SPEC
from seqloom.cli.specs import PreprocessConfig
from seqloom.config.common import CommonConfig
from seqloom.config.options import flag_of, from_namespace
from seqloom.data.binarizer import BinarizeSummary
from seqloom.data.dictionary import Dictionary, DictionaryFormatError
from seqloom.data.indexed_dataset import IndexedDatasetError
from seqloom.data.line_reader import InputFormatError, check_parallel
from seqloom.data.parallel import ChunkRunner
from seqloom.data.preprocessing import (
    OutputDir,
    binarize_file,
    build_dictionary,
    require_file,
    write_alignment_dictionary,
)

logger = logging.getLogger("seqloom.cli.preprocess")
logger.setLevel(logging.INFO)  # the statistics lines always reach preprocess.log, as fairseq's


@dataclass
class PreprocessResult:
    """What a run wrote: the file names in ``destdir`` and each binarized file's counts."""

    destdir: str
    files: list[str]
    summaries: dict[str, BinarizeSummary]


class Paths:
    """fairseq-preprocess's file naming (input files, dictionaries, dataset prefixes)."""

    def __init__(self, cfg: PreprocessConfig, out: OutputDir | None = None) -> None:
        self.cfg = cfg
        self.out = out

    @staticmethod
    def text(prefix: str, lang: str | None) -> str:
        return prefix if lang is None else f"{prefix}.{lang}"

    def train(self, lang: str | None) -> str:
        assert self.cfg.trainpref is not None
        return f"{self.cfg.trainpref}.{lang}" if lang else self.cfg.trainpref

    @staticmethod
    def dict_name(lang: str | None) -> str:
        return "dict.txt" if lang is None else f"dict.{lang}.txt"

    def dataset_name(self, split: str, lang: str | None) -> str:
        c = self.cfg
        if lang is not None:
            return f"{split}.{c.source_lang}-{c.target_lang}.{lang}"
        return split if c.only_source else f"{split}.{c.source_lang}-{c.target_lang}"

    def staged(self, name: str) -> str:
        assert self.out is not None
        return self.out.path(name)


def splits(cfg: PreprocessConfig) -> list[tuple[str, str]]:
    """(output split name, input prefix) pairs: train, valid, valid1, ..., test, test1, ..."""
    out = [("train", cfg.trainpref)] if cfg.trainpref else []
    for name, prefs in (("valid", cfg.validpref), ("test", cfg.testpref)):
        for k, pref in enumerate(prefs.split(",") if prefs else []):
            out.append((f"{name}{k}" if k else name, pref))
    return out


def check_inputs(cfg: PreprocessConfig) -> None:
    """Fails early, naming the flag, on inconsistent options, missing files and unequal parallel files."""
    target = not cfg.only_source
    if cfg.workers < 1:
        raise InputFormatError(f"--workers must be at least 1, got {cfg.workers}")
    if cfg.joined_dictionary and cfg.srcdict and cfg.tgtdict:
        raise InputFormatError("cannot use both --srcdict and --tgtdict with --joined-dictionary")
    needs_train = not cfg.srcdict or (target and not cfg.tgtdict and not cfg.joined_dictionary)
    if needs_train and not cfg.trainpref:
        raise InputFormatError("--trainpref is needed to build a dictionary (or pass --srcdict/--tgtdict)")
    if cfg.alignfile and (not cfg.trainpref or not target):
        raise InputFormatError("--alignfile needs --trainpref and a target language (not --only-source)")
    for flag, path in (("--srcdict", cfg.srcdict), ("--tgtdict", cfg.tgtdict), ("--alignfile", cfg.alignfile)):
        if path:
            require_file(path, flag)
    langs = [cfg.source_lang, cfg.target_lang] if target else [cfg.source_lang]
    inputs = [s for s in splits(cfg) if s[0] == "train"] if cfg.dict_only else splits(cfg)
    for name, pref in inputs:
        for lang in langs:
            require_file(Paths.text(pref, lang), f"--{name.rstrip('0123456789')}pref")
        if target and not cfg.dict_only:
            check_parallel((Paths.text(pref, cfg.source_lang), Paths.text(pref, cfg.target_lang)))
    for lang in langs:
        own = cfg.srcdict if lang == cfg.source_lang else cfg.tgtdict
        existing = os.path.join(cfg.destdir, Paths.dict_name(lang))
        if not own and os.path.exists(existing):
            raise FileExistsError(
                f"{existing} already exists: remove it, pick another --destdir, or reuse it with "
                f"--{'src' if lang == cfg.source_lang else 'tgt'}dict {existing}"
            )


def load_or_build_dictionaries(
    cfg: PreprocessConfig, paths: Paths, runner: ChunkRunner
) -> tuple[Dictionary, Dictionary | None]:
    """The source and target dictionaries (the same object when joined; no target with --only-source)."""
    target = not cfg.only_source

    def build(files: list[str], src: bool) -> Dictionary:
        return build_dictionary(
            files,
            runner,
            threshold=cfg.thresholdsrc if src else cfg.thresholdtgt,
            nwords=cfg.nwordssrc if src else cfg.nwordstgt,
            padding_factor=cfg.padding_factor,
        )

    if cfg.joined_dictionary:
        given = cfg.srcdict or cfg.tgtdict
        d = (
            Dictionary.load(given)
            if given
            else build([paths.train(cfg.source_lang), paths.train(cfg.target_lang)], True)
        )
        return d, d
    src = Dictionary.load(cfg.srcdict) if cfg.srcdict else build([paths.train(cfg.source_lang)], True)
    if not target:
        return src, None
    tgt = Dictionary.load(cfg.tgtdict) if cfg.tgtdict else build([paths.train(cfg.target_lang)], False)
    return src, tgt


def make_all(
    cfg: PreprocessConfig, paths: Paths, runner: ChunkRunner, lang: str | None, vocab: Dictionary
) -> dict[str, BinarizeSummary]:
    """Binarizes (or, with ``--dataset-impl raw``, copies) every split of language ``lang``."""
    summaries: dict[str, BinarizeSummary] = {}
    for split, pref in splits(cfg):
        src_file = Paths.text(pref, lang)
        if cfg.dataset_impl == "raw":
            name = Paths.text(f"{split}.{cfg.source_lang}-{cfg.target_lang}", lang)
            shutil.copyfile(src_file, paths.staged(name))
            continue
        logger.info(f"[{lang}] Dictionary: {len(vocab)} types")
        name = paths.dataset_name(split, lang)
        summary = binarize_file(runner, src_file, paths.staged(name), impl=cfg.dataset_impl, vocab=vocab)
        logger.info(f"[{lang}] {src_file}: {summary} (by {vocab.unk_word})")
        summaries[name] = summary
    return summaries


def make_alignments(cfg: PreprocessConfig, paths: Paths, runner: ChunkRunner) -> None:
    """Binarizes ``{train,valid,test}pref.{align_suffix}`` where they exist (no eos; uint32 pairs)."""
    assert cfg.align_suffix is not None
    for split, pref in (("train", cfg.trainpref), ("valid", cfg.validpref), ("test", cfg.testpref)):
        path = f"{pref}.{cfg.align_suffix}" if pref else ""
        if pref and os.path.exists(path):
            name = paths.dataset_name(f"{split}.align", None)
            summary = binarize_file(runner, path, paths.staged(name), impl=cfg.dataset_impl, vocab=None)
            logger.info(f"[alignments] {path}: parsed {summary.num_seq} alignments")


def changed_options(cfg: PreprocessConfig) -> list[str]:
    """The options of ``cfg`` that differ from their defaults, as command-line words (not the whole config)."""
    words: list[str] = []
    for f in dataclasses.fields(cfg):
        value, default = getattr(cfg, f.name), _default_of(f)
        if value == default:
            continue
        words += [flag_of(f)] if value is True else [flag_of(f), str(value)]
    return words


def _default_of(f: dataclasses.Field[object]) -> object:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def preprocess(cfg: PreprocessConfig, *, progress_bar: bool | None = None) -> PreprocessResult:
    """Runs fairseq-preprocess's pipeline for ``cfg``; outputs appear in ``cfg.destdir`` only on success."""
    check_inputs(cfg)
    summaries: dict[str, BinarizeSummary] = {}
    out = OutputDir(cfg.destdir)
    log_handler = logging.FileHandler(out.path(OutputDir.LOG), encoding="utf-8")
    logger.addHandler(log_handler)
    try:
        with out, ChunkRunner(cfg.workers, progress_bar=progress_bar) as runner:
            logger.info("options set away from their defaults: %s", " ".join(changed_options(cfg)) or "none")
            paths = Paths(cfg, out)
            src_dict, tgt_dict = load_or_build_dictionaries(cfg, paths, runner)
            src_dict.save(paths.staged(Paths.dict_name(cfg.source_lang)))
            if tgt_dict is not None:
                tgt_dict.save(paths.staged(Paths.dict_name(cfg.target_lang)))
            if not cfg.dict_only:
                summaries.update(make_all(cfg, paths, runner, cfg.source_lang, src_dict))
                if tgt_dict is not None:
                    summaries.update(make_all(cfg, paths, runner, cfg.target_lang, tgt_dict))
                if cfg.align_suffix:
                    make_alignments(cfg, paths, runner)
                logger.info(f"Wrote preprocessed data to {cfg.destdir}")
                if cfg.alignfile:
                    assert tgt_dict is not None
                    texts = (paths.train(cfg.source_lang), paths.train(cfg.target_lang))
                    name = f"alignment.{cfg.source_lang}-{cfg.target_lang}.txt"
                    write_alignment_dictionary(cfg.alignfile, texts, (src_dict, tgt_dict), paths.staged(name))
            log_handler.close()
            files = sorted(os.listdir(out.staging))
    finally:
        logger.removeHandler(log_handler)
        log_handler.close()
    return PreprocessResult(cfg.destdir, files, summaries)


def parse(argv: Sequence[str] | None) -> tuple[CommonConfig, PreprocessConfig]:
    """Parses the command line (and ``--config`` YAML) without importing the component registries."""
    from seqloom.cli.fairseq_flags import strip_ignored
    from seqloom.cli.parser import _apply_yaml_defaults, build_parser, load_yaml
    from seqloom.components import import_user_dir

    argv = list(sys.argv[1:] if argv is None else argv)
    parser, _ = build_parser(SPEC, {})
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        _apply_yaml_defaults(parser, load_yaml(pre.config), pre.config)
    argv, notes = strip_ignored(argv, set(parser.option_names()))
    for note in notes:
        print(f"{SPEC.prog}: {note}", file=sys.stderr)
    ns = parser.parse_strict(argv)
    if ns.user_dir:
        import_user_dir(ns.user_dir)
    return from_namespace(CommonConfig, ns), from_namespace(PreprocessConfig, ns)


def main(argv: Sequence[str] | None = None) -> int:
    common, cfg = parse(argv)
    from seqloom.logs import setup_logging

    setup_logging(common.log_format, common.log_file)
    try:
        preprocess(cfg, progress_bar=False if common.no_progress_bar else None)
    except (InputFormatError, DictionaryFormatError, IndexedDatasetError, FileExistsError, OSError) as err:
        print(f"seqloom preprocess: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
