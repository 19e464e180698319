"""dsconv_cli.stats against brute-force references on untied, asymmetric data (tied or
symmetric samples hide an off-by-one order statistic and a mean taken for a median)."""

from __future__ import annotations

import itertools
import math
import random
from statistics import NormalDist

import pytest
from scipy.stats import mannwhitneyu

from dsconv_cli.stats import (
    against_limit,
    compare_samples,
    hodges_lehmann,
    mann_whitney_u,
    median_ci,
    settled,
    sig,
)


def skewed(seed: int, n: int, scale: float = 1.0) -> list[float]:
    """Untied, right-skewed values (exponential): mean and median of differences differ."""
    rng = random.Random(seed)
    return [scale * rng.expovariate(1.0) for _ in range(n)]


def u_greater(diffs: list[float], d: float) -> int:
    return sum(x > d for x in diffs)


def moses_by_inversion(a: list[float], b: list[float], confidence: float
                       ) -> tuple[float, float]:
    """The interval as the set of shifts d the U test (normal approximation, no
    continuity correction) does not reject for b - d against a: every pairwise
    difference tried, the smallest and largest accepted kept."""
    m, n = len(a), len(b)
    diffs = [y - x for x in a for y in b]
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    half = z * math.sqrt(m * n * (m + n + 1) / 12)
    accepted = [d for d in diffs
                if u_greater(diffs, d) <= m * n / 2 + half
                and sum(x < d for x in diffs) <= m * n / 2 + half]
    return min(accepted), max(accepted)


@pytest.mark.parametrize("seed,m,n", [(0, 7, 9), (1, 12, 10), (2, 20, 15), (3, 5, 30)])
def test_hodges_lehmann_and_moses_equal_brute_force(seed: int, m: int, n: int) -> None:
    a, b = skewed(seed, m), [x + 0.3 for x in skewed(seed + 100, n, 2.0)]
    diffs = sorted(y - x for x in a for y in b)
    assert len(set(diffs)) == len(diffs)  # untied
    mid = len(diffs) // 2
    median = diffs[mid] if len(diffs) % 2 else (diffs[mid - 1] + diffs[mid]) / 2
    assert abs(sum(diffs) / len(diffs) - median) > 1e-3  # asymmetric: a mean would differ
    est, lo, hi = hodges_lehmann(a, b)
    assert est == pytest.approx(median, abs=1e-12)
    assert (lo, hi) == pytest.approx(moses_by_inversion(a, b, 0.95), abs=1e-12)
    assert (lo, hi) != pytest.approx((diffs[diffs.index(lo) + 1], diffs[diffs.index(hi) - 1]))


def test_moses_interval_at_other_confidences() -> None:
    a, b = skewed(7, 11), skewed(8, 13, 1.5)
    for conf in (0.8, 0.9, 0.99):
        assert hodges_lehmann(a, b, conf)[1:] == pytest.approx(
            moses_by_inversion(a, b, conf), abs=1e-12)


def test_exact_p_is_scipys_exact_not_its_auto() -> None:
    """The module docstring's claim: exact up to 25 untied values a side, where scipy's
    ``auto`` has already gone normal (both sides above 8)."""
    a, b = skewed(11, 10), skewed(12, 10, 1.2)
    _, p = mann_whitney_u(a, b)
    exact = float(mannwhitneyu(a, b, method="exact").pvalue)
    auto = float(mannwhitneyu(a, b, method="auto").pvalue)
    assert p == pytest.approx(exact, rel=1e-9) and abs(p - auto) > 1e-3
    big_a, big_b = skewed(13, 26), skewed(14, 30)
    assert mann_whitney_u(big_a, big_b)[1] == pytest.approx(
        float(mannwhitneyu(big_a, big_b, method="asymptotic").pvalue), rel=1e-9)


def test_exact_p_by_enumeration() -> None:
    """The exact null distribution by listing every split of 5 + 4 ranks."""
    a, b = [0.3, 1.7, 2.2, 4.1, 5.0], [1.1, 3.3, 3.9, 6.2]
    u, p = mann_whitney_u(a, b)
    values = a + b
    us = [sum(x > y for x in pick for y in values if y not in pick)
          for pick in itertools.combinations(values, len(a))]
    dev = abs(u - 10)
    assert p == pytest.approx(sum(abs(v - 10) >= dev for v in us) / len(us))


@pytest.mark.parametrize("n", [5, 6, 10, 25, 100])
def test_median_ci_is_the_tightest_with_the_coverage(n: int) -> None:
    xs = skewed(n, n)
    lo, hi = median_ci(xs)
    s = sorted(xs)
    k = s.index(lo) + 1
    assert s[n - k] == hi

    def coverage(j: int) -> float:  # P(x(j) <= median <= x(n+1-j)) by the binomial
        return sum(math.comb(n, i) for i in range(j, n - j + 1)) / 2**n

    if k > 1 or coverage(1) >= 0.95:
        assert coverage(k) >= 0.95
    assert 2 * (k + 1) > n + 1 or coverage(k + 1) < 0.95


def test_against_limit() -> None:
    assert against_limit((1.0, 2.0), 2.5, "max") == "ok"
    assert against_limit((1.0, 2.0), 1.5, "max") == "marginal"
    assert against_limit((1.0, 2.0), 0.5, "max") == "fail"
    assert against_limit((1.0, 2.0), 0.5, "min") == "ok"
    assert against_limit((1.0, 2.0), 2.5, "min") == "fail"
    assert against_limit((float("nan"), 2.0), 2.5, "max") == "fail"


def test_settled_is_the_interval_width() -> None:
    rng = random.Random(5)
    a = [1 + 0.1 * rng.random() for _ in range(20)]
    b = [1 + 0.1 * rng.random() for _ in range(20)]
    ci = compare_samples(a, b).ci95
    width = ci[1] / ci[0] - 1
    assert settled(a, b, width * 1.01) and not settled(a, b, width * 0.99)
    assert not settled(a[:1], b[:1], 10.0)


def test_sig_keeps_small_ratios_precise() -> None:
    assert sig(0.0055123) == 0.0055123 and sig(123456.7) == 123460.0
    assert round(0.0055123, 4) != pytest.approx(0.0055123, rel=1e-3)
    assert math.isnan(sig(float("nan")))
