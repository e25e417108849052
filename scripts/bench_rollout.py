"""Rollout throughput: our sampler (grpo.generation.sampler.generate) against model.generate, same batch.

Both contenders get the same P prompts x G generations (model.generate sees the P*G rows TRL's
transformers path gives it: each prompt repeated G times, left-padded), the same sampling
settings (GRPO defaults: temperature 1, top_p 1, top_k off) and the same thread count. They run
interleaved (A B C A B C ...) so load from other processes on a shared CPU hits all of them
alike. Each row reports the median over rounds of completion tokens per second of wall time
and per second of this process's CPU time (with --threads 1 the CPU-time figure is the work
done, and is much less noisy on a shared machine than wall time); a completion's tokens are
counted up to and including its first stop token. With --lora the policy is the LoRA-wrapped
model the trainers use (r=16, all linear layers): model.generate runs the adapter forward,
the sampler a merged copy (grpo.generation.inference_copy). "(hf decode step)" is the bf16 sampler with
grpo.generation.decoder switched off (fast_decode=False): a plain bf16 copy decoded through transformers' forward
with its DynamicCache -- the path the sampler falls back to if grpo.generation.decoder's start-up self-check fails.

Run (the README figures; add --threads 1 on a busy machine):
    python scripts/bench_rollout.py --lora --dataset ../shared/data/gsm8k/train.jsonl --rounds 4 --modes sample
Options: --prompts 2 --generations 8 --max-new-tokens 128 --rounds 2 --modes sample,greedy
         --dataset synthetic:gsm8k (default, offline) --lora --hf-bf16 (also model.generate in bf16)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from grpo.data.loaders import load_gsm8k
from grpo.generation.inference_copy import inference_copy
from grpo.generation.rollout import stop_ids_for
from grpo.generation.sampler import generate
from grpo.modeling.models import EMBEDDED_SMOLLM2, load_model


def bf16_is_fast() -> bool:
    """True where bf16 matmuls have hardware support (CUDA bf16, or x86 AVX512-BF16 / AMX)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return platform.machine() == "arm64"  # Apple silicon
    return "avx512_bf16" in flags or "amx_bf16" in flags


def prompt_ids(tokenizer, dataset: str, count: int) -> list[list[int]]:
    rows = load_gsm8k(dataset, limit=count)
    out = []
    for row in rows:
        ids = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True)
        out.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    return out


def count_tokens(rows: list[list[int]], stops: list[int]) -> int:
    total = 0
    for row in rows:
        cut = next((i for i, t in enumerate(row) if t in stops), None)
        total += len(row) if cut is None else cut + 1
    return total


def run_hf(model, prompts, group, max_new_tokens, do_sample, pad_id, stops, seed) -> int:
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts for _ in range(group)])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts for _ in range(group)])
    torch.manual_seed(seed)
    kwargs = dict(temperature=1.0, top_p=1.0, top_k=0) if do_sample else {}
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=do_sample, max_new_tokens=max_new_tokens,
                             pad_token_id=pad_id, eos_token_id=stops, **kwargs)
    return count_tokens(out[:, width:].tolist(), stops)


def run_sampler(model, tokenizer, prompts, group, max_new_tokens, do_sample, dtype, seed, fast_decode=True) -> int:
    rollout = generate(model, tokenizer, prompts, group, max_new_tokens, do_sample=do_sample, dtype=dtype,
                       generator=torch.Generator().manual_seed(seed), fast_decode=fast_decode)
    return sum(len(c) for c in rollout.completion_ids)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=EMBEDDED_SMOLLM2)
    parser.add_argument("--dataset", default="synthetic:gsm8k")
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="sample,greedy")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--hf-bf16", action="store_true", help="also time model.generate on a bf16 copy")
    parser.add_argument("--lora", action="store_true", help="wrap the model with LoRA r=16 (as training does)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tokenizer = load_model(args.model)
    if args.lora:
        from grpo.modeling.models import apply_lora

        model = apply_lora(model, r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear")
    model.eval()
    prompts = prompt_ids(tokenizer, args.dataset, args.prompts)
    stops = stop_ids_for(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    bf16 = bf16_is_fast()
    print(f"# model={args.model} prompts={args.prompts} (lengths {[len(p) for p in prompts]}) "
          f"x generations={args.generations}, max_new_tokens={args.max_new_tokens}, rounds={args.rounds}, "
          f"threads={torch.get_num_threads()}, lora={args.lora}, bf16 hardware={bf16}, torch {torch.__version__}")
    from grpo.common.hardware import describe

    print(f"# hardware: {describe()}")

    hf_bf16_model = inference_copy(model, torch.bfloat16, rewire=False) if args.hf_bf16 else None  # a plain bf16 model
    g = args.generations
    contenders = {"model.generate fp32": lambda s, m, t: run_hf(model, prompts, g, t, m == "sample", pad_id, stops, s)}
    if hf_bf16_model is not None:
        contenders["model.generate bf16 copy"] = lambda s, m, t: run_hf(hf_bf16_model, prompts, g, t, m == "sample",
                                                                   pad_id, stops, s)
    contenders["sampler fp32"] = lambda s, m, t: run_sampler(model, tokenizer, prompts, g, t, m == "sample",
                                                             torch.float32, s)
    if bf16:
        contenders["sampler bf16"] = lambda s, m, t: run_sampler(model, tokenizer, prompts, g, t, m == "sample",
                                                                 torch.bfloat16, s)
        contenders["  (hf decode step)"] = lambda s, m, t: run_sampler(model, tokenizer, prompts, g, t, m == "sample",
                                                                       torch.bfloat16, s, fast_decode=False)

    for fn in contenders.values():  # warm-up: kernels, allocator, the bf16 copy
        fn(0, "sample", 4)
    for mode in args.modes.split(","):
        wall: dict[str, list[float]] = {name: [] for name in contenders}
        cpu: dict[str, list[float]] = {name: [] for name in contenders}
        tokens: dict[str, list[int]] = {name: [] for name in contenders}
        for r in range(args.rounds):
            for name, fn in contenders.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                n = fn(1000 + r, mode, args.max_new_tokens)
                seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
                wall[name].append(n / seconds)
                cpu[name].append(n / cpu_seconds)
                tokens[name].append(n)
                print(f"  {mode} round {r} {name}: {n} tokens in {seconds:.1f} s wall, {cpu_seconds:.1f} s CPU", flush=True)
        base_wall, base_cpu = statistics.median(wall["model.generate fp32"]), statistics.median(cpu["model.generate fp32"])
        print(f"\n{mode}: completion tokens/s, median of {args.rounds} rounds; ratio vs model.generate fp32")
        print(f"  {'':22s} {'wall tok/s':>10s} {'ratio':>6s} {'CPU tok/s':>10s} {'ratio':>6s}  tokens per run")
        for name in contenders:
            w, c = statistics.median(wall[name]), statistics.median(cpu[name])
            print(f"  {name:22s} {w:10.1f} {w / base_wall:5.2f}x {c:10.1f} {c / base_cpu:5.2f}x  {tokens[name]}")
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
