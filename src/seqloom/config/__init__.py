"""Typed configs and the flags derived from them."""

from seqloom.config.options import add_dataclass_args, field, from_namespace
from seqloom.config.parser import CommandSpec, ParsedArgs, parse_args

__all__ = ["CommandSpec", "ParsedArgs", "add_dataclass_args", "field", "from_namespace", "parse_args"]
