"""Counts seqloom sentences that repeat fairseq's option help texts (or its other strings), word for word or
nearly.

    python scripts/compare_help_texts.py [--fairseq DIR] [--all-strings] [--list]

fairseq's side is read from its source in the peer venv (by default ../peer-venvs/fs, the layout of
shared/peers/README.md; or --fairseq pointing at the ``fairseq`` package folder, or $FAIRSEQ_PACKAGE): every
``help=`` argument of its argparse parsers and every ``"help"`` entry of its dataclass fields' metadata, read
from the syntax tree, so nothing of fairseq is imported. seqloom's side is every ``help=`` argument under
src/seqloom (with --all-strings: every string constant, for messages too).

Both are cut into sentences, lower-cased and stripped of punctuation. A sentence of 5 words or more counts
as *copied* when fairseq has the same sentence, and as *near* when a fairseq sentence shares a run of 6
words with it or is at least 85% alike by words. Without the peer venv it prints why and exits 0.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import os
import re
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FAIRSEQ = REPO.parent / "peer-venvs" / "fs" / "lib" / "python3.11" / "site-packages" / "fairseq"
MIN_WORDS = 5
NEAR_RUN = 6
NEAR_RATIO = 0.85


def _text(node: ast.AST) -> str | None:
    """A string literal (implicit concatenations included); f-strings keep their literal parts."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return " ".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left), _text(node.right)
        return None if left is None or right is None else left + right
    return None


def strings_of(root: Path, *, help_only: bool) -> list[tuple[str, str]]:
    """``(where, text)`` of the help texts (or all string constants) of the .py files under ``root``."""
    found: list[tuple[str, str]] = []
    for path in sorted(root.rglob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            texts: list[tuple[int, str | None]] = []
            if isinstance(node, ast.Call):
                texts += [(node.lineno, _text(k.value)) for k in node.keywords if k.arg == "help"]
            elif isinstance(node, ast.Dict):
                texts += [
                    (node.lineno, _text(v))
                    for k, v in zip(node.keys, node.values)
                    if isinstance(k, ast.Constant) and k.value == "help"
                ]
            elif not help_only and isinstance(node, (ast.Constant, ast.JoinedStr)):
                texts.append((getattr(node, "lineno", 0), _text(node)))
            found += [(f"{path.relative_to(root.parent)}:{line}", t) for line, t in texts if t]
    return found


def sentences(text: str) -> list[tuple[str, ...]]:
    """Normalised word tuples of the sentences of ``text`` with at least MIN_WORDS words."""
    text = re.sub(r"%\([a-z_]+\)[sdfr]|\{[^}]*\}", " ", text)  # format placeholders
    out = []
    for part in re.split(r"(?<=[.;!?])\s+|\n\s*\n|\s+-\s+|:\s+|\(|\)", text):
        words = tuple(re.findall(r"[a-z0-9][a-z0-9_'-]*", part.lower()))
        if len(words) >= MIN_WORDS:
            out.append(words)
    return out


def compare(ours: list[tuple[str, str]], theirs: list[tuple[str, str]]) -> tuple[list, list]:
    their_sentences = {s for _, t in theirs for s in sentences(t)}
    by_run: dict[tuple[str, ...], set[tuple[str, ...]]] = defaultdict(set)
    for s in their_sentences:
        for i in range(len(s) - 3):
            by_run[s[i : i + 4]].add(s)
    copied, near = [], []
    for where, text in ours:
        for s in sentences(text):
            if s in their_sentences:
                copied.append((where, " ".join(s)))
                continue
            candidates = set().union(*(by_run.get(s[i : i + 4], set()) for i in range(len(s) - 3)))
            for c in candidates:
                m = difflib.SequenceMatcher(None, s, c, autojunk=False)
                longest = m.find_longest_match(0, len(s), 0, len(c)).size
                if longest >= NEAR_RUN or m.ratio() >= NEAR_RATIO:
                    near.append((where, " ".join(s), " ".join(c)))
                    break
    return copied, near


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fairseq", type=Path, default=Path(os.environ.get("FAIRSEQ_PACKAGE", DEFAULT_FAIRSEQ)),
                    help="fairseq's package folder (default: the peer venv's site-packages/fairseq)")  # fmt: skip
    ap.add_argument("--all-strings", action="store_true",
                    help="compare every string constant of seqloom (messages too), not only help texts")  # fmt: skip
    ap.add_argument("--list", action="store_true", help="print each copied and near sentence, with its place")
    args = ap.parse_args(argv)
    if not (args.fairseq / "options.py").is_file():
        print(f"peer not installed, skipping: no fairseq package at {args.fairseq} (set --fairseq)")
        return 0
    theirs = strings_of(args.fairseq, help_only=True)
    cli = args.fairseq.parent / "fairseq_cli"
    if cli.is_dir():
        theirs += strings_of(cli, help_only=True)
    if args.all_strings:  # fairseq's messages and docstrings too
        theirs += strings_of(args.fairseq, help_only=False)
    ours = strings_of(REPO / "src" / "seqloom", help_only=not args.all_strings)
    copied, near = compare(ours, theirs)
    if args.list:
        for where, s in copied:
            print(f"copied  {where}: {s}")
        for where, s, c in near:
            print(f"near    {where}: {s}\n        fairseq: {c}")
    kind = "strings" if args.all_strings else "help texts"
    print(f"{len(ours)} seqloom {kind}, {len(theirs)} fairseq texts: {len(copied)} copied sentences "
          f"({len({s for _, s in copied})} distinct), {len(near)} near")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
