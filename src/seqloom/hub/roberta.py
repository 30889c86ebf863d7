"""The RoBERTa / XLM-R hub: ``RobertaModel.from_pretrained(dir)`` -> encode, decode, features, fill_mask, heads.

As fairseq's ``RobertaHubInterface`` and with its return types: ``encode`` gives a 1-D int64 tensor,
``extract_features`` a ``(B, T, C)`` tensor (or the list of inner states), ``predict`` ``(B, classes)``
log-probabilities, ``fill_mask`` a list of ``(filled text, probability, predicted token)`` tuples.
``XLMRModel`` is the same hub with SentencePiece as its default BPE. The hub never downloads a model.

``from_pretrained(..., quantize="int8")`` gives int8 linear layers for CPU inference (:mod:`seqloom.modules.int8`):
the encoder's, the LM head's dense layer and vocabulary matrix (an int8 copy: the embedding stays float32) and the
classification heads'; ``seqloom export --quantize int8`` stores them so, and the export loads back as int8.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqloom import registry
from seqloom.checkpoint.io import load_checkpoint
from seqloom.data.dictionary import Dictionary
from seqloom.hub import files
from seqloom.hub.codecs import codec_spec
from seqloom.hub.export import (
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    is_export,
    read_export_files,
    split_tied,
)
from seqloom.hub.loading import build_codecs, check_keywords
from seqloom.hub.pretrained import checkpoint_groups
from seqloom.models.roberta.interop import model_from_state
from seqloom.models.roberta.model import RobertaModel
from seqloom.modules.int8 import (
    check_method,
    float_placeholders,
    int8_unavailable,
    is_quantized_state,
    load_quantized,
    quantize_model,
)
from seqloom.paths import plain_file_mode

MASK = "<mask>"
WORD_START = "\u2581"
# fill_mask of a list runs batches of at most this many sentences and padded tokens: enough rows for the matrix
# products to run at full speed; few enough masked rows that the vocabulary product stays a plain one
BATCH_ROWS = 32
BATCH_TOKENS = 8192


@dataclass
class HubTask:
    """What fairseq's hub keeps of the task: its dictionaries (``<mask>`` appended) and the mask index."""

    source_dictionary: Dictionary
    label_dictionary: Dictionary | None
    mask_idx: int

    @property
    def target_dictionary(self) -> Dictionary:
        return self.source_dictionary


class RobertaHub(nn.Module):
    """One RoBERTa model, its dictionary and BPE; ``.cuda()``/``.half()`` move it as a module."""

    def __init__(self, model: RobertaModel, task: HubTask, bpe: Any) -> None:
        super().__init__()
        self.model = model
        self.task = task
        self.bpe = bpe
        self._float_tensor: Tensor
        self.register_buffer("_float_tensor", torch.tensor([0.0]), persistent=False)
        self.eval()

    @property
    def device(self) -> torch.device:
        return self._float_tensor.device

    @property
    def quantized(self) -> bool:
        """Whether the model has int8 layers (``quantize="int8"``, an int8 export, or ``quantize_model``)."""
        head: Any = self.model._modules["encoder"]._modules["lm_head"]  # type: ignore[union-attr]
        # the module dicts directly: checked at every call, and nn.Module's attribute fallback costs a few us
        weight = head._parameters.get("weight")
        weight = head._buffers.get("weight") if weight is None else weight
        return weight is not None and weight.dtype == torch.int8

    def _check_int8_runs(self) -> None:
        """Refuses to run an int8 hub moved where int8 products cannot run (a GPU) or made half/bfloat16."""
        if self.device.type == "cpu" and self._float_tensor.dtype == torch.float32:
            return
        reason = int8_unavailable(self.device) or (
            f"int8 layers take float32 inputs and the hub was converted to {self._float_tensor.dtype}; call "
            ".float() on it, or load it without quantize='int8' to run it in half precision"
        )
        raise ValueError(f"this RoBERTa hub has int8 layers (quantize='int8'): {reason}")

    def _bpe(self, text: str) -> str:
        return self.bpe.encode(text) if self.bpe is not None else text

    def _unbpe(self, text: str) -> str:
        return self.bpe.decode(text) if self.bpe is not None else text

    def encode(self, sentence: str, *addl_sentences: str, no_separator: bool = False) -> Tensor:
        """``<s> a </s>`` ids (T,) int64; each extra sentence adds ``</s> b </s>`` (``</s>`` separator unless
        ``no_separator``). Symbols missing from the dictionary become ``<unk>``."""
        line = "<s> " + self._bpe(sentence) + " </s>"
        for extra in addl_sentences:
            line += ("" if no_separator else " </s>") + " " + self._bpe(extra) + " </s>"
        return self.task.source_dictionary.encode_line(line, append_eos=False, add_if_not_exist=False).long()

    def decode(self, tokens: Tensor) -> str | list[str]:
        """Ids (T,) -> text; a leading ``<s>`` is dropped; ``</s> </s>`` separates sentences (then a list)."""
        if tokens.dim() != 1:
            raise ValueError(f"decode takes one sequence of ids (T,), got a tensor of shape {tuple(tokens.shape)}")
        d = self.task.source_dictionary
        ids = tokens.cpu().numpy()
        if len(ids) and ids[0] == d.bos():
            ids = ids[1:]
        eos = ids == d.eos()
        pieces = np.split(ids, (eos[1:] & eos[:-1]).nonzero()[0] + 1)
        texts = [self._unbpe(d.string(torch.from_numpy(p))) for p in pieces]
        return texts[0] if len(texts) == 1 else texts

    def extract_features(self, tokens: Tensor, return_all_hiddens: bool = False) -> Any:
        """Last layer's features ``(B, T, C)`` of ``tokens`` (T,) or (B, T) (right-padded with ``<pad>``);
        ``return_all_hiddens``: the list of inner states ``(B, T, C)`` (embeddings, then each layer). Gradients
        flow (the hub in train mode fine-tunes, as fairseq's README says), except through an int8 hub's
        features: int8 layers run inference only."""
        if self.quantized:
            self._check_int8_runs()
            with torch.no_grad():
                return self._features(tokens, return_all_hiddens)
        return self._features(tokens, return_all_hiddens)

    def _features(self, tokens: Tensor, return_all_hiddens: bool) -> Any:
        tokens = (tokens.unsqueeze(0) if tokens.dim() == 1 else tokens).to(self.device).long()  # (B, T)
        if tokens.numel() == 0:
            raise ValueError("extract_features: tokens is empty; encode a text first (encode gives <s> ... </s>)")
        if tokens.size(-1) > self.model.max_positions():
            raise ValueError(f"tokens exceeds maximum length: {tokens.size(-1)} > {self.model.max_positions()}")
        # no torch.no_grad(), as fairseq: features can be fine-tuned through (wrap calls in no_grad to save memory)
        out = self.model(tokens, features_only=True, return_all_hiddens=return_all_hiddens)
        return out.inner_states if return_all_hiddens else out.logits

    def register_classification_head(self, name: str, num_classes: int | None = None, inner_dim: int | None = None,
                                     **unused: Any) -> None:  # fmt: skip
        """Adds a (randomly initialised) head ``name`` with ``num_classes`` outputs to the model."""
        self.model.register_classification_head(name, num_classes=num_classes, inner_dim=inner_dim)
        self.model.classification_heads[name].to(self.device)

    def predict(self, head: str, tokens: Tensor, return_logits: bool = False) -> Tensor:
        """``(B, num_classes)`` log-probabilities (or logits) of head ``head`` for ``tokens`` (T,) or (B, T)."""
        if head not in self.model.classification_heads:
            raise KeyError(f"no classification head {head!r} (registered: "
                           f"{', '.join(self.model.classification_heads) or 'none'}); add one with "
                           f"register_classification_head({head!r}, num_classes=N)")  # fmt: skip
        features = self.extract_features(tokens.to(device=self.device))
        logits = self.model.classification_heads[head](features)
        return logits if return_logits else F.log_softmax(logits, dim=-1)

    def _masked_tokens(self, masked_input: str) -> Tensor:
        if masked_input.count(MASK) != 1:
            raise ValueError(f"fill_mask: {masked_input!r} needs exactly one {MASK} token, e.g. 'He is a {MASK} guy'")
        spans = [self._bpe(span.rstrip()) for span in masked_input.split(MASK)]
        line = f" {MASK} ".join(spans).strip()
        d = self.task.source_dictionary
        return d.encode_line(f"<s> {line} </s>", append_eos=False, add_if_not_exist=False).long()

    def fill_mask(self, masked_input: str | Sequence[str], topk: int = 5) -> Any:
        """The ``topk`` ``(filled text, probability, predicted token)`` of the one ``<mask>``, most likely first.

        A list of inputs gives one such list per input, in order; they run as padded batches of sentences of
        similar lengths (:func:`length_batches`), which is much faster than one call per sentence.
        """
        if isinstance(masked_input, str):
            return self.fill_mask([masked_input], topk)[0]
        if topk < 1:
            raise ValueError(f"fill_mask: topk must be at least 1 (got {topk})")
        rows = [self._masked_tokens(text) for text in masked_input]
        if self.quantized:
            self._check_int8_runs()
        out: list[Any] = [None] * len(rows)
        with torch.inference_mode():  # strings and floats come out: no autograd bookkeeping
            for batch in length_batches([len(r) for r in rows], max_rows=BATCH_ROWS, max_tokens=BATCH_TOKENS):
                tokens = pad_rows([rows[i] for i in batch], self.task.source_dictionary.pad()).to(self.device)
                at = tokens.eq(self.task.mask_idx)  # (B, T), one True per row
                logits = self.model(tokens, masked_tokens=at).logits  # (B, V): only the masked rows are projected
                values, index = logits.float().softmax(dim=-1).topk(k=topk, dim=-1)  # (B, k)
                values, index = values.cpu(), index.cpu()
                for j, i in enumerate(batch):
                    out[i] = self._fillings(masked_input[i], values[j], index[j])
        return out

    def _fillings(self, masked_input: str, values: Tensor, index: Tensor) -> list[tuple[str, float, str]]:
        out = []
        spaced = f" {MASK}" in masked_input
        for value, symbol in zip(values.tolist(), self.task.source_dictionary.string(index).split(" ")):
            token = self._unbpe(symbol)
            if symbol.startswith(WORD_START):
                token = " " + token
            filled = masked_input.replace(f" {MASK}", token) if spaced else masked_input.replace(MASK, token)
            out.append((filled, value, token))
        return out


def length_batches(lengths: Sequence[int], *, max_rows: int, max_tokens: int) -> list[list[int]]:
    """Indices of ``lengths`` in batches of similar lengths (sorted, longest first): at most ``max_rows`` rows
    and ``max_tokens`` padded tokens each (one longer row still gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < max_rows and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def pad_rows(rows: Sequence[Tensor], pad: int) -> Tensor:
    """1-D id tensors -> ``(B, T)`` int64, right-padded with ``pad`` (one row: the row itself, no copy)."""
    if len(rows) == 1:
        return rows[0].long().unsqueeze(0)
    tokens = torch.full((len(rows), max(len(r) for r in rows)), pad, dtype=torch.long)  # (B, T)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
    return tokens


def load_dictionaries(data_dir: Path, task: dict[str, Any]) -> tuple[Dictionary, Dictionary | None]:
    """The input dictionary (``<mask>`` appended) and, for a sentence_prediction checkpoint, its labels'."""
    fine_tuned = task.get("_name", task.get("task")) == "sentence_prediction"
    path = data_dir / "input0" / "dict.txt" if fine_tuned and (data_dir / "input0").is_dir() else data_dir / "dict.txt"
    if not path.is_file():
        raise FileNotFoundError(
            f"dictionary {path}: no such file; pass data_name_or_path=DIR (the model's data folder)"
        )
    dictionary = Dictionary.load(path)
    dictionary.add_symbol(MASK)
    labels = None
    label_path = data_dir / "label" / "dict.txt"
    if fine_tuned and label_path.is_file() and not task.get("regression_target"):
        labels = Dictionary.load(label_path)
        labels.add_symbol(MASK)
    return dictionary, labels


def from_pretrained(
    model_name_or_path: str | os.PathLike[str],
    checkpoint_file: str = "model.pt",
    data_name_or_path: str = ".",
    *,
    quantize: str | None = None,
    **kwargs: Any,
) -> RobertaHub:
    """A local RoBERTa / XLM-R directory -> an eval-mode :class:`RobertaHub` (classification heads loaded).

    ``data_name_or_path``: the folder of ``dict.txt`` (or ``input0/dict.txt`` and ``label/dict.txt`` of a
    sentence_prediction run; starting with '.': inside the model directory). Keywords: ``bpe`` (``gpt2``,
    ``sentencepiece``) and its files (``gpt2_encoder_json=``, ``sentencepiece_model=``; else found in the model
    directory: ``encoder.json``/``vocab.bpe``, ``sentencepiece.bpe.model``). ``quantize="int8"``: int8 linear
    layers for CPU inference (see the module docstring); an int8 export loads as int8 anyway.
    """
    kwargs.setdefault("bpe", "gpt2")
    check_keywords(kwargs, extra=(), caller="RobertaModel.from_pretrained",
                   accepts="bpe and its options (gpt2_encoder_json, gpt2_vocab_bpe, sentencepiece_model), "
                   "quantize")  # fmt: skip
    if quantize is not None:
        check_method(quantize)  # before reading any file
    model_dir, named = files.resolve_model_dir(model_name_or_path)
    if is_export(model_dir) and not (model_dir / (named or checkpoint_file)).is_file():
        return _quantized(_from_export(model_dir, dict(kwargs)), quantize)
    (path,) = files.checkpoint_paths(model_dir, named or checkpoint_file)[:1]
    state = load_checkpoint(path)
    groups = checkpoint_groups(state)
    data_dir = files.resolve_data_dir(model_dir, data_name_or_path)
    dictionary, labels = load_dictionaries(data_dir, groups.get("task") or {})
    model = model_from_state(state, dictionary, source=str(path)).eval()
    _, bpe = build_codecs(model_dir, groups, kwargs)
    return _quantized(RobertaHub(model, HubTask(dictionary, labels, dictionary.index(MASK)), bpe), quantize)


def _quantized(hub: RobertaHub, quantize: str | None) -> RobertaHub:
    """``hub`` with int8 linear layers (``quantize="int8"``; CPU only), converted in place; None: as loaded."""
    if quantize is not None and not hub.quantized:
        quantize_model(hub.model, quantize)
    return hub


def _from_export(model_dir: Path, kwargs: dict[str, Any]) -> RobertaHub:
    """The hub of a ``seqloom export`` folder (no unpickling): its BPE unless the keywords name another."""
    config, weights, sd = read_export_files(model_dir)
    group = config.get("bpe") or {}
    if group.get("_name") == kwargs.get("bpe"):
        for option, value in group.items():
            if option != "_name":
                kwargs.setdefault(option, value)
    dictionary = Dictionary.load(model_dir / config["dictionaries"]["source"])
    dictionary.add_symbol(MASK)
    labels = None
    if config["dictionaries"].get("labels"):
        labels = Dictionary.load(model_dir / config["dictionaries"]["labels"])
        labels.add_symbol(MASK)
    quantized = is_quantized_state(sd)  # an export --quantize int8: built in float shapes, then made int8
    state = {"cfg": {"model": config["model"], "task": config["task"]},
             "model": float_placeholders(sd) if quantized else sd}  # fmt: skip
    model = model_from_state(state, dictionary, source=str(weights)).eval()
    if quantized:
        load_quantized(model, sd)
    _, bpe = build_codecs(model_dir, {"bpe": config.get("bpe")}, kwargs)
    return RobertaHub(model, HubTask(dictionary, labels, dictionary.index(MASK)), bpe)


def write_export(hub: RobertaHub, bpe_options: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Writes ``hub`` as a self-contained folder: ``model.safetensors`` (heads included, the tied LM matrix
    stored once), ``config.json``, ``dict.txt`` (and ``label.dict.txt``) and the BPE's files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors, tied = split_tied(hub.model.state_dict())
    from safetensors.torch import save_file

    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": FORMAT})
    (out / WEIGHTS_FILE).chmod(plain_file_mode())  # safetensors creates it 0600; the other files follow the umask
    dictionaries = {"source": "dict.txt"}
    _save_dictionary(hub.task.source_dictionary, out / "dict.txt")
    if hub.task.label_dictionary is not None:
        dictionaries["labels"] = "label.dict.txt"
        _save_dictionary(hub.task.label_dictionary, out / "label.dict.txt")
    bpe_group: dict[str, Any] | None = None
    spec = codec_spec("bpe", bpe_options.get("bpe"), bpe_options)
    if spec is not None:
        bpe_group = {"_name": spec.name}
        for option, value in spec.options.items():
            if option in files.FILE_OPTIONS and value:
                shutil.copyfile(str(value), out / Path(str(value)).name)
                value = Path(str(value)).name
            bpe_group[option] = value
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "weights": WEIGHTS_FILE, "tied_weights": tied,
              "dictionaries": dictionaries, "bpe": bpe_group,
              "model": {"_name": "roberta", "arch": "roberta", **dataclasses.asdict(hub.model.cfg)},
              "task": {"_name": "sentence_prediction" if hub.task.label_dictionary is not None else "masked_lm"}}  # fmt: skip
    if hub.quantized:
        config["quantize"] = "int8"  # for people reading the file: loading finds the int8 tensors by their scales
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return out


def _save_dictionary(dictionary: Dictionary, path: Path) -> None:
    """``dict.txt`` as it was read: the symbols after the specials, without the appended ``<mask>``."""
    rows = [f"{dictionary[i]} {dictionary.count[i]}" for i in range(dictionary.nspecial, len(dictionary))
            if dictionary[i] != MASK]  # fmt: skip
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")


def export(model_dir: Path, checkpoint_file: str, data: str, options: Mapping[str, Any], out_dir: str) -> Path:
    """``seqloom export`` of a RoBERTa checkpoint (the family's exporter, found through ``registry.EXPORTERS``);
    ``options``: ``from_pretrained`` keywords (``quantize="int8"``: an int8 export)."""
    return write_export(from_pretrained(model_dir, checkpoint_file, data, **options), options, out_dir)


class XLMRModel(RobertaModel):
    """fairseq's ``XLMRModel``: RoBERTa whose hub defaults to ``bpe='sentencepiece'``."""

    default_bpe = "sentencepiece"


registry.HUBS.add("roberta", from_pretrained)  # RobertaModel/XLMRModel.from_pretrained find it there
registry.EXPORTERS.add("roberta", export)  # seqloom export finds it there
registry.EXPORTERS.add("xlmr", export)  # XLM-R checkpoints name their model xlmr
