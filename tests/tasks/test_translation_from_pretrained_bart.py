"""``--task translation_from_pretrained_bart`` (mBART fine-tuning) against fairseq's outputs.

The fixture (``tests/fixtures/mbart``) is a tiny ``mbart_large``-shaped model that fairseq trained with this
task on the shared mt data (fairseq 0.12's task needed a one-line repair to run at all: see
``fairseq_fixed.py``). Its generate, validate and interactive outputs are compared line for line.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from seqloom.cli.decoding import load_task
from seqloom.cli.generate import main as generate
from seqloom.cli.interactive import main as interactive
from seqloom.cli.parser import parse_args
from seqloom.cli.train import SPEC, run

sys.path.insert(0, str(Path(__file__).parents[1] / "generation"))
from fixture_compare import compare_lines, read_lines  # noqa: E402

HERE = Path(__file__).parents[1] / "fixtures" / "mbart"
TASK = ["--task", "translation_from_pretrained_bart", "--langs", "en,es", "--source-lang", "en", "--target-lang", "es"]


def data(fixtures: Path) -> str:
    return str(fixtures / "mt" / "data-bin")


@pytest.mark.parametrize(("name", "options"), [("beam5", ["--beam", "5"]),
                                               ("beam2.prepend-bos", ["--beam", "2", "--prepend-bos"]),
                                               ("score-reference", ["--score-reference"])])  # fmt: skip
def test_generate_matches_fairseq(fairseq_fixtures: Path, capsys, name: str, options: list[str]) -> None:
    """One shard of batches: sources end with ``[en]`` (S- lines), targets and hypotheses end with ``</s> [es]``
    (stripped from the texts, scored in P- lines); the test split is shuffled among equal lengths, as fairseq's
    task does."""
    argv = [data(fairseq_fixtures), *TASK, "--path", str(HERE / "checkpoint.pt"), "--gen-subset", "test",
            "--batch-size", "32", "--no-progress-bar", "--num-shards", "4", "--shard-id", "1", *options]  # fmt: skip
    assert generate(argv) == 0
    got = [line for line in capsys.readouterr().out.splitlines() if line[1:2] == "-"]
    ids = {line.split("\t")[0][2:] for line in got if line.startswith("S-")}
    assert len(ids) >= 16
    assert all(line.endswith(" [en]") for line in got if line.startswith("S-"))
    expected = [line for line in read_lines(HERE / f"generate.{name}.txt.gz") if line.split("\t")[0][2:] in ids]
    assert compare_lines(expected, got) == []


def test_validate_and_interactive_match_fairseq(fairseq_fixtures: Path, capsys, tmp_path: Path) -> None:
    from seqloom.cli.validate import main as validate

    argv = [data(fairseq_fixtures), *TASK, "--path", str(HERE / "checkpoint.pt"), "--valid-subset", "valid",
            "--batch-size", "32"]  # fmt: skip
    assert validate(argv) == 0
    expected = (HERE / "validate.valid.txt").read_text().split("|")[1:4]  # loss, nll_loss, ppl
    assert " | ".join(x.strip() for x in expected) in capsys.readouterr().err
    mt = fairseq_fixtures / "mt"
    source = tmp_path / "input.en"
    source.write_text("\n".join((mt / "text" / "test.en").read_text(encoding="utf-8").splitlines()[:5]) + "\n")
    argv = [data(fairseq_fixtures), *TASK, "--path", str(HERE / "checkpoint.pt"), "--tokenizer", "moses", "--bpe",
            "subword_nmt", "--bpe-codes", str(mt / "text" / "bpe.codes"), "--beam", "5", "--input", str(source)]  # fmt: skip
    assert interactive(argv) == 0
    got = capsys.readouterr().out.splitlines()
    assert compare_lines(read_lines(HERE / "interactive.beam5.txt"), got, skip=("W-",)) == []


def test_samples_carry_language_tokens_and_bad_languages_are_named(fairseq_fixtures: Path) -> None:
    parsed = parse_args(SPEC, [data(fairseq_fixtures), *TASK, "--arch", "mbart_large", "--optimizer", "adam",
                               "--max-tokens", "512", "--prepend-bos"])  # fmt: skip
    task = load_task(parsed, split="valid")
    d = task.target_dictionary
    en, es, mask = d.index("[en]"), d.index("[es]"), d.index("<mask>")
    assert (en, es, mask) == (len(d) - 3, len(d) - 2, len(d) - 1) and d.unk() not in (en, es, mask)
    dataset = task.load_dataset("valid")
    batch = dataset.collater([dataset[i] for i in range(3)])
    src, prev, target = batch["net_input"]["src_tokens"], batch["net_input"]["prev_output_tokens"], batch["target"]
    for row in range(3):
        s = src[row][src[row].ne(d.pad())].tolist()
        t = target[row][target[row].ne(d.pad())].tolist()
        assert s[0] == d.bos() and s[-2:] == [d.eos(), en]
        assert t[0] == d.bos() and t[-2:] == [d.eos(), es]
        assert prev[row].tolist()[:2] == [es, d.bos()]  # the decoder starts from [es]
    for argv, message in [(TASK[:2] + TASK[4:], "--langs is required"),
                          ([*TASK[:3], "de,es", *TASK[4:]], "language 'en' is not in --langs de,es"),
                          ([*TASK, "--truncate-source"], "--truncate-source is not supported by this task")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            load_task(parse_args(SPEC, [data(fairseq_fixtures), *argv, "--arch", "mbart_large", "--optimizer", "adam",
                                        "--max-tokens", "512"]), split="valid")  # fmt: skip


def test_fine_tunes_from_fairseqs_checkpoint(fairseq_fixtures: Path, tmp_path: Path) -> None:
    """--restore-file of the fairseq model with the --reset-* flags: the weights load (mbart_large shape, the
    dictionaries grown by the task) and a few more updates train."""
    model = ["--arch", "mbart_large", "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "32",
             "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
             "--encoder-attention-heads", "2", "--decoder-attention-heads", "2", "--max-source-positions", "256",
             "--max-target-positions", "256"]  # fmt: skip
    argv = [data(fairseq_fixtures), "--cpu", *TASK, *model, "--criterion", "label_smoothed_cross_entropy",
            "--label-smoothing", "0.1", "--optimizer", "adam", "--lr", "0.001", "--max-tokens", "1024",
            "--max-update", "4", "--restore-file", str(HERE / "checkpoint.pt"), "--reset-optimizer",
            "--reset-dataloader", "--reset-meters", "--reset-lr-scheduler", "--save-dir", str(tmp_path),
            "--disable-validation", "--no-epoch-checkpoints", "--num-workers", "0", "--log-format", "json"]  # fmt: skip
    history = run(parse_args(SPEC, argv)).history
    assert len(history) == 4 and all(math.isfinite(h["loss"]) for h in history)
    assert history[0]["loss"] < 8.5  # the fine-tuned weights, not a fresh model (about 11 bits at the start)
    saved = torch.load(tmp_path / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    fairseq = torch.load(HERE / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert saved["model"].keys() == fairseq["model"].keys()
    assert saved["model"]["encoder.embed_tokens.weight"].shape == fairseq["model"]["encoder.embed_tokens.weight"].shape


def test_eval_bleu_generates_with_the_target_language_as_eos(fairseq_fixtures: Path) -> None:
    """--eval-bleu during fine-tuning: hypotheses end with [es] (they stop there) and the texts leave it out."""
    from seqloom.cli.model_loading import load_ensemble

    parsed = parse_args(SPEC, [data(fairseq_fixtures), *TASK, "--arch", "mbart_large", "--optimizer", "adam",
                               "--max-tokens", "512", "--eval-bleu"])  # fmt: skip
    task = load_task(parsed, split="valid")
    validator, reduce = task.validation_extras()
    model = load_ensemble(str(HERE / "checkpoint.pt"), task)[0]
    dataset = task.load_dataset("valid")
    sample = dataset.collater([dataset[i] for i in range(4)])
    sums = validator(model, sample)
    assert sums["_bleu_sys_len"] > 0 and "bleu" in reduce(sums)
    es = task.target_dictionary.index("[es]")
    tokens = torch.tensor([5, 6, task.target_dictionary.eos(), es])
    assert "[es]" not in validator.decode(tokens, escape_unk=False)


def test_hub_translates_like_fairseq_interactive(fairseq_fixtures: Path, tmp_path: Path) -> None:
    """``TransformerModel.from_pretrained`` on the fine-tuned mBART checkpoint (fairseq's own hub fails on it):
    translations equal fairseq-interactive's D- lines; hypotheses end with [es]; score equals --score-reference;
    an export loads back into the same hub."""
    from seqloom.hub import TransformerModel
    from seqloom.hub.export import write_export

    mt = fairseq_fixtures / "mt"
    hub = TransformerModel.from_pretrained(str(HERE), checkpoint_file="checkpoint.pt",
                                           data_name_or_path=str(mt / "data-bin"), tokenizer="moses",
                                           bpe="subword_nmt", bpe_codes=str(mt / "text" / "bpe.codes"))  # fmt: skip
    lines = (mt / "text" / "test.en").read_text(encoding="utf-8").splitlines()[:5]
    expected = [x.split("\t")[2] for x in read_lines(HERE / "interactive.beam5.txt") if x.startswith("D-")]
    assert hub.translate(lines, beam=5) == expected
    hyp = hub.generate(hub.encode(lines[0]), beam=2)[0]
    assert hyp.tokens[-1] == hub.tgt_dict.index("[es]")  # generation ends at the target language token
    # score equals fairseq-generate --score-reference (targets ... </s> [es], scored with [es] first in the decoder)
    from seqloom.data.formats import make_dataset

    src = make_dataset(str(mt / "data-bin" / "test.en-es.en"), "mmap")
    tgt = make_dataset(str(mt / "data-bin" / "test.en-es.es"), "mmap")
    want = {int(x.split("\t")[0][2:]): float(x.split("\t")[1])
            for x in read_lines(HERE / "generate.score-reference.txt.gz") if x.startswith("H-")}  # fmt: skip
    ids = sorted(want)[:3]
    for i, h in zip(ids, hub.score([(src[i], tgt[i]) for i in ids])):
        assert math.isclose(h.score / math.log(2), want[i], abs_tol=1e-4), i
    assert hub.score((lines[0], "Y")).positional_scores.numel() == len(hub.encode_target("Y")) + 1  # ... </s> [es]
    # seqloom export: safetensors, config and the plain dictionaries; loaded again (no pickle) it is the same hub
    out = write_export(hub, tmp_path / "out")
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["task"]["_name"] == "translation_from_pretrained_bart" and config["task"]["langs"] == hub.langs
    assert (out / "dict.en.txt").read_bytes() == (mt / "data-bin" / "dict.en.txt").read_bytes()  # without [xx]
    again = TransformerModel.from_pretrained(str(out))
    assert type(again) is type(hub) and len(again.src_dict) == len(hub.src_dict)
    assert again.translate(lines, beam=5) == expected
    torch.testing.assert_close(again.score((lines[0], "Y")).positional_scores,
                               hub.score((lines[0], "Y")).positional_scores)  # fmt: skip


def test_interactive_on_the_exports_weights_file_needs_no_task_flags(
    fairseq_fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--path export/model.safetensors`` alone: the task, languages, tokenizer, BPE codes and dictionaries
    come from the export (fairseq-interactive's D- lines); flags still win over them."""
    from seqloom.cli.interactive import SPEC as INTERACTIVE
    from seqloom.cli.model_loading import export_defaults
    from seqloom.hub import TransformerModel
    from seqloom.hub.export import write_export

    mt = fairseq_fixtures / "mt"
    hub = TransformerModel.from_pretrained(str(HERE), checkpoint_file="checkpoint.pt",
                                           data_name_or_path=str(mt / "data-bin"), tokenizer="moses",
                                           bpe="subword_nmt", bpe_codes=str(mt / "text" / "bpe.codes"))  # fmt: skip
    out = write_export(hub, tmp_path / "export")
    text = tmp_path / "in.txt"
    text.write_text("\n".join((mt / "text" / "test.en").read_text(encoding="utf-8").splitlines()[:5]) + "\n")
    weights = str(out / "model.safetensors")
    assert interactive(["--path", weights, "--beam", "5", "--input", str(text)]) == 0
    got = [line.split("\t")[2] for line in capsys.readouterr().out.splitlines() if line.startswith("D-")]
    assert got == [x.split("\t")[2] for x in read_lines(HERE / "interactive.beam5.txt") if x.startswith("D-")]
    argv = ["--path", weights, "--task", "translation", "-s", "es", "-t", "en", str(mt / "data-bin")]
    ns = parse_args(INTERACTIVE, argv, defaults=export_defaults(argv, text=True)).namespace
    assert (ns.task, ns.source_lang, ns.target_lang, ns.data) == ("translation", "es", "en", str(mt / "data-bin"))
    assert ns.tokenizer == "moses" and ns.bpe_codes == str(out / "bpe.codes")
    assert export_defaults(["--path", str(HERE / "checkpoint.pt")], text=True) is None  # a checkpoint: no defaults
