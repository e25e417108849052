"""grpo.evaluation.statistics against hand-computed values: Wilson, exact McNemar, Newcombe's paired interval.

The expected numbers are computed here from the textbook formulas with the standard library only
(``statistics.NormalDist``, ``math.comb``), independently of the scipy calls the module makes.

Run: ``pytest -q tests/test_stats.py``.
"""

import math
from statistics import NormalDist

import pytest

from grpo.evaluation.statistics import mcnemar_exact_p, newcombe_paired_interval, paired_comparison, wilson_interval

Z95 = NormalDist().inv_cdf(0.975)  # 1.959964


def wilson_by_hand(k, n, z=Z95):
    """(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n) — Wilson 1927."""
    p = k / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


@pytest.mark.parametrize("k, n", [(8, 20), (0, 32), (32, 32), (1, 200), (37, 1319)])
def test_wilson_matches_the_formula(k, n):
    assert wilson_interval(k, n) == pytest.approx(wilson_by_hand(k, n), abs=1e-12)


def test_wilson_known_values():
    # 8/20: centre (8 + z²/2)/(20 + z²) = 9.92073/23.84146 = 0.41611, half-width 0.19730
    assert wilson_interval(8, 20) == pytest.approx((0.21881, 0.61342), abs=5e-6)
    # k = 0: the interval is [0, z²/(n + z²)] = [0, 3.84146/35.84146]; k = n mirrors it
    low, high = wilson_interval(0, 32)
    assert low == 0.0 and high == pytest.approx(Z95 ** 2 / (32 + Z95 ** 2), abs=1e-12)
    low, high = wilson_interval(32, 32)
    assert high == 1.0 and low == pytest.approx(32 / (32 + Z95 ** 2), abs=1e-12)
    # a wider confidence gives a wider interval: z(0.995) = 2.5758
    assert wilson_interval(8, 20, confidence=0.99) == pytest.approx(wilson_by_hand(8, 20, 2.5758293035489), abs=1e-9)


@pytest.mark.parametrize("args", [(0, 0), (-1, 5), (6, 5), (1, 5, 1.0), (1, 5, 0.0)])
def test_wilson_refuses_impossible_input(args):
    with pytest.raises(ValueError):
        wilson_interval(*args)


def exact_mcnemar_by_hand(b, c):
    """2 · P(X <= min(b, c)), X ~ Binomial(b + c, 1/2), capped at 1."""
    m = b + c
    tail = sum(math.comb(m, k) for k in range(min(b, c) + 1)) / 2 ** m
    return min(1.0, 2 * tail)


def test_mcnemar_exact_small_tables():
    assert mcnemar_exact_p(1, 6) == pytest.approx(2 * (1 + 7) / 128)  # 0.125
    assert mcnemar_exact_p(6, 1) == pytest.approx(0.125)  # symmetric in b and c
    assert mcnemar_exact_p(0, 6) == pytest.approx(2 / 64)  # 0.03125
    assert mcnemar_exact_p(0, 5) == pytest.approx(2 / 32)  # 0.0625: five wins out of five is not enough
    assert mcnemar_exact_p(3, 3) == 1.0
    for b, c in [(2, 9), (10, 25), (0, 1), (40, 44)]:
        assert mcnemar_exact_p(b, c) == pytest.approx(exact_mcnemar_by_hand(b, c), rel=1e-12)


def test_mcnemar_no_discordant_pairs_and_bad_counts():
    assert mcnemar_exact_p(0, 0) == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact_p(-1, 2)


def test_newcombe_published_example():
    # Cavo et al. 2012 (complete response before/after consolidation therapy), paired table
    # [[59, 6], [16, 80]]; Fagerland, Lydersen & Laake 2017, ch. 8, Newcombe square-and-add:
    # first - second = -0.0621 (95 % CI -0.1186 to -0.0046). Here the difference is after - before,
    # so the published interval is mirrored.
    low, high = newcombe_paired_interval(both=59, b=6, c=16, neither=80)
    assert (round(low, 4), round(high, 4)) == (0.0046, 0.1186)


def test_newcombe_step_by_step():
    # data of Bentur et al. 2009 (Fagerland et al. 2014, Table II): A=1, B=1, C=7, D=12, n=21
    both, b, c, neither, n = 1, 1, 7, 12, 21
    p_before, p_after = (both + b) / n, (both + c) / n  # 2/21, 8/21
    l_b, u_b = wilson_by_hand(both + b, n)
    l_a, u_a = wilson_by_hand(both + c, n)
    # AD - BC = 12 - 7 = 5 <= n/2 = 10.5, so the corrected phi is 0 and the interval is plain square-and-add
    low = (p_after - p_before) - math.hypot(p_after - l_a, u_b - p_before)
    high = (p_after - p_before) + math.hypot(u_a - p_after, p_before - l_b)
    assert newcombe_paired_interval(both, b, c, neither) == pytest.approx((low, high), abs=1e-12)
    assert (round(low, 3), round(high, 3)) == (0.026, 0.507)


def test_newcombe_phi_correction_applies():
    # A=30, B=2, C=8, D=10, n=50: AD - BC = 300 - 16 = 284 > 25, phi = (284 - 25)/sqrt(32·18·38·12)
    both, b, c, neither, n = 30, 2, 8, 10, 50
    phi = (284 - 25) / math.sqrt(32 * 18 * 38 * 12)
    p_before, p_after = 32 / n, 38 / n
    l_b, u_b = wilson_by_hand(32, n)
    l_a, u_a = wilson_by_hand(38, n)
    x, y = p_after - l_a, u_b - p_before
    low = (p_after - p_before) - math.sqrt(x * x - 2 * phi * x * y + y * y)
    x, y = u_a - p_after, p_before - l_b
    high = (p_after - p_before) + math.sqrt(x * x - 2 * phi * x * y + y * y)
    assert newcombe_paired_interval(both, b, c, neither) == pytest.approx((low, high), abs=1e-12)
    # the positive correlation narrows the interval compared with phi = 0
    independent = math.hypot(p_after - l_a, u_b - p_before)
    assert (p_after - p_before) - low < independent


def test_newcombe_edges():
    # no discordant pairs: difference 0, an interval around it (a margin is 0 -> phi = 0)
    low, high = newcombe_paired_interval(20, 0, 0, 0)
    half = 1 - wilson_by_hand(20, 20)[0]
    assert (low, high) == pytest.approx((-half, half), abs=1e-12)
    # everything lost: the difference is -1 and the interval stays inside [-1, 1]
    low, high = newcombe_paired_interval(0, 20, 0, 0)
    assert low == pytest.approx(-1.0) and -1 < high < 0
    with pytest.raises(ValueError):
        newcombe_paired_interval(0, 0, 0, 0)


def test_paired_comparison_counts_and_keys():
    before = [True, False, False, False, False, False, False, True]
    after = [False, True, True, True, True, True, True, True]
    result = paired_comparison(before, after)
    assert {k: result[k] for k in ("n", "both", "lost", "gained", "neither")} == {
        "n": 8, "both": 1, "lost": 1, "gained": 6, "neither": 0}
    assert result["before"] == 0.25 and result["after"] == 0.875
    assert result["difference"] == pytest.approx(5 / 8)
    assert result["mcnemar_p"] == pytest.approx(0.125)
    assert result["difference_ci"] == pytest.approx(list(newcombe_paired_interval(1, 1, 6, 0)))


def test_paired_comparison_no_change_and_errors():
    result = paired_comparison([True, False, True], [True, False, True])
    assert result["difference"] == 0 and result["mcnemar_p"] == 1.0 and result["lost"] == result["gained"] == 0
    low, high = result["difference_ci"]
    assert low < 0 < high
    with pytest.raises(ValueError, match="n=0"):
        paired_comparison([], [])
    with pytest.raises(ValueError, match="3 and 2"):
        paired_comparison([True, True, False], [True, False])


def test_linear_trend_against_hand_computed_least_squares():
    from grpo.evaluation.statistics import linear_trend

    # y = 1, 3, 2, 5 at x = 0..3: x̄ = 1.5, ȳ = 2.75, Sxx = 5, Sxy = (-1.5)(-1.75) + (-0.5)(0.25) + 0.5(-0.75) + 1.5(2.25) = 5.5
    trend = linear_trend([1, 3, 2, 5])
    assert trend["slope"] == pytest.approx(1.1)
    residuals = [1 - 1.1, 3 - 2.2, 2 - 3.3, 5 - 4.4]  # fitted: 1.1 + ... intercept = 2.75 - 1.1*1.5 = 1.1
    se = math.sqrt(sum(r * r for r in residuals) / 2 / 5)
    t975_df2 = 4.302652729911275  # Student t quantile, 2 degrees of freedom
    assert trend["slope_ci"] == pytest.approx([1.1 - t975_df2 * se, 1.1 + t975_df2 * se])
    assert trend["first"] == pytest.approx(1.1) and trend["last"] == pytest.approx(4.4)
    with pytest.raises(ValueError):
        linear_trend([1.0, 2.0])
