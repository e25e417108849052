"""think_format's two layouts (whitespace-tolerant vs open-r1's exact regex) and code_format.

open-r1's regexes are used here as the oracle: ``rewards.formats.open_r1_layout`` must accept
exactly what ``re.match(pattern, text, re.DOTALL | re.MULTILINE)`` accepts, on hand-written
probes and on generated text.

Run: pytest tests/test_rewards_formats.py -q
"""

import pickle
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rewards
from rewards.formats import CodeFormat, ThinkFormat, open_r1_layout

FLAGS = re.DOTALL | re.MULTILINE


def open_r1_format(text):
    return re.match(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", text, FLAGS) is not None


def open_r1_code_format(text, language="python"):
    pattern = rf"^<think>\n.*?\n</think>\n<answer>\n.*?```{re.escape(language)}.*?```.*?\n</answer>$"
    return re.match(pattern, text, FLAGS) is not None


def conv(text):
    return [{"role": "assistant", "content": text}]


# Probe inputs: (text, whitespace-tolerant default, open-r1 exact).
PROBES = [
    ("<think>\nA\n</think>\n<answer>\nB\n</answer>", 1.0, 1.0),
    ("<think>A</think>\n<answer>B</answer>", 1.0, 0.0),
    ("<think>A</think><answer>B</answer>", 1.0, 0.0),
    ("<think>\nA\n</think>\n\n<answer>\nB\n</answer>", 1.0, 0.0),
    ("<think>\nA\n</think>\n<answer>\nB\n</answer>\n", 1.0, 1.0),
    ("<think>\nA\n</think>\n<answer>\nB\n</answer>\nmore text", 0.0, 1.0),
    ("<think>\nA\n</think>\n<answer>\nB\n</answer> more", 0.0, 0.0),
    ("<think>\n\n</think>\n<answer>\n\n</answer>", 1.0, 1.0),
    ("<think>\n</think>\n<answer>\n</answer>", 1.0, 0.0),
    ("<think>\nA\n<think>\nB\n</think>\n<answer>\nC\n</answer>", 0.0, 1.0),
    (" <think>\nA\n</think>\n<answer>\nB\n</answer>", 0.0, 0.0),
    ("<think>\nA\n</think>\n<answer>\nB\n</answer>\n<answer>\nC\n</answer>", 0.0, 1.0),
    ("<think>Only thinking</think>", 0.0, 0.0),
    ("<think>Wrong order</answer><answer>Wrong order</think>", 0.0, 0.0),
]


@pytest.mark.parametrize("text, default, exact", PROBES)
def test_think_format_probes(text, default, exact):
    assert rewards.get("think_format")([conv(text)]) == [default]
    assert rewards.get("think_format", exact_open_r1=True)([conv(text)]) == [exact]
    assert open_r1_format(text) == bool(exact)  # the table's third column is open-r1's own regex


def test_think_format_default_is_not_open_r1_and_says_so():
    assert "not* open-r1" in ThinkFormat.__doc__
    assert sum(d != e for _, d, e in PROBES) >= 7


def test_exact_open_r1_needs_answer():
    with pytest.raises(rewards.RewardConfigError, match="require_answer"):
        ThinkFormat(exact_open_r1=True, require_answer=False)


def test_exact_open_r1_custom_tags():
    fn = ThinkFormat(exact_open_r1=True, reasoning_tag="reasoning")
    assert fn(["<reasoning>\nr\n</reasoning>\n<answer>\n4\n</answer>", "<think>\nr\n</think>\n<answer>\n4\n</answer>"]) \
        == [1.0, 0.0]


# ---------------------------------------------------------------- code_format: open-r1's own cases
GOOD_PY = ("<think>\nLet's solve this\nStep 1: First step\n</think>\n<answer>\n```python\ndef hello():\n"
           "    print('world')\n```\n</answer>")
GOOD_JS = "<think>\nAnalysis\n</think>\n<answer>\n```javascript\nconsole.log('hello');\n```\n</answer>"


@pytest.mark.parametrize("text, language, expected", [
    (GOOD_PY, "python", 1.0),
    (GOOD_JS, "javascript", 1.0),
    (GOOD_JS, "python", 0.0),
    ("<think>\nHere's an example:\n```python\nx = 1\n```\nNow the solution:\n</think>\n<answer>\n```python\n"
     "def solution():\n    return 42\n```\n</answer>", "python", 1.0),
    ("<think>\nanalysis\n</think>\n<answer>\n```python\nclass S:\n    def __init__(self):\n        self.v = 42\n"
     "        \n    def get(self):\n        return self.v\n```\n</answer>", "python", 1.0),
    ("```python\ndef hello():\n    print('world')\n```", "python", 0.0),  # no tags
    ("<think>Some thinking</think><answer>Just plain text</answer>", "python", 0.0),
    ("<think>Analysis</think><answer>```javascript\nconsole.log('hello');\n```</answer>", "python", 0.0),
    ("<think>Analysis</think><answer>```\ndef hello(): pass\n```</answer>", "python", 0.0),  # no language
    ("<answer>```python\ndef hello(): pass\n```</answer><think>Analysis</think>", "python", 0.0),  # order
    # the block only in the reasoning, or left open, does not count
    ("<think>\n```python\nx = 1\n```\n</think>\n<answer>\nx is 1\n</answer>", "python", 0.0),
    ("<think>\nr\n</think>\n<answer>\n```python\nx = 1\n</answer>", "python", 0.0),
    (GOOD_PY.replace("python", "python3"), "python", 1.0),  # prefix, as open-r1's regex
    (GOOD_PY.replace("python", "cpp"), "c++", 0.0),
    (GOOD_PY.replace("python", "c++"), "c++", 1.0),  # taken literally (open-r1 would build a bad regex)
])
def test_code_format(text, language, expected):
    fn = rewards.get("code_format", language=language)
    assert fn([conv(text)]) == [expected]
    assert open_r1_code_format(text, language) == bool(expected)


def test_code_format_params_and_pickle():
    fn = CodeFormat(language="javascript", value=0.5, name="js_format")
    clone = pickle.loads(pickle.dumps(fn))
    assert clone.__name__ == "js_format" and clone([GOOD_JS]) == [0.5]
    with pytest.raises(rewards.RewardConfigError, match="fence tag"):
        CodeFormat(language="python ```")


# ---------------------------------------------------------------- the linear matcher equals the regex
PIECES = ["<think>", "</think>", "<answer>", "</answer>", "\n", " ", "x", "```", "```python", "python", "`"]
texts = st.lists(st.sampled_from(PIECES), max_size=24).map("".join)


@settings(max_examples=400, deadline=None, database=None)
@given(texts)
def test_matcher_equals_open_r1_regex(text):
    assert open_r1_layout(text) == open_r1_format(text)
    assert open_r1_layout(text, fence="python") == open_r1_code_format(text)


def test_adversarial_repeats_are_linear():
    text = "<think>\n" + "\n</think>\n<answer>\n```python" * 20_000 + "\n</answer>x" * 20_000
    start = time.perf_counter()
    for fn in (ThinkFormat(exact_open_r1=True), CodeFormat()):
        assert fn([text]) == [0.0]
    assert time.perf_counter() - start < 2.0
