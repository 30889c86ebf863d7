"""The BART hub: ``BARTModel.from_pretrained(dir, bpe='gpt2', ...)`` -> encode, fill_mask, sample, features, heads.

As fairseq's ``BARTHubInterface``, with three of its bugs left behind (tests/models/test_bart_hub.py):

* fairseq's ``from_pretrained(..., bpe='gpt2')`` fails on checkpoints of fairseq's hydra era (the ``bpe``
  override is also written into the denoising task's own ``bpe`` string field); here it loads.
* fairseq's ``encode`` adds out-of-vocabulary GPT-2 ids to the dictionary (ids past the embedding table, then
  an ``IndexError``); here they map to ``<unk>``.
* fairseq's BART keeps the last beam size > 1 in its attention modules, so a later plain forward or a
  beam-1 search fails; here nothing outlives a call (the beam is an argument of each generation).

Sources are right-padded (BART's denoising task pads on the right); generation starts from ``</s>`` and is
forced to emit ``<s>`` first, so hypotheses read ``<s> ... </s>``. Scores are natural log.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from seqloom import registry
from seqloom.data.batching import resolve_max_positions
from seqloom.data.dictionary import Dictionary
from seqloom.data.language_pair_dataset import collate_tokens
from seqloom.generation.config import GenerationConfig
from seqloom.generation.decoding_model import as_decoding_models
from seqloom.generation.generator import SequenceGenerator
from seqloom.generation.hypotheses import Hypothesis
from seqloom.hub import files
from seqloom.hub.base import GeneratorHubInterface
from seqloom.hub.loading import (
    assemble_hub,
    check_keywords,
    dictionary_file,
    pack_hub,
    pick_options,
    quantize_hub,
    read_checkpoints,
)
from seqloom.models.bart.interop import model_from_state
from seqloom.models.bart.model import BARTModel, last_eos_representation

MASK = "<mask>"


def load_dictionary(path: str | os.PathLike[str], *, langs: Sequence[str] = ()) -> Dictionary:
    """``dict.txt`` with ``<mask>`` appended, as fairseq's denoising and sentence_prediction tasks load it
    (``langs``: ``[lang]`` symbols before it, as ``multilingual_denoising --add-lang-token`` adds them)."""
    dictionary = Dictionary.load(Path(path))
    for lang in langs:
        dictionary.add_symbol(f"[{lang}]")
    dictionary.add_symbol(MASK)
    return dictionary


def language_tokens(task: Mapping[str, Any], data_dir: Path, langs: str | None) -> list[str]:
    """The languages whose ``[lang]`` symbols a ``multilingual_denoising --add-lang-token`` checkpoint has:
    ``langs`` (the keyword), else the checkpoint's ``--langs``, else the data folder's sub-folders (fairseq's
    rule); none for other checkpoints."""
    if task.get("task", task.get("_name")) != "multilingual_denoising" or not task.get("add_lang_token"):
        return []
    chosen = langs or task.get("langs")
    if chosen:
        return str(chosen).split(",")
    return sorted(p.name for p in data_dir.iterdir() if p.is_dir()) if data_dir.is_dir() else []


def fine_tuned_for_translation(task: Mapping[str, Any]) -> bool:
    """A BART checkpoint fine-tuned by the ``translation`` task (as bart.large.cnn is: its dictionaries are
    ``dict.source.txt``/``dict.target.txt``, no ``<mask>`` added); the denoising and other tasks read ``dict.txt``."""
    return task.get("task", task.get("_name")) == "translation"


def translation_pair(task: Mapping[str, Any], data_dir: Path, overrides: dict[str, Any]) -> tuple[str, str]:
    """``(source_lang, target_lang)`` of such a checkpoint: the keywords, else the saved ones; one trained without
    ``-s``/``-t`` saved none, and (as fairseq's translation task does) the pair is read from the names of
    ``data_dir``'s split files."""
    src = overrides.pop("source_lang", None) or task.get("source_lang")
    tgt = overrides.pop("target_lang", None) or task.get("target_lang")
    if src and tgt:
        return str(src), str(tgt)
    return files.infer_languages(data_dir)


def pair_dictionary_file(data_dir: Path, lang: str, checkpoint: Path) -> Path:
    """``data_dir/dict.{lang}.txt``; a missing one is an error naming the file and the checkpoint's task."""
    path = data_dir / f"dict.{lang}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"dictionary {path}: no such file; {checkpoint} was fine-tuned by the translation "
                                f"task, which reads dict.{lang}.txt (not dict.txt); pass data_name_or_path=DIR "
                                "naming the folder that holds it")  # fmt: skip
    return path


class BARTHub(GeneratorHubInterface):
    """A hub over one BART model; see :class:`GeneratorHubInterface` for ``sample``/``generate``/``translate``."""

    # batches of consecutive sentences in input order, as fairseq's BART hub makes them (its inference dataset
    # is not ordered by length); they matter: ``match_source_len`` follows the padded batch width
    # (see :meth:`inference_step`)
    batch_order = "input"

    @property
    def bart(self) -> BARTModel:
        model = self.models[0]
        assert isinstance(model, BARTModel)
        return model

    def _limit(self) -> int:
        limits = [n for n in self.max_positions if n is not None]
        return min(limits) if limits else 1024

    def encode(self, sentence: str, *addl_sentences: str, no_separator: bool = True) -> Tensor:
        """``<s> sentence </s>`` ids (T,) int64 (extra sentences: ``[</s>] s </s>`` each); GPT-2 BPE of the first
        sentence truncated to ``max_positions - 2`` tokens; GPT-2 ids missing from ``dict.txt`` become ``<unk>``."""
        tokens = self.apply_bpe(self.tokenize(sentence)).split()[: self._limit() - 2]
        line = "<s> " + " ".join(tokens) + " </s>"
        for extra in addl_sentences:
            line += ("" if no_separator else " </s>") + " " + self.apply_bpe(self.tokenize(extra)) + " </s>"
        return self.src_dict.encode_line(line, append_eos=False, add_if_not_exist=False).long()

    # as fairseq's BART hub: several documents decode to a list, which widens the base class's ``str``
    def decode(self, tokens: Tensor) -> str | list[str]:  # type: ignore[override]
        """Ids (T,) -> text; a leading ``<s>`` is dropped; ``</s> </s>`` separates documents (then a list)."""
        assert tokens.dim() == 1, "decode takes one sequence of ids (T,)"
        ids = tokens.cpu().numpy()
        if len(ids) and ids[0] == self.src_dict.bos():
            ids = ids[1:]
        eos = ids == self.src_dict.eos()
        pieces = np.split(ids, (eos[1:] & eos[:-1]).nonzero()[0] + 1)
        texts = [self.detokenize(self.remove_bpe(self.src_dict.string(torch.from_numpy(p)))) for p in pieces]
        return texts[0] if len(texts) == 1 else texts

    def inference_step(self, cfg: GenerationConfig, batch: list[Tensor]) -> list[list[Hypothesis]]:
        """Beam search over the right-padded batch, ``<s>`` forced first.

        As in fairseq's BART hub, every row's source length (what ``match_source_len`` follows) is the padded
        batch width: fairseq batches twice and its second pass counts the first one's padding. So with
        ``match_source_len`` each output has ``<s>``, as many tokens as the longest input (``<s>``/``</s>`` included)
        minus one, then ``</s>``; fill one sentence per call for per-sentence lengths.
        """
        src_tokens = collate_tokens(batch, self.src_dict.pad(), eos_idx=self.src_dict.eos(), left_pad=False)
        bsz, width = src_tokens.shape
        prefix = src_tokens.new_full((bsz, 1), self.src_dict.bos())  # (B, 1): force <s> first
        lengths = src_tokens.new_full((bsz,), width)  # (B,)
        generator = SequenceGenerator(as_decoding_models(self.models), self.tgt_dict, cfg)
        return generator.generate(src_tokens, prefix_tokens=prefix, src_lengths=lengths)

    def fill_mask(self, masked_inputs: str | Sequence[str], topk: int = 5, match_source_len: bool = True,
                  **generate_kwargs: Any) -> Any:  # fmt: skip
        """The ``topk`` (text, natural-log score) fillings of each input's ``<mask>`` span(s), best first; scores
        are 0-dim tensors, as fairseq returns them.

        One batched beam search (beam = max(topk, beam)); ``match_source_len`` keeps outputs as long as the
        input. A single string gives its list; a list gives a list per input.
        """
        if isinstance(masked_inputs, str):
            return self.fill_mask([masked_inputs], topk, match_source_len, **generate_kwargs)[0]
        if topk < 1:
            raise ValueError(f"fill_mask: topk must be at least 1 (got {topk})")
        batch = [self._encode_masked(text) for text in masked_inputs]
        beam = max(topk, int(generate_kwargs.pop("beam", -1)))
        hyps = self.generate(batch, beam, match_source_len=match_source_len, **generate_kwargs)
        return [[(self.decode(h.tokens), h["score"]) for h in sentence[:topk]] for sentence in hyps]

    def _encode_masked(self, text: str) -> Tensor:
        if MASK not in text:
            raise ValueError(f"fill_mask: {text!r} has no {MASK} token; put one where text is to be filled in")
        spans = [self.apply_bpe(self.tokenize(span.rstrip())) for span in text.split(MASK)]
        line = f" {MASK} ".join(spans).strip()
        return self.src_dict.encode_line(f"<s> {line} </s>", append_eos=False, add_if_not_exist=False).long()

    @overload
    def extract_features(self, tokens: Tensor, return_all_hiddens: Literal[False] = False) -> Tensor: ...
    @overload
    def extract_features(self, tokens: Tensor, return_all_hiddens: bool) -> Tensor | list[Tensor]: ...
    def extract_features(self, tokens: Tensor, return_all_hiddens: bool = False) -> Tensor | list[Tensor]:
        """Last decoder layer's features ``(B, T, C)`` of ``tokens`` (T,) or (B, T) (right-padded), the decoder
        reading the tokens rotated right by one (last token first), as fairseq. ``return_all_hiddens``: the
        list of inner states ``(B, T, C)`` (embeddings, then each layer)."""
        tokens = (tokens.unsqueeze(0) if tokens.dim() == 1 else tokens).to(self.device).long()  # (B, T)
        if tokens.numel() == 0:
            raise ValueError("extract_features: tokens is empty; encode a text first (encode gives <s> ... </s>)")
        if tokens.size(-1) > min(self.bart.max_positions()):
            raise ValueError(f"tokens exceeds maximum length: {tokens.size(-1)} > {min(self.bart.max_positions())}")
        prev = tokens.clone()
        last = tokens.ne(self.src_dict.pad()).sum(dim=1) - 1  # (B,) index of each row's last token
        prev[:, 0] = tokens.gather(1, last.unsqueeze(-1)).squeeze(-1)
        prev[:, 1:] = tokens[:, :-1]
        with torch.no_grad():
            out = self.bart.features(tokens, prev, return_all_hiddens=return_all_hiddens)
        if return_all_hiddens:
            assert out.inner_states is not None  # features() fills them when asked
            return out.inner_states
        return out.features

    def register_classification_head(self, name: str, num_classes: int, inner_dim: int | None = None) -> None:
        """Adds a (randomly initialised) head ``name`` with ``num_classes`` outputs to the model."""
        self.bart.register_classification_head(name, num_classes, inner_dim)

    def predict(self, head: str, tokens: Tensor, return_logits: bool = False) -> Tensor:
        """``(B, num_classes)`` log-probabilities (or logits) of head ``head`` for ``tokens`` (T,) or (B, T)."""
        tokens = (tokens.unsqueeze(0) if tokens.dim() == 1 else tokens).to(self.device).long()
        if head not in self.bart.classification_heads:
            raise KeyError(f"no classification head {head!r}; add one with register_classification_head({head!r}, N)")
        features = self.extract_features(tokens)
        with torch.no_grad():
            logits = self.bart.classification_heads[head](
                last_eos_representation(features, tokens, self.src_dict.eos())
            )
        return logits if return_logits else F.log_softmax(logits, dim=-1)


def from_pretrained(
    model_name_or_path: str | os.PathLike[str],
    checkpoint_file: str = "model.pt",
    data_name_or_path: str = ".",
    *,
    quantize: str | None = None,
    packed_weights: bool = False,
    **kwargs: Any,
) -> BARTHub:
    """A local BART directory -> an eval-mode :class:`BARTHub`; never downloads, never unpickles code.

    ``data_name_or_path``: the folder of ``dict.txt`` (starting with '.': inside the model directory); for a
    checkpoint fine-tuned by the translation task (bart.large.cnn) the folder of its ``dict.{source_lang}.txt``
    and ``dict.{target_lang}.txt``, read as they are (the translation task adds no ``<mask>``).
    Keywords: ``bpe`` (default ``gpt2``) and its files ``gpt2_encoder_json=``/``gpt2_vocab_bpe=`` (else
    ``encoder.json``/``vocab.bpe`` in the model directory), ``max_tokens``/``batch_size``, generation options,
    and ``langs`` ('en_XX,ro_RO,...'): the ``[lang]`` symbols of a ``multilingual_denoising --add-lang-token``
    (mBART) checkpoint that saved no ``--langs`` (else its data folder's sub-folders name them);
    ``source_lang``/``target_lang``: a translation checkpoint's pair where it saved none and the data folder's
    file names do not tell. ``quantize="int8"``: int8 linear layers for CPU inference (:mod:`seqloom.modules.int8`);
    ``packed_weights=True``: float32 decoders on weights packed for MKL (:mod:`seqloom.modules.packed_linear`).
    """
    kwargs.setdefault("bpe", "gpt2")
    # fairseq's BARTModel.from_pretrained takes sample_break_mode='eos' (one input, one sample): the only mode here
    mode = kwargs.pop("sample_break_mode", "eos")
    if mode != "eos":
        raise ValueError(f"BARTModel.from_pretrained: sample_break_mode={mode!r} is not supported; the hub encodes "
                         "each input as one sample, fairseq's 'eos' (the default)")  # fmt: skip
    check_keywords(
        kwargs,
        extra=("langs", "source_lang", "target_lang"),
        caller="BARTModel.from_pretrained",
        accepts="bpe/tokenizer and their options (gpt2_encoder_json, gpt2_vocab_bpe ...), max_tokens, batch_size, "
        "langs (an mBART checkpoint's languages), source_lang/target_lang (a translation checkpoint's) and "
        "generation options",
    )
    loaded = read_checkpoints(model_name_or_path, checkpoint_file, ensemble=False)
    (path,), (state,), groups = loaded.paths, loaded.states, loaded.groups
    task_group = groups.get("task") or {}
    if not fine_tuned_for_translation(task_group):
        dict_path = dictionary_file(loaded.model_dir, data_name_or_path)
        langs = language_tokens(task_group, dict_path.parent, kwargs.pop("langs", None))
        kwargs.pop("source_lang", None), kwargs.pop("target_lang", None)  # no language pair in a denoising model
        src_dict = tgt_dict = load_dictionary(dict_path, langs=langs)
    else:
        kwargs.pop("langs", None)
        data_dir = files.resolve_data_dir(loaded.model_dir, data_name_or_path)
        pair = translation_pair(task_group, data_dir, kwargs)
        src_dict, tgt_dict = (Dictionary.load(pair_dictionary_file(data_dir, lang, path)) for lang in pair)
    model = model_from_state(state, src_dict, source=str(path)).eval()
    task = pick_options(groups.get("task"), ("max_source_positions", "max_target_positions"), {})
    limits = (task.get("max_source_positions", 1024), task.get("max_target_positions", 1024))
    max_positions = resolve_max_positions(limits, model.max_positions())
    hub = assemble_hub(
        BARTHub, [model], loaded, kwargs, src_dict=src_dict, tgt_dict=tgt_dict, max_positions=max_positions
    )
    return pack_hub(quantize_hub(hub, quantize), packed_weights, quantize=quantize)


registry.HUBS.add("bart", from_pretrained)  # BARTModel.from_pretrained finds it there
