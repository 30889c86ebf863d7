"""What every task shares: its loaded splits and the batch iterator built over one of them."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from torch import Tensor, nn

from seqloom.data.batching import batch_by_size, filter_by_size, resolve_max_positions
from seqloom.data.dictionary import Dictionary
from seqloom.data.iterators import EpochBatchIterator
from seqloom.data.sized import Batchable, BatchT, ItemT

logger = logging.getLogger(__name__)


def data_paths(data: str | None, *, task: str, example: str) -> list[str]:
    """The ``:``-separated folders of the positional ``DATA`` argument, each checked to exist; ``task`` and an
    ``example`` folder go into the errors."""
    if not data:
        raise ValueError(f"{task}: no data directory given (the positional DATA argument, e.g. {example})")
    paths = [p for p in data.split(os.pathsep) if p]
    for p in paths:
        if not Path(p).is_dir():
            raise FileNotFoundError(f"{task}: data directory {p!r} does not exist (DATA argument)")
    return paths


@dataclass(kw_only=True)
class BatchingOptions:
    """How one split is cut into batches (``--max-tokens``, ``--batch-size``, ... for that split)."""

    max_tokens: int | None = None
    max_sentences: int | None = None
    max_positions: tuple[int | None, int | None] | None = None
    ignore_invalid_inputs: bool = False
    required_batch_size_multiple: int = 1
    seed: int = 1
    num_shards: int = 1
    shard_id: int = 0
    num_workers: int = 0
    epoch: int = 1
    grouped_shuffling: bool = False  # shuffle groups of num_shards consecutive batches (similar lengths per rank)
    skip_remainder_batch: bool = False  # leave each epoch's last batch out (--skip-remainder-batch)
    data_buffer_size: int = 0  # batches a background thread reads ahead (--data-buffer-size; training, validation)
    # leave out a last batch whose size is not a multiple of required_batch_size_multiple, as fairseq 0.12's
    # batch_by_size does everywhere (fairseq issues #5036, #5351: test sentences go untranslated). Only training
    # batches take it, so that seeded runs keep fairseq's batches; evaluation keeps every sample.
    drop_partial_last_batch: bool = False


def require_batches(itr: EpochBatchIterator, split: str) -> EpochBatchIterator:
    """``itr``, unless it holds no batch at all: then an error naming ``split`` and why (a training loop over
    no batches would never reach --max-update, and an evaluation would print a loss of 0)."""
    if itr.empty_reason is not None:
        raise ValueError(f"nothing to run on {split!r}: {itr.empty_reason}")
    return itr


class Task:
    """Holds the loaded splits of a task (``self.datasets[split]``) and iterates batches over them.

    Besides loading splits and batching them, a task may override these hooks; the defaults say "nothing
    special", and commands call them on every task:

    * ``prepare_model(model)``: the model the task trains (sentence_prediction adds its classification head);
    * ``validation_extras()``: ``(hook, reduce)`` run on validation batches (translation's ``--eval-bleu``);
    * ``language_subsets``: a validation split -> the per-language splits validated with it;
    * ``generation_eos``: the symbol that ends generated targets (None: the target dictionary's ``</s>``);
    * ``inference_prefix_token``: a token every generated target starts with (a target-language tag);
    * ``symbols_to_strip_from_output``: symbols left out of printed hypotheses (None: the generator's own);
    * ``required_criterion``: the one ``--criterion`` whose batches the task makes (None: any).
    """

    required_criterion: str | None = None

    language_subsets: Mapping[str, list[str]] = MappingProxyType({})

    def __init__(self) -> None:
        self.datasets: dict[str, Batchable[Any, Any]] = {}

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model

    def validation_extras(self) -> tuple[Any, Any]:
        return None, None

    @property
    def generation_eos(self) -> int | None:
        return None

    @property
    def inference_prefix_token(self) -> int | None:
        return None

    @property
    def symbols_to_strip_from_output(self) -> frozenset[int] | None:
        return None

    def dataset(self, split: str) -> Batchable[Any, Any]:
        if split not in self.datasets:
            raise KeyError(f"split {split!r} is not loaded (call load_dataset({split!r}) first)")
        return self.datasets[split]

    def max_positions(self) -> tuple[int | None, int | None] | None:
        return None

    def build_dataset_for_inference(self, tokens: list[Tensor]) -> Batchable[Any, Any]:
        """A dataset of encoded input lines for ``interactive``; tasks that generate from raw text override it."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot generate from raw input lines (fairseq's cannot either); interactive "
            "takes --task translation, translation_from_pretrained_bart or language_modeling (for BART, use the "
            "hub: fill_mask, sample)"
        )

    def get_batch_iterator(
        self, dataset: Batchable[ItemT, BatchT], options: BatchingOptions
    ) -> EpochBatchIterator[ItemT, BatchT]:
        """Length-sorted, size-filtered, token-budget batches over ``dataset`` (fairseq's recipe)."""
        set_epoch = getattr(dataset, "set_epoch", None)
        if callable(set_epoch):  # as fairseq: the epoch's items (a resampled dataset's draw) decide the batches
            set_epoch(options.epoch)
        # fairseq 0.12.3 orders (ties broken by a permutation) under numpy_seed(seed + epoch)
        indices = dataset.ordered_indices(np.random.RandomState(options.seed + options.epoch))
        total = len(indices)
        max_positions = resolve_max_positions(options.max_positions, options.max_tokens)
        indices = self._filter(dataset, indices, max_positions, options.ignore_invalid_inputs)
        batches = batch_by_size(
            indices,
            dataset.num_tokens_vec(indices),
            max_tokens=options.max_tokens,
            max_sentences=options.max_sentences,
            required_batch_size_multiple=options.required_batch_size_multiple,
        )
        mult = options.required_batch_size_multiple
        if options.drop_partial_last_batch and mult > 1 and batches and len(batches[-1]) % mult != 0:
            logger.warning(
                "%d samples (the last batch, not a multiple of --required-batch-size-multiple %d) are left out of "
                "every epoch, as fairseq leaves them out; --required-batch-size-multiple 1 keeps them",
                len(batches[-1]),
                mult,
            )
            batches = batches[:-1]
        empty_reason = None
        if not batches:
            empty_reason = (
                "it has no samples" if total == 0
                else f"all {total:,} samples are longer than max_positions={max_positions} (--max-tokens, "
                "--max-source-positions, --max-target-positions) and were skipped" if len(indices) == 0
                else f"what is left ({len(indices):,} samples) makes one batch, which training leaves out as not a "
                f"multiple of --required-batch-size-multiple {mult} (set it to 1 to keep it)"
            )  # fmt: skip
        itr = EpochBatchIterator(
            dataset,
            batches,
            dataset.collater,
            seed=options.seed,
            num_shards=options.num_shards,
            shard_id=options.shard_id,
            num_workers=options.num_workers,
            epoch=options.epoch,
            grouped_shuffling=options.grouped_shuffling,
            skip_remainder_batch=options.skip_remainder_batch,
            buffer_size=options.data_buffer_size,
        )
        itr.empty_reason = empty_reason
        return itr

    @staticmethod
    def _filter(
        dataset: Batchable[Any, Any],
        indices: np.ndarray,
        max_positions: tuple[int | None, int | None],
        ignore_invalid: bool,
    ) -> np.ndarray:
        kept, dropped = filter_by_size(indices, dataset.src_sizes, dataset.tgt_sizes, max_positions)
        if len(dropped) == 0:
            return kept
        first = int(dropped[0])
        if not ignore_invalid:
            raise ValueError(
                f"sample #{first} has size {dataset.size(first)}, more than the model takes ({max_positions}); "
                "skip such samples with --skip-invalid-size-inputs-valid-test, or raise --max-tokens / "
                "--max-source-positions / --max-target-positions"
            )
        logger.warning(
            "%d samples are longer than the model takes (%s) and are left out; the first ids: %s",
            len(dropped),
            max_positions,
            dropped[:10].tolist(),
        )
        return kept


class OneDictionaryTask(Task):
    """A task whose inputs and targets read one dictionary, ``self.dictionary`` (masked LM, denoising, sentence
    prediction and ranking)."""

    dictionary: Dictionary

    @property
    def source_dictionary(self) -> Dictionary:
        return self.dictionary

    @property
    def target_dictionary(self) -> Dictionary:
        return self.dictionary


def add_classification_head(
    model: nn.Module, name: str, num_classes: int | None, *, task: str, archs: str
) -> nn.Module:
    """``model`` with a classification head ``name`` of ``num_classes`` outputs (fairseq's build_model of the
    sentence tasks); a model without heads is refused naming the architectures that have them."""
    register = getattr(model, "register_classification_head", None)
    if register is None:
        raise ValueError(f"{task}: --arch builds a {type(model).__name__}, which has no classification heads; "
                         f"use {archs}")  # fmt: skip
    register(name, num_classes=num_classes)
    return model
