"""Process-group helpers for the native backend: join the launch's group, sum and gather across processes.

Works under every launch grpo.launch accepts: torchrun (WORLD_SIZE set, the group joined here) and
`accelerate launch` (transformers' TrainingArguments has already set up the group when the config
was parsed). With one process every function is the identity.
"""

from __future__ import annotations

import os

import torch


def init_distributed() -> tuple[int, int]:
    """``(rank, world_size)``; joins torchrun's process group (nccl on CUDA, gloo on CPU) if not joined yet."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_sum(x: torch.Tensor, world: int) -> torch.Tensor:
    """``x`` summed over all processes, in place (any shape); ``x`` itself when ``world == 1``."""
    if world > 1:
        torch.distributed.all_reduce(x)
    return x


def all_gather_cat(x: torch.Tensor, world: int) -> torch.Tensor:
    """Equal-shaped ``x`` (N, ...) from every process concatenated along dim 0 in rank order: (world*N, ...)."""
    parts = [torch.empty_like(x) for _ in range(world)] if world > 1 else [x]
    if world > 1:
        torch.distributed.all_gather(parts, x.contiguous())
    return torch.cat(parts)
