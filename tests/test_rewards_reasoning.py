"""rewards.reasoning: the placeholder-reasoning definition on hand-written completions, verified arithmetic
steps, and the format rewards' ``require_reasoning`` gate.

Run: pytest tests/test_rewards_reasoning.py -q
"""

import pickle

import pytest

import rewards
from rewards.reasoning import (
    ArithmeticSteps,
    arithmetic_steps,
    is_placeholder_reasoning,
    placeholder_reasoning_rate,
    reasoning_block,
)


def formatted(reasoning: str, answer: str = "18") -> str:
    return f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>\n"


# The demo's collapsed answers (eval_after.json of the 20-step course configuration) and their neighbours.
PLACEHOLDERS = {
    "the prompt's placeholder": formatted("..."),
    "empty": "<reasoning>\n</reasoning>\n<answer>\n2\n</answer>",
    "whitespace": formatted("   \n\t "),
    "unicode ellipsis": formatted("\u2026"),
    "spaced dots": formatted(". . . ."),
    "prose without numbers or operations": formatted("Let me think about this problem carefully."),
    "placeholder, no closing tag, then the answer": "<reasoning>\n...\n<answer>\n2\n</answer>",
}
REAL = {
    "an equation": formatted("6 * 3 = 18"),
    "a number in words": formatted("She has three boxes of six eggs."),
    "one digit": formatted("The answer is 18."),
    "an operation word": formatted("Multiply the eggs by the price."),
    "subtraction between numbers": formatted("20 - 2 is 18"),
    "reasoning cut at the token budget": "<reasoning>\nJanet's ducks lay 16 eggs per day. She eats 3",
}


@pytest.mark.parametrize("name", PLACEHOLDERS)
def test_placeholder_blocks(name):
    assert is_placeholder_reasoning(PLACEHOLDERS[name]), name


@pytest.mark.parametrize("name", REAL)
def test_real_reasoning_is_not_a_placeholder(name):
    assert not is_placeholder_reasoning(REAL[name]), name


def test_no_reasoning_tag_is_not_a_placeholder():
    # the format rate counts these; the placeholder rate is about template copying
    assert not is_placeholder_reasoning("<answer>\n2\n</answer>")
    assert not is_placeholder_reasoning("The answer is 2.")
    assert not is_placeholder_reasoning("")


def test_hyphenated_words_are_not_an_operation():
    assert is_placeholder_reasoning(formatted("A well-known grade-school problem."))


def test_placeholder_parameters_and_conversational_input():
    text = formatted("your working here")
    assert is_placeholder_reasoning(text)  # no number, no operation
    assert is_placeholder_reasoning(formatted("TODO 1"), placeholder="TODO 1")  # the prompt's own placeholder
    assert is_placeholder_reasoning("<think>\n...\n</think>", reasoning_tag="think")
    assert is_placeholder_reasoning([{"role": "assistant", "content": formatted("...")}])


def test_placeholder_rate():
    completions = list(PLACEHOLDERS.values()) + list(REAL.values())
    assert placeholder_reasoning_rate(completions) == pytest.approx(len(PLACEHOLDERS) / len(completions))
    assert placeholder_reasoning_rate([]) == 0.0


def test_reasoning_block_ends():
    assert reasoning_block("<reasoning>a</reasoning><answer>b</answer>") == "a"
    assert reasoning_block("<reasoning>a<answer>b</answer>") == "a"  # no closing tag: the answer ends it
    assert reasoning_block("<reasoning>a") == "a"
    assert reasoning_block("no tag") is None


# ---------------------------------------------------------------------------- arithmetic steps

QUESTION = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."
SOLUTION = "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May."


def test_arithmetic_steps_on_a_real_solution():
    assert arithmetic_steps(formatted(SOLUTION, "72"), QUESTION) == (2, 2)


@pytest.mark.parametrize("step, true", [
    ("3 + 4 = 7", True), ("3 + 4 = 8", False), ("12 - 5 = 7", True), ("6 * 7 = 42", True), ("6 x 7 = 42", True),
    ("6 \u00d7 7 = 42", True), ("84 / 2 = 42", True), ("84 \u00f7 2 = 42", True), ("2 + 3 * 4 = 14", True),
    ("2 + 3 * 4 = 20", False), ("10 / 3 = 3.33", True), ("10 / 3 = 3.3", True), ("10 / 3 = 3.4", False),
    ("$1,200 + $300 = $1,500", True), ("5 / 0 = 0", False), ("1.5 * 4 = 6", True),
])
def test_each_step_is_recomputed(step, true):
    assert arithmetic_steps(formatted(step), None) == (int(true), 1)


def test_steps_must_be_grounded_and_distinct():
    question = "Tom has 5 apples and buys 3 more."
    # 5 + 3 = 8 uses the question's numbers; 8 * 2 = 16 uses that result; 1 + 1 = 2 uses neither
    assert arithmetic_steps(formatted("5 + 3 = 8\n8 * 2 = 16\n1 + 1 = 2"), question) == (2, 3)
    assert arithmetic_steps(formatted("5 + 3 = 8\n5 + 3 = 8\n5+3 = 8"), question) == (1, 3)  # repeats count once
    assert arithmetic_steps(formatted("1 + 1 = 2"), None) == (1, 1)  # no question: no grounding check


def test_steps_outside_the_reasoning_do_not_count():
    assert arithmetic_steps("5 + 3 = 8 <answer>8</answer>", "5 and 3") == (0, 0)
    assert arithmetic_steps("<reasoning>\n...\n</reasoning>\n<answer>\n5 + 3 = 8\n</answer>", "5 and 3") == (0, 0)


def test_arithmetic_steps_reward():
    reward = rewards.get("arithmetic_steps")
    assert reward.__name__ == "arithmetic_steps_reward"
    prompts = [[{"role": "system", "content": "Respond 1 + 1 = 2"}, {"role": "user", "content": QUESTION}]] * 5
    completions = [formatted(SOLUTION + "\n72 * 2 = 144", "72"),   # 3 true steps: full credit
                   formatted(SOLUTION, "72"),                    # 2 of 3
                   formatted(SOLUTION + "\n72 * 2 = 150", "72"),  # a false step scales the score down
                   formatted("...", "72"),                        # the template: nothing to verify
                   "no reasoning 48/2 = 24"]
    scores = reward(completions, prompts=prompts)
    assert scores == pytest.approx([0.5, 0.5 * 2 / 3, 0.5 * 2 / 3 * 2 / 3, 0.0, 0.0])
    # the system prompt's numbers do not ground a step: only the user turn is the question
    assert reward([formatted("1 + 1 = 2")], prompts=prompts[:1]) == [0.0]
    assert pickle.loads(pickle.dumps(reward))([formatted(SOLUTION)], prompts=prompts[:1]) == scores[1:2]
    with pytest.raises(rewards.RewardConfigError, match="target"):
        rewards.get("arithmetic_steps", target=0)


def test_arithmetic_steps_is_linear_on_huge_input():
    import time

    text = "<reasoning>\n" + "1 + 1 = 2\n" * 100_000 + "</reasoning>"
    start = time.perf_counter()
    assert ArithmeticSteps()([text]) == [pytest.approx(0.5 / 3 * 1 / 64)]  # the first 64 steps: 1 distinct true
    assert time.perf_counter() - start < 2.0


# ---------------------------------------------------------------------------- the format rewards' gate


@pytest.mark.parametrize("name", ["xml_count", "soft_format", "strict_format"])
def test_require_reasoning_gate(name):
    course, gated = rewards.get(name), rewards.get(name, require_reasoning=True)
    copied, real = formatted("...", "2"), formatted("6 * 3 = 18")
    assert course([copied])[0] > 0  # the course pays for the copied template
    assert gated([copied]) == [0.0]
    assert gated([real]) == course([real]) and course([real])[0] > 0


# ---------------------------------------------------------------------------- the training log (TRL backend)


def test_trl_backend_logs_the_placeholder_rate_of_the_step(tmp_path):
    """TRL does not compute it: the metrics callback adds the rate of the batch the recorder kept."""
    from types import SimpleNamespace

    from grpo.runs.run_dir import MetricsLogger, SampleRecorder
    from grpo.training.trl_backend import _metrics_callback

    log = MetricsLogger(tmp_path)
    recorder = SampleRecorder(log)
    reward = recorder.wrap(rewards.get("soft_format"))
    reward([formatted("..."), formatted("6 * 3 = 18"), formatted(""), "18"], prompts=["q"] * 4)
    callback = _metrics_callback(log, recorder)
    state = SimpleNamespace(global_step=1, is_world_process_zero=True)
    callback.on_log(None, state, None, logs={"reward": 0.25})
    (line,) = log.read()
    assert line["completions/placeholder_reasoning_rate"] == 0.5 and line["step"] == 1
    assert (tmp_path / "samples.jsonl").exists() and not recorder.pending  # flushed after the line
