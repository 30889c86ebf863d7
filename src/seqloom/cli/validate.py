"""``seqloom validate DATA --path CKPT --valid-subset valid,test --task translation``: fairseq-validate.

Prints, per subset, fairseq-validate's line (one aggregate over the whole subset)::

    valid on 'valid' subset | loss 8.368 | nll_loss 7.872 | ppl 234.26 | wps 0 | wpb 8825 | bsz 200

The criterion is the checkpoint's own (e.g. label smoothing 0.1), as fairseq-validate rebuilds it; criterion
options given on the command line win (``--criterion sentence_ranking --save-predictions FILE``), as in fairseq.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from seqloom.checkpoint.io import CheckpointError
from seqloom.cli.build import build_task
from seqloom.cli.model_loading import export_defaults, parse_model_overrides
from seqloom.cli.parser import ParsedArgs, parse_args
from seqloom.cli.specs import VALIDATE as SPEC
from seqloom.config.options import from_namespace
from seqloom.devices import inference_dtype, select_device
from seqloom.logs import setup_logging
from seqloom.tasks.base import BatchingOptions, require_batches
from seqloom.trainer.meters import Meter, concat_logging_lists, sum_logging_outputs
from seqloom.trainer.progress import Progress, resolve_log_format
from seqloom.trainer.trainer import move_to_device

logger = logging.getLogger("seqloom.cli.validate")


def checkpoint_component(state: dict[str, Any], kind: str) -> tuple[str | None, dict[str, Any]]:
    """A component's name and option values as the checkpoint recorded them (hydra ``cfg`` or ``args``)."""
    cfg = state.get("cfg")
    if isinstance(cfg, dict) and isinstance(cfg.get(kind), argparse.Namespace):  # a component without a dataclass
        values = dict(vars(cfg[kind]))  # (fairseq's sentence_ranking): its section is the run's whole Namespace
        return values.get(kind), values
    if isinstance(cfg, dict) and isinstance(cfg.get(kind), dict):
        section = dict(cfg[kind])
        return section.pop("_name", None), section
    args = state.get("args")
    if args is not None:
        values = dict(vars(args))
        return values.get(kind), values
    return None, {}


def criterion_from_checkpoint(state: dict[str, Any], padding_idx: int, given: dict[str, Any] | None = None,
                              *, fallback: str | None = None) -> torch.nn.Module:  # fmt: skip
    """The checkpoint's criterion with its options (``--label-smoothing`` ...) and ``--sentence-avg``; ``given``:
    criterion options set on the command line, which win over the checkpoint's (as fairseq-validate's overrides,
    e.g. sentence_ranking's ``--save-predictions``). ``fallback``: the criterion for a checkpoint that records
    none (a ``seqloom export`` keeps the model and task only), else cross_entropy."""
    from seqloom import registry
    from seqloom.criterions import build_criterion

    name, values = checkpoint_component(state, "criterion")
    if name is None and fallback is None:
        logger.warning("the checkpoint records no criterion (an export keeps the model and task only): validating "
                       "with cross_entropy; pass --criterion NAME for another loss (e.g. --criterion masked_lm)")  # fmt: skip
    name = name or fallback or "cross_entropy"
    values = {**values, **(given or {})}
    cls = registry.CRITERIONS.config_cls(name) if name in registry.CRITERIONS else None
    cfg = from_namespace(cls, values) if cls is not None else None
    _, opt = checkpoint_component(state, "optimization")
    sentence_avg = bool(values.get("sentence_avg", opt.get("sentence_avg", False)))
    return build_criterion(name, cfg, padding_idx=padding_idx, sentence_avg=sentence_avg)


def load_model(path: str, task: Any, overrides: dict[str, Any], device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The model of checkpoint ``path`` in eval mode, and the checkpoint dict."""
    from seqloom.cli.model_loading import load_model_checkpoint
    from seqloom.models.loading import model_from_state

    logger.info("loading model(s) from %s", path)
    state = load_model_checkpoint(path)
    model = model_from_state(state, task.source_dictionary, task.target_dictionary, source=path, overrides=overrides)
    return model.to(device).eval(), state


def validate_subset(
    model: torch.nn.Module, criterion: torch.nn.Module, itr: Iterable[dict[str, Any]], device: torch.device
) -> dict[str, float]:
    """One aggregate of the criterion's logging outputs over every batch of ``itr``."""
    outputs = []
    start = time.perf_counter()
    with torch.no_grad():
        for sample in itr:
            if not sample:
                continue
            _, sample_size, log = criterion(model, move_to_device(sample, device))
            outputs.append({**log, "sample_size": float(sample_size)})
    meter = Meter(reduce=getattr(criterion, "reduce_metrics", None))
    meter.start = start
    meter.add(sum_logging_outputs(outputs))
    meter.lists = concat_logging_lists(outputs)
    return meter.stats(ups=False)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parsed = parse_args(SPEC, argv, defaults=export_defaults(argv, text=False))
    setup_logging(None, parsed["common"].log_file)
    if not parsed["common_eval"].path:
        logger.error("seqloom validate: --path CHECKPOINT is required")
        return 2
    try:
        return run(parsed)
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        logger.error("%s", err)
        return 1


def run(parsed: ParsedArgs) -> int:
    """Validates the checkpoint on each ``--valid-subset``; prints one line per subset."""
    common, ds, ev = parsed["common"], parsed["dataset"], parsed["common_eval"]
    device = select_device(cpu=common.cpu)
    torch.manual_seed(common.seed)
    if not ev.model_path:
        raise ValueError("seqloom validate: --path CHECKPOINT is required")
    task = build_task(parsed)
    overrides = parse_model_overrides(ev.model_overrides)
    model, state = load_model(ev.model_path.split(os.pathsep)[0], task, overrides, device)
    model = model.to(dtype=inference_dtype(fp16=common.fp16, bf16=common.bf16))  # --fp16/--bf16: cast, as fairseq
    given = given_criterion_options(parsed)
    # without a recorded criterion: the one named by --criterion, else the one the task's batches are made for
    fallback = parsed.components.criterion or getattr(task, "required_criterion", None)
    criterion = criterion_from_checkpoint(state, task.target_dictionary.pad(), given, fallback=fallback)
    criterion = criterion.to(device).eval()
    bind_task = getattr(criterion, "bind_task", None)  # e.g. sentence_prediction reads the label dictionary
    if callable(bind_task):
        bind_task(task)
    progress = Progress(resolve_log_format(common.log_format, no_progress_bar=True))
    max_positions = getattr(model, "max_positions", None)
    model_max = max_positions() if callable(max_positions) else None
    for subset in ds.valid_subset.split(","):
        dataset = task.load_dataset(subset, epoch=1, combine=False)
        options = BatchingOptions(
            max_tokens=ds.max_tokens,
            max_sentences=ds.batch_size,
            max_positions=_resolve(task.max_positions(), model_max),
            ignore_invalid_inputs=ds.skip_invalid_size_inputs_valid_test,
            required_batch_size_multiple=ds.required_batch_size_multiple,
            seed=common.seed,
            num_workers=ds.num_workers,
            data_buffer_size=ds.data_buffer_size,
        )
        itr = require_batches(task.get_batch_iterator(dataset, options), subset).next_epoch_itr(shuffle=False)
        stats = validate_subset(model, criterion, itr, device)
        progress.print(stats, tag=subset, step=None, epoch=None, prefix=f"valid on '{subset}' subset")
    return 0


def given_criterion_options(parsed: ParsedArgs) -> dict[str, Any]:
    """The ``--criterion``'s options whose values the command line (or ``--config``) changed from the defaults."""
    cfg = parsed.get("criterion")
    if cfg is None or not dataclasses.is_dataclass(cfg):
        return {}
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
            if f.name in parsed.defaults and getattr(cfg, f.name) != parsed.defaults[f.name]}  # fmt: skip


def _resolve(*limits: int | tuple[int | None, int | None] | None) -> tuple[int | None, int | None]:
    from seqloom.data.batching import resolve_max_positions

    return resolve_max_positions(*limits)


if __name__ == "__main__":
    sys.exit(main())
