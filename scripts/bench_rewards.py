"""Benchmark: completions scored per second by the correctness reward on GSM8K-like text.

    python scripts/bench_rewards.py                       # real GSM8K if ../shared/data/gsm8k exists
    python scripts/bench_rewards.py --n 2000 --step-seconds 16 --completions-per-step 8

Completions are built from GSM8K solutions (the real train split when present, otherwise the
project's synthetic generator) in the mix a policy early in GRPO produces: the exercise's
format with a right or wrong plain number, answers with units or ``$`` and decimals, ``\\boxed``
fractions, and untagged text where the last number is the answer. Reported per kind and for
the mix, plus the course's five rewards together, and the share of a training step the rewards
take under the stated step-time assumption (default: DESIGN.md's measured 16 s per step of
8 completions, SmolLM2-135M + LoRA on 2 CPU cores). An adversarial kind (``9^{9^{9^{9}}}``)
shows the per-completion time limit at work; it is excluded from the mix.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import rewards  # noqa: E402

GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
CALC = re.compile(r"<<[^<>]*>>")


def load_solutions(limit: int) -> list[tuple[str, str]]:
    """(reasoning text, gold number) pairs from real GSM8K or the synthetic generator."""
    if GSM8K.is_file():
        with GSM8K.open() as f:
            rows = [json.loads(line) for line, _ in zip(f, range(limit))]
        source = str(GSM8K)
    else:
        from grpo.data.synthetic import generate

        rows, source = generate(limit, seed=0), "synthetic:gsm8k"
    print(f"solutions: {len(rows)} from {source}")
    pairs = []
    for row in rows:
        body, _, final = row["answer"].partition("####")
        pairs.append((CALC.sub("", body).strip(), final.strip().replace(",", "")))
    return pairs


def make(kind: str, reasoning: str, gold: str, rng: random.Random) -> str:
    wrong = str(int(float(gold)) + rng.randint(1, 9))
    tagged = "<reasoning>\n{}\n</reasoning>\n<answer>\n{}\n</answer>"
    return {
        "tagged_right": tagged.format(reasoning, gold),
        "tagged_wrong": tagged.format(reasoning, wrong),
        "units_dollars": tagged.format(reasoning, f"${gold}.00 in total"),
        "boxed_fraction": f"{reasoning}\nSo the answer is $\\boxed{{\\frac{{{2 * int(float(gold))}}}{{2}}}}$.",
        "untagged_last_number": f"{reasoning}\nShe has {gold} now.",
        "adversarial": "<answer>$9^{9^{9^{9}}}$</answer>",
    }[kind]


MIX = {"tagged_right": 0.3, "tagged_wrong": 0.3, "units_dollars": 0.1, "boxed_fraction": 0.1,
       "untagged_last_number": 0.2}


def rate(fn, completions: list[str], golds: list[str]) -> float:
    start = time.perf_counter()
    fn(completions, answer=golds)
    return len(completions) / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="completions per kind")
    parser.add_argument("--step-seconds", type=float, default=16.0, help="assumed training-step time")
    parser.add_argument("--completions-per-step", type=int, default=8, help="assumed completions per step")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    pairs = load_solutions(args.n)
    correctness = rewards.get("correctness")
    correctness(["<answer>\\frac{1}{2}</answer>"], answer=["0.5"])  # import math-verify/sympy once
    print(f"\n{'kind':<22} {'completions/s':>14}")
    rates = {}
    for kind in list(MIX) + ["adversarial"]:
        n = 3 if kind == "adversarial" else len(pairs)
        completions = [make(kind, r, g, rng) for r, g in pairs[:n]]
        rates[kind] = rate(correctness, completions, [g for _, g in pairs[:n]])
        print(f"{kind:<22} {rates[kind]:>14,.1f}")
    # Two disjoint halves, so the second measurement does not profit from math-verify's caches.
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=len(pairs))
    mixes = [make(k, r, g, rng) for k, (r, g) in zip(kinds, pairs)]
    golds = [g for _, g in pairs]
    half = len(pairs) // 2
    mix_rate = rate(correctness, mixes[:half], golds[:half])
    five = [rewards.get(n) for n in ("xml_count", "soft_format", "strict_format", "integer_answer", "correctness")]
    start = time.perf_counter()
    for fn in five:
        fn(mixes[half:], answer=golds[half:])
    five_rate = (len(pairs) - half) / (time.perf_counter() - start)
    print(f"{'mix (correctness)':<22} {mix_rate:>14,.1f}")
    print(f"{'mix (course five)':<22} {five_rate:>14,.1f}")
    per_step = args.completions_per_step / five_rate
    worst = args.completions_per_step / rates["adversarial"]
    print(f"\nassumed step: {args.completions_per_step} completions in {args.step_seconds:g} s "
          f"-> the five rewards take {per_step * 1000:.2f} ms = {100 * per_step / args.step_seconds:.4f}% of a step")
    print(f"worst case, every completion adversarial (correctness timeout_seconds={correctness.timeout_seconds:g}): "
          f"{worst:.2f} s = {100 * worst / args.step_seconds:.1f}% of a step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
