"""An exponential moving average of the weights (``--store-ema``), with fairseq's semantics.

After each update the average moves toward the model: ``ema = decay * ema + (1 - decay) * weights``, every
``--ema-update-freq`` updates. Before ``--ema-start-update`` the decay is 0 (the average copies the model).
The average starts from the model at the first update (as fairseq's lazily built copy does), from a restored
checkpoint's ``extra_state["ema"]``, or from ``--ema-seed-model``. Keys equal the model's state-dict keys, so
``extra_state["ema"]`` of a checkpoint loads into the model like its ``model`` weights.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)


class ExponentialMovingAverage:
    """The averaged weights (model dtype) and, with ``fp32``, a float32 copy that the updates accumulate in."""

    def __init__(self, *, decay: float, start_update: int = 0, update_freq: int = 1, fp32: bool = False) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"--ema-decay {decay}: a decay is a share, from 0 to 1")
        self.target_decay, self.start_update, self.update_freq, self.use_fp32 = decay, start_update, update_freq, fp32
        self.decay = decay
        self.weights: dict[str, Tensor] = {}
        self.fp32: dict[str, Tensor] = {}
        self._counter = 0

    @property
    def started(self) -> bool:
        return bool(self.weights)

    def reset(self, state: Mapping[str, Tensor], fp32_state: Mapping[str, Tensor] | None = None) -> None:
        """Starts the average at ``state`` (copied); its float32 copy from ``fp32_state`` or from ``state``."""
        self.weights = {k: v.detach().clone() for k, v in state.items()}
        if self.use_fp32:
            source = fp32_state if fp32_state is not None else self.weights
            self.fp32 = {k: v.detach().float() if v.is_floating_point() else v.detach().clone()
                         for k, v in source.items()}  # fmt: skip

    @torch.no_grad()
    def step(self, model: nn.Module, num_updates: int) -> None:
        """Moves the average toward ``model`` after update ``num_updates`` (every ``update_freq`` updates)."""
        self.decay = 0.0 if num_updates < self.start_update else self.target_decay
        if not self.started:
            self.reset(model.state_dict())
        if self.update_freq > 1:
            self._counter += 1
            if self._counter < self.update_freq:
                return
            self._counter = 0
        accumulators = self.fp32 if self.use_fp32 else self.weights
        for key, value in model.state_dict().items():
            if "version" in key:  # fairseq's version buffers are not averaged
                continue
            average = accumulators.get(key)
            if average is None or average.shape != value.shape:
                raise ValueError(f"--store-ema: the model's {key} has no matching averaged tensor")
            if average.is_floating_point():
                average.mul_(self.decay).add_(value.to(average.dtype), alpha=1.0 - self.decay)
            else:
                average.copy_(value)
            if self.use_fp32:
                self.weights[key].copy_(average)

    def state_dict(self) -> dict[str, Tensor]:
        """The averaged weights, keyed like the model (fairseq's ``extra_state["ema"]``)."""
        return self.weights

    def fp32_state_dict(self) -> dict[str, Tensor] | None:
        """The float32 accumulators (fairseq's ``extra_state["ema_fp32_params"]``), with ``--ema-fp32``."""
        return self.fp32 if self.use_fp32 else None


def load_ema_weights(path: str) -> dict[str, Tensor]:
    """The EMA weights a checkpoint stores (``extra_state["ema"]``), for ``--ema-seed-model``."""
    from seqloom.checkpoint.io import load_checkpoint

    if not os.path.isfile(path):
        raise FileNotFoundError(f"--ema-seed-model {path}: no such checkpoint file")
    weights = (load_checkpoint(path).get("extra_state") or {}).get("ema")
    if not weights:
        raise ValueError(f"--ema-seed-model {path}: the checkpoint holds no EMA weights (extra_state['ema'])")
    return {k: v.float() if v.dtype == torch.float16 else v for k, v in weights.items()}
