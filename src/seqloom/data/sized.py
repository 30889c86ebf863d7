"""The size queries of a dataset whose items have one length each and no target side.

The batch sampler and the length filter ask a dataset for ``src_sizes``/``tgt_sizes``, ``size(i)`` and
``num_tokens_vec(indices)``; for a one-sided dataset (masked LM, denoising, sentence prediction, a language
model's blocks) all of them follow from its ``sizes``.
"""

from __future__ import annotations

import numpy as np


class OneSidedSizes:
    """A base for datasets with one int64 length an item in ``self.sizes`` (set by the subclass)."""

    sizes: np.ndarray

    @property
    def src_sizes(self) -> np.ndarray:
        return self.sizes

    @property
    def tgt_sizes(self) -> None:
        return None

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        """The tokens of each item in ``indices`` (its length)."""
        return self.sizes[indices]

    def size(self, index: int) -> int:
        return int(self.sizes[index])
