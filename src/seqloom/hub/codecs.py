"""The tokenizer and BPE of a hub: which codec, with which options, built with errors that name keywords."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from seqloom import registry
from seqloom.hub.files import keyword_of_flag
from seqloom.tokenizers.bpe import build_bpe
from seqloom.tokenizers.tokenizer import Tokenizer, build_tokenizer


@dataclass(kw_only=True)
class CodecSpec:
    """A registered tokenizer or BPE codec and the options it is built with (its config's field names)."""

    name: str
    """The registry name (``moses``, ``subword_nmt``, ``sentencepiece`` ...)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Values for the codec's config fields; missing ones keep the config's defaults."""


def _registry(kind: str) -> registry.Registry[Callable[..., object]]:
    from seqloom.components import import_builtins

    import_builtins()
    return registry.TOKENIZERS if kind == "tokenizer" else registry.BPES


def codec_option_names(kind: str) -> set[str]:
    """Every config field of every registered codec of ``kind`` ('tokenizer' or 'bpe')."""
    reg = _registry(kind)
    names: set[str] = set()
    for name in reg.names():
        cls = reg.config_cls(name)
        if cls is not None:
            names |= {f.name for f in dataclasses.fields(cls)}
    return names


def codec_spec(kind: str, name: object, *sources: Mapping[str, Any]) -> CodecSpec | None:
    """The codec ``name`` (None/"none" for no codec) with its options from ``sources`` (later ones win).

    ``name`` may be a plain name or fairseq's group dict (``{"_name": "moses", "source_lang": ...}``).
    """
    values: dict[str, Any] = {}
    if isinstance(name, Mapping):
        values.update({k: v for k, v in name.items() if k != "_name"})
        name = name.get("_name")
    if name is None or str(name).lower() == "none":
        return None
    reg = _registry(kind)
    cls = reg.config_cls(str(name)) if str(name) in reg else None
    if str(name) not in reg:
        reg.entry(str(name))  # raises with the known names and a suggestion
    fields = {f.name for f in dataclasses.fields(cls)} if cls is not None else set()
    for source in sources:
        values.update(source)
    options = {k: v for k, v in values.items() if k in fields and not _is_interpolation(v)}
    return CodecSpec(name=str(name), options=options)


def _is_interpolation(value: object) -> bool:
    return isinstance(value, str) and value.startswith("${")


def build_codec(kind: str, spec: CodecSpec | None) -> Tokenizer | None:
    """Builds the codec; a missing or unreadable file is reported with the from_pretrained keyword to pass."""
    if spec is None:
        return None
    build = build_tokenizer if kind == "tokenizer" else build_bpe
    try:
        return build(spec.name, dict(spec.options))
    except (FileNotFoundError, ValueError) as err:
        message = str(err)
        for flag in _flags_in(message):
            message += f" (from_pretrained keyword: {keyword_of_flag(flag)}=PATH)"
            break
        raise type(err)(f"{kind} {spec.name!r}: {message}") from None


def _flags_in(message: str) -> list[str]:
    return [word for word in message.replace(":", " ").split() if word.startswith("--")]
