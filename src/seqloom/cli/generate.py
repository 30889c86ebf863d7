"""``seqloom generate DATA --path CKPT``: translate a binarized split, printing fairseq-generate's lines.

Per sentence (in fairseq's length-sorted batch order): ``S-`` source, ``T-`` reference, and for each of the
``--nbest`` hypotheses ``H-`` (score, tokens), ``D-`` (score, detokenized), ``P-`` (positional scores), with
``--print-alignment`` also ``A-``. Scores are in base 2. The run ends with the corpus score line
(``Generate test with beam=5: BLEU4 = ...``); progress and timing go to stderr.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import torch

from seqloom import registry
from seqloom.checkpoint.io import CheckpointError
from seqloom.cli.decoding import (
    TextCodec,
    build_generator,
    decode_threads,
    draws_random_numbers,
    load_task,
    pack_models,
    place_models,
    progress_bar,
    quantize_models,
    run_inference,
    sample_strings,
    symbols_to_strip,
)
from seqloom.cli.model_loading import export_defaults, load_ensemble
from seqloom.cli.output_lines import hypothesis_lines, load_align_dict, post_process_prediction
from seqloom.cli.parallel_decoding import can_fork, in_order_on_processes, in_order_on_threads
from seqloom.cli.parser import ParsedArgs, parse_args
from seqloom.cli.specs import GENERATE as SPEC
from seqloom.config.common import CommonConfig
from seqloom.config.training import DatasetConfig
from seqloom.generation.hypotheses import Hypothesis
from seqloom.generation.scoring import BleuScorer, build_scorer
from seqloom.logs import DATE_FORMAT, LINE_FORMAT, setup_logging
from seqloom.tasks.translation import TranslationTask

if TYPE_CHECKING:
    from seqloom.data.dictionary import Dictionary
    from seqloom.generation.scoring import ChrfScorer, SacrebleuScorer, WerScorer
    from seqloom.tasks.base import BatchingOptions

    Scorer = BleuScorer | SacrebleuScorer | ChrfScorer | WerScorer

logger = logging.getLogger("seqloom.generate")


@dataclass
class Totals:
    """What the closing log lines report."""

    sentences: int = 0
    tokens: int = 0  # generated tokens of the top hypotheses (incl. eos)
    seconds: float = 0.0  # time spent generating
    has_target: bool = True


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(SPEC, argv, defaults=export_defaults(argv, text=False))
    common, ev = args["common"], args["common_eval"]
    setup_logging(common.log_format, common.log_file)
    if args["generation"].sampling and args["generation"].nbest != args["generation"].beam:
        raise SystemExit(
            "--sampling draws one hypothesis per beam, so --nbest must equal --beam (got --nbest {} and --beam {})".format(
                args["generation"].nbest, args["generation"].beam
            )
        )  # fairseq's rule too
    if ev.results_path is None:
        return run_reporting_errors(args, sys.stdout)
    path = os.path.join(ev.results_path, f"generate-{args['dataset'].gen_subset}.txt")
    try:
        os.makedirs(ev.results_path, exist_ok=True)
        out = open(path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 (closed by the with below)
    except OSError as err:
        from seqloom.paths import unwritable_reason

        raise SystemExit(
            f"seqloom generate: --results-path {ev.results_path}: {unwritable_reason(path, err)}"
        ) from None
    with out:
        handler = logging.StreamHandler(out)  # fairseq also logs into the results file
        handler.setFormatter(logging.Formatter(LINE_FORMAT, DATE_FORMAT))
        logging.getLogger().addHandler(handler)
        try:
            return run_reporting_errors(args, out)
        finally:
            logging.getLogger().removeHandler(handler)


def run_reporting_errors(args: ParsedArgs, out: TextIO) -> int:
    """Runs ``run``; a missing file or a bad option value becomes one message on stderr and exit status 1."""
    try:
        return run(args, out)
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        print(f"seqloom generate: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the lines printed so far stand; no traceback (worker processes stop with us)
        print("seqloom generate: interrupted", file=sys.stderr)
        return 130


def run(args: ParsedArgs, out: TextIO) -> int:
    common, ev, data, gen = args["common"], args["common_eval"], args["dataset"], args["generation"]
    task_name = args.components.required("task")
    task_cls = registry.TASKS.get(task_name)
    if not issubclass(task_cls, TranslationTask):
        raise ValueError(
            f"--task {task_name}: seqloom generate translates binarized sentence pairs; continue prompts "
            "with `seqloom interactive --task language_modeling` (or the hub's sample), score a language model "
            "with `seqloom eval-lm`"
        )
    if gen.constraints is not None:
        raise ValueError(
            f"--constraints {gen.constraints}: binarized data holds no constraints (fairseq-generate fails here "
            "too); give them to `seqloom interactive --constraints` as tab-separated fields after each source line"
        )
    torch.manual_seed(common.seed)
    if gen.sacrebleu:
        args.set(scoring="sacrebleu")
    task = load_task(args, split=data.gen_subset)
    models = load_ensemble(
        ev.model_path, task, model_overrides=ev.model_overrides, random_init=draws_random_numbers(gen)
    )
    device = place_models(models, common)
    quantize_models(models, args["quantize"].quantize, common=args["common"], device=device)
    pack_models(models, args["quantize"].packed_weights, method=args["quantize"].quantize, common=args["common"],
                device=device)  # fmt: skip
    dataset = task.load_dataset(data.gen_subset)
    from seqloom.tasks.base import require_batches

    itr = task.get_batch_iterator(dataset, batching_options(data, common, task, models))
    batches = require_batches(itr, data.gen_subset).next_epoch_itr(shuffle=False)
    generator = build_generator(models, task.target_dictionary, gen, common=common, model_overrides=ev.model_overrides,
                                eos=task.generation_eos)  # fmt: skip
    strip = symbols_to_strip(generator, task.target_dictionary, task)
    codec = TextCodec.from_args(args)
    scorer = build_scorer(args["scoring"], pad=task.target_dictionary.pad(), eos=task.target_dictionary.eos(),
                          unk=task.target_dictionary.unk())  # fmt: skip
    totals = Totals()
    align_dict = load_align_dict(gen.replace_unk)
    prefix_token = task.inference_prefix_token
    samples = (sample for sample in progress_bar(batches, common) if "net_input" in sample)  # (a shard may lack one)
    workers = decode_threads(args, generator, device)
    done: Iterator[tuple[dict[str, Any], list[list[Hypothesis]] | None]] = ((sample, None) for sample in samples)
    if len(workers) > 1:
        start = time.perf_counter()
        if can_fork():  # worker processes: the models' memory is shared, the Python between kernels is not
            done = in_order_on_processes(samples, lambda s: run_inference(generator, s, gen, device,
                                                                          prefix_token=prefix_token), len(workers))  # fmt: skip
        else:
            done = in_order_on_threads(samples, lambda g, s: run_inference(g, s, gen, device,
                                                                           prefix_token=prefix_token), workers)  # fmt: skip
    for sample, hyps in done:
        if hyps is None:
            start = time.perf_counter()
            hyps = run_inference(generator, sample, gen, device, prefix_token=prefix_token)
            totals.seconds += time.perf_counter() - start
        else:  # wall-clock time, printing included: the threads overlap
            totals.seconds = time.perf_counter() - start
        totals.tokens += sum(len(h[0].tokens) for h in hyps)
        totals.sentences += len(hyps)
        totals.has_target = sample.get("target") is not None
        write_batch(sample, hyps, task=task, args=args, codec=codec, scorer=scorer, align_dict=align_dict, out=out,
                    strip=strip)  # fmt: skip
    report(totals, args, scorer, out)
    return 0


def batching_options(data: DatasetConfig, common: CommonConfig, task: Any, models: list[Any]) -> BatchingOptions:
    from seqloom.data.batching import resolve_max_positions
    from seqloom.tasks.base import BatchingOptions

    return BatchingOptions(
        max_tokens=data.max_tokens,
        max_sentences=data.batch_size,
        max_positions=resolve_max_positions(task.max_positions(), *[m.max_positions() for m in models]),
        ignore_invalid_inputs=data.skip_invalid_size_inputs_valid_test,
        required_batch_size_multiple=data.required_batch_size_multiple,
        seed=common.seed,
        num_shards=data.num_shards,
        shard_id=data.shard_id,
        num_workers=0,
    )


def write_batch(sample: dict[str, Any], hyps: list[list[Hypothesis]], *, task: Any, args: ParsedArgs,
                codec: TextCodec, scorer: Scorer, align_dict: dict[str, str] | None, out: TextIO,
                strip: frozenset[int] = frozenset()) -> None:  # fmt: skip
    """Prints one batch's lines and adds its top hypotheses to the corpus score (``strip``: symbols besides
    ``</s>`` left out of the texts)."""
    ev, gen = args["common_eval"], args["generation"]
    tgt_dict = task.target_dictionary
    for i, sample_id in enumerate(sample["id"].tolist()):
        src_str, target_str, target_tokens = sample_strings(sample, i, task=task, post_process=ev.post_process,
                                                            strip=strip)  # fmt: skip
        src_str = codec.decode(src_str) if src_str is not None else None
        target_str = codec.decode(target_str) if target_str is not None else None
        if not ev.quiet:
            if src_str is not None:
                print(f"S-{sample_id}\t{src_str}", file=out)
            if target_str is not None:
                print(f"T-{sample_id}\t{target_str}", file=out)
        for j, hyp in enumerate(hyps[i][: gen.nbest]):
            hypo_str = post_process_prediction(hyp, src_str=src_str or "", align_dict=align_dict, tgt_dict=tgt_dict,
                                               post_process=ev.post_process, strip=strip)  # fmt: skip
            detok = codec.decode(hypo_str)
            if not ev.quiet:
                for line in hypothesis_lines(sample_id, hyp, hypo_str, detok, print_alignment=gen.print_alignment):
                    print(line, file=out)
            if j == 0 and target_str is not None and target_tokens is not None:
                add_to_score(scorer, target_tokens, target_str, hyp, detok, tokens_from_text=align_dict is not None
                             or ev.post_process is not None, dictionary=codec.scoring_dictionary(tgt_dict))  # fmt: skip


def add_to_score(scorer: Scorer, target_tokens: torch.Tensor, target_str: str, hyp: Hypothesis, detok: str, *,
                 tokens_from_text: bool, dictionary: Dictionary) -> None:  # fmt: skip
    """fairseq's rule: BLEU on token ids, re-encoded from the text when BPE was removed or unks replaced."""
    if not isinstance(scorer, BleuScorer):  # the others score the text
        scorer.add_string(target_str, detok)
        return
    hypo_tokens = hyp.tokens
    if tokens_from_text:
        target_tokens = dictionary.encode_line(target_str, add_if_not_exist=True)
        hypo_tokens = dictionary.encode_line(detok, add_if_not_exist=True)
    scorer.add(target_tokens.tolist(), hypo_tokens.tolist())


def report(totals: Totals, args: ParsedArgs, scorer: Scorer, out: TextIO) -> None:
    logger.info("NOTE: hypothesis and token scores are output in base 2")
    seconds = max(totals.seconds, 1e-9)
    logger.info(
        "Translated %s sentences (%s tokens) in %.1fs (%.2f sentences/s, %.2f tokens/s)",
        f"{totals.sentences:,}", f"{totals.tokens:,}", totals.seconds, totals.sentences / seconds,
        totals.tokens / seconds,
    )  # fmt: skip
    if totals.has_target and totals.sentences > 0:
        beam = args["generation"].beam
        print(f"Generate {args['dataset'].gen_subset} with beam={beam}: {scorer.result_string()}", file=out)


if __name__ == "__main__":
    sys.exit(main())
