"""RoBERTa against fairseq: masked-LM training words/s (same command, seed, data) and the hub's ``fill_mask`` and
``extract_features`` of N sentences (same model).

1. Training: the RoBERTa README's pretraining command (``roberta_base`` shrunk with ``--encoder-layers`` etc.,
   ``--sample-break-mode complete --tokens-per-sample 128``) on tests/fixtures/roberta's data for
   ``--max-update`` updates under ``fairseq-train`` and ``seqloom train``, each a fresh process with
   ``--threads`` threads. Words/s = tokens of all updates / time in the epochs (the JSON ``train`` line); also
   the user CPU seconds of the whole process and the last validation loss of each (same data, same seed).
   ``--required-batch-size-multiple 1`` makes both validate on all 33 validation blocks (with fairseq's default
   of 8 it leaves the last one out; training is unchanged: 176 blocks make 11 full batches). Both then train on
   the same batches, masks and dropout masks, so the two validation losses must agree (within 0.01: torch's
   AdamW adds ``eps`` where fairseq's Adam does not). ``--seeds N`` also trains seqloom with seeds 2..N+1 and
   prints the spread of its validation loss, the scale of a difference that another seed would make.
2. Hub: each toolkit's process loads the model (untimed; ``--model tiny``: tests/fixtures/roberta/gpt2/model.pt;
   ``--model base``: roberta.base's layout with random weights, built once with fairseq-train under ``--cache``),
   warms up, then runs ``fill_mask`` (topk 3) on N sentences with one ``<mask>`` each, one call per sentence as
   fairseq's hub takes them, and ``extract_features`` of the same N sentences one by one, under ``torch.no_grad``;
   seqloom's process also runs them as lists of ``--batch`` sentences (``fill_mask([...])``) and padded batches
   (``collate_tokens``), the sentences sorted by length as a bulk caller would group them. Sentences/s by wall
   time and by CPU time (which a loaded machine inflates less), each ratio against fairseq's one-call-per-sentence
   figure of the same alternated run. Checks: the same top-3 fillings as fairseq's and scores within 1e-4; the
   first ``--check`` sentences' features within 1e-4 (one by one and from the padded batches). At release size
   a line per call gives the floor that memory sets: one sentence per call reads every weight of the layers (and,
   for ``fill_mask``, the 50k-row vocabulary projection) once, so a call takes at least those bytes divided by
   the read bandwidth measured here (sums over a 512 MiB tensor), however fast the arithmetic.
3. ``--bf16``: training also runs ``seqloom train --bf16`` (bf16 products under autocast, float32 weights and
   optimizer) against fairseq's float32 run, and probes ``fairseq-train --bf16 --cpu`` (fairseq 0.12 takes
   ``--bf16`` for a TPU run and stops); the hub part runs again with both hubs converted by ``.bfloat16()``
   (fairseq's hub runs that way on the CPU), comparing fillings and features without a limit.
4. ``--int8``: seqloom's process then loads the model again with ``quantize="int8"`` (int8 linear layers and LM
   vocabulary matrix) and times the same calls, printed beside the float32 rows with their ratio to fairseq's
   float32 one-call figure and to seqloom's float32 one; its fillings' agreement with fairseq's and its largest
   feature difference are printed without a limit (int8 rounding moves features by 0.1% of their norm on
   the tiny trained model, ~2% on the random-weight base layout, where nearly tied fillings swap).

Targets: training >= 1.3x, fill_mask / extract_features >= 2x.

    python benchmarks/roberta.py [--max-update 100] [--sentences 1000] [--threads 1] [--repeat 1]
                                 [--size 2,32,64,2] [--seeds 0] [--skip-train|--skip-hub]
                                 [--model tiny|base] [--batch 32] [--check 100] [--bf16] [--int8]
    python benchmarks/roberta.py --skip-train --model base --sentences 200 --repeat 3   # release size (slow)
    python benchmarks/roberta.py --skip-hub --max-update 10 --threads 2 --size 12,768,3072,12 --bf16

fairseq is found through ``$FAIRSEQ_BIN`` or ``../peer-venvs/fs/bin``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import REPO, SEQLOOM, require_fairseq_bin, run_measured, thread_env, train_words_per_second

GPT2 = REPO.parent / "shared" / "data" / "gpt2-bpe"
TEXT = REPO.parent / "shared" / "data" / "bible-en-es" / "test.en"
OWN = REPO / "tests" / "fixtures" / "roberta" / "gpt2"


def recipe(data: Path, save_dir: Path, max_update: int, size: list[str], seed: int = 1) -> list[str]:
    layers, dim, ffn, heads = size
    return [
        str(data), "--cpu", "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta_base",
        "--encoder-layers", layers, "--encoder-embed-dim", dim, "--encoder-ffn-embed-dim", ffn,
        "--encoder-attention-heads", heads, "--sample-break-mode", "complete", "--tokens-per-sample", "128",
        "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-6", "--clip-norm", "0.0",
        "--lr-scheduler", "polynomial_decay", "--lr", "0.0005", "--warmup-updates", "10",
        "--total-num-update", str(max_update), "--dropout", "0.1", "--attention-dropout", "0.1",
        "--weight-decay", "0.01", "--batch-size", "16", "--update-freq", "1", "--max-update", str(max_update),
        "--seed", str(seed), "--log-format", "json", "--log-interval", "10", "--num-workers", "0", "--no-save",
        "--required-batch-size-multiple", "1", "--save-dir", str(save_dir),
    ]  # fmt: skip


def train_figures(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, float]:
    """(words/s over the epochs, user CPU seconds of the process, last validation loss, peak resident MiB)."""
    done = run_measured(cmd, env)
    losses = re.findall(r'"valid_loss": "([0-9.]+)"', done.output)
    loss = float(losses[-1]) if losses else float("nan")
    return train_words_per_second(done.output), done.user_s, loss, done.peak_rss_mib


def sentences(count: int) -> list[str]:
    lines = [line for line in TEXT.read_text(encoding="utf-8").splitlines() if len(line.split()) > 2]
    return [lines[i % len(lines)] for i in range(count)]


def masked_texts(texts: list[str]) -> list[str]:
    """Each sentence with its middle word replaced by ``<mask>``."""
    out = []
    for line in texts:
        words = line.split()
        words[len(words) // 2] = "<mask>"
        out.append(" ".join(words))
    return out


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``fn()``, its wall seconds and this process's CPU seconds (one thread: the time it ran, waits excluded)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def hub_worker(toolkit: str, job: dict[str, Any]) -> dict[str, Any]:
    """Runs inside the toolkit's process: load (untimed), warm up, then time ``fill_mask`` and ``extract_features``
    one call per sentence (and, for seqloom, lists/batches of ``job['batch']`` sentences; with ``job['int8']`` the
    same again on the model loaded with ``quantize="int8"``, keys prefixed ``int8_``). Writes the features of the
    first ``job['check']`` sentences to ``job['features']``; returns times and every filling."""
    import torch

    torch.set_num_threads(job["threads"])
    files = {"gpt2_encoder_json": str(GPT2 / "encoder.json"), "gpt2_vocab_bpe": str(GPT2 / "vocab.bpe")}
    if toolkit == "fairseq":
        from fairseq.models.roberta import RobertaModel
    else:
        from seqloom.hub import RobertaModel  # type: ignore[no-redef]
    hub = RobertaModel.from_pretrained(job["model_dir"], job["checkpoint"], ".", bpe="gpt2", **files)
    hub.eval()
    if job.get("bf16"):
        hub = hub.bfloat16()
    out, kept = time_hub(toolkit, hub, job)
    if toolkit == "seqloom" and job.get("int8"):
        del hub  # the float32 model's memory back before the int8 one is loaded
        hub = RobertaModel.from_pretrained(job["model_dir"], job["checkpoint"], ".", bpe="gpt2", quantize="int8",
                                           **files)  # fmt: skip
        out8, kept8 = time_hub(toolkit, hub, job)
        out.update({f"int8_{k}": v for k, v in out8.items()})
        kept.update({f"int8_{k}": v for k, v in kept8.items()})
    torch.save({k: [t.float() for t in v] for k, v in kept.items()}, job["features"])
    return out


def time_hub(toolkit: str, hub: Any, job: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """:func:`hub_worker`'s timings of one loaded hub, and the features it keeps."""
    import torch

    if toolkit == "fairseq":
        from fairseq.data.data_utils import collate_tokens
    else:
        from seqloom.data.data_utils import collate_tokens  # type: ignore[no-redef]
    texts, size, check = job["texts"], job["batch"], job["check"]
    masked = masked_texts(texts)
    tokens = [hub.encode(text) for text in texts]
    by_length = sorted(range(len(texts)), key=lambda i: len(tokens[i]))  # batches of similar lengths, as bulk
    chunks = [by_length[i : i + size] for i in range(0, len(texts), size)]  # callers make them: little padding
    pad = hub.task.source_dictionary.pad()
    out: dict[str, Any] = {"weight_bytes": weight_bytes(hub.model)}
    with torch.no_grad():  # as a user measuring inference would call both hubs
        for text in masked[:4]:
            hub.fill_mask(text, topk=3)
            hub.extract_features(hub.encode(text))
        out["fill"], *out["fill_s"] = timed(lambda: [hub.fill_mask(text, topk=3) for text in masked])
        features, *out["features_s"] = timed(lambda: [hub.extract_features(t)[0] for t in tokens])
        kept = {"one": features[:check]}
        if toolkit == "seqloom":
            hub.fill_mask(masked[:size], topk=3)
            lists, *out["fill_batched_s"] = timed(
                lambda: [hub.fill_mask([masked[i] for i in c], topk=3) for c in chunks]
            )
            fillings: list[Any] = [None] * len(texts)
            for c, rows in zip(chunks, lists):
                for i, row in zip(c, rows):
                    fillings[i] = row
            out["fill_batched"] = fillings
            batches = [collate_tokens([tokens[i] for i in c], pad_idx=pad) for c in chunks]
            hub.extract_features(batches[0])
            padded, *out["features_batched_s"] = timed(lambda: [hub.extract_features(b) for b in batches])
            rows = {i: f[j, : len(tokens[i])] for c, f in zip(chunks, padded) for j, i in enumerate(c)}
            kept["batched"] = [rows[i] for i in range(min(check, len(texts)))]
    return out, kept


def weight_bytes(model: Any) -> dict[str, int]:
    """Bytes of weights one call must read: the encoder layers (``features``; the embedding table is only looked
    up) and, for ``fill_mask``, the LM head's vocabulary projection as well (all of it, for the masked rows).
    State-dict tensors, so that an int8 model's weights (buffers: int8 rows and their scales) count too."""
    layers = sum(t.numel() * t.element_size() for n, t in model.state_dict().items() if ".layers." in n)
    vocab = model.encoder.lm_head.weight  # the (tied) 50k x C embedding, or its int8 copy
    return {"features": layers, "fill": layers + vocab.numel() * vocab.element_size()}


def read_bandwidth(threads: int) -> float:
    """Bytes/s this machine reads from memory: the best of 5 sums over a 512 MiB tensor on ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    x = torch.ones(128 << 20)
    best = min(timed(x.sum)[1] for _ in range(5))
    return x.numel() * x.element_size() / best


def run_hub(python: str, toolkit: str, job: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(job, f)
    code = (f"import json, sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import roberta; "
            f"r = roberta.hub_worker({toolkit!r}, json.load(open({f.name!r}))); "
            "print('RESULT' + json.dumps(r))")  # fmt: skip
    proc = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True)
    os.unlink(f.name)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{toolkit} hub run failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT") :])


def base_model(fs: Path, cache: Path) -> Path:
    """``cache/base``: roberta.base's layout (12 layers, d768, 12 heads, FFN 3072, 514 positions, GPT-2 ids plus
    3 made-up words: 50,265 symbols with the specials and ``<mask>``) with random weights, built once by
    ``fairseq-train`` (one SGD update at a learning rate of 1e-12 on random ids) as ``model.pt`` and ``dict.txt``."""
    out = cache / "base"
    if (out / "BUILT").is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    (out / "text").mkdir(parents=True)
    words = [str(i) for i in range(50257)] + [f"madeupword{i:04d}" for i in range(3)]  # roberta.base's dict.txt
    (out / "dict.txt").write_text("".join(f"{w} {len(words) + 10 - i}\n" for i, w in enumerate(words)), "utf-8")
    rng = random.Random(0)
    lines = [" ".join(rng.choice(words[:50257]) for _ in range(100)) for _ in range(16)]
    (out / "text" / "train.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = thread_env(2)
    print(f"building the roberta.base-layout model in {out} (once)", file=sys.stderr)
    run_measured([str(fs / "fairseq-preprocess"), "--only-source", "--srcdict", str(out / "dict.txt"), "--trainpref",
                  str(out / "text" / "train.txt"), "--destdir", str(out / "data-bin"), "--workers", "1"], env)  # fmt: skip
    run_measured([str(fs / "fairseq-train"), str(out / "data-bin"), "--cpu", "--num-workers", "0", "--seed", "1",
                  "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta_base", "--tokens-per-sample",
                  "512", "--optimizer", "sgd", "--lr", "1e-12", "--batch-size", "2", "--max-update", "1",
                  "--disable-validation", "--no-epoch-checkpoints", "--no-save-optimizer-state", "--save-dir",
                  str(out)], env)  # fmt: skip
    (out / "checkpoint_last.pt").rename(out / "model.pt")
    (out / "BUILT").write_text("ok\n")
    return out


def fairseq_bf16_probe(fs: Path, data: Path, env: dict[str, str]) -> str:
    """What ``fairseq-train --bf16 --cpu`` does with the recipe: its last error line, or "runs"."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(fs / "fairseq-train"), *recipe(data, Path(tmp), 1, ["1", "16", "32", "2"]), "--bf16"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode == 0:
        return "runs"
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return f"fails ({lines[-1].strip() if lines else f'exit status {proc.returncode}'})"


def bench_train(args: argparse.Namespace, fs: Path, env: dict[str, str]) -> None:
    size = args.size.split(",")
    tools = [("fairseq", [str(fs / "fairseq-train")], []), ("seqloom", [*SEQLOOM, "train"], [])]
    if args.bf16:
        tools.append(("seqloom bf16", [*SEQLOOM, "train"], ["--bf16"]))
    runs: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name, _, _ in tools}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeat):
            for name, exe, extra in tools:
                cmd = exe + recipe(OWN, Path(tmp) / f"{name.replace(' ', '-')}{rep}", args.max_update, size) + extra
                runs[name].append(train_figures(cmd, env))
    print(f"masked-LM training, {args.max_update} updates, size {args.size}, {args.threads} thread(s):")
    for name, rows in runs.items():
        wps, cpu = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
        peak = max(r[3] for r in rows)
        print(
            f"  {name:12} {wps:9.1f} words/s  {cpu:7.1f} user CPU s  peak {peak:7.1f} MiB  valid loss {rows[-1][2]:.3f}"
        )
    peaks = {name: max(r[3] for r in rows) for name, rows in runs.items()}
    for name in runs:
        if name == "fairseq":
            continue
        ratios = [s[0] / f[0] for f, s in zip(runs["fairseq"], runs[name])]
        print(
            f"  ratio {name}/fairseq: {statistics.median(ratios):.2f}x words/s (target >= 1.3x); "
            f"peak memory {peaks[name] / peaks['fairseq']:.2f}x (target <= 1)"
        )
    gap = runs["seqloom"][-1][2] - runs["fairseq"][-1][2]
    verdict = "the same run" if abs(gap) <= 0.01 else "NOT the same run: check masks, batches and dropout"
    print(f"  valid loss seqloom - fairseq: {gap:+.3f} ({verdict})")
    if args.bf16:
        gap = runs["seqloom bf16"][-1][2] - runs["fairseq"][-1][2]
        print(
            f"  valid loss seqloom bf16 - fairseq (float32): {gap:+.3f} (bf16 products: compare with the seed spread)"
        )
        print(f"  fairseq-train --bf16 --cpu on the same recipe: {fairseq_bf16_probe(fs, OWN, env)}")
    if args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            cmds = [[*SEQLOOM, "train", *recipe(OWN, Path(tmp) / f"s{seed}", args.max_update, size, seed)]
                    for seed in range(2, args.seeds + 2)]  # fmt: skip
            losses = [runs["seqloom"][-1][2]] + [train_figures(cmd, env)[2] for cmd in cmds]
        print(f"  seqloom valid loss over seeds 1..{args.seeds + 1}: {' '.join(f'{x:.3f}' for x in losses)} "
              f"(spread {max(losses) - min(losses):.3f}, stdev {statistics.stdev(losses):.3f})")  # fmt: skip


def fillings_agree(ref: list[list[list[Any]]], got: list[list[list[Any]]]) -> tuple[int, float]:
    """How many inputs have the same top-k (texts and tokens, in order), and the largest score difference."""
    same, diff = 0, 0.0
    for want, have in zip(ref, got):
        same += [(t, tok) for t, _, tok in want] == [(t, tok) for t, _, tok in have]
        diff = max([diff] + [abs(a[1] - b[1]) for a, b in zip(want, have)])
    return same, diff


def features_diff(ref: list[Any], got: list[Any]) -> float:
    return max(float((a.float() - b.float()).abs().max()) for a, b in zip(ref, got))


def bench_hub(args: argparse.Namespace, fs: Path, env: dict[str, str]) -> None:
    if args.model == "base":
        model_dir, checkpoint, label = base_model(fs, args.cache), "model.pt", "roberta.base layout (12 layers, d768)"
    else:
        model_dir, checkpoint, label = OWN, "model.pt", "tiny fixture (2 layers, d32)"
    texts = sentences(args.sentences)
    bandwidth = read_bandwidth(args.threads)
    for bf16 in (False, True) if args.bf16 else (False,):  # int8 runs beside float32 (seqloom's process)
        hub_rows(args, fs, env, model_dir, checkpoint, f"{label}, {'bf16' if bf16 else 'float32'}", texts, bf16,
                 bandwidth)  # fmt: skip


def hub_rows(args: argparse.Namespace, fs: Path, env: dict[str, str], model_dir: Path, checkpoint: str, label: str,
             texts: list[str], bf16: bool, bandwidth: float) -> None:  # fmt: skip
    import torch

    runs: dict[str, list[dict]] = {"fairseq": [], "seqloom": []}
    with tempfile.TemporaryDirectory() as tmp:
        kept = {}
        for _ in range(args.repeat):
            for name, py in (("fairseq", str(fs / "python")), ("seqloom", sys.executable)):
                job = {"model_dir": str(model_dir), "checkpoint": checkpoint, "texts": texts, "threads": args.threads,
                       "batch": args.batch, "check": args.check, "features": str(Path(tmp) / f"{name}.pt"),
                       "bf16": bf16, "int8": args.int8 and not bf16}  # fmt: skip
                runs[name].append(run_hub(py, name, job, env))
                kept[name] = torch.load(job["features"])
    fs_runs, sl_runs = runs["fairseq"], runs["seqloom"]
    n = len(texts)
    print(f"hub, {label}, {n} sentences, {args.threads} thread(s), {args.repeat} alternated run(s) each; "
          "sentences/s by wall time (by CPU time), medians; ratio to fairseq one call per sentence:")  # fmt: skip
    int8 = "int8_fill" in sl_runs[0]
    for what, key in (("fill_mask topk 3", "fill"), ("extract_features", "features")):
        base_wall = statistics.median(n / r[f"{key}_s"][0] for r in fs_runs)
        base_cpu = statistics.median(n / r[f"{key}_s"][1] for r in fs_runs)
        print(f"  {what:17} fairseq one by one    {base_wall:8.1f} ({base_cpu:8.1f})")
        rows = [("one by one", "", "target >= 2x"), (f"batches of {args.batch}", "", "target >= 2x")]
        if int8:
            rows += [("int8 one each", "int8_", "int8"), (f"int8 batch {args.batch}", "int8_", "int8")]
        for row, prefix, note in rows:
            field = f"{prefix}{key}_s" if "one" in row else f"{prefix}{key}_batched_s"
            wall = [(n / s[field][0]) / (n / f[f"{key}_s"][0]) for f, s in zip(fs_runs, sl_runs)]
            cpu = [(n / s[field][1]) / (n / f[f"{key}_s"][1]) for f, s in zip(fs_runs, sl_runs)]
            rate = statistics.median(n / s[field][0] for s in sl_runs)
            rate_cpu = statistics.median(n / s[field][1] for s in sl_runs)
            if prefix:  # int8 against seqloom's float32 call of the same shape, in the same process
                float_field = field[len(prefix) :]
                own = statistics.median(s[float_field][0] / s[field][0] for s in sl_runs)
                note = f"int8; {own:.2f}x seqloom float32"
            print(f"  {'':17} seqloom {row:14} {rate:8.1f} ({rate_cpu:8.1f})  {statistics.median(wall):5.2f}x "
                  f"({statistics.median(cpu):5.2f}x)  ({note})")  # fmt: skip
        # one sentence per call reads every weight of the layers (and the LM head) once: a floor on its time
        for prefix in ("", "int8_") if int8 else ("",):
            weights = sl_runs[0][f"{prefix}weight_bytes"][key]
            if weights < 64 << 20:  # a small model's weights stay in the caches
                continue
            floor = weights / bandwidth
            kind = "int8 " if prefix else ""
            print(f"  {'':17} one {kind}call reads {weights / 2**20:.0f} MiB of weights: at least "
                  f"{floor * 1e3:.1f} ms at {bandwidth / 1e9:.1f} GB/s, at most {1 / floor:.1f} sentences/s, "
                  f"{1 / floor / base_wall:.2f}x fairseq")  # fmt: skip
    limit = 1e-4 if not bf16 else float("inf")
    same, diff = fillings_agree(fs_runs[0]["fill"], sl_runs[0]["fill"])
    same_b, diff_b = fillings_agree(fs_runs[0]["fill"], sl_runs[0]["fill_batched"])
    bound = "limit 1e-4" if not bf16 else "bf16: no limit"
    print(f"  same top-3 fillings as fairseq: {same}/{n} one by one, {same_b}/{n} in lists; largest score "
          f"difference {max(diff, diff_b):.1e} ({bound})")  # fmt: skip
    one = features_diff(kept["fairseq"]["one"], kept["seqloom"]["one"])
    batched = features_diff(kept["fairseq"]["one"], kept["seqloom"]["batched"])
    print(f"  features of the first {len(kept['fairseq']['one'])} sentences, largest difference from fairseq's: "
          f"{one:.1e} one by one, {batched:.1e} in padded batches ({bound})")  # fmt: skip
    if not bf16 and (same < n or same_b < n or max(diff, diff_b, one, batched) > limit):
        print("  RESULTS DIFFER from fairseq's beyond the limits above")
    if int8:
        same, diff = fillings_agree(fs_runs[0]["fill"], sl_runs[0]["int8_fill"])
        same_b, diff_b = fillings_agree(fs_runs[0]["fill"], sl_runs[0]["int8_fill_batched"])
        one = features_diff(kept["fairseq"]["one"], kept["seqloom"]["int8_one"])
        batched = features_diff(kept["fairseq"]["one"], kept["seqloom"]["int8_batched"])
        first = sum(a[0][2] == b[0][2] for a, b in zip(fs_runs[0]["fill"], sl_runs[0]["int8_fill"]))
        print(f"  int8: same top-3 fillings as fairseq's float32: {same}/{n} one by one, {same_b}/{n} in lists "
              f"(the same best filling: {first}/{n}); "
              f"largest score difference {max(diff, diff_b):.1e}; features' largest difference {one:.1e} one by one, "
              f"{batched:.1e} in padded batches (int8: no limit)")  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-update", type=int, default=100)
    p.add_argument("--sentences", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=1, help="alternating runs of each tool; medians count")
    p.add_argument("--size", default="2,32,64,2", help="layers,embed dim,FFN dim,heads of the trained model")
    p.add_argument("--seeds", type=int, default=0, help="also train seqloom with this many other seeds (spread)")
    p.add_argument(
        "--bf16",
        action="store_true",
        help="also train seqloom with --bf16 (bf16 products, float32 weights) against fairseq's float32 run, and run "
        "both hubs converted with .bfloat16()",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="also time seqloom's hub loaded with quantize='int8' (float32 runs only), beside the float32 rows",
    )
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-hub", action="store_true")
    p.add_argument(
        "--model",
        choices=("tiny", "base"),
        default="tiny",
        help="hub model: the tiny fixture, or roberta.base's layout with random weights (built once)",
    )
    p.add_argument("--batch", type=int, default=32, help="sentences per seqloom list/batch call")
    p.add_argument("--check", type=int, default=100, help="sentences whose features are compared with fairseq's")
    p.add_argument(
        "--cache",
        type=Path,
        default=Path.home() / ".cache" / "seqloom-bench" / "roberta",
        help="where the roberta.base-layout model is built",
    )
    args = p.parse_args()
    fs = require_fairseq_bin("fairseq-train")
    env = thread_env(args.threads)
    if not args.skip_train:
        bench_train(args, fs, env)
    if not args.skip_hub:
        bench_hub(args, fs, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
