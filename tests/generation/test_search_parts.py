"""Pure functions of generation: search steps, n-gram blocking, length penalty, alignments."""

from __future__ import annotations

import math

import pytest
import torch

from seqloom.generation.alignment import format_alignment, hard_alignment, soft_alignment
from seqloom.generation.chunked_topk import chunked_topk
from seqloom.generation.constraints import mask_lprobs
from seqloom.generation.hypotheses import length_normalized
from seqloom.generation.ngram import block_repeated_ngrams
from seqloom.generation.search import BeamSearch, DiverseSiblingsSearch
from seqloom.generation.strategies import build_search


def test_beam_search_step_takes_2k_best_over_all_beams() -> None:
    lprobs = torch.log_softmax(torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0)), -1)
    scores = torch.randn(2, 3, 1)
    cand = BeamSearch().step(1, lprobs, scores)
    total = (lprobs + scores[:, :, :1]).view(2, -1)
    for b in range(2):
        best = total[b].argsort(descending=True)[:6]
        assert cand.beams[b].tolist() == (best // 7).tolist()
        assert cand.tokens[b].tolist() == (best % 7).tolist()
        assert torch.equal(cand.scores[b], total[b][best])
    first = BeamSearch().step(0, lprobs, None)  # step 0: only beam 0 counts
    assert first.beams.eq(0).all() and torch.equal(first.scores[0], lprobs[0, 0].sort(descending=True).values[:6])


@pytest.fixture
def one_thread():  # chunked_topk runs on one intra-op thread only
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("vocab", [4096, 4089, 2056])  # whole chunks, and a shorter last chunk
@pytest.mark.parametrize("beams", [1, 3, 5])
def test_chunked_topk_equals_torch_topk_on_strided_log_probs(vocab: int, beams: int) -> None:
    """The CPU shortcut of beam search's candidate choice gives torch.topk's values, indices and order over
    ``lprobs + scores``, on the generator's layout (rows of a buffer wider than the vocabulary) and on step
    0's view of every K-th row; some of each row's columns are -inf (pad, banned tokens)."""
    gen = torch.Generator().manual_seed(vocab + beams)
    bsz = 80  # with step 0's one beam of 2,056 symbols, enough elements for the shortcut
    buffer = torch.randn(bsz * beams, vocab + 8, generator=gen) * 3
    lprobs = buffer[:, :vocab].log_softmax(-1).view(bsz, beams, vocab)
    lprobs[:, :, 1] = -math.inf
    offsets = torch.randn(bsz, beams, generator=gen) * 4
    k = 2 * beams
    for view, off in ((lprobs, offsets), (lprobs, None), (lprobs[:, ::beams], None)):
        found = chunked_topk(view, off, k)
        assert found is not None  # no ties in these draws: the shortcut answers
        summed = view.contiguous() if off is None else view + off.unsqueeze(-1)
        expected = torch.topk(summed.reshape(bsz, -1), k)
        assert torch.equal(found[0], expected[0]) and torch.equal(found[1], expected[1])
    cand = BeamSearch().step(1, lprobs, offsets.unsqueeze(-1))
    expected = torch.topk((lprobs + offsets.unsqueeze(-1)).view(bsz, -1), k)
    assert torch.equal(cand.scores, expected[0]) and torch.equal(cand.beams * vocab + cand.tokens, expected[1])


@pytest.mark.usefixtures("one_thread")
def test_chunked_topk_leaves_ties_to_torch_topk() -> None:
    """Equal candidate values (torch.topk orders those its own way) or equal chunk maxima at the k-th place:
    the shortcut declines, and beam search's answer is torch.topk's."""
    gen = torch.Generator().manual_seed(0)
    lprobs = torch.randn(40, 3, 4096, generator=gen).log_softmax(-1)
    lprobs[:, 1, 700] = lprobs[:, 0, 5] = 0.5  # the best two of every sentence are equal
    assert chunked_topk(lprobs, None, 6) is None
    cand = BeamSearch().step(1, lprobs, torch.zeros(40, 3, 1))
    expected = torch.topk(lprobs.reshape(40, -1), 6)
    assert torch.equal(cand.scores, expected[0]) and torch.equal(cand.beams * 4096 + cand.tokens, expected[1])
    coarse = (torch.randn(40, 3, 4096, generator=gen) * 2).round()  # many equal values: ties everywhere
    assert chunked_topk(coarse, None, 6) is None
    torch.set_num_threads(2)  # torch.topk shares rows among threads: no shortcut
    assert chunked_topk(torch.randn(40, 3, 4096, generator=gen), None, 6) is None


def test_mask_lprobs_turns_nan_into_minus_inf_and_leaves_the_rest() -> None:
    """fairseq's ``lprobs[lprobs != lprobs] = -inf`` (the CPU checks the sum first), pad -inf, unk penalty."""
    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(6, 20, generator=gen).log_softmax(-1)
    for nans in ([], [(1, 4)], [(0, 0), (5, 19)]):
        lprobs = clean.clone()
        for row, col in nans:
            lprobs[row, col] = math.nan
        if nans:
            lprobs[2, 7] = math.inf  # +inf stays +inf (fairseq replaces only NaN)
        mask_lprobs(lprobs, step=1, max_len=10, pad=1, unk=3, eos=2, unk_penalty=0.5)
        expected = clean.clone()
        for row, col in nans:
            expected[row, col] = -math.inf
        if nans:
            expected[2, 7] = math.inf
        expected[:, 1] = -math.inf
        expected[:, 3] -= 0.5
        assert torch.equal(lprobs, expected)


def _fairseq_style_bans(tokens: list[int], step: int, n: int) -> set[int]:
    """The n-grams of the whole buffer as a dict (fairseq's CPU path), looked up with the last n-1 tokens."""
    grams: dict[tuple, list[int]] = {}
    for i in range(len(tokens) - n + 1):
        grams.setdefault(tuple(tokens[i : i + n - 1]), []).append(tokens[i + n - 1])
    if step + 2 - n < 0:
        return set()
    return set(grams.get(tuple(tokens[step + 2 - n : step + 1]), []))


def test_ngram_blocking_matches_the_dictionary_definition() -> None:
    g = torch.Generator().manual_seed(1)
    pad = 1
    for n in (1, 2, 3, 4):
        for step in range(0, 9):
            tokens = torch.full((6, 12), pad)
            tokens[:, 0] = 2
            tokens[:, 1 : step + 1] = torch.randint(4, 7, (6, step), generator=g)
            lprobs = torch.zeros(6, 8)
            block_repeated_ngrams(tokens, lprobs, step, n, mode="strict")
            for row in range(6):
                got = set((lprobs[row] == -math.inf).nonzero().flatten().tolist())
                expected = _fairseq_style_bans(tokens[row].tolist(), step, n) - {pad}
                assert got - {pad} == (expected - {2} if n == 1 else expected)  # strict n=1 never bans eos


def test_fairseq_mode_reproduces_fairseq_012_cpu_check() -> None:
    """fairseq 0.12 compares with the buffer's last n-1 entries (padding while decoding): nothing is banned."""
    tokens = torch.tensor([[2, 5, 6, 5, 6, 5, 1, 1, 1]])
    for n in (1, 2, 3):
        lprobs = torch.zeros(1, 8)
        block_repeated_ngrams(tokens, lprobs, 5, n, mode="fairseq")
        assert not lprobs.isinf().any()
    full = torch.tensor([[2, 5, 6, 5, 6, 5]])  # a buffer without padding: its end is the real context
    lprobs = torch.zeros(1, 8)
    block_repeated_ngrams(full, lprobs, 5, 2, mode="fairseq")
    assert (lprobs[0] == -math.inf).nonzero().flatten().tolist() == [6]


def test_length_penalty() -> None:
    s = torch.tensor([-6.0])
    assert length_normalized(s, 3, 1.0).item() == -2.0
    assert length_normalized(s, 3, 2.0).item() == torch.tensor(-6.0 / 9).item()
    assert length_normalized(s, 3, 0.0).item() == -6.0


def test_hard_alignment_skips_pad_and_eos_and_counts_words() -> None:
    pad, eos = 1, 2
    src = torch.tensor([pad, pad, 10, 11, 12, eos])
    tgt = torch.tensor([20, 21, 22, eos])
    attn = torch.zeros(4, 6)
    attn[0, 4] = 1.0  # -> source word 2
    attn[1, 2] = 1.0  # -> source word 0
    attn[2, 5] = 0.9  # eos is never aligned: the best real token wins
    attn[2, 3] = 0.1
    attn[3, 0] = 1.0
    assert hard_alignment(attn, src, tgt, pad=pad, eos=eos) == [(2, 0), (0, 1), (1, 2)]
    assert format_alignment([(2, 0), (0, 1)], "hard") == "2-0 0-1"
    soft = soft_alignment(attn, src, tgt, pad=pad, eos=eos)
    assert soft[0] == ["0.000000", "0.000000", "1.000000", "0.000000"]


def test_diverse_siblings_rank_penalty_spreads_the_beam_over_parents() -> None:
    """Two hypotheses, one far ahead: beam search takes all continuations from it; a large sibling penalty
    makes each hypothesis's best continuation outrank the leader's second best."""
    lprobs = torch.log_softmax(torch.tensor([[[3.0, 2.9, 2.8, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0, 0.0]]]), dim=-1)
    scores = torch.tensor([[[-0.1], [-2.0]]])
    plain = BeamSearch().step(1, lprobs.clone(), scores)
    assert plain.beams[0, :3].tolist() == [0, 0, 0]
    diverse = DiverseSiblingsSearch(1.0).step(1, lprobs.clone(), scores)
    assert diverse.beams[0, :2].tolist() == [0, 1]
    assert diverse.tokens[0, :2].tolist() == [0, 0]
    best = float(lprobs[0, 0, 0] + scores[0, 0, 0])
    assert diverse.scores[0, 0].item() == pytest.approx(best - 1.0)  # the rank penalty stays in the score
    with pytest.raises(ValueError, match="mutually exclusive"):
        build_search(eos=2, sampling=True, diversity_rate=0.0)
