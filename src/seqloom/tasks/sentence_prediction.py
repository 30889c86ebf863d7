"""``--task sentence_prediction``: classify (or regress on) sentences or sentence pairs, fairseq's GLUE recipe.

``DATA/input0/`` (and ``input1/`` for pairs) hold ``dict.txt`` and ``{split}.bin/.idx`` (``preprocess
--only-source --srcdict`` with the pretrained model's dictionary); ``DATA/label/`` holds the labels, binarized
with their own ``dict.txt`` (classes: the label dictionary's symbols in order), or ``{split}.label`` text files of
numbers with ``--regression-target``. ``<mask>`` is appended to the dictionaries, as fairseq does, so BART
checkpoints fit. The model gets the head ``--classification-head-name`` with ``--num-classes`` outputs.
``--regression-target`` and ``--classification-head-name`` are the criterion's flags (fairseq's interpolations).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

from torch import nn

from seqloom import registry
from seqloom.config.options import field
from seqloom.data import formats
from seqloom.data.dictionary import Dictionary
from seqloom.data.sentence_prediction_dataset import (
    PairTokens,
    SentencePredictionDataset,
    class_labels,
    regression_labels,
)
from seqloom.data.shorten_dataset import maybe_shorten
from seqloom.tasks.base import OneDictionaryTask, add_classification_head

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class SentencePredictionConfig:
    """Options of ``--task sentence_prediction`` (fairseq's names and defaults)."""

    FROM_CRITERION: ClassVar[tuple[str, ...]] = ("regression_target", "classification_head_name")

    data: Optional[str] = field(
        None, help="the data folder, with input0/ (input1/ for pairs) and label/ subfolders", positional=True
    )
    num_classes: int = field(-1, help="number of classes, or of values to predict with --regression-target")
    init_token: Optional[int] = field(
        None, help="symbol index put before each example, such as 0 for <s> (unset: none)"
    )
    separator_token: Optional[int] = field(None, help="symbol index put between the two inputs of a pair (unset: none)")
    no_shuffle: bool = field(False, help="keep the examples in file order instead of a seeded random order")
    shorten_method: Literal["none", "truncate", "random_crop"] = field(
        "none",
        help="what to do with examples longer than --max-positions: none keeps them whole, truncate cuts their end, random_crop keeps a random window",
    )
    shorten_data_split_list: str = field(
        "", help='comma-separated splits to shorten, such as "train,valid" (empty: every split)'
    )
    add_prev_output_tokens: bool = field(
        False, help="also give the example to the decoder (shifted right), for encoder-decoder models such as BART"
    )
    max_positions: int = field(512, help="longest example, in tokens, the model takes")
    seed: int = field(1, help="seed of the task's random choices (noise, sampling, shuffling)")
    regression_target: bool = field(False, help="set by the criterion's --regression-target", cli=False)
    classification_head_name: str = field(
        "sentence_classification_head", help="set by the criterion's --classification-head-name", cli=False
    )


def load_dictionary(path: Path) -> Dictionary:
    """A ``dict.txt`` with ``<mask>`` appended (fairseq's ``SentencePredictionTask.load_dictionary``)."""
    if not path.is_file():
        raise FileNotFoundError(f"sentence_prediction: dictionary {path} not found (DATA/input0, DATA/label)")
    dictionary = Dictionary.load(str(path))
    dictionary.add_symbol("<mask>")
    return dictionary


@registry.TASKS.register("sentence_prediction", config=SentencePredictionConfig)
class SentencePredictionTask(OneDictionaryTask):
    """Sentence(-pair) classification or regression with a classification head."""

    def __init__(self, cfg: SentencePredictionConfig, dictionary: Dictionary, label_dictionary: Dictionary, *,
                 dataset_impl: str | None = None) -> None:  # fmt: skip
        super().__init__()
        self.cfg, self.dictionary, self.label_dictionary = cfg, dictionary, label_dictionary
        self.dataset_impl = dataset_impl

    @classmethod
    def setup_task(cls, cfg: SentencePredictionConfig, *, dataset_impl: str | None = None) -> SentencePredictionTask:
        if cfg.num_classes <= 0:
            raise ValueError("sentence_prediction: set --num-classes (classes, or values with --regression-target)")
        if not cfg.data:
            raise ValueError("sentence_prediction: no data directory given (the positional DATA argument)")
        data = Path(cfg.data)
        dictionary = load_dictionary(data / "input0" / "dict.txt")
        logger.info("[input] dictionary: %d types", len(dictionary))
        labels = dictionary if cfg.regression_target else load_dictionary(data / "label" / "dict.txt")
        return cls(cfg, dictionary, labels, dataset_impl=dataset_impl)

    def max_positions(self) -> tuple[int | None, int | None]:
        return self.cfg.max_positions, self.cfg.max_positions

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Adds the ``--classification-head-name`` head with ``--num-classes`` outputs (fairseq's build_model)."""
        archs = "a RoBERTa or BART architecture (--arch roberta_base, bart_base ...)"
        name, classes = self.cfg.classification_head_name, self.cfg.num_classes
        return add_classification_head(model, name, classes, task="sentence_prediction", archs=archs)

    def _tokens(self, kind: str, split: str, dictionary: Dictionary) -> Any:
        prefix = os.path.join(str(self.cfg.data), kind, split)
        impl = self.dataset_impl or formats.infer_dataset_impl(prefix)
        if impl is None or not formats.data_exists(prefix, impl):
            return None
        return formats.make_dataset(prefix, impl, dictionary=dictionary)

    def load_dataset(self, split: str, *, epoch: int = 1, combine: bool = False) -> SentencePredictionDataset:
        cfg = self.cfg
        first = self._tokens("input0", split, self.dictionary)
        if first is None:
            raise FileNotFoundError(f"sentence_prediction: {cfg.data}/input0/{split}.bin/.idx not found")
        sources: Any = PairTokens(first, self._tokens("input1", split, self.dictionary),
                                  init_token=cfg.init_token, separator_token=cfg.separator_token)  # fmt: skip
        sources = maybe_shorten(sources, split, split_list=cfg.shorten_data_split_list, method=cfg.shorten_method,
                                length=cfg.max_positions, seed=cfg.seed)  # fmt: skip
        if cfg.regression_target:
            labels = regression_labels(os.path.join(str(cfg.data), "label", f"{split}.label"))
        else:
            binarized = self._tokens("label", split, self.label_dictionary)
            if binarized is None:
                raise FileNotFoundError(f"sentence_prediction: {cfg.data}/label/{split}.bin/.idx not found")
            labels = class_labels(binarized, eos=self.label_dictionary.eos(), nspecial=self.label_dictionary.nspecial)
        if len(labels) != len(sources):
            where = f"{cfg.data}/label/{split}.label" if cfg.regression_target else f"{cfg.data}/label/{split}.bin"
            raise ValueError(f"sentence_prediction: split {split!r} has {len(sources):,} inputs "
                             f"({cfg.data}/input0/{split}.bin) but {len(labels):,} labels ({where}); "
                             "each input line needs its label on the same line number")  # fmt: skip
        dataset = SentencePredictionDataset(sources, labels, pad=self.dictionary.pad(),
                                            add_prev_output_tokens=cfg.add_prev_output_tokens,
                                            shuffle=not cfg.no_shuffle, seed=cfg.seed)  # fmt: skip
        logger.info("Loaded %s with #samples: %d", split, len(dataset))
        self.datasets[split] = dataset
        return dataset
