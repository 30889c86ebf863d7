"""A symbol <-> id table that reads and writes fairseq's ``dict.txt``.

The file holds one ``symbol count`` line per symbol (split on the *last* space, so symbols may
contain spaces), optionally followed by the flag ``#fairseq:overwrite``. The special symbols
``<s> <pad> </s> <unk>`` take ids 0-3 and are never written. ``finalize`` sorts by count, breaking
ties by symbol, and pads the size to a multiple of ``padding_factor`` with ``madeupwordNNNN``
symbols, exactly as fairseq's ``Dictionary.finalize`` does, so dictionaries come out byte-identical.

torch is imported only by the methods that return or take tensors: preprocessing never needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from seqloom.data.bom import strip_bom_lines
from seqloom.data.text import post_process, tokenize_line

if TYPE_CHECKING:
    import torch

OVERWRITE_FLAG = "#fairseq:overwrite"


class DictionaryFormatError(ValueError):
    """A ``dict.txt`` line that is not ``<symbol> <count> [#fairseq:overwrite]``, or a duplicate symbol."""


class Dictionary:
    """Maps symbols to consecutive integer ids (fairseq's ``Dictionary``)."""

    def __init__(
        self,
        *,
        bos: str = "<s>",
        pad: str = "<pad>",
        eos: str = "</s>",
        unk: str = "<unk>",
        extra_special_symbols: Sequence[str] | None = None,
    ) -> None:
        self.bos_word, self.pad_word, self.eos_word, self.unk_word = bos, pad, eos, unk
        self.symbols: list[str] = []
        self.count: list[int] = []
        self.indices: dict[str, int] = {}
        self.bos_index = self.add_symbol(bos)
        self.pad_index = self.add_symbol(pad)
        self.eos_index = self.add_symbol(eos)
        self.unk_index = self.add_symbol(unk)
        for symbol in extra_special_symbols or ():
            self.add_symbol(symbol)
        self.nspecial = len(self.symbols)

    # ---- lookups
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dictionary) and self.indices == other.indices

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self.indices

    def __getitem__(self, idx: int) -> str:
        """The symbol of id ``idx``; ``<unk>`` for ids past the end (as fairseq)."""
        return self.symbols[idx] if idx < len(self.symbols) else self.unk_word

    def index(self, symbol: str) -> int:
        """The id of ``symbol``, or ``unk()`` when it is not in the dictionary."""
        return self.indices.get(symbol, self.unk_index)

    def get_count(self, idx: int) -> int:
        return self.count[idx]

    def bos(self) -> int:
        return self.bos_index

    def pad(self) -> int:
        return self.pad_index

    def eos(self) -> int:
        return self.eos_index

    def unk(self) -> int:
        return self.unk_index

    def unk_string(self, escape: bool = False) -> str:
        """``<unk>``, or ``<<unk>>`` when ``escape`` (so it survives detokenizers)."""
        return f"<{self.unk_word}>" if escape else self.unk_word

    # ---- building
    def add_symbol(self, word: str, n: int = 1, overwrite: bool = False) -> int:
        """Adds ``n`` to the count of ``word`` (appending it if new, or always with ``overwrite``)."""
        idx = self.indices.get(word)
        if idx is not None and not overwrite:
            self.count[idx] += n
            return idx
        idx = len(self.symbols)
        self.indices[word] = idx
        self.symbols.append(word)
        self.count.append(n)
        return idx

    def add_counts(self, counts: Mapping[str, int]) -> None:
        """Adds word counts (e.g. from a corpus) in sorted order, as fairseq merges its workers' counters."""
        indices, symbols, count = self.indices, self.symbols, self.count
        # add_symbol, inlined: this runs once per corpus type (keys are unique: sort by the word alone)
        for word, n in sorted(counts.items(), key=itemgetter(0)):
            idx = indices.get(word)
            if idx is None:
                indices[word] = len(symbols)
                symbols.append(word)
                count.append(n)
            else:
                count[idx] += n

    def update(self, other: Dictionary) -> None:
        """Adds the symbols and counts of ``other`` to this dictionary."""
        for word, n in zip(other.symbols, other.count):
            self.add_symbol(word, n)

    def finalize(self, threshold: int = -1, nwords: int = -1, padding_factor: int = 8) -> None:
        """Sorts non-special symbols by descending count (ties: by symbol) and truncates and pads.

        ``nwords`` counts the special symbols too (``<= 0``: keep all); symbols seen fewer than
        ``threshold`` times are dropped; the size is then padded to a multiple of ``padding_factor``.
        """
        if nwords <= 0:
            nwords = len(self)
        # by symbol first, then a stable sort by count: ties stay in symbol order
        pairs = zip(self.symbols[self.nspecial :], self.count[self.nspecial :])
        if len(self.indices) == len(self.symbols):
            by_symbol = sorted(pairs, key=itemgetter(0))
        else:  # symbols repeated by #fairseq:overwrite: as fairseq, the larger count of a symbol wins
            by_symbol = list(dict(sorted(pairs)).items())
        ranked = sorted(by_symbol, key=itemgetter(1), reverse=True)
        symbols = self.symbols[: self.nspecial]
        counts = self.count[: self.nspecial]
        for word, n in ranked[: max(0, nwords - self.nspecial)]:
            if n < threshold:
                break
            symbols.append(word)
            counts.append(n)
        self.symbols, self.count = symbols, counts
        self.indices = {word: i for i, word in enumerate(symbols)}
        self.pad_to_multiple_(padding_factor)

    def pad_to_multiple_(self, padding_factor: int) -> None:
        """Appends ``madeupword0000``, ``madeupword0001``, ... (count 0) until ``len`` is a multiple."""
        if padding_factor <= 1:
            return
        i = 0
        while len(self) % padding_factor != 0:
            self.add_symbol(f"madeupword{i:04d}", n=0)
            i += 1

    # ---- files
    @classmethod
    def load(cls, f: str | Path | IO[str], *, extra_special_symbols: Sequence[str] | None = None) -> Dictionary:
        """Reads a ``dict.txt`` (a path or an open text file)."""
        d = cls(extra_special_symbols=extra_special_symbols)
        d.add_from_file(f)
        return d

    def add_from_file(self, f: str | Path | IO[str]) -> None:
        """Adds the symbols of a ``dict.txt`` to this dictionary."""
        if isinstance(f, (str, Path)):
            with open(f, encoding="utf-8") as fd:
                try:
                    lines = fd.readlines()
                except UnicodeDecodeError as err:
                    raise DictionaryFormatError(
                        f"{f}: not valid UTF-8 at byte {err.start} ({err.reason}); rebuild the dictionary"
                    ) from None
            name = str(f)
        else:
            lines = f.readlines()
            name = getattr(f, "name", "<dictionary>")
        lines = list(strip_bom_lines(lines, name))
        for lineno, line in enumerate(lines, start=1):
            word, n, overwrite = _parse_dict_line(line, name, lineno)
            if word in self.indices and not overwrite:
                raise DictionaryFormatError(
                    f"{name}:{lineno}: duplicate symbol {word!r}; remove the line, or end it with "
                    f"'{OVERWRITE_FLAG}' to replace the earlier entry"
                )
            self.add_symbol(word, n=n, overwrite=overwrite)

    def save(self, f: str | Path | IO[str]) -> None:
        """Writes the non-special symbols as ``symbol count`` lines (fairseq's ``dict.txt``)."""
        if isinstance(f, (str, Path)):
            Path(f).parent.mkdir(parents=True, exist_ok=True)
            with open(f, "w", encoding="utf-8", newline="\n") as fd:
                self.save(fd)
            return
        f.write("".join(f"{w} {n}\n" for w, n in zip(self.symbols[self.nspecial :], self.count[self.nspecial :])))

    # ---- text <-> tensors
    def encode_line(
        self,
        line: str,
        *,
        line_tokenizer: Callable[[str], list[str]] = tokenize_line,
        add_if_not_exist: bool = False,
        consumer: Callable[[str, int], object] | None = None,
        append_eos: bool = True,
        reverse_order: bool = False,
    ) -> torch.Tensor:
        """Token ids of ``line`` as an int32 tensor (T,), with ``eos()`` appended by default.

        Unlike fairseq (whose default adds unseen words), unknown words map to ``unk()`` unless
        ``add_if_not_exist``. ``consumer(word, id)`` is called for every word.
        """
        import torch

        words = line_tokenizer(line)
        if reverse_order:
            words.reverse()
        if add_if_not_exist:
            ids = [self.add_symbol(w) for w in words]
        else:
            get, unk = self.indices.get, self.unk_index
            ids = [get(w, unk) for w in words]
        if consumer is not None:
            for w, i in zip(words, ids):
                consumer(w, i)
        if append_eos:
            ids.append(self.eos_index)
        return torch.tensor(ids, dtype=torch.int32)

    def string(
        self,
        tensor: torch.Tensor | Sequence[int],
        bpe_symbol: str | None = None,
        escape_unk: bool = False,
        extra_symbols_to_ignore: Iterable[int] | None = None,
        unk_string: str | None = None,
        include_eos: bool = False,
        separator: str = " ",
    ) -> str:
        """Symbols of the ids in ``tensor`` (T,) joined by ``separator``, BPE removed via ``post_process``.

        A (B, T) tensor gives one line per row. ``eos`` and ``bos`` are dropped (``eos`` kept with
        ``include_eos``), as are ids in ``extra_symbols_to_ignore``.
        """
        if getattr(tensor, "dim", None) is not None and cast("torch.Tensor", tensor).dim() == 2:
            return "\n".join(
                self.string(row, bpe_symbol, escape_unk, extra_symbols_to_ignore, unk_string, include_eos, separator)
                for row in cast("torch.Tensor", tensor)
            )
        ignore = set(extra_symbols_to_ignore or ())
        ignore.add(self.bos_index)
        if not include_eos:
            ignore.add(self.eos_index)
        unk = unk_string if unk_string is not None else self.unk_string(escape_unk)
        ids = tensor.tolist() if hasattr(tensor, "tolist") else list(tensor)
        words = (unk if i == self.unk_index else self[i] for i in ids if i not in ignore)
        return post_process(separator.join(words), bpe_symbol)

    def dummy_sentence(self, length: int) -> torch.Tensor:
        """A random (length,) int64 sentence of non-special ids ending in ``eos`` (for warm-up batches)."""
        import torch

        t = torch.empty(length).uniform_(self.nspecial + 1, len(self)).long()
        t[-1] = self.eos_index
        return t


def _parse_dict_line(line: str, name: str, lineno: int) -> tuple[str, int, bool]:
    text = line.rstrip()
    word, sep, field = text.rpartition(" ")
    overwrite = field == OVERWRITE_FLAG
    if overwrite:
        word, sep, field = word.rpartition(" ")
    try:
        if not sep:
            raise ValueError
        return word, int(field), overwrite
    except ValueError:
        raise DictionaryFormatError(
            f"{name}:{lineno}: expected '<symbol> <count> [{OVERWRITE_FLAG}]', got {text!r}"
        ) from None
