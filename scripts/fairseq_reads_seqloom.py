"""Does fairseq 0.12 read back the checkpoints ``seqloom train`` writes? One tiny run of each README recipe,
then fairseq's own commands on its checkpoint, with a pass/fail line per recipe and command.

    python scripts/fairseq_reads_seqloom.py --fairseq-python ../peer-venvs/fs/bin/python \
        --fixtures ../shared/fixtures/fairseq [--work /tmp/fairseq-reads-seqloom]

(fairseq-validate has no default task: each recipe names it.) fairseq's command must exit 0; where seqloom has the same command, both print their result and the line says
whether they agree (hypotheses of generate; the loss of validate and eval-lm, to 0.01). Exits 1 if any fails.
About three minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY_MT = ["--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "16", "--decoder-embed-dim", "16",
           "--encoder-ffn-embed-dim", "32", "--decoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2",
           "--decoder-attention-heads", "2"]  # fmt: skip
COMMON = ["--cpu", "--num-workers", "0", "--seed", "1", "--max-update", "3", "--no-epoch-checkpoints",
          "--optimizer", "adam", "--lr", "5e-4"]  # fmt: skip
MT_TASK = ["--source-lang", "en", "--target-lang", "es"]
MBART_TASK = ["--task", "translation_from_pretrained_bart", "--langs", "en,es", *MT_TASK]
RANKING_TASK = ["--task", "sentence_ranking", "--num-classes", "4", "--init-token", "0", "--separator-token", "2",
                "--max-option-length", "16", "--shorten-method", "truncate"]  # fmt: skip
# fairseq's tiny RoBERTa and a four-choice data folder in RACE's layout (scripts/make_roberta_ranking_fixtures.sh)
ROBERTA = REPO / "tests" / "fixtures" / "roberta"
# fairseq 0.12's translation_from_pretrained_bart fails on its own; this runner repairs it (see its docstring)
MBART_RUNNER = REPO / "tests" / "fixtures" / "mbart" / "fairseq_fixed.py"


@dataclass
class Recipe:
    name: str
    data: str  # relative to the fixtures folder; "cls": the sentence-prediction folder made here; "ranking": RACE's
    train: list[str]
    checks: list[tuple[str, list[str]]] = field(default_factory=list)  # (command, flags after DATA --path CKPT)
    runner: Path | None = None  # a script that runs fairseq's commands instead of fairseq-COMMAND
    # flags only seqloom's command takes: fairseq-validate reads sentence_ranking's --max-positions from the
    # checkpoint and refuses the flag, seqloom builds the task from the command line
    seqloom_only: list[str] = field(default_factory=list)


RECIPES = [
    Recipe("translation", "mt/data-bin",
           ["--arch", "transformer", *TINY_MT, "--criterion", "label_smoothed_cross_entropy", "--label-smoothing",
            "0.1", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "10", "--max-tokens", "4096", *MT_TASK],
           [("generate", ["--beam", "2", "--max-len-a", "0", "--max-len-b", "5", "--batch-size", "50"]),
            ("validate", ["--task", "translation", "--valid-subset", "valid", "--batch-size", "50"])]),
    Recipe("translation --eval-bleu", "mt/data-bin",
           ["--arch", "transformer_iwslt_de_en", "--share-all-embeddings", *TINY_MT, "--criterion",
            "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--max-tokens", "4096", "--eval-bleu",
            "--eval-bleu-args", '{"beam": 2, "max_len_a": 0, "max_len_b": 3}', "--eval-bleu-detok", "space",
            "--eval-bleu-remove-bpe", "--best-checkpoint-metric", "bleu", "--maximize-best-checkpoint-metric",
            "--max-valid-steps", "0", *MT_TASK],
           [("generate", ["--beam", "2", "--max-len-a", "0", "--max-len-b", "5", "--batch-size", "50"]),
            ("validate", ["--task", "translation", "--valid-subset", "valid", "--batch-size", "50"])]),
    Recipe("language_modeling", "lm/data-bin",
           ["--task", "language_modeling", "--arch", "transformer_lm", "--decoder-layers", "1", "--decoder-embed-dim",
            "16", "--decoder-input-dim", "16", "--decoder-output-dim", "16", "--decoder-ffn-embed-dim", "32",
            "--decoder-attention-heads", "2", "--share-decoder-input-output-embed", "--tokens-per-sample", "64",
            "--sample-break-mode", "none", "--max-tokens", "1024", "--lr-scheduler", "inverse_sqrt",
            "--warmup-updates", "10", "--adam-betas", "(0.9, 0.98)"],
           [("eval-lm", ["--tokens-per-sample", "64", "--batch-size", "16"]),
            ("validate", ["--task", "language_modeling", "--tokens-per-sample", "64", "--batch-size", "16"])]),
    Recipe("denoising (BART)", "bart/data-bin",
           ["--task", "denoising", "--arch", "bart_base", *TINY_MT, "--mask", "0.3", "--mask-random", "0.1",
            "--poisson-lambda", "3.5", "--mask-length", "span-poisson", "--replace-length", "1",
            "--permute-sentences", "1", "--rotate", "0", "--tokens-per-sample", "64", "--max-tokens", "1024",
            "--lr-scheduler", "polynomial_decay", "--total-num-update", "20", "--warmup-updates", "2"],
           [("validate", ["--task", "denoising", "--tokens-per-sample", "64", "--mask", "0.3", "--batch-size", "16"])]),
    Recipe("sentence_prediction", "cls",
           ["--task", "sentence_prediction", "--arch", "bart_base", *TINY_MT, "--num-classes", "2", "--init-token",
            "0", "--separator-token", "2", "--add-prev-output-tokens", "--criterion", "sentence_prediction",
            "--batch-size", "16", "--best-checkpoint-metric", "accuracy", "--maximize-best-checkpoint-metric"],
           [("validate", ["--task", "sentence_prediction", "--num-classes", "2", "--init-token", "0",
                          "--separator-token", "2", "--add-prev-output-tokens", "--criterion", "sentence_prediction",
                          "--batch-size", "16"])]),
    Recipe("sentence_ranking (RoBERTa, RACE recipe)", "ranking",
           [*RANKING_TASK, "--max-positions", "128", "--arch", "roberta_base", "--encoder-layers", "2",
            "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2",
            "--restore-file", str(ROBERTA / "gpt2" / "model.pt"), "--reset-optimizer", "--reset-dataloader",
            "--reset-meters", "--criterion", "sentence_ranking", "--batch-size", "8", "--required-batch-size-multiple",
            "1", "--best-checkpoint-metric", "accuracy", "--maximize-best-checkpoint-metric"],
           [("validate", [*RANKING_TASK, "--criterion", "sentence_ranking", "--batch-size", "4",
                          "--required-batch-size-multiple", "1"])],
           seqloom_only=["--max-positions", "128"]),
    Recipe("mBART (translation_from_pretrained_bart)", "mt/data-bin",
           [*MBART_TASK, "--arch", "mbart_large", *TINY_MT, "--criterion", "label_smoothed_cross_entropy",
            "--label-smoothing", "0.1", "--max-tokens", "2048", "--max-source-positions", "256",
            "--max-target-positions", "256"],
           [("generate", [*MBART_TASK, "--beam", "2", "--max-len-a", "0", "--max-len-b", "5", "--batch-size", "50"]),
            ("validate", [*MBART_TASK, "--valid-subset", "valid", "--batch-size", "50"])],
           runner=MBART_RUNNER),
]  # fmt: skip


def run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def make_cls_data(fixtures: Path, root: Path, seqloom: list[str], env: dict[str, str]) -> Path:
    """A two-class sentence-prediction folder (input0/, label/) from the BART fixture's GPT-2 ids."""
    bart = fixtures / "bart"
    lines = (bart / "text" / "test.bpe").read_text(encoding="utf-8").splitlines()[:48]
    splits = {"train": lines[:32], "valid": lines[32:]}
    for split, rows in splits.items():
        (root / f"{split}.input0").write_text("\n".join(rows) + "\n", encoding="utf-8")
        labels = ["pos" if "262" in r.split() else "neg" for r in rows]
        (root / f"{split}.label").write_text("\n".join(labels) + "\n", encoding="utf-8")
    data = root / "cls"
    shutil.rmtree(data, ignore_errors=True)
    for kind, extra in (("input0", ["--srcdict", str(bart / "model" / "dict.txt")]), ("label", [])):
        argv = [*seqloom, "preprocess", "--only-source", "--trainpref", str(root / f"train.{kind}"), "--validpref",
                str(root / f"valid.{kind}"), "--destdir", str(data / kind), "--workers", "1", *extra]  # fmt: skip
        done = run(argv, env)
        if done.returncode != 0:
            raise SystemExit(f"preprocess of the sentence-prediction data failed:\n{done.stderr[-2000:]}")
    return data


def result_of(command: str, output: str) -> str | None:
    """What is compared between fairseq and seqloom: hypotheses (generate) or the loss (validate, eval-lm)."""
    if command == "generate":
        hyps = sorted((int(m.group(1)), m.group(2)) for m in re.finditer(r"^H-(\d+)\t\S+\t(.*)$", output, re.M))
        return str(hyps) if hyps else None
    found = re.findall(r"\| loss ([\d.]+)|Loss \(base 2\): ([\d.]+)", output)
    return f"{float(found[-1][0] or found[-1][1]):.2f}" if found else None


def last_error(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^\w[\w.]*(Error|Exception)\b", ln):
            return ln[:300]
    return lines[-1][:300] if lines else "(no output)"


def check_recipe(recipe: Recipe, data: Path, work: Path, fairseq_bin: Path, seqloom: list[str],
                 env: dict[str, str]) -> list[tuple[str, str, bool, str]]:  # fmt: skip
    save = work / re.sub(r"\W+", "_", recipe.name)
    trained = run([*seqloom, "train", str(data), *COMMON, *recipe.train, "--save-dir", str(save)], env)
    ckpt = save / "checkpoint_last.pt"
    if trained.returncode != 0 or not ckpt.exists():
        return [(recipe.name, "seqloom train", False, last_error(trained.stderr))]
    rows = []
    for command, flags in recipe.checks:
        tail = [str(data), "--path", str(ckpt), *flags]
        if recipe.runner is not None:
            fs_cmd = [str(fairseq_bin / "python"), str(recipe.runner), command.replace("-", "_"), *tail, "--cpu"]
        else:
            fs_cmd = [str(fairseq_bin / f"fairseq-{command}"), *tail, "--cpu", "--num-workers", "0"]
        theirs = run(fs_cmd, env)
        if theirs.returncode != 0:
            rows.append((recipe.name, f"fairseq-{command}", False, last_error(theirs.stderr)))
            continue
        ours = run([*seqloom, command, *tail, *recipe.seqloom_only], env)
        a, b = result_of(command, theirs.stdout + theirs.stderr), result_of(command, ours.stdout + ours.stderr)
        agree = (
            "seqloom agrees" if a is not None and a == b else f"seqloom differs ({(b or '')[:60]} vs {(a or '')[:60]})"
        )
        what = a[:60] if command != "generate" and a else f"{(a or '').count('), (') + 1 if a else 0} hypotheses"
        rows.append((recipe.name, f"fairseq-{command}", True, f"{what}; {agree}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fairseq-python", default=str(REPO.parent / "peer-venvs" / "fs" / "bin" / "python"))
    parser.add_argument("--fixtures", default=str(REPO.parent / "shared" / "fixtures" / "fairseq"))
    parser.add_argument("--work", default="/tmp/fairseq-reads-seqloom")
    parser.add_argument("--only", default=None, help="run the recipes whose name holds this text")
    args = parser.parse_args(argv)
    fixtures, work = Path(args.fixtures), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    fairseq_bin = Path(args.fairseq_python).parent
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    seqloom = [sys.executable, "-m", "seqloom"]
    rows = []
    for recipe in RECIPES:
        if args.only and args.only not in recipe.name:
            continue
        if recipe.data == "cls":
            data = make_cls_data(fixtures, work, seqloom, env)
        elif recipe.data == "ranking":
            data = ROBERTA / "ranking" / "data"
        else:
            data = fixtures / recipe.data
        for row in check_recipe(recipe, data, work, fairseq_bin, seqloom, env):
            rows.append(row)
            print(f"{'PASS' if row[2] else 'FAIL'} | {row[0]} | {row[1]} | {row[3]}", flush=True)
    failed = sum(not ok for *_, ok, _ in rows)
    print(f"{len(rows) - failed} of {len(rows)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
