"""No-repeat n-gram blocking (``--no-repeat-ngram-size``), vectorized over hypotheses."""

from __future__ import annotations

import math

from torch import Tensor


def block_repeated_ngrams(tokens: Tensor, lprobs: Tensor, step: int, n: int) -> None:
    """Sets ``lprobs[i, x] = -inf`` where appending ``x`` to hypothesis ``i`` would repeat an n-gram.

    ``tokens`` (N, L >= step+1) holds bos and the tokens generated so far in ``[:, :step+1]``;
    ``lprobs`` (N, V) is changed in place. As in fairseq the leading bos counts as a token, and
    nothing is blocked before the hypothesis has ``n - 1`` tokens of context.
    """
    if n <= 0 or step + 2 - n < 0:
        return
    seq = tokens[:, : step + 1]  # (N, L)
    if n == 1:
        lprobs.scatter_(1, seq, -math.inf)
        return
    length = seq.size(1)
    context = seq[:, length - (n - 1) :]  # (N, n-1) the last n-1 tokens
    earlier = seq.unfold(1, n - 1, 1)[:, : length - n + 1]  # (N, W, n-1) earlier (n-1)-grams with a successor
    if earlier.size(1) == 0:
        return
    match = (earlier == context.unsqueeze(1)).all(dim=-1)  # (N, W)
    following = seq[:, n - 1 :]  # (N, W) the token after each earlier (n-1)-gram
    rows, cols = match.nonzero(as_tuple=True)
    if rows.numel():
        lprobs[rows, following[rows, cols]] = -math.inf
