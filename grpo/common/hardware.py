"""What this machine computes fast: detected, never assumed.

Our CPUs differ between sessions: one has AVX512-BF16 (bf16 matmuls ~2x fp32), the next has none
(bf16 emulated, ~3x *slower* than fp32). Defaults that depend on it (bf16 rollouts and autocast
on CPU) ask :func:`bf16_is_fast`, which times the same matmul in both precisions once per process
(~0.1 s), and every benchmark prints :func:`describe`.

    python -m grpo.common.hardware     # prints the CPU, its bf16 flags and the measured bf16/fp32 speed
"""

from __future__ import annotations

import functools
import os
import platform
import time

from grpo.common.errors import UserError

__all__ = ["CPU_PAD_TO_MULTIPLE_OF", "bf16_is_fast", "bf16_speedup", "cpu_name", "describe", "pad_to_multiple_of"]

# oneDNN (torch's CPU matmuls) builds and caches a kernel, with its scratch memory, per input shape: ~20 MB
# per new (rows x width) shape for a SmolLM2 LoRA forward + backward, never freed while the cache has room
# (1,024 entries). Training on every completion length as it comes grew a GRPO run by ~55 MB a step (the
# one-hour config's GRPO stage had reached 8.8 GB after 100 steps); padding widths to a multiple of 32
# bounds the shapes to a few dozen, for ~5-10 % more tokens per forward (scripts/bench_memory.py).
CPU_PAD_TO_MULTIPLE_OF = 32


def cpu_name() -> str:
    """The CPU model as the OS reports it (``/proc/cpuinfo`` on Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.cache
def bf16_speedup(size: int = 512, repeats: int = 5) -> float:
    """fp32 time / bf16 time of a ``(size, size) @ (size, size)`` matmul on the CPU, best of ``repeats``.

    Returns:
        > 1 where bf16 is faster (native bf16 kernels), < 1 where it is emulated.
    """
    import torch

    generator = torch.Generator().manual_seed(0)  # not the global RNG: only the main process runs this
    a32, b32 = torch.randn(size, size, generator=generator), torch.randn(size, size, generator=generator)
    a16, b16 = a32.bfloat16(), b32.bfloat16()

    def best(a, b) -> float:
        torch.mm(a, b)  # warm-up: kernel selection, packing
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(4):
                torch.mm(a, b)
            times.append(time.perf_counter() - start)
        return min(times)

    return best(a32, b32) / best(a16, b16)


def bf16_is_fast() -> bool:
    """True when bf16 matmuls beat fp32 on this CPU by at least 20 % (:func:`bf16_speedup`).

    ``GRPO_TOOLKIT_BF16=0|1`` overrides the measurement (e.g. to compare both on one machine).
    """
    forced = os.environ.get("GRPO_TOOLKIT_BF16")
    if forced in {"0", "1"}:
        return forced == "1"
    return bf16_speedup() >= 1.2


def describe() -> str:
    """One line for logs and benchmark output: CPU, cores, bf16 flags, measured bf16/fp32 speed, torch."""
    import torch

    flags = sorted(f for f in _cpu_flags() if "bf16" in f or f.startswith("amx"))
    return (f"{cpu_name()}; {os.cpu_count()} cores, torch threads {torch.get_num_threads()}; "
            f"bf16 flags: {', '.join(flags) or 'none'}; bf16 matmul {bf16_speedup():.2f}x fp32; torch {torch.__version__}")


if __name__ == "__main__":
    print(describe())


def pad_to_multiple_of(configured: int | None, use_cpu: bool = False) -> int:
    """The padding multiple for training batches' sequence widths: ``configured`` (TRL's ``pad_to_multiple_of``)
    when set, else :data:`CPU_PAD_TO_MULTIPLE_OF` when training runs on the CPU (``use_cpu`` or no CUDA; TRL's
    "auto" pads only on Neuron, for the same reason: a compiled kernel per shape) and 1 (no padding) on a GPU.

    Raises:
        UserError: ``configured`` < 1 (both backends and the warm-start ask here, so each refuses it alike).
    """
    if configured is None:
        import torch

        return CPU_PAD_TO_MULTIPLE_OF if use_cpu or not torch.cuda.is_available() else 1
    if int(configured) < 1:
        raise UserError(f"pad_to_multiple_of must be >= 1 (1 = no padding; unset = {CPU_PAD_TO_MULTIPLE_OF} on CPU), "
                        f"got {configured}")
    return int(configured)
