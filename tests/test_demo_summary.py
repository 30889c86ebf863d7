"""scripts/demo_summary.py, the demo's closing lines: what was trained, one BLEU (sacreBLEU on detokenized text),
three examples beside their references, where the outputs are; and demo.sh calls it so."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import sacrebleu
import torch

from seqloom.checkpoint.io import save_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_summary", REPO / "scripts" / "demo_summary.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclass looks its module up there)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_files(tmp_path: Path) -> dict[str, Path]:
    shared = torch.zeros(10, 4)  # tied embeddings: one tensor under three keys, counted once
    model = {"encoder.embed_tokens.weight": shared, "decoder.embed_tokens.weight": shared,
             "decoder.output_projection.weight": shared, "encoder.layers.0.w": torch.zeros(4, 3)}  # fmt: skip
    args = argparse.Namespace(arch="transformer", encoder_layers=2, decoder_layers=3, encoder_embed_dim=128)
    state = {"args": args, "model": model, "optimizer_history": [{"num_updates": 500}],
             "extra_state": {"train_iterator": {"epoch": 10}, "previous_training_time": 131.6}}  # fmt: skip
    save_checkpoint(state, tmp_path / "ckpt" / "checkpoint_last.pt")
    refs = [f"la casa numero {i} es grande y blanca hoy ." for i in range(12)]
    sources = [f"the house number {i} is big and white today ." for i in range(12)]
    hyps = {i: (refs[i] if i % 2 else f"una casa {i} es grande .") for i in range(12)}
    lines = ["2026-12-06 | INFO | seqloom.generate | loading", "S-3\tx", "Generate test with beam=5: BLEU4 = 1.0"]
    for i in (5, 0, 11, 3, 1, 2, 4, 6, 7, 8, 9, 10):  # generate writes the ids in batch order
        lines += [f"T-{i}\t{refs[i]}", f"H-{i}\t-0.5\t{hyps[i]} (tokens)", f"D-{i}\t-0.5\t{hyps[i]}", f"P-{i}\t-0.1"]
    (tmp_path / "generate-test.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "test.es").write_text("\n".join(refs) + "\n", encoding="utf-8")
    (tmp_path / "test.en").write_text("\n".join(sources) + "\n", encoding="utf-8")
    return {"ckpt": tmp_path / "ckpt", "gen": tmp_path / "generate-test.txt", "ref": tmp_path / "test.es",
            "src": tmp_path / "test.en"}  # fmt: skip


def test_summary_lines(run_files: dict[str, Path]) -> None:
    argv = [sys.executable, str(REPO / "scripts" / "demo_summary.py"), "--checkpoint-dir", str(run_files["ckpt"]),
            "--generated", str(run_files["gen"]), "--source", str(run_files["src"]), "--reference",
            str(run_files["ref"]), "--output", "model=out/checkpoints/checkpoint_best.pt"]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout
    lines = out.splitlines()
    assert lines[0] == "trained:  transformer, 2+3 layers, d128, 0.00M parameters; 500 updates (10 epochs) in 132 s"
    refs = run_files["ref"].read_text(encoding="utf-8").splitlines()
    hyps = [refs[i] if i % 2 else f"una casa {i} es grande ." for i in range(12)]
    bleu = sacrebleu.corpus_bleu(hyps, [refs]).score
    assert lines[1] == f"test BLEU: {bleu:.2f} (sacreBLEU on detokenized text, 12 sentences)"
    assert sum("BLEU" in line for line in lines) == 1 and "Namespace" not in out
    assert lines[2] == "examples (source / reference / model):"
    # three examples spread over the set, each as source, reference and model output
    assert [line.split("]")[0] for line in lines[3:12:3]] == ["  [0", "  [4", "  [8"]
    assert lines[4] == f"   ref: {refs[0]}" and lines[5] == "   out: una casa 0 es grande ."
    assert lines[3] == "  [0] the house number 0 is big and white today ."
    assert lines[12:] == ["outputs:", "  model        out/checkpoints/checkpoint_best.pt"]


def test_a_long_output_is_clipped_to_one_line() -> None:
    clip = _module()._clip
    assert clip("de " * 100) == ("de " * 100)[:147] + "..." and clip("una casa") == "una casa"


def test_parameters_count_tied_tensors_once(run_files: dict[str, Path]) -> None:
    model = _module().read_checkpoint(run_files["ckpt"] / "checkpoint_last.pt")
    assert model.parameters == 40 + 12 and model.updates == 500 and model.epochs == 10


def test_a_file_without_hypotheses_is_named(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("Generate test with beam=5: BLEU4 = 0\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"empty\.txt: no D-<id> lines"):
        _module().read_hypotheses(tmp_path / "empty.txt")


def test_the_demo_ends_with_the_summary_and_no_second_bleu() -> None:
    demo = (REPO / "scripts" / "demo.sh").read_text(encoding="utf-8")
    assert "scripts/demo_summary.py" in demo and "seqloom score" not in demo and "tail -n 1" not in demo
    assert "--no-progress-bar" not in demo and "--log-format" not in demo  # bars on a terminal, lines in a log
    assert "--tokenizer moses --bpe subword_nmt" in demo  # detokenized hypotheses for sacreBLEU
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "demo.sh")], check=False).returncode == 0
