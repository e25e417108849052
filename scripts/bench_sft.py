"""Warm-start SFT speed: TRL's fused LM head against ours (grpo.training.sft_trainer), same examples.

Each round runs one forward and backward per example, micro-batches of 1 as the demo's warm-start
does, on the embedded SmolLM2-135M-Instruct with LoRA r16 on every linear layer, under bf16
autocast when the CPU's bf16 matmuls are fast (grpo.common.hardware). The examples are real GSM8K
train rows rendered as the warm-start renders them (chat template; labels on the completion only).
The third contender also casts the frozen linear weights to bf16 once for the whole round
(grpo.training.native.frozen_casts), as the warm-start's trainer does for its whole run, instead of
autocast casting them in every forward. The contenders alternate inside each round, so load from
other processes hits them alike; the table gives the median seconds per example over rounds and the
ratio against TRL's head.

    python scripts/bench_sft.py                      # 8 examples x 3 rounds
    python scripts/bench_sft.py --examples 16 --rounds 5 --dropout 0.05
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from grpo.common.hardware import bf16_is_fast, describe  # noqa: E402
from grpo.data.loaders import load_gsm8k, to_reasoning_format  # noqa: E402
from grpo.modeling.models import EMBEDDED_SMOLLM2, load_model  # noqa: E402
from grpo.training.native.frozen_casts import frozen_weights_cast  # noqa: E402
from grpo.training.sft_trainer import completion_nll  # noqa: E402


def examples(tokenizer, count: int) -> list[dict]:
    """Real GSM8K rows as (1, T) inputs with completion-only labels."""
    out = []
    for row in load_gsm8k("gsm8k", "train", limit=count):
        prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            row["prompt"] + [{"role": "assistant", "content": to_reasoning_format(row["solution"])}], tokenize=False)
        ids = tokenizer(full, return_tensors="pt")["input_ids"]
        labels = ids.clone()
        labels[:, : len(tokenizer(prompt)["input_ids"])] = -100
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dropout", type=float, default=0.0, help="LoRA dropout (the demo's warm-start: 0)")
    args = parser.parse_args()

    from peft import LoraConfig, get_peft_model
    from trl.trainer.utils import add_fused_lm_head

    print(describe())
    model, tokenizer = load_model(EMBEDDED_SMOLLM2)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))  # as SFTTrainer does
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=args.dropout,
                                             target_modules="all-linear", task_type="CAUSAL_LM"))
    model.train()
    data = examples(tokenizer, args.examples)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16_is_fast() else nullcontext()

    def trl_head(inputs):
        out = model(**inputs, fused_lm_head=True, use_cache=False)
        return -out.log_probs.sum() / out.label_mask.sum()

    def our_head(inputs):
        return completion_nll(model, inputs)[0]

    cast_once = torch.bfloat16 if bf16_is_fast() else None
    contenders = {  # name: (loss, dtype the frozen weights are cast to once for the round)
        "TRL fused head": (trl_head, None),
        "completion head (ours)": (our_head, None),
        "completion head + frozen weights cast once (ours)": (our_head, cast_once),
    }
    seconds = {name: [] for name in contenders}
    for round_ in range(args.rounds + 1):  # round 0 warms the kernels up
        for name, (loss_fn, cast) in contenders.items():
            start = time.perf_counter()
            with frozen_weights_cast(model, cast):
                for inputs in data:
                    with autocast:
                        loss = loss_fn(inputs)
                    loss.backward()
            model.zero_grad(set_to_none=True)
            if round_:
                seconds[name].append((time.perf_counter() - start) / len(data))
    tokens = statistics.mean(d["input_ids"].shape[1] for d in data)
    print(f"{len(data)} examples (mean {tokens:.0f} tokens), {args.rounds} rounds, "
          f"bf16 autocast: {bf16_is_fast()}, LoRA dropout {args.dropout}")
    print("| head | s per example (median) | ratio to TRL's |")
    print("| --- | --- | --- |")
    base = statistics.median(seconds["TRL fused head"])
    for name, values in seconds.items():
        print(f"| {name} | {statistics.median(values):.3f} | {base / statistics.median(values):.2f}x |")


if __name__ == "__main__":
    main()
