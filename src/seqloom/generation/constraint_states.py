"""Progress of one hypothesis through its sentence's lexical constraints (``--constraints``).

A sentence's constraints are token sequences (one or more tokens each) that every finished hypothesis
must contain. Two bookkeepings, with fairseq 0.12's semantics (their quirks included, since they decide
which candidates beam search keeps):

- ``ordered``: the constraints must appear in the given order, anything between them. The state is the
  position reached in their concatenation.
- ``unordered``: any order. The constraints form a trie; the state is the node reached plus counts of the
  nodes generated and the constraints completed, so a repeated constraint must appear as often as given.

A state's ``bank`` is how many constraint tokens it has generated (beam search keeps hypotheses of every
bank); ``finished`` says whether all constraints are met (only then may the hypothesis end).

Constraints travel in fairseq's packed form: per sentence ``[n, c1..., 0, c2..., 0, ...]``, one row per
sentence, zero-padded (:func:`pack_constraints`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor


def pack_constraints(batch: Sequence[Sequence[Tensor]]) -> Tensor:
    """(B, L) long: each row is the sentence's constraint count, then each constraint followed by a 0."""
    width = max([1 + sum(len(c) + 1 for c in sentence) for sentence in batch], default=1)
    packed = torch.zeros(len(batch), width, dtype=torch.long)
    for row, sentence in enumerate(batch):
        packed[row, 0] = len(sentence)
        offset = 1
        for constraint in sentence:
            if len(constraint) == 0:
                raise ValueError(f"sentence {row}: a constraint has no tokens")
            packed[row, offset : offset + len(constraint)] = torch.as_tensor(constraint)
            offset += len(constraint) + 1
    return packed


def unpack_constraints(row: Tensor) -> list[Tensor]:
    """The constraints (token tensors) of one packed row: ``[count, c1..., 0, c2..., 0, pad...]``."""
    count = int(row[0])
    zeros = [i + 1 for i, v in enumerate(row[1:].tolist()) if v == 0][:count]  # each constraint's terminator
    if len(zeros) < count:
        raise ValueError(f"packed constraints: the row announces {count} constraints but ends {len(zeros)}")
    starts = [1] + [z + 1 for z in zeros[:-1]]
    return [row[start:end] for start, end in zip(starts, zeros)]


class ConstraintState(Protocol):
    """What beam search asks of a hypothesis' constraint progress."""

    @property
    def bank(self) -> int: ...

    @property
    def finished(self) -> bool: ...

    @property
    def num_distinct_tokens(self) -> int: ...

    def next_tokens(self) -> set[int]: ...

    def advance(self, token: int) -> ConstraintState: ...


class OrderedConstraintState:
    """Position ``pos`` (-1: none yet) in the concatenated constraints ``tokens``; ``ends[i]``: token i ends one."""

    __slots__ = ("tokens", "ends", "distinct", "pos")

    def __init__(self, tokens: list[int], ends: list[bool], distinct: int, pos: int = -1) -> None:
        self.tokens, self.ends, self.distinct, self.pos = tokens, ends, distinct, pos

    @classmethod
    def create(cls, constraints: Sequence[Sequence[int]]) -> OrderedConstraintState:
        tokens = [int(t) for c in constraints for t in c]
        ends = [i == len(c) - 1 for c in constraints for i in range(len(c))]
        return cls(tokens, ends, len(set(tokens)))

    def _at(self, pos: int) -> OrderedConstraintState:
        return OrderedConstraintState(self.tokens, self.ends, self.distinct, pos)

    @property
    def bank(self) -> int:
        return self.pos + 1

    @property
    def finished(self) -> bool:
        return self.pos + 1 == len(self.tokens)

    @property
    def num_distinct_tokens(self) -> int:
        return self.distinct

    def next_tokens(self) -> set[int]:
        """The next constraint token, and (past the first token) the first one, as fairseq offers them."""
        restart = self.tokens[:1] if self.pos > 0 else []  # starting the constraints over
        ahead = [] if self.finished else [self.tokens[self.pos + 1]]
        return set(restart + ahead)

    def advance(self, token: int) -> OrderedConstraintState:
        """Matched: one position on. Between constraints (or before any): anything goes, no progress.
        Inside a constraint, a wrong token restarts it (at its first token if that is the token)."""
        if self.finished:
            return self
        if self.tokens[self.pos + 1] == token:
            return self._at(self.pos + 1)
        if self.ends[self.pos]:  # pos -1 reads the last flag, which is always set: nothing started yet
            return self
        return self._at(0 if token == self.tokens[0] else -1)


class TrieNode:
    """A constraint prefix: ``terminal`` constraints end here, ``num_constraints`` end here or below."""

    __slots__ = ("token", "parent", "children", "terminal", "num_constraints")

    def __init__(self, token: int | None = None, parent: TrieNode | None = None) -> None:
        self.token, self.parent = token, parent
        self.children: dict[int, TrieNode] = {}
        self.terminal = 0
        self.num_constraints = 0

    def add(self, sequence: Sequence[int]) -> None:
        node = self
        for token in sequence:
            node = node.children.setdefault(int(token), TrieNode(int(token), node))
        node.terminal += 1
        up: TrieNode | None = node
        while up is not None:
            up.num_constraints += 1
            up = up.parent

    def distinct_tokens(self) -> int:
        seen, stack = set(), list(self.children.values())
        while stack:
            node = stack.pop()
            seen.add(node.token)
            stack.extend(node.children.values())
        return len(seen)


class UnorderedConstraintState:
    """At trie ``node``, with per-node counts of generated tokens and completed constraints."""

    __slots__ = ("root", "node", "generated", "completed", "distinct")

    def __init__(self, root: TrieNode, node: TrieNode, generated: dict[TrieNode, int],
                 completed: dict[TrieNode, int], distinct: int) -> None:  # fmt: skip
        self.root, self.node, self.generated, self.completed, self.distinct = root, node, generated, completed, distinct

    @classmethod
    def create(cls, constraints: Sequence[Sequence[int]]) -> UnorderedConstraintState:
        root = TrieNode()
        for constraint in constraints:
            root.add(constraint)
        return cls(root, root, {}, {}, root.distinct_tokens())

    def _to(self, node: TrieNode) -> UnorderedConstraintState:
        """A copy at ``node`` (counted as generated unless it is the root)."""
        generated = dict(self.generated)
        if node is not self.root:
            generated[node] = generated.get(node, 0) + 1
        return UnorderedConstraintState(self.root, node, generated, dict(self.completed), self.distinct)

    @property
    def bank(self) -> int:
        return sum(self.generated.values())

    @property
    def finished(self) -> bool:
        """All constraints completed, counting the one this node would complete."""
        node = self.node
        pending = 1 if node.terminal and self.completed.get(node, 0) < node.terminal else 0
        return self.root.num_constraints == sum(self.completed.values()) + pending

    @property
    def num_distinct_tokens(self) -> int:
        return self.distinct

    def next_tokens(self) -> set[int]:
        """Tokens starting a constraint, plus those continuing the current one."""
        if self.node is self.root:
            return set(self.root.children)
        return set(self.root.children) | set(self.node.children)

    def _open(self, node: TrieNode | None) -> bool:
        return node is not None and self.generated.get(node, 0) < node.num_constraints

    def advance(self, token: int) -> UnorderedConstraintState:
        """Follows the trie while the child is not used up; otherwise falls back to the root (starting a new
        constraint there if ``token`` begins an open one) and credits the longest completed prefix."""
        child = self.node.children.get(token)
        if self._open(child):
            assert child is not None
            return self._to(child)
        first = self.root.children.get(token)
        state = self._to(first if first is not None and self._open(first) else self.root)
        self._rewind_into(state)
        return state

    def _rewind_into(self, state: UnorderedConstraintState) -> None:
        """Walking up from the current node: the first completable constraint is completed; the nodes passed
        before it no longer count as generated."""
        node = self.node
        while node is not self.root:
            assert node.parent is not None
            if node.terminal and self.completed.get(node, 0) < node.terminal:
                state.completed[node] = state.completed.get(node, 0) + 1
                return
            state.generated[node] = state.generated.get(node, 0) - 1
            node = node.parent


def initial_states(row: Tensor, representation: str) -> ConstraintState:
    """The starting state of one sentence from its packed constraints."""
    constraints = [c.tolist() for c in unpack_constraints(row)]
    if representation == "ordered":
        return OrderedConstraintState.create(constraints)
    if representation == "unordered":
        return UnorderedConstraintState.create(constraints)
    raise ValueError(f"--constraints {representation!r}: choose ordered or unordered")
