"""Pluggable reward functions for GRPO, with a lazy registry. No torch, no grpo imports.

A reward has TRL's signature ``fn(completions, prompts=None, **columns) -> list[float | None]``
(``None`` = not applicable) and a ``__name__`` that names its logged metric. Build one by name::

    import rewards
    rewards.names()                              # what exists
    fn = rewards.get("correctness", correct=1.0)  # parameterised factory
    fn = rewards.resolve("my_rewards.py:brevity") # your own file
    rewards.call_reward(fn, completions, prompts, answer=answers)  # validated call
    trainer_funcs = [rewards.checked(fn)]        # same, as a reward to hand to a trainer
    rewards.is_group_aware(fn)                   # True only for rewards defined per prompt group

The guide (writing, testing, pitfalls, the names table) is ``rewards/README.md``; the CLI is
``grpo rewards list`` / ``grpo rewards try``.
"""

from rewards.calling import call_reward, checked, reward_name
from rewards.errors import RewardConfigError, RewardError, UnknownRewardError
from rewards.groups import group_indices, is_group_aware
from rewards.registry import describe, get, names, register, resolve
from rewards.text import completion_text, extract_answer

__all__ = [
    "RewardConfigError",
    "RewardError",
    "UnknownRewardError",
    "call_reward",
    "checked",
    "completion_text",
    "describe",
    "extract_answer",
    "get",
    "group_indices",
    "is_group_aware",
    "names",
    "register",
    "resolve",
    "reward_name",
]
