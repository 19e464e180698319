"""A/B statistics on block times (stdlib only): the Mann-Whitney U test and a
distribution-free confidence interval for the ratio of two timings.

- **U test**, two-sided: exact (the null distribution of U by counting, Mann & Whitney
  1947) when both samples have at most 25 values and no ties; otherwise the normal
  approximation with tie correction and continuity correction. This is NOT scipy's
  ``mannwhitneyu(method="auto")``, which goes normal as soon as both samples exceed 8
  values (10 vs 10 untied: exact p 0.4813, scipy's auto 0.4727): the exact p is kept
  where counting is cheap. The tests check each branch against scipy's ``method="exact"``
  and ``method="asymptotic"``.
- **Speedup** of A over B = time(B) / time(A). Its estimate is the Hodges-Lehmann shift
  of log times (the median of all pairwise log-ratios), and its 95% interval is Moses'
  distribution-free interval: the order statistics of the pairwise log-ratios at the
  U test's critical value, exponentiated. Timings are positive and skewed: log scale makes
  a ratio symmetric (2x faster and 2x slower are the same distance).
- **MDE** (minimum detectable effect): the relative change this noise could just detect
  at 95%, i.e. half the interval's width in log scale, exponentiated, minus 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist, median

__all__ = ["ABResult", "against_limit", "compare_samples", "hodges_lehmann", "mann_whitney_u",
           "median_ci", "settled", "sig"]

EXACT_MAX = 25
_Z = NormalDist()


def sig(x: float, digits: int = 5) -> float:
    """``x`` rounded to ``digits`` significant digits: a ratio of 0.0055 keeps its
    precision (rounding to 4 decimals would cost it 1%)."""
    return float(f"{x:.{digits}g}") if math.isfinite(x) else x


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) and the sizes of the tie groups."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    ties: list[int] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


@lru_cache(maxsize=256)
def _u_counts(m: int, n: int) -> tuple[int, ...]:
    """How many orderings give each U = 0..m*n (no ties): U's exact null distribution.

    The largest of the m + n values is either from the first sample (it beats all n of
    the second: U shifts by n) or from the second (U unchanged)."""
    table: list[list[list[int]]] = [[[1] for _ in range(n + 1)] for _ in range(m + 1)]
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            row = [0] * (i * j + 1)
            for u, c in enumerate(table[i - 1][j]):
                row[u + j] += c
            for u, c in enumerate(table[i][j - 1]):
                row[u] += c
            table[i][j] = row
    return tuple(table[m][n])


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(U of ``a``, two-sided p-value): U counts the pairs where a's value is larger (ties
    count one half)."""
    m, n = len(a), len(b)
    if m == 0 or n == 0:
        raise ValueError("both samples need values")
    ranks, ties = _ranks([*a, *b])
    u1 = sum(ranks[:m]) - m * (m + 1) / 2
    if max(m, n) <= EXACT_MAX and all(t == 1 for t in ties):
        counts = _u_counts(m, n)
        total = sum(counts)
        u = int(round(max(u1, m * n - u1)))
        upper = sum(counts[u:]) / total
        return u1, min(1.0, 2 * upper)
    mu = m * n / 2
    nt = m + n
    tie_term = sum(t**3 - t for t in ties) / (nt * (nt - 1))
    var = m * n / 12 * ((nt + 1) - tie_term)
    if var <= 0:
        return u1, 1.0
    z = (abs(u1 - mu) - 0.5) / math.sqrt(var)
    return u1, min(1.0, 2 * (1 - _Z.cdf(max(z, 0.0))))


def hodges_lehmann(a: Sequence[float], b: Sequence[float], confidence: float = 0.95
                   ) -> tuple[float, float, float]:
    """(estimate, low, high) of the shift b - a: the median of all pairwise differences and
    Moses' interval from the U distribution (normal approximation for its critical value)."""
    m, n = len(a), len(b)
    diffs = sorted(y - x for x in a for y in b)
    est = median(diffs)
    z = _Z.inv_cdf(0.5 + confidence / 2)
    k = int(math.floor(m * n / 2 - z * math.sqrt(m * n * (m + n + 1) / 12)))
    k = max(0, min(k, len(diffs) - 1))
    return est, diffs[k], diffs[len(diffs) - 1 - k]


@dataclass(frozen=True)
class ABResult:
    """A against B: speedup of A = time(B) / time(A), with its uncertainty."""

    estimate: float
    ci95: tuple[float, float]
    p_value: float
    verdict: str
    mde: float
    n: tuple[int, int]


def compare_samples(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> ABResult:
    """Block times of A and B (any unit, positive): how much faster A is than B. The
    interval's confidence is ``1 - alpha`` (``ci95`` at the default)."""
    if min(a) <= 0 or min(b) <= 0:
        raise ValueError("block times must be positive")
    la, lb = [math.log(x) for x in a], [math.log(x) for x in b]
    _, p = mann_whitney_u(la, lb)
    est, lo, hi = hodges_lehmann(la, lb, 1 - alpha)
    ci = (math.exp(lo), math.exp(hi))
    if p < alpha and ci[0] > 1:
        verdict = "faster"
    elif p < alpha and ci[1] < 1:
        verdict = "slower"
    else:
        verdict = "no difference detected"
    return ABResult(estimate=math.exp(est), ci95=ci, p_value=p, verdict=verdict,
                    mde=math.exp((hi - lo) / 2) - 1, n=(len(a), len(b)))


def settled(a: Sequence[float], b: Sequence[float], width: float, alpha: float = 0.05
            ) -> bool:
    """Whether A/B block times pin the ratio down: its interval's high end is within
    ``width`` of its low end (high / low - 1 < width). A sequential A/B adds rounds until
    this holds (stopping on the width, never on the verdict, keeps the error rate)."""
    if min(len(a), len(b)) < 2:
        return False
    ci = compare_samples(a, b, alpha).ci95
    return ci[1] / ci[0] - 1 < width


def median_ci(samples: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval for the median: the order statistics x(k), x(n+1-k) with
    the largest k whose coverage 1 - 2 P(Binomial(n, 1/2) < k) is at least ``confidence``
    (the whole range when no k reaches it: 5 values cover 93.75%)."""
    xs = sorted(samples)
    n = len(xs)
    if n == 0:
        raise ValueError("no samples")

    def coverage(k: int) -> float:  # of [x(k), x(n+1-k)]: 1 - 2 P(B <= k - 1)
        return 1 - 2 * sum(math.comb(n, j) for j in range(k)) / 2**n

    k = 1
    while 2 * (k + 1) <= n + 1 and coverage(k + 1) >= confidence:
        k += 1
    return xs[k - 1], xs[n - k]


def against_limit(interval: tuple[float, float], limit: float, sense: str) -> str:
    """``ok``, ``fail`` or ``marginal``: a ``max`` limit is met when the whole interval is
    at or under it and missed when the whole interval is over it (``min`` the mirror);
    an interval that straddles it cannot say which."""
    lo, hi = interval
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "fail"
    if sense == "max":
        return "ok" if hi <= limit else "fail" if lo > limit else "marginal"
    return "ok" if lo >= limit else "fail" if hi < limit else "marginal"
