"""``seqloom interactive DATA --path CKPT``: translate raw text from stdin (or ``--input``), as fairseq-interactive.

Each line is tokenized (``--tokenizer``), split into subwords (``--bpe``) and looked up in the source
dictionary; ``--buffer-size`` lines are translated together and printed in input order as ``S-`` (the
encoded source), ``W-`` (seconds), then per hypothesis ``H-``, ``D-`` (BPE and tokenization undone) and ``P-``.
Empty and over-long lines are reported on stderr and skipped (their numbers stay reserved).

With ``--constraints``, tab-separated fields after the source are target phrases every translation must
contain (encoded like the source, printed as ``C-`` lines), as in fairseq-interactive.
"""

from __future__ import annotations

import io
import logging
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import torch

from seqloom.checkpoint.io import CheckpointError
from seqloom.cli.decoding import (
    TextCodec,
    build_generator,
    decode_threads,
    draws_random_numbers,
    load_task,
    pack_models,
    place_models,
    quantize_models,
    run_inference,
    symbols_to_strip,
)
from seqloom.cli.model_loading import export_defaults, load_ensemble
from seqloom.cli.output_lines import hypothesis_lines, load_align_dict, post_process_prediction
from seqloom.cli.parallel_decoding import can_fork, in_order_on_processes
from seqloom.cli.parser import ParsedArgs, parse_args
from seqloom.cli.specs import INTERACTIVE as SPEC
from seqloom.data.bom import strip_bom_lines
from seqloom.generation.constraint_states import pack_constraints
from seqloom.generation.generator import SequenceGenerator
from seqloom.generation.hypotheses import Hypothesis
from seqloom.generation.scorer import SequenceScorer
from seqloom.logs import setup_logging

logger = logging.getLogger("seqloom.interactive")


def buffered_read(stream: TextIO, buffer_size: int, name: str = "stdin") -> Iterator[list[str]]:
    """Chunks of ``buffer_size`` stripped lines. ``stream`` decodes with ``surrogateescape``, so that a line that
    is not UTF-8 is named by its number (ValueError) instead of failing somewhere in a decoded chunk."""
    buffer: list[str] = []
    for number, line in enumerate(strip_bom_lines(stream, name), 1):
        if any("\udc80" <= c <= "\udcff" for c in line):
            if buffer:  # the good lines read before it are translated first
                yield buffer
            raise ValueError(f"{name}:{number}: the line is not valid UTF-8 (the input must be UTF-8 text)")
        buffer.append(line.strip())
        if len(buffer) >= buffer_size:
            yield buffer
            buffer = []
    if buffer:
        yield buffer


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(SPEC, argv, defaults=export_defaults(argv, text=True))
    setup_logging(args["common"].log_format, args["common"].log_file)
    data, inter = args["dataset"], args["interactive"]
    if data.max_tokens is None and data.batch_size is None:
        args.set(batch_size=1)
    if args["generation"].sampling and args["generation"].nbest != args["generation"].beam:
        raise SystemExit(
            "--sampling draws one hypothesis per beam, so --nbest must equal --beam (got --nbest {} and --beam {})".format(
                args["generation"].nbest, args["generation"].beam
            )
        )
    try:
        if inter.input == "-":
            if isinstance(sys.stdin, io.TextIOWrapper):
                sys.stdin.reconfigure(errors="surrogateescape")
            return run(args, sys.stdin, sys.stdout)
        if not Path(inter.input).is_file():
            raise FileNotFoundError(f"--input {inter.input}: no such file")
        with open(inter.input, encoding="utf-8", errors="surrogateescape") as stream:
            return run(args, stream, sys.stdout, name=inter.input)
    except (FileNotFoundError, ValueError, NotImplementedError, CheckpointError) as err:
        print(f"seqloom interactive: error: {err}", file=sys.stderr)
        return 1


def run(args: ParsedArgs, stream: TextIO, out: TextIO, *, name: str = "stdin") -> int:
    torch.manual_seed(args["common"].seed)
    task = load_task(args)
    models = load_ensemble(args["common_eval"].model_path, task, model_overrides=args["common_eval"].model_overrides,
                           random_init=draws_random_numbers(args["generation"]))  # fmt: skip
    device = place_models(models, args["common"])
    quantize_models(models, args["quantize"].quantize, common=args["common"], device=device)
    pack_models(models, args["quantize"].packed_weights, method=args["quantize"].quantize, common=args["common"],
                device=device)  # fmt: skip
    generator = build_generator(models, task.target_dictionary, args["generation"], common=args["common"],
                                model_overrides=args["common_eval"].model_overrides,
                                eos=task.generation_eos)  # fmt: skip
    codec = TextCodec.from_args(args)
    limits = [(task.max_positions() or (None, None))[0], *[m.max_positions()[0] for m in models]]
    max_source = min(limit for limit in limits if limit is not None)
    if args["generation"].constraints:
        logger.warning("NOTE: constrained decoding assumes a subword vocabulary shared by source and target")
    logger.info("NOTE: hypothesis and token scores are output in base 2")
    logger.info("Type the input sentence and press return:")
    start_id, started, translating = 0, time.perf_counter(), 0.0
    workers = len(decode_threads(args, generator, device)) if can_fork() else 1
    for lines in buffered_read(stream, max(1, args["interactive"].buffer_size), name):
        translating += translate_chunk(lines, start_id, task=task, generator=generator, codec=codec, args=args,
                                       max_source=max_source, out=out, device=device, workers=workers)  # fmt: skip
        start_id += len(lines)
    logger.info("Total time: %.3f seconds; translation time: %.3f", time.perf_counter() - started, translating)
    return 0


def encode_lines(lines: list[str], start_id: int, *, task: Any, codec: TextCodec, max_source: int,
                 constrained: bool = False
                 ) -> tuple[list[int], list[torch.Tensor], list[list[torch.Tensor]]]:  # fmt: skip
    """The usable lines (positions in ``lines``), their source ids and (``constrained``: read from the
    tab-separated fields after the source) their constraints; empty and over-long lines are reported."""
    constraints: list[list[torch.Tensor]] = []
    keep, tokens = [], []
    for k, line in enumerate(lines):
        number = start_id + k
        found: list[torch.Tensor] = []
        if constrained:
            line, *phrases = line.split("\t")
            parsed = encode_constraints(phrases, number, task=task, codec=codec)
            if parsed is None:
                continue
            found = parsed
        if not line:
            logger.warning("input %d is an empty line: nothing to work on, skipped", number)
            continue
        ids = task.source_dictionary.encode_line(codec.encode(line), add_if_not_exist=False).long()
        if len(ids) > max_source:
            logger.warning(
                "input %d has %d tokens after tokenization/BPE (with </s>), more than the model's %d source "
                "positions; skipped (split the line into shorter sentences)", number, len(ids), max_source,
            )  # fmt: skip
            continue
        keep.append(k)
        tokens.append(ids)
        if constrained:
            constraints.append(found)
    return keep, tokens, constraints


def encode_constraints(phrases: list[str], number: int, *, task: Any, codec: TextCodec) -> list[torch.Tensor] | None:
    """The target-side token ids of each constraint phrase of input ``number`` (None: the line is skipped)."""
    found = []
    tgt_dict = task.target_dictionary
    for j, phrase in enumerate(phrases, start=1):
        ids = tgt_dict.encode_line(codec.encode(phrase), append_eos=False, add_if_not_exist=False).long()
        if len(ids) == 0:
            logger.warning("input %d: constraint %d is empty (two tabs in a row?); skipped the line", number, j)
            return None
        if bool(ids.eq(tgt_dict.unk()).any()):
            logger.warning("input %d: constraint %d (%r) has words the target dictionary lacks (%s)", number, j,
                           phrase, tgt_dict.unk_word)  # fmt: skip
        found.append(ids)
    return found


def translate_chunk(lines: list[str], start_id: int, *, task: Any, generator: SequenceGenerator | SequenceScorer,
                    codec: TextCodec,
                    args: ParsedArgs, max_source: int, out: TextIO, device: torch.device | None = None,
                    workers: int = 1) -> float:  # fmt: skip
    """Translates and prints one buffer of lines; returns the seconds spent translating (with ``workers`` > 1,
    the buffer's batches are decoded that many at once in forked processes, as ``generate --decode-threads``)."""
    from seqloom.tasks.base import BatchingOptions

    data, gen = args["dataset"], args["generation"]
    keep, tokens, constraints = encode_lines(lines, start_id, task=task, codec=codec, max_source=max_source,
                                             constrained=gen.constraints is not None)  # fmt: skip
    if not tokens:
        return 0.0
    dataset = task.build_dataset_for_inference(tokens)
    options = BatchingOptions(max_tokens=data.max_tokens, max_sentences=data.batch_size, seed=1)
    prefix_token = task.inference_prefix_token

    def decode(sample: dict[str, Any]) -> tuple[list[list[Hypothesis]], float]:
        packed = pack_constraints([constraints[k] for k in sample["id"].tolist()]) if constraints else None
        begin = time.perf_counter()
        hyps = run_inference(generator, sample, gen, device, constraints=packed, prefix_token=prefix_token)
        return hyps, time.perf_counter() - begin

    samples = [s for s in task.get_batch_iterator(dataset, options).next_epoch_itr(shuffle=False) if "net_input" in s]
    if workers > 1 and len(samples) > 1:  # --decode-threads: the chunk's batches in worker processes at once
        decoded: Iterable[tuple[dict[str, Any], tuple[list[list[Hypothesis]], float]]] = in_order_on_processes(
            samples, decode, min(workers, len(samples))
        )
    else:
        decoded = ((sample, decode(sample)) for sample in samples)
    results = []
    spent = 0.0
    for sample, (hyps, elapsed) in decoded:
        ids = sample["id"].tolist()
        spent += elapsed
        for i, k in enumerate(ids):
            src = sample["net_input"]["src_tokens"][i]
            results.append((start_id + keep[k], src[src.ne(task.target_dictionary.pad())], hyps[i],
                            elapsed / len(hyps), constraints[k] if constraints else []))  # fmt: skip
    for number, src_tokens, sentence_hyps, seconds, phrases in sorted(results, key=lambda r: r[0]):
        print_result(number, src_tokens, sentence_hyps, seconds, task=task, codec=codec, args=args, out=out,
                     constraints=phrases, strip=symbols_to_strip(generator, task.target_dictionary, task))  # fmt: skip
    return spent


def print_result(number: int, src_tokens: torch.Tensor, hyps: list[Hypothesis], seconds: float, *, task: Any,
                 codec: TextCodec, args: ParsedArgs, out: TextIO, constraints: Sequence[torch.Tensor] = (),
                 strip: frozenset[int] = frozenset()) -> None:  # fmt: skip
    ev, gen = args["common_eval"], args["generation"]
    src_str = task.source_dictionary.string(src_tokens, ev.post_process)
    print(f"S-{number}\t{src_str}", file=out)
    print(f"W-{number}\t{seconds:.3f}\tseconds", file=out)
    for phrase in constraints:
        print(f"C-{number}\t{task.target_dictionary.string(phrase, ev.post_process)}", file=out)
    align_dict = load_align_dict(gen.replace_unk)
    for hyp in hyps[: min(len(hyps), gen.nbest)]:
        hypo_str = post_process_prediction(hyp, src_str=src_str, align_dict=align_dict,
                                           tgt_dict=task.target_dictionary, post_process=ev.post_process,
                                           strip=strip)  # fmt: skip
        for line in hypothesis_lines(number, hyp, hypo_str, codec.decode(hypo_str),
                                     print_alignment=gen.print_alignment):  # fmt: skip
            print(line, file=out)
    out.flush()


if __name__ == "__main__":
    sys.exit(main())
