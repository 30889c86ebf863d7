"""``seqloom eval-lm DATA --path CKPT``: a language model's loss and perplexity on a split (fairseq-eval-lm).

The split is cut into blocks of ``--tokens-per-sample`` tokens as in training; with ``--context-window C``
blocks shrink to ``tokens-per-sample - C`` tokens and each is scored after up to C tokens of the text before
it. Results go to the log (stderr), as fairseq's: ``Evaluated N tokens in Xs (Y tokens/s)`` and
``Loss (base 2): L, Perplexity: P``; ``--output-word-probs`` logs each row's words with their
natural-log probabilities, ``--output-word-stats`` a line per word.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from seqloom.checkpoint import load_checkpoint
from seqloom.checkpoint.io import CheckpointError
from seqloom.cli.model_loading import parse_model_overrides
from seqloom.cli.parser import ParsedArgs, parse_args
from seqloom.cli.specs import EVAL_LM as SPEC
from seqloom.data.batching import resolve_max_positions
from seqloom.devices import inference_dtype, select_device
from seqloom.evaluation.lm_scorer import score_batch
from seqloom.evaluation.word_stats import EvalLMTotals, accumulate, bpe_continuations, format_word_probs
from seqloom.logs import setup_logging
from seqloom.tasks.base import BatchingOptions

logger = logging.getLogger("seqloom.cli.eval_lm")


@dataclass
class EvalLMResult:
    """What ``eval-lm`` reports."""

    loss: float  # average negative log-likelihood per token, base 2
    perplexity: float
    tokens: int  # tokens fed to the model (fairseq's "Evaluated N tokens")
    seconds: float
    totals: EvalLMTotals


def load_models(paths: str, task: Any, *, overrides: dict[str, Any], device: torch.device) -> list[nn.Module]:
    """The eval-mode language models of the ``:``-separated checkpoint ``paths``."""
    from seqloom.models.transformer_lm.interop import model_from_state

    models: list[nn.Module] = []
    for path in [p for p in paths.split(os.pathsep) if p]:
        state = load_checkpoint(path)
        model = model_from_state(
            state, task.source_dictionary, task.target_dictionary, source=path, overrides=overrides
        )
        models.append(model.to(device).eval())
    return models


def batch_options(parsed: ParsedArgs, models: Sequence[nn.Module]) -> BatchingOptions:
    ds = parsed["dataset"]
    return BatchingOptions(
        max_tokens=ds.max_tokens or 36000,
        max_sentences=ds.batch_size,
        max_positions=resolve_max_positions(*[m.max_positions() for m in models]),  # type: ignore[operator]
        seed=1,  # fairseq's eval_lm batches with the task's default seed
        num_shards=ds.num_shards,
        shard_id=ds.shard_id,
        num_workers=0,  # the context-window collater carries state from batch to batch
    )


def evaluate(parsed: ParsedArgs) -> EvalLMResult:
    """Loads the task, models and split, scores every block and returns the figures."""
    from seqloom import registry

    common, common_eval, ev = parsed["common"], parsed["common_eval"], parsed["eval_lm"]
    task_cfg = parsed["task"]
    if ev.context_window > 0:
        if ev.context_window >= task_cfg.tokens_per_sample:
            raise ValueError(
                f"--context-window {ev.context_window} must be smaller than --tokens-per-sample "
                f"{task_cfg.tokens_per_sample}: each block scores tokens-per-sample minus context-window new tokens"
            )
    # a copy: the window shortens the task's blocks, not the parsed option
    task_cfg = dataclasses.replace(task_cfg, tokens_per_sample=task_cfg.tokens_per_sample - ev.context_window)
    task_cls = registry.TASKS.get(parsed.components.required("task"))
    task = task_cls.setup_task(task_cfg, dataset_impl=parsed["dataset"].dataset_impl)
    model_path = common_eval.model_path
    if model_path is None:
        raise ValueError("seqloom eval-lm: --path CHECKPOINT is required")
    logger.info("loading model(s) from %s", model_path)
    device = select_device(cpu=common.cpu)
    models = load_models(model_path, task, overrides=parse_model_overrides(common_eval.model_overrides), device=device)
    dtype = inference_dtype(fp16=common.fp16, bf16=common.bf16)
    if dtype is not None:  # fairseq's model.half() for --fp16; --bf16 likewise
        models = [m.to(dtype=dtype) for m in models]
    logger.info(f"num. model params: {sum(p.numel() for p in models[0].parameters()):,}")
    subset = parsed["dataset"].gen_subset
    dataset = task.load_dataset(subset)
    logger.info(f"{task_cfg.data} {subset} {len(dataset):,} examples")
    options = batch_options(parsed, models)
    batches = task.eval_lm_iterator(dataset, options, context_window=ev.context_window)
    result = score_all(models, batches, task, parsed, device)
    if result.tokens == 0:  # a loss of 0 and a perplexity of 1 would read as a result
        model_limit = options.max_positions[1] if options.max_positions else None
        max_tokens = options.max_tokens
        limits = [n for n in (model_limit, max_tokens) if n is not None]
        sizes = getattr(dataset, "sizes", None)
        fitting = len(dataset) if sizes is None or not limits else int((np.asarray(sizes) <= min(limits)).sum())
        if len(dataset) == 0:
            why = "the split is empty"
        elif fitting and options.num_shards > 1:
            why = (f"its {fitting:,} blocks make too few batches for --num-shards {options.num_shards}, and shard "
                   f"{options.shard_id} got none: use fewer shards or a smaller --max-tokens/--batch-size")  # fmt: skip
        elif model_limit is not None and max_tokens is not None and model_limit < max_tokens:  # the model binds
            why = (f"every one of its {len(dataset):,} blocks was skipped as longer than the model's {model_limit} "
                   f"positions: pass --tokens-per-sample {model_limit} or less (it is {task_cfg.tokens_per_sample}"
                   f"{' after --context-window' if ev.context_window > 0 else ''})")  # fmt: skip
        else:
            why = (f"every one of its {len(dataset):,} blocks was skipped as longer than "
                   f"max_positions={resolve_max_positions(options.max_positions, options.max_tokens)} (the smaller "
                   "of --max-tokens and the model's positions): raise --max-tokens or lower --tokens-per-sample")  # fmt: skip
        raise ValueError(f"seqloom eval-lm: nothing was evaluated in {subset!r}: {why}")
    return result


def score_all(models: list[nn.Module], batches: Iterable[dict[str, Any]], task: Any, parsed: ParsedArgs, device: torch.device
              ) -> EvalLMResult:  # fmt: skip
    ev, common_eval = parsed["eval_lm"], parsed["common_eval"]
    dictionary = task.target_dictionary
    bpe = bpe_continuations(task.source_dictionary, common_eval.post_process)
    bos = dictionary.bos() if getattr(task.cfg, "add_bos_token", False) else None
    totals, tokens, seconds = EvalLMTotals(), 0, 0.0
    for sample in batches:
        if "net_input" not in sample:
            continue
        sample = _to(sample, device)
        start = time.perf_counter()
        with torch.inference_mode():
            hypos = score_batch(models, sample, pad=dictionary.pad(), softmax_batch=ev.softmax_batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        tokens += int(sample["ntokens"])
        for hypo in hypos:
            words = accumulate(totals, hypo, task.source_dictionary, bpe=bpe, remove_bos=bos,
                               words=ev.output_word_probs or ev.output_word_stats)  # fmt: skip
            if ev.output_word_probs:
                logger.info(format_word_probs(hypo.id, words))
    rate = tokens / seconds if seconds > 0 else 0.0
    logger.info(f"Evaluated {tokens:,} tokens in {seconds:.1f}s ({rate:.2f} tokens/s)")
    if ev.output_word_stats:
        for stat in sorted(totals.word_stats.values(), key=lambda s: s.count, reverse=True):
            logger.info(stat.line())
    return EvalLMResult(totals.loss, totals.perplexity, tokens, seconds, totals)


def _to(sample: Any, device: torch.device) -> Any:
    if isinstance(sample, torch.Tensor):
        return sample.to(device)
    if isinstance(sample, dict):
        return {k: _to(v, device) for k, v in sample.items()}
    return sample


def main(argv: Sequence[str] | None = None) -> int:
    parsed = parse_args(SPEC, argv)
    setup_logging(None, parsed["common"].log_file)
    try:
        result = evaluate(parsed)
    except (FileNotFoundError, ValueError, NotImplementedError, CheckpointError) as err:
        logger.error("%s", err)
        return 1
    logger.info(f"Loss (base 2): {result.loss:.4f}, Perplexity: {result.perplexity:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
