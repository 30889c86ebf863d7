"""fairseq's BLEU (C code semantics, hash collisions included), the closing generate line and ``seqloom score``."""

from __future__ import annotations

import copy
import math

import sacrebleu
import torch
from fixture_compare import read_lines

from seqloom.cli.generate import add_to_score
from seqloom.cli.score import main as score_main
from seqloom.data.dictionary import Dictionary
from seqloom.data.formats import make_dataset
from seqloom.generation.hypotheses import Hypothesis
from seqloom.generation.scoring import BleuScorer, ngram_hashes


def hypotheses(lines: list[str]) -> dict[int, str]:
    """The first ``H-`` text per sentence id, as fairseq scores it."""
    out: dict[int, str] = {}
    for line in lines:
        if line.startswith("H-"):
            key, _, text = line.split("\t")
            out.setdefault(int(key[2:]), text)
    return out


def test_bleu_on_token_ids_reproduces_fairseq_lines(fairseq_fixtures) -> None:
    mt = fairseq_fixtures / "mt"
    tgt_dict = Dictionary.load(mt / "data-bin" / "dict.es.txt")
    targets = make_dataset(str(mt / "data-bin" / "test.en-es.es"), "mmap")
    for name in ("beam1", "beam5.lenpen2.nrng2", "score-reference", "beam4.maxlen.minlen3.unkpen1"):
        lines = read_lines(mt / "outputs" / f"generate.{name}.txt.gz")
        scorer = BleuScorer()
        for i, text in hypotheses(lines).items():
            scorer.add(targets[i].tolist(), tgt_dict.encode_line(text).tolist())
        assert lines[-1].endswith(": " + scorer.result_string())


def test_remove_bpe_scores_reencoded_words(fairseq_fixtures) -> None:
    """With --remove-bpe fairseq re-encodes reference and hypothesis words with a growing dictionary."""
    mt = fairseq_fixtures / "mt"
    lines = read_lines(mt / "outputs" / "generate.beam5.remove-bpe.txt.gz")
    growing = copy.deepcopy(Dictionary.load(mt / "data-bin" / "dict.es.txt"))
    refs = {int(line.split("\t")[0][2:]): line.split("\t")[1] for line in lines if line.startswith("T-")}
    scorer = BleuScorer()
    for i, text in hypotheses(lines).items():
        hyp = Hypothesis(torch.zeros(1, dtype=torch.long), 0.0, torch.zeros(1))
        add_to_score(scorer, None, refs[i], hyp, text, tokens_from_text=True, dictionary=growing)
    assert lines[-1] == "Generate test with beam=5: " + scorer.result_string()


def test_ngram_hash_is_fairseqs_fnv_over_signed_bytes() -> None:
    def reference(ints: list[int]) -> int:
        h = 14695981039346656037
        for value in ints:
            for byte in (value & 0xFFFFFFFF).to_bytes(4, "little"):
                h ^= (byte - 256) & 0xFFFFFFFFFFFFFFFF if byte >= 128 else byte
                h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
        return h

    tokens = [5, 130, 2000, -999, 7, 255]
    for n in (1, 2, 3, 4):
        expected = {reference(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}
        assert set(ngram_hashes(tokens, n)) == expected


def test_trimming_and_unk_and_smoothing() -> None:
    scorer = BleuScorer(pad=1, eos=2, unk=3)
    scorer.add([1, 1, 5, 3, 6, 2], [5, 3, 6, 2, 2])  # pads left, eos right; ref unk never matches
    assert (scorer.stat.reflen, scorer.stat.predlen) == (3, 3)
    assert scorer.stat.match[:2] == [2, 0] and scorer.stat.count[:2] == [3, 2]
    smoothed = BleuScorer(smoothed=True)
    smoothed.add([5, 6, 7, 2], [5, 6, 8, 2])
    assert smoothed.stat.match == [3, 2, 1, 1] and smoothed.stat.count == [4, 3, 2, 1]
    assert math.isclose(smoothed.score(), math.exp(sum(map(math.log, [3 / 4, 2 / 3, 1 / 2, 1.0])) / 4) * 100)


def _score_files(fairseq_fixtures, tmp_path):
    lines = read_lines(fairseq_fixtures / "mt" / "outputs" / "generate.beam5.txt.gz")
    hyps = hypotheses(lines)
    sys_file = tmp_path / "sys.txt"
    sys_file.write_text("".join(hyps[i] + "\n" for i in sorted(hyps)), encoding="utf-8")
    return sys_file, fairseq_fixtures / "mt" / "text" / "test.bpe.es"


def test_score_cli_prints_what_fairseq_score_prints(fairseq_fixtures, tmp_path, capsys) -> None:
    sys_file, ref = _score_files(fairseq_fixtures, tmp_path)
    # printed by fairseq-score 0.12.3.1 on these two files (the case-folded run has fairseq's hash collisions)
    expected = {
        (): "BLEU4 = 0.46, 9.5/1.7/0.2/0.0 (BP=1.000, ratio=1.522, syslen=12975, reflen=8527)",
        ("--ignore-case", "--order", "2"): "BLEU2 = 4.16, 9.8/1.8 (BP=1.000, ratio=1.522, syslen=12975, reflen=8527)",
    }
    for options, line in expected.items():
        assert score_main(["--sys", str(sys_file), "--ref", str(ref), *options]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith(f"Namespace(sys='{sys_file}', ref='{ref}', order=")
        assert out[1:] == [line]


def test_score_cli_sentence_bleu_and_sacrebleu(fairseq_fixtures, tmp_path, capsys) -> None:
    sys_file, ref = _score_files(fairseq_fixtures, tmp_path)
    assert score_main(["-s", str(sys_file), "-r", str(ref), "--sentence-bleu"]) == 0
    out = capsys.readouterr().out.splitlines()[1:]
    assert len(out) == 200 and out[0].startswith("0 BLEU4 = ")
    assert score_main(["-s", str(sys_file), "-r", str(ref), "--sacrebleu"]) == 0
    out = capsys.readouterr().out.splitlines()[1:]
    hyp_lines = sys_file.read_text(encoding="utf-8").splitlines(keepends=True)
    ref_lines = ref.read_text(encoding="utf-8").splitlines(keepends=True)
    assert out == [sacrebleu.corpus_bleu(hyp_lines, [ref_lines]).format()]


def test_score_cli_refuses_files_of_different_lengths(tmp_path) -> None:
    """fairseq-score's zip stops at the shorter file and scores what it read; here it is an error."""
    import pytest

    sys_file, ref_file = tmp_path / "sys.txt", tmp_path / "ref.txt"
    sys_file.write_text("a b\n", encoding="utf-8")
    ref_file.write_text("a b\nc d\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="--sys ends after 1 lines but --ref goes on"):
        score_main(["--sys", str(sys_file), "--ref", str(ref_file)])
    with pytest.raises(SystemExit, match=r"--sys .*sys.txt has 1 lines but --ref .*ref.txt has 2"):
        score_main(["--sys", str(sys_file), "--ref", str(ref_file), "--sacrebleu"])


def test_score_cli_refuses_orders_outside_one_to_four(tmp_path) -> None:
    import pytest

    text = tmp_path / "a.txt"
    text.write_text("a b\n", encoding="utf-8")
    for order in ("0", "5"):
        with pytest.raises(SystemExit, match=f"--order {order}: BLEU counts n-grams of orders 1 to 4"):
            score_main(["--sys", str(text), "--ref", str(text), "--order", order])
