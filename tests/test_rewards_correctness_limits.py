"""correctness under a time limit in any thread: deep nesting is refused before parsing, and off the
main thread (no SIGALRM there) math-verify runs in a worker process that is killed at the limit.

Run: pytest tests/test_rewards_correctness_limits.py -q
"""

import threading
import time

import pytest

from rewards.correctness import MAX_NESTING, Correctness, answers_match, nesting_depth


def in_thread(fn, *args):
    """``fn(*args)`` in another thread; returns (value, seconds)."""
    out = {}

    def work():
        start = time.monotonic()
        out["value"] = fn(*args)
        out["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive()
    return out["value"], out["seconds"]


@pytest.fixture(scope="module")
def warm_worker():
    """Start the worker once (a second or more of sympy import), outside the timed comparisons."""
    assert in_thread(answers_match, "\\frac{36}{2}", "18", 60)[0] is True


def test_nesting_depth():
    assert nesting_depth("5") == 0 and nesting_depth("\\frac{\\sqrt{3}}{2}") == 2 and nesting_depth("[0,1)") == 1
    assert nesting_depth("(" * 45 + "5" + ")" * 45) == 45 and nesting_depth(")))(") == 1


@pytest.mark.parametrize("where", ["main thread", "other thread"])
def test_45_nested_parentheses_score_wrong_at_once(where):
    """The issue's probe: 7.5 s off the main thread (and scored right) before the nesting cap."""
    answer = "(" * 45 + "5" + ")" * 45
    fn = Correctness(timeout_seconds=0.5)
    if where == "main thread":
        start = time.monotonic()
        assert fn([f"<answer>{answer}</answer>"], answer=["5"]) == [0.0]
        assert time.monotonic() - start < 0.5
    else:
        value, seconds = in_thread(lambda: fn([f"<answer>{answer}</answer>"], answer=["5"]))
        assert value == [0.0] and seconds < 0.5


def test_off_the_main_thread_a_slow_answer_stops_at_the_limit(warm_worker):
    """Ten levels of braces (allowed by the cap) take seconds in math-verify; the worker is killed at 0.2 s."""
    answer = "{" * MAX_NESTING + "5" + "}" * MAX_NESTING
    value, seconds = in_thread(answers_match, answer, "5", 0.2)
    assert value is False and seconds < 0.2 + 1.0  # limit plus IPC and the kill on a loaded machine
    # the next comparison gets a fresh worker and the right verdict
    assert in_thread(answers_match, "((5))", "5", 60)[0] is True
    assert in_thread(answers_match, "\\frac{1}{3}", "0.5", 60)[0] is False


def test_in_the_main_thread_a_slow_answer_stops_near_the_limit():
    answer = "{" * MAX_NESTING + "5" + "}" * MAX_NESTING
    answers_match("\\frac{1}{2}", "0.5", 60)  # math-verify imported outside the limit
    start = time.monotonic()
    assert answers_match(answer, "5", 0.2) is False
    assert time.monotonic() - start < 0.2 + 1.0


def test_worker_verdicts_match_the_main_threads(warm_worker):
    cases = [("\\frac{36}{2}", "18"), ("x^2+1", "$x^2+1$"), ("3, 5", "5"), ("25\\%", "0.25"), ("18 dollars", "18")]
    for predicted, gold in cases:
        assert in_thread(answers_match, predicted, gold, 30)[0] == answers_match(predicted, gold, 30), predicted
