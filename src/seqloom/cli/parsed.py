"""What parsing a command line yields: the options, kept in one place.

The values live in the config dataclasses only (one instance per option group or chosen component), next to
:class:`Components`, the names the selectors picked. The flat ``argparse.Namespace`` fairseq works with (a
checkpoint's ``args``, ``changed_options``) is derived from them when asked for and cannot be written to, so it
never disagrees with the configs. After parsing, options change through :meth:`ParsedArgs.set` alone, which
also keeps an option that several configs share (``--max-source-positions``: the task's and the model's) equal.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NoReturn, overload

from seqloom.cli.specs import EvalLMConfig, ExportConfig, PreprocessConfig, ScoreConfig
from seqloom.config.common import CommonConfig
from seqloom.config.options import bounds_problem, from_namespace, value_mismatch
from seqloom.config.training import (
    CheckpointConfig,
    DataDirConfig,
    DatasetConfig,
    DistributedConfig,
    EMAConfig,
    OptimizationConfig,
)
from seqloom.generation.config import (
    CommonEvalConfig,
    DecodeThreadsConfig,
    GenerationConfig,
    InteractiveConfig,
    QuantizeConfig,
    ScoringConfig,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


@dataclasses.dataclass(frozen=True, kw_only=True)
class Components:
    """The name each selector picked (``--task translation``); None where nothing was chosen or the command
    has no such selector."""

    task: str | None = None
    """``--task``: what is learned from the data."""
    arch: str | None = None
    """``--arch``: the model architecture."""
    criterion: str | None = None
    """``--criterion``: the training loss."""
    optimizer: str | None = None
    """``--optimizer``."""
    lr_scheduler: str | None = None
    """``--lr-scheduler``: the learning-rate schedule."""
    tokenizer: str | None = None
    """``--tokenizer``: the word tokenizer applied to raw text."""
    bpe: str | None = None
    """``--bpe``: the subword encoding applied to raw text."""

    def required(self, dest: str, choices: Iterable[str] = ()) -> str:
        """The name chosen for selector ``dest``; a SystemExit naming the flag (and ``choices``) if there is none."""
        name: str | None = getattr(self, dest)
        if name is None:
            listed = ", ".join(choices)
            flag = "--" + dest.replace("_", "-")
            raise SystemExit(f"{flag} is required" + (f" (choose from {listed})" if listed else ""))
        return name


class OptionsView(argparse.Namespace):
    """The options as one flat namespace (fairseq's ``args``), made from the configs when asked for. It is a copy:
    writing to it is refused (the write would change nothing), options change with :meth:`ParsedArgs.set`."""

    def __init__(self, values: Mapping[str, object]) -> None:
        self.__dict__.update(values)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"the parsed options are read-only here: change {name} with ParsedArgs.set({name}=...)")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"the parsed options are read-only here: {name} cannot be removed")

    def __repr__(self) -> str:
        return repr(argparse.Namespace(**vars(self)))


class ParsedArgs:
    """The result of parsing: one config instance per group or component (``parsed["dataset"]``), the chosen
    component names (``parsed.components.arch``) and, derived from both, the flat :attr:`namespace`."""

    def __init__(
        self,
        configs: Mapping[str, DataclassInstance],
        components: Components,
        *,
        order: Iterable[str],
        selectors: Iterable[str] = (),
        loose: Mapping[str, object] | None = None,
        parser: argparse.ArgumentParser | None = None,
        defaults: Mapping[str, object] | None = None,
    ) -> None:
        """``order``: the namespace's option names in argparse's order (a checkpoint's ``args`` keeps it);
        ``selectors``: those that are the command's selectors; ``loose``: values of options no config holds
        (``--config``, ``--user-dir``)."""
        self._configs = dict(configs)
        self.components = components
        self._selectors = frozenset(selectors)
        self._loose = dict(loose or {})
        fields = {kind: {f.name for f in dataclasses.fields(c) if f.init} for kind, c in self._configs.items()}
        self._owners: dict[str, tuple[str, ...]] = {}
        for name in order:
            owners = tuple(kind for kind, names in fields.items() if name in names)
            if not owners and name not in self._selectors and name not in self._loose:
                raise ValueError(f"option {name!r} belongs to no config of the command")
            self._owners[name] = owners
        self.parser = parser
        # each option's value before ``--config`` and the command line: the class default or the arch preset's
        self.defaults: dict[str, object] = dict(defaults or {})

    @classmethod
    def from_namespace(
        cls,
        ns: argparse.Namespace,
        classes: Mapping[str, type],
        *,
        selectors: Iterable[str],
        parser: argparse.ArgumentParser | None = None,
        defaults: Mapping[str, object] | None = None,
    ) -> ParsedArgs:
        """Moves argparse's namespace into the configs of ``classes`` (kind -> config class); ``selectors``: the
        command's selector dests. The namespace is not kept."""
        values = vars(ns)
        selectors = tuple(selectors)
        configs: dict[str, DataclassInstance] = {kind: from_namespace(c, ns) for kind, c in classes.items()}
        held = {f.name for c in configs.values() for f in dataclasses.fields(c) if f.init}
        loose = {k: v for k, v in values.items() if k not in held and k not in selectors}
        components = Components(**{dest: values[dest] for dest in selectors})
        return cls(configs, components, order=values, selectors=selectors, loose=loose, parser=parser,
                   defaults=defaults)  # fmt: skip

    # -- reading ---------------------------------------------------------------------------------------------

    @overload
    def __getitem__(self, key: Literal["common"]) -> CommonConfig: ...
    @overload
    def __getitem__(self, key: Literal["data"]) -> DataDirConfig: ...
    @overload
    def __getitem__(self, key: Literal["dataset"]) -> DatasetConfig: ...
    @overload
    def __getitem__(self, key: Literal["optimization"]) -> OptimizationConfig: ...
    @overload
    def __getitem__(self, key: Literal["checkpoint"]) -> CheckpointConfig: ...
    @overload
    def __getitem__(self, key: Literal["distributed_training"]) -> DistributedConfig: ...
    @overload
    def __getitem__(self, key: Literal["ema"]) -> EMAConfig: ...
    @overload
    def __getitem__(self, key: Literal["common_eval"]) -> CommonEvalConfig: ...
    @overload
    def __getitem__(self, key: Literal["generation"]) -> GenerationConfig: ...
    @overload
    def __getitem__(self, key: Literal["scoring"]) -> ScoringConfig: ...
    @overload
    def __getitem__(self, key: Literal["quantize"]) -> QuantizeConfig: ...
    @overload
    def __getitem__(self, key: Literal["decoding"]) -> DecodeThreadsConfig: ...
    @overload
    def __getitem__(self, key: Literal["interactive"]) -> InteractiveConfig: ...
    @overload
    def __getitem__(self, key: Literal["eval_lm"]) -> EvalLMConfig: ...
    @overload
    def __getitem__(self, key: Literal["export"]) -> ExportConfig: ...
    @overload
    def __getitem__(self, key: Literal["score"]) -> ScoreConfig: ...
    @overload
    def __getitem__(self, key: Literal["preprocessing"]) -> PreprocessConfig: ...
    @overload
    def __getitem__(self, key: str) -> Any: ...  # a chosen component's config: its class depends on the choice

    def __getitem__(self, key: str) -> Any:
        """The config of group or component ``key``: a KeyError if the command has none."""
        return self._configs[key]

    @overload
    def get(self, key: Literal["dataset"]) -> DatasetConfig | None: ...
    @overload
    def get(self, key: Literal["optimization"]) -> OptimizationConfig | None: ...
    @overload
    def get(self, key: str) -> Any: ...

    def get(self, key: str) -> Any:
        """The config of group or component ``key``, or None where the command has none (or none was chosen)."""
        return self._configs.get(key)

    @property
    def configs(self) -> Mapping[str, DataclassInstance]:
        """Every config by group or component name (a read-only mapping; the configs themselves are the storage)."""
        return MappingProxyType(self._configs)

    @property
    def namespace(self) -> OptionsView:
        """All options as one flat, read-only namespace in argparse's order, made from the configs now."""
        values: dict[str, object] = {}
        for name, owners in self._owners.items():
            if name in self._selectors:
                values[name] = getattr(self.components, name)
            elif not owners:
                values[name] = self._loose[name]
            else:
                values[name] = self._shared_value(name, owners)
        return OptionsView(values)

    def _shared_value(self, name: str, owners: tuple[str, ...]) -> object:
        value = getattr(self._configs[owners[0]], name)
        for kind in owners[1:]:
            other = getattr(self._configs[kind], name)
            if other != value:  # a config was written to directly: which value holds is unknown
                raise RuntimeError(f"option {name}: the {owners[0]} config holds {value!r} but the {kind} config "
                                   f"{other!r}; change parsed options with ParsedArgs.set")  # fmt: skip
        return value

    def changed_options(self) -> list[str]:
        """The options that differ from their defaults, written as command-line words (``--lr 0.002``,
        ``--share-all-embeddings``): a run's configuration in a line instead of the whole namespace."""
        if self.parser is None:
            return []
        values = vars(self.namespace)
        words: list[str] = []
        for action in self.parser._actions:
            value = values.get(action.dest)
            if action.dest == "help" or value == self.defaults.get(action.dest):
                continue
            if not action.option_strings:  # a positional (DATA)
                words.append(str(value))
            elif isinstance(action, argparse.BooleanOptionalAction):
                words.append(action.option_strings[0 if value else 1])
            elif isinstance(value, bool) and action.nargs == 0:
                words.append(action.option_strings[0])
            else:
                words += [action.option_strings[0], _as_word(value)]
        return words

    # -- writing -----------------------------------------------------------------------------------------------

    def set(self, **values: object) -> None:
        """Changes options after parsing, the one way to: every config holding an option gets the new value (so
        the namespace, and a checkpoint's ``args`` made from it, see it too). A value of the wrong type or out of
        the option's bounds is a ValueError; the selectors and options no config holds cannot change."""
        for name, value in values.items():
            owners = self._owners.get(name)
            if name in self._selectors or not owners:
                what = "a component choice" if name in self._selectors else "not an option any config holds"
                raise ValueError(f"option {name!r} cannot be changed after parsing: it is {what}")
            for kind in owners:
                config_cls = type(self._configs[kind])
                problem = value_mismatch(value, typing.get_type_hints(config_cls)[name])
                problem = problem or bounds_problem(config_cls, name, value)
                if problem:
                    raise ValueError(f"option {name} = {value!r}: {problem}")
        for name, value in values.items():
            for kind in self._owners[name]:
                setattr(self._configs[kind], name, value)


def _as_word(value: object) -> str:
    if isinstance(value, (list, tuple)):
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    else:
        text = str(value)
    return text if text and not any(c.isspace() or c in "'\"()$;&|" for c in text) else repr(text)
