"""Property tests: no built-in reward raises or returns a non-finite number, whatever the text.

Also the fixed nasty inputs the issue lists (empty, 1 MB, binary junk, NaN strings, unbalanced
tags, deep LaTeX). Example counts are modest so the file runs in seconds.

Run: pytest tests/test_rewards_properties.py -q
"""

import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rewards

CHEAP = ["xml_count", "soft_format", "strict_format", "think_format", "code_format", "reasoning_steps", "integer_answer",
         "number_answer", "correctness", "length", "cosine_length", "overlong", "repetition", "group_length"]
FUNCS = {name: rewards.get(name) for name in CHEAP}

# Text built from the pieces rewards look for, so generated inputs hit the interesting paths.
PIECES = ["<reasoning>", "</reasoning>", "<answer>", "</answer>", "<think>", "</think>", "\n", " ", "####",
          "\\boxed{", "{", "}", "$", "\\frac{", "^", "**", "!", "%", ",", ".", "-", "/", "the answer is ",
          "Step 1:", "First,", "NaN", "inf", "1e308", "\x00", "\ud7ff", "\u2212", "é", "𝟙", "0", "7", "18", "1,000"]
texts = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=8)), max_size=40).map("".join)
golds = st.one_of(st.none(), st.sampled_from(["18", "1,000", "\\frac{1}{2}", "#### 7", "", "NaN", "x"]),
                  st.integers(-10**6, 10**6), texts)


def check(values, n):
    assert isinstance(values, list) and len(values) == n
    for v in values:
        assert v is None or (isinstance(v, float) and math.isfinite(v)), v


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(st.tuples(texts, golds), min_size=1, max_size=4), conversational=st.booleans())
def test_builtin_rewards_never_raise(batch, conversational):
    completions = [[{"role": "assistant", "content": t}] if conversational else t for t, _ in batch]
    answers = [g for _, g in batch]
    for fn in FUNCS.values():
        check(fn(completions, prompts=["p"] * len(batch), answer=answers, completion_ids=[[1]] * len(batch)),
              len(batch))


@settings(max_examples=40, deadline=None, database=None)
@given(text=st.text(max_size=200))
def test_arbitrary_unicode(text):
    for fn in FUNCS.values():
        check(fn([text], answer=["18"], completion_ids=[[1] * len(text)]), 1)


NASTY = {
    "empty": "",
    "one_megabyte": "<reasoning>\n" + "The number 7 is prime. " * 45_000 + "\n</reasoning>\n<answer>\n7\n</answer>",
    "binary_junk": bytes(range(256)).decode("latin-1") * 40,
    "nan_strings": "<answer>NaN</answer> nan inf -inf 1e999999",
    "unbalanced": "<answer><reasoning></answer></reasoning><answer>" * 50,
    "deep_latex": "<answer>$" + "\\frac{1}{" * 300 + "2" + "}" * 300 + "$</answer>",
    "unbalanced_boxed": "\\boxed{" * 1000,
    "huge_number": "<answer>" + "9" * 5000 + "</answer>",
    "many_tags": "</reasoning>" * 80_000,
}


@pytest.mark.parametrize("case", NASTY)
def test_nasty_inputs(case):
    text = NASTY[case]
    start = time.perf_counter()
    for fn in FUNCS.values():
        check(fn([text, [{"role": "assistant", "content": text}]], answer=["7", "7"], completion_ids=[[1], [1]]), 2)
    assert time.perf_counter() - start < 15, f"{case} took {time.perf_counter() - start:.1f}s"


def test_one_megabyte_correct_answer_still_scores():
    assert FUNCS["correctness"]([NASTY["one_megabyte"]], answer=["7"]) == [2.0]
