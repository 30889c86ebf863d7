"""Which search strategy the generation options pick (fairseq's ``build_generator`` choice)."""

from __future__ import annotations

from seqloom.generation.constrained_search import LexicallyConstrainedBeamSearch
from seqloom.generation.search import (
    BeamSearch,
    DiverseBeamSearch,
    DiverseSiblingsSearch,
    LengthConstrainedBeamSearch,
    Sampling,
    Search,
)


def build_search(
    *,
    eos: int,
    sampling: bool = False,
    sampling_topk: int = -1,
    sampling_topp: float = -1.0,
    diverse_beam_groups: int = -1,
    diverse_beam_strength: float = 0.5,
    match_source_len: bool = False,
    diversity_rate: float = -1.0,
    constraints: str | None = None,
    vocab_size: int = 0,
) -> Search:
    """The strategy fairseq picks for these options; they are mutually exclusive.

    fairseq lets ``--diversity-rate`` between -1 and 0 (siblings search, or beam search at 0) quietly lose
    to the options before it; here any rate above -1 counts as chosen, so such a mix is an error.
    """
    options = (sampling, diverse_beam_groups > 0, match_source_len, diversity_rate > -1, constraints is not None)
    if sum(int(c) for c in options) > 1:
        raise ValueError(
            "--sampling, --diverse-beam-groups, --match-source-len, --diversity-rate and --constraints are "
            "mutually exclusive"
        )
    if sampling_topk >= 0 and not sampling:
        raise ValueError("--sampling-topk requires --sampling")
    if sampling_topp >= 0 and not sampling:
        raise ValueError("--sampling-topp requires --sampling")
    if sampling:
        return Sampling(sampling_topk, sampling_topp)
    if diverse_beam_groups > 0:
        return DiverseBeamSearch(diverse_beam_groups, diverse_beam_strength)
    if match_source_len:
        return LengthConstrainedBeamSearch(eos, min_len_a=1, min_len_b=0, max_len_a=1, max_len_b=0)
    if diversity_rate > -1:
        return DiverseSiblingsSearch(diversity_rate)
    if constraints is not None:
        return LexicallyConstrainedBeamSearch(eos, vocab_size, constraints)
    return BeamSearch()
