"""Building a criterion by name."""

from __future__ import annotations

from typing import cast

from seqloom import registry
from seqloom.criterions.base import Criterion


def build_criterion(name: str, cfg: object, *, padding_idx: int, sentence_avg: bool = False) -> Criterion:
    """The criterion registered as ``name`` (``--criterion``); ``padding_idx`` is the target dictionary's
    ``pad()`` and ``sentence_avg`` fairseq's ``--sentence-avg``. ``cfg`` None means the defaults."""
    from seqloom.criterions import cross_entropy, label_smoothed_cross_entropy  # noqa: F401  (registers them)

    entry = registry.CRITERIONS.entry(name)
    if cfg is not None and entry.config_cls is not None and not isinstance(cfg, entry.config_cls):
        raise TypeError(f"--criterion {name} expects a {entry.config_cls.__name__}, got {type(cfg).__name__}")
    return cast(Criterion, entry.obj(cfg, padding_idx=padding_idx, sentence_avg=sentence_avg))
