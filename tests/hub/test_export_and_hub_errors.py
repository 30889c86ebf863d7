"""Export destinations and atomicity, an export missing its config.json, non-text hub inputs (issue 24)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import seqloom.hub.export as export_module
from seqloom.cli.main import main as seqloom_main
from seqloom.hub import TransformerModel, TranslationHub


def export_argv(fairseq_fixtures: Path, out: Path) -> list[str]:
    mt = fairseq_fixtures / "mt"
    return ["export", "--path", str(mt / "checkpoints" / "checkpoint_best.pt"), "--data", str(mt / "data-bin"),
            "--out", str(out)]  # fmt: skip


def test_an_out_below_or_onto_a_file_or_into_a_folder_of_other_files_is_one_message(
    fairseq_fixtures: Path, tmp_path: Path
) -> None:
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(SystemExit, match=rf"--out {tmp_path / 'taken' / 'x'}: the folder cannot be created "
                                         rf"\({tmp_path / 'taken'} is a file, not a folder\)"):  # fmt: skip
        seqloom_main(export_argv(fairseq_fixtures, tmp_path / "taken" / "x"))
    with pytest.raises(SystemExit, match=rf"--out {tmp_path / 'taken'} is a file; give the path of a folder"):
        seqloom_main(export_argv(fairseq_fixtures, tmp_path / "taken"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit, match=r"is a folder holding other files .*give a new or empty folder"):
        seqloom_main(export_argv(fairseq_fixtures, tmp_path / "mine"))
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_export_is_atomic_and_replaces_an_earlier_export(
    fairseq_fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "exp"
    real_save = export_module.save_file

    def failing(tensors, path, metadata=None) -> None:  # the disk fills up while the weights are written
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_module, "save_file", failing)
    with pytest.raises(SystemExit, match=rf"--out {out}: the export could not be written \(No space left on device\)"):
        seqloom_main(export_argv(fairseq_fixtures, out))
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a temp folder
    monkeypatch.setattr(export_module, "save_file", real_save)
    assert seqloom_main(export_argv(fairseq_fixtures, out)) == 0
    (out / "config.json").write_text((out / "config.json").read_text().replace('"beam": 5', '"beam": 4'))
    assert seqloom_main(export_argv(fairseq_fixtures, out)) == 0  # an earlier export is replaced whole
    assert '"beam": 5' in (out / "config.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]


def test_an_export_without_its_config_json_says_so(fairseq_fixtures: Path, tmp_path: Path) -> None:
    out = tmp_path / "exp"
    assert seqloom_main(export_argv(fairseq_fixtures, out)) == 0
    (out / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"holds model\.safetensors \(the weights of a seqloom export\) but "
                                                r"its config\.json is missing"):  # fmt: skip
        TransformerModel.from_pretrained(str(out))


def test_translate_of_none_names_the_argument(mt_hub: TranslationHub) -> None:
    with pytest.raises(TypeError, match=r"translate\(sentences\): expected a str or a list of str, got NoneType"):
        mt_hub.translate(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"sample\(sentences\): item 1 is int 3, not a str"):
        mt_hub.sample(["hello", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"encode\(sentence\): expected a str, got bytes"):
        mt_hub.encode(b"hello")  # type: ignore[arg-type]


def test_a_wrong_idx_magic_is_named_with_the_default_dataset_impl(
    fairseq_fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data-bin"
    shutil.copytree(fairseq_fixtures / "mt" / "data-bin", data)
    idx = data / "test.en-es.en.idx"
    idx.write_bytes(b"GARBAGE!!" + idx.read_bytes()[9:])
    ckpt = fairseq_fixtures / "mt" / "checkpoints" / "checkpoint_best.pt"
    code = seqloom_main(["generate", str(data), "--path", str(ckpt), "--gen-subset", "test", "--cpu"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"{idx}: not an index of an indexed dataset (mmap or TNTIDX): starts with b'GARBAGE!!'" in err


def test_a_missing_codec_file_names_the_flags_that_open_it(tmp_path: Path) -> None:
    """A RoBERTa checkpoint records ``bpe gpt2``; its file flags are parsed only once ``--bpe gpt2`` is given, so
    the message says to give both (the flag alone was refused as unknown)."""
    gpt2 = Path(__file__).resolve().parents[1] / "fixtures" / "roberta" / "gpt2"
    argv = ["export", "--path", str(gpt2 / "model.pt"), "--data", str(gpt2), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match=r"--gpt2-encoder-json is required.*: --bpe gpt2 --gpt2-encoder-json PATH$"):
        seqloom_main(argv)
    assert not (tmp_path / "out").exists()
