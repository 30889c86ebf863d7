"""No-repeat n-gram blocking (``--no-repeat-ngram-size``), vectorized over hypotheses.

Two modes (``--no-repeat-ngram-mode``):

* ``strict`` (default) blocks what the option promises: a token that would repeat an n-gram of the
  hypothesis. fairseq is broken here, so seqloom does the right thing by default.
* ``fairseq`` reproduces fairseq 0.12's CPU code path exactly: it compares the earlier
  (n-1)-grams with the last n-1 entries of the whole token *buffer*, which are still padding while
  decoding, so in practice nothing is blocked (fairseq's fixtures show repeated bigrams under
  ``--no-repeat-ngram-size 2``). Outputs therefore equal fairseq's.
"""

from __future__ import annotations

import math

from torch import Tensor


def block_repeated_ngrams(tokens: Tensor, lprobs: Tensor, step: int, n: int, *, mode: str = "strict") -> None:
    """Sets ``lprobs[i, x] = -inf`` for the tokens ``x`` the n-gram rule bans after hypothesis ``i``.

    ``tokens`` (N, L) is the generator's buffer: bos and the tokens generated so far in ``[:, :step+1]``,
    padding after; ``lprobs`` (N, V) is changed in place. Nothing is blocked before ``n - 1`` tokens of
    context exist (the leading bos counts, as in fairseq).
    """
    if n <= 0 or step + 2 - n < 0:
        return
    seq = tokens[:, : step + 1]  # (N, step+1)
    if n == 1:
        if mode == "strict":
            lprobs.scatter_(1, seq[:, 1:], -math.inf)
        return  # fairseq's check compares whole rows with empty windows: never equal
    windows = step + 2 - n  # earlier (n-1)-grams that have a successor
    if windows == 0:
        return
    context = seq[:, -(n - 1) :] if mode == "strict" else tokens[:, -(n - 1) :]  # (N, n-1)
    earlier = seq.unfold(1, n - 1, 1)[:, :windows]  # (N, W, n-1)
    match = (earlier == context.unsqueeze(1)).all(dim=-1)  # (N, W)
    following = seq[:, n - 1 :]  # (N, W) the token after each earlier (n-1)-gram
    rows, cols = match.nonzero(as_tuple=True)
    if rows.numel():
        lprobs[rows, following[rows, cols]] = -math.inf
