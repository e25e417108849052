"""Exceptions raised by the rewards package, and a log-once helper.

Rewards never raise on a completion; these exceptions are for *configuration* mistakes (an
unknown reward name, a bad parameter, a missing dataset column) and for user rewards that
break the contract (raise, or return the wrong number of values) -- see
:func:`rewards.calling.call_reward`.

They deliberately do not subclass ``grpo.common.errors.UserError`` (``rewards`` must not import
``grpo``); the CLI catches :class:`RewardError` next to ``UserError``.
"""

from __future__ import annotations

import logging
import threading

_logged: set[tuple[str, str]] = set()
_logged_lock = threading.Lock()


class RewardError(Exception):
    """A reward is misconfigured or broke its contract; the message names the reward and the fix."""


class RewardConfigError(RewardError, ValueError):
    """A reward factory got a bad parameter (also a ``ValueError``, as TRL/open-r1 raise)."""


class UnknownRewardError(RewardError, ValueError):
    """A reward spec (registry name, ``file.py:func`` or ``pkg.mod:func``) cannot be resolved."""


def log_once(logger: logging.Logger, key: str, message: str, *args, level: int = logging.WARNING) -> None:
    """Log ``message`` the first time ``(logger, key)`` is seen in this process, then stay quiet.

    Rewards score thousands of completions per minute; a per-completion warning would drown
    the training log, so each distinct problem is reported once.
    """
    ident = (logger.name, key)
    with _logged_lock:
        if ident in _logged:
            return
        _logged.add(ident)
    logger.log(level, message + " (logged once)", *args)
