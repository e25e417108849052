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

__all__ = ["bf16_is_fast", "bf16_speedup", "cpu_name", "describe"]


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


@functools.lru_cache(maxsize=None)
def bf16_speedup(size: int = 512, repeats: int = 5) -> float:
    """fp32 time / bf16 time of a ``(size, size) @ (size, size)`` matmul on the CPU, best of ``repeats``.

    Returns:
        > 1 where bf16 is faster (native bf16 kernels), < 1 where it is emulated.
    """
    import torch

    a32, b32 = torch.randn(size, size), torch.randn(size, size)
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
