"""Typed configs and the flags derived from them.

This package is a leaf of the import graph: components import ``field`` from here to declare their
options. The parser that turns a command line into these configs is command glue and lives in
``seqloom.cli.parser``.
"""

from seqloom.config.options import add_dataclass_args, field, from_namespace

__all__ = ["add_dataclass_args", "field", "from_namespace"]
