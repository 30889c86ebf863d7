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
from seqloom.tasks.base import OneDictionaryTask
from seqloom.tasks.monolingual import epoch_path, load_dictionary, load_shards
from seqloom.tokenizers.bpe import build_bpe
from seqloom.tokenizers.word_starts import word_start_table as symbols_beginning_words

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class DenoisingConfig:
    """Options of ``--task denoising`` (fairseq's names and defaults)."""

    data: Optional[str] = field(None, help="the binarized data folder (dict.txt and the split files)", positional=True)
    bpe: Optional[str] = field(None, help="the BPE of the data: its word starts drive whole-word masking")
    gpt2_encoder_json: Optional[str] = field(None, help="with --bpe gpt2: path to GPT-2's encoder.json")
    gpt2_vocab_bpe: Optional[str] = field(None, help="with --bpe gpt2: path to GPT-2's vocab.bpe")
    tokens_per_sample: int = field(512, help="length of each sample's block, in tokens, before noise is added")
    sample_break_mode: Literal["none", "complete", "complete_doc", "eos"] = field(
        "complete_doc",
        help="how the token stream is cut into blocks: none, blocks of exactly --tokens-per-sample tokens across sentences; complete, whole sentences packed up to that size; complete_doc, the same without crossing a document (an empty line); eos, one sentence per block",
    )
    replace_length: int = field(
        0,
        help="what each masked span becomes: 0 removes it, 1 a single mask token, -1 one mask token per removed token",
    )
    mask: float = field(0.0, help="share of the words (or subwords, with --mask-length subword) to mask, from 0 to 1")
    mask_random: float = field(0.0, help="share of the masked positions that get a random token instead of <mask>")
    insert: float = field(0.0, help="random tokens inserted, as a share of the sample's length")
    permute: float = field(
        0.0,
        help="share of the subwords shuffled among themselves (fairseq 0.12 parses it but never applies it; seqloom does)",
    )
    rotate: float = field(0.5, help="probability of rotating a sample so that it starts at a random token")
    poisson_lambda: float = field(3.0, help="mean span length, in words, for --mask-length span-poisson")
    shuffle_instance: float = field(
        0.0, help="shuffle the samples each epoch instead of keeping them ordered by size (any value above 0)"
    )
    mask_length: MaskLength = field(
        "subword",
        help="unit of masking: subword (single tokens), word (whole words) or span-poisson (spans of Poisson length)",
    )
    mask_whole_words: bool = field(
        False, help="mask whole words (from --bpe's word starts) also with --mask-length subword (as masked_lm's flag)"
    )
    permute_sentences: float = field(
        -1.0, help="share of each sample's sentences put in a random order (-1 or 0: none)"
    )
    seed: int = field(1, help="seed of the task's random choices (noise, sampling, shuffling)")
    shorten_method: Literal["none", "truncate", "random_crop"] = field(
        "none",
        help="what to do with samples longer than the model takes: none keeps them whole, truncate cuts their end, random_crop keeps a random window",
    )
    shorten_data_split_list: str = field(
        "",
        help='comma-separated splits to shorten, such as "train,valid" (empty: every split)',
    )
    max_source_positions: int = field(1024, help="longest source, in tokens, the task feeds the model")
    max_target_positions: int = field(1024, help="longest target, in tokens, the task feeds the model")

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
    options = {"gpt2_encoder_json": cfg.gpt2_encoder_json, "gpt2_vocab_bpe": cfg.gpt2_vocab_bpe}
    bpe = build_bpe(cfg.bpe, options if cfg.bpe == "gpt2" else None)

    return symbols_beginning_words(dictionary, bpe)


@registry.TASKS.register("denoising", config=DenoisingConfig)
class DenoisingTask(OneDictionaryTask):
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
