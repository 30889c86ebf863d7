"""fairseq 0.12 can read the ``args`` of seqloom's checkpoints: each value is one fairseq's config takes.

Reading a checkpoint, fairseq overrides every field of its config dataclasses with the Namespace's value of
that name: None where the field is not Optional stops it (``dataset.update_epoch_batch_itr=null``), a missing
bool whose default refers to another option turns True (``bool("${common.tpu}")``), a string must parse as the
field's type. :func:`refusals` applies those rules to the table recorded from fairseq's own dataclasses
(``fixtures/fairseq_options/arg_types.json``); no fairseq is needed. ``scripts/fairseq_reads_seqloom.py`` runs
fairseq's commands themselves on seqloom's checkpoints."""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path
from typing import Any

import pytest

from seqloom.checkpoint import load_checkpoint

TABLE = json.loads((Path(__file__).parents[1] / "fixtures" / "fairseq_options" / "arg_types.json").read_text())
GROUPS = TABLE["groups"]
TOP = ["common", "common_eval", "distributed_training", "dataset", "optimization", "checkpoint", "bmuf",
       "generation", "eval_lm", "interactive", "ema"]  # fmt: skip
REGISTRIES = ["task", "criterion", "optimizer", "lr_scheduler", "bpe", "tokenizer", "scoring"]


def groups_of(args: dict[str, Any]) -> list[str]:
    """The config groups fairseq fills from ``args`` (a component without a dataclass keeps the Namespace)."""
    found = [g for g in TOP if g in GROUPS]
    found += [f"{r}:{args[r]}" for r in REGISTRIES if f"{r}:{args.get(r)}" in GROUPS]
    model = TABLE["models"].get(args.get("arch"))
    return found + ([model] if model else [])


def _fits(kind: str, value: Any, spec: dict[str, Any]) -> bool:
    if kind == "bool":
        return isinstance(value, bool) or value in (0, 1)
    if kind in ("int", "float"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok and (kind == "float" or float(value).is_integer())
    if kind == "str":
        return isinstance(value, (str, int, float))
    if kind == "choice":
        return str(value) in spec["choices"]
    if kind.startswith("list["):
        inner = kind[5:-1]
        return isinstance(value, (list, tuple)) and all(
            _fits(inner, v, spec) if inner != "any" else True for v in value
        )
    return True


def refusals(args: dict[str, Any]) -> list[str]:
    """What fairseq's config would refuse or misread in a checkpoint's ``args``; empty when it takes them all."""
    found = []
    for group in groups_of(args):
        for name, spec in GROUPS[group].items():
            kind, default = spec["type"], spec["default"]
            if name not in args:
                if kind == "bool" and str(default).startswith("${"):
                    found.append(f"{group}.{name}: missing, fairseq reads it as True ({default} is not resolved)")
                elif default == "???":
                    found.append(f"{group}.{name}: missing and fairseq has no default")
                continue
            value = args[name]
            if value is None:
                if not spec["optional"]:
                    found.append(f"{group}.{name}: None, fairseq needs a {kind}")
                continue
            if isinstance(value, str) and kind not in ("str", "choice", "any") and not value.startswith("${"):
                try:
                    value = ast.literal_eval(value)  # as fairseq reads options stored as strings
                except (ValueError, SyntaxError):
                    found.append(f"{group}.{name}: {value!r} does not parse as a {kind}")
                    continue
            if not _fits(kind, value, spec):
                found.append(f"{group}.{name}: {value!r} is not a {kind}")
    return found


def checkpoint_args(argv: list[str]) -> dict[str, Any]:
    """The ``args`` ``seqloom train`` writes into its checkpoints for this command line."""
    from seqloom.cli.parser import parse_args
    from seqloom.cli.train import SPEC, checkpoint_namespace
    from seqloom.trainer.checkpoints import fairseq_args

    return vars(fairseq_args(checkpoint_namespace(parse_args(SPEC, argv))))


TINY = ["--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "16", "--decoder-embed-dim", "16"]
# the README's recipes (the data folder is not read)
RECIPES = {
    "translation": ["data-bin", "--arch", "transformer_iwslt_de_en", "--share-decoder-input-output-embed",
                    "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--clip-norm", "0.0", "--lr", "5e-4",
                    "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "4000", "--dropout", "0.3",
                    "--weight-decay", "0.0001", "--criterion", "label_smoothed_cross_entropy", "--label-smoothing",
                    "0.1", "--max-tokens", "4096"],
    "translation-eval-bleu": ["data-bin", "--arch", "transformer_iwslt_de_en", "--optimizer", "adam", "--lr", "5e-4",
                              "--lr-scheduler", "inverse_sqrt", "--criterion", "label_smoothed_cross_entropy",
                              "--max-tokens", "4096", "--eval-bleu", "--eval-bleu-args", '{"beam": 5, "max_len_a": 1.2}',
                              "--eval-bleu-detok", "moses", "--eval-bleu-remove-bpe", "--eval-bleu-print-samples",
                              "--best-checkpoint-metric", "bleu", "--maximize-best-checkpoint-metric"],
    "language-model": ["data-bin", "--task", "language_modeling", "--arch", "transformer_lm", "--decoder-layers", "2",
                       "--decoder-embed-dim", "128", "--share-decoder-input-output-embed", "--tokens-per-sample", "128",
                       "--sample-break-mode", "none", "--max-tokens", "2048", "--optimizer", "adam", "--adam-betas",
                       "(0.9, 0.98)", "--lr", "5e-4", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "50",
                       "--max-update", "1000", "--cpu", "--no-epoch-checkpoints"],
    "denoising": ["data-bin", "--task", "denoising", "--arch", "bart_base", *TINY, "--mask", "0.3", "--mask-random",
                  "0.1", "--poisson-lambda", "3.5", "--mask-length", "span-poisson", "--replace-length", "1",
                  "--permute-sentences", "1", "--rotate", "0", "--tokens-per-sample", "128", "--max-tokens", "2048",
                  "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "polynomial_decay", "--warmup-updates",
                  "100", "--max-update", "2000", "--cpu"],
    "sentence-prediction": ["data-bin", "--task", "sentence_prediction", "--arch", "bart_base", *TINY, "--num-classes",
                            "2", "--init-token", "0", "--separator-token", "2", "--add-prev-output-tokens",
                            "--criterion", "sentence_prediction", "--reset-optimizer", "--batch-size", "16",
                            "--optimizer", "adam", "--lr", "1e-4", "--max-update", "500", "--best-checkpoint-metric",
                            "accuracy", "--maximize-best-checkpoint-metric", "--cpu"],
    "sentence-ranking": ["data-bin", "--task", "sentence_ranking", "--arch", "roberta_base", "--num-classes", "4",
                         "--init-token", "0", "--separator-token", "2", "--max-option-length", "128",
                         "--max-positions", "512", "--shorten-method", "truncate", "--criterion", "sentence_ranking",
                         "--reset-optimizer", "--batch-size", "1", "--optimizer", "adam", "--lr-scheduler", "fixed",
                         "--lr", "1e-5", "--best-checkpoint-metric", "accuracy", "--maximize-best-checkpoint-metric"],
    "mbart": ["data-bin", "--task", "translation_from_pretrained_bart", "--langs", "en,es", "-s", "en", "-t", "es",
              "--arch", "mbart_large", *TINY, "--criterion", "label_smoothed_cross_entropy", "--optimizer", "adam",
              "--lr-scheduler", "polynomial_decay", "--total-num-update", "40000", "--warmup-updates", "2500"],
    "multilingual-denoising": ["data-bin", "--task", "multilingual_denoising", "--arch", "mbart_base", "--langs",
                               "en,es", "--optimizer", "adam"],
    "multi-simple-epoch": ["data-bin", "--task", "translation_multi_simple_epoch", "--lang-pairs", "en-es,es-en",
                           "--encoder-langtok", "src", "--decoder-langtok", "--arch", "transformer"],
    "lm-adaptive": ["data-bin", "--task", "language_modeling", "--arch", "transformer_lm_wiki103", "--criterion",
                    "adaptive_loss", "--optimizer", "nag", "--lr-scheduler", "cosine"],
}  # fmt: skip
OPTIMIZERS = ["adadelta", "adafactor", "adagrad", "adam", "adamax", "cpu_adam", "lamb", "nag", "sgd"]
SCHEDULERS = ["cosine", "fixed", "inverse_sqrt", "polynomial_decay", "reduce_lr_on_plateau", "step", "tri_stage",
              "triangular"]  # fmt: skip


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_recipes_args_are_ones_fairseq_takes(recipe: str) -> None:
    args = checkpoint_args(RECIPES[recipe])
    assert len(groups_of(args)) >= len(TOP) + 1  # the table covers the task or components named
    assert refusals(args) == []


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_optimizer_and_scheduler_writes_args_fairseq_takes(optimizer: str, scheduler: str) -> None:
    extra = ["--lr-period-updates", "100"] if scheduler == "cosine" else []
    extra += ["--phase-ratio", "(0.1, 0.4, 0.5)"] if scheduler == "tri_stage" else []
    extra += ["--max-lr", "0.1"] if scheduler == "triangular" else []  # required, in fairseq too
    args = checkpoint_args(["data-bin", "--arch", "transformer", "--optimizer", optimizer, "--lr-scheduler", scheduler,
                            "--max-update", "100", *extra])  # fmt: skip
    assert refusals(args) == []


def test_the_check_finds_what_fairseq_refused_before() -> None:
    """The args of seqloom's checkpoints until now: fairseq-generate stopped on the first one."""
    args = checkpoint_args(RECIPES["language-model"])
    for key in ("tpu", "use_plasma_view", "plasma_path", "model_parallel_size"):
        del args[key]
    args["update_epoch_batch_itr"] = None
    said = refusals(args)
    assert "dataset.update_epoch_batch_itr: None, fairseq needs a bool" in said
    assert any(s.startswith("task:language_modeling.use_plasma_view: missing, fairseq reads it as True") for s in said)
    assert refusals({**checkpoint_args(RECIPES["translation"]), "max_tokens": "many"}) == [
        "dataset.max_tokens: 'many' does not parse as a int"
    ]


def test_alignment_options_only_in_alignment_models() -> None:
    """fairseq writes no alignment_layer/alignment_heads for a plain transformer; a None there stopped
    ct2-fairseq-converter (``np.int16(None)``), which falls back on -1 and 0 only when the key is absent."""
    plain = checkpoint_args(["data-bin", "--arch", "transformer_vaswani_wmt_en_de_big"])
    assert "alignment_layer" not in plain and "alignment_heads" not in plain
    aligned = checkpoint_args(["data-bin", "--arch", "transformer_align", "--task", "translation", "--criterion",
                               "label_smoothed_cross_entropy_with_alignment"])  # fmt: skip
    assert (aligned["alignment_layer"], aligned["alignment_heads"]) == (4, 1)


def test_a_trained_checkpoint_holds_such_args(fairseq_fixtures: Path, tmp_path: Path) -> None:
    from seqloom.cli.main import main as seqloom_main

    argv = ["train", str(fairseq_fixtures / "mt" / "data-bin"), *RECIPES["translation-eval-bleu"][1:], *TINY,
            "--eval-bleu-detok", "space", "--max-update", "1", "--max-valid-steps", "0", "--save-dir", str(tmp_path),
            "--cpu", "--num-workers", "0", "--no-epoch-checkpoints"]  # fmt: skip
    assert seqloom_main(argv) == 0
    args = load_checkpoint(tmp_path / "checkpoint_last.pt")["args"]
    assert isinstance(args, argparse.Namespace) and args.update_epoch_batch_itr is False and args.tpu is False
    assert refusals(vars(args)) == []
