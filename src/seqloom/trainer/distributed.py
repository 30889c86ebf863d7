"""Data-parallel set-up: one process per device, started by ``torchrun`` (or a test's process pool).

``torchrun`` exports ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
with them the process group is joined with NCCL on GPUs and gloo on the CPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, cast

import torch
import torch.distributed as dist

from seqloom.devices import select_device

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: its rank, the world size and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_master(self) -> bool:
        return self.rank == 0


T = TypeVar("T")


def init_distributed(*, cpu: bool, backend: str = "nccl", world_size: int = 1, device_id: int = 0) -> DistInfo:
    """Joins the process group when launched by torchrun (``WORLD_SIZE`` > 1); else a single process."""
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    if env_world <= 1:
        device = select_device(cpu=cpu, index=device_id)
        if device.type == "cuda" and torch.cuda.device_count() > 1:  # fairseq-train would spawn one per GPU
            logger.warning(
                "%d GPUs are visible and this run uses one; to train on all of them start it with "
                "torchrun --nproc-per-node %d -m seqloom.train ...",
                torch.cuda.device_count(), torch.cuda.device_count(),
            )  # fmt: skip
        return DistInfo(0, 1, device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(cpu=cpu, index=local_rank)
    use_cuda = device.type == "cuda"
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"process LOCAL_RANK={local_rank} needs GPU {local_rank}, but this machine has "
                f"{torch.cuda.device_count()}: start at most that many processes per node "
                "(torchrun --nproc-per-node), or pass --cpu to train on the CPU with the gloo backend"
            )
        torch.cuda.set_device(device)
    chosen = backend if use_cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=chosen, rank=rank, world_size=env_world)
    logger.info("distributed init (rank %d of %d, backend %s, device %s)", rank, env_world, chosen, device)
    return DistInfo(rank, env_world, device)


def spawn(main: Callable[[list[str]], int], argv: list[str], world_size: int, *, port: int = -1) -> int:
    """fairseq's ``--distributed-world-size N`` without a launcher: starts N local processes that join
    one group (as torchrun would set them up) and run ``main(argv)``; returns the worst exit code."""
    import socket

    import torch.multiprocessing as mp

    if port <= 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
    try:
        mp.spawn(_worker, args=(main, argv, world_size, port), nprocs=world_size, join=True)
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as err:
        logger.error("a worker process failed: %s", str(err).strip().splitlines()[-1] if str(err).strip() else err)
        return 1
    return 0


def _worker(rank: int, main: Callable[[list[str]], int], argv: list[str], world_size: int, port: int) -> None:
    env = {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": world_size, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
    os.environ.update({k: str(v) for k, v in env.items()})
    code = main(argv)
    if code:
        raise SystemExit(code)


def all_reduce_sums(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Sums a dict of numbers over all ranks (keys may differ between ranks; missing ones count 0)."""
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return dict(values)
    keys = sorted(set().union(*all_gather_objects(sorted(values))))
    t = torch.tensor([float(values.get(k, 0.0)) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist()))


def all_gather_lists(values: dict[str, list[T]]) -> dict[str, list[T]]:
    """Concatenates each key's lists of all ranks, in rank order."""
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return values
    out: dict[str, list[T]] = {}
    for part in all_gather_objects(values):
        for key, items in part.items():
            out.setdefault(key, []).extend(items)
    return out


def all_gather_objects(obj: T) -> list[T]:
    """``obj`` of every rank, in rank order (pickled across the ranks)."""
    out: list[T | None] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return cast(list[T], out)  # every rank's slot is filled


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
