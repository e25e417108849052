"""The rewards run unchanged inside TRL's own reward step (``GRPOTrainer._calculate_rewards``, trl 1.16).

No model is needed: the method is called on a stand-in object carrying just the attributes it
reads, so the rewards receive exactly the keywords, column batching and None->NaN handling of a
real training step. The full TRL training run lives in the lead's slow tests.

Run: pytest tests/test_rewards_trl.py -q
"""

import math
import os
from types import SimpleNamespace

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
trl = pytest.importorskip("trl")

import rewards  # noqa: E402

GOOD = "<reasoning>\n6 * 3 = 18\n</reasoning>\n<answer>\n18\n</answer>\n"
COURSE = ["xml_count", "soft_format", "strict_format", "integer_answer", "correctness"]


def trainer_stub(reward_funcs):
    from accelerate import Accelerator
    from transformers import TrainerState
    from trl.trainer.utils import get_callable_name

    return SimpleNamespace(
        accelerator=Accelerator(cpu=True), reward_funcs=reward_funcs,
        reward_processing_classes=[None] * len(reward_funcs),
        reward_func_names=[get_callable_name(f) for f in reward_funcs], state=TrainerState(),
        args=SimpleNamespace(report_to=[]), _log_completion_extra=lambda *a, **k: None,
        _log_metric=lambda *a, **k: None, environments=None)


def calculate(reward_funcs, completions, answers):
    from trl import GRPOTrainer

    prompt = [{"role": "system", "content": "sys"}, {"role": "user", "content": "6*3?"}]
    inputs = [{"prompt": prompt, "answer": a, "question": "6*3?"} for a in answers]
    prompts = [prompt] * len(completions)
    ids = [[1] * len(rewards.completion_text(c)) for c in completions]
    stub = trainer_stub(reward_funcs)
    return GRPOTrainer._calculate_rewards(stub, inputs, prompts, completions, ids), stub.reward_func_names


@pytest.mark.parametrize("wrap", [False, True])
def test_course_five_inside_trl(wrap):
    funcs = [rewards.checked(rewards.get(n)) if wrap else rewards.get(n) for n in COURSE]
    completions = [[{"role": "assistant", "content": GOOD}], [{"role": "assistant", "content": "no idea"}]]
    table, names = calculate(funcs, completions, ["18", "18"])
    assert names == ["xmlcount_reward", "soft_format_reward", "strict_format_reward", "int_reward",
                     "accuracy_reward"]
    assert table.tolist() == [[0.5, 0.5, 0.5, 0.5, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0]]


def test_none_becomes_nan_and_tokens_use_completion_ids():
    funcs = [rewards.get("correctness"), rewards.get("length", ideal=4, unit="tokens")]
    table, _ = calculate(funcs, ["<answer>1</answer>", "abc"], [None, "1"])
    assert math.isnan(table[0, 0]) and table[1, 0] == 0.0
    assert table[:, 1].tolist() == [-14.0, -1.0]


def test_broken_user_reward_stops_with_its_name():
    def divides(completions, **kwargs):
        return [1.0 / len(rewards.completion_text(c)) for c in completions]

    with pytest.raises(rewards.RewardError, match=r"'divides' raised ZeroDivisionError.*completion #1: ''"):
        calculate([rewards.checked(divides)], ["abc", ""], ["1", "1"])


def test_group_length_inside_trl_gets_prompts():
    """TRL passes every completion's prompt, which is what groups them (here: one prompt, one group)."""
    fn = rewards.get("group_length")
    completions = [[{"role": "assistant", "content": t}] for t in ("<answer>18</answer>", "so... <answer>18</answer>",
                                                                    "<answer>17</answer>")]
    table, names = calculate([rewards.checked(fn)], completions, ["18"] * 3)
    assert names == ["len_reward"] and table[:, 0].tolist() == [0.5, -0.5, 0.0]
