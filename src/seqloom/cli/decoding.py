"""What ``seqloom generate`` and ``seqloom interactive`` share: task set-up, text codec, inference on a batch."""

from __future__ import annotations

import copy
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import Tensor

from seqloom import registry
from seqloom.cli.model_loading import load_language_model
from seqloom.cli.parser import ParsedArgs
from seqloom.config.common import CommonConfig
from seqloom.devices import inference_dtype, select_device
from seqloom.generation.alignment import add_alignments
from seqloom.generation.config import GenerationConfig
from seqloom.generation.generator import SequenceGenerator
from seqloom.generation.hypotheses import Hypothesis
from seqloom.generation.scorer import SequenceScorer
from seqloom.modules.int8 import int8_unavailable, quantize_model
from seqloom.modules.packed_linear import pack_linears, packed_unavailable

if TYPE_CHECKING:
    from torch import nn

    from seqloom.data.dictionary import Dictionary
    from seqloom.tokenizers.bpe import BPE
    from seqloom.tokenizers.tokenizer import Tokenizer

T = TypeVar("T")


def load_task(args: ParsedArgs, *, split: str | None = None) -> Any:
    """The task of ``--task`` set up from a copy of its config (what it infers stays the task's); the dataset
    format is inferred when not given."""
    dataset = args.get("dataset")
    task = registry.TASKS.get(args.components.required("task")).setup_task(
        replace(args["task"]), dataset_impl=dataset.dataset_impl if dataset is not None else None
    )
    if split is not None and getattr(task, "dataset_impl", "x") is None:
        task.dataset_impl = infer_impl(task, split)
    return task


def infer_impl(task: Any, split: str) -> str | None:
    """The format of ``split``'s files in the (first) data folder, like fairseq's ``infer_dataset_impl``."""
    from seqloom.data.formats import infer_dataset_impl

    cfg = task.cfg
    folder = str(cfg.data).split(os.pathsep)[0]
    for a, b in ((cfg.source_lang, cfg.target_lang), (cfg.target_lang, cfg.source_lang)):
        impl = infer_dataset_impl(os.path.join(folder, f"{split}.{a}-{b}.{cfg.source_lang}"))
        if impl is not None:
            return impl
    return None


@dataclass
class TextCodec:
    """``--tokenizer`` and ``--bpe`` applied to raw input and undone on output (either may be absent)."""

    tokenizer: Tokenizer | None = None
    bpe: BPE | None = None
    _scoring_dict: Dictionary | None = field(default=None, repr=False)

    @classmethod
    def from_args(cls, args: ParsedArgs) -> TextCodec:
        from seqloom.tokenizers.bpe import build_bpe
        from seqloom.tokenizers.tokenizer import build_tokenizer

        chosen = args.components
        tokenizer = build_tokenizer(chosen.tokenizer, args.get("tokenizer")) if chosen.tokenizer else None
        bpe = build_bpe(chosen.bpe, args.get("bpe")) if chosen.bpe else None
        return cls(tokenizer, bpe)

    def encode(self, x: str) -> str:
        if self.tokenizer is not None:
            x = self.tokenizer.encode(x)
        if self.bpe is not None:
            x = self.bpe.encode(x)
        return x

    def decode(self, x: str) -> str:
        if self.bpe is not None:
            x = self.bpe.decode(x)
        if self.tokenizer is not None:
            x = self.tokenizer.decode(x)
        return x

    def scoring_dictionary(self, tgt_dict: Dictionary) -> Dictionary:
        """A copy of the target dictionary that may grow while text is re-encoded for BLEU."""
        if self._scoring_dict is None:
            self._scoring_dict = copy.deepcopy(tgt_dict)
        return self._scoring_dict


def place_models(models: list[nn.Module], common: CommonConfig) -> torch.device:
    """fairseq's placement: the GPU when CUDA is available (unless ``--cpu``), float16 weights with
    ``--fp16`` and bfloat16 with ``--bf16``. Returns the device the inputs must go to."""
    device = select_device(cpu=common.cpu)
    dtype = inference_dtype(fp16=common.fp16, bf16=common.bf16)
    for model in models:
        model.to(device=device, dtype=dtype)
    return device


def quantize_models(models: list[nn.Module], method: str | None, *, common: CommonConfig, device: torch.device) -> None:
    """``--quantize int8``: the placed models' linear layers made int8 in place (:mod:`seqloom.modules.int8`).
    Refuses, naming the flags, float16/bfloat16 models and devices without int8 products."""
    if method is None:
        return
    if common.fp16 or common.bf16:
        raise ValueError(f"--quantize {method} runs int8 weights with float32 inputs; drop --fp16/--bf16")
    reason = int8_unavailable(device)
    if reason is not None:
        raise ValueError(f"--quantize {method}: {reason}")
    for model in models:
        quantize_model(model, method)


def pack_models(models: list[nn.Module], enabled: bool, *, method: str | None, common: CommonConfig,
                device: torch.device) -> None:  # fmt: skip
    """``--packed-weights``: the placed models' decoders multiply by weights packed once for MKL
    (:mod:`seqloom.modules.packed_linear`). Refuses, naming the flags, other dtypes, int8 and other devices."""
    if not enabled:
        return
    if method is not None:
        raise ValueError(f"--packed-weights packs float32 weights; --quantize {method} has none left: use one of them")
    if common.fp16 or common.bf16:
        raise ValueError("--packed-weights packs float32 weights; drop --fp16/--bf16")
    reason = packed_unavailable(device)
    if reason is not None:
        raise ValueError(f"--packed-weights: {reason}")
    for model in models:
        decoder = getattr(model, "decoder", None)
        pack_linears(decoder if isinstance(decoder, torch.nn.Module) else model)


def draws_random_numbers(cfg: GenerationConfig) -> bool:
    """Whether decoding draws random numbers (``--sampling``, ``--retain-dropout``): the models are then built
    with their random initialisation, as fairseq builds them, so that a ``--seed`` gives fairseq's draws."""
    return cfg.sampling or cfg.retain_dropout


def build_generator(models: list[Any], tgt_dict: Dictionary, cfg: GenerationConfig, *, common: CommonConfig | None = None,
                    model_overrides: str = "{}", eos: int | None = None) -> SequenceGenerator | SequenceScorer:  # fmt: skip
    """The scorer (``--score-reference``) or generator for ``models``; with ``--lm-path`` its language model
    is loaded and placed like the models (``common``: ``--cpu``, ``--fp16``, ``--bf16``). ``eos``: the task's
    end-of-target symbol (its ``generation_eos``; None: ``</s>``)."""
    if cfg.score_reference:
        if cfg.lm_path is not None:  # fairseq's scorer ignores it; refused rather than silently left out
            raise ValueError("--lm-path: --score-reference scores with the translation models alone; drop one")
        return SequenceScorer(models, tgt_dict, compute_alignment=cfg.print_alignment is not None, eos=eos)
    if cfg.nbest > cfg.beam:  # fairseq prints what there is, silently
        logging.getLogger("seqloom.generate").warning(
            "--nbest %d is more than --beam %d: each sentence gets at most %d hypotheses", cfg.nbest, cfg.beam, cfg.beam
        )
    lm_model = None
    if cfg.lm_path is not None:
        lm_model = load_language_model(cfg.lm_path, tgt_dict, model_overrides=model_overrides,
                                       random_init=draws_random_numbers(cfg))  # fmt: skip
        if common is not None:
            place_models([lm_model], common)
    return SequenceGenerator(models, tgt_dict, cfg, lm_model=lm_model, eos=eos)


def run_inference(generator: SequenceGenerator | SequenceScorer, sample: dict[str, Any], cfg: GenerationConfig, device: torch.device | None = None,
                  *, constraints: Tensor | None = None, prefix_token: int | None = None) -> list[list[Hypothesis]]:  # fmt: skip
    """Hypotheses (best first) of every sentence of a collated ``sample``, with alignments if asked for.

    The batch is run on ``device`` (where the models are); the hypotheses come back on the CPU.
    ``constraints`` (B, L) are the sentences' packed lexical constraints (``--constraints``). ``prefix_token``
    starts every hypothesis when no other prefix is asked for (a multilingual task's target language token).
    """
    net_input = sample["net_input"]
    src_tokens: Tensor = net_input["src_tokens"]
    target = sample.get("target")
    if device is not None and device.type != "cpu":
        src_tokens, target = src_tokens.to(device), target.to(device) if target is not None else None
    if isinstance(generator, SequenceScorer):
        if target is None:
            raise ValueError("--score-reference needs reference targets: this split has none")
        prev = net_input["prev_output_tokens"].to(src_tokens.device)
        return on_cpu(generator.score(src_tokens, prev, target))
    prefix = target[:, : cfg.prefix_size] if cfg.prefix_size > 0 and target is not None else None
    if sample.get("prefix_tokens") is not None:  # a language model continues prompts (PromptDataset)
        prefix = sample["prefix_tokens"].to(src_tokens.device)
    if prefix is None and prefix_token is not None:
        prefix = src_tokens.new_full((src_tokens.size(0), 1), prefix_token)
    src_lengths = net_input.get("src_lengths")
    hyps = generator.generate(src_tokens, prefix_tokens=prefix, constraints=constraints, bos_token=sample.get("bos_token"),
                              src_lengths=src_lengths.to(src_tokens.device) if src_lengths is not None else None)  # fmt: skip
    hyps = on_cpu(hyps)
    if cfg.print_alignment is not None or cfg.replace_unk is not None:
        add_alignments(hyps, src_tokens.cpu(), pad=generator.pad, eos=generator.eos,
                       kind=cfg.print_alignment or "hard")  # fmt: skip
    return hyps


def on_cpu(hyps: list[list[Hypothesis]]) -> list[list[Hypothesis]]:
    """The hypotheses with their tensors on the CPU (printing reads them element by element)."""
    if not hyps or not hyps[0] or hyps[0][0].tokens.device.type == "cpu":
        return hyps
    for sentence in hyps:
        for h in sentence:
            h.tokens, h.positional_scores = h.tokens.cpu(), h.positional_scores.float().cpu()
            if h.attention is not None:
                h.attention = h.attention.float().cpu()
    return hyps


def sample_strings(sample: dict[str, Any], i: int, *, task: Any, post_process: str | None,
                   strip: frozenset[int] = frozenset()) -> tuple[str | None, str | None, Tensor | None]:  # fmt: skip
    """Row ``i``'s source text, reference text (unk escaped, ``</s>`` and ``strip`` left out) and reference ids,
    as fairseq prints them."""
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    src = sample["net_input"]["src_tokens"][i]
    src_str = src_dict.string(src[src.ne(tgt_dict.pad())], post_process) if src_dict is not None else None
    if sample.get("target") is None:
        return src_str, None, None
    target = sample["target"][i]
    target = target[target.ne(tgt_dict.pad())].int()
    target_str = tgt_dict.string(target, post_process, escape_unk=True,
                                 extra_symbols_to_ignore={tgt_dict.eos(), *strip})  # fmt: skip
    return src_str, target_str, target


def progress_bar(items: Iterable[T], common: CommonConfig) -> Iterator[T]:
    """tqdm on stderr (fairseq's default progress bar) unless ``--no-progress-bar`` or another log format."""
    if common.no_progress_bar or common.log_format not in (None, "tqdm") or not sys.stderr.isatty():
        # (as fairseq: a bar only on a terminal; a log file would fill with its redrawn lines)
        yield from items
        return
    from tqdm import tqdm

    total = len(items) if isinstance(items, Sized) else None
    yield from tqdm(items, total=total, file=sys.stderr, leave=False, dynamic_ncols=True)


def symbols_to_strip(
    generator: SequenceGenerator | SequenceScorer, tgt_dict: Dictionary, task: Any = None
) -> frozenset[int]:
    """The generator's end symbol when it is not ``</s>``, and the task's own (a target language token): fairseq's
    ``symbols_to_strip_from_output``. fairseq gives the task's to its generator only, so ``--score-reference``
    (the scorer) prints them."""
    eos = getattr(generator, "eos", tgt_dict.eos())
    own = frozenset() if isinstance(generator, SequenceScorer) else task.symbols_to_strip_from_output
    own = frozenset(own or ())
    return own if eos == tgt_dict.eos() else own | {eos}


def decode_threads(
    args: ParsedArgs, generator: SequenceGenerator | SequenceScorer, device: torch.device
) -> list[SequenceGenerator | SequenceScorer]:
    """The generators of ``--decode-threads`` threads (``[generator]`` and more of its kind), or ``[generator]``
    alone where threads would not help or would change the output: off the CPU, and with random draws
    (sampling, retained dropout), whose order the threads would make arbitrary."""
    wanted, gen = args["decoding"].decode_threads, args["generation"]
    if wanted < 1:
        raise ValueError(f"--decode-threads must be at least 1 (got {wanted})")
    if wanted == 1:
        return [generator]
    if device.type != "cpu" or gen.sampling or gen.retain_dropout or not isinstance(generator, SequenceGenerator):
        logging.getLogger("seqloom.generate").info("--decode-threads %d: decoding one batch at a time (GPU, sampling, retained dropout or "
                    "--score-reference)", wanted)  # fmt: skip
        return [generator]
    threads: list[SequenceGenerator | SequenceScorer] = [generator]
    return threads + [generator.replica() for _ in range(wanted - 1)]
