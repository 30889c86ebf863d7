"""``seqloom interactive`` against fairseq-interactive's output (moses + subword_nmt, beam 5)."""

from __future__ import annotations

import re

from fixture_compare import compare_lines, read_lines

from seqloom.cli.interactive import main as interactive


def test_interactive_matches_fairseq_and_skips_bad_lines(fairseq_fixtures, tmp_path, capsys) -> None:
    mt = fairseq_fixtures / "mt"
    inputs = read_lines(mt / "outputs" / "interactive.input.en")[:3]
    source = tmp_path / "input.en"
    source.write_text("\n".join([*inputs, "", "very " * 1100 + "long"]) + "\n", encoding="utf-8")
    argv = [str(mt / "data-bin"), "--path", str(mt / "checkpoints" / "checkpoint_best.pt"), "--tokenizer", "moses",
            "--source-lang", "en", "--target-lang", "es", "--bpe", "subword_nmt", "--bpe-codes",
            str(mt / "text" / "bpe.codes"), "--beam", "5", "--buffer-size", "2", "--input", str(source)]  # fmt: skip
    assert interactive(argv) == 0
    captured = capsys.readouterr()
    got = captured.out.splitlines()
    fixture = read_lines(mt / "outputs" / "interactive.beam5.txt")
    expected = [line for line in fixture if line.split("\t")[0][2:] in ("0", "1", "2")]
    assert compare_lines(expected, got, skip=("W-",)) == []
    assert [line.split("\t")[0] for line in got if line.startswith("W-")] == ["W-0", "W-1", "W-2"]
    messages = captured.err
    assert "input 3 is an empty line" in messages
    assert re.search(
        r"input 4 has \d+ tokens after tokenization/BPE \(with </s>\), more than the model's 1024 source", messages
    )


def test_a_line_that_is_not_utf8_is_named_after_the_lines_before_it(fairseq_fixtures, tmp_path, capsys) -> None:
    mt = fairseq_fixtures / "mt"
    source = tmp_path / "input.en"
    source.write_bytes(b"The earth .\n\xff\xfe bad bytes\n")
    argv = [str(mt / "data-bin"), "--path", str(mt / "checkpoints" / "checkpoint_best.pt"), "--input", str(source)]
    assert interactive(argv) == 1
    captured = capsys.readouterr()
    assert f"{source}:2: the line is not valid UTF-8" in captured.err
    assert captured.out.startswith("S-0\t")  # the first line was translated and printed before


def test_decode_threads_translate_a_buffers_batches_at_once_with_the_same_lines(fairseq_fixtures, tmp_path,
                                                                                 capsys) -> None:  # fmt: skip
    """``--decode-threads 2``: a buffer of 24 lines in batches of 4 is decoded in two worker processes; the lines
    are those of one batch at a time, in input order (both runs with one intra-op thread per batch: MKL's sums,
    and so the last bits, depend on the thread count)."""
    import torch

    mt = fairseq_fixtures / "mt"
    source = tmp_path / "input.en"
    source.write_text("\n".join(read_lines(mt / "text" / "test.en")[:24]) + "\n", encoding="utf-8")
    argv = [str(mt / "data-bin"), "--path", str(mt / "checkpoints" / "checkpoint_best.pt"), "--tokenizer", "moses",
            "--source-lang", "en", "--target-lang", "es", "--bpe", "subword_nmt", "--bpe-codes",
            str(mt / "text" / "bpe.codes"), "--beam", "3", "--buffer-size", "24", "--batch-size", "4", "--cpu",
            "--input", str(source)]  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert interactive(argv) == 0
        one = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("W-")]
        assert interactive([*argv, "--decode-threads", "2"]) == 0
        two = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("W-")]
    finally:
        torch.set_num_threads(threads)
    assert two == one and sum(line.startswith("H-") for line in one) == 24
    assert [line.split("\t")[0] for line in one if line.startswith("S-")] == [f"S-{i}" for i in range(24)]


def test_a_bad_line_does_not_drop_the_good_lines_buffered_before_it(fairseq_fixtures, tmp_path, capsys) -> None:
    """--buffer-size 10: the two lines read before the non-UTF-8 one are translated before the error."""
    mt = fairseq_fixtures / "mt"
    source = tmp_path / "input.en"
    source.write_bytes(b"The earth .\nThe sea .\n\xff\xfe bad bytes\nnever read .\n")
    argv = [str(mt / "data-bin"), "--path", str(mt / "checkpoints" / "checkpoint_best.pt"), "--input", str(source),
            "--buffer-size", "10"]  # fmt: skip
    assert interactive(argv) == 1
    captured = capsys.readouterr()
    assert f"{source}:3: the line is not valid UTF-8" in captured.err
    assert [line.split("\t")[0] for line in captured.out.splitlines() if line[:2] == "H-"] == ["H-0", "H-1"]
