"""Checkpoints whose state holds numpy values: fairseq's IWSLT recipe (``--eval-bleu``, best checkpoint by BLEU)
keeps BLEU's n-gram counts as numpy arrays in ``extra_state["metrics"]``. Every reader accepts them, in numpy
1.x's (``numpy.core``) and numpy 2's (``numpy._core``) spelling; nothing else numpy offers may be called.

``fixtures/checkpoint/bleu_metrics.pt`` was written by fairseq itself (``make_bleu_metrics.sh``)."""

from __future__ import annotations

import io
import json
import pickletools
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from seqloom.checkpoint import CheckpointError, load_checkpoint
from seqloom.cli.main import main as seqloom_main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint"
BLEU = FIXTURES / "bleu_metrics.pt"
# the options of the recipe make_bleu_metrics.sh ran (resuming needs the same model)
RECIPE = ["--arch", "transformer_iwslt_de_en", "--share-all-embeddings", "--encoder-layers", "1", "--decoder-layers",
          "1", "--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
          "--decoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
          "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "5e-4", "--lr-scheduler", "inverse_sqrt",
          "--warmup-updates", "4000", "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
          "--max-tokens", "4096", "--eval-bleu", "--eval-bleu-args", '{"beam": 1, "max_len_a": 0, "max_len_b": 3}',
          "--eval-bleu-detok", "space", "--eval-bleu-remove-bpe", "--best-checkpoint-metric", "bleu",
          "--maximize-best-checkpoint-metric", "--max-valid-steps", "0", "--cpu", "--num-workers", "0"]  # fmt: skip


def pickled_globals(path: Path) -> set[str]:
    """The globals the checkpoint's pickle names, read without unpickling."""
    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    return {str(arg).replace(" ", ".") for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


def bleu_meters(state: dict[str, Any]) -> dict[str, Any]:
    return {m[1]: m[3] for m in state["extra_state"]["metrics"]["valid"] if m[1].startswith("_bleu_")}


@pytest.fixture(scope="module")
def numpy2_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture as numpy 2 spells it (``numpy._core.multiarray``), whichever numpy runs the test: its pickle
    with the module name replaced (a GLOBAL opcode names it as a line of text)."""
    path = tmp_path_factory.mktemp("numpy2") / "checkpoint_best.pt"
    with zipfile.ZipFile(BLEU) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data.pkl"):
                data = data.replace(b"cnumpy.core.multiarray\n", b"cnumpy._core.multiarray\n")
            dst.writestr(info, data)
    return path


def test_fairseqs_numpy_1_meters_load_as_arrays() -> None:
    assert "numpy.core.multiarray._reconstruct" in pickled_globals(BLEU)  # as fairseq (numpy 1.26) wrote it
    meters = bleu_meters(load_checkpoint(BLEU))
    counts, totals = meters["_bleu_counts"], meters["_bleu_totals"]
    assert isinstance(counts["sum"], np.ndarray) and counts["sum"].shape == (4,) and counts["count"] == 2
    assert totals["sum"].dtype == np.int64 and list(totals["sum"]) == sorted(totals["sum"], reverse=True)
    assert totals["sum"][0] == meters["_bleu_sys_len"]["sum"]  # unigram total = the hypotheses' length


def test_numpy_2_spelling_loads_equal(numpy2_copy: Path, tmp_path: Path) -> None:
    names = pickled_globals(numpy2_copy)
    assert "numpy._core.multiarray._reconstruct" in names and "numpy.core.multiarray._reconstruct" not in names
    ours, theirs = bleu_meters(load_checkpoint(numpy2_copy)), bleu_meters(load_checkpoint(BLEU))
    for name in ours:
        assert np.array_equal(ours[name]["sum"], theirs[name]["sum"]) and ours[name].keys() == theirs[name].keys()
    # and as this interpreter's numpy pickles it (numpy 2: numpy._core; numpy 1: numpy.core)
    again = tmp_path / "again.pt"
    torch.save(torch.load(BLEU, weights_only=False), again)
    spelling = "numpy._core" if np.__version__.startswith("2") else "numpy.core"
    assert f"{spelling}.multiarray._reconstruct" in pickled_globals(again)
    assert np.array_equal(bleu_meters(load_checkpoint(again))["_bleu_counts"]["sum"], theirs["_bleu_counts"]["sum"])


def test_numpy_scalars_dtypes_and_object_arrays_round_trip(tmp_path: Path) -> None:
    values = {"f": np.float64(0.25), "i": np.int32(-3), "b": np.bool_(True), "dt": np.dtype("<f4"),
              "dt2": np.dtype([("a", "<i8"), ("b", "<f2")]), "obj": np.array(["x", 2], dtype=object),
              "f32": np.arange(6, dtype=np.float32).reshape(2, 3), "empty": np.zeros((0, 3))}  # fmt: skip
    path = tmp_path / "c.pt"
    torch.save({"extra_state": values}, path)
    loaded = load_checkpoint(path)["extra_state"]
    for key, value in values.items():
        assert type(loaded[key]) is type(value), key
        assert np.array_equal(loaded[key], value) if isinstance(value, np.ndarray) else loaded[key] == value


class _Reduce:
    """Pickles as ``func(*args)``, then ``__setstate__(state)`` if given (a hand-made pickle, as an attacker
    would write)."""

    def __init__(self, func: Any, args: tuple[Any, ...], state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _object_array_claiming(shape: tuple[int, ...]) -> _Reduce:
    """numpy's own pickle of an object array, with its shape made larger than its list of values."""
    func, args, state = np.array([1], dtype=object).__reduce__()
    return _Reduce(func, args, (state[0], shape, *state[2:]))


def write_pickle(path: Path, data: bytes) -> None:
    """A checkpoint file whose pickle is ``data``."""
    buffer = io.BytesIO()
    torch.save({}, buffer)
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, data if info.filename.endswith("/data.pkl") else src.read(info))


_RECONSTRUCT = np.zeros(0).__reduce__()[0]


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        (_Reduce(np.load, ("/etc/passwd",)), r"references the Python global numpy\.(lib\.npyio\.)?load\b"),
        (_Reduce(np.frombuffer, (b"\0" * 8,)), r"references the Python global numpy\.\S*frombuffer"),
        (_Reduce(np.ctypeslib.as_array, (0,)), r"references the Python global numpy\.ctypeslib"),
        (_Reduce(_RECONSTRUCT, (np.ndarray, (1 << 40,), b"b")), r"an array rebuilt with the shape \(1099511627776,\)"),
        (_Reduce(_RECONSTRUCT, (np.ma.MaskedArray, (0,), b"b")), r"references the Python global numpy\.ma\."),
        (b"\x80\x02cnumpy\nndarray\nJ\x00\x00\x00\x01\x85\x81.", r"numpy\.ndarray is created directly"),
        (b"\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00\x40\x85R.", r"bytes called with arguments"),
        (_Reduce(np.float64(0).__reduce__()[0], ("f8", b"\0" * 8)), r"a scalar of str instead of a dtype"),
        (_object_array_claiming((10**9,)), r"a numpy array declares the shape \(1000000000,\) but holds 1 values"),
    ],
    ids=[
        "numpy.load",
        "frombuffer",
        "ctypeslib",
        "huge-array",
        "masked-array",
        "newobj-ndarray",
        "bytes-n",
        "scalar-no-dtype",
        "object-array-shape",
    ],
)
def test_numpy_callables_beyond_numpys_own_pickles_are_refused(tmp_path: Path, payload: Any, said: str) -> None:
    path = tmp_path / "evil.pt"
    if isinstance(payload, bytes):  # a hand-written pickle as data.pkl
        write_pickle(path, payload)
    else:
        torch.save({"model": {}, "extra_state": {"metrics": payload}}, path)
    with pytest.raises(CheckpointError, match=rf"{path}: refused to load: .*{said}"):
        load_checkpoint(path)


def test_generate_on_fairseqs_checkpoint_gives_fairseqs_hypotheses(
    fairseq_fixtures: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["generate", str(fairseq_fixtures / "mt" / "data-bin"), "--path", str(BLEU), "--beam", "2",
            "--max-len-a", "0", "--max-len-b", "5", "--batch-size", "50"]  # fmt: skip
    assert seqloom_main(argv) == 0
    ours = sorted((line.split("\t") for line in capsys.readouterr().out.splitlines() if line.startswith("H-")),
                  key=lambda f: int(f[0][2:]))  # fmt: skip
    theirs = [line.split("\t") for line in (FIXTURES / "bleu_metrics.generate.txt").read_text().splitlines()]
    assert [(o[0], o[2]) for o in ours] == [(t[0], t[2]) for t in theirs] and len(ours) == 200
    assert max(abs(float(o[1]) - float(t[1])) for o, t in zip(ours, theirs)) < 1e-4


def test_validate_interactive_average_and_export_read_it(
    fairseq_fixtures: Path, numpy2_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    data = str(fairseq_fixtures / "mt" / "data-bin")
    for path in (BLEU, numpy2_copy):
        assert seqloom_main(["validate", data, "--path", str(path), "--max-sentences", "20"]) == 0
        monkeypatch.setattr("sys.stdin", io.StringIO("the people\n"))
        assert seqloom_main(["interactive", data, "--path", str(path), "--beam", "2", "--max-len-b", "3"]) == 0
        assert "\nH-0\t" in capsys.readouterr().out
    averaged = tmp_path / "averaged.pt"
    assert (
        seqloom_main(["average-checkpoints", "--inputs", str(BLEU), str(numpy2_copy), "--output", str(averaged)]) == 0
    )
    state, original = load_checkpoint(averaged), load_checkpoint(BLEU)
    assert all(torch.equal(state["model"][k], v) for k, v in original["model"].items())
    out = tmp_path / "export"
    assert seqloom_main(["export", "--path", str(BLEU), "--data", data, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["model"]["encoder_embed_dim"] == 16


def test_hub_from_pretrained_reads_it(fairseq_fixtures: Path, tmp_path: Path) -> None:
    from seqloom.hub import TransformerModel

    for name in ("dict.en.txt", "dict.es.txt"):
        (tmp_path / name).write_bytes((fairseq_fixtures / "mt" / "data-bin" / name).read_bytes())
    (tmp_path / "model.pt").write_bytes(BLEU.read_bytes())
    hub = TransformerModel.from_pretrained(
        str(tmp_path), source_lang="en", target_lang="es", beam=2, max_len_b=5, max_len_a=0
    )
    # this barely trained model says "They" to everything (fairseq's hypotheses in bleu_metrics.generate.txt)
    assert hub.translate("the people") == "They They They They They"


def test_eval_lm_reads_a_language_model_with_numpy_meters(
    fairseq_fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lm = fairseq_fixtures / "lm"
    state = torch.load(lm / "checkpoints" / "checkpoint_best.pt", weights_only=False)
    state["extra_state"]["metrics"] = torch.load(BLEU, weights_only=False)["extra_state"]["metrics"]
    path = tmp_path / "lm.pt"
    torch.save(state, path)
    assert "numpy._core.multiarray._reconstruct" in pickled_globals(path) or np.__version__.startswith("1")
    outputs = []
    for checkpoint in (lm / "checkpoints" / "checkpoint_best.pt", path):
        assert (
            seqloom_main(["eval-lm", str(lm / "data-bin"), "--path", str(checkpoint), "--tokens-per-sample", "128"])
            == 0
        )
        captured = capsys.readouterr()
        outputs.append([line.split("|")[-1] for line in (captured.out + captured.err).splitlines() if "Loss" in line])
    assert outputs[0] and outputs[1] == outputs[0]


@pytest.mark.parametrize("how", ["checkpoint_last", "restore-file"])
def test_train_resumes_from_it_and_carries_fairseqs_meters(fairseq_fixtures: Path, tmp_path: Path, how: str) -> None:
    save = tmp_path / "run"
    save.mkdir()
    argv = ["train", str(fairseq_fixtures / "mt" / "data-bin"), *RECIPE, "--save-dir", str(save), "--max-update", "2",
            "--no-epoch-checkpoints"]  # fmt: skip
    if how == "checkpoint_last":
        (save / "checkpoint_last.pt").write_bytes(BLEU.read_bytes())
    else:
        argv += ["--restore-file", str(BLEU)]
    assert seqloom_main(argv) == 0
    before, after = load_checkpoint(BLEU), load_checkpoint(save / "checkpoint_last.pt")
    assert after["extra_state"]["train_iterator"]["iterations_in_epoch"] > 3  # went on from fairseq's position
    assert after["extra_state"]["previous_training_time"] > before["extra_state"]["previous_training_time"]
    for name, meter in bleu_meters(before).items():
        assert np.array_equal(bleu_meters(after)[name]["sum"], meter["sum"])
    assert "numpy._core.multiarray._reconstruct" in pickled_globals(save / "checkpoint_last.pt") or (
        np.__version__.startswith("1")
    )
