"""fairseq options that seqloom does not take, and what a pasted command line gets for each.

Two kinds:

* ``IGNORED``: options whose job seqloom already does another way, so they change nothing here. They are
  accepted (with the value they take, if any) and a note on stderr says why nothing changes.
* ``UNSUPPORTED``: options of features seqloom does not implement (TPUs, BMUF, model or pipeline
  parallelism, AzureML and Aim logging, ...). The command stops with the reason and, where there is one, the
  option to use instead, rather than argparse's "unrecognized argument" with a guess at a similar name.
"""

from __future__ import annotations

from collections.abc import Sequence

# flag -> (takes a value, why it changes nothing in seqloom)
IGNORED: dict[str, tuple[bool, str]] = {
    "--distributed-no-spawn": (False, "seqloom never starts one process per visible GPU; torchrun starts them"),
    "--fast-stat-sync": (False, "seqloom already sums the logged statistics of all ranks in one all-reduce"),
    "--all-gather-list-size": (True, "seqloom gathers no pickled lists into a fixed-size buffer"),
    "--reset-logging": (False, "logging is set up once per command"),
    "--suppress-crashes": (False, "it applies to fairseq's hydra_train sweeps only"),
    "--on-cpu-convert-precision": (False, "it applies to TPUs only"),
    "--plasma-path": (True, "it applies with --use-plasma-view only, which seqloom does not support"),
    "--global-sync-iter": (True, "it applies with --use-bmuf only, which seqloom does not support"),
    "--block-lr": (True, "it applies with --use-bmuf only, which seqloom does not support"),
    "--block-momentum": (True, "it applies with --use-bmuf only, which seqloom does not support"),
    "--slowmo-momentum": (True, "it applies with --ddp-backend slowmo only, which seqloom does not support"),
    "--slowmo-base-algorithm": (True, "it applies with --ddp-backend slowmo only, which seqloom does not support"),
    "--localsgd-frequency": (True, "it applies with --ddp-backend slowmo only, which seqloom does not support"),
}

# flag -> (the value that means "off" in fairseq, why that changes nothing here); other values: UNSUPPORTED
IGNORED_WHEN_OFF: dict[str, tuple[str, str]] = {
    "--heartbeat-timeout": ("-1", "-1 turns fairseq's heartbeat watchdog off, and seqloom has none"),
    "--model-parallel-size": ("1", "1 is no model parallelism"),
    "--checkpoint-shard-count": ("1", "1 is one checkpoint file, which seqloom always writes"),
    "--nprocs-per-node": ("1", "one process per node is what a plain run is"),
    "--ddp-comm-hook": ("none", "none is DDP without a communication hook"),
}

_DISTRIBUTED = "use torchrun with --ddp-backend pytorch_ddp or fully_sharded"
_LOGGING = "use --tensorboard-logdir or --wandb-project"

# flag -> what seqloom lacks, and what to use instead
UNSUPPORTED: dict[str, str] = {
    "--tpu": "TPUs (PyTorch/XLA) are not supported",
    "--use-bmuf": f"BMUF training is not implemented; {_DISTRIBUTED}",
    "--nprocs-per-node": "start the processes with torchrun --nproc-per-node N",
    "--heartbeat-timeout": "there is no heartbeat watchdog; torch.distributed's own timeouts apply",
    "--model-parallel-size": "Megatron model parallelism is not implemented",
    "--pipeline-model-parallel": "pipeline parallelism is not implemented",
    "--ddp-comm-hook": "DDP communication hooks (fp16 gradient compression) are not implemented",
    "--fp32-reduce-scatter": "fairscale's FSDP options do not apply: seqloom's FSDP is torch's fully_shard",
    "--not-fsdp-flatten-parameters": "fairscale's FSDP options do not apply: seqloom's FSDP is torch's fully_shard",
    "--checkpoint-shard-count": "checkpoints are always one full file (also under FSDP)",
    "--load-checkpoint-on-all-dp-ranks": "checkpoints are always one full file, read by every rank",
    "--azureml-logging": f"AzureML logging is not supported; {_LOGGING}",
    "--aim-repo": f"Aim logging is not supported; {_LOGGING}",
    "--aim-run-hash": f"Aim logging is not supported; {_LOGGING}",
    "--profile": "NVTX profiling ranges are not emitted; run the command under torch.profiler instead",
    "--use-plasma-view": "the Plasma object store is not supported",
    "--quantization-config-path": "fairseq's quantization (iterative PQ) is not implemented",
    **{
        flag: "iterative refinement (fairseq's non-autoregressive models) is not implemented"
        for flag in (
            "--print-step",
            "--retain-iter-history",
            "--iter-decode-eos-penalty",
            "--iter-decode-max-iter",
            "--iter-decode-force-max-iter",
            "--iter-decode-with-beam",
            "--iter-decode-with-external-reranker",
        )
    },
}


def strip_ignored(argv: Sequence[str], known: set[str]) -> tuple[list[str], list[str]]:
    """``argv`` without the ``IGNORED`` options (and their values), and one note for each one removed.

    A flag the command's own parser defines (``known``) is left alone."""
    out: list[str] = []
    notes: list[str] = []
    skip_value = False
    for i, arg in enumerate(argv):
        if skip_value:
            skip_value = False
            continue
        name = arg.split("=", 1)[0]
        if name in IGNORED_WHEN_OFF and name not in known:
            off, why = IGNORED_WHEN_OFF[name]
            value = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else None)
            if value == off:
                skip_value = "=" not in arg
                notes.append(f"ignoring fairseq's {name} {off}: {why}")
                continue
        if name in IGNORED and name not in known:
            takes_value, why = IGNORED[name]
            skip_value = takes_value and "=" not in arg
            notes.append(f"ignoring fairseq's {name}: {why}")
            continue
        out.append(arg)
    return out, notes


def unsupported_message(name: str) -> str | None:
    """The error for fairseq option ``name`` when seqloom does not support it; None for other names."""
    why = UNSUPPORTED.get(name)
    return None if why is None else f"{name} is a fairseq option that seqloom does not support: {why}"


def config_key_note(key: str, value: object) -> tuple[bool, str | None]:
    """What a ``--config`` file's ``key`` (an option name seqloom's parser lacks) gets: (accepted, message).

    An ``IGNORED`` option, or an ``UNSUPPORTED`` one left off (false, empty, ``None``, or fairseq's "off"
    value), is accepted: the message is a note, or None when the option is simply off. Any other value of an
    ``UNSUPPORTED`` option is refused with its reason; other keys give (False, None)."""
    flag = "--" + key.replace("_", "-")
    if flag in IGNORED:
        return True, f"ignoring fairseq's {flag}: {IGNORED[flag][1]}"
    off = IGNORED_WHEN_OFF.get(flag, (None, ""))[0]
    if flag in UNSUPPORTED or flag in IGNORED_WHEN_OFF:
        if value in (False, None, "", 0) or str(value) == off:
            return True, None
        return False, unsupported_message(flag)
    return False, None
