"""Plain registries: one dict per kind of component, filled by a ``register`` decorator."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from torch import nn  # annotations only: the registry loads without torch

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered component: the object (class or function) and its config dataclass."""

    name: str
    obj: T
    config_cls: type | None


class Registry(Generic[T]):
    """A name -> component table for one kind (task, model, criterion, ...).

    Duplicate names are rejected, and a lookup of an unknown name raises a ``KeyError`` that lists
    the known names and suggests the closest one.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, config: type | None = None) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj, config=config)
            return obj

        return decorator

    def add(self, name: str, obj: T, *, config: type | None = None) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name, obj, config)

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(unknown_name_message(self.kind, name, self.names())) from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def config_cls(self, name: str) -> type | None:
        return self.entry(name).config_cls

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Known: {', '.join(known) or '(none)'}"


TASKS: Registry[Any] = Registry("task")
MODELS: Registry[Any] = Registry("model")
# model name -> its builder ``build_model(cfg, src_dict, tgt_dict)`` (the family's builder module adds it beside
# its MODELS entry; ``train``/``validate`` build ``--arch``'s model through it)
BUILDERS: Registry[Callable[..., nn.Module]] = Registry("model builder")
ARCHITECTURES: Registry[Any] = Registry("architecture")
CRITERIONS: Registry[Any] = Registry("criterion")
OPTIMIZERS: Registry[Any] = Registry("optimizer")
LR_SCHEDULERS: Registry[Any] = Registry("lr_scheduler")
TOKENIZERS: Registry[Any] = Registry("tokenizer")
BPES: Registry[Any] = Registry("bpe")
# model family -> its hub's ``from_pretrained(model_name_or_path, checkpoint_file, data_name_or_path, **overrides)``
HUBS: Registry[Any] = Registry("hub")
# model family -> ``load(state, src_dict, tgt_dict, *, source, overrides)``: its interop building the model of a
# loaded checkpoint dict with its weights (commands find a checkpoint's family here, never by name tests)
CHECKPOINT_LOADERS: Registry[Any] = Registry("checkpoint loader")
# model family -> ``export(model_dir, checkpoint_file, data, options, out_dir)`` for families whose hub writes its
# own export (RoBERTa); ``seqloom export`` writes the others through the translation hub
EXPORTERS: Registry[Any] = Registry("exporter")


@dataclass(frozen=True)
class Architecture:
    """A named architecture preset: the model it belongs to and a function returning its config."""

    model: str
    preset: Callable[[], Any]


def register_architecture(model: str, name: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Register ``preset`` (a no-argument function returning the model's config) as ``--arch name``."""

    def decorator(preset: Callable[[], Any]) -> Callable[[], Any]:
        ARCHITECTURES.add(name, Architecture(model, preset))
        return preset

    return decorator
