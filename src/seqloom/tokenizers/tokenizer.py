"""The tokenizer protocol (``--tokenizer NAME``) and ``build_tokenizer``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from seqloom import registry
from seqloom.config.options import from_namespace


@runtime_checkable
class Tokenizer(Protocol):
    """Raw text -> space-separated tokens (``encode``) and back (``decode``)."""

    def encode(self, x: str) -> str: ...

    def decode(self, x: str) -> str: ...


def build_tokenizer(name: str, cfg: Any = None) -> Tokenizer:
    """Builds the tokenizer registered as ``name`` from its config (or a mapping/namespace holding its fields)."""
    return build_registered(registry.TOKENIZERS, name, cfg)


def build_registered(reg: registry.Registry[Any], name: str, cfg: Any = None) -> Any:
    """Builds ``name`` of a codec registry (tokenizers, BPEs) as ``cls(cfg)``, or ``cls()`` without a config.

    ``cfg`` is the codec's config dataclass, or a mapping / ``argparse.Namespace`` from which the config's
    fields are taken (other keys are ignored, as in fairseq's hub keyword arguments), or None for defaults.
    """
    if name not in reg:
        from seqloom.components import import_builtins

        import_builtins()
    entry = reg.entry(name)
    if entry.config_cls is None:
        return entry.obj()
    if cfg is None:
        cfg = entry.config_cls()
    elif not isinstance(cfg, entry.config_cls):
        values = cfg if isinstance(cfg, Mapping) else vars(cfg)
        cfg = from_namespace(entry.config_cls, dict(values))
    return entry.obj(cfg)
