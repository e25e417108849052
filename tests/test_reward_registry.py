"""Registry: names, get with params, resolve specs, user registration, call_reward's contract checks.

Run: pytest tests/test_reward_registry.py -q
"""

import functools
import pickle
from pathlib import Path

import pytest

import rewards
from rewards import registry

FIXTURES = Path(__file__).parent / "fixtures" / "rewards"
USER_FILE = FIXTURES / "user_rewards.py"


@pytest.fixture
def clean_user_registry():
    saved = dict(registry._USER)
    yield
    registry._USER.clear()
    registry._USER.update(saved)


def test_names_include_course_five_and_families():
    expected = {"xmlcount_reward", "soft_format_reward", "strict_format_reward", "int_reward", "accuracy_reward",
                "length_reward", "cosine_scaled_reward", "repetition_penalty_reward", "reward_model_reward",
                "think_format_reward", "number_reward", "reasoning_steps_reward", "soft_overlong_punishment",
                "len_reward"}
    assert expected <= set(rewards.names())
    assert rewards.names() == sorted(rewards.names())
    assert not set(registry.ALIASES) & set(rewards.names())  # an alias is never a second registry name


def test_one_name_per_reward_and_the_old_names_as_aliases():
    """The registry name is the logged metric's name; every alias builds the same reward under that name."""
    for name in registry.BUILTIN:
        if name != "reward_model_reward":  # needs a model spec to build
            assert rewards.get(name).__name__ == name
    for alias, name in registry.ALIASES.items():
        assert name in registry.BUILTIN and alias in rewards.describe(name)["aliases"]
        assert rewards.describe(alias)["name"] == name
        if name != "reward_model_reward":
            fn = rewards.resolve(alias)
            assert fn.__name__ == name and type(fn) is type(rewards.get(name))
    # the GSM8K configs' names keep working, logged under TRL's / the registry's names
    course = ["xml_count", "soft_format", "strict_format", "integer_answer", "correctness", "arithmetic_steps"]
    assert [rewards.resolve(n).__name__ for n in course] == [
        "xmlcount_reward", "soft_format_reward", "strict_format_reward", "int_reward", "accuracy_reward",
        "arithmetic_steps_reward"]
    assert rewards.get("correctness", name="mine").__name__ == "mine"  # an explicit name= still wins
    assert rewards.get("overlong").__name__ == "soft_overlong_punishment"
    assert rewards.get("group_length").__name__ == "len_reward"


def test_issue_15_rewards_are_registered():
    names = {"group_length": "len_reward", "code_format": "code_format_reward", "code_execution": "code_reward",
             "repetition": "repetition_penalty_reward"}
    for name, metric in names.items():
        assert rewards.get(name).__name__ == metric and rewards.describe(name)["doc"]
    assert rewards.describe("repetition")["params"]["tokenizer"] == "whitespace"
    assert rewards.describe("code_format")["params"]["language"] == "python"


def test_get_passes_params():
    fn = rewards.get("length", ideal=3, unit="words", name="short_answer")
    assert fn.__name__ == "short_answer" and fn(["a b c d"]) == [-1.0]


def test_get_unknown_param_lists_accepted():
    with pytest.raises(rewards.RewardConfigError, match=r"bad parameters \['idael'\] \(accepted: ideal, min_len"):
        rewards.get("length", idael=3)


def test_unknown_name_lists_known_and_suggests():
    with pytest.raises(rewards.UnknownRewardError) as info:
        rewards.resolve("correctnes")
    message = str(info.value)
    assert "'correctnes'" in message and "did you mean 'correctness'" in message and "xml_count" in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, rewards.RewardError)


def test_resolve_file_function():
    fn = rewards.resolve(f"{USER_FILE}:brevity")
    assert fn.__name__ == "brevity" and fn(["short", "x" * 30]) == [1.0, 0.0]
    assert pickle.loads(pickle.dumps(fn))(["short"]) == [1.0]  # module registered in sys.modules


def test_resolve_file_factory_with_params():
    fn = rewards.resolve(f"{USER_FILE}:Keyword", word="thanks", value=2.0)
    assert fn.__name__ == "keyword_thanks_reward" and fn(["thanks!", "no"]) == [2.0, 0.0]


def test_resolve_module_function():
    fn = rewards.resolve("rewards.formats:ThinkFormat")
    assert fn.__name__ == "think_format_reward"


@pytest.mark.parametrize("spec, match", [
    ("missing_file.py:f", "does not exist"),
    (f"{USER_FILE}:nope", "has no attribute 'nope'.*brevity"),
    ("no_such_pkg.mod:f", "no module named 'no_such_pkg'"),
    (f"{USER_FILE}:1bad", "not a function name"),
])
def test_resolve_bad_specs(spec, match):
    with pytest.raises(rewards.UnknownRewardError, match=match):
        rewards.resolve(spec)


def test_resolve_file_that_fails_to_import(tmp_path):
    broken = tmp_path / "syntax_error.py"  # written here: a broken .py under tests/ would break doctest collection
    broken.write_text("def broken(:\n")
    with pytest.raises(rewards.RewardError, match="importing .*syntax_error.py failed: SyntaxError"):
        rewards.resolve(f"{broken}:broken")


def test_register_function_and_factory(clean_user_registry):
    @rewards.register("test_upper")
    def upper(completions, bonus=1.0, **kwargs):
        return [bonus if rewards.completion_text(c).isupper() else 0.0 for c in completions]

    assert rewards.get("test_upper")(["HI"]) == [1.0]
    bound = rewards.get("test_upper", bonus=3.0)
    assert isinstance(bound, functools.partial) and rewards.reward_name(bound) == "upper" and bound(["HI"]) == [3.0]

    @rewards.register("test_const")
    class Const:
        def __init__(self, value=0.25):
            self.value, self.__name__ = value, "const_reward"

        def __call__(self, completions, **kwargs):
            return [self.value] * len(completions)

    assert "test_const" in rewards.names()
    assert rewards.get("test_const", value=0.5)(["a", "b"]) == [0.5, 0.5]
    assert rewards.describe("test_const")["params"] == {"value": 0.25}


def test_register_refuses_clash(clean_user_registry):
    with pytest.raises(rewards.RewardConfigError, match="already registered"):
        rewards.register("correctness", lambda completions, **kw: [])
    rewards.register("test_twice", lambda completions, **kw: [])
    with pytest.raises(rewards.RewardConfigError, match="already registered"):
        rewards.register("test_twice", lambda completions, **kw: [1])
    rewards.register("test_twice", lambda completions, **kw: [1], overwrite=True)


def test_describe_builtin():
    info = rewards.describe("length")
    assert info["params"]["unit"] == "chars" and info["doc"] and info["source"] == "rewards.length:Length"


# ---------------------------------------------------------------- call_reward
def test_call_reward_names_function_and_offending_completion():
    fn = rewards.resolve(f"{USER_FILE}:explodes_on_empty")
    with pytest.raises(rewards.RewardError, match=r"'explodes_on_empty' raised ZeroDivisionError.*completion #2: ''"):
        rewards.call_reward(fn, ["a", "bb", "", "c"], answer=["1"] * 4)


def test_call_reward_batch_only_failure():
    def batch_only(completions, **kwargs):
        if len(completions) > 1:
            raise RuntimeError("batch too big")
        return [0.0]

    with pytest.raises(rewards.RewardError, match="no single completion reproduces it"):
        rewards.call_reward(batch_only, ["a", "b"])


@pytest.mark.parametrize("returned, match", [
    (None, "returned NoneType"),
    ([0.0], r"returned 1 values for 2 completions"),
    (["1", 0.0], "returned str"),
    ([float("inf"), 0.0], "returned inf .*must be finite"),
    ([[1.0], 0.0], "returned list"),
])
def test_call_reward_contract(returned, match):
    def bad(completions, **kwargs):
        return returned

    with pytest.raises(rewards.RewardError, match=f"'bad' {match}"):
        rewards.call_reward(bad, ["a", "b"])


def test_call_reward_wrong_count_from_file():
    with pytest.raises(rewards.RewardError, match="'wrong_count' returned 1 values for 2"):
        rewards.call_reward(rewards.resolve(f"{USER_FILE}:wrong_count"), ["a", "b"])


def test_call_reward_converts_types_and_nan():
    import numpy as np

    def mixed(completions, **kwargs):
        return np.array([1, float("nan"), True], dtype=float)

    assert rewards.call_reward(mixed, ["a", "b", "c"]) == [1.0, None, 1.0]


def test_call_reward_passes_columns_and_prompts():
    def echo(completions, prompts, answer, **kwargs):
        assert prompts == ["p1", "p2"] and "trainer_state" in kwargs
        return [float(a) for a in answer]

    assert rewards.call_reward(echo, ["a", "b"], ["p1", "p2"], answer=["1", "2"], trainer_state=None) == [1.0, 2.0]


def test_checked_wrapper_keeps_name_pickles_and_validates():
    fn = rewards.checked(rewards.get("correctness"))
    assert fn.__name__ == "accuracy_reward" and rewards.checked(fn) is fn
    assert pickle.loads(pickle.dumps(fn))(["<answer>1</answer>"], answer=["1"]) == [2.0]
    bad = rewards.checked(rewards.resolve(f"{USER_FILE}:wrong_count"))
    with pytest.raises(rewards.RewardError, match="'wrong_count' returned 1 values for 2"):
        bad(["a", "b"])


def test_reward_without_kwargs_is_told_to_accept_kwargs():
    def strict(completions, answer):  # no **kwargs: TRL's prompts / completion_ids / trainer_state break it
        return [1.0 for _ in completions]

    with pytest.raises(rewards.RewardError, match=r"reward 'strict' does not accept .* give it a `\*\*kwargs` parameter"):
        rewards.call_reward(strict, ["a"], ["p"], answer=["1"], trainer_state=None)


def test_reward_with_kwargs_raising_typeerror_is_still_named_by_completion():
    def buggy(completions, **kwargs):
        return [len(c) + "x" for c in completions]  # TypeError of its own, not a signature problem

    with pytest.raises(rewards.RewardError, match="raised TypeError.*on completion #0"):
        rewards.call_reward(buggy, ["a"])
