"""Small kernels against fairseq's own outputs on random inputs (tests/fixtures/kernels, made by its script).

Prefix forcing, sampling and diverse beam steps, eval-lm's context-window collater, the bytes BPE's
decoding of broken UTF-8, token blocks of every break mode, and hard/soft alignments.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from seqloom.data.lm_context_window_dataset import LMContextWindowDataset
from seqloom.data.token_block_dataset import TokenBlockDataset
from seqloom.generation.alignment import hard_alignment, soft_alignment
from seqloom.generation.constraints import apply_prefix, copy_first_beam
from seqloom.generation.search import DiverseBeamSearch, Sampling
from seqloom.tokenizers.bytes_bpe import BYTE_TO_CHAR, smart_byte_decode

PAD, EOS = 1, 2


def _tensors(x: Any) -> Any:
    if isinstance(x, dict):
        if set(x) == {"tensor", "dtype"}:
            return torch.tensor(x["tensor"], dtype=getattr(torch, x["dtype"]))
        return {k: _tensors(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_tensors(v) for v in x]
    return x


with gzip.open(Path(__file__).parent / "fixtures" / "kernels" / "reference.json.gz", "rt", encoding="utf-8") as f:
    REF = _tensors(json.load(f))


def test_copy_first_beam_equals_fairseqs_replicate_first_beam() -> None:
    case = REF["prefix"][-1]
    rows = case["replicate"].clone()
    copy_first_beam(rows, case["mask"].nonzero().squeeze(1), case["beam"])
    assert torch.equal(rows, case["out"])


@pytest.mark.parametrize("i", range(len(REF["prefix"]) - 1))
def test_prefix_forcing_equals_fairseq(i: int) -> None:
    case = REF["prefix"][i]
    state = SimpleNamespace(prefix=case["prefix"], tokens=case["tokens"].clone(), scores=case["scores"].clone())
    lprobs = apply_prefix(case["step"], case["lprobs"].clone(), state, case["beam"], pad=PAD, eos=EOS)
    want_lprobs, want_tokens, want_scores = case["out"]
    assert torch.equal(lprobs, want_lprobs)
    assert torch.equal(state.tokens, want_tokens)
    assert torch.equal(state.scores, want_scores)


@pytest.mark.parametrize("i", range(len(REF["sampling"])))
def test_sampling_steps_draw_what_fairseq_draws(i: int) -> None:
    case = REF["sampling"][i]
    strategy = Sampling(case["topk"], case["topp"])
    for step, s in enumerate(case["steps"]):
        torch.manual_seed(s["seed"])
        out = strategy.step(step, s["lprobs"].clone(), s["scores"].clone())
        scores, tokens, beams = s["out"]
        assert torch.equal(out.tokens, tokens) and torch.equal(out.beams, beams), (case["topk"], case["topp"], step)
        torch.testing.assert_close(out.scores, scores, rtol=0, atol=0)


@pytest.mark.parametrize("i", range(len(REF["diverse"])))
def test_diverse_beam_steps_equal_fairseq(i: int) -> None:
    case = REF["diverse"][i]
    strategy = DiverseBeamSearch(case["groups"], case["strength"], diversity_discount=case["discount"])
    for step, s in enumerate(case["steps"]):
        out = strategy.step(step, s["lprobs"].clone(), s["scores"].clone(), original_batch_idxs=s["rows"])
        scores, tokens, beams = s["out"]
        assert torch.equal(out.tokens, tokens) and torch.equal(out.beams, beams), step
        torch.testing.assert_close(out.scores, scores, rtol=0, atol=0)


class _Blocks:
    """Collates right-padded source (eos-shifted) and target rows, as MonolingualDataset does."""

    def __init__(self, blocks: list[list[int]]) -> None:
        self.blocks = blocks

    def collater(self, samples: list[int]) -> dict[str, Any]:
        width = max(len(self.blocks[i]) for i in samples)
        src = torch.full((len(samples), width), PAD)
        tgt = torch.full((len(samples), width), PAD)
        for r, i in enumerate(samples):
            b = torch.tensor(self.blocks[i])
            src[r, : len(b)] = torch.cat([torch.tensor([EOS]), b[:-1]])
            tgt[r, : len(b)] = b
        lengths = torch.tensor([len(self.blocks[i]) for i in samples])
        return {"net_input": {"src_tokens": src, "src_lengths": lengths}, "target": tgt}


@pytest.mark.parametrize("i", range(len(REF["context"])))
def test_context_window_batches_equal_fairseq(i: int) -> None:
    case = REF["context"][i]
    ds = LMContextWindowDataset(_Blocks(case["blocks"]), tokens_per_sample=case["tps"],  # type: ignore[arg-type]
                                context_window=case["window"], pad_idx=PAD)  # fmt: skip
    for batch, want in zip(case["batches"], case["out"]):
        got = ds.collater(batch)
        assert got["net_input"]["src_tokens"].tolist() == want["src"].tolist()
        assert got["target"].tolist() == want["tgt"].tolist()
        assert got["net_input"]["src_lengths"].tolist() == want["lengths"].tolist()
        assert list(got["start_indices"]) == want["starts"]


def test_byte_table_equals_fairseq() -> None:
    table = REF["bytes"][0]["table"]
    assert {str(b): c for b, c in BYTE_TO_CHAR.items()} == table


@pytest.mark.parametrize("i", range(1, len(REF["bytes"])))
def test_broken_utf8_decodes_as_fairseq(i: int) -> None:
    case = REF["bytes"][i]
    assert smart_byte_decode(case["x"]) == case["out"]


@pytest.mark.parametrize("i", range(len(REF["blocks"])))
def test_token_block_items_equal_fairseq(i: int) -> None:
    case = REF["blocks"][i]
    sentences = case["sentences"]
    sizes = np.array([len(s) for s in sentences])
    ds = TokenBlockDataset(sentences, sizes, case["block"], pad=PAD, eos=EOS, break_mode=case["mode"],
                           include_targets=case["targets"])  # fmt: skip
    assert len(ds) == len(case["items"])
    for k, want in enumerate(case["items"]):
        got = ds[k]
        if case["targets"]:
            assert [t.tolist() for t in got] == [t.tolist() for t in want], (case["mode"], k)
        else:
            assert isinstance(got, torch.Tensor) and got.tolist() == want.tolist(), (case["mode"], k)


@pytest.mark.parametrize("i", range(len(REF["alignment"])))
def test_alignments_equal_fairseq(i: int) -> None:
    case = REF["alignment"][i]
    hard = hard_alignment(case["attn"], case["src"], case["tgt"], pad=PAD, eos=EOS)
    assert [list(p) for p in hard] == case["hard"]
    assert soft_alignment(case["attn"], case["src"], case["tgt"], pad=PAD, eos=EOS) == case["soft"]
