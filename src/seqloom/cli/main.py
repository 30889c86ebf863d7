"""``seqloom <command> [options]``: dispatches to each command's ``main(argv)``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

from seqloom import __version__
from seqloom.config.options import suggest

# command name -> "module:function"; each also has a ``seqloom-<command>`` console script
COMMANDS: dict[str, str] = {
    "preprocess": "seqloom.cli.preprocess:main",
    "train": "seqloom.cli.train:main",
    "validate": "seqloom.cli.validate:main",
    "average-checkpoints": "seqloom.cli.average_checkpoints:main",
    "export": "seqloom.cli.export:main",
    "generate": "seqloom.cli.generate:main",
    "interactive": "seqloom.cli.interactive:main",
    "score": "seqloom.cli.score:main",
    "eval-lm": "seqloom.cli.eval_lm:main",
}


# one line each for ``seqloom --help`` (kept here: importing the commands would load torch just to print them)
SUMMARIES: dict[str, str] = {
    "preprocess": "build dictionaries and binarize text files into a data folder",
    "train": "train a model on a binarized data folder",
    "validate": "compute a trained model's loss on data splits",
    "average-checkpoints": "average the weights of several checkpoints into one",
    "export": "write a checkpoint as safetensors weights, config.json and dictionaries",
    "generate": "translate a binarized split with a trained model, and score it",
    "interactive": "translate lines typed or piped in, with a trained model",
    "score": "BLEU of system output files against reference files",
    "eval-lm": "the perplexity of a language model on a binarized split",
}


def usage() -> str:
    lines = [f"seqloom {__version__}", "usage: seqloom <command> [options]", "", "commands:"]
    width = max(map(len, COMMANDS))
    lines += [f"  {name:<{width}}  {SUMMARIES[name]}" for name in COMMANDS]
    lines += [
        "",
        "Run 'seqloom <command> --help' for a command's options; 'seqloom train --arch NAME --help' adds the",
        "options of that model architecture (e.g. --arch transformer).",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if args[0] == "--version":
        print(__version__)
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"seqloom: unknown command {name!r}{suggest(name, list(COMMANDS))}\n\n{usage()}", file=sys.stderr)
        return 2
    return run_command(name, rest)


def run_command(name: str, argv: Sequence[str]) -> int:
    """Runs command ``name``; Ctrl-C ends it with "interrupted" and status 130 instead of a traceback (what was
    written stays: checkpoints are written atomically, output lines are whole)."""
    module, func = COMMANDS[name].split(":")
    try:
        result = getattr(importlib.import_module(module), func)(list(argv))
    except KeyboardInterrupt:
        print(f"seqloom {name}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


def _console_script(name: str) -> Callable[[], int]:
    def entry() -> int:
        return run_command(name, sys.argv[1:])

    entry.__name__ = entry.__qualname__ = name.replace("-", "_")
    return entry


# the console scripts (``seqloom-train`` ...), each ``seqloom <command>``
preprocess = _console_script("preprocess")
train = _console_script("train")
validate = _console_script("validate")
average_checkpoints = _console_script("average-checkpoints")
export = _console_script("export")
generate = _console_script("generate")
interactive = _console_script("interactive")
score = _console_script("score")
eval_lm = _console_script("eval-lm")


if __name__ == "__main__":
    sys.exit(main())
