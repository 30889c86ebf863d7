"""The ``language_modeling`` task: blocks of a binarized monolingual corpus (``preprocess --only-source``).

A data folder holds ``dict.txt`` and ``{split}.bin/.idx`` (``split1``, ``split2``... are further shards read
with ``combine``). ``DATA`` may list several folders separated by ``:``; epoch ``e`` reads folder
``(e - 1) % n``. Sentences are cut into blocks by ``--sample-break-mode`` and ``--tokens-per-sample``
(:mod:`seqloom.data.token_block_dataset`); each block's target is the next token at every position.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Literal, Optional

from torch import Tensor

from seqloom import registry
from seqloom.config.options import field
from seqloom.data.batching import resolve_max_positions
from seqloom.data.dictionary import Dictionary
from seqloom.data.iterators import EpochIterator
from seqloom.data.lm_context_window_dataset import LMContextWindowDataset
from seqloom.data.monolingual_dataset import MonolingualDataset
from seqloom.data.prompts import PromptDataset
from seqloom.data.shorten_dataset import maybe_shorten
from seqloom.data.token_block_dataset import TokenBlockDataset
from seqloom.tasks.base import BatchingOptions, Task
from seqloom.tasks.monolingual import epoch_path, load_dictionary, load_shards

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class LanguageModelingConfig:
    """Options of ``--task language_modeling`` (fairseq's names and defaults)."""

    data: Optional[str] = field(None, help="the binarized data folder (dict.txt and the split files)", positional=True)
    sample_break_mode: Literal["none", "complete", "complete_doc", "eos"] = field(
        "none",
        help="how the token stream is cut into blocks: none, blocks of exactly --tokens-per-sample tokens across sentences; complete, whole sentences packed up to that size; complete_doc, the same without crossing a document (an empty line); eos, one sentence per block",
    )
    tokens_per_sample: int = field(1024, help="length of the blocks the token stream is cut into, in tokens")
    output_dictionary_size: int = field(
        -1, help="score only the N first symbols of the dictionary as outputs (-1: all of them)"
    )
    self_target: bool = field(False, help="add the block itself as a target (not supported by transformer_lm)")
    future_target: bool = field(
        False, help="add the next token of every position as the target (the usual language-model target)"
    )
    past_target: bool = field(
        False, help="add the previous token of every position as a target (not supported by transformer_lm)"
    )
    add_bos_token: bool = field(False, help="start every block with the beginning-of-sentence symbol <s>")
    max_target_positions: Optional[int] = field(
        None, help="longest block, in tokens, the task feeds the model (unset: --tokens-per-sample)"
    )
    shorten_method: Literal["none", "truncate", "random_crop"] = field(
        "none",
        help="what to do with samples longer than the model takes: none keeps them whole, truncate cuts their end, random_crop keeps a random window",
    )
    shorten_data_split_list: str = field(
        "",
        help='comma-separated splits to shorten, such as "train,valid" (empty: every split)',
    )
    pad_to_fixed_length: bool = field(
        False, help="pad every batch to --tokens-per-sample tokens instead of to its longest block"
    )
    seed: int = field(1, help="seed of the task's random choices (noise, sampling, shuffling)")


class TruncatedDictionary:
    """The first ``length`` symbols of a dictionary (``--output-dictionary-size``); ids past it read as unk."""

    def __init__(self, wrapped: Dictionary, length: int) -> None:
        self.wrapped = wrapped
        self.length = min(len(wrapped), length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> str:
        return self.wrapped[i] if i < self.length else self.wrapped[self.wrapped.unk()]

    def __getattr__(self, name: str) -> Any:
        if name == "wrapped":  # not set yet (unpickling in a data-loader worker)
            raise AttributeError(name)
        return getattr(self.wrapped, name)


@registry.TASKS.register("language_modeling", config=LanguageModelingConfig)
class LanguageModelingTask(Task):
    """Train or evaluate a language model on blocks of a token stream."""

    def __init__(self, cfg: LanguageModelingConfig, dictionary: Any, output_dictionary: Any = None, *,
                 dataset_impl: str | None = None) -> None:  # fmt: skip
        super().__init__()
        if cfg.self_target or cfg.past_target:
            raise ValueError("language_modeling: --self-target/--past-target are not supported by transformer_lm")
        self.cfg = cfg
        self.dictionary = dictionary
        self.output_dictionary = output_dictionary if output_dictionary is not None else dictionary
        self.dataset_impl = dataset_impl

    @property
    def source_dictionary(self) -> Any:
        return self.dictionary

    @property
    def target_dictionary(self) -> Any:
        return self.output_dictionary

    @classmethod
    def setup_task(cls, cfg: LanguageModelingConfig, *, dataset_impl: str | None = None) -> LanguageModelingTask:
        """Reads ``dict.txt`` of the first data folder."""
        dictionary = load_dictionary(cfg.data, task="language_modeling")
        logger.info("dictionary: %d types", len(dictionary))
        output: Any = dictionary
        if cfg.output_dictionary_size >= 0:
            output = TruncatedDictionary(dictionary, cfg.output_dictionary_size)
        return cls(cfg, dictionary, output, dataset_impl=dataset_impl)

    def load_dataset(self, split: str, *, epoch: int = 1, combine: bool = False) -> MonolingualDataset:
        """Loads ``split`` from the epoch's data folder as LM blocks; ``combine`` also reads ``split1``..."""
        path = epoch_path(self.cfg.data, epoch)
        tokens = load_shards(path, split, combine=combine, dictionary=self.dictionary, dataset_impl=self.dataset_impl,
                             task="language_modeling", subset_flags="--train-subset/--valid-subset/--gen-subset",
                             logger=logger)  # fmt: skip
        cfg = self.cfg
        tokens = maybe_shorten(tokens, split, split_list=cfg.shorten_data_split_list, method=cfg.shorten_method,
                               length=cfg.tokens_per_sample, seed=cfg.seed)  # fmt: skip
        blocks = TokenBlockDataset(
            tokens,
            tokens.sizes,
            cfg.tokens_per_sample,
            pad=self.dictionary.pad(),
            eos=self.dictionary.eos(),
            break_mode=cfg.sample_break_mode,
            include_targets=True,
        )
        dataset = MonolingualDataset(
            blocks,
            blocks.sizes,
            self.dictionary,
            self.output_dictionary,
            shuffle=True,
            add_bos_token=cfg.add_bos_token,
            fixed_pad_length=cfg.tokens_per_sample if cfg.pad_to_fixed_length else None,
        )
        logger.info("%s %s %d examples", path, split, len(dataset))
        self.datasets[split] = dataset
        return dataset

    def build_dataset_for_inference(self, tokens: list[Tensor]) -> PromptDataset:
        """Encoded lines as prompts to continue (``interactive``), as fairseq's task builds them."""
        d = self.dictionary
        return PromptDataset(tokens, d, start=d.bos() if self.cfg.add_bos_token else d.eos())

    def eval_lm_iterator(
        self, dataset: MonolingualDataset, options: BatchingOptions, *, context_window: int = 0
    ) -> EpochIterator:
        """Batches of ``dataset`` in order for ``eval-lm``; with ``context_window`` rows carry earlier tokens."""
        data: Any = dataset
        if context_window > 0:
            data = LMContextWindowDataset(dataset, tokens_per_sample=self.cfg.tokens_per_sample,
                                          context_window=context_window, pad_idx=self.dictionary.pad())  # fmt: skip
        options = dataclasses.replace(
            options, max_positions=resolve_max_positions(options.max_positions), ignore_invalid_inputs=True
        )
        return self.get_batch_iterator(data, options).next_epoch_itr(shuffle=False)
