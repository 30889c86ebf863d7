"""``--task masked_lm``: RoBERTa / XLM-R pretraining (predict masked tokens of ``<s>``-prefixed blocks).

A data folder as ``preprocess --only-source`` writes it (``dict.txt``, ``{split}.bin/.idx``; ``DATA`` may list
``:``-separated folders, one per epoch). As in fairseq: sentences (with their ``</s>``) are packed into blocks
of ``--tokens-per-sample - 1`` tokens by ``--sample-break-mode``, each block gets ``<s>`` in front, and is masked
(:mod:`seqloom.data.mask_tokens_dataset`). ``<mask>`` is appended to the dictionary. ``--mask-whole-words`` needs
``--bpe`` (``gpt2``: a symbol whose text starts with a space begins a word; ``sentencepiece``: a piece starting
with ``▁``); specials and ``madeupword`` fillers always begin words.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
from torch import nn

from seqloom import registry
from seqloom.config.options import field
from seqloom.data.dictionary import Dictionary
from seqloom.data.mask_tokens_dataset import MaskingOptions, MaskTokensDataset, PrependTokenDataset
from seqloom.data.shorten_dataset import maybe_shorten
from seqloom.data.token_block_dataset import TokenBlockDataset
from seqloom.tasks.base import OneDictionaryTask
from seqloom.tasks.monolingual import epoch_path, load_dictionary, load_shards
from seqloom.tokenizers.bpe import build_bpe
from seqloom.tokenizers.word_starts import word_start_table as symbols_beginning_words

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class MaskedLMConfig:
    """Options of ``--task masked_lm`` (fairseq's names and defaults)."""

    data: Optional[str] = field(None, help="path to data directory (':'-separated folders: one per epoch)",
                                positional=True)  # fmt: skip
    sample_break_mode: Literal["none", "complete", "complete_doc", "eos"] = field(
        "none",
        help="none: blocks of exactly --tokens-per-sample tokens; complete: whole sentences up to that size; "
        "complete_doc: the same within documents; eos: one sentence per block",
    )
    tokens_per_sample: int = field(1024, help="max number of tokens per block, <s> included")
    mask_prob: float = field(0.15, help="probability of choosing a token for prediction")
    leave_unmasked_prob: float = field(0.1, help="probability that a chosen token is left as it is")
    random_token_prob: float = field(0.1, help="probability that a chosen token is replaced by a random token")
    freq_weighted_replacement: bool = field(False, help="draw random tokens by their dictionary counts")
    mask_whole_words: bool = field(False, help="choose whole words (word starts from --bpe) instead of tokens")
    mask_multiple_length: int = field(1, help="each choice masks this many consecutive positions")
    mask_stdev: float = field(0.0, help="standard deviation of the number of consecutive positions masked")
    shorten_method: Literal["none", "truncate", "random_crop"] = field(
        "none", help="if not none, shorten sentences longer than --tokens-per-sample"
    )
    shorten_data_split_list: str = field(
        "", help='comma-separated splits to shorten, e.g. "train,valid" (default: all)'
    )
    bpe: Optional[str] = field(None, help="the BPE of the data: its word starts drive --mask-whole-words")
    gpt2_encoder_json: Optional[str] = field(None, help="with --bpe gpt2: path to GPT-2's encoder.json")
    gpt2_vocab_bpe: Optional[str] = field(None, help="with --bpe gpt2: path to GPT-2's vocab.bpe")
    sentencepiece_model: Optional[str] = field(None, help="with --bpe sentencepiece: path to the .model file")
    seed: int = field(1, help="pseudo random number generator seed")
    skip_masking: bool = field(False, help="no masking: every token is input and target as it is")
    include_target_tokens: bool = field(False, help="give the model the targets too (data2vec; not supported)")
    include_index: bool = field(True, help="give the model each sample's index (data2vec's; RoBERTa ignores it)")

    def masking(self) -> MaskingOptions:
        return MaskingOptions(mask_prob=self.mask_prob, leave_unmasked_prob=self.leave_unmasked_prob,
                              random_token_prob=self.random_token_prob,
                              freq_weighted_replacement=self.freq_weighted_replacement,
                              mask_multiple_length=self.mask_multiple_length, mask_stdev=self.mask_stdev,
                              skip=self.skip_masking)  # fmt: skip


def word_start_table(cfg: MaskedLMConfig, dictionary: Dictionary) -> np.ndarray:
    """``(V,)`` bool: which symbols begin a word under ``--bpe`` (fairseq's ``get_whole_word_mask``)."""
    if cfg.bpe is None:
        raise ValueError("masked_lm: --mask-whole-words needs --bpe (gpt2 or sentencepiece) to find word starts")
    options = {"gpt2": {"gpt2_encoder_json": cfg.gpt2_encoder_json, "gpt2_vocab_bpe": cfg.gpt2_vocab_bpe},
               "sentencepiece": {"sentencepiece_model": cfg.sentencepiece_model}}.get(cfg.bpe)  # fmt: skip
    bpe = build_bpe(cfg.bpe, options)

    return symbols_beginning_words(dictionary, bpe)


@registry.TASKS.register("masked_lm", config=MaskedLMConfig)
class MaskedLMTask(OneDictionaryTask):
    """Train an encoder (RoBERTa) to predict masked tokens."""

    def __init__(self, cfg: MaskedLMConfig, dictionary: Dictionary, *, dataset_impl: str | None = None) -> None:
        super().__init__()
        cfg.masking().check()
        if cfg.include_target_tokens:
            raise NotImplementedError("masked_lm: --include-target-tokens (data2vec) is not supported; drop the flag")
        self.cfg, self.dictionary, self.dataset_impl = cfg, dictionary, dataset_impl
        self.mask_idx = dictionary.add_symbol("<mask>")
        self._word_starts: np.ndarray | None = None

    @classmethod
    def setup_task(cls, cfg: MaskedLMConfig, *, dataset_impl: str | None = None) -> MaskedLMTask:
        dictionary = load_dictionary(cfg.data, task="masked_lm")
        logger.info("dictionary: %d types", len(dictionary))
        return cls(cfg, dictionary, dataset_impl=dataset_impl)

    def max_positions(self) -> tuple[int | None, int | None]:
        return self.cfg.tokens_per_sample, self.cfg.tokens_per_sample

    def blocks(self, split: str, *, epoch: int = 1, combine: bool = False) -> PrependTokenDataset:
        """The unmasked ``<s> ...`` blocks of ``split`` (from the epoch's data folder)."""
        cfg, d = self.cfg, self.dictionary
        path = epoch_path(cfg.data, epoch)
        tokens = load_shards(path, split, combine=combine, dictionary=d, dataset_impl=self.dataset_impl,
                             task="masked_lm", subset_flags="--train-subset/--valid-subset")  # fmt: skip
        tokens = maybe_shorten(tokens, split, split_list=cfg.shorten_data_split_list, method=cfg.shorten_method,
                               length=cfg.tokens_per_sample, seed=cfg.seed)  # fmt: skip
        blocks = TokenBlockDataset(tokens, tokens.sizes, cfg.tokens_per_sample - 1, pad=d.pad(), eos=d.eos(),
                                   break_mode=cfg.sample_break_mode)  # fmt: skip
        logger.info("loaded %d blocks from: %s", len(blocks), os.path.join(path, split))
        return PrependTokenDataset(blocks, d.bos())

    def load_dataset(self, split: str, *, epoch: int = 1, combine: bool = False) -> MaskTokensDataset:
        if self.cfg.mask_whole_words and self._word_starts is None:
            self._word_starts = word_start_table(self.cfg, self.dictionary)
        blocks = self.blocks(split, epoch=epoch, combine=combine)
        dataset = MaskTokensDataset(blocks, blocks.sizes, self.cfg.masking(), vocab=self.dictionary,
                                    mask_idx=self.mask_idx, seed=self.cfg.seed,
                                    word_starts=self._word_starts)  # fmt: skip
        self.datasets[split] = dataset
        return dataset

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """A masked-LM model must take ``masked_tokens`` (RoBERTa does); others are refused by name."""
        if not getattr(model, "supports_masked_tokens", False):
            raise ValueError(f"masked_lm: --arch builds a {type(model).__name__}, which has no masked-LM head; "
                             "use a RoBERTa architecture (--arch roberta_base ...)")  # fmt: skip
        return model
