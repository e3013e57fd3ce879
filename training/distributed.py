"""Data-parallel training through ``torchrun``, for the shared loop (``training.train``).

When the ``torch.distributed`` environment is present with ``WORLD_SIZE > 1`` (``torchrun`` /
``python -m torch.distributed.run`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``), the loop joins the process group (NCCL on CUDA, gloo on CPU),
wraps the model in ``DistributedDataParallel`` and gives each rank a deterministic shard of the
shuffled training windows (:func:`shard`, like ``DistributedSampler``: the same permutation on
every rank, padded to a multiple of the world size, rank ``r`` takes positions ``r::world``).
Only rank 0 validates, tests and writes the checkpoint; its stop / improved decisions are
broadcast so every rank leaves the epoch loop together and keeps the same best weights.

    torchrun --nproc_per_node=2 -m training.train --loo ../shared/data/amazon/Beauty.txt ...
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this call initialised the group, so it also destroys it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def setup(device_type: str) -> DistContext:
    """Join the process group when launched with ``WORLD_SIZE > 1``; a no-op context otherwise."""
    world = env_world_size()
    if world <= 1:
        return DistContext()
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        owns = True
    return DistContext(
        rank=dist.get_rank(), world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")), owns_group=owns,
    )


def teardown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def shard(order: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """This rank's share of a permutation (same on every rank): padded by wrapping around to a
    multiple of the world size, so every rank runs the same number of steps."""
    if not ctx.enabled:
        return order
    n = order.numel()
    per_rank = -(-n // ctx.world_size)
    padded = torch.cat([order, order[: per_rank * ctx.world_size - n]]) if per_rank * ctx.world_size > n else order
    return padded[ctx.rank::ctx.world_size]


def wrap(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" and device.index is not None else None
    return DistributedDataParallel(model, device_ids=device_ids)


def broadcast_flags(flags: list[int], ctx: DistContext, device: torch.device) -> list[int]:
    """Rank 0's ``flags`` on every rank (one small collective per validation)."""
    if not ctx.enabled:
        return flags
    t = torch.tensor(flags, dtype=torch.long, device=device if device.type == "cuda" else "cpu")
    dist.broadcast(t, src=0)
    return [int(v) for v in t.tolist()]


def fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors' bytes, in key order: equal weights <=> equal fingerprints."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        h.update(key.encode())
        h.update(state_dict[key].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def all_fingerprints(state_dict: dict[str, torch.Tensor], ctx: DistContext) -> list[str]:
    """Every rank's :func:`fingerprint` (rank order)."""
    mine = fingerprint(state_dict)
    if not ctx.enabled:
        return [mine]
    out: list[str | None] = [None] * ctx.world_size
    dist.all_gather_object(out, mine)
    return [str(v) for v in out]
