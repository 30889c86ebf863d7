"""Inference at release sizes: fairseq against seqloom (float32, float32 on packed weights, int8) against CTranslate2
(float32 and int8). ``seqloom packed`` is ``seqloom generate --packed-weights``: float32 products on weights packed
once for MKL, as CTranslate2 multiplies on Intel CPUs (not bit for bit fairseq's numbers; see
``seqloom/modules/packed_linear.py``).

Everything the benchmark builds is cached outside the repository (``--cache``, default
``~/.cache/seqloom-bench/release_size/{release,small}``) and built only once. Three models:

* ``transformer``: the ``transformer_vaswani_wmt_en_de_big`` layout (d1024, 16 heads, FFN 4096, 6+6 layers),
  separate 32k dictionaries, tied decoder output projection, random weights;
* ``bart``: the ``bart_large`` layout (d1024, 12+12 layers) over bart.large's 50,265-symbol dictionary (GPT-2 ids
  and ``<mask>``), saved by the translation task like bart.large.cnn, random weights;
* ``trained``: transformer big's sizes again (pre-norm layers, which learn in few updates; the products are the
  wmt layout's), this time trained by ``seqloom train`` on the corpus in ``examples/data/bible-en-es`` (Moses
  tokens and a 2,000-merge joint BPE as in ``scripts/demo.sh``, one ~2,000-symbol dictionary, all embeddings
  shared), under bf16 autocast with float32 weights, for ``--train-updates`` updates (default 400, about four
  epochs; about 30 minutes on an idle 2-core AVX-512/AMX machine). The folder is ``trained-prenorm-<N>u`` and its
  ``BUILT`` file records each phase's seconds.

The two random models come from the peer venv's fairseq-train (one SGD update at a learning rate of 1e-12, so the
checkpoint is fairseq's own format). Every model is also converted by ``ct2-fairseq-converter`` (float32 and
``--quantization int8``); for ``trained`` that conversion and fairseq-generate's run are the check that seqloom's
checkpoint is one fairseq's tools read.

Random weights never end a sentence on their own, so on ``transformer`` and ``bart`` every tool decodes exactly
``--length`` tokens per hypothesis (fairseq/seqloom ``--max-len-a 0 --max-len-b L --min-len L``, CTranslate2
``min/max_decoding_length``) over ``--sentences`` random sources. The trained model translates the whole test
split (200 sentences) with natural lengths: each hypothesis stops at the </s> the model picks, capped as usual at
``int(1.2 * source length + 10)`` per batch, length penalty 1 and no minimum length; CTranslate2 gets fairseq's
batches (sources sorted by length) and each batch's cap as ``max_decoding_length``. For it the table also gives
every tool's sacreBLEU on the detokenized test set, the mean hypothesis length and how many hypotheses stopped
at the cap.

All runs use beam 5 and batch 32, at each of ``--threads`` (default 1 and 2), one fresh process per tool: sentences/s
from the tool's own decoding time (loading excluded), peak resident memory of the whole process (loading
included), ratios against seqloom float32 and fairseq, and how many top hypotheses equal seqloom float32's.

The hub part times ``translate`` (``transformer`` with forced lengths; ``trained`` with natural lengths on its
BPE'd test sources), and BART's ``sample`` with bart.large.cnn's options (beam 4, lenpen 2.0, max_len_b 140,
min_len 55, no_repeat_ngram_size 3) and ``fill_mask``, each in fresh processes, for fairseq's hub and seqloom's
(float32 and ``quantize="int8"``).

    python benchmarks/release_size.py                 # release sizes: run it on an idle machine
    python benchmarks/release_size.py --small         # tiny models (the demo's model for trained): checks every
                                                      # step in a few minutes
    python benchmarks/release_size.py --models trained --threads 2   # only the trained model

fairseq is found through ``$FAIRSEQ_BIN`` or ``../peer-venvs/fs/bin`` (its python converts for CTranslate2:
``pip install ctranslate2`` there); CTranslate2 runs in ``$CT2_PYTHON`` or ``../peer-venvs/ct2/bin/python``
(shared/peers/README.md). A missing peer is skipped with a note. The trained model's BLEU needs sacrebleu and
sacremoses, its data preparation subword-nmt (the demo's requirements).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import REPO, fairseq_bin, run_measured, thread_env

GPT2 = REPO.parent / "shared" / "data" / "gpt2-bpe"
RAW_TEXT = REPO.parent / "shared" / "data" / "bible-en-es" / "test.en"
TIMING = re.compile(r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in ([\d.]+)s")
CNN_OPTIONS = {"beam": 4, "lenpen": 2.0, "max_len_b": 140, "min_len": 55, "no_repeat_ngram_size": 3}


@dataclass
class ModelSpec:
    """One benchmark model: fairseq-train's architecture flags and its dictionary size."""

    name: str
    arch: list[str]
    vocab: int  # symbols in dict.txt (fairseq adds 4 specials)
    joined: bool  # one dictionary for both sides (BART)


def specs(small: bool) -> list[ModelSpec]:
    if small:
        tiny = ["--encoder-layers", "2", "--decoder-layers", "2", "--encoder-embed-dim", "64", "--decoder-embed-dim",
                "64", "--encoder-ffn-embed-dim", "128", "--decoder-ffn-embed-dim", "128", "--encoder-attention-heads",
                "4", "--decoder-attention-heads", "4"]  # fmt: skip
        return [
            ModelSpec(
                "transformer", ["--arch", "transformer", "--share-decoder-input-output-embed", *tiny], 1000, False
            ),
            ModelSpec("bart", ["--arch", "bart_base", *tiny], 50260, True),  # every GPT-2 id: the hubs read raw text
        ]
    return [
        ModelSpec(
            "transformer",
            ["--arch", "transformer_vaswani_wmt_en_de_big", "--share-decoder-input-output-embed"],
            32000,
            False,
        ),  # fmt: skip
        ModelSpec("bart", ["--arch", "bart_large"], 50260, True),
    ]


# ----------------------------------------------------------------------------------------------- building


def write_data(spec: ModelSpec, folder: Path, sentences: int, src_len: int) -> None:
    """Dictionaries (``spec.vocab`` symbols; BART's: GPT-2 ids then ``<mask>``) and random source/target text."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    if spec.joined:
        words = [str(i) for i in range(spec.vocab)] + ["<mask>"]
        dicts = {"src": words, "tgt": words}
    else:
        dicts = {side: [f"{side}{i}" for i in range(spec.vocab)] for side in ("src", "tgt")}
    for side, words in dicts.items():
        counts = "".join(f"{w} {len(words) + 10 - i}\n" for i, w in enumerate(words))
        (folder / f"dict.{side}.txt").write_text(counts, encoding="utf-8")
        body = words[:-1] if spec.joined else words  # no <mask> in the text
        lines = [" ".join(rng.choice(body) for _ in range(src_len)) for _ in range(sentences)]
        (folder / f"text.{side}").write_text("\n".join(lines) + "\n", encoding="utf-8")


def build(spec: ModelSpec, root: Path, fs: Path, *, sentences: int, src_len: int) -> Path:
    """``root/NAME`` holding data-bin/, checkpoint_last.pt, dict.txt and ct2-fp32/, ct2-int8/ (built once)."""
    out = root / spec.name
    done = out / "BUILT"
    if done.is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    write_data(spec, out / "text", sentences, src_len)
    env = thread_env(2)
    text, data = out / "text", out / "data-bin"
    run_measured([str(fs / "fairseq-preprocess"), "-s", "src", "-t", "tgt", "--srcdict", str(text / "dict.src.txt"),
                  "--tgtdict", str(text / "dict.tgt.txt"), "--trainpref", str(text / "text"), "--testpref",
                  str(text / "text"), "--destdir", str(data), "--workers", "1"], env)  # fmt: skip
    print(f"[{spec.name}] building the checkpoint with fairseq-train (one update at lr 1e-12)", file=sys.stderr)
    run_measured([str(fs / "fairseq-train"), str(data), "--task", "translation", *spec.arch, "--cpu",
                  "--optimizer", "sgd", "--lr", "1e-12", "--max-tokens", "2048", "--max-update", "1",
                  "--disable-validation", "--no-epoch-checkpoints", "--no-save-optimizer-state", "--num-workers",
                  "0", "--seed", "1", "--save-dir", str(out), "--criterion", "cross_entropy"], env)  # fmt: skip
    shutil.copyfile(data / "dict.src.txt", out / "dict.txt")  # for the BART hubs
    convert_ct2(spec.name, out, fs, env)
    done.write_text("ok\n")
    return out


def convert_ct2(name: str, out: Path, fs: Path, env: dict[str, str]) -> None:
    """``out/checkpoint_last.pt`` (dictionaries in ``out/data-bin``) to ``out/ct2-fp32`` and ``out/ct2-int8``."""
    converter = fs / "ct2-fairseq-converter"
    if not converter.exists():
        print(f"{converter} not found (pip install ctranslate2 in fairseq's venv): CTranslate2 peer not installed, "
              "skipping its conversion", file=sys.stderr)  # fmt: skip
        return
    for kind, extra in (("fp32", []), ("int8", ["--quantization", "int8"])):
        print(f"[{name}] converting for CTranslate2 ({kind})", file=sys.stderr)
        run_measured([str(converter), "--model_path", str(out / "checkpoint_last.pt"), "--data_dir",
                      str(out / "data-bin"), "--output_dir", str(out / f"ct2-{kind}"), "--unsafe_deserialization",
                      *extra], env)  # fmt: skip


# ------------------------------------------------------------------------------------------------- timing


@dataclass
class Row:
    """One tool's run: sentences, generated tokens, decoding seconds, peak RSS, top hypotheses."""

    tool: str
    sentences: int
    tokens: int
    seconds: float
    peak_mib: float
    hyps: dict[int, str] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return self.sentences / self.seconds


def seqloom_env(threads: int) -> dict[str, str]:
    env = thread_env(threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


def run_generate(tool: str, cmd: list[str], env: dict[str, str]) -> Row:
    done = run_measured(cmd, env)
    match = TIMING.search(done.output)
    if match is None:
        sys.exit(f"{tool}: no 'Translated ...' line in its output:\n{done.output[-2000:]}")
    hyps = {}
    for line in done.output.splitlines():
        if line.startswith("H-"):
            key, _, text = line.split("\t")
            hyps.setdefault(int(key[2:]), text)
    return Row(tool, int(match[1].replace(",", "")), int(match[2].replace(",", "")), float(match[3]),
               done.peak_rss_mib, hyps)  # fmt: skip


CT2_WORKER = """
import json, sys, time
import ctranslate2
job = json.load(open(sys.argv[1]))
translator = ctranslate2.Translator(job["model"], device="cpu", inter_threads=1, intra_threads=job["threads"],
                                    compute_type=job["compute_type"])
start = time.perf_counter()
out = translator.translate_batch(job["batch"], beam_size=job["beam"], max_batch_size=job["batch_size"],
                                 min_decoding_length=job["length"], max_decoding_length=job["length"])
seconds = time.perf_counter() - start
print("RESULT" + json.dumps({"seconds": seconds, "hypotheses": [" ".join(r.hypotheses[0]) for r in out]}))
"""


def source_tokens(model_dir: Path) -> list[list[str]]:
    lines = (model_dir / "text" / "text.src").read_text(encoding="utf-8").splitlines()
    return [line.split() for line in lines]


def run_ct2(tool: str, python: str, model: Path, batch: list[list[str]], args: argparse.Namespace,
            threads: int) -> Row:  # fmt: skip
    job = {"model": str(model), "threads": threads, "beam": args.beam, "batch_size": args.batch_size,
           "length": args.length, "batch": batch, "compute_type": "int8" if "int8" in tool else "float32"}  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(job, f)
    try:
        done = run_measured([python, "-c", CT2_WORKER, f.name], thread_env(threads))
    finally:
        os.unlink(f.name)
    result = json.loads(next(line for line in done.output.splitlines() if line.startswith("RESULT"))[6:])
    hyps = dict(enumerate(result["hypotheses"]))
    tokens = sum(len(h.split()) + 1 for h in hyps.values())  # + </s>, as fairseq counts
    return Row(tool, len(hyps), tokens, result["seconds"], done.peak_rss_mib, hyps)


def time_tools(model_dir: Path, args: argparse.Namespace, threads: int) -> list[Row]:
    """Every tool once, back to back, on the model's binarized sources."""
    fs = fairseq_bin("fairseq-generate")
    common = [str(model_dir / "data-bin"), "--path", str(model_dir / "checkpoint_last.pt"), "--gen-subset", "test",
              "--beam", str(args.beam), "--batch-size", str(args.batch_size), "--max-len-a", "0", "--max-len-b",
              str(args.length), "--min-len", str(args.length), "--cpu", "--num-workers", "0", "--no-progress-bar"]  # fmt: skip
    rows = []
    if fs is not None and wants(args, "fairseq"):
        rows.append(run_generate("fairseq", [str(fs / "fairseq-generate"), *common], thread_env(threads)))
    seqloom = [sys.executable, "-m", "seqloom", "generate", *common]
    if wants(args, "seqloom fp32"):
        rows.append(run_generate("seqloom fp32", seqloom, seqloom_env(threads)))
    if wants(args, "seqloom int8"):
        rows.append(run_generate("seqloom int8", [*seqloom, "--quantize", "int8"], seqloom_env(threads)))
    if wants(args, "seqloom packed"):
        rows.append(run_generate("seqloom packed", [*seqloom, "--packed-weights"], seqloom_env(threads)))
    if Path(args.ct2_python).exists():
        batch = source_tokens(model_dir)
        for kind in ("fp32", "int8"):
            if (model_dir / f"ct2-{kind}").is_dir() and wants(args, f"ct2 {kind}"):
                rows.append(run_ct2(f"ct2 {kind}", args.ct2_python, model_dir / f"ct2-{kind}", batch, args, threads))
    return rows


def wants(args: argparse.Namespace, tool: str) -> bool:
    """Whether ``--tools`` (comma separated tool names, e.g. ``seqloom int8,ct2 int8``) selects ``tool``."""
    return args.tools is None or tool in {t.strip() for t in args.tools.split(",")}


def print_rows(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    base = next((r for r in rows if r.tool == "seqloom fp32"), rows[0])
    fairseq = next((r for r in rows if r.tool == "fairseq"), None)
    print(f"  {'tool':14} {'sent':>5} {'tokens':>7} {'seconds':>8} {'sent/s':>7} {'peak MiB':>9} {'/seqloom fp32':>13} "
          f"{'/fairseq':>8} {'same top hyp as seqloom fp32':>29}")  # fmt: skip
    for r in rows:
        vs_fs = f"{r.per_s / fairseq.per_s:8.2f}" if fairseq is not None else f"{'-':>8}"
        same = sum(base.hyps.get(k) == v for k, v in r.hyps.items())
        same_text = f"{same}/{len(r.hyps)}"
        print(f"  {r.tool:14} {r.sentences:5d} {r.tokens:7d} {r.seconds:8.2f} {r.per_s:7.2f} {r.peak_mib:9.0f} "
              f"{r.per_s / base.per_s:13.2f} {vs_fs} {same_text:>29}")  # fmt: skip


# ------------------------------------------------------------------------- trained model, natural lengths

BIBLE = REPO / "examples" / "data" / "bible-en-es"
MAX_LEN_A, MAX_LEN_B = 1.2, 10  # the usual cap for natural lengths: int(a * source length with </s> + b) per batch


@dataclass
class TrainedRecipe:
    """How ``seqloom train`` builds the trained model: architecture flags, optimizer flags, updates."""

    arch: list[str]
    optim: list[str]
    updates: int
    tag: str = ""  # in the folder's name, for a recipe other than the first of its size

    @property
    def folder(self) -> str:
        return f"trained-{self.tag}{self.updates}u"


def trained_recipe(small: bool, updates: int | None) -> TrainedRecipe:
    """Transformer big under bf16 autocast (fp32 weights) for one short epoch; ``--small``: the demo's model."""
    if small:
        arch = ["--arch", "transformer", "--encoder-layers", "2", "--decoder-layers", "2", "--encoder-embed-dim",
                "128", "--decoder-embed-dim", "128", "--encoder-ffn-embed-dim", "256", "--decoder-ffn-embed-dim",
                "256", "--encoder-attention-heads", "4", "--decoder-attention-heads", "4"]  # fmt: skip
        optim = ["--dropout", "0.1", "--lr", "3e-3", "--warmup-updates", "100", "--max-tokens", "4096"]
        return TrainedRecipe(arch, optim, updates or 250)
    # transformer big's sizes with pre-norm layers: post-norm (the wmt layout's) at lr 7e-4 was still at a train loss
    # of 9.06 after 200 updates, its outputs running to the length cap; pre-norm at 1e-3 learns to end sentences
    # within a few hundred updates. The norms' place changes no product, so decoding costs what the wmt layout's does
    arch = ["--arch", "transformer_vaswani_wmt_en_de_big", "--bf16", "--encoder-normalize-before",
            "--decoder-normalize-before"]  # fmt: skip
    optim = ["--dropout", "0.1", "--lr", "1e-3", "--warmup-updates", "100", "--clip-norm", "1.0", "--max-tokens",
             "2048"]  # fmt: skip
    return TrainedRecipe(arch, optim, updates or 400, tag="prenorm-")


def build_trained(recipe: TrainedRecipe, root: Path, fs: Path, threads: int) -> Path:
    """``root/trained-Nu``: the bundled corpus tokenized with a 2,000-merge joint BPE (as scripts/demo.sh does),
    binarized, a model trained on it by ``seqloom train`` and its CTranslate2 conversions (built once)."""
    out = root / recipe.folder
    done = out / "BUILT"
    if done.is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    env, bpe, data = seqloom_env(threads), out / "bpe", out / "data-bin"
    seconds: dict[str, float] = {}
    seconds["prepare"] = run_measured([sys.executable, str(REPO / "examples" / "prepare_text.py"), "--src", "en",
                                       "--tgt", "es", "--input", str(BIBLE), "--output", str(bpe), "--merges",
                                       "2000"], env).wall_s  # fmt: skip
    seqloom = [sys.executable, "-m", "seqloom"]
    seconds["preprocess"] = run_measured([*seqloom, "preprocess", "--source-lang", "en", "--target-lang", "es",
                                          "--trainpref", str(bpe / "train.bpe"), "--validpref", str(bpe / "valid.bpe"),
                                          "--testpref", str(bpe / "test.bpe"), "--destdir", str(data),
                                          "--joined-dictionary", "--workers", "1"], env).wall_s  # fmt: skip
    print(f"[trained] training {' '.join(recipe.arch)} for {recipe.updates} updates with seqloom train ({threads} "
          "thread(s))", file=sys.stderr)  # fmt: skip
    trained = run_measured([*seqloom, "train", str(data), "--cpu", "--task", "translation", *recipe.arch,
                            "--share-all-embeddings", "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)",
                            "--lr-scheduler", "inverse_sqrt", "--criterion", "label_smoothed_cross_entropy",
                            "--label-smoothing", "0.1", *recipe.optim, "--max-update", str(recipe.updates), "--seed",
                            "1", "--num-workers", "0", "--log-interval", "10", "--disable-validation",
                            "--no-epoch-checkpoints", "--no-save-optimizer-state", "--save-dir", str(out)], env)  # fmt: skip
    seconds["train"] = trained.wall_s
    losses = re.findall(r"\| train \| epoch .*? loss ([\d.]+)", trained.output)
    start = time.perf_counter()
    convert_ct2("trained", out, fs, thread_env(threads))
    seconds["convert"] = time.perf_counter() - start
    (out / "text").mkdir()
    shutil.copyfile(bpe / "test.bpe.en", out / "text" / "text.src")  # CTranslate2's and the hub's inputs
    summary = {"seconds": seconds, "total_s": sum(seconds.values()), "updates": recipe.updates,
               "train_s_per_update": seconds["train"] / recipe.updates, "last_train_loss": losses[-1:],
               "threads": threads}  # fmt: skip
    done.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"[trained] built in {summary['total_s']:.0f} s: {json.dumps(summary)}", file=sys.stderr)
    return out


def length_caps(sources: list[list[str]], batch_size: int) -> list[tuple[list[int], int]]:
    """fairseq-generate's batches over the test set (sources sorted by length, ``batch_size`` each) with each
    batch's cap on hypothesis tokens: ``int(MAX_LEN_A * longest source with </s> + MAX_LEN_B)``."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    groups = []
    for start in range(0, len(order), batch_size):
        ids = order[start : start + batch_size]
        groups.append((ids, int(MAX_LEN_A * (max(len(sources[i]) for i in ids) + 1) + MAX_LEN_B)))
    return groups


CT2_NATURAL_WORKER = """
import json, sys, time
import ctranslate2
job = json.load(open(sys.argv[1]))
translator = ctranslate2.Translator(job["model"], device="cpu", inter_threads=1, intra_threads=job["threads"],
                                    compute_type=job["compute_type"])
hyps = {}
start = time.perf_counter()
for ids, cap in job["groups"]:
    out = translator.translate_batch([job["batch"][i] for i in ids], beam_size=job["beam"], max_batch_size=len(ids),
                                     max_decoding_length=cap, length_penalty=1.0)
    hyps.update((i, " ".join(r.hypotheses[0])) for i, r in zip(ids, out))
seconds = time.perf_counter() - start
print("RESULT" + json.dumps({"seconds": seconds, "hypotheses": hyps}))
"""


def run_ct2_natural(tool: str, python: str, model: Path, args: argparse.Namespace, threads: int, *,
                    sources: list[list[str]]) -> Row:  # fmt: skip
    """CTranslate2 on fairseq's batches, each with fairseq's cap (its max_decoding_length) and no minimum."""
    job = {"model": str(model), "threads": threads, "beam": args.beam, "batch": sources,
           "groups": length_caps(sources, args.batch_size), "compute_type": "int8" if "int8" in tool else "float32"}  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(job, f)
    try:
        done = run_measured([python, "-c", CT2_NATURAL_WORKER, f.name], thread_env(threads))
    finally:
        os.unlink(f.name)
    result = json.loads(next(line for line in done.output.splitlines() if line.startswith("RESULT"))[6:])
    hyps = {int(i): h for i, h in result["hypotheses"].items()}
    tokens = sum(len(h.split()) + 1 for h in hyps.values())  # + </s>, as fairseq counts
    return Row(tool, len(hyps), tokens, result["seconds"], done.peak_rss_mib, hyps)


def time_natural(model_dir: Path, args: argparse.Namespace, threads: int) -> list[Row]:
    """Every tool once on the whole test set, each hypothesis ending where the model puts </s> (or at the cap)."""
    fs = fairseq_bin("fairseq-generate")
    common = [str(model_dir / "data-bin"), "--path", str(model_dir / "checkpoint_last.pt"), "--gen-subset", "test",
              "--beam", str(args.beam), "--batch-size", str(args.batch_size), "--max-len-a", str(MAX_LEN_A),
              "--max-len-b", str(MAX_LEN_B), "--lenpen", "1", "--cpu", "--num-workers", "0", "--no-progress-bar"]  # fmt: skip
    rows = []
    if fs is not None:  # also the check that fairseq reads seqloom's checkpoint
        rows.append(run_generate("fairseq", [str(fs / "fairseq-generate"), *common], thread_env(threads)))
    seqloom = [sys.executable, "-m", "seqloom", "generate", *common]
    rows.append(run_generate("seqloom fp32", seqloom, seqloom_env(threads)))
    rows.append(run_generate("seqloom int8", [*seqloom, "--quantize", "int8"], seqloom_env(threads)))
    if wants(args, "seqloom packed"):
        rows.append(run_generate("seqloom packed", [*seqloom, "--packed-weights"], seqloom_env(threads)))
    if Path(args.ct2_python).exists():
        for kind in ("fp32", "int8"):
            if (model_dir / f"ct2-{kind}").is_dir():
                rows.append(run_ct2_natural(f"ct2 {kind}", args.ct2_python, model_dir / f"ct2-{kind}", args, threads,
                                            sources=source_tokens(model_dir)))  # fmt: skip
    return rows


def test_bleu(hyps: dict[int, str], refs: list[str]) -> float:
    """sacreBLEU of the hypotheses (BPE tokens of Moses-tokenized Spanish) against the untouched references."""
    import sacrebleu
    from sacremoses import MosesDetokenizer

    detok = MosesDetokenizer(lang="es")
    ids = sorted(hyps)
    text = [detok.detokenize(re.sub(r"@@( |$)", "", hyps[i]).split()) for i in ids]
    return sacrebleu.corpus_bleu(text, [[refs[i] for i in ids]]).score


def print_natural(title: str, rows: list[Row], sources: list[list[str]], batch_size: int) -> None:
    """The speed table, then each tool's test BLEU, hypothesis lengths and how many stopped at the cap."""
    print_rows(title, rows)
    refs = [line.strip() for line in (BIBLE / "test.es").read_text(encoding="utf-8-sig").splitlines()]
    cap = {i: c for ids, c in length_caps(sources, batch_size) for i in ids}
    ratio = sum(len(s) for s in sources) / len(sources)
    for r in rows:
        lengths = {i: len(h.split()) for i, h in r.hyps.items()}
        capped = sum(n >= cap[i] for i, n in lengths.items())
        mean = sum(lengths.values()) / len(lengths)
        print(f"  {r.tool:14} test BLEU {test_bleu(r.hyps, refs):6.2f}  {mean:5.1f} tokens per top hypothesis "
              f"(sources {ratio:.1f}; BPE, no </s>)  {capped} stopped at the cap")  # fmt: skip


def run_trained(args: argparse.Namespace, fs: Path) -> None:
    recipe = trained_recipe(args.small, args.train_updates)
    model_dir = build_trained(recipe, args.cache / ("small" if args.small else "release"), fs, args.build_threads)
    for threads in (int(t) for t in args.threads.split(",")):
        if not args.hub_only:
            rows = time_natural(model_dir, args, threads)
            title = (f"trained ({model_dir}): {len(rows[0].hyps)} test sentences, beam {args.beam}, batch "
                     f"{args.batch_size}, natural lengths (cap {MAX_LEN_A} x source + {MAX_LEN_B}), {threads} thread(s)")  # fmt: skip
            print_natural(title, rows, source_tokens(model_dir), args.batch_size)
        if not args.tools_only:
            time_hubs(model_dir, "translate", args, threads, natural=True)


# ---------------------------------------------------------------------------------------------------- hub


def hub_worker(job: dict) -> dict:
    """Runs in the tool's interpreter: loads the hub (untimed), warms up on two inputs, times the call."""
    import torch

    torch.set_num_threads(job["threads"])
    model_dir, toolkit, kind = job["model_dir"], job["toolkit"], job["kind"]
    gpt2 = {"gpt2_encoder_json": str(GPT2 / "encoder.json"), "gpt2_vocab_bpe": str(GPT2 / "vocab.bpe")}
    quantize = {"quantize": "int8"} if job["int8"] else {}
    if kind == "translate":
        if toolkit == "fairseq":
            from fairseq.models.transformer import TransformerModel
        else:
            from seqloom.hub import TransformerModel  # type: ignore[no-redef]
        hub = TransformerModel.from_pretrained(model_dir, checkpoint_file="checkpoint_last.pt",
                                               data_name_or_path=model_dir + "/data-bin", **quantize)  # fmt: skip
        if job.get("natural"):
            call = lambda xs: hub.translate(xs, beam=5)  # noqa: E731
        else:
            call = lambda xs: hub.translate(xs, beam=5, max_len_a=0, max_len_b=job["length"], min_len=job["length"])  # noqa: E731
    else:
        if toolkit == "fairseq":  # fairseq's BART from_pretrained needs its task's data; load as bart.py does
            from fairseq import checkpoint_utils
            from fairseq.models.bart import BARTHubInterface
            from omegaconf import DictConfig, open_dict

            models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
                [model_dir + "/checkpoint_last.pt"], arg_overrides={"data": model_dir + "/data-bin"}
            )
            with open_dict(cfg):
                cfg.bpe = DictConfig({"_name": "gpt2", **gpt2})
            hub = BARTHubInterface(cfg, task, models[0])
        else:
            from seqloom.hub import BARTModel

            hub = BARTModel.from_pretrained(model_dir, checkpoint_file="checkpoint_last.pt",
                                            data_name_or_path=model_dir + "/data-bin", **gpt2, **quantize)  # fmt: skip
        if kind == "sample":
            call = lambda xs: hub.sample(xs, **CNN_OPTIONS)  # noqa: E731
        else:
            call = lambda xs: hub.fill_mask(xs, topk=3)  # noqa: E731
    hub.eval()
    with torch.no_grad():
        call(job["inputs"][:2])
        start = time.perf_counter()
        out = call(job["inputs"])
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "outputs": [str(o) for o in out]}


def run_hub(toolkit: str, python: str, job: dict, env: dict[str, str]) -> tuple[float, float, list[str]]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({**job, "toolkit": toolkit}, f)
    code = (f"import json, sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import release_size as r; "
            f"print('RESULT' + json.dumps(r.hub_worker(json.load(open({f.name!r})))))")  # fmt: skip
    try:
        done = run_measured([python, "-c", code], env)
    finally:
        os.unlink(f.name)
    result = json.loads(next(line for line in done.output.splitlines() if line.startswith("RESULT"))[6:])
    return result["seconds"], done.peak_rss_mib, result["outputs"]


def hub_inputs(kind: str, count: int, model_dir: Path, *, natural: bool = False) -> list[str]:
    if kind == "translate":
        return [" ".join(tokens if natural else tokens[:30]) for tokens in source_tokens(model_dir)[:count]]
    lines = RAW_TEXT.read_text(encoding="utf-8").splitlines()[:count]
    if kind == "fill_mask":
        lines = [" ".join(w if i != len(line.split()) // 2 else "<mask>" for i, w in enumerate(line.split()))
                 for line in lines]  # fmt: skip
    return lines


def time_hubs(model_dir: Path, kind: str, args: argparse.Namespace, threads: int, *, natural: bool = False) -> None:
    inputs = hub_inputs(kind, args.hub_sentences, model_dir, natural=natural)
    job = {"model_dir": str(model_dir), "kind": kind, "inputs": inputs, "length": args.length, "threads": threads,
           "natural": natural}  # fmt: skip
    runs: list[tuple[str, float, float, list[str]]] = []
    fs = fairseq_bin("fairseq-generate")
    if fs is not None:
        runs.append(("fairseq", *run_hub("fairseq", str(fs / "python"), {**job, "int8": False}, thread_env(threads))))
    for int8 in (False, True):
        name = "seqloom int8" if int8 else "seqloom fp32"
        runs.append((name, *run_hub("seqloom", sys.executable, {**job, "int8": int8}, seqloom_env(threads))))
    print(f"\nhub {kind} ({model_dir.name}, {len(inputs)} inputs, {threads} thread(s))")
    base = next(r for r in runs if r[0] == "seqloom fp32")
    for name, seconds, peak, outputs in runs:
        same = sum(a == b for a, b in zip(outputs, base[3]))
        print(f"  {name:13} {len(inputs) / seconds:7.2f} inputs/s  {seconds:7.2f} s  peak {peak:7.0f} MiB  "
              f"{base[1] / seconds:5.2f}x seqloom fp32  same output as seqloom fp32: {same}/{len(inputs)}")  # fmt: skip


# --------------------------------------------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="tiny models and inputs: checks the pipeline quickly")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "seqloom-bench" / "release_size")
    p.add_argument("--models", default="transformer,bart,trained", help="comma separated: transformer, bart, trained")
    p.add_argument(
        "--train-updates", type=int, default=None, help="the trained model's updates (default 400; --small 250)"
    )
    p.add_argument("--build-threads", type=int, default=2, help="threads for building the trained model")
    p.add_argument("--threads", default="1,2", help="comma separated thread counts")
    p.add_argument("--tools-only", action="store_true", help="skip the hub part")
    p.add_argument("--hub-only", action="store_true", help="skip the command-line tools")
    p.add_argument(
        "--tools",
        default=None,
        help="comma separated, of: fairseq, seqloom fp32, seqloom int8, seqloom packed (--packed-weights), ct2 fp32, "
        "ct2 int8 (default all; ratios are then against the first row when seqloom fp32 is left out)",
    )
    p.add_argument("--sentences", type=int, default=None, help="sources to translate (default 96; --small 16)")
    p.add_argument("--length", type=int, default=None, help="tokens per hypothesis (default 40; --small 10)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--hub-sentences", type=int, default=None, help="hub inputs (default 8; --small 4)")
    p.add_argument("--ct2-python", default=os.environ.get("CT2_PYTHON", str(REPO.parent / "peer-venvs" / "ct2" / "bin" / "python")))  # fmt: skip
    args = p.parse_args()
    args.sentences = args.sentences or (16 if args.small else 96)
    args.length = args.length or (10 if args.small else 40)
    args.hub_sentences = args.hub_sentences or (4 if args.small else 8)
    fs = fairseq_bin("fairseq-train")
    if fs is None:
        print("fairseq peer not installed, skipping: it builds the checkpoints (set $FAIRSEQ_BIN)", file=sys.stderr)
        return 0
    if not Path(args.ct2_python).exists():
        print(f"CTranslate2 peer not installed ({args.ct2_python}), skipping it", file=sys.stderr)
    root = args.cache / ("small" if args.small else "release")
    wanted = set(args.models.split(","))
    for spec in specs(args.small):
        if spec.name not in wanted:
            continue
        model_dir = build(spec, root, fs, sentences=args.sentences, src_len=30)
        for threads in (int(t) for t in args.threads.split(",")):
            if not args.hub_only:
                rows = time_tools(model_dir, args, threads)
                print_rows(f"{spec.name} ({model_dir}): {args.sentences} sentences, beam {args.beam}, batch "
                           f"{args.batch_size}, {args.length} tokens each, {threads} thread(s)", rows)  # fmt: skip
            if not args.tools_only:
                for kind in ("translate",) if spec.name == "transformer" else ("sample", "fill_mask"):
                    time_hubs(model_dir, kind, args, threads)
    if "trained" in wanted:
        run_trained(args, fs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
