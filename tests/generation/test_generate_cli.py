"""``seqloom generate`` options beyond the fixture: ensembles, --results-path, sampling, scorers, errors."""

from __future__ import annotations

import sacrebleu
import torch
from fixture_compare import compare_lines

from seqloom.cli.generate import main as generate


def argv(fixtures, *options: str, path: str | None = None) -> list[str]:
    mt = fixtures / "mt"
    ckpt = str(mt / "checkpoints" / "checkpoint_best.pt")
    return [str(mt / "data-bin"), "--path", path or ckpt, "--gen-subset", "test", "--no-progress-bar",
            "--batch-size", "16", "--num-shards", "13", "--shard-id", "0", *options]  # fmt: skip


def test_ensemble_of_one_model_twice_equals_the_model(fairseq_fixtures, capsys) -> None:
    assert generate(argv(fairseq_fixtures, "--beam", "3")) == 0
    single = capsys.readouterr().out.splitlines()
    ckpt = str(fairseq_fixtures / "mt" / "checkpoints" / "checkpoint_best.pt")
    assert generate(argv(fairseq_fixtures, "--beam", "3", path=f"{ckpt}:{ckpt}")) == 0
    double = capsys.readouterr().out.splitlines()
    assert compare_lines(single, double, tol=1e-5) == []


def test_results_path_writes_generate_subset_txt(fairseq_fixtures, tmp_path, capsys) -> None:
    assert generate(argv(fairseq_fixtures, "--beam", "2", "--results-path", str(tmp_path / "out"))) == 0
    assert capsys.readouterr().out == ""
    text = (tmp_path / "out" / "generate-test.txt").read_text(encoding="utf-8").splitlines()
    assert sum(line.startswith("H-") for line in text) == 16
    assert text[-1].startswith("Generate test with beam=2: BLEU4 = ")
    assert any("Translated 16 sentences" in line for line in text)  # logs go to the results file too


def test_sampling_is_seeded_and_returns_beam_samples(fairseq_fixtures, capsys) -> None:
    import pytest

    with pytest.raises(SystemExit, match="--nbest must equal --beam"):  # as fairseq's
        generate(argv(fairseq_fixtures, "--sampling", "--beam", "2"))
    options = ("--sampling", "--sampling-topk", "20", "--beam", "2", "--nbest", "2", "--seed", "7")
    outs = []
    for _ in range(2):
        assert generate(argv(fairseq_fixtures, *options)) == 0
        outs.append(capsys.readouterr().out.splitlines())
    assert outs[0] == outs[1]
    assert sum(line.startswith("H-") for line in outs[0]) == 32


def test_sacrebleu_and_chrf_closing_lines(fairseq_fixtures, capsys) -> None:
    assert generate(argv(fairseq_fixtures, "--beam", "2", "--scoring", "sacrebleu")) == 0
    out = capsys.readouterr().out.splitlines()
    refs = [line.split("\t")[1] for line in out if line.startswith("T-")]
    hyps = [line.split("\t")[2] for line in out if line.startswith("D-")]
    expected = sacrebleu.corpus_bleu(hyps, [refs]).format()
    assert out[-1] == f"Generate test with beam=2: {expected}"
    assert generate(argv(fairseq_fixtures, "--beam", "2", "--scoring", "chrf")) == 0
    assert (
        capsys.readouterr().out.splitlines()[-1]
        == f"Generate test with beam=2: {sacrebleu.corpus_chrf(hyps, [refs]).format()}"
    )


def test_more_nbest_than_beam_prints_what_there_is_and_says_so(fairseq_fixtures, capsys) -> None:
    assert generate(argv(fairseq_fixtures, "--beam", "2", "--nbest", "3")) == 0
    captured = capsys.readouterr()
    assert "--nbest 3 is more than --beam 2: each sentence gets at most 2 hypotheses" in captured.err
    hyps = [line.split("\t")[0] for line in captured.out.splitlines() if line.startswith("H-")]
    assert len(hyps) == 2 * len(set(hyps)) == 32  # 16 sentences, 2 each (as fairseq-generate prints)


def test_results_path_or_log_file_below_a_file_is_named(fairseq_fixtures, tmp_path) -> None:
    import pytest

    (tmp_path / "taken").write_text("a file")
    for flag, value in (("--results-path", tmp_path / "taken" / "out"), ("--log-file", tmp_path / "taken" / "g.log")):
        with pytest.raises(SystemExit, match=f"{flag} {value}: .*{tmp_path / 'taken'} is a file, not a folder"):
            generate(argv(fairseq_fixtures, flag, str(value)))


def test_missing_checkpoint_names_the_flag(fairseq_fixtures, tmp_path, capsys) -> None:
    assert generate(argv(fairseq_fixtures, path=str(tmp_path / "nope.pt"))) == 1
    assert "seqloom generate: error: --path" in capsys.readouterr().err
    assert generate(argv(fairseq_fixtures, "--gen-subset", "nosuchsplit")) == 1
    assert "split 'nosuchsplit' not found" in capsys.readouterr().err
    assert generate(argv(fairseq_fixtures, path=str(tmp_path))) == 1  # a folder
    assert "seqloom generate: error: --path" in capsys.readouterr().err
    garbage = tmp_path / "notes.pt"
    garbage.write_text("not a checkpoint\n", encoding="utf-8")
    assert generate(argv(fairseq_fixtures, path=str(garbage))) == 1  # one line, no traceback
    err = capsys.readouterr().err
    assert f"\nseqloom generate: error: checkpoint {garbage}: not a readable PyTorch checkpoint (" in err
    assert "weights_only" not in err and "Traceback" not in err


def test_bf16_weights_translate_like_fp32(fairseq_fixtures, capsys) -> None:
    """``--bf16`` casts the models (fairseq's ``--fp16`` does ``model.half()``); scores stay float32."""
    assert generate(argv(fairseq_fixtures, "--beam", "3", "--cpu")) == 0
    fp32 = [line.split("\t") for line in capsys.readouterr().out.splitlines() if line.startswith("H-")]
    assert generate(argv(fairseq_fixtures, "--beam", "3", "--cpu", "--bf16")) == 0
    bf16 = [line.split("\t") for line in capsys.readouterr().out.splitlines() if line.startswith("H-")]
    assert [h[0] for h in bf16] == [h[0] for h in fp32]
    assert sum(a[2] == b[2] for a, b in zip(fp32, bf16)) >= 12  # of 16: bf16 keeps 8 mantissa bits
    assert max(abs(float(a[1]) - float(b[1])) for a, b in zip(fp32, bf16) if a[2] == b[2]) < 0.2
    assert any(float(a[1]) != float(b[1]) for a, b in zip(fp32, bf16))  # the weights really were cast


def test_model_overrides_replace_checkpoint_options(fairseq_fixtures, capsys) -> None:
    """``--model-overrides`` (fairseq's ``arg_overrides``): options replaced by name before the model is built."""
    from seqloom.cli.build import build_task
    from seqloom.cli.generate import SPEC
    from seqloom.cli.model_loading import load_ensemble
    from seqloom.cli.parser import parse_args

    ckpt = str(fairseq_fixtures / "mt" / "checkpoints" / "checkpoint_best.pt")
    task = build_task(parse_args(SPEC, argv(fairseq_fixtures)))
    (model,) = load_ensemble(ckpt, task, model_overrides="{'max_source_positions': 7, 'dropout': 0.5}")
    assert model.max_positions()[0] == 7
    assert generate(argv(fairseq_fixtures, "--beam", "2")) == 0
    plain = capsys.readouterr().out
    assert generate(argv(fairseq_fixtures, "--beam", "2", "--model-overrides", "{'dropout': 0.5}")) == 0
    assert capsys.readouterr().out == plain  # dropout is off at inference
    assert generate(argv(fairseq_fixtures, "--model-overrides", "[1]")) == 1
    assert "--model-overrides '[1]': expected a dict" in capsys.readouterr().err


def test_constraints_need_interactive_input(fairseq_fixtures, capsys) -> None:
    """Binarized data holds no constraints (fairseq-generate crashes on the flag): a clear error instead."""
    assert generate(argv(fairseq_fixtures, "--constraints")) == 1
    assert "--constraints ordered: binarized data holds no constraints" in capsys.readouterr().err


def test_decode_threads_print_what_one_thread_prints(fairseq_fixtures, capsys) -> None:
    """Two batches at a time on two threads: the same lines, byte for byte, in the same order (17 batches
    of up to 4, finishing out of order); sampling falls back to one batch at a time. Both runs have one
    intra-op thread per batch (MKL's sums, and so the last bits, depend on the thread count)."""
    options = ("--beam", "3", "--batch-size", "4", "--nbest", "2", "--num-shards", "3")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert generate(argv(fairseq_fixtures, *options)) == 0
        one = capsys.readouterr().out
        assert generate(argv(fairseq_fixtures, *options, "--decode-threads", "2")) == 0
    finally:
        torch.set_num_threads(threads)
    assert capsys.readouterr().out == one and sum(line.startswith("S-") for line in one.splitlines()) == 68
    sampling = ("--sampling", "--beam", "2", "--nbest", "2", "--seed", "3", "--decode-threads", "2")
    assert generate(argv(fairseq_fixtures, *sampling)) == 0
    sampled = capsys.readouterr().out
    assert generate(argv(fairseq_fixtures, *sampling[:-2])) == 0
    assert capsys.readouterr().out == sampled
    assert generate(argv(fairseq_fixtures, "--decode-threads", "0")) == 1
    assert "--decode-threads must be at least 1" in capsys.readouterr().err


def test_wer_closing_line(fairseq_fixtures, capsys) -> None:
    assert generate(argv(fairseq_fixtures, "--beam", "2", "--scoring", "wer", "--post-process", "subword_nmt")) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("Generate test with beam=2: WER: ") and 0 < float(last.split()[-1]) < 200


def test_ctrl_c_stops_generate_and_its_worker_processes_without_tracebacks(fairseq_fixtures) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    mt = fairseq_fixtures / "mt"
    cmd = [sys.executable, "-m", "seqloom.cli.generate", str(mt / "data-bin"), "--path",
           str(mt / "checkpoints" / "checkpoint_best.pt"), "--beam", "5", "--batch-size", "1", "--cpu",
           "--decode-threads", "2", "--no-progress-bar"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the first batch is printed: the workers are busy
    time.sleep(0.5)  # and more (unguarded, a worker between batches when Ctrl-C comes printed a traceback)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to the whole process group, workers included
    rest, err = proc.communicate(timeout=60)
    assert first.startswith("S-") and proc.returncode == 130, err[-2000:]
    assert "seqloom generate: interrupted" in err and "Traceback" not in err


def test_every_sentence_is_translated_when_the_last_batch_is_not_a_multiple_of_8(fairseq_fixtures, capsys) -> None:
    """With --max-tokens 600 the test set's last batch holds its 5 longest sentences. fairseq-generate leaves
    out a last batch that is not a multiple of --required-batch-size-multiple (8): it prints 195 hypotheses and
    scores BLEU on them (fairseq issues #5036, #5351). seqloom translates all 200."""
    mt = fairseq_fixtures / "mt"
    assert generate([str(mt / "data-bin"), "--path", str(mt / "checkpoints" / "checkpoint_best.pt"),
                     "--gen-subset", "test", "--no-progress-bar", "--beam", "1", "--max-tokens", "600"]) == 0  # fmt: skip
    out = capsys.readouterr()
    ids = sorted(int(line.split("\t")[0][2:]) for line in out.out.splitlines() if line.startswith("H-"))
    assert ids == list(range(200))
    assert "Translated 200 sentences" in out.err


def test_nothing_left_to_translate_is_an_error(fairseq_fixtures, capsys) -> None:
    assert generate(argv(fairseq_fixtures, "--max-tokens", "5", "--skip-invalid-size-inputs-valid-test")) == 1
    assert "nothing to run on 'test': all 200 samples are longer than max_positions=(5, 5)" in capsys.readouterr().err
