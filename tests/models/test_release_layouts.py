"""Checkpoints laid out like fairseq's released translation models: every command works and equals fairseq.

``tests/fixtures/release_layouts`` (made by ``scripts/make_release_layouts.sh`` with fairseq 0.12.3.1) holds
tiny models with the released architecture names, options, dictionaries, BPE files and checkpoint layout
(an ``args`` Namespace and no ``cfg``, as the 2019-2020 releases ship): wmt19 en-de (an ensemble of
``transformer_wmt_en_de_big`` with shared embeddings, Moses + fastBPE), wmt16 en-de
(``transformer_vaswani_wmt_en_de_big --share-all-embeddings``, Moses + subword-nmt) and a checkpoint in
fairseq's oldest layout (old args, old key names, no ``optimizer_history``), and bart.large.cnn's layout
(``bart_large`` fine-tuned by the translation task) under its summarization options, and m2m_100's
(``translation_multi_simple_epoch``, pre-norm, ``--fixed-dictionary``, SentencePiece), mbart.cc25's
(``multilingual_denoising`` with the 25 language tokens) and a model fine-tuned from it
(``translation_from_pretrained_bart``). fairseq's generate and
interactive lines on each are the reference: hypotheses exact, scores within 1e-4.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from seqloom.checkpoint.io import load_checkpoint
from seqloom.cli.generate import main as generate
from seqloom.cli.interactive import main as interactive
from seqloom.data.dictionary import Dictionary
from seqloom.hub import TransformerModel

sys.path.insert(0, str(Path(__file__).parents[1] / "generation"))
from fixture_compare import compare_lines, read_lines  # noqa: E402

HERE = Path(__file__).parents[1] / "fixtures" / "release_layouts"
WMT19, WMT16, OLDEST = HERE / "wmt19_en_de", HERE / "wmt16_en_de", HERE / "oldest"
# name: (folder of fairseq's outputs, data/model folder, --path, BPE)
LAYOUTS = {
    "wmt19_ensemble": (WMT19, WMT19, f"{WMT19 / 'model1.pt'}:{WMT19 / 'model2.pt'}", "fastbpe"),
    "wmt16_share_all": (WMT16, WMT16, str(WMT16 / "model.pt"), "subword_nmt"),
    "oldest_args_only": (OLDEST, WMT16, str(OLDEST / "model.pt"), "subword_nmt"),
}
SEARCH = ["--beam", "5", "--max-len-b", "30"]


@pytest.mark.parametrize("name", LAYOUTS)
def test_generate_equals_fairseq(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    outputs, data, path, _ = LAYOUTS[name]
    argv = [str(data), "-s", "en", "-t", "de", "--path", path, "--gen-subset", "test", *SEARCH, "--batch-size", "16"]
    assert generate(argv) == 0
    got = [line for line in capsys.readouterr().out.splitlines() if line[1:2] == "-"]
    assert compare_lines(read_lines(outputs / "generate.beam5.txt.gz"), got) == []


@pytest.mark.parametrize("name", LAYOUTS)
def test_interactive_equals_fairseq(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    outputs, data, path, bpe = LAYOUTS[name]
    argv = [str(data), "-s", "en", "-t", "de", "--path", path, *SEARCH, "--nbest", "2", "--tokenizer", "moses",
            "--bpe", bpe, "--bpe-codes", str(data / "bpecodes"), "--input", str(HERE / "input.en")]  # fmt: skip
    assert interactive(argv) == 0
    got = capsys.readouterr().out.splitlines()
    assert compare_lines(read_lines(outputs / "interactive.beam5.nbest2.txt"), got, skip=("W-",)) == []


@pytest.mark.parametrize("name", LAYOUTS)
def test_hub_translates_as_fairseq_interactive(name: str) -> None:
    """``from_pretrained`` on the folder, as the released models are loaded (``checkpoint_file='a.pt:b.pt'``
    for the ensemble): the best hypothesis of each line is fairseq-interactive's ``D-`` text."""
    outputs, data, path, bpe = LAYOUTS[name]
    files = ":".join(Path(p).name for p in path.split(":"))
    hub = TransformerModel.from_pretrained(str(Path(path.split(":")[0]).parent), checkpoint_file=files,
                                           data_name_or_path=str(data), tokenizer="moses", bpe=bpe,
                                           bpe_codes=str(data / "bpecodes"), source_lang="en", target_lang="de")  # fmt: skip
    lines = (HERE / "input.en").read_text(encoding="utf-8").splitlines()
    expected = {}
    for line in read_lines(outputs / "interactive.beam5.nbest2.txt"):
        tag, *rest = line.split("\t")
        if tag.startswith("D-") and tag not in expected:
            expected[tag] = rest[1]
    assert hub.translate(lines, beam=5, max_len_b=30) == [expected[f"D-{i}"] for i in range(len(lines))]


def test_layouts_are_the_released_ones() -> None:
    """The fixtures really are in the released layouts (an args Namespace, no cfg; old keys in the oldest)."""
    for path in (WMT19 / "model1.pt", WMT16 / "model.pt"):
        state = load_checkpoint(path)
        assert state.get("cfg") is None and state["args"].arch.endswith("_big")
        assert state["args"].share_all_embeddings
    oldest = load_checkpoint(OLDEST / "model.pt")
    assert "optimizer_history" not in oldest and "cfg" not in oldest
    assert not hasattr(oldest["args"], "max_source_positions") and oldest["args"].max_positions == 1024
    keys = set(oldest["model"])
    assert "decoder.embed_out" in keys and "decoder.output_projection.weight" not in keys
    assert "encoder.layers.0.layer_norms.1.weight" in keys and "decoder.layers.0.layer_norms.2.weight" in keys
    assert "encoder.layers.0.self_attn.in_proj_weight" in keys and not any(k.endswith(".version") for k in keys)
    assert isinstance(oldest["model"]["decoder.embed_out"], torch.Tensor)


CNN = HERE / "bart_large_cnn"
CNN_SEARCH = ["--beam", "4", "--lenpen", "2.0", "--max-len-b", "140", "--min-len", "55", "--no-repeat-ngram-size", "3"]


def repeated_trigrams(tokens: list[str]) -> int:
    grams = [tuple(tokens[i : i + 3]) for i in range(len(tokens) - 2)]
    return len(grams) - len(set(grams))


@pytest.mark.parametrize("mode", ["fairseq", "strict"])
def test_bart_cnn_generate_with_the_summarization_options(mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    """bart.large.cnn's layout (``bart_large`` fine-tuned by the translation task, ``dict.source.txt`` /
    ``dict.target.txt``) under its summarization options, all 12 test sentences (the reference was made with
    ``--required-batch-size-multiple 1``: fairseq's default 8 drops the last, partial batch; seqloom's never does).

    fairseq 0.12's CPU n-gram check blocks nothing (its hypotheses repeat trigrams): under
    ``--no-repeat-ngram-mode fairseq`` seqloom prints fairseq's lines; under the default ``strict`` mode no
    hypothesis repeats a trigram."""
    argv = [str(CNN), "-s", "source", "-t", "target", "--path", str(CNN / "model.pt"), "--gen-subset", "test",
            *CNN_SEARCH, "--batch-size", "4", "--no-repeat-ngram-mode", mode]  # fmt: skip
    assert generate(argv) == 0
    got = [line for line in capsys.readouterr().out.splitlines() if line[1:2] == "-"]
    expected = read_lines(CNN / "generate.cnn.txt.gz")
    hyps = {line.split("\t")[0]: line.split("\t")[2].split() for line in got if line.startswith("H-")}
    assert sorted(hyps) == sorted(f"H-{i}" for i in range(12))
    if mode == "fairseq":
        assert compare_lines(expected, got) == []
        assert all(repeated_trigrams(line.split("\t")[2].split()) for line in expected if line.startswith("H-"))
    else:
        assert [tag for tag, tokens in hyps.items() if repeated_trigrams(tokens)] == []
        assert all(len(tokens) >= 55 for tokens in hyps.values())  # min_len still holds with the blocking


def test_bart_cnn_hub_sample_equals_fairseq(gpt2_bpe: Path) -> None:
    """fairseq's summarization snippet: ``BARTModel.from_pretrained(...).sample(lines, beam=4, lenpen=2.0,
    max_len_b=140, min_len=55, no_repeat_ngram_size=3)``; the hub reads the translation task's
    ``dict.source.txt``/``dict.target.txt``. Equal to fairseq's under ``no_repeat_ngram_mode="fairseq"``; the
    default strict mode leaves no repeated trigram."""
    import json

    from seqloom.hub import BARTModel

    ref = json.loads((CNN / "hub.json").read_text(encoding="utf-8"))
    bart = BARTModel.from_pretrained(str(CNN), checkpoint_file="model.pt", data_name_or_path=str(CNN), bpe="gpt2",
                                     gpt2_encoder_json=str(gpt2_bpe / "encoder.json"),
                                     gpt2_vocab_bpe=str(gpt2_bpe / "vocab.bpe"))  # fmt: skip
    assert len(bart.src_dict) == len(bart.tgt_dict) == len(Dictionary.load(CNN / "dict.source.txt"))  # no <mask>
    assert bart.sample(ref["inputs"], no_repeat_ngram_mode="fairseq", **ref["options"]) == ref["sample"]
    options = {k: v for k, v in ref["options"].items() if k != "beam"}
    hyps = bart.generate([bart.encode(line) for line in ref["inputs"]], beam=ref["options"]["beam"], **options)
    assert [repeated_trigrams(h[0]["tokens"].tolist()) for h in hyps] == [0] * len(ref["inputs"])


def test_bart_translation_checkpoint_without_its_dictionaries_is_explained(tmp_path: Path) -> None:
    from seqloom.hub import BARTModel

    (tmp_path / "model.pt").symlink_to((CNN / "model.pt").resolve())
    (tmp_path / "dict.txt").write_text((CNN / "dict.source.txt").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=r"dict\.source\.txt.*translation task"):
        BARTModel.from_pretrained(str(tmp_path), checkpoint_file="model.pt", bpe=None)


M2M = HERE / "m2m_100"
M2M_TASK = ["--task", "translation_multi_simple_epoch", "--lang-pairs", str(M2M / "language_pairs.txt"),
            "--encoder-langtok", "src", "--decoder-langtok", "--fixed-dictionary", str(M2M / "model_dict.txt")]  # fmt: skip


def test_m2m_100_layout_is_the_released_one() -> None:
    """m2m_100's layout: pre-norm transformer with shared embeddings trained by translation_multi_simple_epoch,
    an args Namespace, language tokens ``__xx__`` only in the fixed dictionary, a saved --fixed-dictionary path
    from the trainer's machine."""
    state = load_checkpoint(M2M / "model.pt")
    args = state["args"]
    assert state.get("cfg") is None and args.task == "translation_multi_simple_epoch"
    assert args.encoder_normalize_before and args.decoder_normalize_before and args.share_all_embeddings
    assert args.encoder_langtok == "src" and args.decoder_langtok
    assert not Path(args.fixed_dictionary).exists()
    model_dict = (M2M / "model_dict.txt").read_text(encoding="utf-8").split("\n")
    data_dict = (M2M / "data_dict.txt").read_text(encoding="utf-8").split("\n")
    assert "__en__ 1" in model_dict and "__es__ 1" not in data_dict
    assert state["model"]["encoder.embed_tokens.weight"].shape[0] == len(Dictionary.load(M2M / "model_dict.txt"))


def test_m2m_100_generate_equals_fairseq(capsys: pytest.CaptureFixture[str]) -> None:
    """m2m_100 README's fairseq-generate command (data binarized with data_dict, --remove-bpe sentencepiece)."""
    argv = [str(M2M), *M2M_TASK, "-s", "en", "-t", "es", "--path", str(M2M / "model.pt"), "--gen-subset", "test",
            "--batch-size", "32", "--beam", "5", "--max-len-b", "30", "--remove-bpe", "sentencepiece"]  # fmt: skip
    assert generate(argv) == 0
    got = [line for line in capsys.readouterr().out.splitlines() if line[1:2] == "-"]
    assert compare_lines(read_lines(M2M / "generate.en-es.beam5.txt.gz"), got) == []


def test_m2m_100_interactive_equals_fairseq(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Raw Spanish lines through the SentencePiece model, es -> en."""
    source = tmp_path / "input.es"
    lines = read_lines(Path(__file__).parents[1] / "fixtures" / "fairseq" / "mt" / "text" / "test.es")[:5]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    argv = [str(M2M), *M2M_TASK, "-s", "es", "-t", "en", "--path", str(M2M / "model.pt"), "--bpe", "sentencepiece",
            "--sentencepiece-model", str(M2M / "spm.model"), "--beam", "5", "--max-len-b", "30",
            "--input", str(source)]  # fmt: skip
    assert interactive(argv) == 0
    got = capsys.readouterr().out.splitlines()
    assert compare_lines(read_lines(M2M / "interactive.es-en.beam5.txt"), got, skip=("W-",)) == []


@pytest.mark.parametrize("keyword", [True, False])
def test_m2m_100_hub_translates_as_fairseq_interactive(keyword: bool, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:  # fmt: skip
    """``from_pretrained`` (fairseq 0.12's own hub fails on this task: its build_generator takes no
    prefix_allowed_tokens_fn): fairseq-interactive's ``D-`` texts, with ``fixed_dictionary=`` or, without it,
    the saved path's file name found in the model folder (run from elsewhere)."""
    monkeypatch.chdir(tmp_path)
    extra = {"fixed_dictionary": str(M2M / "model_dict.txt")} if keyword else {}
    hub = TransformerModel.from_pretrained(str(M2M), checkpoint_file="model.pt", data_name_or_path=str(M2M),
                                           bpe="sentencepiece", sentencepiece_model=str(M2M / "spm.model"),
                                           source_lang="es", target_lang="en", **extra)  # fmt: skip
    lines = read_lines(Path(__file__).parents[1] / "fixtures" / "fairseq" / "mt" / "text" / "test.es")[:5]
    expected = [line.split("\t")[2] for line in read_lines(M2M / "interactive.es-en.beam5.txt") if line[:2] == "D-"]
    assert hub.translate(lines, beam=5, max_len_b=30) == expected


def test_m2m_100_hub_without_its_fixed_dictionary_is_explained(tmp_path: Path) -> None:
    (tmp_path / "model.pt").symlink_to((M2M / "model.pt").resolve())
    with pytest.raises(FileNotFoundError, match=r"model_dict\.txt.*fixed_dictionary=PATH"):
        TransformerModel.from_pretrained(str(tmp_path), checkpoint_file="model.pt", source_lang="es", target_lang="en")


CC25_DIR, CC25_FT = HERE / "mbart_cc25", HERE / "mbart_cc25_en_es"
CC25 = ("ar_AR,cs_CZ,de_DE,en_XX,es_XX,et_EE,fi_FI,fr_XX,gu_IN,hi_IN,it_IT,ja_XX,kk_KZ,ko_KR,lt_LT,lv_LV,my_MM,"
        "ne_NP,nl_XX,ro_RO,ru_RU,si_LK,tr_TR,vi_VN,zh_CN")  # fmt: skip


def test_mbart_cc25_layouts_are_the_released_ones() -> None:
    """mbart.cc25: multilingual_denoising --add-lang-token with the 25 languages, pre-norm mbart_large, args
    layout, dict.txt without language tokens; the fine-tuned model: translation_from_pretrained_bart with the
    cc25 --langs and --prepend-bos, restored from it."""
    pre = load_checkpoint(CC25_DIR / "model.pt")
    assert pre.get("cfg") is None and pre["args"].task == "multilingual_denoising" and pre["args"].add_lang_token
    assert pre["args"].arch == "mbart_large" and pre["args"].langs == CC25 and pre["args"].encoder_normalize_before
    words = len(Dictionary.load(CC25_DIR / "dict.txt"))
    assert pre["model"]["encoder.embed_tokens.weight"].shape[0] == words + 25 + 1  # [ar_AR] ... [zh_CN], <mask>
    assert "[en_XX]" not in (CC25_DIR / "dict.txt").read_text(encoding="utf-8")
    ft = load_checkpoint(CC25_FT / "model.pt")
    assert ft.get("cfg") is None and ft["args"].task == "translation_from_pretrained_bart"
    assert ft["args"].langs == CC25 and ft["args"].prepend_bos and ft["args"].restore_file.endswith("model.pt")
    assert ft["model"]["encoder.embed_tokens.weight"].shape[0] == words + 25 + 1


def test_mbart_cc25_fine_tuned_generate_equals_fairseq(capsys: pytest.CaptureFixture[str]) -> None:
    """The mBART README's fairseq-generate command (``--bpe sentencepiece`` and ``--remove-bpe sentencepiece``
    both given, so fairseq decodes twice and the S/T/D texts lose their spaces: seqloom prints the same), with
    --prepend-bos and ``--required-batch-size-multiple 1`` (fairseq's default 8 drops 6 of the 30 sentences)."""
    argv = [str(CC25_FT), "--path", str(CC25_FT / "model.pt"), "--task", "translation_from_pretrained_bart",
            "--gen-subset", "test", "-t", "es_XX", "-s", "en_XX", "--bpe", "sentencepiece", "--sentencepiece-model",
            str(CC25_FT / "sentence.bpe.model"), "--remove-bpe", "sentencepiece", "--batch-size", "32",
            "--required-batch-size-multiple", "1", "--langs", CC25, "--prepend-bos", "--beam", "5",
            "--max-len-b", "30"]  # fmt: skip
    assert generate(argv) == 0
    got = [line for line in capsys.readouterr().out.splitlines() if line[1:2] == "-"]
    assert compare_lines(read_lines(CC25_FT / "generate.en_XX-es_XX.beam5.txt.gz"), got) == []


def test_mbart_cc25_hub_encodes_and_extracts_features_as_fairseq() -> None:
    """``BARTModel.from_pretrained`` on the pre-trained folder: the languages from the checkpoint's --langs,
    fairseq's ids and (within 1e-5) its extract_features."""
    import json

    from seqloom.hub import BARTModel

    ref = json.loads((CC25_DIR / "hub.json").read_text(encoding="utf-8"))
    bart = BARTModel.from_pretrained(str(CC25_DIR), checkpoint_file="model.pt", data_name_or_path=str(CC25_DIR),
                                     bpe="sentencepiece", sentencepiece_model=str(CC25_DIR / "sentence.bpe.model"))  # fmt: skip
    assert len(bart.src_dict) == ref["dictionary_size"]
    assert bart.src_dict[len(bart.src_dict) - 26] == "[ar_AR]" and bart.src_dict[len(bart.src_dict) - 1] == "<mask>"
    for line, ids, features in zip(ref["inputs"], ref["encode"], ref["features"]):
        tokens = bart.encode(line)
        assert tokens.tolist() == ids
        torch.testing.assert_close(bart.extract_features(tokens)[0], torch.tensor(features), atol=1e-5, rtol=0)


def test_mbart_cc25_fine_tuned_hub_translates_as_fairseq_generate() -> None:
    """``TransformerModel.from_pretrained`` on the fine-tuned folder (args layout: the task is found under
    ``args.task``): raw text in, fairseq-generate's hypotheses (``H-`` texts, SentencePiece decoded once) out."""
    hub = TransformerModel.from_pretrained(str(CC25_FT), checkpoint_file="model.pt", data_name_or_path=str(CC25_FT),
                                           bpe="sentencepiece", sentencepiece_model=str(CC25_FT / "sentence.bpe.model"),
                                           source_lang="en_XX", target_lang="es_XX")  # fmt: skip
    lines = read_lines(Path(__file__).parents[1] / "fixtures" / "fairseq" / "mt" / "text" / "train.en")[1000:1030]
    expected = {}
    for line in read_lines(CC25_FT / "generate.en_XX-es_XX.beam5.txt.gz"):
        if line.startswith("H-"):
            expected[int(line.split("\t")[0][2:])] = line.split("\t")[2]
    assert hub.translate(lines, beam=5, max_len_b=30) == [expected[i] for i in range(len(lines))]
