"""The translation hub: beam search / sampling over encoder-decoder models, and reference scoring.

fairseq's ``hub.score()`` fails for translation models (it calls the model without target tokens).
Here :meth:`TranslationHub.score` takes (source, target) pairs and returns what
``generate --score-reference`` computes: teacher-forced natural-log positional scores of the target
(including ``</s>``) and their mean as the score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar, Union, cast, overload

import torch
from torch import Tensor

from seqloom.data.language_pair_dataset import collate_tokens
from seqloom.generation.config import GenerationConfig
from seqloom.generation.decoding_model import as_decoding_models
from seqloom.generation.generator import SequenceGenerator
from seqloom.generation.hypotheses import Hypothesis
from seqloom.generation.scorer import SequenceScorer
from seqloom.hub.base import GeneratorHubInterface
from seqloom.hub.spec import PretrainedSpec

Text = Union[str, Tensor]  # raw text, or ids already binarized (T,)


class TranslationHub(GeneratorHubInterface):
    """A hub for ``translation`` models; see :class:`GeneratorHubInterface` for the shared methods."""

    spec: PretrainedSpec | None = None  # what it was loaded from (set by from_pretrained; export reads it)

    def __init__(self, models: Sequence[Any], *, left_pad_source: bool = True, **parts: Any) -> None:
        """``left_pad_source`` as the model was trained (fairseq's default True); ``parts`` as the base class."""
        super().__init__(models, **parts)
        self.left_pad_source = left_pad_source

    supports_constraints = True
    supports_prefix_tokens = True

    def inference_step(self, cfg: GenerationConfig, batch: list[Tensor], constraints: Tensor | None = None,
                       prefix_tokens: Tensor | None = None) -> list[list[Hypothesis]]:  # fmt: skip
        """``constraints``: the batch's packed lexical constraints; ``prefix_tokens`` (B, P): target ids each
        output starts with (pad: none); both with rows in batch order."""
        src_tokens, order = self._collate_sources(batch)
        packed = constraints[order].to(src_tokens.device) if constraints is not None else None
        prefix = prefix_tokens[order] if prefix_tokens is not None else None
        hyps = SequenceGenerator(as_decoding_models(self.models), self.tgt_dict, cfg, eos=self.generation_eos).generate(
            src_tokens, prefix_tokens=prefix, constraints=packed
        )
        return _unsort(hyps, order)

    generation_eos: int | None = None  # the symbol generated targets end with (None: </s>)

    def _collate_sources(self, batch: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Padded sources (B, S), rows by decreasing length as fairseq collates, and that order (B,)."""
        lengths = torch.tensor([int(t.numel()) for t in batch])
        order = torch.sort(lengths, descending=True).indices  # (B,)
        rows = [batch[i] for i in order.tolist()]
        pad, eos = self.src_dict.pad(), self.src_dict.eos()
        return collate_tokens(rows, pad, eos_idx=eos, left_pad=self.left_pad_source), order

    def encode_target(self, sentence: str) -> Tensor:
        """Raw target text -> target-dictionary ids (T,) int64 (tokenize, BPE, binarize, ``eos`` appended)."""
        return self.tgt_dict.encode_line(self.apply_bpe(self.tokenize(sentence)), add_if_not_exist=False).long()

    @overload
    def score(self, pairs: tuple[Text, Text], *, print_alignment: str | None = None) -> Hypothesis: ...
    @overload
    def score(self, pairs: Sequence[tuple[Text, Text]], *, print_alignment: str | None = None) -> list[Hypothesis]: ...
    def score(self, pairs: tuple[Text, Text] | Sequence[tuple[Text, Text]], *, print_alignment: str | None = None
              ) -> Hypothesis | list[Hypothesis]:  # fmt: skip
        """Teacher-forced scores of (source, target) pairs: one :class:`Hypothesis` per pair, in input order.

        Sources and targets are raw text (encoded with :meth:`encode` / :meth:`encode_target`) or id
        tensors. ``positional_scores`` (T,) are natural-log probabilities of each target token incl.
        ``</s>``; ``score`` is their mean (fairseq's ``--score-reference``). ``print_alignment`` ('hard')
        also fills each hypothesis' ``alignment`` from the attention.
        """
        if isinstance(pairs, tuple) and len(pairs) == 2 and not isinstance(pairs[0], tuple):
            return self.score([pairs], print_alignment=print_alignment)[0]
        if isinstance(pairs, (str, Tensor)):
            raise TypeError("score takes (source, target) pairs, e.g. score(('Hello', 'Hola')), not one text")
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"score: item {i} is not a (source, target) pair: {pair!r}")
        sources = [self._ids(s, self.encode) for s, _ in pairs]
        targets = [self.reference_ids(t) for _, t in pairs]
        limit = self.max_positions[1]
        for i, target_ids in enumerate(targets):
            if limit is not None and target_ids.numel() > limit:
                raise ValueError(f"score: target {i} has {target_ids.numel()} tokens, more than the model's "
                                 f"{limit} target positions; shorten it")  # fmt: skip
        alignment = print_alignment is not None
        scorer = SequenceScorer(list(self.models), self.tgt_dict, compute_alignment=alignment, eos=self.generation_eos)
        results: list[Hypothesis | None] = [None] * len(sources)
        for ids in self.plan_batches(sources):
            src_tokens, order = self._collate_sources([sources[i].to(self.device) for i in ids])
            tgt = [targets[ids[i]].to(self.device) for i in order.tolist()]
            pad, eos = self.tgt_dict.pad(), self.tgt_dict.eos() if self.generation_eos is None else self.generation_eos
            target = collate_tokens(tgt, pad, eos_idx=eos)  # (B, T)
            prev = collate_tokens(tgt, pad, eos_idx=eos, move_eos_to_beginning=True)  # (B, T)
            hyps = scorer.score(src_tokens, prev, target)
            for row, i in enumerate(order.tolist()):
                results[ids[i]] = hyps[row][0]
        return cast(list[Hypothesis], results)  # plan_batches covers every pair

    def reference_ids(self, target: Text) -> Tensor:
        """The ids (T,) :meth:`score` scores for a target: ``target`` encoded (:meth:`encode_target`) or as given."""
        return self._ids(target, self.encode_target)

    @staticmethod
    def _ids(value: Text, encode: Callable[[str], Tensor]) -> Tensor:
        return value.long() if torch.is_tensor(value) else encode(value)


R = TypeVar("R")


def _unsort(rows: list[R], order: Tensor) -> list[R]:
    """Puts results computed for ``batch[order[j]]`` at row j back into batch order."""
    out: list[R | None] = [None] * len(rows)
    for row, i in enumerate(order.tolist()):
        out[i] = rows[row]
    return cast(list[R], out)  # order is a permutation: every row is filled
