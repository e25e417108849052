"""Confidence intervals and tests for evaluation rates: Wilson, Newcombe's paired difference, exact McNemar.

Pure functions on counts and flags (no torch), used by :mod:`grpo.evaluation.evaluate` so that every accuracy
and format rate comes with its uncertainty, and a before/after comparison on the same problems
with a paired interval and a p-value. The binomial pieces come from scipy
(``scipy.stats.binomtest``); only Newcombe's combination of two Wilson intervals is written out.

Run the tests: ``pytest -q tests/test_stats.py``.
"""

from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (no continuity correction).

    Formula (Wilson 1927, "Probable inference, the law of succession, and statistical inference",
    JASA 22:209-212; Newcombe 1998, Stat Med 17:857-872, method 3), with p = k/n and z the
    ``(1 + confidence) / 2`` normal quantile::

        (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)

    computed by ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``.

    Args:
        successes: k, the number of successes, 0 <= k <= n.
        n: number of trials, >= 1.
        confidence: coverage of the two-sided interval, in (0, 1).

    Returns:
        ``(low, high)`` as fractions in [0, 1]; ``low == 0`` when k = 0 and ``high == 1`` when k = n.

    Raises:
        ValueError: n < 1 (no trials: the rate and its interval are undefined), k outside [0, n],
            or confidence outside (0, 1).
    """
    from scipy.stats import binomtest

    if n < 1:
        raise ValueError(f"wilson_interval needs n >= 1 trials, got n={n}: a rate of nothing has no interval")
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} must lie in [0, n={n}]")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must lie in (0, 1), e.g. 0.95")
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: an exact binomial test of c successes in b + c discordant pairs.

    Under "no change" each discordant pair is equally likely to go either way, so c ~ Binomial(b + c, 1/2)
    (McNemar 1947, Psychometrika 12:153-157; the exact form: Fagerland, Lydersen & Laake 2013,
    BMC Med Res Methodol 13:91, "the McNemar exact conditional test"). Computed by
    ``scipy.stats.binomtest(c, b + c, 0.5).pvalue``.

    Args:
        b: pairs right before and wrong after.
        c: pairs wrong before and right after.

    Returns:
        The p-value in [0, 1]; 1.0 when there are no discordant pairs (b + c = 0: no evidence of change).

    Raises:
        ValueError: a negative count.
    """
    from scipy.stats import binomtest

    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    return float(binomtest(int(c), int(b + c), 0.5).pvalue)


def _phi_corrected(both: int, b: int, c: int, neither: int) -> float:
    """Newcombe's (1998, paired paper, method 10) continuity-corrected phi of the paired 2×2 table.

    With A = both, B = b, C = c, D = neither and the margins E, F, G, H:
    phi = (AD - BC - n/2) / sqrt(EFGH) when AD - BC > n/2; 0 when 0 <= AD - BC <= n/2;
    (AD - BC) / sqrt(EFGH) when AD < BC; 0 when any margin is 0.
    """
    n = both + b + c + neither
    margins = (both + b) * (c + neither) * (both + c) * (b + neither)  # E·F·G·H
    if margins == 0:
        return 0.0
    cross = both * neither - b * c  # AD - BC
    if cross > n / 2:
        return (cross - n / 2) / math.sqrt(margins)
    if cross >= 0:
        return 0.0
    return cross / math.sqrt(margins)


def newcombe_paired_interval(both: int, b: int, c: int, neither: int,
                             confidence: float = 0.95) -> tuple[float, float]:
    """Interval for the paired difference p_after - p_before: Newcombe's hybrid score method 10.

    Newcombe 1998, "Improved confidence intervals for the difference between binomial proportions
    based on paired data", Stat Med 17:2635-2650, method 10 (also Fagerland, Lydersen & Laake 2017,
    "Statistical Analysis of Contingency Tables", ch. 8, "Newcombe square-and-add"). With
    p_a = (both + c)/n (after), p_b = (both + b)/n (before), Wilson limits (l_a, u_a), (l_b, u_b)
    and the corrected phi of :func:`_phi_corrected`::

        L = (p_a - p_b) - sqrt((p_a - l_a)² - 2·phi·(p_a - l_a)(u_b - p_b) + (u_b - p_b)²)
        U = (p_a - p_b) + sqrt((u_a - p_a)² - 2·phi·(u_a - p_a)(p_b - l_b) + (p_b - l_b)²)

    Args:
        both: pairs right before and after (A).
        b: right before, wrong after (B).
        c: wrong before, right after (C).
        neither: wrong before and after (D).
        confidence: coverage of the two-sided interval, in (0, 1).

    Returns:
        ``(low, high)``, differences in [-1, 1] (fractions, not percentage points).

    Raises:
        ValueError: no pairs (n = 0), a negative count, or confidence outside (0, 1).
    """
    if min(both, b, c, neither) < 0:
        raise ValueError(f"counts must be >= 0, got {(both, b, c, neither)}")
    n = both + b + c + neither
    if n == 0:
        raise ValueError("newcombe_paired_interval needs at least one pair, got n=0")
    p_after, p_before = (both + c) / n, (both + b) / n
    l_after, u_after = wilson_interval(both + c, n, confidence)
    l_before, u_before = wilson_interval(both + b, n, confidence)
    phi = _phi_corrected(both, b, c, neither)
    diff = p_after - p_before
    down_a, up_b = p_after - l_after, u_before - p_before
    up_a, down_b = u_after - p_after, p_before - l_before
    # |phi| <= 1 keeps both radicands >= 0; max() only guards against rounding below zero
    low = diff - math.sqrt(max(down_a ** 2 - 2 * phi * down_a * up_b + up_b ** 2, 0.0))
    high = diff + math.sqrt(max(up_a ** 2 - 2 * phi * up_a * down_b + down_b ** 2, 0.0))
    return max(low, -1.0), min(high, 1.0)


def paired_comparison(before: list[bool], after: list[bool], confidence: float = 0.95) -> dict:
    """Compare two evaluations of the SAME problems, problem by problem.

    The difference after - before with Newcombe's paired interval (:func:`newcombe_paired_interval`)
    and the exact McNemar p-value (:func:`mcnemar_exact_p`). The two come from different methods,
    so near the 5 % boundary the interval can exclude 0 while p is just above 0.05 (or the reverse).

    Args:
        before: per-problem success flags of the first evaluation.
        after: the flags of the second evaluation, in the same problem order.
        confidence: coverage of the interval, in (0, 1).

    Returns:
        ``{"n", "both", "lost", "gained", "neither", "before", "after", "difference", "difference_ci", "mcnemar_p"}``:
        ``lost`` = right before and wrong after (McNemar's b), ``gained`` = wrong before and right after (c),
        ``before``/``after`` the two rates, ``difference = after - before = (gained - lost) / n`` and
        ``difference_ci = [low, high]``, all as fractions.

    Raises:
        ValueError: lists of different lengths, or empty lists (n = 0: nothing to compare).
    """
    if len(before) != len(after):
        raise ValueError(f"paired_comparison needs one flag per problem in both lists, got "
                         f"{len(before)} and {len(after)}")
    if not before:
        raise ValueError("paired_comparison needs at least one problem, got n=0")
    pairs = [(bool(x), bool(y)) for x, y in zip(before, after)]
    both = sum(1 for x, y in pairs if x and y)
    b = sum(1 for x, y in pairs if x and not y)
    c = sum(1 for x, y in pairs if not x and y)
    neither = len(pairs) - both - b - c
    n = len(pairs)
    low, high = newcombe_paired_interval(both, b, c, neither, confidence)
    return {"n": n, "both": both, "lost": b, "gained": c, "neither": neither,
            "before": (both + b) / n, "after": (both + c) / n, "difference": (c - b) / n,
            "difference_ci": [low, high], "mcnemar_p": mcnemar_exact_p(b, c)}


def linear_trend(values: list[float], confidence: float = 0.95) -> dict:
    """Least-squares slope of ``values`` against their index (e.g. mean reward per training step).

    The interval is ``slope ± t_{(1+confidence)/2, n-2} · SE(slope)`` from ordinary least squares
    (``scipy.stats.linregress``); the p-value tests slope = 0 (two-sided). Steps are not
    independent draws (the policy carries over), so read the interval as a description of the
    curve, not as a test of the training method.

    Args:
        values: y_0..y_{n-1}, one per step, n >= 3.
        confidence: coverage of the two-sided interval.

    Returns:
        ``{"n", "slope", "slope_ci": [low, high], "p", "first", "last"}``: slope in units of y per
        step; ``first``/``last`` the fitted values at the first and last step.

    Raises:
        ValueError: fewer than 3 values.
    """
    from scipy.stats import linregress, t

    n = len(values)
    if n < 3:
        raise ValueError(f"a trend needs at least 3 values, got {n}")
    fit = linregress(list(range(n)), list(values))
    half = t.ppf((1 + confidence) / 2, n - 2) * fit.stderr
    return {"n": n, "slope": fit.slope, "slope_ci": [fit.slope - half, fit.slope + half], "p": fit.pvalue,
            "first": fit.intercept, "last": fit.intercept + fit.slope * (n - 1)}
