"""Calling a reward under its contract: one finite float (or ``None``) per completion, or one clear error.

* ``call_reward(fn, completions, ...)`` runs any reward and turns a contract violation (an exception,
  the wrong count, a non-number, an infinite value) into a :class:`~rewards.errors.RewardError` that
  names the reward and the completion that triggers it; ``NaN`` reads as ``None``, as in TRL.
* ``checked(fn)`` wraps a reward so every call goes through ``call_reward``: what to hand a trainer.
* ``reward_name(fn)`` is the metric name TRL logs for a reward.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from collections.abc import Callable
from typing import Any

from rewards.errors import RewardError, log_once
from rewards.groups import is_group_aware
from rewards.text import completion_text

logger = logging.getLogger(__name__)

__all__ = ["call_reward", "checked", "Checked", "reward_name"]


def reward_name(fn: Callable) -> str:
    """The metric name TRL would use: ``__name__``, unwrapping ``functools.partial``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__name__", type(fn).__name__)


def _excerpt(completion: Any, limit: int = 160) -> str:
    text = completion_text(completion)
    return repr(text[:limit]) + (f" ... ({len(text)} chars)" if len(text) > limit else "")


def _find_offender(fn: Callable, completions: list, prompts, columns: dict) -> int | None:
    """Re-run ``fn`` on one completion at a time; the index of the first that raises, if any."""
    n = len(completions)
    for i in range(n):
        one = {k: ([v[i]] if isinstance(v, (list, tuple)) and len(v) == n else v) for k, v in columns.items()}
        one_prompt = [prompts[i]] if isinstance(prompts, (list, tuple)) and len(prompts) == n else prompts
        try:
            fn(completions=[completions[i]], prompts=one_prompt, **one)
        except Exception:  # we are looking for exactly this
            return i
    return None


def call_reward(fn: Callable, completions: list, prompts: list | None = None, **columns) -> list[float | None]:
    """Call a reward and check its contract: one finite float (or ``None``) per completion.

    ``NaN`` is read as ``None`` ("not applicable", as TRL does), logged once. A raised exception
    is re-run one completion at a time to name the completion that triggers it.

    Args:
        fn: the reward (TRL signature).
        completions: the batch, standard or conversational.
        prompts: the matching prompts.
        columns: dataset columns (batched) and extras such as ``completion_ids``, ``trainer_state``.

    Returns:
        ``list[float | None]`` of ``len(completions)``.

    Raises:
        RewardError: the reward raised, returned a non-list, the wrong count, a non-number or
            an infinite value; the message names the reward (and the completion when known).

    >>> call_reward(lambda completions, **kw: [1, None], ["a", "b"])
    [1.0, None]
    """
    name = reward_name(fn)
    try:
        out = fn(completions=completions, prompts=prompts, **columns)
    except RewardError:
        raise
    except TypeError as err:
        if "unexpected keyword argument" not in str(err) or _accepts_kwargs(fn):
            raise _raised(fn, name, err, completions, prompts, columns) from err
        raise RewardError(f"reward {name!r} does not accept the keyword arguments it is called with ({err}); give it "
                          f"a `**kwargs` parameter: TRL calls every reward with prompts, completions, "
                          f"completion_ids, trainer_state and each dataset column") from err
    except Exception as err:  # user code: anything it raises becomes one clear message
        raise _raised(fn, name, err, completions, prompts, columns) from err
    return _checked(name, out, completions)


def _accepts_kwargs(fn) -> bool:
    """Whether ``fn`` (or its ``__call__``) has a ``**kwargs`` parameter; True when it cannot be inspected."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _raised(fn, name: str, err: Exception, completions, prompts, columns) -> RewardError:
    """The :class:`RewardError` for a reward that raised ``err``, naming the completion that reproduces it."""
    index = _find_offender(fn, completions, prompts, columns)
    where = (f"on completion #{index}: {_excerpt(completions[index])}" if index is not None
             else f"on a batch of {len(completions)} completions (no single completion reproduces it)")
    return RewardError(f"reward {name!r} raised {type(err).__name__}: {err} {where}; "
                       f"a reward should score odd completions (or return None), not raise")


def _checked(name: str, out, completions) -> list:
    """The reward's output ``out`` checked against the contract (see :func:`call_reward`)."""
    if hasattr(out, "tolist") and not isinstance(out, (list, tuple)):
        out = out.tolist()  # numpy array / torch tensor
    if not isinstance(out, (list, tuple)):
        raise RewardError(f"reward {name!r} returned {type(out).__name__}; it must return a list with one value "
                          f"per completion")
    if len(out) != len(completions):
        raise RewardError(f"reward {name!r} returned {len(out)} values for {len(completions)} completions; "
                          f"return exactly one value (or None) per completion")
    values: list[float | None] = []
    for i, value in enumerate(out):
        if value is None:
            values.append(None)
            continue
        try:
            if isinstance(value, (str, bytes)):
                raise TypeError
            number = float(value)
        except (TypeError, ValueError):
            raise RewardError(f"reward {name!r} returned {type(value).__name__} {repr(value)[:60]} for completion "
                              f"#{i}: {_excerpt(completions[i])}; rewards must be numbers or None") from None
        if math.isnan(number):
            log_once(logger, f"nan-{name}", "reward %r returned NaN; treated as None (not applicable)", name)
            values.append(None)
        elif math.isinf(number):
            raise RewardError(f"reward {name!r} returned {number} for completion #{i}: {_excerpt(completions[i])}; "
                              f"rewards must be finite")
        else:
            values.append(number)
    return values


class Checked:
    """A reward wrapped in :func:`call_reward`: same ``__name__``, contract enforced on every call.

    Hand these to a trainer (``GRPOTrainer(reward_funcs=[checked(f) for f in funcs])``) so a
    broken reward stops the run with one clear :class:`RewardError` instead of a traceback
    from deep inside the trainer. Picklable when the wrapped reward is.

    >>> fn = checked(lambda completions, **kw: [1.0] * len(completions))
    >>> fn(["a", "b"]), fn.__name__
    ([1.0, 1.0], '<lambda>')
    """

    def __init__(self, fn: Callable):
        self.__wrapped__ = fn
        self.__name__ = reward_name(fn)
        self.group_aware = is_group_aware(fn)  # the contract marker survives the wrapping

    def __call__(self, completions: list, prompts: list | None = None, **columns) -> list[float | None]:
        return call_reward(self.__wrapped__, completions, prompts, **columns)


def checked(fn: Callable) -> Checked:
    """Wrap ``fn`` so every call is validated by :func:`call_reward` (idempotent)."""
    return fn if isinstance(fn, Checked) else Checked(fn)
