"""Process-group helpers for the native backend: join the launch's group, sum and gather across processes.

Works under every launch grpo.training.launch accepts: torchrun (WORLD_SIZE set, the group joined here) and
`accelerate launch` (transformers' TrainingArguments has already set up the group when the config
was parsed). With one process every function is the identity.

Every collective takes the training ``device`` explicitly and runs on it: NCCL (CUDA) accepts only
tensors on the process's GPU ("No backend type associated with device type cpu"), gloo only CPU ones.
"""

from __future__ import annotations

import os

import torch


def backend_for(device) -> str:
    """The torch.distributed backend for tensors on ``device``: ``"nccl"`` on CUDA, ``"gloo"`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_distributed(device) -> tuple[int, int]:
    """``(rank, world_size)``; joins torchrun's process group if not joined yet, with the backend of ``device``
    (:func:`backend_for`: a ``use_cpu`` run on a CUDA machine gets gloo, not NCCL)."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend_for(device))
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_sum(x: torch.Tensor, world: int, device) -> torch.Tensor:
    """``x`` summed over all processes (any shape), on ``device``; ``x`` itself when ``world == 1``."""
    if world > 1:
        x = x.to(device)  # a no-op where the caller created it on the device, as it should
        torch.distributed.all_reduce(x)
    return x


def all_gather_cat(x: torch.Tensor, world: int, device) -> torch.Tensor:
    """Equal-shaped ``x`` (N, ...) from every process, concatenated along dim 0 in rank order.

    Returns:
        (world*N, ...) on ``device``; ``x`` itself when ``world == 1``.
    """
    if world == 1:
        return x
    x = x.to(device).contiguous()
    parts = [torch.empty_like(x) for _ in range(world)]  # created on the device too
    torch.distributed.all_gather(parts, x)
    return torch.cat(parts)


def broadcast_parameters(module: torch.nn.Module, world: int, device) -> None:
    """Every parameter and buffer of ``module`` overwritten in place with rank 0's values (what DDP's
    constructor does): the processes start the same model whatever each one's RNG did before.

    Args:
        module: the model, on ``device``, with the same parameter names and shapes on every process.
        world: number of processes; nothing happens when it is 1.
        device: the training device; the collectives run there (gloo: CPU tensors, NCCL: this process's GPU).
    """
    if world == 1:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            data = tensor.data
            moved = data.to(device)  # the same storage when it is already there
            torch.distributed.broadcast(moved, src=0)
            if moved.data_ptr() != data.data_ptr():
                data.copy_(moved)


def all_gather_ragged(x: torch.Tensor, world: int, device) -> torch.Tensor:
    """1-D ``x`` of any length from every process, concatenated in rank order (lengths may differ).

    Each process pads to the longest length, gathers, and drops the padding (lengths are gathered first,
    so no sentinel value is needed). Returns ``x`` itself when ``world == 1``.
    """
    if world == 1:
        return x
    sizes = all_gather_cat(torch.tensor([x.numel()], device=device), world, device).tolist()  # (world,)
    padded = torch.zeros(max(sizes), dtype=x.dtype, device=device)  # (max,)
    padded[: x.numel()] = x.to(device)
    parts = all_gather_cat(padded, world, device).view(world, -1)  # (world, max)
    return torch.cat([parts[r, :n] for r, n in enumerate(sizes)])  # (sum sizes,)
