"""--task translation_multi_simple_epoch on a tiny model fairseq trained with it on both directions of the mt
fixture (tests/fixtures/multi_simple_epoch): generate, validate and interactive equal fairseq's outputs, for one
direction and the reversed one; what is not supported is refused by name."""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seqloom.cli.decoding import load_task
from seqloom.cli.generate import main as generate
from seqloom.cli.interactive import main as interactive
from seqloom.cli.parser import parse_args
from seqloom.cli.train import SPEC
from seqloom.tasks.base import BatchingOptions

sys.path.insert(0, str(Path(__file__).parents[1] / "generation"))
from fixture_compare import compare_lines, read_lines  # noqa: E402

HERE = Path(__file__).parents[1] / "fixtures" / "multi_simple_epoch"
TASK = ["--task", "translation_multi_simple_epoch", "--lang-pairs", "en-es,es-en", "--encoder-langtok", "src",
        "--decoder-langtok"]  # fmt: skip


def data(fixtures: Path) -> str:
    return str(fixtures / "mt" / "data-bin")


@pytest.mark.parametrize(("name", "options"), [
    ("en-es.beam5", ["-s", "en", "-t", "es", "--beam", "5"]),
    ("es-en.beam2.keep-langtok", ["-s", "es", "-t", "en", "--beam", "2", "--keep-inference-langtok"]),
    ("en-es.score-reference", ["-s", "en", "-t", "es", "--score-reference"]),
])  # fmt: skip
def test_generate_matches_fairseq(fairseq_fixtures: Path, capsys, name: str, options: list[str]) -> None:
    """One shard of batches: sources start with their language token (S- lines); hypotheses start with the
    target's, forced, scored in the P- lines and left out of the texts; es-en reads the en-es files reversed."""
    argv = [data(fairseq_fixtures), *TASK, "--path", str(HERE / "checkpoint.pt"), "--gen-subset", "test",
            "--batch-size", "32", "--max-len-a", "0", "--max-len-b", "30", "--no-progress-bar", "--num-shards", "4",
            "--shard-id", "2", *options]  # fmt: skip
    assert generate(argv) == 0
    got = [line for line in capsys.readouterr().out.splitlines() if line[1:2] == "-"]
    ids = {line.split("\t")[0][2:] for line in got if line.startswith("S-")}
    assert len(ids) >= 16
    src = options[1]
    assert all(line.split("\t")[1].startswith(f"__{src}__ ") for line in got if line.startswith("S-"))
    expected = [line for line in read_lines(HERE / f"generate.{name}.txt.gz") if line.split("\t")[0][2:] in ids]
    if "--keep-inference-langtok" in options:  # fairseq ignores the flag: compare without the kept tokens
        token = f"__{options[3]}__"
        texts = [line.split("\t")[-1] for line in got if line[:2] in ("T-", "H-", "D-")]
        assert texts and all(text.split(" ")[0] == token for text in texts)
        got = [drop_token(line, token) for line in got]
    assert compare_lines(expected, got) == []


def drop_token(line: str, token: str) -> str:
    """The line with ``token`` left out of its text. fairseq-generate ignores ``--keep-inference-langtok``: its task
    reads the flag from the generation options, which never have it, and strips the target language token anyway.
    Here the flag keeps it; with it removed again, the lines equal fairseq's."""
    fields = line.split("\t")
    if fields[0][:2] in ("T-", "H-", "D-"):
        fields[-1] = " ".join(word for word in fields[-1].split(" ") if word != token)
    return "\t".join(fields)


def test_validate_and_interactive_match_fairseq(fairseq_fixtures: Path, capsys, tmp_path: Path) -> None:
    from seqloom.cli.validate import main as validate

    argv = [data(fairseq_fixtures), *TASK, "-s", "es", "-t", "en", "--path", str(HERE / "checkpoint.pt"),
            "--valid-subset", "valid", "--batch-size", "32"]  # fmt: skip
    assert validate(argv) == 0
    expected = (HERE / "validate.es-en.txt").read_text().split("|")[1:4]  # loss, nll_loss, ppl
    assert " | ".join(x.strip() for x in expected) in capsys.readouterr().err
    mt = fairseq_fixtures / "mt"
    source = tmp_path / "input.en"
    source.write_text("\n".join((mt / "text" / "test.en").read_text(encoding="utf-8").splitlines()[:5]) + "\n")
    argv = [data(fairseq_fixtures), *TASK, "-s", "en", "-t", "es", "--path", str(HERE / "checkpoint.pt"),
            "--tokenizer", "moses", "--bpe", "subword_nmt", "--bpe-codes", str(mt / "text" / "bpe.codes"), "--beam",
            "5", "--max-len-a", "0", "--max-len-b", "30", "--input", str(source)]  # fmt: skip
    assert interactive(argv) == 0
    got = capsys.readouterr().out.splitlines()
    assert compare_lines(read_lines(HERE / "interactive.en-es.txt"), got, skip=("W-",)) == []


def test_language_tokens_follow_fairseqs_order(fairseq_fixtures: Path, tmp_path: Path) -> None:
    """Sorted languages of --lang-pairs by default; --langs/--lang-dict order them; mbart style adds <mask>."""

    def task(*extra: str) -> object:
        return load_task(parse_args(SPEC, [data(fairseq_fixtures), *TASK, "-s", "en", "-t", "es", *extra,
                                           "--arch", "transformer", "--optimizer", "adam"]))  # fmt: skip

    base = len(task().source_dictionary) - 2  # type: ignore[attr-defined]
    d = task().source_dictionary  # type: ignore[attr-defined]
    assert (d.index("__en__"), d.index("__es__")) == (base, base + 1)
    d = task("--langs", "es,fr,en").source_dictionary  # type: ignore[attr-defined]
    assert (d.index("__es__"), d.index("__fr__"), d.index("__en__")) == (base, base + 1, base + 2)
    lang_dict = tmp_path / "langs.txt"
    lang_dict.write_text("es\nen\n")
    d = task("--lang-dict", str(lang_dict), "--lang-tok-style", "mbart").source_dictionary  # type: ignore[attr-defined]
    assert (d.index("[es]"), d.index("[en]"), d.index("<mask>")) == (base, base + 1, base + 2)
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("en-es,es-en\n")
    t = load_task(parse_args(SPEC, [data(fairseq_fixtures), "--task", "translation_multi_simple_epoch", "--lang-pairs",
                                    str(pairs), "-s", "en", "-t", "es", "--arch", "transformer", "--optimizer", "adam"]))  # fmt: skip
    assert t.source_dictionary.index("__es__") == base + 1


@pytest.mark.parametrize(("extra", "message"), [
    (["-s", "en"], "pass both -s/--source-lang and -t/--target-lang, or neither"),
    (["-s", "en", "-t", "de"], "missing from the language list"),
    (["-s", "en", "-t", "es", "--extra-data", "{}"], "--extra-data is not supported"),
    (["-s", "en", "-t", "es", "--lang-tok-replacing-bos-eos"], "--lang-tok-replacing-bos-eos is not supported"),
])  # fmt: skip
def test_unsupported_commands_are_refused_by_name(fairseq_fixtures: Path, extra: list[str], message: str) -> None:
    argv = [data(fairseq_fixtures), *TASK, *extra, "--arch", "transformer", "--optimizer", "adam"]
    with pytest.raises(ValueError, match=message):
        load_task(parse_args(SPEC, argv))


def test_hub_translates_and_scores_like_fairseq(fairseq_fixtures: Path, tmp_path: Path) -> None:
    """``TransformerModel.from_pretrained(..., source_lang, target_lang)``: translate equals fairseq-interactive's
    D- lines; score equals generate --score-reference (fairseq's hub score fails on translation models); an export
    of it reloads with its languages."""
    from seqloom.data.formats import make_dataset
    from seqloom.hub import TransformerModel
    from seqloom.hub.export import write_export

    mt = fairseq_fixtures / "mt"
    hub = TransformerModel.from_pretrained(str(HERE), checkpoint_file="checkpoint.pt",
                                           data_name_or_path=str(mt / "data-bin"), tokenizer="moses",
                                           bpe="subword_nmt", bpe_codes=str(mt / "text" / "bpe.codes"),
                                           source_lang="en", target_lang="es")  # fmt: skip
    lines = (mt / "text" / "test.en").read_text(encoding="utf-8").splitlines()[:5]
    expected = [x.split("\t")[2] for x in read_lines(HERE / "interactive.en-es.txt") if x.startswith("D-")]
    assert hub.translate(lines, beam=5, max_len_a=0, max_len_b=30) == expected
    hyp = hub.generate(hub.encode(lines[0]), beam=2, max_len_a=0, max_len_b=30)[0]
    assert hyp.tokens[0] == hub.tgt_dict.index("__es__")  # forced first, left out of the text
    src = make_dataset(str(mt / "data-bin" / "test.en-es.en"), "mmap")
    tgt = make_dataset(str(mt / "data-bin" / "test.en-es.es"), "mmap")
    want = {int(x.split("\t")[0][2:]): float(x.split("\t")[1]) for x in read_lines(HERE / "generate.en-es.score-reference.txt.gz")
            if x.startswith("H-")}  # fmt: skip
    scored = hub.score([(src[i], tgt[i]) for i in (0, 1, 2)])
    for i, h in enumerate(scored):
        assert math.isclose(h.score / math.log(2), want[i], abs_tol=1e-4)
    # an export keeps the languages: reloaded (the other direction too) it translates the same
    write_export(hub, tmp_path / "out")
    again = TransformerModel.from_pretrained(str(tmp_path / "out"))
    assert again.translate(lines, beam=5, max_len_a=0, max_len_b=30) == expected
    reverse = TransformerModel.from_pretrained(str(tmp_path / "out"), source_lang="es", target_lang="en")
    assert reverse.generate(reverse.encode("Y la tierra"), beam=2, max_len_a=0, max_len_b=5)[0].tokens[0] == (
        reverse.tgt_dict.index("__en__")
    )
    # languages given by keyword win over the checkpoint's; a --lang-dict file that is not here is named
    swapped = TransformerModel.from_pretrained(str(HERE), checkpoint_file="checkpoint.pt",
                                               data_name_or_path=str(mt / "data-bin"), source_lang="en",
                                               target_lang="es", langs="es,en")  # fmt: skip
    assert swapped.src_dict.index("__es__") == hub.src_dict.index("__en__")
    with pytest.raises(FileNotFoundError, match="pass lang_dict="):
        TransformerModel.from_pretrained(str(HERE), checkpoint_file="checkpoint.pt", data_name_or_path=str(mt / "data-bin"),
                                         source_lang="en", target_lang="es", lang_dict="/nowhere/langs.txt")  # fmt: skip


def test_one_direction_fine_tunes_from_fairseqs_checkpoint(fairseq_fixtures: Path, tmp_path: Path) -> None:
    """``train -s en -t es`` trains that direction (fairseq's task does the same with -s/-t): the checkpoint's
    weights and language tokens are picked up (the loss starts near the trained model's, far below a fresh one's)."""
    from seqloom.cli.train import run

    model = ["--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "32",
             "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
             "--encoder-attention-heads", "2", "--decoder-attention-heads", "2", "--share-all-embeddings"]  # fmt: skip
    argv = [data(fairseq_fixtures), "--cpu", *TASK, "-s", "en", "-t", "es", *model, "--optimizer", "adam", "--lr",
            "1e-3", "--max-tokens", "2048", "--max-update", "3", "--save-dir", str(tmp_path), "--restore-file",
            str(HERE / "checkpoint.pt"), "--reset-optimizer", "--reset-dataloader", "--reset-meters",
            "--reset-lr-scheduler", "--disable-validation", "--no-epoch-checkpoints", "--criterion",
            "label_smoothed_cross_entropy", "--label-smoothing", "0.1"]  # fmt: skip
    history = run(parse_args(SPEC, argv)).history
    assert len(history) == 3 and history[0]["loss"] < 9.0  # a fresh model starts near log2(2058) = 11


MIXTURE = json.loads(gzip.decompress((HERE / "mixture.json.gz").read_bytes()))


@pytest.fixture(scope="module")
def mixture_data(fairseq_fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mixture")
    env = {**os.environ, "SEQLOOM_FAIRSEQ_FIXTURES": str(fairseq_fixtures)}
    subprocess.run(["bash", str(HERE / "make_data.sh"), str(out)], check=True, env=env)
    return out


@pytest.mark.parametrize("config", ["temperature", "concat", "virtual", "weights"])
def test_training_mixture_equals_fairseqs(mixture_data: Path, config: str) -> None:
    """Without -s/-t the training split mixes all --lang-pairs as fairseq's sampled multi-dataset: the same
    draws of each pair's items per epoch (temperature sampling up-samples the 200-pair es-en to 774), the same
    batching order and batches; the validation split concatenates the pairs. With --virtual-epoch-size 1000 the
    3,493-item mixture is served in windows of 1000, 1000, 1000 and 493, then drawn again (epoch 5)."""
    want = MIXTURE[config]
    task = load_task(parse_args(SPEC, [str(mixture_data), *want["args"], "--optimizer", "adam"]))
    assert len(task.source_dictionary) == want["dict_len"]
    valid = task.load_dataset("valid")
    train = task.load_dataset("train", epoch=1, combine=True)
    for epoch, got in want["train"].items():
        opts = BatchingOptions(max_tokens=1024, max_positions=(1024, 1024), seed=task.cfg.seed, epoch=int(epoch))
        batches = [b.tolist() for b in task.get_batch_iterator(train, opts).frozen_batches]
        assert len(train) == got["length"] and train.offsets.tolist() == got["offsets"], epoch
        assert train.indices.tolist() == got["indices"], epoch
        if "window" in got:
            assert train.window.tolist() == got["window"], epoch
        assert batches == got["batches"], epoch
    train.set_epoch(2)
    assert [{"source": train[i]["source"].tolist(), "target": train[i]["target"].tolist()} for i in range(3)] == want[
        "items"
    ]
    opts = BatchingOptions(max_tokens=1024, max_positions=(1024, 1024), seed=task.cfg.seed, epoch=1)
    assert valid.ordered_indices().tolist() == want["valid"]["order"]
    assert [b.tolist() for b in task.get_batch_iterator(valid, opts).frozen_batches] == want["valid"]["batches"]


def test_all_pairs_train_and_validate(mixture_data: Path, tmp_path: Path) -> None:
    from seqloom.cli.train import run

    model = ["--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "16",
             "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32", "--decoder-ffn-embed-dim", "32",
             "--encoder-attention-heads", "2", "--decoder-attention-heads", "2", "--share-all-embeddings"]  # fmt: skip
    argv = [str(mixture_data), "--cpu", *MIXTURE["temperature"]["args"], *model, "--optimizer", "adam", "--lr", "1e-3",
            "--max-update", "4", "--save-dir", str(tmp_path), "--no-epoch-checkpoints", "--num-workers", "0"]  # fmt: skip
    loop = run(parse_args(SPEC, argv))
    assert len(loop.history) == 4 and all(math.isfinite(h["loss"]) for h in loop.history)


def test_hub_loads_a_bart_architecture_model(mixture_data: Path, tmp_path: Path, capsys) -> None:
    """mBART-50-style fine-tuning (``--arch mbart_large --lang-tok-style mbart``): the hub builds the BART model with
    ``[xx]`` tokens and ``<mask>``, and translates as ``interactive`` does; an export loads back the same."""
    from seqloom.cli.train import main as train
    from seqloom.hub import TransformerModel

    model = ["--arch", "mbart_large", "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "16",
             "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32", "--decoder-ffn-embed-dim", "32",
             "--encoder-attention-heads", "2", "--decoder-attention-heads", "2"]  # fmt: skip
    task = [*TASK, "--lang-tok-style", "mbart"]
    assert train([str(mixture_data), "--cpu", *task, *model, "--optimizer", "adam", "--lr", "3e-3", "--max-tokens",
                  "1024", "--max-update", "20", "--save-dir", str(tmp_path), "--no-epoch-checkpoints",
                  "--disable-validation"]) == 0  # fmt: skip
    hub = TransformerModel.from_pretrained(str(tmp_path), checkpoint_file="checkpoint_last.pt",
                                           data_name_or_path=str(mixture_data), source_lang="en", target_lang="es")  # fmt: skip
    assert len(hub.src_dict) == 2056 + 3 and hub.src_dict.index("[es]") == 2057 and hub.src_dict[2058] == "<mask>"
    source = tmp_path / "input.en"
    source.write_text("the earth was empty\nand God said\n")
    capsys.readouterr()
    assert interactive([str(mixture_data), *task, "-s", "en", "-t", "es", "--path", str(tmp_path / "checkpoint_last.pt"),
                        "--beam", "2", "--max-len-a", "0", "--max-len-b", "8", "--input", str(source)]) == 0  # fmt: skip
    expected = [line.split("\t")[2] for line in capsys.readouterr().out.splitlines() if line.startswith("D-")]
    assert hub.translate(["the earth was empty", "and God said"], beam=2, max_len_a=0, max_len_b=8) == expected
    hyp = hub.generate(hub.encode("the earth was empty"), beam=2, max_len_a=0, max_len_b=8)[0]
    assert hyp.tokens[0] == hub.src_dict.index("[es]")
    # seqloom export keeps the BART config and the languages: loaded again it translates the same
    from seqloom.hub.export import write_export

    again = TransformerModel.from_pretrained(str(write_export(hub, tmp_path / "export")))
    assert type(again.model) is type(hub.model) and len(again.src_dict) == len(hub.src_dict)
    assert again.translate(["the earth was empty", "and God said"], beam=2, max_len_a=0, max_len_b=8) == expected


def test_sampling_weights_from_a_file_and_bad_weights_are_named(tmp_path: Path) -> None:
    from seqloom.tasks.translation_multi_simple_epoch import TranslationMultiSimpleEpochConfig, given_weights

    pairs = [("en", "es"), ("es", "en")]
    path = tmp_path / "weights.json"
    path.write_text('{"main:en-es": 0.25, "main:es-en": 0.75}')
    cfg = TranslationMultiSimpleEpochConfig(sampling_weights_from_file=str(path), sampling_weights="{'x': 1}")
    assert given_weights(cfg, pairs) == [0.25, 0.75]  # the file wins, as in fairseq
    with pytest.raises(ValueError, match="no weight for main:es-en"):
        given_weights(TranslationMultiSimpleEpochConfig(sampling_weights="{'main:en-es': 1.0}"), pairs)
    with pytest.raises(ValueError, match="is not a dictionary"):
        given_weights(TranslationMultiSimpleEpochConfig(sampling_weights="main:en-es=1"), pairs)
    assert given_weights(TranslationMultiSimpleEpochConfig(), pairs) is None
