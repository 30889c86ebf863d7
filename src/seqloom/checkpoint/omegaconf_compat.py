"""Plain stand-ins for the omegaconf classes found in pickled fairseq ``cfg`` objects.

Checkpoints of some fairseq versions pickle the hydra config as an omegaconf ``DictConfig``. seqloom
reads them without importing omegaconf: ``torch.load(weights_only=True)`` is told that the globals
``omegaconf.dictconfig.DictConfig`` etc. are these small classes, which only store the pickled state;
:func:`to_plain` then turns them into dicts, lists and scalars. Interpolations such as
``${model.decoder.embed_dim}`` stay as strings. Nothing here executes code from the file.
"""

from __future__ import annotations

import typing
from collections import OrderedDict, defaultdict
from typing import Any


class _Stored:
    """Keeps whatever state the pickle sets (``__setstate__`` or ``__dict__`` update)."""

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    @property
    def state(self) -> dict[str, Any]:
        state = self.__dict__.get("_state", self.__dict__)
        return state if isinstance(state, dict) else {}


class DictConfigStandIn(_Stored):
    """``omegaconf.dictconfig.DictConfig``: its ``_content`` maps keys to nodes."""


class ListConfigStandIn(_Stored):
    """``omegaconf.listconfig.ListConfig``: its ``_content`` is a list of nodes."""


class ValueNodeStandIn(_Stored):
    """Any omegaconf value node (``AnyNode``, ``IntegerNode``, ...): the value is ``_val``."""


class MetadataStandIn(_Stored):
    """``omegaconf.base.Metadata``/``ContainerMetadata``: ignored."""


def _default_dict(*args: Any) -> defaultdict[Any, Any]:
    """``collections.defaultdict`` without calling an arbitrary default factory."""
    return defaultdict(None)


_NODES = ("AnyNode", "IntegerNode", "FloatNode", "StringNode", "BooleanNode", "BytesNode", "PathNode", "ValueNode")

OMEGACONF_STAND_INS: list[Any] = [
    (DictConfigStandIn, "omegaconf.dictconfig.DictConfig"),
    (ListConfigStandIn, "omegaconf.listconfig.ListConfig"),
    (MetadataStandIn, "omegaconf.base.Metadata"),
    (MetadataStandIn, "omegaconf.base.ContainerMetadata"),
    (_default_dict, "collections.defaultdict"),
    (typing.Any, "typing.Any"),
    dict,  # omegaconf's metadata names ``dict``/``list`` as object types; calling them is harmless
    list,
    int,
    *[(ValueNodeStandIn, f"omegaconf.nodes.{name}") for name in _NODES],
]


def to_plain(value: Any) -> Any:
    """Replaces stand-ins (at any depth of dicts/lists/tuples) by plain dicts, lists and scalars."""
    if isinstance(value, DictConfigStandIn):
        content = value.state.get("_content")
        return {k: to_plain(v) for k, v in content.items()} if isinstance(content, dict) else content
    if isinstance(value, ListConfigStandIn):
        content = value.state.get("_content")
        return [to_plain(v) for v in content] if isinstance(content, list) else content
    if isinstance(value, ValueNodeStandIn):
        return to_plain(value.state.get("_val"))
    if isinstance(value, (dict, OrderedDict)) and any(_needs_conversion(v) for v in value.values()):
        return type(value)((k, to_plain(v)) for k, v in value.items())
    if isinstance(value, list) and any(_needs_conversion(v) for v in value):
        return [to_plain(v) for v in value]
    return value


def _needs_conversion(value: Any) -> bool:
    if isinstance(value, (DictConfigStandIn, ListConfigStandIn, ValueNodeStandIn)):
        return True
    if isinstance(value, dict):
        return any(_needs_conversion(v) for v in value.values())
    if isinstance(value, list):
        return any(_needs_conversion(v) for v in value)
    return False
