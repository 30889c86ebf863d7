"""Constraint bookkeeping (ordered and unordered) against fairseq 0.12's own traces and packed format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from seqloom.generation.constrained_search import stripe
from seqloom.generation.constraint_states import (
    OrderedConstraintState,
    UnorderedConstraintState,
    initial_states,
    pack_constraints,
    unpack_constraints,
)

TRACES = Path(__file__).parents[1] / "fixtures" / "constraints" / "state_traces.json"


def test_packed_form_is_fairseqs() -> None:
    """The example of fairseq's ``pack_constraints`` docstring, value for value."""
    batch = [[torch.tensor([3, 1, 2]), torch.tensor([3]), torch.tensor([4, 5, 6, 7])], [],
             [torch.tensor([1, 8, 9, 10, 1, 4, 11, 12])]]  # fmt: skip
    expected = torch.tensor([[3, 3, 1, 2, 0, 3, 0, 4, 5, 6, 7, 0],
                             [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                             [1, 1, 8, 9, 10, 1, 4, 11, 12, 0, 0, 0]])  # fmt: skip
    packed = pack_constraints(batch)
    assert torch.equal(packed, expected)
    for row, sentence in zip(packed, batch):
        assert [c.tolist() for c in unpack_constraints(row)] == [c.tolist() for c in sentence]
    with pytest.raises(ValueError, match="sentence 1: a constraint has no tokens"):
        pack_constraints([[torch.tensor([4])], [torch.tensor([], dtype=torch.long)]])


@pytest.mark.parametrize("kind", ["ordered", "unordered"])
def test_states_follow_fairseqs_traces(kind: str) -> None:
    """300 random constraint sets and token streams (repeats, shared prefixes, broken-off constraints):
    after every token, bank, finished and the offered next tokens equal fairseq's.

    fairseq's ordered state keeps its tokens as tensors, so its set of next tokens can hold one token twice
    (tensors hash by identity); the search drops such duplicate candidates, so the sets are compared."""
    cases = json.loads(TRACES.read_text())
    assert len(cases) == 300
    for case in cases:
        state = initial_states(pack_constraints([[torch.tensor(c) for c in case["constraints"]]])[0], kind)
        got = [[state.bank, state.finished, sorted(state.next_tokens())]]
        for token in case["tokens"]:
            state = state.advance(token)
            got.append([state.bank, state.finished, sorted(state.next_tokens())])
        expected = [[bank, finished, sorted(set(nexts))] for bank, finished, nexts in case[kind]]
        assert got == expected, case


def test_unordered_repeated_constraint_needs_every_copy() -> None:
    state = UnorderedConstraintState.create([[5], [5], [6, 7]])
    for token in [5, 6, 7]:
        assert not state.finished
        state = state.advance(token)
    assert not state.finished and state.bank == 3
    state = state.advance(4)
    assert not state.finished and state.bank == 3  # "6 7" is credited when the path falls back to the root
    state = state.advance(5)
    assert state.finished and state.bank == 4
    assert state.advance(5).advance(4).finished  # more tokens do not undo met constraints


def test_ordered_constraints_must_come_in_order() -> None:
    state = OrderedConstraintState.create([[6, 7], [5]])
    for token in [5, 6, 4]:  # 5 before its turn counts for nothing; 4 breaks "6 7" off
        state = state.advance(token)
    assert state.bank == 0 and state.next_tokens() == {6}
    for token in [6, 7, 4, 4, 5]:
        state = state.advance(token)
    assert state.finished and state.bank == 3
    assert initial_states(torch.tensor([0]), "ordered").finished  # a sentence without constraints
    with pytest.raises(ValueError, match="choose ordered or unordered"):
        initial_states(torch.tensor([0]), "sorted")


def test_stripes_pick_round_robin_across_banks() -> None:
    """fairseq's worked example: banks sorted 3 3 3 2 2 2 2 1 1 1 0 0 are taken as 3 2 1 0 3 2 1 0 3 2 1 2."""
    banks = [3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 0, 0]
    codes = stripe(banks, 3)
    assert codes == [0, 13, 26, 1, 14, 27, 40, 2, 15, 28, 3, 16]
    assert [banks[i] for i in sorted(range(len(banks)), key=codes.__getitem__)] == [3, 2, 1, 0, 3, 2, 1, 0, 3, 2, 1, 2]
