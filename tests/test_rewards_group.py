"""The group-aware contract and Kimi k1.5's length reward (``group_length`` / ``len_reward``).

Run: pytest tests/test_rewards_group.py -q
"""

import functools
import pickle

import pytest

import rewards
from rewards.length import GroupLength

RIGHT = "\\boxed{\\frac{63}{400}}"
WRONG = "\\boxed{\\frac{64}{400}}"
GOLD = "\\frac{63}{400}"


def conv(text):
    return [{"role": "assistant", "content": text}]


def score(texts, prompts=None, golds=None, **kwargs):
    golds = golds or [GOLD] * len(texts)
    return GroupLength(column="solution", **kwargs)([conv(t) for t in texts], prompts=prompts, solution=golds)


# ---------------------------------------------------------------- open-r1's len_reward cases (one prompt)
def test_same_length_is_zero():
    assert score([RIGHT, WRONG]) == [0.0, 0.0]


def test_correct_shorter_gets_half():
    out = score([RIGHT, RIGHT + "  " + "x" * 10])
    assert out == [0.5, -0.5]


def test_wrong_never_positive_and_shorter_is_better():
    out = score([WRONG, WRONG + "  " + "x" * 10])
    assert out == [0.0, -0.5]


def test_mixed_correctness():
    long = "  " + "x" * 10
    r_short, r_long, w_short, w_long = score([RIGHT, RIGHT + long, WRONG, WRONG + long])
    assert r_short == 0.5 and r_long == -0.5 and w_short == 0.0 and w_long == -0.5
    assert r_short > r_long and w_short > w_long and w_short > r_long


def test_middle_lengths_interpolate():
    out = score([RIGHT, RIGHT + "x" * 10, RIGHT + "x" * 20, WRONG + "x" * 5])
    assert out == [0.5, 0.0, -0.5, 0.0]  # the wrong one: lambda 0.25 -> min(0, 0.25)


# ---------------------------------------------------------------- groups come from `prompts`
def test_each_prompt_is_its_own_group():
    texts = [RIGHT, "\\boxed{7}", RIGHT + "x" * 10, "so... \\boxed{7}" + "y" * 40]
    prompts = ["q1", "q2", "q1", "q2"]
    golds = [GOLD, "7", GOLD, "7"]
    together = score(texts, prompts, golds)
    alone = score(texts[0::2], prompts[0::2], golds[0::2]) + score(texts[1::2], prompts[1::2], golds[1::2])
    assert together == [alone[0], alone[2], alone[1], alone[3]] == [0.5, 0.5, -0.5, -0.5]


def test_batch_relative_would_differ():
    """open-r1 normalises over the whole batch; per prompt, q2's long answers do not lower q1's scores."""
    texts = [RIGHT, RIGHT + "x" * 4, "\\boxed{7}" + "y" * 200]
    assert score(texts, ["q1", "q1", "q2"], [GOLD, GOLD, "7"]) == [0.5, -0.5, 0.0]
    assert score(texts, None, [GOLD, GOLD, "7"])[:2] != [0.5, -0.5]  # no prompts: one group


def test_conversational_prompts_group_by_whole_message_list():
    sys_a = [{"role": "system", "content": "A"}, {"role": "user", "content": "q"}]
    sys_b = [{"role": "system", "content": "B"}, {"role": "user", "content": "q"}]
    out = score([RIGHT, RIGHT + "xx", RIGHT + "xxxx"], prompts=[sys_a, sys_a, sys_b])
    assert out == [0.5, -0.5, 0.0]


def test_split_group_is_scored_part_by_part():
    texts = [RIGHT + "x" * n for n in (0, 10, 20, 30)]
    whole = score(texts, ["q"] * 4)
    first, second = score(texts[:2], ["q"] * 2), score(texts[2:], ["q"] * 2)
    assert whole == [0.5, pytest.approx(1 / 6), pytest.approx(-1 / 6), -0.5]
    assert first + second == [0.5, -0.5, 0.5, -0.5]  # documented: each part is its own group
    assert score(texts[:1], ["q"]) == [0.0]  # a one-completion part


def test_unparsable_gold_is_none_but_counts_for_length():
    longest = RIGHT + "z" * 30  # its gold is empty: None, but it still sets the group's max length
    out = score([RIGHT, longest, RIGHT + "x" * 10], ["q"] * 3, [GOLD, "", GOLD])
    assert out[1] is None and out[0] == 0.5 and out[2] == pytest.approx(0.5 - 10 / 30)


def test_tokens_from_completion_ids():
    fn = GroupLength(unit="tokens", column="solution")
    out = fn([RIGHT, RIGHT], prompts=["q", "q"], solution=[GOLD, GOLD], completion_ids=[[1] * 5, [1] * 9])
    assert out == [0.5, -0.5]


@pytest.mark.parametrize("texts", [[], [""], ["", ""], ["\x00" * 5, "𝟙" * 3, None]])
def test_odd_input(texts):
    out = GroupLength()(texts, prompts=["p"] * len(texts), answer=["18"] * len(texts))
    assert len(out) == len(texts) and all(v is None or -0.5 <= v <= 0.5 for v in out)


# ---------------------------------------------------------------- the explicit marker
def test_group_aware_marker_survives_wrapping():
    fn = rewards.get("group_length")
    assert fn.__name__ == "len_reward" and rewards.is_group_aware(fn)
    assert rewards.is_group_aware(rewards.checked(fn)) and rewards.checked(fn).group_aware is True
    assert rewards.is_group_aware(functools.partial(fn, column="answer"))
    assert rewards.describe("group_length")["group_aware"] is True
    clone = pickle.loads(pickle.dumps(fn))
    assert clone.group_aware and clone(["\\boxed{1}", "so \\boxed{1}"], prompts=["p", "p"], answer=["1", "1"]) \
        == [0.5, -0.5]


def test_no_other_builtin_is_group_aware():
    aware = {name for name in rewards.names() if rewards.describe(name)["group_aware"]}
    assert aware == {"len_reward"}


def test_group_indices_edge_cases():
    assert rewards.group_indices([], 0) == [] and rewards.group_indices(None, 0) == []
    assert rewards.group_indices(["a"], 2) == [[0, 1]]  # wrong length: one group
    unsortable = [{1: "a", "b": 2}, {1: "a", "b": 2}]
    assert rewards.group_indices(unsortable, 2) == [[0, 1]]


def test_list_marks_group_aware(capsys):
    from grpo.cli.rewards_cmd import main

    assert main(["list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("len_reward "))
    assert "[group-aware" in line
