"""A UTF-8 byte-order mark (BOM, ``U+FEFF``) at the start of a text file is not text: it is left out.

Editors on Windows write one at the start of "UTF-8" files. Read as text it glues itself to the first word
(``\\ufeffGod`` enters the dictionary as a word of its own, and the first sentence's first word is unknown
to a model). fairseq reads it as text; seqloom leaves it out everywhere it reads text (corpora, dict.txt,
interactive input, score's files, label files) and says so once per file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

logger = logging.getLogger(__name__)

BOM = "\ufeff"
_reported: set[str] = set()


def strip_bom(text: str, source: str) -> str:
    """``text`` (the start of the file or stream ``source``) without a leading BOM; logged once per source."""
    if not text.startswith(BOM):
        return text
    if source not in _reported:
        _reported.add(source)
        logger.warning(
            "%s starts with a UTF-8 byte-order mark (BOM): it is left out, not read as part of the first word "
            "(fairseq keeps it, so a dictionary built from this file differs from fairseq's in that word)",
            source,
        )
    return text[1:]


def strip_bom_lines(lines: Iterable[str], source: str) -> Iterator[str]:
    """``lines`` with a BOM left out of the first one."""
    first = True
    for line in lines:
        if first:
            line, first = strip_bom(line, source), False
        yield line
