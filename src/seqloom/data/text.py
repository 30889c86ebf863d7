"""Plain-text helpers shared by dictionaries, binarization and generation: tokenizing and BPE removal."""

from __future__ import annotations

import re

_SPACES = re.compile(" +")

POST_PROCESS_CHOICES = ("subword_nmt", "@@ ", "@@", "sentencepiece", "wordpiece", "letter", "silence", "_EOW", "none")


def tokenize_line(line: str) -> list[str]:
    """Splits ``line`` on runs of Unicode whitespace, as fairseq's ``tokenize_line``.

    fairseq collapses ``\\s+`` to one space, strips and splits on spaces; Python's ``str.split()`` with
    no argument splits on exactly the same characters (``re``'s ``\\s`` is ``str.isspace``), so this is
    one C call.
    """
    return line.split()


def post_process(sentence: str, symbol: str | None) -> str:
    """Removes subword markers from a detokenized-by-spaces ``sentence`` (fairseq's ``post_process``).

    ``symbol`` is fairseq's ``--post-process``/``--remove-bpe`` value: ``subword_nmt`` or ``@@ `` (join
    ``foo@@ bar`` to ``foobar``), ``sentencepiece`` (drop spaces, ``▁`` becomes a space), ``wordpiece``
    (``_`` marks word starts), ``letter`` (``|`` separates words), ``silence`` (drop ``<SIL>``),
    ``_EOW`` (end-of-word marker), ``none`` or ``None`` (unchanged). Other values raise ``ValueError``.
    """
    if symbol is None or symbol == "none":
        return sentence
    if symbol == "sentencepiece":
        return sentence.replace(" ", "").replace("\u2581", " ").strip()
    if symbol == "wordpiece":
        return sentence.replace(" ", "").replace("_", " ").strip()
    if symbol == "letter":
        return sentence.replace(" ", "").replace("|", " ").strip()
    if symbol == "_EOW":
        return sentence.replace(" ", "").replace("_EOW", " ").strip()
    if symbol == "silence":
        return _SPACES.sub(" ", sentence.replace("<SIL>", "")).strip()
    if symbol in ("subword_nmt", "@@ ", "@@"):
        marker = "@@ " if symbol == "subword_nmt" else symbol
        return (sentence + " ").replace(marker, "").rstrip()
    raise ValueError(f"unknown BPE/post-process symbol {symbol!r}; use one of {', '.join(POST_PROCESS_CHOICES)}")
