"""``--task multilingual_denoising``: BART's denoising over several languages (mBART pretraining), as fairseq's.

The data folder holds ``dict.txt`` and one sub-folder per language, each with ``{split}.bin/.idx`` binarized
against that dictionary (``preprocess --only-source --srcdict dict.txt --destdir DATA/en``). The languages are
``--langs`` in that order, or the sub-folders sorted by name. With ``--add-lang-token`` the dictionary gets
one ``[lang]`` symbol per language (then ``<mask>``, so 4 + ``dict.txt`` + languages + 1 rows, as mBART's
checkpoints), and every block of a language ends with its ``[lang]`` instead of ``</s>``; the decoder input
then starts with it.

Unlike ``denoising``, sentences keep their ``</s>`` inside the blocks (fairseq's task does not strip them),
so a block reads ``<s> s1 </s> s2 </s> [lang]``. The training split mixes the languages with fairseq's
smoothed sampling: language ``l`` with ``n_l`` blocks is drawn with probability ``p_l ~ (n_l / n)^alpha``
(``--multilang-sampling-alpha``), i.e. ``n * p_l`` draws per epoch, with replacement where that up-samples; the
draws change every epoch. A validation split is validated as a whole and per language (``valid_en``, ...,
added after it to ``--valid-subset``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from seqloom import registry
from seqloom.config.options import field
from seqloom.data.denoising_dataset import BosEosDataset, DenoisingDataset
from seqloom.data.dictionary import Dictionary
from seqloom.data.resampling import ConcatDataset, ResampledDataset, SortedDataset
from seqloom.data.token_block_dataset import TokenBlockDataset
from seqloom.tasks.denoising import DenoisingConfig, DenoisingTask, word_start_table
from seqloom.tasks.monolingual import data_paths, epoch_path, load_shards

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class MultilingualDenoisingConfig(DenoisingConfig):
    """Options of ``--task multilingual_denoising`` (fairseq's names and defaults)."""

    multilang_sampling_alpha: float = field(
        1.0,
        help="exponent on each language's share of the data when sampling them: 1 keeps the shares, lower values favour small languages",
    )
    add_lang_token: bool = field(False, help="end each block with its [lang] token (added to the dictionary)")
    langs: Optional[str] = field(
        None, help="comma-separated languages to read, each a subfolder of DATA (unset: every subfolder)"
    )
    no_whole_word_mask_langs: str = field(
        "",
        help="comma-separated languages written without spaces between words, masked by subword instead of whole words",
    )
    train_subset: str = field("train", help="the training split (set from the common --train-subset)")


def languages(cfg: MultilingualDenoisingConfig, data_path: str) -> list[str]:
    """``--langs``, or the data folder's sub-folders sorted by name."""
    if cfg.langs:
        return cfg.langs.split(",")
    if not os.path.isdir(data_path):
        raise FileNotFoundError(f"multilingual_denoising: data folder {data_path} not found")
    found = sorted(name for name in os.listdir(data_path) if os.path.isdir(os.path.join(data_path, name)))
    if not found:
        raise FileNotFoundError(
            f"multilingual_denoising: {data_path} has no language sub-folders (one per language, e.g. {data_path}/en "
            "with train.bin/.idx); or name them with --langs"
        )
    return found


def sampling_ratios(sizes: np.ndarray, alpha: float) -> np.ndarray:
    """How many times each language's blocks are drawn per epoch, relative to its size: ``n * p_l / n_l``
    with ``p_l`` the ``alpha``-smoothed share of language ``l``."""
    prob = sizes / sizes.sum()
    smoothed = prob**alpha
    smoothed = smoothed / smoothed.sum()
    return smoothed * sizes.sum() / sizes


@registry.TASKS.register("multilingual_denoising", config=MultilingualDenoisingConfig)
class MultilingualDenoisingTask(DenoisingTask):
    """Denoising pretraining over one dataset per language (mBART)."""

    cfg: MultilingualDenoisingConfig

    def __init__(self, cfg: MultilingualDenoisingConfig, dictionary: Dictionary, *,
                 dataset_impl: str | None = None) -> None:  # fmt: skip
        super().__init__(cfg, dictionary, dataset_impl=dataset_impl)
        self.language_subsets: dict[str, list[str]] = {}  # a validation split -> its per-language splits

    @classmethod
    def setup_task(cls, cfg: DenoisingConfig, *, dataset_impl: str | None = None) -> MultilingualDenoisingTask:
        assert isinstance(cfg, MultilingualDenoisingConfig)
        first = data_paths(cfg.data)[0]
        path = os.path.join(first, "dict.txt")
        if not os.path.exists(path):
            raise FileNotFoundError(f"multilingual_denoising: dictionary {path} not found")
        dictionary = Dictionary.load(path)
        if cfg.add_lang_token:
            for lang in languages(cfg, first):
                dictionary.add_symbol(f"[{lang}]")
        task = cls(cfg, dictionary, dataset_impl=dataset_impl)  # appends <mask> after the languages
        logger.info("dictionary: %d types", len(dictionary))
        return task

    def end_token(self, lang: str) -> int:
        return self.dictionary.index(f"[{lang}]") if self.cfg.add_lang_token else self.dictionary.eos()

    def language_dataset(self, data_path: str, lang: str, split: str, *, combine: bool) -> DenoisingDataset:
        """One language's noised blocks ``<s> ... </s> [lang]`` (or ``... </s> </s>`` without language tokens)."""
        cfg, d = self.cfg, self.dictionary
        folder = os.path.join(data_path, lang)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"multilingual_denoising: data not found: {folder} (language {lang!r})")
        tokens = load_shards(folder, split, combine=combine, dictionary=d, dataset_impl=self.dataset_impl,
                             task="multilingual_denoising", subset_flags="--train-subset/--valid-subset")  # fmt: skip
        end = self.end_token(lang)
        blocks = TokenBlockDataset(tokens, tokens.sizes, cfg.tokens_per_sample - 2, pad=d.pad(), eos=end,
                                   break_mode=cfg.sample_break_mode)  # fmt: skip
        logger.info("loaded %d blocks from: %s", len(blocks), os.path.join(folder, split))
        if not self._word_starts_built:
            self._word_starts, self._word_starts_built = word_start_table(cfg, d), True
        unsegmented = lang in cfg.no_whole_word_mask_langs.split(",")
        full_stop = d.index("13") if cfg.bpe == "gpt2" else d.eos()
        return DenoisingDataset(BosEosDataset(blocks, d.bos(), end), d, cfg.noise(), mask_idx=self.mask_idx,
                                full_stop=full_stop, word_start_table=None if unsegmented else self._word_starts,
                                seed=cfg.seed, shuffle=cfg.shuffle_instance > 0, eos=end)  # fmt: skip

    def load_dataset(self, split: str, *, epoch: int = 1, combine: bool = False) -> Any:  # type: ignore[override]
        data_path = epoch_path(self.cfg.data, epoch)
        langs = languages(self.cfg, data_path)
        logger.info("Training on %d languages: %s", len(langs), langs)
        per_lang = [self.language_dataset(data_path, lang, split, combine=combine) for lang in langs]
        counts = np.array([len(d) for d in per_lang], dtype=float)
        logger.info("%d blocks over all languages", int(counts.sum()))
        if split == self.cfg.train_subset:
            if (counts == 0).any():
                empty = [lang for lang, n in zip(langs, counts) if n == 0]
                raise ValueError(f"multilingual_denoising: no {split} blocks for language(s) {', '.join(empty)}")
            ratios = sampling_ratios(counts, self.cfg.multilang_sampling_alpha)
            probs = ratios * counts / counts.sum()
            logger.info("Sample probability by language: %s", {lang: f"{p:.4f}" for lang, p in zip(langs, probs)})
            logger.info("resampling factor per language: %s", {lang: f"{r:.2f}" for lang, r in zip(langs, ratios)})
            mixed = ConcatDataset([ResampledDataset(d, size_ratio=r, replace=r >= 1.0, seed=self.cfg.seed, epoch=epoch)
                                   for d, r in zip(per_lang, ratios)])  # fmt: skip
        else:
            mixed = ConcatDataset(per_lang)
            self.language_subsets[split] = [f"{split}_{lang}" for lang in langs]
            for name, lang_dataset in zip(self.language_subsets[split], per_lang):
                self.datasets[name] = lang_dataset
        dataset = SortedDataset(mixed, seed=self.cfg.seed + epoch)
        self.datasets[split] = dataset
        return dataset
