"""Diagnostics on the learning signal, shared by both backends.

GRPO learns only from groups whose rewards differ: a group where every completion gets the same
reward has zero advantage everywhere. TRL logs the fraction of such groups as
``frac_reward_zero_std``; when it stays at 1 the run is burning compute for nothing -- the most
common GRPO support question -- so we say so loudly, with the usual fixes.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

NO_SIGNAL_FIXES = (
    "every group's rewards tie (frac_reward_zero_std = 1): GRPO has nothing to learn from. Likely fixes: "
    "warm-start with SFT on the target format (warm_start: true), add partial-credit rewards "
    "(xml_count, soft_format), raise num_generations or temperature, or check the reward functions "
    "with `grpo rewards try`."
)


def warn_if_no_signal(history: list[dict], patience: int = 3) -> bool:
    """Log a warning when the last ``patience`` logged steps all had ``frac_reward_zero_std == 1``.

    Args:
        history: logged metric dicts, oldest first.
        patience: consecutive all-tied steps before warning (the warning repeats every ``patience`` steps).

    Returns:
        True when the warning was issued for this step.

    >>> warn_if_no_signal([{"frac_reward_zero_std": 1.0}] * 2)
    False
    >>> warn_if_no_signal([{"frac_reward_zero_std": 1.0}] * 3)
    True
    """
    recent = history[-patience:]
    if len(recent) < patience or len(history) % patience:
        return False
    if all(m.get("frac_reward_zero_std") == 1.0 for m in recent):
        logger.warning("No learning signal for %d logged steps: %s", len(recent), NO_SIGNAL_FIXES)
        return True
    return False
