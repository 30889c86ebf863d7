"""Finding a pretrained model's files on disk, with errors that name the file and the keyword that provides it.

seqloom never downloads anything: ``from_pretrained`` takes a local directory (or a checkpoint file in
one). The layout is fairseq's: checkpoint(s), ``dict.{lang}.txt`` in the data directory, and the BPE
files, which are picked up by their conventional names when not passed explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# conventional file names in a model directory -> the keyword that takes their path (fairseq's table,
# plus GPT-2's two files, which fairseq would download)
CONVENTIONAL_FILES: dict[str, str] = {
    "code": "bpe_codes",
    "bpecodes": "bpe_codes",
    "bpe.codes": "bpe_codes",
    "sentencepiece.bpe.model": "sentencepiece_model",
    "merges.txt": "bpe_merges",
    "vocab.json": "bpe_vocab",
    "encoder.json": "gpt2_encoder_json",
    "vocab.bpe": "gpt2_vocab_bpe",
}
# codec options that hold paths of files a model needs (copied by ``seqloom export``): the above, and the files
# of --bpe bert (vocab.txt) and --bpe byte_bpe (its sentencepiece model), which have no conventional names
FILE_OPTIONS: frozenset[str] = frozenset([*CONVENTIONAL_FILES.values(), "bpe_vocab_file", "sentencepiece_model_path"])


def resolve_model_dir(model_name_or_path: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """The model directory, and a checkpoint file name if a file inside it was given instead."""
    text = str(model_name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        return path, None
    if path.is_file():
        return path.parent, path.name
    why = "a URL" if "://" in text else "not a local file or directory"
    raise FileNotFoundError(
        f"from_pretrained({text!r}): {why}. seqloom never downloads models: download and extract the model "
        "yourself and pass the local directory that holds the checkpoint and dict.*.txt files"
    )


def checkpoint_paths(model_dir: Path, checkpoint_file: str) -> list[Path]:
    """The checkpoint file(s) (``os.pathsep``-separated names for an ensemble), each checked to exist."""
    paths = [model_dir / name for name in checkpoint_file.split(os.pathsep) if name]
    for path in paths:
        if not path.is_file():
            exported = sorted(p.name for p in model_dir.glob("*.safetensors"))
            if exported and not path.name.endswith(".safetensors"):  # an export whose config.json is gone or bad
                config = model_dir / "config.json"
                state = "is missing" if not config.is_file() else "is not a seqloom export's config (or not valid JSON)"
                raise FileNotFoundError(
                    f"{model_dir} holds {', '.join(exported)} (the weights of a seqloom export) but its config.json "
                    f"{state}, and there is no checkpoint {path.name}; copy the export's config.json back beside "
                    "the weights, or export the model again (seqloom export)"
                )
            found = sorted(p.name for p in model_dir.glob("*.pt")) or ["none"]
            raise FileNotFoundError(
                f"checkpoint {path}: no such file; pass checkpoint_file=NAME (the .pt files in {model_dir}: "
                f"{', '.join(found)})"
            )
    return paths


def resolve_data_dir(model_dir: Path, data_name_or_path: str) -> Path:
    """fairseq's rule: a path starting with '.' is relative to the model directory, others to the cwd.

    A relative path that does not exist from the cwd is also tried inside the model directory.
    """
    text = str(data_name_or_path)
    candidates = [model_dir / text] if text.startswith(".") else [Path(text).expanduser(), model_dir / text]
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(
        f"data directory {candidates[0]}: no such directory; pass data_name_or_path=DIR, the folder holding "
        "the model's dict.*.txt files (relative paths starting with '.' are taken inside the model directory)"
    )


def infer_languages(data_dir: Path) -> tuple[str, str]:
    """(source, target) from ``{split}.{src}-{tgt}.*`` files, else from exactly two ``dict.{lang}.txt``."""
    for path in sorted(data_dir.iterdir()):
        parts = path.name.split(".")
        if len(parts) >= 3 and len(parts[1].split("-")) == 2 and all(parts[1].split("-")):
            src, tgt = parts[1].split("-")
            return src, tgt
    langs = sorted(p.name[len("dict.") : -len(".txt")] for p in data_dir.glob("dict.*.txt"))
    if len(langs) == 2:
        raise ValueError(
            f"{data_dir}: holds dict.{langs[0]}.txt and dict.{langs[1]}.txt but the checkpoint does not say which "
            "is the source; pass source_lang= and target_lang="
        )
    raise FileNotFoundError(
        f"{data_dir}: cannot tell the language pair (no dict.{{lang}}.txt files and no split files such as "
        "test.en-de.en.bin); pass data_name_or_path=DIR holding dict.SRC.txt and dict.TGT.txt, and "
        "source_lang=/target_lang="
    )


def dictionary_path(data_dir: Path, lang: str) -> Path:
    """``data_dir/dict.{lang}.txt``, or an error naming it and the keywords that change it."""
    path = data_dir / f"dict.{lang}.txt"
    if not path.is_file():
        present = sorted(p.name for p in data_dir.glob("dict*.txt")) or ["none"]
        raise FileNotFoundError(
            f"dictionary {path}: no such file (present: {', '.join(present)}); pass data_name_or_path=DIR "
            "holding the dictionaries the model was trained with (--data on the command line), or "
            "source_lang=/target_lang= if the languages differ"
        )
    return path


def discover_codec_files(
    model_dir: Path, stored: Mapping[str, Any], explicit: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Paths for codec file options, by precedence: ``explicit`` keywords (as given, or inside
    ``model_dir``), files of conventional names in ``model_dir`` (fairseq's ``code``, ``bpecodes``,
    ``sentencepiece.bpe.model`` ...), then paths ``stored`` in the checkpoint (often the training machine's).
    A missing explicit or stored file is left for the codec to report with its flag.
    """
    found: dict[str, str] = {}
    for option, value in stored.items():
        if option in FILE_OPTIONS and value:
            found[option] = _local_file(model_dir, str(value)) or str(value)
    for name, option in CONVENTIONAL_FILES.items():
        stored_exists = option in found and Path(found[option]).is_file()
        if not stored_exists and (model_dir / name).is_file():
            found[option] = str(model_dir / name)
    for option, value in (explicit or {}).items():
        if option in FILE_OPTIONS and value:
            found[option] = _local_file(model_dir, str(value)) or str(value)
    return found


def _local_file(model_dir: Path, value: str) -> str | None:
    """``value`` if it exists, else the file of that name (or base name) inside ``model_dir``, else None."""
    path = Path(value).expanduser()
    if path.is_file():
        return value
    for candidate in (model_dir / value, model_dir / path.name):
        if candidate.is_file():
            return str(candidate)
    return None


def keyword_of_flag(flag: str) -> str:
    """``--bpe-codes`` -> ``bpe_codes`` (the from_pretrained keyword of a command-line flag)."""
    return flag.lstrip("-").replace("-", "_")
