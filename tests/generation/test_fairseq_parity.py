"""``seqloom generate`` against fairseq-generate's real outputs on the fixture checkpoint.

Every option set of the fixture runs through the CLI on one shard of batches (fast), and its lines must
equal fairseq's lines of the same sentences, in the same order: tokens exactly, scores within 1e-4.
One full run also checks the sentence order over all batches and the closing BLEU line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixture_compare import compare_lines, read_lines

from seqloom.cli.generate import main as generate

CASES = {
    "beam1": ["--batch-size", "32", "--beam", "1"],
    # fairseq 0.12's CPU n-gram check blocks nothing (its output repeats bigrams); the fairseq mode copies that
    "beam5.lenpen2.nrng2": "--batch-size 32 --beam 5 --lenpen 2.0 --no-repeat-ngram-size 2 --no-repeat-ngram-mode fairseq".split(),
    "beam5.nbest3": ["--batch-size", "32", "--beam", "5", "--nbest", "3"],
    "beam5.remove-bpe": ["--batch-size", "32", "--beam", "5", "--remove-bpe"],
    "beam5.print-alignment": ["--batch-size", "32", "--beam", "5", "--print-alignment"],
    "score-reference": ["--batch-size", "32", "--score-reference"],
    "beam4.maxlen.minlen3.unkpen1": [
        "--batch-size",
        "32",
        "--beam",
        "4",
        "--max-len-a",
        "1.2",
        "--max-len-b",
        "10",
        "--min-len",
        "3",
        "--unkpen",
        "1",
    ],  # fmt: skip
    "beam5.max-tokens1000": ["--max-tokens", "1000", "--beam", "5"],
}


def run_generate(fixtures, capsys, options: list[str]) -> list[str]:
    mt = fixtures / "mt"
    argv = [str(mt / "data-bin"), "--path", str(mt / "checkpoints" / "checkpoint_best.pt"), "--gen-subset", "test",
            "--no-progress-bar", *options]  # fmt: skip
    assert generate(argv) == 0
    return capsys.readouterr().out.splitlines()


def lines_of(expected: list[str], ids: set[str]) -> list[str]:
    return [line for line in expected if line[1:2] == "-" and line.split("\t")[0][2:] in ids]


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_shard_matches_fairseq(name, fairseq_fixtures, capsys) -> None:
    got = run_generate(fairseq_fixtures, capsys, [*CASES[name], "--num-shards", "8", "--shard-id", "1"])
    ids = {line.split("\t")[0][2:] for line in got if line.startswith("S-")}
    assert len(ids) >= 8
    expected = read_lines(fairseq_fixtures / "mt" / "outputs" / f"generate.{name}.txt.gz")
    assert compare_lines(lines_of(expected, ids), [line for line in got if line[1:2] == "-"]) == []


def test_full_run_order_and_bleu_line_match_fairseq(fairseq_fixtures, capsys, monkeypatch) -> None:
    """On one thread, where beam search picks its candidates with ``chunked_topk`` (the shards above run on
    the suite's two threads, with torch.topk): the same lines as fairseq's."""
    import torch

    from seqloom.generation import search

    answered = []

    def counted(*args, **kwargs):
        found = chunked_topk(*args, **kwargs)
        answered.append(found is not None)
        return found

    chunked_topk = search.chunked_topk
    monkeypatch.setattr(search, "chunked_topk", counted)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        got = run_generate(fairseq_fixtures, capsys, ["--batch-size", "32", "--beam", "5"])
    finally:
        torch.set_num_threads(threads)
    assert sum(answered) > 0.3 * len(answered)  # (the rest: batch ends of a few sentences, ties)
    expected = read_lines(fairseq_fixtures / "mt" / "outputs" / "generate.beam5.txt.gz")
    assert compare_lines(expected, got) == []
    assert (
        got[-1]
        == expected[-1]
        == (
            "Generate test with beam=5: BLEU4 = 0.46, 9.5/1.7/0.2/0.0 (BP=1.000, ratio=1.522, syslen=12975, reflen=8527)"
        )
    )


def test_no_repeat_ngram_blocks_by_default_where_fairseq_does_not(fairseq_fixtures, capsys) -> None:
    """fairseq's --no-repeat-ngram-size 2 output repeats bigrams; seqloom's default really bans them."""
    fairseq_hyps = [line for line in read_lines(fairseq_fixtures / "mt" / "outputs" / "generate.beam5.lenpen2.nrng2.txt.gz")
                    if line.startswith("H-")]  # fmt: skip
    assert any(_has_repeated_bigram(line.split("\t")[2].split()) for line in fairseq_hyps)
    options = ["--batch-size", "32", "--beam", "5", "--lenpen", "2.0", "--no-repeat-ngram-size", "2"]
    got = run_generate(fairseq_fixtures, capsys, [*options, "--num-shards", "8", "--shard-id", "1"])
    hyps = [line.split("\t")[2].split() for line in got if line.startswith("H-")]
    assert len(hyps) >= 8
    assert not any(_has_repeated_bigram(tokens) for tokens in hyps)


def _has_repeated_bigram(tokens: list[str]) -> bool:
    bigrams = list(zip(tokens, tokens[1:]))
    return len(bigrams) != len(set(bigrams))


SEARCH_CASES = {  # made by tests/fixtures/search/make_reference.sh (fairseq-generate, full test set)
    "diversity-rate0.5.beam5.nbest2": ["--batch-size", "32", "--beam", "5", "--nbest", "2", "--diversity-rate", "0.5"],
    "diversity-rate0.beam4": ["--batch-size", "32", "--beam", "4", "--diversity-rate", "0"],
}


@pytest.mark.parametrize("name", sorted(SEARCH_CASES))
def test_search_options_match_fairseq(name, fairseq_fixtures, capsys) -> None:
    """Diverse siblings search (``--diversity-rate``; rate 0 is beam search) on one shard of batches."""
    got = run_generate(fairseq_fixtures, capsys, [*SEARCH_CASES[name], "--num-shards", "8", "--shard-id", "1"])
    ids = {line.split("\t")[0][2:] for line in got if line.startswith("S-")}
    assert len(ids) >= 8
    expected = read_lines(Path(__file__).parents[1] / "fixtures" / "search" / f"{name}.txt.gz")
    assert compare_lines(lines_of(expected, ids), [line for line in got if line[1:2] == "-"]) == []
