"""``--ddp-backend fully_sharded``: fully sharded data parallel training with torch's ``fully_shard`` (FSDP2).

Under ``torchrun`` parameters, gradients and optimizer moments are sharded over the ranks (``DTensor``s split
on dim 0). As in fairseq, an encoder or decoder layer becomes its own FSDP unit when it has at least
``--min-params-to-wrap`` parameters (default 1e8: none of a usual model's layers), and every layer does with
``--checkpoint-activations``. The root unit holds the rest: the embeddings (tied ones included), the final
norms and the output projection. A unit's weights are all-gathered for its forward and backward only, and
kept gathered between them with ``--no-reshard-after-forward``. ``--cpu-offload`` keeps the sharded
parameters, gradients and optimizer state in CPU memory.

Checkpoints stay fairseq's single file: the full model and optimizer state are gathered on every rank (the
gathers are collectives) and rank 0 writes them, so a checkpoint trained with FSDP loads anywhere, and any
full checkpoint restores into a sharded run. fairseq's ``--use-sharded-state`` (one file per rank) is not
offered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeGuard, cast

import torch
import torch.distributed as dist
from torch import nn

from seqloom.devices import torch_release

if TYPE_CHECKING:
    from torch.distributed.tensor import DTensor

# torch releases whose fully_shard fails on the CPU inside torch itself (2.6: "'Stream' object has no attribute
# 'record_event'" in the all-gather; 2.11: "setStorage ... storage of size 0" in the backward); 2.13 passes
# tests/cli/test_train.py's FSDP test on the CPU. FSDP2 (torch.distributed.fsdp.fully_shard) is public from 2.6.
CPU_FSDP_SINCE = (2, 13)
FSDP_SINCE = (2, 6)


def check_fsdp_support(device: torch.device, version: str | None = None) -> None:
    """Raises ValueError, naming the way out, where this torch cannot run ``fully_shard`` on ``device``."""
    release = torch_release(version)
    found = version or torch.__version__
    if release < FSDP_SINCE:
        raise ValueError(f"--ddp-backend fully_sharded needs torch >= 2.6 (torch.distributed.fsdp.fully_shard); this "
                         f"is torch {found}. Use --ddp-backend pytorch_ddp, or a newer torch")  # fmt: skip
    if device.type == "cpu" and release < CPU_FSDP_SINCE:
        raise ValueError(f"--ddp-backend fully_sharded on the CPU needs torch >= 2.13: torch {found}'s CPU fully_shard "
                         "fails inside torch. Use --ddp-backend pytorch_ddp, a GPU, or a newer torch")  # fmt: skip


def shard_model(
    model: nn.Module,
    device: torch.device,
    *,
    min_params_to_wrap: int,
    reshard_after_forward: bool = True,
    cpu_offload: bool = False,
) -> int:
    """Applies ``fully_shard`` to the transformer layers of at least ``min_params_to_wrap`` parameters, then
    to the whole model (in place), over all ranks on ``device``'s type (``--cpu`` runs shard on the CPU
    also where CUDA is present). Returns the number of layers that became their own unit."""
    check_fsdp_support(device)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    from seqloom.modules.transformer_layers import TransformerDecoderLayer, TransformerEncoderLayer

    cuda = device.type == "cuda"
    options: dict[str, Any] = {
        "mesh": init_device_mesh(device.type, (dist.get_world_size(),)),
        "reshard_after_forward": reshard_after_forward,
        "offload_policy": CPUOffloadPolicy(pin_memory=cuda) if cpu_offload else OffloadPolicy(),
    }
    units = 0
    for module in model.modules():
        if isinstance(module, (TransformerEncoderLayer, TransformerDecoderLayer)):
            if sum(p.numel() for p in module.parameters()) >= min_params_to_wrap:
                fully_shard(module, **options)
                units += 1
    fully_shard(model, **options)
    return units


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def _is_dtensor(value: object) -> TypeGuard[DTensor]:
    from torch.distributed.tensor import DTensor

    return isinstance(value, DTensor)


def full_tensors(value: Any) -> Any:
    """``value`` with every sharded tensor gathered whole (a collective: every rank calls it, in the same order)."""
    if _is_dtensor(value):
        return value.full_tensor()
    if isinstance(value, dict):
        return {k: full_tensors(v) for k, v in value.items()}
    if isinstance(value, list):
        return [full_tensors(v) for v in value]
    if isinstance(value, tuple):
        return tuple(full_tensors(v) for v in value)
    return value


def _shard_like(full: torch.Tensor, param: DTensor) -> DTensor:
    """``full`` split over the ranks as the sharded ``param`` is."""
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full.to(device=param.device, dtype=full.dtype), param.device_mesh, param.placements)


@torch.no_grad()
def load_full_model_state(model: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Loads a full (unsharded) state dict into a sharded model; names must match exactly, as ``strict=True``."""
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise RuntimeError(
            f"{source}: the checkpoint's weights do not fit the model built from these options (check --arch and "
            f"the size flags): missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
        )
    for name, target in own.items():
        full = state[name]
        if tuple(full.shape) != tuple(target.shape):
            raise RuntimeError(
                f"{source}: {name} has shape {tuple(full.shape)} in the checkpoint, {tuple(target.shape)} in the "
                "model built from these options (check --arch and the size flags)"
            )
        if _is_dtensor(target):
            target.to_local().copy_(_shard_like(full, target).to_local())
        else:
            target.copy_(full)


def shard_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """After ``load_state_dict`` of a full optimizer state: splits each moment of a sharded parameter like it."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p)
            if not state or not _is_dtensor(p):
                continue
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and not _is_dtensor(value) and value.shape == p.shape:
                    state[key] = _shard_like(value, p)


def sharded_grad_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of sharded gradients (DTensors): local sums of squares, summed over the ranks."""
    shards = cast("list[DTensor]", grads)  # a sharded model's gradients are DTensors
    local = torch.zeros((), dtype=torch.float32, device=shards[0].to_local().device)
    for g in shards:
        local += g.to_local().float().square().sum()
    dist.all_reduce(local)
    return local.sqrt()
