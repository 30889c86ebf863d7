"""``--task sentence_ranking``: pick the right one of ``--num-classes`` options (RACE, SWAG, CommonsenseQA).

``DATA/input0/`` holds the contexts and ``DATA/input1/`` .. ``DATA/inputN/`` the options, each ``dict.txt`` and
``{split}.bin/.idx`` (``preprocess --only-source --srcdict`` with the pretrained model's dictionary, to which
``<mask>`` is appended as fairseq does); ``DATA/label/{split}.label`` holds one integer per line, the index of the
right option (a split without it is scored but has no loss: ``--save-predictions`` of a test set). Each option is
read as ``[init] option [sep] context``. The model gets one head, ``--ranking-head-name`` (the criterion's flag),
with one output: the option's score; the scores of an example's options make its logits.
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
from seqloom.data.sentence_ranking_dataset import (
    OptionsTokens,
    SentenceRankingDataset,
    option_tokens,
    read_choice_labels,
)
from seqloom.data.shorten_dataset import maybe_shorten
from seqloom.tasks.base import OneDictionaryTask, add_classification_head
from seqloom.tasks.sentence_prediction import load_dictionary

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class SentenceRankingConfig:
    """Options of ``--task sentence_ranking`` (fairseq's names and defaults)."""

    FROM_CRITERION: ClassVar[tuple[str, ...]] = ("ranking_head_name",)

    data: Optional[str] = field(
        None, help="the data folder, with input0/ (contexts), input1/ .. inputN/ (options) and label/", positional=True
    )
    num_classes: Optional[int] = field(None, help="number of options per example (input1/ .. inputN/)")
    init_token: Optional[int] = field(None, help="symbol index put before each option, such as 0 for <s> (unset: none)")
    separator_token: Optional[int] = field(
        None, help="symbol index put between an option and its context, such as 2 for </s> (unset: none)"
    )
    no_shuffle: bool = field(False, help="keep the examples in file order instead of a seeded random order")
    shorten_method: Literal["none", "truncate", "random_crop"] = field(
        "none",
        help="what to do with option+context sequences longer than --max-positions: none keeps them whole, "
        "truncate cuts their end, random_crop keeps a random window",
    )
    shorten_data_split_list: str = field(
        "", help='comma-separated splits to shorten, such as "train,valid" (empty: every split)'
    )
    max_option_length: Optional[int] = field(
        None, help="cut each option (with its init token) to this many tokens before the context is added"
    )
    max_positions: int = field(512, help="longest option+context sequence, in tokens, the model takes")
    seed: int = field(1, help="seed of the task's random choices (shuffling, random crops)")
    ranking_head_name: str = field(
        "sentence_classification_head", help="set by the criterion's --ranking-head-name", cli=False
    )


@registry.TASKS.register("sentence_ranking", config=SentenceRankingConfig)
class SentenceRankingTask(OneDictionaryTask):
    """Multiple choice: one score per option from a one-output classification head."""

    required_criterion = "sentence_ranking"  # its batches hold N option sequences, which only that loss reads

    def __init__(self, cfg: SentenceRankingConfig, dictionary: Dictionary, *, dataset_impl: str | None = None) -> None:
        super().__init__()
        self.cfg, self.dictionary = cfg, dictionary
        self.dataset_impl = dataset_impl

    @classmethod
    def setup_task(cls, cfg: SentenceRankingConfig, *, dataset_impl: str | None = None) -> SentenceRankingTask:
        if cfg.num_classes is None or cfg.num_classes < 1:
            raise ValueError("sentence_ranking: set --num-classes to the number of options per example "
                             "(DATA/input1 .. DATA/inputN)")  # fmt: skip
        if not cfg.data:
            raise ValueError("sentence_ranking: no data directory given (the positional DATA argument)")
        dictionary = load_dictionary(Path(cfg.data) / "input0" / "dict.txt")
        logger.info("[input] dictionary: %d types", len(dictionary))
        return cls(cfg, dictionary, dataset_impl=dataset_impl)

    def max_positions(self) -> tuple[int | None, int | None]:
        return self.cfg.max_positions, self.cfg.max_positions

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Adds the ``--ranking-head-name`` head with one output (an option's score), as fairseq's build_model."""
        return add_classification_head(model, self.cfg.ranking_head_name, 1, task="sentence_ranking",
                                       archs="a RoBERTa architecture (--arch roberta_base ...)")  # fmt: skip

    def _tokens(self, kind: str, split: str) -> Any:
        prefix = os.path.join(str(self.cfg.data), kind, split)
        impl = self.dataset_impl or formats.infer_dataset_impl(prefix)
        if impl is None or not formats.data_exists(prefix, impl):
            raise FileNotFoundError(f"sentence_ranking: {prefix}.bin/.idx not found (--num-classes "
                                    f"{self.cfg.num_classes} reads input0/ .. input{self.cfg.num_classes}/)")  # fmt: skip
        return formats.make_dataset(prefix, impl, dictionary=self.dictionary)

    def load_dataset(self, split: str, *, epoch: int = 1, combine: bool = False) -> SentenceRankingDataset:
        cfg = self.cfg
        assert cfg.num_classes is not None
        context = self._tokens("input0", split)
        options = []
        for k in range(1, cfg.num_classes + 1):
            option = self._tokens(f"input{k}", split)
            if len(option) != len(context):
                raise ValueError(f"sentence_ranking: {cfg.data}/input{k}/{split}.bin has {len(option):,} options but "
                                 f"input0/{split}.bin {len(context):,} contexts; each example needs one line in "
                                 "every inputK file")  # fmt: skip
            tokens = option_tokens(option, context, init_token=cfg.init_token, separator_token=cfg.separator_token,
                                   max_option_length=cfg.max_option_length)  # fmt: skip
            options.append(maybe_shorten(tokens, split, split_list=cfg.shorten_data_split_list,
                                         method=cfg.shorten_method, length=cfg.max_positions, seed=cfg.seed))  # fmt: skip
        label_path = os.path.join(str(cfg.data), "label", f"{split}.label")
        labels = read_choice_labels(label_path, num_classes=cfg.num_classes) if os.path.exists(label_path) else None
        if labels is not None and len(labels) != len(context):
            raise ValueError(f"sentence_ranking: {label_path} has {len(labels):,} labels but input0/{split}.bin "
                             f"{len(context):,} examples; each example needs its label on the same line number")  # fmt: skip
        dataset = SentenceRankingDataset(OptionsTokens(options), labels, pad=self.dictionary.pad(),
                                         shuffle=not cfg.no_shuffle, seed=cfg.seed)  # fmt: skip
        logger.info("Loaded %s with #samples: %d", split, len(dataset))
        self.datasets[split] = dataset
        return dataset
