"""Mixed precision: autocast contexts and fairseq's dynamic loss scaler for ``--fp16``/``--amp``.

The loss is multiplied by ``scale`` before ``backward``; gradients are divided by it again. A step whose
gradients overflow (non-finite norm) is skipped and the scale halved; after ``scale_window`` clean
updates the scale doubles. Reaching ``--min-loss-scale`` stops training, as in fairseq. With ``--amp`` an
overflowing batch is first retried (``--amp-batch-retries``) at the lowered scale.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)


@dataclass
class LossScaler:
    """fairseq's ``DynamicLossScaler`` (scale factor 2).

    ``tolerance`` (``--fp16-scale-tolerance``): the share of updates since the last rescale that may
    overflow before the scale is halved; ``threshold`` (``--threshold-loss-scale``): the scale never goes
    below it.
    """

    scale: float = 2.0**7
    scale_window: int = 2000
    min_loss_scale: float = 1e-4
    tolerance: float = 0.0
    threshold: float | None = None
    _last_overflow: int = -1
    _last_rescale: int = -1
    _overflows_since_rescale: int = 0
    _iter: int = 0

    def update(self, overflow: bool) -> None:
        """Records one step: on overflow halves the scale (unless within the tolerance), after a clean window
        doubles it. A scale at or below ``--min-loss-scale`` stops training, as in fairseq."""
        if overflow:
            previous = self.scale
            self._last_overflow = self._iter
            self._overflows_since_rescale += 1
            if self._overflows_since_rescale / (self._iter - self._last_rescale) >= self.tolerance:
                self.scale /= 2.0
                if self.threshold is not None:
                    self.scale = max(self.scale, self.threshold)
                self._last_rescale = self._iter
                self._overflows_since_rescale = 0
            if self.scale <= self.min_loss_scale:
                self.scale = previous
                raise FloatingPointError(
                    f"minimum loss scale reached ({self.min_loss_scale}): the loss is probably exploding; "
                    "try a lower --lr or --clip-norm, or train in fp32/bf16"
                )
            logger.info("gradient overflow detected, ignoring gradient, setting loss scale to: %g", self.scale)
        elif (self._iter - self._last_overflow) % self.scale_window == 0:
            self.scale *= 2.0
            self._last_rescale = self._iter
        self._iter += 1

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "last_overflow": self._last_overflow, "iter": self._iter,
                "last_rescale": self._last_rescale, "overflows_since_rescale": self._overflows_since_rescale}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = float(state["scale"])
        self._last_overflow = int(state.get("last_overflow", -1))
        self._iter = int(state.get("iter", 0))
        self._last_rescale = int(state.get("last_rescale", -1))
        self._overflows_since_rescale = int(state.get("overflows_since_rescale", 0))


def autocast_dtype(*, fp16: bool, bf16: bool, amp: bool) -> torch.dtype | None:
    """The autocast dtype selected by the precision flags (None: fp32)."""
    if bf16:
        return torch.bfloat16
    if fp16 or amp:
        return torch.float16
    return None


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def default_scale_window(world_size: int, update_freq: int) -> int:
    """fairseq's default ``--fp16-scale-window``: 2**14 updates divided by the data-parallel factor."""
    return max(1, int(2**14 / world_size / update_freq))
