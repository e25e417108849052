"""The group-aware reward contract: which completions of one call belong to the same prompt.

Most rewards score each completion on its own. A few are *defined* per group -- the G
completions GRPO samples for one prompt -- such as Kimi k1.5's length reward, which compares a
completion with the shortest and longest answer to the same question. Such a reward:

* sets the class attribute ``group_aware = True`` (checked by :func:`is_group_aware`, shown by
  ``grpo rewards list``), so that it is explicit, not an accident;
* groups the completions of one call by the ``prompts`` keyword (TRL and the native trainer pass
  the prompt of every completion): equal prompts = one group (:func:`group_indices`);
* scores each call's groups from that call alone. When a group is split across calls (with
  several processes TRL scores each process's share of the generation batch, and a group may
  straddle two processes), each part is scored as a group of its own; a one-completion part gets
  that reward's single-member value (0 for the length reward).

See "Group-aware rewards" in ``rewards/README.md``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

__all__ = ["group_indices", "is_group_aware"]


def _key(prompt: Any) -> str:
    if isinstance(prompt, str):
        return "s" + prompt
    try:  # conversational prompts: lists of message dicts
        return "j" + json.dumps(prompt, sort_keys=True, default=str)
    except (TypeError, ValueError):  # unsortable keys, circular structures
        return "r" + repr(prompt)


def group_indices(prompts: list | None, count: int) -> list[list[int]]:
    """Indices of the completions of each prompt, groups in order of first appearance.

    Args:
        prompts: the ``prompts`` keyword of a reward call (one per completion), or ``None``.
        count: the number of completions.

    Returns:
        A list of index lists covering ``range(count)``. Without usable prompts (``None``, or
        not one per completion) the whole call is one group.

    >>> group_indices(["a", "b", "a", "b"], 4)
    [[0, 2], [1, 3]]
    >>> group_indices([[{"role": "user", "content": "q"}]] * 2, 2), group_indices(None, 3)
    ([[0, 1]], [[0, 1, 2]])
    """
    if not isinstance(prompts, (list, tuple)) or len(prompts) != count:
        return [list(range(count))] if count else []
    groups: dict[str, list[int]] = {}
    for index, prompt in enumerate(prompts):
        groups.setdefault(_key(prompt), []).append(index)
    return list(groups.values())


def is_group_aware(fn: Callable) -> bool:
    """Whether a reward (or a partial / :func:`rewards.checked` wrapper of one) declares ``group_aware``.

    >>> import rewards
    >>> is_group_aware(rewards.get("group_length")), is_group_aware(rewards.get("length"))
    (True, False)
    """
    for _ in range(32):  # wrappers of wrappers; the bound guards against a self-referencing __wrapped__
        if getattr(fn, "group_aware", False) is True:
            return True
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif getattr(fn, "__wrapped__", None) is not None:
            fn = fn.__wrapped__
        else:
            return False
    return False
