"""Command-line flags derived from config dataclasses.

Every component owns one kw-only dataclass whose fields carry fairseq's option names (``max_tokens``
becomes ``--max-tokens``) and defaults; its docstring per field lives in ``field(metadata={"help": ...})``.
This module turns such dataclasses into argparse groups and back, so the dataclass stays the single
source of truth for an option's name, type, default and help.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import math
import numbers
import types
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
D = TypeVar("D", bound="DataclassInstance")


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The values a numeric option takes: finite, at least ``low`` (above it with ``low_open``), at most
    ``high``, or the one ``off`` value that switches the option off (fairseq's ``-1``)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    off: float | None = None

    def problem(self, value: float) -> str | None:
        """What is wrong with ``value`` (``must be at least 1``), or None if it is allowed."""
        if self.off is not None and value == self.off:
            return None
        ok = math.isfinite(value)
        ok = ok and (self.low is None or (value > self.low if self.low_open else value >= self.low))
        ok = ok and (self.high is None or value <= self.high)
        return None if ok else "must be " + self.describe()

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            what = f"in {'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}]"
        elif self.low is not None:
            what = f"greater than {_num(self.low)}" if self.low_open else f"at least {_num(self.low)}"
        elif self.high is not None:
            what = f"at most {_num(self.high)}"
        else:
            what = "a finite number"
        return what if self.off is None else f"{_num(self.off)} (off) or {what}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def bounds_problem(cls: type, name: str, value: object) -> str | None:
    """What keeps ``value`` out of the bounds of ``cls``'s numeric field ``name`` (``--beam must be at least 1
    (got 0)``), or None. Fields without bounds take any value of their type; floats must be numbers (not nan)."""
    f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if f is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    bounds = f.metadata.get("bounds")
    problem = (
        bounds.problem(float(value)) if isinstance(bounds, Bounds) else ("must be a number" if value != value else None)
    )
    return f"{flag_of(f)} {problem} (got {value})" if problem else None


def check_bounds(config: DataclassInstance) -> None:
    """Raises ValueError naming the first numeric field of the dataclass ``config`` outside its bounds."""
    for f in dataclasses.fields(config):
        problem = bounds_problem(type(config), f.name, getattr(config, f.name))
        if problem:
            raise ValueError(problem)


def field(default: Any = dataclasses.MISSING, *, help: str, flag: str | None = None, **metadata: object) -> Any:
    """A dataclass field with its help text (and, rarely, a flag name that differs from the field). (``Any``:
    the default is of the field's type, and the result stands for that type, as ``dataclasses.field``'s does.)
    ``bounds=Bounds(...)`` limits a numeric option's values (checked when parsed and by :func:`check_bounds`)."""
    meta = {"help": help, **metadata}
    if flag is not None:
        meta["flag"] = flag
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def parse_literal_tuple(text: str) -> tuple[float, ...]:
    """Parses ``'(0.9, 0.98)'`` (fairseq's spelling) or ``'0.9,0.98'`` into a tuple of floats."""
    try:
        value = ast.literal_eval(text if "(" in text or "[" in text else f"({text},)")
        return tuple(float(v) for v in value)
    except (ValueError, SyntaxError, TypeError):
        raise argparse.ArgumentTypeError(f"expected a tuple of numbers such as '(0.9, 0.98)', got {text!r}") from None


def _sized_tuple_parser(size: int | None) -> Callable[[str], tuple[float, ...]]:
    """:func:`parse_literal_tuple` that also wants ``size`` numbers (None: any number), e.g. two Adam betas."""

    def parse(text: str) -> tuple[float, ...]:
        value = parse_literal_tuple(text)
        if size is not None and len(value) != size:
            raise argparse.ArgumentTypeError(f"expected {size} numbers such as '(0.9, 0.98)', got {text!r}")
        return value

    parse.__name__ = "tuple"
    return parse


def _bool_value(text: str) -> bool:
    low = str(text).lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def _scalar_parser(tp: object) -> Callable[[str], object]:
    if tp is int:
        return _named(int, "an integer")
    if tp is float:
        return _named(_number, "a number")
    if tp is bool:
        return _bool_value
    return str


def _number(text: str) -> float:
    value = float(text)
    if value != value:  # nan: no option means "not a number" (it would flow into scores and sizes)
        raise ValueError(text)
    return value


def _bounded(parse: Callable[[str], object], bounds: Bounds) -> Callable[[str], object]:
    """``parse`` that also wants the value within ``bounds`` (an argparse error naming the flag otherwise)."""

    def checked(text: str) -> object:
        value = parse(text)
        problem = bounds.problem(value) if isinstance(value, (int, float)) else None
        if problem:
            raise argparse.ArgumentTypeError(f"{problem} (got {text!r})")
        return value

    checked.__name__ = parse.__name__
    return checked


def _named(fn: Callable[[str], T], what: str) -> Callable[[str], T]:
    def parse(text: str) -> T:
        try:
            return fn(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None

    parse.__name__ = fn.__name__
    return parse


def _list_parser(item: Callable[[str], T]) -> Callable[[str], list[T]]:
    def parse(text: str) -> list[T]:
        return [item(part) for part in str(text).split(",") if part.strip() != ""]

    return parse


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """How one dataclass field appears on the command line."""

    parse: Callable[[str], object] | None
    choices: tuple[object, ...] | None
    is_bool: bool


def _strip_optional(tp: object) -> object:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def value_mismatch(value: object, tp: object) -> str | None:
    """What keeps ``value`` from being a value of the option type ``tp`` (as a Python caller passes it, e.g.
    a hub keyword), or None where it fits or the type is not one checked here: ``beam="5"`` would otherwise
    fail deep inside generation with a comparison of str and int."""
    stripped = _strip_optional(tp)
    if value is None:
        return None if stripped is not tp else "None is not allowed"
    if typing.get_origin(stripped) is Literal:
        choices = typing.get_args(stripped)
        return None if value in choices else f"expected one of {', '.join(map(repr, choices))}"
    if stripped is bool:
        return None if isinstance(value, (bool, numbers.Integral)) else f"expected True or False, got {value!r}"
    if stripped is int:
        fits = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        return None if fits else f"expected an int, got {type(value).__name__} {value!r}"
    if stripped is float:
        fits = isinstance(value, numbers.Real) and not isinstance(value, bool)
        return None if fits else f"expected a number, got {type(value).__name__} {value!r}"
    if stripped is str:
        return None if isinstance(value, str) else f"expected a str, got {type(value).__name__} {value!r}"
    return None


def field_spec(tp: object) -> FieldSpec:
    tp = _strip_optional(tp)
    origin = typing.get_origin(tp)
    if tp is bool:
        return FieldSpec(None, None, True)
    if origin is Literal:
        choices = typing.get_args(tp)
        return FieldSpec(_scalar_parser(type(choices[0])), choices, False)
    if origin is tuple:
        args = typing.get_args(tp)
        return FieldSpec(_sized_tuple_parser(None if Ellipsis in args else len(args)), None, False)
    if origin is list:
        (item,) = typing.get_args(tp)
        return FieldSpec(_list_parser(_scalar_parser(item)), None, False)
    return FieldSpec(_scalar_parser(tp), None, False)


def add_dataclass_args(
    group: argparse._ActionsContainer, cls: type, *, defaults: object = None, taken: set[str] | None = None
) -> None:
    """Adds one flag per field of ``cls`` to ``group``.

    ``defaults`` (an instance of ``cls``, e.g. an architecture preset) replaces the class defaults.
    Fields whose dest is already in ``taken`` are skipped: fairseq shares options such as
    ``--max-source-positions`` between the task and the model, and both read the same value.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.metadata.get("cli") is False:
            continue
        if taken is not None:
            if f.name in taken:
                continue
            taken.add(f.name)
        default = getattr(defaults, f.name) if defaults is not None else _class_default(f)
        spec = field_spec(hints[f.name])
        help_text = f.metadata.get("help", "")
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": _help_with_default(help_text, default)}
        if spec.is_bool:
            kwargs["action"] = argparse.BooleanOptionalAction if default is True else "store_true"
        else:
            kwargs["type"] = spec.parse
            if isinstance(f.metadata.get("bounds"), Bounds) and spec.parse is not None:
                kwargs["type"] = _bounded(spec.parse, f.metadata["bounds"])
            kwargs["metavar"] = f.metadata.get("metavar") or metavar_for(f.name, hints[f.name])
            if spec.choices is not None:
                kwargs["choices"] = spec.choices
                kwargs["metavar"] = choices_metavar(spec.choices, kwargs["metavar"])
                if kwargs["metavar"] != "{" + ",".join(map(str, spec.choices)) + "}":
                    kwargs["help"] += " (one of: " + ", ".join(map(str, spec.choices)) + ")"
            if "const" in f.metadata:  # a bare flag means ``const`` (fairseq's ``--print-alignment``)
                kwargs["nargs"] = "?"
                kwargs["const"] = f.metadata["const"]
        group.add_argument(flag_of(f), *f.metadata.get("aliases", ()), **kwargs)


# str options whose name ends so: what their value is (the others show their whole name: --valid-subset VALID-SUBSET)
_STR_METAVARS = (("_dir", "DIR"), ("logdir", "DIR"), ("_file", "FILE"), ("_path", "FILE"), ("_model", "FILE"))


def metavar_for(name: str, tp: object) -> str:
    """The word standing for an option's value in ``--help``: its type (N, FLOAT, N,N,...) or, for text, what it
    names (FILE, DIR) or else the whole option name."""
    tp = _strip_optional(tp)
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        return metavar_for(name, item) + ",..."
    if origin is tuple:
        return "'(FLOAT, ...)'" if Ellipsis in typing.get_args(tp) else "'(" + ", ".join(
            metavar_for(name, t) for t in typing.get_args(tp)) + ")'"  # fmt: skip
    if tp is int:
        return "N"
    if tp is float:
        return "FLOAT"
    if name == "path":
        return "FILE"
    return next((word for end, word in _STR_METAVARS if name.endswith(end)), name.upper().replace("_", "-"))


def choices_metavar(choices: tuple[object, ...], fallback: str) -> str:
    """``{a,b,c}`` for a short list of choices; a long one is named by a word (its choices go into the help)."""
    listed = "{" + ",".join(map(str, choices)) + "}"
    return listed if len(listed) <= 32 else ("NAME" if fallback.endswith(("FILE", "DIR")) else fallback)


def _class_default(f: dataclasses.Field[object]) -> object:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _help_with_default(text: str, default: object) -> str:
    if default is None or default is False or "%(default)" in text:
        return text
    return f"{text} (default: %(default)s)"


def from_namespace(cls: type[D], ns: argparse.Namespace | Mapping[str, object]) -> D:
    """Builds ``cls`` from a flat namespace, taking each field that the namespace holds."""
    values = vars(ns) if isinstance(ns, argparse.Namespace) else ns
    kwargs = {f.name: values[f.name] for f in dataclasses.fields(cls) if f.init and f.name in values}
    return cls(**kwargs)


def suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
