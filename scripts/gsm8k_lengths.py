"""Token lengths of the real GSM8K solutions in the exercise's target format (one-off measurement).

    python scripts/gsm8k_lengths.py                                   # embedded SmolLM2 tokenizer
    python scripts/gsm8k_lengths.py --model HuggingFaceTB/SmolLM2-135M-Instruct --splits train

For every row of the vendored GSM8K split (``--dataset gsm8k``), the solution is rewritten as the
warm-start SFT writes it (:func:`grpo.data.loaders.to_reasoning_format`: calculator marks removed,
``<reasoning>...</reasoning>\\n<answer>N</answer>``) and measured three ways, with percentiles:

* ``answer+eot``: the target's tokens plus the end-of-turn token -- what a model must generate
  to write the whole solution and stop, i.e. the budget ``eval_max_new_tokens`` has to cover;
* ``sft_completion``: the completion span TRL's ``SFTTrainer`` trains on (prompt+completion
  rendered by the chat template, minus the prompt rendered with the generation prompt);
* ``sft_total``: prompt + completion, to compare with the SFT ``max_length``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grpo.data.loaders import load_gsm8k, to_reasoning_format  # noqa: E402
from grpo.modeling.models import load_tokenizer  # noqa: E402

PERCENTILES = (50, 90, 95, 99, 99.9)


def lengths(rows, tokenizer) -> dict[str, np.ndarray]:
    """Per-row token counts (see the module docstring) for GSM8K rows from :func:`load_gsm8k`."""
    out = {"answer+eot": [], "sft_completion": [], "sft_total": []}
    for row in rows:
        target = to_reasoning_format(row["solution"])
        out["answer+eot"].append(len(tokenizer(target, add_special_tokens=False)["input_ids"]) + 1)
        prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(row["prompt"] + [{"role": "assistant", "content": target}], tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        assert full_ids[:len(prompt_ids)] == prompt_ids, "prompt is not a token prefix of prompt+completion"
        out["sft_completion"].append(len(full_ids) - len(prompt_ids))
        out["sft_total"].append(len(full_ids))
    return {k: np.array(v) for k, v in out.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--dataset", default="gsm8k")
    parser.add_argument("--splits", nargs="+", default=["train", "test"])
    args = parser.parse_args(argv)
    tokenizer = load_tokenizer(args.model)
    print(f"tokenizer {args.model}; end of turn {tokenizer.eos_token!r}")
    print("| split | measure | n | " + " | ".join(f"p{p:g}" for p in PERCENTILES) + " | max | mean |")
    print("| --- " * (len(PERCENTILES) + 5) + "|")
    for split in args.splits:
        rows = load_gsm8k(args.dataset, split=split)
        for name, values in lengths(rows, tokenizer).items():
            cells = [f"{np.percentile(values, p, method='higher'):d}" for p in PERCENTILES]
            print(f"| {split} | {name} | {len(values)} | " + " | ".join(cells)
                  + f" | {values.max()} | {values.mean():.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
