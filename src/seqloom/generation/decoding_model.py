"""What the generator needs of a model: :class:`DecodingModel`, a structural type (``typing.Protocol``).

The encoder-decoder transformer, BART and the decoder-only language model (its ``encode`` returns an empty
encoder output) offer it; no model inherits from it. One optional capability is read with ``getattr``:
``shares_source_across_beams`` (default False), True when ``decode`` accepts an encoder output with one row
per sentence for the K beam rows of that sentence (see :class:`~seqloom.generation.ensemble.EnsembleDecoder`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar, cast

from torch import Tensor, nn


class EncodedSource(Protocol):
    """The encoder output of a batch: the generator only picks rows of it."""

    def reorder(self, new_order: Tensor) -> EncodedSource:
        """The rows ``new_order`` (N',) of the batch."""
        ...


class StepCache(Protocol):
    """A decoder's incremental state (keys and values of the steps decoded so far), one row per hypothesis."""

    def reorder(self, new_order: Tensor, *, keep_static: bool = False, static_order: Tensor | None = None) -> None:
        """Keeps rows ``new_order``; ``keep_static`` leaves the cross-attention rows (``static_order``: the
        rows of a cache with one cross-attention row per sentence)."""
        ...


class StepOutput(Protocol):
    """What ``decode`` returns: logits ``(N, T, V)`` and the head-averaged cross-attention ``(N, T, S)``.

    An output may also carry ``padded`` (logits inside a -inf-padded buffer); it is read with ``getattr``."""

    @property
    def logits(self) -> Tensor: ...

    @property
    def attn(self) -> Tensor | None: ...


class ModuleTree(Protocol):
    """A module and its submodules, whose training mode ``--retain-dropout`` sets (``nn.Module`` offers it)."""

    def modules(self) -> Iterator[nn.Module]: ...

    def train(self, mode: bool = True) -> object: ...

    def eval(self) -> object: ...


EncoderOutT = TypeVar("EncoderOutT", bound=EncodedSource)
CacheT = TypeVar("CacheT", bound=StepCache)


class DecodingModel(ModuleTree, Protocol[EncoderOutT, CacheT]):
    """A model the generator decodes with (alone, in an ensemble, or as the ``--lm-path`` language model)."""

    def encode(self, src_tokens: Tensor) -> EncoderOutT:
        """``(B, S)`` padded source tokens -> the encoder output (empty for a language model)."""
        ...

    def decode(
        self, prev_output_tokens: Tensor, encoder_out: EncoderOutT, *, cache: CacheT, need_attn: bool = False
    ) -> StepOutput:
        """Logits of the newest tokens ``(N, 1)``, continuing from ``cache`` (which this call extends)."""
        ...

    def new_cache(self, batch_size: int, max_len: int) -> CacheT:
        """An empty cache for ``batch_size`` rows and up to ``max_len`` steps."""
        ...

    def get_normalized_probs(self, logits: Tensor, log_probs: bool = True) -> Tensor:
        """Float32 (log-)probabilities over the vocabulary (last dimension), natural log."""
        ...

    def max_positions(self) -> tuple[int, int]:
        """The longest (source, target) the model reads; the generator's limit is the target's."""
        ...


class TargetDictionary(Protocol):
    """What the generator reads of the target dictionary: its size and special symbols."""

    def __len__(self) -> int: ...

    def pad(self) -> int: ...

    def unk(self) -> int: ...

    def eos(self) -> int: ...


# one model of an ensemble: each brings its own encoder output and cache types
AnyDecodingModel = DecodingModel[Any, Any]

DECODING_METHODS = ("encode", "decode", "new_cache", "get_normalized_probs", "max_positions")


def as_decoding_models(models: Iterable[nn.Module]) -> list[AnyDecodingModel]:
    """``models`` (e.g. a hub's ``nn.ModuleList``) as decoding models, each checked to have the methods of
    :class:`DecodingModel`: a model that cannot generate (RoBERTa, an encoder only) fails here, named."""
    out = []
    for model in models:
        missing = [name for name in DECODING_METHODS if not callable(getattr(model, name, None))]
        if missing:
            raise TypeError(
                f"{type(model).__name__} cannot generate: it has no {', '.join(missing)} "
                "(generate with an encoder-decoder or a language model)"
            )
        out.append(cast(AnyDecodingModel, model))
    return out
