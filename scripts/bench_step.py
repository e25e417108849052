"""Seconds per GRPO optimizer step: native backend vs trl.GRPOTrainer, same config and seed.

Run (CPU, ~15 min on 2 shared cores; each backend runs in its own child process):

    nice -n 10 python scripts/bench_step.py
    nice -n 10 python scripts/bench_step.py --threads 1 --steps 4 --max_completion_length 64 --fp32

Setup (issue 4): embedded SmolLM2-135M-Instruct with LoRA (r16, all-linear), 2 prompts x 8
generations per step, 128 completion tokens, the course's five GSM8K rewards on
`synthetic:gsm8k` prompts, temperature 1.0, GRPOConfig defaults otherwise (loss dapo, beta 0,
bf16 autocast, gradient checkpointing). The first step of each backend is warm-up and is not
counted; the figure is the mean wall time of the remaining steps as each backend logs it
(`step_time`: generation + rewards + forward/backward + optimizer step).

Measured 2026-11-22 on the quiet 2-core CPU box, `--threads 1 --steps 3`: trl 86.5 s/step,
native 34.5 s/step, native/trl = 0.40 (x2.5); under load average ~13 the day before: 232.0 vs
67.5 s/step, 0.29. Most of the gain: the native
loss forward runs each prompt once per group (shared KV cache) and skips activation
checkpointing (GRPOConfig's default, which TRL applies); the sampler prefills prompts once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(opts) -> None:
    """One backend, one run: write metrics.jsonl under opts.out."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from trl import GRPOConfig

    from grpo.cli.pipeline import load_reward_funcs
    from grpo.config.script_args import GSM8K_REWARDS
    from grpo.data.loaders import load_gsm8k
    from grpo.modeling.models import EMBEDDED_SMOLLM2, apply_lora, load_model
    from grpo.runs.run_dir import MetricsLogger

    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    model, tokenizer = load_model(EMBEDDED_SMOLLM2)
    model = apply_lora(model)
    rows = load_gsm8k("synthetic:gsm8k", limit=2 * (opts.steps + 1))
    args = GRPOConfig(
        output_dir=opts.out, report_to=[], use_cpu=True, bf16=not opts.fp32, seed=opts.seed, max_steps=opts.steps,
        per_device_train_batch_size=opts.micro_batch, gradient_accumulation_steps=16 // opts.micro_batch,
        num_generations=8, max_completion_length=opts.max_completion_length, learning_rate=1e-5, logging_steps=1,
        save_strategy="no", disable_tqdm=True, shuffle_dataset=False,
    )
    funcs = load_reward_funcs(GSM8K_REWARDS, None)
    start = time.perf_counter()
    if opts.backend == "native":
        from grpo.training.native import train
        from grpo.training.native.plan import build_plan

        train(model, tokenizer, rows, funcs, build_plan(args), MetricsLogger(opts.out))
    else:
        from grpo.training.trl_backend import train

        train(model, tokenizer, rows, funcs, args, None, MetricsLogger(opts.out))
    Path(opts.out, "wall.json").write_text(json.dumps({"wall": time.perf_counter() - start}))


def run_backend(backend: str, opts, root: Path) -> dict:
    out = root / backend
    cmd = [sys.executable, __file__, "--worker", "--backend", backend, "--out", str(out), "--steps", str(opts.steps),
           "--max_completion_length", str(opts.max_completion_length), "--micro_batch", str(opts.micro_batch),
           "--seed", str(opts.seed), "--threads", str(opts.threads)] + (["--fp32"] if opts.fp32 else [])
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    times = [m["step_time"] for m in metrics[1:] if m.get("step_time") is not None]
    lengths = [m.get("completions/mean_length") for m in metrics]
    return {"per_step": sum(times) / max(1, len(times)), "steps": len(metrics), "mean_length": lengths,
            "wall": json.loads((out / "wall.json").read_text())["wall"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3, help="optimizer steps per backend (the first is warm-up)")
    p.add_argument("--max_completion_length", type=int, default=128)
    p.add_argument("--micro_batch", type=int, default=8, help="per_device_train_batch_size (16 completions/step)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fp32", action="store_true", help="bf16=False for both backends")
    p.add_argument("--threads", type=int, default=0, help="torch threads per backend (0 = torch's default); on a "
                   "shared, oversubscribed machine 1 thread avoids OpenMP spin-waits that cost up to 40x")
    p.add_argument("--backends", default="trl,native")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.worker:
        worker(opts)
        return 0
    from grpo.common.hardware import describe

    print(f"# hardware: {describe()}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in opts.backends.split(","):
            results[backend] = run_backend(backend, opts, Path(tmp))
    for backend, r in results.items():
        print(f"{backend:7s} {r['per_step']:7.1f} s/step  (mean of steps 2..{r['steps']}; wall {r['wall']:.0f} s for "
              f"{r['steps']} steps; completion lengths {r['mean_length']})")
    if {"trl", "native"} <= results.keys():
        print(f"native / trl step time: {results['native']['per_step'] / results['trl']['per_step']:.2f} "
              f"(speed-up x{results['trl']['per_step'] / results['native']['per_step']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
