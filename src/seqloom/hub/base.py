"""The hub interface every model family shares: text <-> ids, batched generation, devices and dtypes.

``GeneratorHubInterface`` mirrors fairseq's class of that name. Text goes through
``tokenize -> apply_bpe -> binarize`` (``encode``) and back through ``string -> remove_bpe -> detokenize``
(``decode``). ``generate`` orders the sentences as fairseq's hub orders them (:meth:`plan_batches`), groups them
into token-budget batches (fairseq's ``batch_by_size``), runs :meth:`inference_step` per batch and returns
the hypotheses in input order.

Batches matter for the outputs, not only for speed: the length limit ``max_len_a * S + max_len_b`` and
``match_source_len`` follow the batch's padded source width S. So every hub call (translate, sample, score,
fill_mask, generate) batches exactly as fairseq's hub does: the checkpoint's ``max_tokens``/``batch_size``,
batch sizes that need not be a multiple of anything (fairseq's hub never passes the checkpoint's
``required_batch_size_multiple``), sentences longer than the model's positions refused (or skipped).

A model family subclasses it and implements :meth:`inference_step` (and :meth:`score`); the translation
hub (``seqloom.hub.translation``) and the language-model hub (``seqloom.hub.language_model``) do.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Optional, Union, cast, overload

import numpy as np
import torch
from torch import Tensor, nn

from seqloom.config.options import bounds_problem, field, value_mismatch
from seqloom.data.batching import batch_by_size, filter_by_size
from seqloom.data.dictionary import Dictionary
from seqloom.devices import avoid_per_shape_attention_plans
from seqloom.generation.config import GenerationConfig
from seqloom.generation.constraint_states import pack_constraints
from seqloom.generation.hypotheses import Hypothesis
from seqloom.heap import keep_freed_memory
from seqloom.tokenizers.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


def check_sentences(method: str, sentences: object) -> None:
    """Raises TypeError naming ``method``'s ``sentences`` argument unless it is a str or a list of str."""
    if isinstance(sentences, str):
        return
    if not isinstance(sentences, (list, tuple)):
        raise TypeError(f"{method}(sentences): expected a str or a list of str, got {type(sentences).__name__} "
                        f"{sentences!r:.60}")  # fmt: skip
    for i, s in enumerate(sentences):
        if not isinstance(s, str):
            raise TypeError(f"{method}(sentences): item {i} is {type(s).__name__} {s!r:.60}, not a str")


@dataclass(kw_only=True)
class HubBatching:
    """How ``generate`` groups sentences into batches (fairseq's ``dataset`` options of the checkpoint)."""

    max_tokens: Optional[int] = field(None, help="cap on a batch's size in tokens (unset: no cap)")
    batch_size: Optional[int] = field(None, help="cap on a batch's size in sentences (unset: no cap)")
    required_batch_size_multiple: int = field(
        1,
        help="round each batch's sentence count down to a multiple of this (1, as fairseq's hub, whatever the checkpoint says)",
    )


@dataclass(frozen=True)
class HubTask:
    """What code written for fairseq's hub reads from ``hub.task``: the dictionaries and the length limits.

    seqloom's hubs hold no task object; other task attributes raise an AttributeError that says so.
    """

    source_dictionary: Dictionary
    target_dictionary: Dictionary
    limits: tuple[int | None, int | None]

    def max_positions(self) -> tuple[int | None, int | None]:
        """(source, target) token limits of the hub's models."""
        return self.limits

    def __getattr__(self, name: str) -> NoReturn:
        raise AttributeError(
            f"hub.task has no {name!r}: seqloom's hubs keep no fairseq task; hub.task offers source_dictionary, "
            "target_dictionary and max_positions(), and the hub itself src_dict, tgt_dict, models and generation"
        )


class GeneratorHubInterface(nn.Module):
    """Models plus their dictionaries, tokenizer and BPE, with fairseq's hub methods.

    ``models`` are modules in eval mode (one, or several for an ensemble); ``src_dict``/``tgt_dict`` are
    :class:`~seqloom.data.dictionary.Dictionary` objects; ``tokenizer``/``bpe`` are codecs with
    ``encode``/``decode`` (or None: text is used as is). ``generation`` holds the default search options
    that ``generate(..., **overrides)`` starts from.
    """

    # The order fairseq's hub batches sentences in, which its task's inference dataset decides. "length":
    # translation tasks (a LanguagePairDataset) shuffle with numpy seeded by ``order_seed``, then sort stably
    # by length, so equal-length sentences fall into batches in that shuffled order. "input": language
    # models and BART (a NestedDictionaryDataset) keep the input order.
    batch_order: str = "length"
    # fairseq's get_batch_iterator seeds numpy with its seed (1) plus the epoch (1) while ordering
    order_seed: int = 2
    _float_tensor: Tensor  # the buffer registered in __init__

    def __init__(
        self,
        models: Sequence[nn.Module],
        *,
        src_dict: Dictionary,
        tgt_dict: Dictionary,
        tokenizer: Tokenizer | None = None,
        bpe: Tokenizer | None = None,
        generation: GenerationConfig | None = None,
        batching: HubBatching | None = None,
        max_positions: tuple[int | None, int | None] = (None, None),
    ) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)
        self.src_dict, self.tgt_dict = src_dict, tgt_dict
        self.tokenizer, self.bpe = tokenizer, bpe
        self.generation = generation or GenerationConfig()
        self.batching = batching or HubBatching()
        self.max_positions = max_positions
        # follows .to()/.half(): tells the device and dtype the models live on
        self.register_buffer("_float_tensor", torch.tensor([0.0]), persistent=False)
        self.eval()
        keep_freed_memory()  # hubs start on the CPU (seqloom.heap)

    @property
    def model(self) -> nn.Module:
        """The first (usually only) model."""
        return self.models[0]

    @property
    def device(self) -> torch.device:
        return self._float_tensor.device

    @property
    def task(self) -> HubTask:
        """fairseq's ``hub.task``, as far as hub users read it (``hub.task.source_dictionary`` ...)."""
        return HubTask(source_dictionary=self.src_dict, target_dictionary=self.tgt_dict, limits=self.max_positions)

    def _apply(self, fn: Callable[[Tensor], Tensor], *args: Any, **kwargs: Any) -> GeneratorHubInterface:
        """``.cuda()``/``.to()``/``.half()``; on a GPU, SDPA keeps to kernels that need no per-shape plan
        (see :mod:`seqloom.devices`)."""
        out = super()._apply(fn, *args, **kwargs)
        if self.device.type == "cuda":
            avoid_per_shape_attention_plans()
        return out

    # ---- text <-> ids
    def tokenize(self, sentence: str) -> str:
        return self.tokenizer.encode(sentence) if self.tokenizer is not None else sentence

    def detokenize(self, sentence: str) -> str:
        return self.tokenizer.decode(sentence) if self.tokenizer is not None else sentence

    def apply_bpe(self, sentence: str) -> str:
        return self.bpe.encode(sentence) if self.bpe is not None else sentence

    def remove_bpe(self, sentence: str) -> str:
        return self.bpe.decode(sentence) if self.bpe is not None else sentence

    def binarize(self, sentence: str) -> Tensor:
        """Source-dictionary ids (T,) int64 of a BPE'd sentence, ``eos`` appended; unknown words -> ``unk``."""
        return self.src_dict.encode_line(sentence, add_if_not_exist=False).long()

    def string(self, tokens: Tensor) -> str:
        """Target-dictionary symbols of ``tokens`` (T,), without ``eos``/``bos``."""
        return self.tgt_dict.string(tokens)

    def encode(self, sentence: str) -> Tensor:
        """Raw text -> source ids (T,) int64: tokenize, apply BPE, binarize."""
        if not isinstance(sentence, str):
            raise TypeError(f"encode(sentence): expected a str, got {type(sentence).__name__} {sentence!r:.60}")
        return self.binarize(self.apply_bpe(self.tokenize(sentence)))

    def decode(self, tokens: Tensor) -> str:
        """Target ids (T,) -> raw text: string, remove BPE, detokenize."""
        return self.detokenize(self.remove_bpe(self.string(tokens)))

    # ---- generation
    @overload
    def translate(self, sentences: str, beam: int = 5, verbose: bool = False, **overrides: Any) -> str | None: ...
    @overload
    def translate(
        self, sentences: list[str], beam: int = 5, verbose: bool = False, **overrides: Any
    ) -> list[str | None]: ...
    def translate(
        self, sentences: str | list[str], beam: int = 5, verbose: bool = False, **overrides: Any
    ) -> str | None | list[str | None]:
        """The best output of each sentence, decoded to text (a list in input order, or one string)."""
        check_sentences("translate", sentences)
        return self.sample(sentences, beam, verbose, **overrides)

    @overload
    def sample(self, sentences: str, beam: int = 1, verbose: bool = False, **overrides: Any) -> str | None: ...
    @overload
    def sample(
        self, sentences: list[str], beam: int = 1, verbose: bool = False, **overrides: Any
    ) -> list[str | None]: ...
    def sample(
        self, sentences: str | list[str], beam: int = 1, verbose: bool = False, **overrides: Any
    ) -> str | None | list[str | None]:
        """Like :meth:`translate` with fairseq's default ``beam=1`` (pass ``sampling=True`` to sample).

        With ``skip_invalid_size_inputs=True``, a sentence too long for the model gives None in its place
        (fairseq's hub leaves it out, so that later outputs move up one place).
        """
        check_sentences("sample", sentences)
        if isinstance(sentences, str):
            if overrides.get("lexical_constraints") is not None:  # one sentence: its phrases
                overrides["lexical_constraints"] = [overrides["lexical_constraints"]]
            return self.sample([sentences], beam, verbose, **overrides)[0]
        tokens = [self.encode(s) for s in sentences]
        results = self.generate(tokens, beam, verbose, **overrides)
        return [self.decode(hyps[0].tokens) if hyps else None for hyps in results]

    def score(self, *args: Any, **kwargs: Any) -> object:
        """Teacher-forced scores of given outputs (positional log-probs); each model family defines its inputs."""
        raise NotImplementedError(f"{type(self).__name__} does not implement score()")

    def generation_config(self, beam: int | None = None, **overrides: Any) -> GenerationConfig:
        """The hub's generation options with ``beam`` and ``overrides`` (fairseq's generation option names)."""
        known = {f.name for f in dataclasses.fields(GenerationConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(
                f"unknown generation option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(known))}"
            )
        if beam is not None:
            overrides["beam"] = beam
        hints = typing.get_type_hints(GenerationConfig)
        for name, value in overrides.items():
            problem = value_mismatch(value, hints[name])
            if problem:
                raise TypeError(f"generation option {name}={value!r}: {problem}")
            problem = bounds_problem(GenerationConfig, name, value)
            if problem:
                raise ValueError(f"generation option {name}={value!r}: {problem}")
        return dataclasses.replace(self.generation, **overrides)

    # the keywords are the implementation's below
    @overload
    def generate(
        self, tokenized_sentences: Sequence[Tensor], beam: int = 5, verbose: bool = False, **options: Any
    ) -> list[list[Hypothesis]]: ...
    @overload
    def generate(
        self, tokenized_sentences: Tensor, beam: int = 5, verbose: bool = False, **options: Any
    ) -> list[list[Hypothesis]] | list[Hypothesis]: ...
    def generate(
        self,
        tokenized_sentences: Tensor | Sequence[Tensor],
        beam: int = 5,
        verbose: bool = False,
        *,
        skip_invalid_size_inputs: bool = False,
        inference_step_args: Mapping[str, object] | None = None,
        prefix_allowed_tokens_fn: object = None,
        lexical_constraints: Sequence[Sequence[str | Tensor]] | None = None,
        **overrides: Any,
    ) -> list[list[Hypothesis]] | list[Hypothesis]:
        """Hypotheses (best first) of each id sequence, in input order: ``list[list[Hypothesis]]``.

        ``skip_invalid_size_inputs``: a sentence longer than the model's positions gets an empty list in its
        place instead of a ValueError (fairseq's hub drops it from the list, misaligning the later outputs).

        A single 1-D tensor gives that sentence's ``list[Hypothesis]``. Scores are natural log.
        ``overrides`` are :class:`GenerationConfig` fields (``lenpen=2``, ``sampling=True``, ...).
        ``lexical_constraints``: per sentence, the phrases (raw text, or target ids) its outputs must contain;
        the search is ``constraints="ordered"`` unless ``constraints="unordered"`` is given (translation hubs).
        ``inference_step_args={"prefix_tokens": ids}`` (fairseq's spelling; translation hubs): target ids (N, P)
        each output must start with, row i for sentence i (pad where a row is shorter). fairseq passes the same
        tensor to every batch, so there it only works for one sentence or one batch in its sorted order.
        """
        if torch.is_tensor(tokenized_sentences) and tokenized_sentences.dim() == 1:
            single = None if lexical_constraints is None else [cast(Sequence[Union[str, Tensor]], lexical_constraints)]
            return self.generate([tokenized_sentences], beam, verbose, inference_step_args=inference_step_args,
                                 prefix_allowed_tokens_fn=prefix_allowed_tokens_fn, lexical_constraints=single,
                                 **overrides)[0]  # fmt: skip
        sentences = [t.long() for t in tokenized_sentences]
        prefixes = self._prefix_rows(inference_step_args, prefix_allowed_tokens_fn, len(sentences))
        phrases = self._constraint_ids(lexical_constraints, len(sentences), overrides)
        cfg = self.generation_config(beam, **overrides)
        results: list[list[Hypothesis] | None] = [None] * len(sentences)
        for ids in self.plan_batches(sentences, skip_invalid_size_inputs=skip_invalid_size_inputs):
            batch = [sentences[i].to(self.device) for i in ids]
            extra: dict[str, Tensor] = {}
            if phrases is not None:
                extra["constraints"] = pack_constraints([phrases[i] for i in ids])
            if prefixes is not None:
                extra["prefix_tokens"] = prefixes[ids].to(self.device)  # (B, P), batch order
            with torch.no_grad():
                for i, hyps in zip(ids, self.inference_step(cfg, batch, **extra)):
                    results[i] = hyps
        outputs = [r if r is not None else [] for r in results]  # skipped (too long) sentences get none
        if verbose:
            self.log_hypotheses(sentences, outputs)
        return outputs

    def inference_step(self, cfg: GenerationConfig, batch: list[Tensor]) -> list[list[Hypothesis]]:
        """Hypotheses of each sentence of one batch (ids (T_i,) on the hub's device), in batch order."""
        raise NotImplementedError(f"{type(self).__name__} must implement inference_step()")

    supports_constraints = False  # whether inference_step takes ``constraints`` (packed, batch order)
    supports_prefix_tokens = False  # whether inference_step takes ``prefix_tokens`` (B, P), batch order

    def _prefix_rows(self, args: Mapping[str, object] | None, allowed_fn: object, count: int) -> Tensor | None:
        """The (N, P) forced output prefixes of fairseq's ``inference_step_args``, row i for sentence i."""
        if allowed_fn is not None:
            raise NotImplementedError(
                "prefix_allowed_tokens_fn is not supported by seqloom's hubs; force a fixed start with "
                "inference_step_args={'prefix_tokens': ids}"
            )
        unknown = sorted(set(args or {}) - {"prefix_tokens"})
        if unknown:
            raise TypeError(f"inference_step_args: unknown key(s) {', '.join(unknown)}; the hubs take 'prefix_tokens'")
        prefix = (args or {}).get("prefix_tokens")
        if prefix is None:
            return None
        if not self.supports_prefix_tokens:
            raise NotImplementedError(f"{type(self).__name__} does not take prefix_tokens (as fairseq's)")
        rows = torch.as_tensor(prefix).long()
        rows = rows.unsqueeze(0) if rows.dim() == 1 else rows  # (N, P)
        if rows.dim() != 2 or rows.size(0) != count:
            raise ValueError(
                f"inference_step_args['prefix_tokens'] has shape {tuple(rows.shape)} for {count} sentence(s); give "
                "one row of target ids per sentence (N, P), padded with the target dictionary's pad"
            )
        return rows

    def encode_constraint(self, phrase: str) -> Tensor:
        """A constraint phrase -> target ids (T,) without ``eos`` (tokenized and BPE'd like the input)."""
        return self.tgt_dict.encode_line(self.apply_bpe(self.tokenize(phrase)), append_eos=False,
                                         add_if_not_exist=False).long()  # fmt: skip

    def _constraint_ids(self, constraints: Sequence[Sequence[str | Tensor]] | None, count: int,
                        overrides: dict[str, Any]) -> list[list[Tensor]] | None:  # fmt: skip
        if constraints is None:
            return None
        if not self.supports_constraints:
            raise NotImplementedError(f"{type(self).__name__} does not support lexical constraints")
        if len(constraints) != count:
            raise ValueError(f"lexical_constraints has {len(constraints)} entries for {count} sentences")
        overrides["constraints"] = overrides.get("constraints") or "ordered"
        return [[self.encode_constraint(p) if isinstance(p, str) else p.long() for p in sentence]
                for sentence in constraints]  # fmt: skip

    def plan_batches(self, sentences: Sequence[Tensor], *, skip_invalid_size_inputs: bool = False) -> list[list[int]]:
        """Sentence indices grouped as fairseq's hub groups them: ordered (see ``batch_order``), sentences too
        long for the model refused or skipped, then token-budget batches of consecutive sentences."""
        sizes = np.array([int(t.numel()) for t in sentences], dtype=np.int64)
        order = self.inference_order(sizes)
        kept, dropped = filter_by_size(order, sizes, None, self.max_positions)
        if len(dropped) and not skip_invalid_size_inputs:
            i = int(dropped[0])
            raise ValueError(
                f"sentence {i} has {int(sizes[i])} tokens, more than the model's max positions "
                f"{self.max_positions[0]}; shorten it or pass skip_invalid_size_inputs=True"
            )
        max_tokens = self.batching.max_tokens
        if max_tokens is not None and len(kept):
            max_tokens = max(max_tokens, int(sizes[kept].max()))  # one long sentence still gets a batch
        batches = batch_by_size(
            kept,
            sizes[kept],
            max_tokens=max_tokens,
            max_sentences=self.batching.batch_size,
            required_batch_size_multiple=self.batching.required_batch_size_multiple,
        )
        return [b.tolist() for b in batches]

    def inference_order(self, sizes: np.ndarray) -> np.ndarray:
        """The order (N,) in which fairseq's hub batches sentences of ``sizes`` (N,) tokens (see ``batch_order``)."""
        if self.batch_order == "input":
            return np.arange(len(sizes), dtype=np.int64)
        shuffled = np.random.RandomState(self.order_seed).permutation(len(sizes))  # fairseq's numpy_seed + shuffle
        return shuffled[np.argsort(sizes[shuffled], kind="mergesort")]

    def log_hypotheses(self, sentences: Sequence[Tensor], outputs: Sequence[Sequence[Hypothesis]]) -> None:
        """fairseq's verbose output: ``S``, ``H`` (natural-log score, text) and ``P`` lines per sentence."""
        for src, hyps in zip(sentences, outputs):
            logger.info("S\t%s", self.src_dict.string(src))
            for hyp in hyps:
                logger.info("H\t%s\t%s", hyp.score, self.decode(hyp.tokens))
                logger.info("P\t%s", " ".join(f"{x:.4f}" for x in hyp.positional_scores.tolist()))
