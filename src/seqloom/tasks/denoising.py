"""The ``denoising`` task (BART pretraining): noised token blocks -> the clean blocks.

A data folder as ``preprocess --only-source`` writes it (``dict.txt``, ``{split}.bin/.idx``; ``DATA`` may list
``:``-separated folders, one per epoch). As in fairseq: sentences lose their ``</s>``, are packed into blocks of
``--tokens-per-sample - 2`` by ``--sample-break-mode``, get ``<s> ... </s>``, and each block's source is noised
(:mod:`seqloom.data.noising`). ``<mask>`` is appended to the dictionary, so a model has 4 + ``dict.txt`` + 1
embedding rows, as fairseq's BART checkpoints. Whole-word masking (``--mask-length word`` or ``span-poisson``,
or ``--mask-whole-words``) needs ``--bpe``: its ``is_beginning_of_word`` marks word starts (``--bpe gpt2`` also
makes ``.`` the sentence end of ``--permute-sentences``); without ``--bpe`` every subword is a word, as in fairseq.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Literal, Optional

import numpy as np

from seqloom import registry
from seqloom.config.options import field
from seqloom.data.denoising_dataset import BosEosDataset, DenoisingDataset, StripTokenDataset
from seqloom.data.dictionary import Dictionary
from seqloom.data.noising import MaskLength, NoiseOptions
from seqloom.data.shorten_dataset import maybe_shorten
from seqloom.data.token_block_dataset import TokenBlockDataset
from seqloom.tasks.base import Task
from seqloom.tasks.monolingual import epoch_path, load_dictionary, load_shards

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class DenoisingConfig:
    """Options of ``--task denoising`` (fairseq's names and defaults)."""

    data: Optional[str] = field(None, help="path to data directory", positional=True)
    bpe: Optional[str] = field(None, help="the BPE of the data: its word starts drive whole-word masking")
    gpt2_encoder_json: Optional[str] = field(None, help="with --bpe gpt2: path to GPT-2's encoder.json")
    gpt2_vocab_bpe: Optional[str] = field(None, help="with --bpe gpt2: path to GPT-2's vocab.bpe")
    tokens_per_sample: int = field(512, help="max number of total tokens over all segments per sample for dataset")
    sample_break_mode: Literal["none", "complete", "complete_doc", "eos"] = field(
        "complete_doc",
        help='If omitted or "none", fills each sample with tokens-per-sample tokens. If set to "complete", '
        "splits samples only at the end of sentence, but may include multiple sentences per sample. "
        '"complete_doc" is similar but respects doc boundaries. If set to "eos", includes only one sentence '
        "per sample.",
    )
    replace_length: int = field(0, help="when masking N tokens, replace with 0, 1, or N tokens (use -1 for N)")
    mask: float = field(0.0, help="fraction of words/subwords that will be masked")
    mask_random: float = field(0.0, help="instead of using [MASK], use random token this often")
    insert: float = field(0.0, help="insert this percentage of additional random tokens")
    permute: float = field(0.0, help="take this proportion of subwords and permute them")
    rotate: float = field(0.5, help="rotate this proportion of inputs")
    poisson_lambda: float = field(3.0, help="mean span length (in words) of --mask-length span-poisson")
    shuffle_instance: float = field(0.0, help="shuffle the order of equal-sized samples (any value > 0)")
    mask_length: MaskLength = field("subword", help="mask length to choose")
    mask_whole_words: bool = field(
        False, help="mask whole words (from --bpe's word starts) also with --mask-length subword (as masked_lm's flag)"
    )
    permute_sentences: float = field(-1.0, help="permute this proportion of the sentences of each sample")
    seed: int = field(1, help="pseudo random number generator seed")
    shorten_method: Literal["none", "truncate", "random_crop"] = field(
        "none", help="if not none, shorten sequences that exceed --tokens-per-sample"
    )
    shorten_data_split_list: str = field(
        "",
        help='comma-separated list of dataset splits to apply shortening to, e.g., "train,valid" '
        "(default: all dataset splits)",
    )
    max_source_positions: int = field(1024, help="max number of tokens in the source sequence")
    max_target_positions: int = field(1024, help="max number of tokens in the target sequence")

    def noise(self) -> NoiseOptions:
        return NoiseOptions(mask=self.mask, mask_random=self.mask_random, insert=self.insert, permute=self.permute,
                            rotate=self.rotate, permute_sentences=max(self.permute_sentences, 0.0),
                            replace_length=self.replace_length, mask_length=self.mask_length,
                            poisson_lambda=self.poisson_lambda)  # fmt: skip


def word_start_table(cfg: DenoisingConfig, dictionary: Dictionary) -> np.ndarray | None:
    """``(V,)`` bool: which symbols begin a word, from ``--bpe`` (fairseq's ``get_whole_word_mask``); None
    without ``--bpe``, or with ``--mask-length subword`` unless ``--mask-whole-words``. Specials, ``madeupword``s
    and non-BPE symbols begin words."""
    if cfg.mask_whole_words and cfg.bpe is None:
        raise ValueError("denoising: --mask-whole-words needs --bpe (its word starts say where words begin)")
    if (cfg.mask_length == "subword" and not cfg.mask_whole_words) or cfg.bpe is None:
        return None
    from seqloom.tokenizers.bpe import build_bpe

    options = {"gpt2_encoder_json": cfg.gpt2_encoder_json, "gpt2_vocab_bpe": cfg.gpt2_vocab_bpe}
    bpe = build_bpe(cfg.bpe, options if cfg.bpe == "gpt2" else None)

    def begins(i: int) -> bool:
        symbol = dictionary[i]
        if i < dictionary.nspecial or symbol.startswith("madeupword"):
            return True
        try:
            return bool(bpe.is_beginning_of_word(symbol))
        except ValueError:
            return True

    return np.array([begins(i) for i in range(len(dictionary))], dtype=bool)


@registry.TASKS.register("denoising", config=DenoisingConfig)
class DenoisingTask(Task):
    """Train a sequence-to-sequence model (BART) to restore noised text."""

    def __init__(self, cfg: DenoisingConfig, dictionary: Dictionary, *, dataset_impl: str | None = None) -> None:
        super().__init__()
        cfg.noise().check()
        self.cfg = cfg
        self.dictionary = dictionary
        self.mask_idx = dictionary.add_symbol("<mask>")
        self.dataset_impl = dataset_impl
        self._word_starts: np.ndarray | None = None
        self._word_starts_built = False

    @property
    def source_dictionary(self) -> Dictionary:
        return self.dictionary

    @property
    def target_dictionary(self) -> Dictionary:
        return self.dictionary

    def max_positions(self) -> tuple[int | None, int | None]:
        return self.cfg.max_source_positions, self.cfg.max_target_positions

    @classmethod
    def setup_task(cls, cfg: DenoisingConfig, *, dataset_impl: str | None = None) -> DenoisingTask:
        dictionary = load_dictionary(cfg.data, task="denoising")
        logger.info("dictionary: %d types", len(dictionary))
        return cls(cfg, dictionary, dataset_impl=dataset_impl)

    def blocks(self, split: str, *, epoch: int = 1, combine: bool = False) -> BosEosDataset:
        """The clean ``<s> ... </s>`` blocks of ``split`` (from the epoch's data folder)."""
        path = epoch_path(self.cfg.data, epoch)
        cfg, d = self.cfg, self.dictionary
        shards = load_shards(path, split, combine=combine, dictionary=d, dataset_impl=self.dataset_impl,
                             task="denoising", subset_flags="--train-subset/--valid-subset")  # fmt: skip
        tokens: Any = StripTokenDataset(shards, d.eos())
        tokens = maybe_shorten(tokens, split, split_list=cfg.shorten_data_split_list, method=cfg.shorten_method,
                               length=cfg.tokens_per_sample, seed=cfg.seed)  # fmt: skip
        blocks = TokenBlockDataset(tokens, tokens.sizes, cfg.tokens_per_sample - 2, pad=d.pad(), eos=d.eos(),
                                   break_mode=cfg.sample_break_mode, document_sep_len=0)  # fmt: skip
        logger.info("loaded %d blocks from: %s", len(blocks), os.path.join(path, split))
        return BosEosDataset(blocks, d.bos(), d.eos())

    def load_dataset(self, split: str, *, epoch: int = 1, combine: bool = False) -> DenoisingDataset:
        if not self._word_starts_built:
            self._word_starts, self._word_starts_built = word_start_table(self.cfg, self.dictionary), True
        full_stop = self.dictionary.index("13") if self.cfg.bpe == "gpt2" else self.dictionary.eos()
        dataset = DenoisingDataset(self.blocks(split, epoch=epoch, combine=combine), self.dictionary,
                                   self.cfg.noise(), mask_idx=self.mask_idx, full_stop=full_stop,
                                   word_start_table=self._word_starts, seed=self.cfg.seed,
                                   shuffle=self.cfg.shuffle_instance > 0)  # fmt: skip
        logger.info("Split: %s, Loaded %d samples of denoising_dataset", split, len(dataset))
        self.datasets[split] = dataset
        return dataset
