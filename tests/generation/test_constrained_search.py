"""Lexically constrained decoding (``--constraints``): fairseq-interactive parity and the search's promises."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from fixture_compare import compare_lines, read_lines
from scripted_model import EOS, ScriptedModel, ToyDict, sources

from seqloom.cli.interactive import main as interactive
from seqloom.generation.config import GenerationConfig
from seqloom.generation.constraint_states import pack_constraints
from seqloom.generation.generator import SequenceGenerator

HERE = Path(__file__).parents[1] / "fixtures" / "constraints"


def interactive_argv(fairseq_fixtures, source: Path, *options: str) -> list[str]:
    mt = fairseq_fixtures / "mt"
    return [str(mt / "data-bin"), "--path", str(mt / "checkpoints" / "checkpoint_best.pt"), "--tokenizer", "moses",
            "--source-lang", "en", "--target-lang", "es", "--bpe", "subword_nmt", "--bpe-codes",
            str(mt / "text" / "bpe.codes"), "--buffer-size", "4", "--batch-size", "4", "--input", str(source),
            *options]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "options"),
    [("ordered.beam5", ["--constraints", "ordered", "--beam", "5"]),
     ("unordered.beam5", ["--constraints", "unordered", "--beam", "5"]),
     ("unordered.beam4.nbest2", ["--constraints", "unordered", "--beam", "4", "--nbest", "2"])],
)  # fmt: skip
def test_interactive_matches_fairseq(fairseq_fixtures, capsys, name: str, options: list[str]) -> None:
    """9 inputs, 4 per batch: one to three constraints per sentence (multi-word, split by BPE, repeated),
    none for one sentence; S/C/H/D/P lines equal fairseq-interactive's (scores within 1e-4)."""
    assert interactive(interactive_argv(fairseq_fixtures, HERE / "input.en", *options)) == 0
    captured = capsys.readouterr()
    assert compare_lines(read_lines(HERE / f"{name}.txt"), captured.out.splitlines(), skip=("W-",)) == []
    assert "constrained decoding assumes a subword vocabulary shared by source and target" in captured.err


def test_bad_constraint_fields_are_reported_by_input_number(fairseq_fixtures, tmp_path, capsys) -> None:
    source = tmp_path / "input.en"
    source.write_text("The earth .\t\tDios\nThe earth .\tXyzzyq\n", encoding="utf-8")
    assert interactive(interactive_argv(fairseq_fixtures, source, "--constraints")) == 0
    captured = capsys.readouterr()
    assert "input 0: constraint 1 is empty (two tabs in a row?); skipped the line" in captured.err
    assert "input 1: constraint 1 ('Xyzzyq') has words the target dictionary lacks (<unk>)" in captured.err
    assert [line.split("\t")[0] for line in captured.out.splitlines() if line[:2] in ("S-", "C-")] == ["S-1", "C-1"]


def contains(tokens: list[int], phrase: list[int]) -> bool:
    return any(tokens[i : i + len(phrase)] == phrase for i in range(len(tokens)))


def in_order(tokens: list[int], constraints: list[list[int]]) -> bool:
    """Whether the constraints occur one after another (each after the end of the previous one)."""
    start = 0
    for c in constraints:
        found = next((i for i in range(start, len(tokens)) if tokens[i : i + len(c)] == c), None)
        if found is None:
            return False
        start = found + len(c)
    return True


def test_every_hypothesis_meets_its_sentences_constraints() -> None:
    """A batch of four sentences with different constraints (one with none): ordered and unordered."""
    model = ScriptedModel(12, [4, 5, 6, 7, 8], seed=3, scale=1.5)
    wanted = [[[6, 7], [5]], [], [[8], [8], [4]], [[7, 4, 4]]]
    packed = pack_constraints([[torch.tensor(c) for c in s] for s in wanted])
    for kind in ("ordered", "unordered"):
        gen = SequenceGenerator([model], ToyDict(12), GenerationConfig(beam=4, max_len_b=20, constraints=kind))
        hyps = gen.generate(sources([10, 11, 12, 13]), constraints=packed)
        for sentence, constraints in zip(hyps, wanted):
            assert 1 <= len(sentence) <= 4  # at the length limit, the hypotheses that may end there
            for h in sentence:
                tokens = h.tokens.tolist()
                assert tokens[-1] == EOS and h.score > -math.inf
                assert all(contains(tokens, c) for c in constraints)
                if kind == "unordered":  # repeated constraints appear as often as given
                    assert tokens.count(8) >= 2 if constraints == wanted[2] else True
                else:
                    assert in_order(tokens, constraints)
        plain = SequenceGenerator([model], ToyDict(12), GenerationConfig(beam=4, max_len_b=20)).generate(sources([11]))
        assert [h.tokens.tolist() for h in hyps[1]] == [h.tokens.tolist() for h in plain[0]]


def test_constraints_out_of_reach_end_as_plain_beam_search(caplog) -> None:
    """fairseq fails with an assertion when no hypothesis of a sentence meets its constraints by the length
    limit; here the sentence's hypotheses end there (missing constraints) and a warning says so."""
    model = ScriptedModel(12, [4, 5, 6, 7, 8], seed=3, scale=1.5)
    gen = SequenceGenerator([model], ToyDict(12), GenerationConfig(beam=3, max_len_b=2, constraints="ordered"))
    packed = pack_constraints([[torch.tensor([4, 5, 6])], [torch.tensor([6])]])
    with caplog.at_level(logging.WARNING):
        hyps = gen.generate(sources([10, 11]), constraints=packed)
    assert "1 sentence(s) reached the length limit with no hypothesis meeting all constraints" in caplog.text
    assert len(hyps[0]) == 3 and all(len(h.tokens) == 3 for h in hyps[0])
    assert all(contains(h.tokens.tolist(), [6]) for h in hyps[1])


def test_constraints_need_the_constrained_search(fairseq_fixtures, capsys) -> None:
    model = ScriptedModel(12, [4, 5])
    packed = pack_constraints([[torch.tensor([4])]])
    with pytest.raises(ValueError, match="the search is not constrained"):
        SequenceGenerator([model], ToyDict(12), GenerationConfig()).generate(sources([10]), constraints=packed)
    with pytest.raises(ValueError, match="--constraints are mutually exclusive"):
        SequenceGenerator([model], ToyDict(12), GenerationConfig(constraints="ordered", sampling=True))
    gen = SequenceGenerator([model], ToyDict(12), GenerationConfig(constraints="ordered"))
    with pytest.raises(ValueError, match="constraints for 1 sentences, but the batch has 2"):
        gen.generate(sources([10, 11]), constraints=packed)


@pytest.mark.parametrize("kind", ["ordered", "unordered"])
def test_hub_translate_with_lexical_constraints_equals_fairseq_interactive(fairseq_fixtures, kind: str) -> None:
    """``hub.translate(..., lexical_constraints=[phrases per sentence], constraints=kind)`` gives
    fairseq-interactive's D- lines (the hub batches by length, interactive by input order)."""
    from seqloom.hub import TransformerModel

    mt = fairseq_fixtures / "mt"
    hub = TransformerModel.from_pretrained(str(mt / "checkpoints"), checkpoint_file="checkpoint_best.pt",
                                           data_name_or_path=str(mt / "data-bin"), tokenizer="moses",
                                           bpe="subword_nmt", bpe_codes=str(mt / "text" / "bpe.codes"))  # fmt: skip
    rows = [line.split("\t") for line in read_lines(HERE / "input.en")]
    expected = [x.split("\t")[2] for x in read_lines(HERE / f"{kind}.beam5.txt") if x.startswith("D-")]
    got = hub.translate([r[0] for r in rows], beam=5, lexical_constraints=[r[1:] for r in rows], constraints=kind)
    assert got == expected
    if kind == "ordered":  # one sentence takes its own phrase list; the search defaults to ordered
        assert hub.translate(rows[0][0], lexical_constraints=rows[0][1:]) == hub.translate(
            rows[0][0], lexical_constraints=rows[0][1:], constraints="ordered", beam=5
        )
        with pytest.raises(ValueError, match="lexical_constraints has 1 entries for 2 sentences"):
            hub.translate([rows[0][0], rows[1][0]], lexical_constraints=[["Dios"]])


def test_a_forced_prefix_and_constraints_together_still_end() -> None:
    """With a forced prefix every other continuation is impossible (-inf); fairseq's round-robin can keep
    such candidates and kill every beam. Here they go last: hypotheses keep the prefix and meet the constraints."""
    model = ScriptedModel(12, [4, 5, 6, 7, 8], seed=4, scale=1.5)
    gen = SequenceGenerator([model], ToyDict(12), GenerationConfig(beam=3, max_len_b=12, constraints="ordered"))
    prefix = torch.tensor([[8, 8, 8], [4, 5, 0]])  # the second row's prefix is 2 tokens (0 = pad: free)
    prefix[1, 2] = 1  # pad id
    packed = pack_constraints([[torch.tensor([6, 7])], [torch.tensor([8]), torch.tensor([6])]])
    hyps = gen.generate(sources([10, 11]), prefix_tokens=prefix, constraints=packed)
    for row, (start, wanted) in enumerate([([8, 8, 8], [[6, 7]]), ([4, 5], [[8], [6]])]):
        assert hyps[row] and all(h.score > -math.inf for h in hyps[row])
        for h in hyps[row]:
            tokens = h.tokens.tolist()
            assert tokens[: len(start)] == start and in_order(tokens[len(start) :], wanted)
