"""``seqloom export --path CKPT --out DIR``: a self-contained, pickle-free copy of a translation model.

DIR receives ``model.safetensors`` (tied weights stored once), ``config.json`` (model architecture and
config, task languages and options, generation and batching defaults, tokenizer/BPE choice), the
dictionaries and the tokenizer/BPE files. ``seqloom.hub.TransformerModel.from_pretrained(DIR)`` loads it
with the same outputs as the checkpoint, without unpickling anything::

    seqloom export --path checkpoints/checkpoint_best.pt --data data-bin --tokenizer moses \\
        --bpe subword_nmt --bpe-codes bpe.codes --out exported/

With ``--quantize int8`` the linear layers are stored as int8 weights plus their row scales
(:mod:`seqloom.modules.int8`) and the export loads as an int8 CPU model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seqloom.checkpoint.io import CheckpointError
from seqloom.cli.parser import ParsedArgs, parse_args
from seqloom.cli.specs import EXPORT as SPEC
from seqloom.cli.specs import ExportConfig
from seqloom.logs import setup_logging
from seqloom.registry import Exporter

logger = logging.getLogger("seqloom.cli.export")


def hub_options(args: ParsedArgs) -> dict[str, Any]:
    """``from_pretrained`` keywords from the parsed flags (codecs and their options, languages)."""
    cfg = args["export"]
    options: dict[str, Any] = {}
    for kind, name in (("tokenizer", args.components.tokenizer), ("bpe", args.components.bpe)):
        if name is not None:
            options[kind] = name
            codec_cfg = args.get(kind)
            if codec_cfg is not None:
                options.update({k: v for k, v in vars(codec_cfg).items() if v is not None})
    if cfg.source_lang is not None:
        options["source_lang"] = cfg.source_lang
    if cfg.target_lang is not None:
        options["target_lang"] = cfg.target_lang
    return options


def with_codec_hint(message: str, args: ParsedArgs) -> str:
    """``message`` about a codec's missing file flag (``bpe 'gpt2': --gpt2-encoder-json is required``), told that
    such flags are taken only after the codec is named on the command line: the checkpoint's choice does not
    open them."""
    for kind, chosen in (("tokenizer", args.components.tokenizer), ("bpe", args.components.bpe)):
        prefix = f"{kind} '"
        if chosen is None and message.startswith(prefix) and " is required" in message:
            name = message[len(prefix) :].split("'", 1)[0]
            flag = next((w for w in message.split() if w.startswith("--")), "--FLAG")
            return f"{message}; the command line takes {flag} once the {kind} is named: --{kind} {name} {flag} PATH"
    return message


# a model family's ``export(model_dir, checkpoint_file, data, hub options, out_dir) -> the export's folder``


def registered_exporter(path: Path) -> Exporter | None:
    """The ``export`` function of the model family a checkpoint holds, if the family registers one."""
    from seqloom import components, registry
    from seqloom.checkpoint.io import load_checkpoint
    from seqloom.models.loading import model_family

    if not path.is_file() or path.suffix != ".pt":
        return None
    components.import_hubs()
    family = model_family(load_checkpoint(path))
    return registry.EXPORTERS.get(family) if family in registry.EXPORTERS else None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(SPEC, argv)
    setup_logging()
    cfg: ExportConfig = args["export"]
    if not cfg.path or not cfg.out:
        raise SystemExit("seqloom export: --path CKPT and --out DIR are required")
    from seqloom.hub.export import write_export
    from seqloom.hub.pretrained import from_pretrained

    path = Path(cfg.path)
    model_dir, checkpoint_file = (path, "model.pt") if path.is_dir() else (path.parent, path.name)
    family_export = registered_exporter(model_dir / checkpoint_file)
    if family_export is not None:  # a family with its own export (RoBERTa: dict.txt, heads, BPE files)
        try:
            options = {**hub_options(args), **({"quantize": cfg.quantize} if cfg.quantize else {})}
            out = family_export(model_dir, checkpoint_file, cfg.data or ".", options, cfg.out)
        except (FileNotFoundError, ValueError, TypeError, CheckpointError) as err:
            raise SystemExit(f"seqloom export: {with_codec_hint(str(err), args)}") from None
        logger.info("exported %s to %s (%s)", path, out, ", ".join(sorted(p.name for p in out.iterdir())))
        return 0
    if cfg.data is None and not any(model_dir.glob("dict.*.txt")):
        raise SystemExit(f"seqloom export: no dict.*.txt next to {path}; pass --data DIR (the model's data-bin)")
    data = str(Path(cfg.data).resolve()) if cfg.data is not None else "."
    try:
        hub = from_pretrained(model_dir, checkpoint_file, data, quantize=cfg.quantize, **hub_options(args))
        out = write_export(hub, cfg.out)
    except (FileNotFoundError, ValueError, TypeError, CheckpointError) as err:
        message = str(err)
        if "load language models with" in message or "load BART models with" in message:
            message = message.split("; load ")[0] + (
                ": export writes translation models (transformer, and BART-shaped models trained to translate); "
                "keep the checkpoint of a language model or a denoising BART (its hub's from_pretrained loads it)"
            )
        raise SystemExit(f"seqloom export: {with_codec_hint(message, args)}") from None
    logger.info("exported %s to %s (%s)", path, out, ", ".join(sorted(p.name for p in out.iterdir())))
    return 0
