"""The language-model hub: ``TransformerLanguageModel.from_pretrained(dir, ...)`` -> sample, score, generate.

As fairseq's LM hub: a prompt is encoded (tokenizer, BPE, dictionary; eos appended), its eos is stripped and
it becomes the forced prefix of generation, which starts from ``</s>`` (``<s>`` with ``add_bos_token``);
``score(sentence)`` returns the natural-log probability of each of the sentence's tokens (without the final
``</s>``) given the ones before it, and their mean.

Options come from the checkpoint's config (``generation``, ``dataset``, ``tokenizer``, ``bpe`` groups, or
an old flat ``args``) and then the keywords, with fairseq's option names: ``tokenizer=``/``bpe=`` and the
codecs' options (``bpe_codes=`` ...), any :class:`~seqloom.generation.config.GenerationConfig` field,
``max_tokens``/``batch_size`` and ``add_bos_token``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from seqloom.checkpoint.io import load_checkpoint
from seqloom.data.batching import resolve_max_positions
from seqloom.data.dictionary import Dictionary
from seqloom.data.language_pair_dataset import collate_tokens
from seqloom.evaluation.lm_scorer import score_batch
from seqloom.generation.config import GenerationConfig
from seqloom.generation.generator import SequenceGenerator
from seqloom.generation.hypotheses import Hypothesis
from seqloom.hub import files
from seqloom.hub.base import GeneratorHubInterface, HubBatching
from seqloom.hub.codecs import build_codec, codec_option_names, codec_spec
from seqloom.hub.pretrained import checkpoint_groups
from seqloom.models.transformer_lm.interop import model_from_state

GENERATION_OPTIONS = tuple(f.name for f in dataclasses.fields(GenerationConfig))
BATCHING_OPTIONS = ("max_tokens", "batch_size")


class LanguageModelHub(GeneratorHubInterface):
    """A hub over ``transformer_lm`` models; see :class:`GeneratorHubInterface` for the shared methods."""

    add_bos_token: bool = False

    @property
    def bos_token(self) -> int:
        return self.src_dict.bos() if self.add_bos_token else self.src_dict.eos()

    def _prompts(self, batch: Sequence[Tensor]) -> list[Tensor]:
        """Each sentence without its trailing (and leading) eos, as fairseq's ``StripTokenDataset`` leaves it."""
        eos, out = self.src_dict.eos(), []
        for ids in batch:
            start, end = 0, ids.numel()
            while end > start and int(ids[end - 1]) == eos:
                end -= 1
            while start < end and int(ids[start]) == eos:
                start += 1
            out.append(ids[start:end])
        return out

    def _sources(self, prompts: Sequence[Tensor]) -> Tensor:
        """``(B, 1 + T)`` right-padded model inputs: the start symbol, then the prompt."""
        rows = [torch.cat([p.new_tensor([self.bos_token]), p]) for p in prompts]
        return collate_tokens(rows, self.src_dict.pad(), eos_idx=self.src_dict.eos(), left_pad=False)

    def inference_step(self, cfg: GenerationConfig, batch: list[Tensor]) -> list[list[Hypothesis]]:
        src_tokens = self._sources(self._prompts(batch))  # (B, 1 + T)
        generator = SequenceGenerator(list(self.models), self.tgt_dict, cfg)
        return generator.generate(src_tokens, prefix_tokens=src_tokens[:, 1:], bos_token=self.bos_token)

    def score(self, sentences: str | Sequence[str], replace_newline_with_eos: bool = False) -> Any:
        """Teacher-forced scores of each sentence: a :class:`Hypothesis` (one string gives one, a list a list).

        ``positional_scores`` (T,) are natural-log probabilities of the sentence's tokens (without ``</s>``)
        given the ones before; ``score`` is their mean. ``replace_newline_with_eos`` encodes each line
        separately, so that line breaks become ``</s>``.
        """
        if isinstance(sentences, str):
            return self.score([sentences], replace_newline_with_eos)[0]
        tokens = [self._encode_lines(s) if replace_newline_with_eos else self.encode(s) for s in sentences]
        results: list[Hypothesis | None] = [None] * len(tokens)
        for ids in self.plan_batches(tokens):
            prompts = self._prompts([tokens[i].to(self.device) for i in ids])
            src = self._sources(prompts)  # (B, 1 + T)
            pad = self.src_dict.pad()
            target = collate_tokens([torch.cat([p, p.new_tensor([pad])]) for p in prompts], pad, left_pad=False)
            sample = {"id": torch.arange(len(ids)), "net_input": {"src_tokens": src}, "target": target}
            for scored in score_batch(list(self.models), sample, pad=pad):
                results[ids[scored.id]] = Hypothesis(scored.tokens, scored.score, scored.positional_scores)
        return results

    def _encode_lines(self, text: str) -> Tensor:
        return torch.cat([self.encode(line) for line in text.splitlines()])


def _pick(group: Any, names: Sequence[str], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Values of ``names`` from a checkpoint group (interpolations skipped), then from ``kwargs``."""
    values: dict[str, Any] = {}
    if isinstance(group, Mapping):
        values = {n: group[n] for n in names if n in group and not str(group[n]).startswith("${")}
    values.update({n: kwargs[n] for n in names if n in kwargs})
    return values


def _check_keywords(kwargs: Mapping[str, Any]) -> None:
    known = {"tokenizer", "bpe", "add_bos_token", *BATCHING_OPTIONS, *GENERATION_OPTIONS}
    known |= codec_option_names("tokenizer") | codec_option_names("bpe")
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(
            f"from_pretrained got unknown keyword(s) {', '.join(unknown)}; it accepts tokenizer/bpe and their "
            "options (bpe_codes ...), add_bos_token, max_tokens, batch_size and generation options (beam ...)"
        )


def _codecs(model_dir: Any, groups: Mapping[str, Any], kwargs: Mapping[str, Any]) -> tuple[Any, Any]:
    tokenizer = codec_spec("tokenizer", kwargs.get("tokenizer", groups.get("tokenizer")), kwargs)
    bpe = codec_spec("bpe", kwargs.get("bpe", groups.get("bpe")), kwargs)
    if bpe is not None:
        bpe.options.update(files.discover_codec_files(model_dir, bpe.options))
        bpe = codec_spec("bpe", bpe.name, bpe.options)
    return build_codec("tokenizer", tokenizer), build_codec("bpe", bpe)


def from_pretrained(
    model_name_or_path: str | os.PathLike[str],
    checkpoint_file: str = "model.pt",
    data_name_or_path: str = ".",
    **kwargs: Any,
) -> LanguageModelHub:
    """Loads a local ``transformer_lm`` directory into an eval-mode hub; never downloads, never unpickles code.

    ``data_name_or_path`` is the folder of the model's ``dict.txt`` (starting with '.': inside the model
    directory). See the module docstring for the keywords.
    """
    _check_keywords(kwargs)
    model_dir, named = files.resolve_model_dir(model_name_or_path)
    paths = files.checkpoint_paths(model_dir, named or checkpoint_file)
    data_dir = files.resolve_data_dir(model_dir, data_name_or_path)
    if not (data_dir / "dict.txt").is_file():
        raise FileNotFoundError(f"dictionary {data_dir / 'dict.txt'}: no such file; pass data_name_or_path=DIR")
    dictionary = Dictionary.load(data_dir / "dict.txt")
    states = [load_checkpoint(p) for p in paths]
    groups = checkpoint_groups(states[0])
    models = [model_from_state(s, dictionary, source=str(p)).eval() for s, p in zip(states, paths)]
    tokenizer, bpe = _codecs(model_dir, groups, kwargs)
    generation = _pick(groups.get("generation"), GENERATION_OPTIONS, kwargs)
    generation = {k: v for k, v in generation.items() if v is not None or k in ("replace_unk", "print_alignment")}
    batching = _pick(groups.get("dataset"), BATCHING_OPTIONS, kwargs)
    hub = LanguageModelHub(
        models,
        src_dict=dictionary,
        tgt_dict=dictionary,
        tokenizer=tokenizer,
        bpe=bpe,
        generation=GenerationConfig(**generation),
        # fairseq's hub batches with get_batch_iterator's default multiple of 1
        batching=HubBatching(**batching, required_batch_size_multiple=1),
        max_positions=resolve_max_positions(*[m.max_positions() for m in models]),
    )
    task = _pick(groups.get("task"), ("add_bos_token",), kwargs)
    hub.add_bos_token = bool(task.get("add_bos_token", False))
    return hub


class TransformerLanguageModel:
    """fairseq's spelling: ``TransformerLanguageModel.from_pretrained(dir, checkpoint_file=..., ...)`` -> a hub."""

    from_pretrained = staticmethod(from_pretrained)
