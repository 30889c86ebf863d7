"""Masks and positions are pure functions with fairseq's semantics (pad offset, left padding)."""

from __future__ import annotations

import math

import pytest
import torch

from seqloom.modules.masks import causal_mask, combine_masks, padding_mask
from seqloom.modules.positions import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEmbedding,
    make_positions,
    positional_embedding,
    sinusoidal_table,
)

PAD = 1


def test_padding_mask_marks_pads() -> None:
    tokens = torch.tensor([[1, 1, 5, 2], [4, 5, 6, 2]])
    assert padding_mask(tokens, PAD).tolist() == [[True, True, False, False], [False] * 4]


def test_causal_mask_hides_the_future_with_an_offset() -> None:
    assert causal_mask(3).tolist() == [[False, True, True], [False, False, True], [False, False, False]]
    # two new queries after three cached steps see keys 0..3 and 0..4
    assert causal_mask(2, 5, offset=3).tolist() == [[False] * 4 + [True], [False] * 5]


def test_combine_masks_broadcasts_to_batch_heads_queries_keys() -> None:
    pad = torch.tensor([[True, False, False], [False, False, False]])
    merged = combine_masks(pad, causal_mask(3))
    assert merged is not None and merged.shape == (2, 1, 3, 3)
    assert merged[0, 0].tolist() == [[True, True, True], [True, False, True], [True, False, False]]
    assert combine_masks(None, None) is None


def test_make_positions_skips_left_padding() -> None:
    tokens = torch.tensor([[1, 1, 7, 8, 2], [4, 5, 6, 7, 2], [9, 2, 1, 1, 1]])
    assert make_positions(tokens, PAD).tolist() == [[1, 1, 2, 3, 4], [2, 3, 4, 5, 6], [2, 3, 1, 1, 1]]


@pytest.mark.parametrize("learned", [False, True])
def test_step_rows_continue_after_the_cache(learned: bool) -> None:
    """A decoding step's position rows are those a lookup of the positions after the cached steps gives."""
    torch.manual_seed(0)
    emb = positional_embedding(12, 8, PAD, learned=learned)
    full = make_positions(torch.tensor([[2, 5, 6, 7]]), PAD)  # (1, 4): positions 2..5
    start = 2  # two cached steps
    assert torch.equal(emb.steps(PAD + 1 + start, 2), emb(full[:, start:], span=4))
    assert emb.steps(PAD + 1 + start, 1).shape == (1, 1, 8)
    if learned:
        with pytest.raises(IndexError, match="past this table"):
            emb.steps(PAD + 12, 2)


def test_sinusoidal_table_is_the_tensor2tensor_formula() -> None:
    dim = 8
    table = sinusoidal_table(10, dim, PAD)
    half = dim // 2
    for pos in (0, 3, 9):
        for i in range(half):
            angle = pos * math.exp(-i * math.log(10000) / (half - 1))
            if pos != PAD:
                assert abs(table[pos, i].item() - math.sin(angle)) < 1e-6
                assert abs(table[pos, half + i].item() - math.cos(angle)) < 1e-6
    assert table[PAD].abs().sum() == 0
    odd = sinusoidal_table(5, 7, None)
    assert odd.shape == (5, 7) and odd[:, -1].abs().sum() == 0


def test_sinusoidal_embedding_grows_past_its_initial_size_and_is_not_stored() -> None:
    emb = SinusoidalPositionalEmbedding(6, PAD, init_size=4)
    positions = torch.tensor([[2, 3, 9]])
    out = emb(positions, span=9)
    torch.testing.assert_close(out[0], sinusoidal_table(20, 6, PAD)[positions[0]], atol=0, rtol=0)
    assert emb.state_dict() == {}


def test_learned_positions_have_fairseqs_offset_rows() -> None:
    emb = positional_embedding(10, 4, PAD, learned=True)
    assert isinstance(emb, LearnedPositionalEmbedding)
    assert emb.weight.shape == (10 + PAD + 1, 4) and emb.max_positions == 10
    assert emb.weight[PAD].abs().sum() == 0
    out = emb(torch.tensor([[1, 2, 11]]))
    torch.testing.assert_close(out[0], emb.weight[[1, 2, 11]])


def test_sinusoidal_table_grown_while_decoding_stays_an_ordinary_buffer() -> None:
    emb = SinusoidalPositionalEmbedding(8, 1, init_size=4)
    with torch.inference_mode():  # generation decodes under inference mode
        emb(torch.tensor([[2, 3, 9]]), span=12)
    assert emb.weights.shape == (14, 8) and not emb.weights.is_inference()
    x = torch.ones(1, 3, 8, requires_grad=True)
    (x * emb(torch.tensor([[2, 3, 9]]), span=12)).sum().backward()  # usable in training afterwards
    assert x.grad is not None
