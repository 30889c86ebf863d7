"""What each command parses: its :class:`CommandSpec` (config groups and selectable components) and the
configs of options only one command has.

Kept apart from the commands so that the parser can read every command's options (a fairseq config dump
names them all) without importing the commands, which import the parser.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Literal, Optional

from seqloom.config import field
from seqloom.config.common import CommonConfig
from seqloom.config.training import (
    CheckpointConfig,
    DataDirConfig,
    DatasetConfig,
    DistributedConfig,
    EMAConfig,
    OptimizationConfig,
)
from seqloom.generation.config import (
    CommonEvalConfig,
    DecodeThreadsConfig,
    GenerationConfig,
    InteractiveConfig,
    QuantizeConfig,
    ScoringConfig,
)


@dataclass(frozen=True)
class CommandSpec:
    """What one CLI command parses: fixed config groups and which components it lets the user pick.

    ``selectors`` maps a selector dest (``task``, ``arch``, ...) to its default name (None: unset).
    """

    prog: str
    description: str
    groups: tuple[tuple[str, type], ...]
    selectors: dict[str, str | None] = dataclasses.field(default_factory=dict)


TRAIN = CommandSpec(
    prog="seqloom train",
    description="Train a model on binarized data (fairseq-train's options).",
    groups=(
        ("data", DataDirConfig),
        ("common", CommonConfig),
        ("dataset", DatasetConfig),
        ("optimization", OptimizationConfig),
        ("checkpoint", CheckpointConfig),
        ("distributed_training", DistributedConfig),
        ("ema", EMAConfig),
    ),
    selectors={
        "task": "translation",
        "arch": None,
        "criterion": "cross_entropy",
        "optimizer": None,
        "lr_scheduler": "fixed",
        "tokenizer": None,  # not used in training: saved with the checkpoint's options for the hub to apply
        "bpe": None,
    },
)


GENERATE = CommandSpec(
    prog="seqloom generate",
    description="Translate a binarized data split with a trained model (fairseq-generate).",
    groups=(
        ("data", DataDirConfig),
        ("common", CommonConfig),
        ("common_eval", CommonEvalConfig),
        ("dataset", DatasetConfig),
        ("generation", GenerationConfig),
        ("scoring", ScoringConfig),
        ("quantize", QuantizeConfig),
        ("decoding", DecodeThreadsConfig),
    ),
    selectors={"task": "translation", "tokenizer": None, "bpe": None},
)


INTERACTIVE = CommandSpec(
    prog="seqloom interactive",
    description="Translate raw text from stdin with a trained model (fairseq-interactive).",
    groups=(
        ("data", DataDirConfig),
        ("common", CommonConfig),
        ("common_eval", CommonEvalConfig),
        ("dataset", DatasetConfig),
        ("generation", GenerationConfig),
        ("interactive", InteractiveConfig),
        ("quantize", QuantizeConfig),
        ("decoding", DecodeThreadsConfig),
    ),
    selectors={"task": "translation", "tokenizer": None, "bpe": None},
)


VALIDATE = CommandSpec(
    prog="seqloom validate",
    description="Compute the loss of a trained model on data subsets (fairseq-validate).",
    groups=(
        ("data", DataDirConfig),
        ("common", CommonConfig),
        ("common_eval", CommonEvalConfig),
        ("dataset", DatasetConfig),
    ),
    selectors={"task": "translation", "criterion": None},  # criterion options override the checkpoint's
)


@dataclass(kw_only=True)
class EvalLMConfig:
    """Options of fairseq's ``eval_lm`` group."""

    output_word_probs: bool = field(False, help="print each word of the data with its log-probability")
    output_word_stats: bool = field(
        False, help="print, per word type, how often it occurs and its mean log-probability"
    )
    context_window: int = field(
        0,
        help="give every scored block up to this many tokens of the text before it as unscored context (0: blocks are scored alone)",
    )
    softmax_batch: int = field(
        sys.maxsize,
        help="compute the output softmax over at most this many positions at once (lower needs less memory)",
    )


EVAL_LM = CommandSpec(
    prog="seqloom eval-lm",
    description="Evaluate the perplexity of a trained language model (fairseq-eval-lm's options).",
    groups=(
        ("data", DataDirConfig),
        ("common", CommonConfig),
        ("common_eval", CommonEvalConfig),
        ("dataset", DatasetConfig),
        ("eval_lm", EvalLMConfig),
    ),
    selectors={"task": "language_modeling"},
)


@dataclass(kw_only=True)
class PreprocessConfig:
    """fairseq-preprocess's options, with its names and defaults."""

    source_lang: Optional[str] = field(None, help="source language", aliases=("-s",), metavar="SRC")
    target_lang: Optional[str] = field(None, help="target language", aliases=("-t",), metavar="TARGET")
    trainpref: Optional[str] = field(
        None,
        help="training files' path without the language suffix (PREF.src, PREF.tgt); the dictionaries are built from them",
        metavar="FP",
    )
    validpref: Optional[str] = field(
        None,
        help="validation files' paths without the language suffix, comma-separated (words missing from the dictionary become <unk>)",
        metavar="FP",
    )
    testpref: Optional[str] = field(
        None,
        help="test files' paths without the language suffix, comma-separated (words missing from the dictionary become <unk>)",
        metavar="FP",
    )
    align_suffix: Optional[str] = field(None, help="alignment file suffix ({pref}.{suffix} holds 'i-j' pairs)")
    destdir: str = field("data-bin", help="folder to write the dictionaries and binarized files into", metavar="DIR")
    thresholdtgt: int = field(
        0, help="leave target words seen fewer than this many times out of the dictionary (0: keep all)"
    )
    thresholdsrc: int = field(
        0, help="leave source words seen fewer than this many times out of the dictionary (0: keep all)"
    )
    tgtdict: Optional[str] = field(None, help="use this target dictionary instead of building one", metavar="FP")
    srcdict: Optional[str] = field(None, help="use this source dictionary instead of building one", metavar="FP")
    nwordstgt: int = field(
        -1, help="keep only the N most frequent target words, the 4 special symbols included (-1: all)"
    )
    nwordssrc: int = field(
        -1, help="keep only the N most frequent source words, the 4 special symbols included (-1: all)"
    )
    alignfile: Optional[str] = field(
        None, help="an alignment file of the train set: writes alignment.{src}-{tgt}.txt", metavar="ALIGN"
    )
    dataset_impl: Literal["raw", "lazy", "cached", "mmap"] = field(
        "mmap", help="output dataset implementation (lazy and cached write the legacy TNTIDX format)"
    )
    joined_dictionary: bool = field(False, help="build one dictionary from source and target text together")
    only_source: bool = field(False, help="binarize the source side only (language-model data)")
    padding_factor: int = field(8, help="add filler symbols until the dictionary's size is a multiple of N")
    workers: int = field(1, help="processes that binarize the files in parallel")
    dict_only: bool = field(False, help="write the dictionaries and stop, binarizing nothing")
    task: str = field(
        "translation", help="task whose dictionary type to build (fairseq's flag; every built-in task uses Dictionary)"
    )


PREPROCESS = CommandSpec(
    prog="seqloom preprocess",
    description="Build dictionaries and binarize text into fairseq-compatible indexed datasets.",
    groups=(("common", CommonConfig), ("preprocessing", PreprocessConfig)),
)


@dataclass(kw_only=True)
class ExportConfig:
    """Options of ``seqloom export``."""

    path: Optional[str] = field(None, help="the checkpoint file to export (or its directory, holding model.pt)")
    out: Optional[str] = field(None, help="the directory to write the export into")
    data: Optional[str] = field(
        None, help="the directory holding the model's dict.*.txt files; if unset, the checkpoint's directory"
    )
    source_lang: Optional[str] = field(
        None, help="source language; if unset, from the checkpoint or the data file names"
    )
    target_lang: Optional[str] = field(
        None, help="target language; if unset, from the checkpoint or the data file names"
    )
    quantize: Optional[Literal["int8"]] = field(
        None,
        help="store the linear layers and the output projection as int8 weights with one float32 scale per "
        "output row (about a quarter of their float32 size); loaded back as an int8 model for the CPU",
    )


EXPORT = CommandSpec(
    prog="seqloom export",
    description="Write a checkpoint as model.safetensors + config.json + dictionaries + tokenizer/BPE files.",
    groups=(("export", ExportConfig),),
    selectors={"tokenizer": None, "bpe": None},
)


@dataclass(kw_only=True)
class ScoreConfig:
    """Options of ``seqloom score`` (fairseq-score's names and defaults)."""

    sys: str = field("-", help="system output", aliases=("-s",))
    ref: str = field(None, help="references", aliases=("-r",))
    order: int = field(4, help="longest n-gram counted by BLEU", aliases=("-o",))
    ignore_case: bool = field(False, help="case-insensitive scoring")
    sacrebleu: bool = field(False, help="score with sacrebleu")
    sentence_bleu: bool = field(
        False, help="print a BLEU per sentence, with add-one smoothing, instead of one for the whole set"
    )


SCORE = CommandSpec(
    prog="seqloom score", description="BLEU of a system output against references (fairseq-score).",
    groups=(("score", ScoreConfig),),
)  # fmt: skip


# the commands whose options a fairseq config dump may name (every dump holds the whole configuration)
ALL_SPECS: tuple[CommandSpec, ...] = (TRAIN, GENERATE, INTERACTIVE, VALIDATE, EVAL_LM, PREPROCESS)
