"""Builds a command's argument parser from config dataclasses and the registries.

Parsing runs in two phases, as fairseq's does: the first reads the selectors (``--task``, ``--arch``,
``--criterion``, ``--optimizer``, ``--lr-scheduler``, ``--tokenizer``, ``--bpe``), ``--user-dir`` and
``--config``; the second builds the full parser from the chosen components' dataclasses and parses
everything strictly. Precedence, lowest first: dataclass defaults, the architecture preset, the YAML
file, the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shutil
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, cast

from seqloom import registry
from seqloom.cli.fairseq_flags import config_key_note, strip_ignored, unsupported_message
from seqloom.cli.parsed import ParsedArgs
from seqloom.cli.specs import ALL_SPECS, CommandSpec
from seqloom.components import import_builtins, import_user_dir
from seqloom.config.options import add_dataclass_args, suggest

# selector dest -> (flag, registry)
SELECTORS: dict[str, tuple[str, registry.Registry[Any]]] = {
    "task": ("--task", registry.TASKS),
    "arch": ("--arch", registry.ARCHITECTURES),
    "criterion": ("--criterion", registry.CRITERIONS),
    "optimizer": ("--optimizer", registry.OPTIMIZERS),
    "lr_scheduler": ("--lr-scheduler", registry.LR_SCHEDULERS),
    "tokenizer": ("--tokenizer", registry.TOKENIZERS),
    "bpe": ("--bpe", registry.BPES),
}

SELECTOR_HELP = {
    "task": "what is learned from the data",
    "arch": "the model architecture",
    "criterion": "the training loss",
    "optimizer": "the optimizer",
    "lr_scheduler": "the learning-rate schedule",
    "tokenizer": "the word tokenizer applied to raw text",
    "bpe": "the subword encoding applied to raw text",
}


# a YAML section's ``_name`` picks the component: ``model: {_name: transformer}`` sets ``--arch``
SECTION_SELECTORS = {"model": "arch"}
# fairseq's config sections that name a component (the others are plain groups of options)
COMPONENT_SECTIONS = frozenset(
    {"task", "model", "criterion", "optimizer", "lr_scheduler", "scoring", "bpe", "tokenizer"}
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` for people: at most 100 columns, the help column at 32, and a default shown only where there is
    one (not "(default: None)" or "(default: False)")."""

    def __init__(self, prog: str) -> None:
        width = min(shutil.get_terminal_size((100, 24)).columns, 100) - 2
        super().__init__(prog, max_help_position=32, width=max(width, 60))

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "%(default)" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with strict flags (no abbreviations) and errors that suggest the nearest flag."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """The error alone: a command's full usage runs to hundreds of lines, which buried the message."""
        self.exit(2, f"{self.prog}: error: {message}\n(`{self.prog} --help` lists the options)\n")

    def option_names(self) -> list[str]:
        return [s for a in self._actions for s in a.option_strings]

    def parse_strict(self, argv: Sequence[str], namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        ns, unknown = self.parse_known_args(argv, namespace)
        if unknown:
            flags = [u for u in unknown if u.startswith("-")]
            name = (flags or unknown)[0].split("=", 1)[0]
            if name.startswith("-"):
                self.error(
                    unsupported_message(name) or f"unrecognized argument {name}{suggest(name, self.option_names())}"
                )
            self.error(f"unexpected argument {name!r}")
        return ns


def _selector_parser(spec: CommandSpec) -> ArgumentParser:
    p = ArgumentParser(add_help=False)
    p.add_argument("--config", default=None)
    p.add_argument("--user-dir", default=None)
    for dest, default in spec.selectors.items():
        flag, _ = SELECTORS[dest]
        aliases = ("-a",) if dest == "arch" else ()
        p.add_argument(flag, *aliases, dest=dest, default=default)
    return p


def load_yaml(path: str) -> dict[str, object]:
    """Reads a YAML config: a flat mapping of option names, or sections of them (``task: {...}``)."""
    import yaml

    file = Path(path)
    if not file.exists():
        raise SystemExit(f"--config {path}: no such file")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise SystemExit(f"--config {path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise SystemExit(f"--config {path}: expected a mapping of option names to values")
    flat: dict[str, object] = {}
    for key, value in data.items():
        key = str(key).replace("-", "_")
        if key == "_name":  # fairseq's dumps name the root config too (null)
            continue
        if isinstance(value, dict):
            for sub, v in value.items():
                sub = str(sub).replace("-", "_")
                if sub != "_name":
                    flat[sub] = v
                elif key in COMPONENT_SECTIONS:  # the section's component: --task, --arch, ...
                    flat[SECTION_SELECTORS.get(key, key)] = v
                # a plain group's _name (common, dataset, ...) is null in fairseq's dumps: nothing to set
        else:
            flat[key] = value
    return _resolve_interpolations(flat)


_REFERENCE = re.compile(r"^\$\{([\w.]+)\}$")


def _resolve_interpolations(flat: dict[str, object]) -> dict[str, object]:
    """OmegaConf's ``${group.option}`` references (fairseq's configs tie ``lr_scheduler.lr`` to
    ``optimization.lr`` so): the value of that option in the same file; a reference to an option the file
    does not set is dropped (the option keeps its default, as the referenced one does)."""
    out: dict[str, object] = {}
    for key, value in flat.items():
        match = _REFERENCE.match(value) if isinstance(value, str) else None
        if match is None:
            out[key] = value
            continue
        target = match.group(1).split(".")[-1]
        referenced = flat.get(target)
        if target in flat and not (isinstance(referenced, str) and _REFERENCE.match(referenced)):
            out[key] = referenced
    return out


def build_parser(spec: CommandSpec, chosen: dict[str, str | None]) -> tuple[ArgumentParser, dict[str, type]]:
    """The full parser for ``spec`` with the components in ``chosen``; returns it and the config classes."""
    parser = ArgumentParser(prog=spec.prog, usage=_usage(spec), description=_description(spec, chosen))
    parser.add_argument("--config", default=None, metavar="YAML", help="YAML file of options; flags override it")
    parser.add_argument(
        "--user-dir", default=None, metavar="DIR", help="path to a Python module of user components to import"
    )
    taken: set[str] = {"config", "user_dir"}
    classes: dict[str, type] = {}
    selector_group = parser.add_argument_group("components")
    for dest, name in chosen.items():
        flag, reg = SELECTORS[dest]
        aliases = ("-a",) if dest == "arch" else ()
        names = reg.names()
        listed = "{" + ",".join(names) + "}"
        metavar = listed if len(listed) <= 32 else "NAME"
        help_text = SELECTOR_HELP[dest] + ("" if metavar == listed else f" (one of: {', '.join(names)})")
        selector_group.add_argument(
            flag, *aliases, dest=dest, default=name, choices=names or None, metavar=metavar, help=help_text
        )
        taken.add(dest)
    for title, cls in spec.groups:
        _add_positionals(parser, cls, taken)
        add_dataclass_args(parser.add_argument_group(title), cls, taken=taken)
        classes[title] = cls
    for dest, name in chosen.items():
        if name is None:
            continue
        component_cls, defaults, kind = _component_config(dest, name)
        if component_cls is None:
            continue
        add_dataclass_args(parser.add_argument_group(f"{kind} ({name})"), component_cls, defaults=defaults, taken=taken)
        classes[kind] = component_cls
    return parser, classes


def _usage(spec: CommandSpec) -> str:
    """``seqloom train DATA [options]``: the positionals and a word for the rest (argparse's usage listed every
    option, a hundred lines for train)."""
    words = [f.name.upper() for _, cls in spec.groups for f in dataclasses.fields(cls) if f.metadata.get("positional")]
    return " ".join([spec.prog, *dict.fromkeys(words), "[options]"])


def _description(spec: CommandSpec, chosen: dict[str, str | None]) -> str:
    """The command's description, and where a component's options are when none is chosen yet."""
    paragraphs = [spec.description]
    if "arch" in chosen and chosen["arch"] is None:
        paragraphs.append(
            f"The model's options (layers, sizes, dropout) depend on the architecture: `{spec.prog} --arch NAME "
            "--help` lists them (e.g. --arch transformer). --optimizer, --lr-scheduler and --criterion add their "
            "own options in the same way."
        )
    width = min(shutil.get_terminal_size((100, 24)).columns, 100) - 2
    return "\n\n".join(textwrap.fill(p, width=max(width, 60)) for p in paragraphs)


def _add_positionals(parser: ArgumentParser, cls: type, taken: set[str]) -> None:
    for f in dataclasses.fields(cls):
        if f.metadata.get("positional") and f.name not in taken:
            taken.add(f.name)
            parser.add_argument(
                f.name, nargs="?", default=f.default, metavar=f.name.upper(), help=f.metadata.get("help", "")
            )


def _component_config(dest: str, name: str) -> tuple[type | None, object, str]:
    _, reg = SELECTORS[dest]
    if dest == "arch":
        arch = reg.get(name)
        return registry.MODELS.config_cls(arch.model), arch.preset(), "model"
    return reg.config_cls(name), None, dest


def parse_args(
    spec: CommandSpec,
    argv: Sequence[str] | None = None,
    *,
    defaults: tuple[str, Mapping[str, object]] | None = None,
) -> ParsedArgs:
    """Parses ``argv`` (default ``sys.argv[1:]``) for the command described by ``spec``.

    ``defaults`` (where they come from, flat option values) rank above the components' own defaults and
    below ``--config`` and the command line; its selectors (``task``, ``tokenizer``, ...) pick components."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if spec.selectors:  # a command that picks no components (preprocess) need not import torch
        import_builtins()
    pre, _ = _selector_parser(spec).parse_known_args(argv)
    yaml_values = load_yaml(pre.config) if pre.config else {}
    user_dir = pre.user_dir or yaml_values.get("user_dir")
    if user_dir:
        try:
            import_user_dir(str(user_dir))
        except FileNotFoundError as err:  # a wrong path: a usage error; an error inside the package keeps its traceback
            ArgumentParser(prog=spec.prog, add_help=False).error(str(err))
    source, given = defaults or ("", {})
    chosen = _choose_components(spec, pre, {**given, **yaml_values}, argv)
    parser, classes = build_parser(spec, chosen)
    base_defaults = {**{a.dest: a.default for a in parser._actions}, **spec.selectors}
    if given:  # options of a component the command line replaced (an export's task) do not apply
        actions = {a.dest for a in parser._actions}
        _apply_yaml_defaults(parser, {k: v for k, v in given.items() if k in actions}, source)
    if yaml_values:
        _apply_yaml_defaults(parser, yaml_values, f"--config {pre.config}")
    argv, notes = strip_ignored(argv, set(parser.option_names()))
    for note in notes:
        print(f"{spec.prog}: {note}", file=sys.stderr)
    ns = parser.parse_strict(argv)
    for flag, implied in (("memory_efficient_fp16", "fp16"), ("memory_efficient_bf16", "bf16")):
        if getattr(ns, flag, False):  # fairseq's rule: the memory-efficient variants switch the precision on
            setattr(ns, implied, True)
    # from here on the options live in the configs alone (ParsedArgs.namespace is a view of them)
    return ParsedArgs.from_namespace(ns, classes, selectors=spec.selectors, parser=parser, defaults=base_defaults)


def _choose_components(
    spec: CommandSpec, pre: argparse.Namespace, yaml_values: Mapping[str, object], argv: Sequence[str]
) -> dict[str, str | None]:
    chosen: dict[str, str | None] = {}
    for dest in spec.selectors:
        flag, reg = SELECTORS[dest]
        on_cli = any(a == flag or a.startswith(flag + "=") or (dest == "arch" and a == "-a") for a in argv)
        value = getattr(pre, dest) if on_cli or dest not in yaml_values else yaml_values[dest]
        name = None if value is None else str(value)
        if name is not None and name not in reg:
            raise SystemExit(
                f"{spec.prog}: error: argument {flag}: " + registry.unknown_name_message(reg.kind, name, reg.names())
            )
        chosen[dest] = name
    return chosen


_ALL_OPTIONS: set[str] = set()


def _options_of_all_commands() -> set[str]:
    """The option dests of every seqloom command and of every registered component, made once."""
    if not _ALL_OPTIONS:
        for spec in ALL_SPECS:
            parser, _ = build_parser(spec, dict(spec.selectors))
            _ALL_OPTIONS.update(a.dest for a in parser._actions)
        for dest, (_, reg) in SELECTORS.items():
            for name in reg.names():
                cls, _, _ = _component_config(dest, name)
                if cls is not None and dataclasses.is_dataclass(cls):
                    _ALL_OPTIONS.update(f.name for f in dataclasses.fields(cls))
    return _ALL_OPTIONS


def _apply_yaml_defaults(parser: ArgumentParser, values: Mapping[str, object], source: str) -> None:
    """Sets ``values`` as the parser's defaults; errors name ``source`` (e.g. ``--config run.yaml``)."""
    actions = {a.dest: a for a in parser._actions}
    # an option's other names (--relu-dropout for --activation-dropout), as keys: used unless the option's own
    # key gives it a value (fairseq's old checkpoints write both; the model reads ``activation or relu``)
    aliases = {flag[2:].replace("-", "_"): a.dest for a in parser._actions for flag in a.option_strings}
    values = dict(values)
    for key in [k for k in values if k not in actions and aliases.get(k) in actions]:
        alias_value = values.pop(key)
        if not values.get(aliases[key]):
            values[aliases[key]] = alias_value
    defaults: dict[str, object] = {}
    for key, value in values.items():
        if key in SELECTORS:  # already chose the component
            continue
        if key not in actions or key in ("help",):
            accepted, message = config_key_note(key, value)
            if not accepted and message is None and key in _options_of_all_commands():
                continue  # another command's option: fairseq writes its whole configuration into every dump
            if accepted:
                if message:
                    print(f"{parser.prog}: {source}: {message}", file=sys.stderr)
                continue
            parser.error(f"{source}: {message or f'unknown option {key!r}{suggest(key, sorted(actions))}'}")
        action = actions[key]
        if action.type is not None and value is not None and not isinstance(value, bool):
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            try:
                value = cast("Callable[[str], object]", action.type)(text)  # add_dataclass_args sets callable types
            except (argparse.ArgumentTypeError, ValueError) as err:
                parser.error(f"{source}: option {key!r}: {err}")
        if action.choices is not None and value is not None and value not in action.choices:
            parser.error(f"{source}: option {key!r}: {value!r} is not one of {list(action.choices)}")
        defaults[key] = value
    parser.set_defaults(**defaults)
