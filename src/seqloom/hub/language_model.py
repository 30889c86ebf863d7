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

import os
from collections.abc import Sequence
from typing import Any, cast, overload

import torch
from torch import Tensor

from seqloom import registry
from seqloom.data.batching import resolve_max_positions
from seqloom.data.dictionary import Dictionary
from seqloom.data.language_pair_dataset import collate_tokens
from seqloom.data.prompts import prompt_sources, strip_eos
from seqloom.evaluation.lm_scorer import score_batch
from seqloom.generation.config import GenerationConfig
from seqloom.generation.decoding_model import as_decoding_models
from seqloom.generation.generator import SequenceGenerator
from seqloom.generation.hypotheses import Hypothesis
from seqloom.hub.base import GeneratorHubInterface
from seqloom.hub.loading import (
    assemble_hub,
    check_keywords,
    dictionary_file,
    pick_options,
    quantize_hub,
    read_checkpoints,
)
from seqloom.models.transformer_lm.interop import model_from_state

# re-exported: fairseq's spelling, TransformerLanguageModel.from_pretrained(...) -> the hub of this module
from seqloom.models.transformer_lm.model import TransformerLanguageModel as TransformerLanguageModel


class LanguageModelHub(GeneratorHubInterface):
    """A hub over ``transformer_lm`` models; see :class:`GeneratorHubInterface` for the shared methods."""

    add_bos_token: bool = False
    # fairseq's language-modeling task builds its inference dataset unordered: batches of consecutive inputs
    batch_order = "input"

    @property
    def bos_token(self) -> int:
        return self.src_dict.bos() if self.add_bos_token else self.src_dict.eos()

    def _prompts(self, batch: Sequence[Tensor]) -> list[Tensor]:
        """Each sentence without its trailing (and leading) eos, as fairseq's ``StripTokenDataset`` leaves it."""
        return [strip_eos(ids, self.src_dict.eos()) for ids in batch]

    def _sources(self, prompts: Sequence[Tensor]) -> Tensor:
        """``(B, 1 + T)`` right-padded model inputs: the start symbol, then the prompt."""
        return prompt_sources(prompts, start=self.bos_token, pad=self.src_dict.pad(), eos=self.src_dict.eos())

    def inference_step(self, cfg: GenerationConfig, batch: list[Tensor]) -> list[list[Hypothesis]]:
        src_tokens = self._sources(self._prompts(batch))  # (B, 1 + T)
        generator = SequenceGenerator(as_decoding_models(self.models), self.tgt_dict, cfg)
        return generator.generate(src_tokens, prefix_tokens=src_tokens[:, 1:], bos_token=self.bos_token)

    @overload
    def score(  # type: ignore[overload-overlap]  # a str is a Sequence[str]: this one comes first
        self, sentences: str, replace_newline_with_eos: bool = False
    ) -> Hypothesis: ...
    @overload
    def score(self, sentences: Sequence[str], replace_newline_with_eos: bool = False) -> list[Hypothesis]: ...
    def score(
        self, sentences: str | Sequence[str], replace_newline_with_eos: bool = False
    ) -> Hypothesis | list[Hypothesis]:
        """Teacher-forced scores of each sentence: a :class:`Hypothesis` (one string gives one, a list a list).

        ``positional_scores`` (T,) are natural-log probabilities of the sentence's tokens (without ``</s>``)
        given the ones before; ``score`` is their mean. ``replace_newline_with_eos`` encodes each line
        separately, so that line breaks become ``</s>``.
        """
        if isinstance(sentences, str):
            return self.score([sentences], replace_newline_with_eos)[0]
        tokens = [self._encode_lines(s) if replace_newline_with_eos else self.encode(s) for s in sentences]
        for i, sentence_ids in enumerate(tokens):
            if not self._prompts([sentence_ids])[0].numel():  # a mean over no token: fairseq's scorer divides 0 by 0
                raise ValueError(f"score: sentence {i} ({sentences[i]!r}) has no token to score")
        results: list[Hypothesis | None] = [None] * len(tokens)
        for ids in self.plan_batches(tokens):
            prompts = self._prompts([tokens[i].to(self.device) for i in ids])
            src = self._sources(prompts)  # (B, 1 + T)
            pad = self.src_dict.pad()
            target = collate_tokens([torch.cat([p, p.new_tensor([pad])]) for p in prompts], pad, left_pad=False)
            sample = {"id": torch.arange(len(ids)), "net_input": {"src_tokens": src}, "target": target}
            for scored in score_batch(list(self.models), sample, pad=pad):
                results[ids[scored.id]] = Hypothesis(scored.tokens, scored.score, scored.positional_scores)
        return cast(list[Hypothesis], results)  # plan_batches covers every sentence

    def _encode_lines(self, text: str) -> Tensor:
        return torch.cat([self.encode(line) for line in text.splitlines()])


def from_pretrained(
    model_name_or_path: str | os.PathLike[str],
    checkpoint_file: str = "model.pt",
    data_name_or_path: str = ".",
    *,
    quantize: str | None = None,
    **kwargs: Any,
) -> LanguageModelHub:
    """Loads a local ``transformer_lm`` directory into an eval-mode hub; never downloads, never unpickles code.

    ``data_name_or_path`` is the folder of the model's ``dict.txt`` (starting with '.': inside the model
    directory). See the module docstring for the keywords. ``quantize="int8"``: int8 linear layers for CPU
    inference (:mod:`seqloom.modules.int8`).
    """
    check_keywords(
        kwargs,
        extra=("add_bos_token",),
        caller="from_pretrained",
        accepts="tokenizer/bpe and their options (bpe_codes ...), add_bos_token, max_tokens, batch_size and "
        "generation options (beam ...)",
    )
    loaded = read_checkpoints(model_name_or_path, checkpoint_file)
    dictionary = Dictionary.load(dictionary_file(loaded.model_dir, data_name_or_path))
    models = [model_from_state(s, dictionary, source=str(p)).eval() for s, p in zip(loaded.states, loaded.paths)]
    max_positions = resolve_max_positions(*[m.max_positions() for m in models])
    hub = assemble_hub(
        LanguageModelHub, models, loaded, kwargs, src_dict=dictionary, tgt_dict=dictionary, max_positions=max_positions
    )
    task = pick_options(loaded.groups.get("task"), ("add_bos_token",), kwargs)
    hub.add_bos_token = bool(task.get("add_bos_token", False))
    return quantize_hub(hub, quantize)


registry.HUBS.add("transformer_lm", from_pretrained)  # TransformerLanguageModel.from_pretrained finds it there
