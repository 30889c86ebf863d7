"""fairseq options that seqloom does not take, and what a pasted command line gets for each.

Three kinds:

* ``IGNORED``: options whose job seqloom already does another way, so they change nothing here. They are
  accepted (with the value they take, if any) and a note on stderr says why nothing changes.
* ``UNSUPPORTED``: options of features seqloom does not implement (TPUs, BMUF, model or pipeline
  parallelism, AzureML and Aim logging, ...). The command stops with the reason and, where there is one, the
  option to use instead, rather than argparse's "unrecognized argument" with a guess at a similar name.
* ``NOT_USED_HERE``: options of fairseq's configuration shared by all its commands (``--save-dir`` in
  fairseq-generate, ``--bpe`` in fairseq-preprocess): a seqloom command that does not define one accepts it
  with a note, as fairseq's command accepts it and does nothing with it.

``tests/test_fairseq_options.py`` checks every option of fairseq's commands against these tables.
"""

from __future__ import annotations

from collections.abc import Sequence

# the reasons of options that only matter with a feature or model seqloom lacks (whose switch, if any, is
# checked on its own)
PARAMETER_OF = "it applies "

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
    **{  # the rest of fairseq's bmuf section, which its config dumps write out
        flag: (takes_value, "it applies with --use-bmuf only, which seqloom does not support")
        for flag, takes_value in (("--warmup-iterations", True), ("--use-nbm", False), ("--average-sync", False))
    },
    "--slowmo-momentum": (True, "it applies with --ddp-backend slowmo only, which seqloom does not support"),
    "--slowmo-base-algorithm": (True, "it applies with --ddp-backend slowmo only, which seqloom does not support"),
    "--localsgd-frequency": (True, "it applies with --ddp-backend slowmo only, which seqloom does not support"),
    **{
        flag: (True, "it applies with --pipeline-model-parallel only, which seqloom does not support")
        for flag in (
            "--pipeline-balance",
            "--pipeline-devices",
            "--pipeline-chunks",
            "--pipeline-encoder-balance",
            "--pipeline-encoder-devices",
            "--pipeline-decoder-balance",
            "--pipeline-decoder-devices",
            "--pipeline-checkpoint",
        )
    },
    "--base-sublayers": (True, "it applies with --base-layers only, which seqloom does not support"),
    "--base-shuffle": (True, "it applies with --base-layers only, which seqloom does not support"),
    **{
        flag: (True, "it applies with --character-embeddings only, which seqloom does not support")
        for flag in ("--character-filters", "--character-embedding-dim", "--char-embedder-highway-layers")
    },
    **{
        flag: (
            True,
            "it applies to the BLEU scorer, which takes the pad, eos and unk symbols from the target "
            "dictionary (as fairseq-generate's does, whatever the flag says)",
        )
        for flag in ("--pad", "--eos", "--unk")
    },  # fmt: skip
    "--export": (False, "seqloom's layer norm is always torch's own, which is what the flag selects in fairseq"),
    "--debug-param-names": (False, "it only names parameters in fairseq's debugging output"),
    "--pad-to-fixed-bsz": (False, "it pads every batch to one size for TPUs; the results are the same without"),
    "--no-seed-provided": (False, "fairseq sets it itself when --seed is absent"),
    **{
        flag: (True, "it applies to fairseq's two-pass speech translation models (UnitY) only")
        for flag in ("--beam-mt", "--lenpen-mt", "--max-len-a-mt", "--max-len-b-mt")
    },
    "--eos-token": (True, "it applies to fairseq's speech translation tasks only"),
    **{
        flag: (
            takes_value,
            "it applies to fairseq's non-autoregressive models (iterative refinement) only, "
            "which seqloom does not implement",
        )
        for flag, takes_value in (
            ("--print-step", False),
            ("--retain-iter-history", False),
            ("--iter-decode-eos-penalty", True),
            ("--iter-decode-max-iter", True),
            ("--iter-decode-force-max-iter", False),
            ("--iter-decode-with-beam", True),
            ("--iter-decode-with-external-reranker", False),
            ("--decoding-format", True),
        )
    },  # fmt: skip
}

# flag -> (takes a value, what the option is for): options of fairseq's configuration that all its commands
# share, accepted with a note by the seqloom commands that do not define them (fairseq-generate takes
# --save-dir and does nothing with it; so does seqloom generate, with the note)
NOT_USED_HERE: dict[str, tuple[bool, str]] = {
    **{
        flag: (True, "training")
        for flag in ("--optimizer", "--lr-scheduler", "--criterion", "--warmup-updates", "--force-anneal", "--lr-shrink")
    },
    **{
        flag: (takes_value, "saving training checkpoints")
        for flag, takes_value in (
            ("--save-dir", True), ("--restore-file", True), ("--finetune-from-model", True),
            ("--continue-once", True), ("--optimizer-overrides", True), ("--reset-dataloader", False),
            ("--reset-lr-scheduler", False), ("--reset-meters", False), ("--reset-optimizer", False),
            ("--save-interval", True), ("--save-interval-updates", True), ("--keep-interval-updates", True),
            ("--keep-interval-updates-pattern", True), ("--keep-last-epochs", True),
            ("--keep-best-checkpoints", True), ("--no-save", False), ("--no-epoch-checkpoints", False),
            ("--no-last-checkpoints", False), ("--no-save-optimizer-state", False),
            ("--best-checkpoint-metric", True), ("--maximize-best-checkpoint-metric", False), ("--patience", True),
            ("--save-async", False), ("--write-checkpoints-asynchronously", False),
        )
    },
    **{
        flag: (takes_value, "distributed training")
        for flag, takes_value in (
            ("--ddp-backend", True), ("--bucket-cap-mb", True), ("--broadcast-buffers", False),
            ("--find-unused-parameters", False), ("--gradient-as-bucket-view", False), ("--zero-sharding", True),
            ("--cpu-offload", False), ("--no-reshard-after-forward", False), ("--distributed-world-size", True),
            ("--distributed-rank", True), ("--distributed-backend", True), ("--distributed-init-method", True),
            ("--distributed-port", True), ("--distributed-num-procs", True), ("--device-id", True),
            ("--local_rank", True),
        )
    },
    **{flag: (True, "generation (seqloom generate and interactive)") for flag in ("--tokenizer", "--bpe", "--scoring")},
}  # fmt: skip

# flag -> (the value that means "off" in fairseq, why that changes nothing here); other values: UNSUPPORTED
IGNORED_WHEN_OFF: dict[str, tuple[str, str]] = {
    "--heartbeat-timeout": ("-1", "-1 turns fairseq's heartbeat watchdog off, and seqloom has none"),
    "--model-parallel-size": ("1", "1 is no model parallelism"),
    "--checkpoint-shard-count": ("1", "1 is one checkpoint file, which seqloom always writes"),
    "--nprocs-per-node": ("1", "one process per node is what a plain run is"),
    "--ddp-comm-hook": ("none", "none is DDP without a communication hook"),
    "--base-layers": ("0", "0 is no BASE layers"),
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
    "--base-layers": "BASE layers (fairseq's sparse mixture of experts) are not implemented",
    "--use-sharded-state": "checkpoints are always one full file (also under FSDP)",
    "--char-inputs": "character-level inputs (fairseq's character CNN embedder) are not implemented",
    "--encoder-xformers-att-config": "xFormers attention is not used: attention runs on torch's SDPA kernels",
    "--decoder-xformers-att-config": "xFormers attention is not used: attention runs on torch's SDPA kernels",
    "--fix-batches-to-gpus": "keeping each GPU's batches from one epoch to the next is not implemented",
    "--d2v2-multi": "data2vec 2.0 models are not implemented",
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
        if name in NOT_USED_HERE and name not in known:
            takes_value, purpose = NOT_USED_HERE[name]
            skip_value = takes_value and "=" not in arg
            notes.append(f"ignoring fairseq's {name}: an option of {purpose}, which this command does not do")
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
    if flag in IGNORED:  # set: a note; unset, or a parameter of a feature left off (its switch is checked
        # on its own): nothing to say, as fairseq's dumps write all of them out
        why = IGNORED[flag][1]
        quiet = value in (False, None, "") or why.startswith(PARAMETER_OF)
        return True, None if quiet else f"ignoring fairseq's {flag}: {why}"
    if flag in NOT_USED_HERE:
        return True, None  # fairseq writes its whole shared configuration into every config file
    off = IGNORED_WHEN_OFF.get(flag, (None, ""))[0]
    if flag in UNSUPPORTED or flag in IGNORED_WHEN_OFF:
        if value in (False, None, "", 0) or str(value) == off:
            return True, None
        return False, unsupported_message(flag)
    return False, None


def handled_elsewhere(flag: str) -> bool:
    """Whether a command that does not define fairseq's ``flag`` accepts it with a note or refuses it with the
    reason (rather than as an unknown option)."""
    return flag in IGNORED or flag in UNSUPPORTED or flag in IGNORED_WHEN_OFF or flag in NOT_USED_HERE
