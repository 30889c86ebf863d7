"""Turning parsed options into the task, model and criterion (shared by ``train`` and ``validate``)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from torch import nn

from seqloom import registry
from seqloom.cli.parser import ParsedArgs

logger = logging.getLogger(__name__)


def build_task(parsed: ParsedArgs) -> Any:
    """``--task`` set up from a copy of its config: what the task infers (the languages of the data folder) stays
    the task's, the parsed options (a checkpoint's ``args``) keep what was given."""
    name = parsed.components.required("task", registry.TASKS.names())
    task_cls = registry.TASKS.get(name)
    cfg = parsed["task"]
    criterion = parsed.get("criterion")
    shared = {  # fairseq's II("criterion.<option>") in task configs
        option: getattr(criterion, option)
        for option in getattr(type(cfg), "FROM_CRITERION", ())
        if criterion is not None and hasattr(criterion, option)
    }
    dataset = parsed.get("dataset")
    impl = dataset.dataset_impl if dataset is not None else None
    task = task_cls.setup_task(dataclasses.replace(cfg, **shared), dataset_impl=impl)
    multiple = dataset.required_seq_len_multiple if dataset is not None else 1
    if multiple != 1:  # fairseq's II("dataset.required_seq_len_multiple") in the translation task's config
        if not hasattr(task, "pad_to_multiple"):
            raise SystemExit(f"--required-seq-len-multiple is not supported by --task {name}; leave it at 1")
        task.pad_to_multiple = multiple
    return task


def build_model(parsed: ParsedArgs, task: Any) -> nn.Module:
    """``--arch``'s model, built from its (preset + flags) config and the task's dictionaries."""
    arch = parsed.components.required("arch", registry.ARCHITECTURES.names())
    model_name = registry.ARCHITECTURES.get(arch).model
    build = registry.BUILDERS.get(model_name)
    model = build(parsed["model"], task.source_dictionary, task.target_dictionary)
    return task.prepare_model(model)  # e.g. sentence_prediction adds its classification head


def build_criterion(parsed: ParsedArgs, task: Any) -> nn.Module:
    """``--criterion`` built from its config, the target dictionary's pad and ``--sentence-avg``."""
    from seqloom.criterions import build_criterion as build

    optimization = parsed.get("optimization")
    sentence_avg = optimization is not None and optimization.sentence_avg
    pad = task.target_dictionary.pad()
    name = parsed.components.required("criterion", registry.CRITERIONS.names())
    required = getattr(task, "required_criterion", None)
    if required is not None and name != required:
        raise SystemExit(f"--criterion {name} cannot train --task {parsed.components.task}: use --criterion {required}")
    criterion = build(name, parsed.get("criterion"), padding_idx=pad, sentence_avg=sentence_avg)
    bind_task = getattr(criterion, "bind_task", None)  # e.g. sentence_prediction reads the label dictionary
    if callable(bind_task):
        bind_task(task)
    return criterion


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(all parameters, trainable parameters), counting shared tensors once."""
    seen: dict[int, nn.Parameter] = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in seen.values())
    trained = sum(p.numel() for p in seen.values() if p.requires_grad)
    return total, trained
