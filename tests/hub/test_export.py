"""``seqloom export`` writes a pickle-free directory that from_pretrained loads with identical outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from seqloom.cli.main import COMMANDS
from seqloom.cli.main import main as seqloom_main
from seqloom.hub import TransformerModel, TranslationHub


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, fairseq_fixtures: Path) -> Path:
    mt = fairseq_fixtures / "mt"
    out = tmp_path_factory.mktemp("export") / "mt-en-es"
    argv = ["export", "--path", str(mt / "checkpoints" / "checkpoint_best.pt"), "--data", str(mt / "data-bin"),
            "--tokenizer", "moses", "--bpe", "subword_nmt", "--bpe-codes", str(mt / "text" / "bpe.codes"),
            "--out", str(out)]  # fmt: skip
    assert seqloom_main(argv) == 0
    return out


def test_export_writes_safetensors_config_dicts_and_bpe_files(exported: Path, fairseq_fixtures: Path) -> None:
    assert COMMANDS["export"] == "seqloom.cli.export:main"
    names = sorted(p.name for p in exported.iterdir())
    assert names == ["bpe.codes", "config.json", "dict.en.txt", "dict.es.txt", "model.safetensors"]
    for name in ("dict.en.txt", "dict.es.txt"):
        assert (exported / name).read_bytes() == (fairseq_fixtures / "mt" / "data-bin" / name).read_bytes()
    assert (exported / "bpe.codes").read_bytes() == (fairseq_fixtures / "mt" / "text" / "bpe.codes").read_bytes()
    config = json.loads((exported / "config.json").read_text(encoding="utf-8"))
    assert config["model"]["encoder_embed_dim"] == 64 and config["model"]["decoder_layers"] == 2
    assert config["task"]["source_lang"] == "en" and config["task"]["target_lang"] == "es"
    assert config["bpe"] == {"_name": "subword_nmt", "bpe_codes": "bpe.codes", "bpe_separator": "@@"}
    assert config["tokenizer"]["_name"] == "moses"
    # the tied output projection is stored once and named as an alias
    assert config["tied_weights"] == {"decoder.output_projection.weight": "decoder.embed_tokens.weight"}
    with safe_open(str(exported / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert "decoder.embed_tokens.weight" in keys and "decoder.output_projection.weight" not in keys


def test_export_loads_without_unpickling_and_gives_identical_outputs(
    exported: Path, mt_hub: TranslationHub, hub_json: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pickles(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an export must load without torch.load")

    monkeypatch.setattr(torch, "load", no_pickles)
    hub = TransformerModel.from_pretrained(str(exported))
    monkeypatch.undo()
    assert hub.model.decoder.output_projection.weight is hub.model.decoder.embed_tokens.weight
    for name, tensor in mt_hub.model.state_dict().items():
        assert torch.equal(hub.model.state_dict()[name], tensor), name
    inputs = hub_json["inputs"][:6]
    assert hub.translate(inputs) == mt_hub.translate(inputs) == hub_json["translate_beam5"][:6]
    tokens = [hub.encode(s) for s in inputs]
    for ours, theirs in zip(hub.generate(tokens, beam=3), mt_hub.generate(tokens, beam=3)):
        assert [h.tokens.tolist() for h in ours] == [h.tokens.tolist() for h in theirs]
        assert [h.score for h in ours] == [h.score for h in theirs]
        assert all(torch.equal(a.positional_scores, b.positional_scores) for a, b in zip(ours, theirs))
    pairs = list(zip(inputs[:3], hub_json["translate_beam5"][:3]))
    assert [h.score for h in hub.score(pairs)] == [h.score for h in mt_hub.score(pairs)]


def test_export_keeps_generation_overrides_and_accepts_new_ones(exported: Path, hub_json: dict[str, Any]) -> None:
    hub = TransformerModel.from_pretrained(str(exported / "model.safetensors"), lenpen=2.0, max_tokens=100)
    assert hub.generation.lenpen == 2.0 and hub.batching.max_tokens == 100
    assert hub.translate(hub_json["inputs"][0], beam=5, lenpen=1.0) == hub_json["translate_beam5"][0]


def test_export_without_dictionaries_names_the_flag(tmp_path: Path, fairseq_fixtures: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    ckpt = fairseq_fixtures / "mt" / "checkpoints" / "checkpoint_best.pt"
    with pytest.raises(SystemExit, match=r"no dict\.\*\.txt next to .*checkpoint_best\.pt; pass --data DIR"):
        seqloom_main(["export", "--path", str(ckpt), "--out", str(tmp_path / "out")])
    argv = ["export", "--path", str(ckpt), "--data", str(fairseq_fixtures / "mt" / "data-bin"), "--bpe",
            "subword_nmt", "--out", str(tmp_path / "out")]  # fmt: skip
    with pytest.raises(SystemExit, match=r"--bpe-codes is required.*bpe_codes=PATH"):
        seqloom_main(argv)
    assert "omegaconf" not in sys.modules
    lm = ["export", "--path", str(fairseq_fixtures / "lm" / "checkpoints" / "checkpoint_best.pt"), "--data",
          str(fairseq_fixtures / "lm" / "data-bin"), "--out", str(tmp_path / "lm")]  # fmt: skip
    with pytest.raises(SystemExit, match=r"holds a 'transformer_lm' model[^;]*: export writes translation models"):
        seqloom_main(lm)
    assert not (tmp_path / "lm").exists()


@pytest.mark.parametrize(
    ("bpe", "option", "source"),
    [("fastbpe", "--bpe-codes", "fastbpe/codes"), ("bert", "--bpe-vocab-file", "bert_bpe/vocab.txt"),
     ("byte_bpe", "--sentencepiece-model-path", "byte_bpe/spm.model")],
)  # fmt: skip
def test_export_copies_the_files_of_every_bpe(tmp_path: Path, fairseq_fixtures: Path, bpe: str, option: str,
                                              source: str) -> None:  # fmt: skip
    """The BPE's file travels with the export and the exported folder encodes like the original files."""
    from seqloom.tokenizers.bpe import build_bpe

    mt = fairseq_fixtures / "mt"
    path = Path(__file__).parents[1] / "fixtures" / source
    out = tmp_path / "out"
    argv = ["export", "--path", str(mt / "checkpoints" / "checkpoint_best.pt"), "--data", str(mt / "data-bin"),
            "--bpe", bpe, option, str(path), "--out", str(out)]  # fmt: skip
    assert seqloom_main(argv) == 0
    assert (out / path.name).read_bytes() == path.read_bytes()
    hub = TransformerModel.from_pretrained(str(out))
    key = option[2:].replace("-", "_")
    original = build_bpe(bpe, {key: str(path)})
    sentence = "The earth was formless and empty."
    assert hub.apply_bpe(sentence) == original.encode(sentence)


def test_commands_take_the_exports_weights_file_as_path(exported: Path, fairseq_fixtures: Path, capsys,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """``--path export/model.safetensors`` works where a checkpoint does (config.json gives the model and
    task), without unpickling: ``generate`` prints the checkpoint's lines."""
    from seqloom.cli.generate import main as generate

    mt = fairseq_fixtures / "mt"
    common = [str(mt / "data-bin"), "--gen-subset", "valid", "--beam", "2", "--max-len-b", "12", "--batch-size", "8",
              "--cpu", "--no-progress-bar"]  # fmt: skip
    assert generate([*common, "--path", str(mt / "checkpoints" / "checkpoint_best.pt")]) == 0
    expected = [line for line in capsys.readouterr().out.splitlines() if line[:2] in ("H-", "D-", "P-")]

    def no_pickles(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an export must load without torch.load")

    monkeypatch.setattr(torch, "load", no_pickles)
    assert generate([*common, "--path", str(exported / "model.safetensors")]) == 0
    got = [line for line in capsys.readouterr().out.splitlines() if line[:2] in ("H-", "D-", "P-")]
    assert got == expected and len(expected) > 10


def test_a_damaged_export_or_a_stray_safetensors_file_is_named(exported: Path, fairseq_fixtures: Path, tmp_path: Path,
                                                              capsys) -> None:  # fmt: skip
    """A truncated weights file, a broken config.json and a .safetensors file with no export config beside it
    each end the command with one line naming the file, not a traceback from safetensors or torch.load."""
    import shutil

    from seqloom.checkpoint.io import CheckpointError
    from seqloom.cli.generate import main as generate

    damaged, broken, stray = tmp_path / "damaged", tmp_path / "broken", tmp_path / "stray"
    for folder in (damaged, broken):
        shutil.copytree(exported, folder)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    (broken / "config.json").write_text("{not json\n", encoding="utf-8")
    stray.mkdir()
    shutil.copy(exported / "model.safetensors", stray)
    data = str(fairseq_fixtures / "mt" / "data-bin")
    expected = {damaged: "not a readable safetensors file", broken: "config.json is not the config",
                stray: "config.json is missing"}  # fmt: skip
    for folder, reason in expected.items():
        assert generate([data, "--path", str(folder / "model.safetensors"), "--cpu", "--no-progress-bar"]) != 0
        err = capsys.readouterr().err
        assert f"{folder / 'model.safetensors'}" in err and reason in err and "Traceback" not in err
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        TransformerModel.from_pretrained(str(damaged))
