"""The BPE codec protocol, ``build_bpe``, and the file check every codec's constructor uses.

A codec (``--bpe NAME``) turns text into the space-separated symbols that a fairseq dictionary
indexes, and back. It is registered in ``registry.BPES`` with its kw-only config dataclass, whose
fields carry fairseq's flag names, and is built as ``cls(cfg)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from seqloom import registry
from seqloom.tokenizers.tokenizer import build_registered


@runtime_checkable
class BPE(Protocol):
    """What every registered BPE codec provides (structural: no base class needed)."""

    def encode(self, x: str) -> str:
        """Text -> space-separated symbols, as fairseq's dictionaries see them."""
        ...

    def decode(self, x: str) -> str:
        """Space-separated symbols -> text."""
        ...

    def is_beginning_of_word(self, x: str) -> bool:
        """Whether symbol ``x`` starts a word (used by whole-word masking)."""
        ...


def build_bpe(name: str, cfg: Any = None) -> BPE:
    """Builds the codec registered as ``name``.

    ``cfg`` is the codec's config dataclass, or a mapping / ``argparse.Namespace`` from which the
    config's fields are taken (other keys are ignored, as in fairseq's hub keyword arguments), or
    None for the config's defaults.
    """
    return build_registered(registry.BPES, name, cfg)


def require_file(path: str | None, *, flag: str, what: str) -> Path:
    """Returns ``path`` as a Path, or raises an error naming the flag and the file it should hold.

    Nothing is ever downloaded: a URL is refused with a hint to download it and pass the local path.
    """
    if path is None or str(path) == "":
        raise ValueError(f"{flag} is required: pass the path to {what}")
    text = str(path)
    if text.startswith(("http://", "https://")):
        raise ValueError(f"{flag} {text}: seqloom never downloads files; download {what} and pass its local path")
    p = Path(text).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{flag} {text}: no such file ({what}); check the path passed to {flag}")
    return p
