"""``from_pretrained``: a fairseq checkpoint directory (or a ``seqloom export``) -> a :class:`TranslationHub`.

Options come from three places, later ones winning: the defaults of seqloom's configs, the checkpoint's
own config (fairseq's ``args`` Namespace or hydra ``cfg`` groups: ``task``, ``dataset``, ``generation``,
``tokenizer``, ``bpe``), and the keyword arguments. Keywords use fairseq's option names:

* ``tokenizer=``/``bpe=`` pick codecs; their options (``bpe_codes=``, ``sentencepiece_model=``,
  ``moses_no_escape=`` ...) are the codec configs' fields; BPE files in the model directory are found by
  their conventional names (``code``, ``bpecodes``, ``sentencepiece.bpe.model`` ...);
* ``source_lang``/``target_lang``/``left_pad_source``/``max_source_positions``/``max_target_positions``;
* ``max_tokens``/``batch_size`` (batching of ``translate`` lists; the checkpoint's values by default) and
  ``required_batch_size_multiple`` (default 1: fairseq's hub never uses the checkpoint's value);
* any :class:`~seqloom.generation.config.GenerationConfig` field (``beam``, ``lenpen``, ``sampling`` ...).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from torch import Tensor

from seqloom import registry
from seqloom.checkpoint.io import load_checkpoint
from seqloom.data.batching import resolve_max_positions
from seqloom.data.dictionary import Dictionary
from seqloom.generation.config import GenerationConfig
from seqloom.hub import files
from seqloom.hub.base import HubBatching
from seqloom.hub.codecs import build_codec, codec_option_names, codec_spec
from seqloom.hub.export import is_export, read_export_files
from seqloom.hub.loading import check_generation_keywords, pack_hub, pick_options, quantize_hub
from seqloom.hub.loading import (
    checkpoint_groups as checkpoint_groups,  # its former home; hub/roberta.py imports it here
)
from seqloom.hub.mbart_translation import build_mbart_hub, is_mbart_translation
from seqloom.hub.multilingual_translation import (
    LANGUAGE_OPTIONS,
    build_bart_hub,
    is_bart_architecture,
    is_multilingual_translation,
    language_options,
)
from seqloom.hub.spec import PretrainedSpec
from seqloom.hub.translation import TranslationHub
from seqloom.models.transformer.builder import build_model
from seqloom.models.transformer.config import TransformerConfig
from seqloom.models.transformer.interop import config_from_checkpoint, upgrade_state_dict

# re-exported: fairseq's spelling, TransformerModel.from_pretrained(...) -> the hub of this module
from seqloom.models.transformer.model import TransformerModel as TransformerModel
from seqloom.modules.int8 import float_placeholders, is_quantized_state, load_quantized
from seqloom.modules.skip_init import build_and_load

TASK_OPTIONS = ("source_lang", "target_lang", "left_pad_source", "max_source_positions", "max_target_positions")
BATCHING_OPTIONS = tuple(f.name for f in dataclasses.fields(HubBatching))
GENERATION_OPTIONS = tuple(f.name for f in dataclasses.fields(GenerationConfig))


def _check_keywords(kwargs: Mapping[str, Any]) -> None:
    known = {"tokenizer", "bpe", "fixed_dictionary", *TASK_OPTIONS, *LANGUAGE_OPTIONS, *BATCHING_OPTIONS}
    known |= set(GENERATION_OPTIONS)
    known |= codec_option_names("tokenizer") | codec_option_names("bpe")
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(
            f"from_pretrained got unknown keyword(s) {', '.join(unknown)}; it accepts tokenizer/bpe and their "
            f"options, {', '.join(TASK_OPTIONS + BATCHING_OPTIONS)} and generation options such as beam, lenpen"
        )


def _generation_options(values: dict[str, Any]) -> dict[str, Any]:
    """Drops unset values; old fairseq stored ``--print-alignment``/``--replace-unk`` as booleans."""
    out = {k: v for k, v in values.items() if v is not None}
    for name, on in (("print_alignment", "hard"), ("replace_unk", "@@ ")):
        if isinstance(out.get(name), bool):
            out[name] = on if out[name] else None
    return out


def build_spec(
    model_dir: Path, groups: Mapping[str, Any], model_cfg: TransformerConfig | None, data_name_or_path: str,
    kwargs: Mapping[str, Any],
) -> PretrainedSpec:  # fmt: skip
    """Resolves the languages, dictionaries, codecs, generation and batching options of a model."""
    _check_keywords(kwargs)
    check_generation_keywords(kwargs)
    task = pick_options(groups.get("task"), TASK_OPTIONS, kwargs)
    data_dir = files.resolve_data_dir(model_dir, data_name_or_path)
    src, tgt = task.get("source_lang"), task.get("target_lang")
    if src is None or tgt is None:
        src_guess, tgt_guess = files.infer_languages(data_dir)
        src, tgt = src or src_guess, tgt or tgt_guess
    generation = _generation_options(pick_options(groups.get("generation"), GENERATION_OPTIONS, kwargs))
    # fairseq's hub batches with the checkpoint's max_tokens/batch_size but get_batch_iterator's default
    # multiple of 1: the checkpoint's required_batch_size_multiple (a training option) is not read
    dataset = pick_options(groups.get("dataset"), ("max_tokens", "batch_size"), kwargs)
    if kwargs.get("required_batch_size_multiple") is not None:
        dataset["required_batch_size_multiple"] = kwargs["required_batch_size_multiple"]
    tokenizer = codec_spec("tokenizer", kwargs.get("tokenizer", groups.get("tokenizer")), kwargs)
    bpe_name = kwargs.get("bpe", groups.get("bpe"))
    bpe = codec_spec("bpe", bpe_name, kwargs)
    if bpe is not None:
        bpe.options.update(files.discover_codec_files(model_dir, bpe.options, kwargs))
        bpe = codec_spec("bpe", bpe.name, bpe.options)  # keeps only the options this codec has
    fixed = fixed_dictionary(model_dir, data_dir, groups, kwargs)
    return PretrainedSpec(
        model_dir=model_dir,
        model_cfg=model_cfg,
        source_lang=str(src),
        target_lang=str(tgt),
        src_dict_path=fixed or files.dictionary_path(data_dir, str(src)),
        tgt_dict_path=fixed or files.dictionary_path(data_dir, str(tgt)),
        tokenizer=tokenizer,
        bpe=bpe,
        generation=GenerationConfig(**generation),
        batching=HubBatching(**dataset),
        left_pad_source=bool(task.get("left_pad_source", True)),
        max_source_positions=int(task.get("max_source_positions") or 1024),
        max_target_positions=int(task.get("max_target_positions") or 1024),
    )


def fixed_dictionary(model_dir: Path, data_dir: Path, groups: Mapping[str, Any], kwargs: Mapping[str, Any]
                     ) -> Path | None:  # fmt: skip
    """The one dictionary of both sides of a ``translation_multi_simple_epoch --fixed-dictionary`` model (as
    m2m_100's ``model_dict.128k.txt``), None for other models. The ``fixed_dictionary`` keyword wins over the
    checkpoint's path; a saved path that is not here (the trainer's machine) is looked up by its file name in
    the model folder, then in the data folder."""
    task = groups.get("task") or {}
    if task.get("task", task.get("_name")) != "translation_multi_simple_epoch":
        return None
    value = kwargs.get("fixed_dictionary", task.get("fixed_dictionary"))
    if not value:
        return None
    given = Path(str(value)).expanduser()
    candidates = [given] if "fixed_dictionary" in kwargs else [given, model_dir / given.name, data_dir / given.name]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"dictionary {given}: no such file (the model's --fixed-dictionary, also looked for in {model_dir} and "
        f"{data_dir}); pass fixed_dictionary=PATH naming the model's dictionary (model_dict.*.txt for m2m_100)"
    )


def check_vocabulary(
    sd: Mapping[str, Tensor], spec: PretrainedSpec, src: Dictionary, tgt: Dictionary, *, source: str
) -> None:
    """Reports embedding tables whose size differs from the dictionary's, with both sizes and the likely cause."""
    sides = (
        ("source", "encoder.embed_tokens.weight", src, spec.src_dict_path),
        ("target", "decoder.embed_tokens.weight", tgt, spec.tgt_dict_path),
    )
    for side, key, dictionary, path in sides:
        if key not in sd or sd[key].shape[0] == len(dictionary):
            continue
        rows, size = int(sd[key].shape[0]), len(dictionary)
        if rows > size:
            cause = (
                f"the model has {rows - size} more rows: it was most likely trained with symbols that its task "
                "appends to the dictionary when loading it (<mask> for BART/RoBERTa-style denoising, language "
                "tokens such as __en__ or [en_XX] for multilingual models) or with a differently padded dict.txt"
            )
        else:
            cause = f"{path.name} has {size - rows} more symbols: it is not the dictionary this model was trained with"
        raise ValueError(
            f"{source}: vocabulary size mismatch on the {side} side: {key} has {rows} rows but {path} has "
            f"{size} symbols; {cause}. Pass data_name_or_path= pointing at the model's own dict.*.txt files"
        )


# one model of an ensemble: where it came from (for messages), its config and its (upgraded) weights
ModelWeights = tuple[str, TransformerConfig, Mapping[str, Tensor]]


def build_hub(spec: PretrainedSpec, weights: Sequence[ModelWeights], *,
              task: Mapping[str, Any] | None = None) -> TranslationHub:  # fmt: skip
    """Builds the models (weights loaded strictly), dictionaries and codecs of ``spec`` into a hub; ``task``: the
    checkpoint's task options when they are ``translation_multi_simple_epoch``'s (language tokens)."""
    from seqloom.hub.multilingual_translation import (
        MultilingualTranslationHub,
        language_dictionaries,
        resolved_languages,
    )

    extra: dict[str, Any] = {}
    if task is not None:
        src_dict, tgt_dict, src_langtok, tgt_langtok, langs = language_dictionaries(spec, task)
        extra = {"src_langtok": src_langtok, "tgt_langtok": tgt_langtok,
                 "languages": resolved_languages(task, langs)}  # fmt: skip
    else:
        src_dict = Dictionary.load(spec.src_dict_path)
        tgt_dict = Dictionary.load(spec.tgt_dict_path)
    models = []
    for source, cfg, sd in weights:
        check_vocabulary(sd, spec, src_dict, tgt_dict, source=source)
        quantized = is_quantized_state(sd)  # an int8 export
        # built without the random initialisation that the weights replace (loading draws no random numbers)
        model = build_and_load(
            partial(build_model, cfg, src_dict, tgt_dict), float_placeholders(sd) if quantized else sd
        )
        if quantized:
            load_quantized(model, sd)
        models.append(model.eval())
    limits = [(spec.max_source_positions, spec.max_target_positions), *[m.max_positions() for m in models]]
    hub = (MultilingualTranslationHub if task is not None else TranslationHub)(
        models,
        **extra,
        src_dict=src_dict,
        tgt_dict=tgt_dict,
        tokenizer=build_codec("tokenizer", spec.tokenizer),
        bpe=build_codec("bpe", spec.bpe),
        generation=spec.generation,
        batching=spec.batching,
        max_positions=resolve_max_positions(*limits),
        left_pad_source=spec.left_pad_source,
    )
    hub.spec = spec
    return hub


def from_pretrained(
    model_name_or_path: str | os.PathLike[str],
    checkpoint_file: str = "model.pt",
    data_name_or_path: str = ".",
    *,
    quantize: str | None = None,
    packed_weights: bool = False,
    **kwargs: Any,
) -> TranslationHub:
    """Loads a local model directory (fairseq's layout or a ``seqloom export``) into an eval-mode hub.

    Never downloads; never executes pickled code. See the module docstring for the keywords. ``quantize="int8"``:
    int8 linear layers for CPU inference (:mod:`seqloom.modules.int8`); an int8 export loads as int8 anyway.
    ``packed_weights=True``: float32 decoders on weights packed for MKL (:mod:`seqloom.modules.packed_linear`).
    """
    hub = _load_pretrained(model_name_or_path, checkpoint_file, data_name_or_path, kwargs)
    return pack_hub(quantize_hub(hub, quantize), packed_weights, quantize=quantize)


def _load_pretrained(model_name_or_path: str | os.PathLike[str], checkpoint_file: str, data_name_or_path: str,
                     kwargs: dict[str, Any]) -> TranslationHub:  # fmt: skip
    model_dir, named_file = files.resolve_model_dir(model_name_or_path)
    checkpoint_file = named_file or checkpoint_file
    named_weights = checkpoint_file.endswith(".safetensors")
    if is_export(model_dir) and (named_weights or not (model_dir / checkpoint_file).is_file()):
        groups, weights_path, sd = read_export_files(model_dir)
        if is_bart_architecture(groups):  # built through its task, as from a checkpoint
            spec = build_spec(model_dir, groups, None, data_name_or_path, kwargs)
            state = {"cfg": {"model": groups["model"], "task": groups["task"]}, "model": sd}
            if is_mbart_translation(groups):
                return build_mbart_hub(model_dir, groups, [state], [weights_path], spec)
            if is_multilingual_translation(groups):
                return build_bart_hub(language_options(groups["task"], kwargs), [state], [weights_path], spec)
            raise ValueError(
                f"{model_dir / 'config.json'}: a BART model exported with task {groups['task'].get('_name')!r}"
            )
        weights: list[ModelWeights] = [
            (str(weights_path), config_from_checkpoint({"cfg": {"model": groups["model"]}}), sd)
        ]
    else:
        paths = files.checkpoint_paths(model_dir, checkpoint_file)
        states = [load_checkpoint(p) for p in paths]
        groups = checkpoint_groups(states[0])
        if is_mbart_translation(groups):  # an mBART model fine-tuned to translate: built through its task
            spec = build_spec(model_dir, groups, None, data_name_or_path, kwargs)
            return build_mbart_hub(model_dir, groups, states, paths, spec)
        if is_multilingual_translation(groups) and is_bart_architecture(groups):  # e.g. mBART-50 fine-tuned
            spec = build_spec(model_dir, groups, None, data_name_or_path, kwargs)
            return build_bart_hub(language_options(groups.get("task") or {}, kwargs), states, paths, spec)
        weights = [model_weights(state, path) for state, path in zip(states, paths)]
    spec = build_spec(model_dir, groups, weights[0][1], data_name_or_path, kwargs)
    task = language_options(groups.get("task") or {}, kwargs) if is_multilingual_translation(groups) else None
    return build_hub(spec, weights, task=task)


def model_weights(state: Mapping[str, Any], path: Path) -> ModelWeights:
    """The model config of a loaded fairseq checkpoint and its state dict with old keys upgraded."""
    try:
        cfg = config_from_checkpoint(state)
    except ValueError as err:
        hint = ""
        if "_lm" in str(err) or "lm_" in str(err):
            hint = "; load language models with seqloom.hub.TransformerLanguageModel.from_pretrained"
        elif "bart" in str(err):
            hint = "; load BART models with seqloom.hub.BARTModel.from_pretrained"
        raise ValueError(f"checkpoint {path}: {err}{hint}") from None
    if not isinstance(state.get("model"), Mapping):
        raise ValueError(f"checkpoint {path}: has no 'model' state dict (is it an optimizer-only file?)")
    return str(path), cfg, upgrade_state_dict(state["model"], cfg)


registry.HUBS.add("transformer", from_pretrained)  # TransformerModel.from_pretrained finds it there
