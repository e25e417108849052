"""Resident memory of the native GRPO loss forward + backward as completion lengths vary: padded widths vs exact,
and frozen weights cast by autocast in every forward vs once (grpo.training.native.frozen_casts).

Run (CPU, ~2 min; each setting runs in its own child process, one after the other):

    python scripts/bench_memory.py
    python scripts/bench_memory.py --micro_batch 2 --steps 24 --multiples 1 16 32
    python scripts/bench_memory.py --multiples 32 --casts forward once
    python scripts/bench_memory.py --multiples 32 --casts once --micro_batch 8 4 2 --widths 200 512 --steps 2

Setup: embedded SmolLM2-135M-Instruct with LoRA (r16, all-linear, dropout off as ``disable_dropout``),
bf16 autocast where the CPU has bf16 kernels (:func:`grpo.common.hardware.bf16_is_fast`), one prompt of 150
tokens and ``micro_batch`` completions per forward (several values: one child each), the completion width
drawn from ``--widths`` (default 60..256) tokens per step (seeded; the same draws for every setting), each width
padded to ``pad_to_multiple_of`` as
:func:`grpo.training.native.experience.collate` pads it. For each multiple it prints the resident set after
the first step and after the last (freed heap handed back with ``malloc_trim``: what the process keeps),
the peak, and the mean seconds per step, side by side. ``--casts``: ``forward`` lets autocast cast each frozen
weight in every forward (and keep the cast for backward), ``once`` casts them once around the pass, as the
native loop does around a step's micro-batches (without bf16 autocast there is nothing to cast: the two agree).

Why: oneDNN compiles a kernel per input shape and keeps it, with its scratch memory, in a cache of
1,024 entries; a run that trains on every length as it comes grows by ~20 MB per new width (measured
2026-11-30: a 10-step GRPO run grew 55 MB/step unpadded, 8.8 GB after 100 steps of the one-hour config).
``--micro_batch 8 4 2 --widths 200 512``: the activations one forward keeps for backward, against completions
per forward at TRL's default max_completion_length (what grpo.training.native.plan.TOKENS_PER_FORWARD bounds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def worker(opts) -> None:
    """One padding multiple: print one JSON line with the memory and time figures."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ctypes
    import random
    import threading
    import time
    from contextlib import nullcontext

    import psutil
    import torch

    from grpo.common.hardware import bf16_is_fast
    from grpo.modeling.models import apply_lora, load_model
    from grpo.training.native.experience import collate, completion_logps
    from grpo.training.native.frozen_casts import frozen_weights_cast

    torch.set_num_threads(opts.threads)
    proc, libc = psutil.Process(), ctypes.CDLL("libc.so.6")
    model, _ = load_model("embedded:smollm2-135m-instruct")
    model = apply_lora(model, lora_dropout=0.0).train()
    low = torch.bfloat16 if bf16_is_fast() else None
    autocast = (lambda: torch.autocast("cpu", dtype=low)) if low is not None else nullcontext
    draws = random.Random(0)
    widths = [draws.randint(*opts.widths) for _ in range(opts.steps)]
    micro = opts.micro_batch[0]
    prompt = [draws.randint(100, 40000) for _ in range(150)]

    def kept_mb() -> float:
        libc.malloc_trim(0)
        return proc.memory_info().rss / 2**20

    peak, done = [0], threading.Event()

    def sample():
        while not done.wait(0.01):
            peak[0] = max(peak[0], proc.memory_info().rss)

    threading.Thread(target=sample, daemon=True).start()
    kept, times = [], []
    for width in widths:
        completions = [[draws.randint(100, 40000) for _ in range(width - k)] for k in range(micro)]
        batch = collate([prompt], [0] * micro, completions, [False] * micro, None, torch.randn(micro), 0, False,
                        opts.multiple)
        start = time.perf_counter()
        with frozen_weights_cast(model, low if opts.casts == ["once"] else None):  # worker: one --casts value
            logps, _ = completion_logps(model, batch, 1.0, autocast)
            (logps * batch.advantages[:, None] * batch.completion_mask).sum().backward()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
        del logps
        kept.append(kept_mb())
    done.set()
    print(json.dumps({"multiple": opts.multiple, "casts": opts.casts[0], "micro_batch": micro, "first_mb": kept[0],
                      "last_mb": kept[-1],
                      "peak_mb": peak[0] / 2**20,
                      "s_per_step": sum(times[1:]) / max(1, len(times) - 1),
                      "distinct_shapes": len({-(-w // opts.multiple) for w in widths})}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=16, help="forward+backward passes, one drawn width each")
    parser.add_argument("--micro_batch", type=int, nargs="+", default=[4], help="completions per forward (one child each)")
    parser.add_argument("--widths", type=int, nargs=2, default=[60, 256], help="completion widths drawn from this range")
    parser.add_argument("--multiples", type=int, nargs="+", default=[1, 32], help="pad_to_multiple_of values")
    parser.add_argument("--casts", nargs="+", default=["forward", "once"], choices=["forward", "once"],
                        help="frozen weights cast by autocast in every forward, or once per pass (the native loop's way)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--multiple", type=int, default=None, help=argparse.SUPPRESS)  # worker mode
    opts = parser.parse_args()
    if opts.multiple is not None:
        worker(opts)
        return
    from grpo.common.hardware import describe

    print(describe())
    low, high = opts.widths
    print(f"{opts.steps} steps, completions of {low}..{high} tokens, prompt 150 tokens")
    print(f"{'micro':>5} {'pad_to_multiple_of':>18} {'casts':>7} {'widths':>6} {'kept after 1st':>15} "
          f"{'kept after last':>16} {'peak':>8} {'s/step':>7}")
    for micro in opts.micro_batch:
        for multiple in opts.multiples:
            for casts in opts.casts:
                cmd = [sys.executable, __file__, "--multiple", str(multiple), "--steps", str(opts.steps),
                       "--micro_batch", str(micro), "--widths", str(low), str(high), "--threads", str(opts.threads),
                       "--casts", casts]
                line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
                r = json.loads(line)
                print(f"{micro:>5} {multiple:>18} {casts:>7} {r['distinct_shapes']:>6} {r['first_mb']:>12.0f} MB "
                      f"{r['last_mb']:>13.0f} MB {r['peak_mb']:>5.0f} MB {r['s_per_step']:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
