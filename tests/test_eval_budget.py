"""The committed configs' eval budget fits real GSM8K solutions (issue 12: no correct answer cut off).

Run: pytest tests/test_eval_budget.py   (the embedded tokenizer, ~10 s)
"""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import yaml

from grpo.data.loaders import load_gsm8k, to_reasoning_format

CONFIGS = Path(__file__).resolve().parents[1] / "grpo" / "configs"


@pytest.fixture(scope="module")
def solution_tokens():
    """Tokens a model must generate to write each real test solution in the target format and stop."""
    from grpo.modeling.models import load_tokenizer

    tokenizer = load_tokenizer("embedded:smollm2-135m-instruct")
    rows = load_gsm8k("gsm8k", split="test")
    return {row["question"]: len(tokenizer(to_reasoning_format(row["solution"]), add_special_tokens=False)["input_ids"]) + 1
            for row in rows}


@pytest.mark.parametrize("name", ["gsm8k.yaml", "gsm8k_cpu_1h.yaml"])
def test_eval_budget_fits_real_solutions(solution_tokens, name):
    budget = yaml.safe_load((CONFIGS / name).read_text())["eval_max_new_tokens"]
    lengths = sorted(solution_tokens.values())
    fitting = sum(n <= budget for n in lengths) / len(lengths)
    assert fitting >= 0.999, f"{name}: eval_max_new_tokens={budget} cuts {1 - fitting:.2%} of real solutions"
    # a known long one: the longest test solution under 300 tokens is not cut
    assert max(n for n in lengths if n < 300) <= budget
