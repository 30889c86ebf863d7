"""The translation task's data loading: languages from file names, shards, upsampling, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from seqloom.tasks.translation import TranslationConfig, TranslationTask, infer_language_pair


def test_languages_are_inferred_from_the_file_names(fairseq_fixtures: Path) -> None:
    data = fairseq_fixtures / "mt" / "data-bin"
    assert infer_language_pair(str(data)) == ("en", "es")
    task = TranslationTask.setup_task(TranslationConfig(data=str(data)))
    assert (task.cfg.source_lang, task.cfg.target_lang) == ("en", "es")
    assert len(task.source_dictionary) == len(task.target_dictionary) == 2056


def test_train_shards_are_combined_and_the_primary_upsampled(fairseq_fixtures: Path, tmp_path: Path) -> None:
    src = fairseq_fixtures / "mt" / "data-bin"
    for f in src.iterdir():
        if f.name.startswith(("dict.", "valid.")):
            shutil.copy(f, tmp_path / f.name)
    for lang in ("en", "es"):  # valid plays train (200 pairs) and train1 (200 pairs)
        for ext in ("bin", "idx"):
            shutil.copy(src / f"valid.en-es.{lang}.{ext}", tmp_path / f"train.en-es.{lang}.{ext}")
            shutil.copy(src / f"valid.en-es.{lang}.{ext}", tmp_path / f"train1.en-es.{lang}.{ext}")
    task = TranslationTask.setup_task(TranslationConfig(data=str(tmp_path)))
    assert len(task.load_dataset("train", combine=True)) == 400
    assert len(task.load_dataset("train", combine=False)) == 200
    up = TranslationTask.setup_task(TranslationConfig(data=str(tmp_path), upsample_primary=2))
    ds = up.load_dataset("train", combine=True)
    assert len(ds) == 600 and ds[0]["source"].tolist() == ds[200]["source"].tolist() == ds[400]["source"].tolist()


def test_truncate_source(fairseq_fixtures: Path) -> None:
    cfg = TranslationConfig(
        data=str(fairseq_fixtures / "mt" / "data-bin"), truncate_source=True, max_source_positions=8
    )
    ds = TranslationTask.setup_task(cfg).load_dataset("valid")
    assert int(ds.src_sizes.max()) == 8
    longest = int(ds.src_sizes.argmax())
    item = ds[longest]["source"]
    assert len(item) == 8 and int(item[-1]) == ds.src_dict.eos()


def test_missing_files_name_what_is_expected(fairseq_fixtures: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TranslationTask.setup_task(TranslationConfig(data=str(tmp_path / "nowhere")))
    with pytest.raises(ValueError, match="--source-lang"):
        TranslationTask.setup_task(TranslationConfig(data=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="dict.de.txt"):
        TranslationTask.setup_task(
            TranslationConfig(data=str(fairseq_fixtures / "mt" / "data-bin"), source_lang="de", target_lang="es")
        )
    task = TranslationTask.setup_task(TranslationConfig(data=str(fairseq_fixtures / "mt" / "data-bin")))
    with pytest.raises(FileNotFoundError, match=r"split 'dev' not found .* dev\.en-es\.en\.bin"):
        task.load_dataset("dev")
