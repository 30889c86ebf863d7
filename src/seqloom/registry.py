"""Plain registries: one dict per kind of component, filled by a ``register`` decorator."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    import torch
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


# task name -> its task class; commands call its classmethods (``setup_task``), whose signatures differ by task,
# and the class lives above this module in the layers, so the entry stays untyped here
TASKS: Registry[Any] = Registry("task")
MODELS: Registry[type[nn.Module]] = Registry("model")
# model name -> its builder ``build_model(cfg, src_dict, tgt_dict)`` (the family's builder module adds it beside
# its MODELS entry; ``train``/``validate`` build ``--arch``'s model through it)
BUILDERS: Registry[Callable[..., nn.Module]] = Registry("model builder")
ARCHITECTURES: Registry[Architecture] = Registry("architecture")
# name -> the criterion's class, built as ``cls(cfg, padding_idx=..., sentence_avg=...)``
CRITERIONS: Registry[Callable[..., nn.Module]] = Registry("criterion")
# name -> the optimizer's class, built as ``cls(cfg, params, lr)``
OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
# name -> the schedule's class, built as ``cls(cfg, optimizer, inputs)``
LR_SCHEDULERS: Registry[Callable[..., object]] = Registry("lr_scheduler")
# name -> the codec's class, built as ``cls(cfg)`` or ``cls()``: an object with ``encode``/``decode``
TOKENIZERS: Registry[Callable[..., object]] = Registry("tokenizer")
BPES: Registry[Callable[..., object]] = Registry("bpe")
# model family -> its hub's ``from_pretrained(model_name_or_path, checkpoint_file, data_name_or_path, **overrides)``
HUBS: Registry[Callable[..., nn.Module]] = Registry("hub")
# model family -> ``load(state, src_dict, tgt_dict, *, source, overrides, random_init)``: its interop building the
# model of a loaded checkpoint dict with its weights (commands find a checkpoint's family here, never by name tests)
CHECKPOINT_LOADERS: Registry[Callable[..., nn.Module]] = Registry("checkpoint loader")
# model family -> ``export(model_dir, checkpoint_file, data, options, out_dir)`` for families whose hub writes its
# own export (RoBERTa); ``seqloom export`` writes the others through the translation hub
# a family's export: (checkpoint dir, checkpoint file, data dir, hub options (from_pretrained's keywords, quantize
# included), output dir) -> the written model file
Exporter = Callable[[Path, str, str, Mapping[str, Any], str], Path]
EXPORTERS: Registry[Exporter] = Registry("exporter")


@dataclass(frozen=True)
class Architecture:
    """A named architecture preset: the model it belongs to and a function returning its config."""

    model: str
    # returns the model's own config dataclass (a different class per model; callers know which)
    preset: Callable[[], Any]


P = TypeVar("P", bound=Callable[[], object])


def register_architecture(model: str, name: str) -> Callable[[P], P]:
    """Register ``preset`` (a no-argument function returning the model's config) as ``--arch name``."""

    def decorator(preset: P) -> P:
        ARCHITECTURES.add(name, Architecture(model, preset))
        return preset

    return decorator
