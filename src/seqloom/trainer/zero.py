"""``--zero-sharding os``: ZeRO stage 1, each data-parallel rank keeping the optimizer state of its share of
the parameters (torch's ``ZeroRedundancyOptimizer``, where fairseq used fairscale's OSS).

Gradients are still all-reduced by DDP; each rank steps its own parameters and broadcasts them. Checkpoints
stay fairseq's single file: before a save every rank sends its state to rank 0
(``consolidate_state_dict``), which writes the whole ``last_optimizer_state``; on restore every rank reads the
whole state and keeps its share.
"""

from __future__ import annotations

import inspect
import sys
from typing import TYPE_CHECKING, Any, TypeGuard

import torch

if TYPE_CHECKING:
    from torch.distributed.optim import ZeroRedundancyOptimizer

# torch.distributed.optim is imported only by runs that shard: importing it scripts its functional
# optimizers with the deprecated torch.jit.script (66 DeprecationWarnings per process).


def shard_optimizer(optimizer: torch.optim.Optimizer) -> ZeroRedundancyOptimizer:
    """The same optimizer (class, param groups and options) with its state sharded over the ranks."""
    from torch.distributed.optim import ZeroRedundancyOptimizer

    cls = type(optimizer)
    accepted = inspect.signature(cls).parameters
    defaults = {k: v for k, v in optimizer.defaults.items() if k in accepted and k != "params"}
    groups = [dict(group) for group in optimizer.param_groups]
    return ZeroRedundancyOptimizer(groups, optimizer_class=cls, **defaults)


def is_zero(optimizer: torch.optim.Optimizer) -> TypeGuard[ZeroRedundancyOptimizer]:
    module = sys.modules.get("torch.distributed.optim")  # not imported: no optimizer can be one
    return module is not None and isinstance(optimizer, module.ZeroRedundancyOptimizer)


def full_optimizer_state(optimizer: torch.optim.Optimizer, *, is_master: bool) -> dict[str, Any] | None:
    """The whole optimizer state on rank 0 (None elsewhere). With ZeRO every rank must call this (it gathers)."""
    if not is_zero(optimizer):
        return optimizer.state_dict()
    optimizer.consolidate_state_dict(to=0)
    return optimizer.state_dict() if is_master else None
