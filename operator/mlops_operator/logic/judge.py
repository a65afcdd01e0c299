"""The statistical judge of a canary: one metric's samples of the canary against the stable version's, over the same
window.

Mann-Whitney U (rank-sum) test of whether the canary's values are shifted against the stable version's, with the
Hodges-Lehmann estimate of the shift (the median of every canary - stable difference) and its confidence interval
(the differences' order statistics at the test's critical value, Moses' construction). Exact distribution of U for
small samples without ties, the normal approximation with tie correction and continuity correction otherwise (the
choices scipy.stats.mannwhitneyu makes with ``method="auto"``). Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from statistics import NormalDist
from typing import Literal

Alternative = Literal["two-sided", "greater", "less"]
# The exact distribution of U is used while both samples have at most this many values and none are tied.
EXACT_MAX = 8
MIN_SAMPLES = 3
"""Fewer values on either side give no usable test: the judge says the metric is inconclusive."""

_NORMAL = NormalDist()


@dataclass(frozen=True)
class MannWhitney:
    u: float
    """U of the canary's sample (the number of canary > stable pairs, ties counting half)."""
    p_value: float
    exact: bool


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) of ``values``, and the sizes of the groups of tied values."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


@cache
def _u_counts(n: int, m: int) -> tuple[int, ...]:
    """The number of orderings of n canary and m stable values (no ties) giving each U = 0 .. n*m."""
    if n == 0 or m == 0:
        return (1,)
    with_last_canary = _u_counts(n - 1, m)  # the largest value is a canary one: it beats all m stable values
    with_last_stable = _u_counts(n, m - 1)
    counts = [0] * (n * m + 1)
    for u, c in enumerate(with_last_canary):
        counts[u + m] += c
    for u, c in enumerate(with_last_stable):
        counts[u] += c
    return tuple(counts)


def mann_whitney(
    canary: Sequence[float], stable: Sequence[float], alternative: Alternative = "two-sided"
) -> MannWhitney:
    """The test of ``alternative``: "greater" when the canary's values tend to be larger than the stable version's,
    "less" smaller, "two-sided" either."""
    n, m = len(canary), len(stable)
    if n == 0 or m == 0:
        raise ValueError("both samples need at least one value")
    ranks, ties = _ranks([*canary, *stable])
    u = sum(ranks[:n]) - n * (n + 1) / 2
    exact = not ties and max(n, m) <= EXACT_MAX
    return MannWhitney(u, _p_value(u, n, m, ties, alternative), exact)


def _p_value(u: float, n: int, m: int, ties: Sequence[int], alternative: Alternative) -> float:
    if not ties and max(n, m) <= EXACT_MAX:
        counts = _u_counts(n, m)
        total = math.comb(n + m, n)
        at_least = sum(counts[math.ceil(u) :]) / total
        at_most = sum(counts[: math.floor(u) + 1]) / total
        return {"greater": at_least, "less": at_most, "two-sided": min(1.0, 2 * min(at_least, at_most))}[alternative]
    size = n + m
    mean = n * m / 2
    variance = n * m / 12 * ((size + 1) - sum(t**3 - t for t in ties) / (size * (size - 1)))
    if variance <= 0:  # every value tied: no evidence either way
        return 1.0
    sd = math.sqrt(variance)
    if alternative == "greater":
        return 1 - _NORMAL.cdf((u - mean - 0.5) / sd)
    if alternative == "less":
        return _NORMAL.cdf((u - mean + 0.5) / sd)
    return min(1.0, 2 * (1 - _NORMAL.cdf((abs(u - mean) - 0.5) / sd)))


@dataclass(frozen=True)
class Shift:
    """The Hodges-Lehmann estimate of how far the canary's values lie from the stable version's (canary - stable),
    with its confidence interval."""

    estimate: float
    low: float
    high: float
    confidence: float


def hodges_lehmann(canary: Sequence[float], stable: Sequence[float], confidence: float = 0.98) -> Shift:
    """The median of every canary - stable difference, and the interval between the differences' order statistics
    that the Mann-Whitney test's critical value at ``confidence`` picks: the shifts the test would not reject."""
    n, m = len(canary), len(stable)
    if n == 0 or m == 0:
        raise ValueError("both samples need at least one value")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    differences = sorted(c - s for c in canary for s in stable)
    total = len(differences)
    middle = total // 2
    estimate = differences[middle] if total % 2 else (differences[middle - 1] + differences[middle]) / 2
    alpha = 1 - confidence
    # A shift between the (k-1)-th and the k-th smallest difference leaves U = total - k canary > stable pairs; the
    # interval is every shift the two-sided test at 1 - confidence does not reject (a run of k, symmetric).
    k = 0
    while k < middle and _p_value(total - k, n, m, (), "two-sided") <= alpha:
        k += 1
    if k == 0:
        # Too few values for the test to reject any shift at this confidence (3 against 3 at 95 %: the smallest
        # two-sided p is 0.1): every shift is plausible, and no change can be called real.
        return Shift(estimate, -math.inf, math.inf, confidence)
    return Shift(estimate, differences[k - 1], differences[total - k], confidence)


Direction = Literal["increase", "decrease", "either"]
Classification = Literal["Pass", "High", "Low", "NoData"]


@dataclass(frozen=True)
class MetricRule:
    """How one metric is judged: which ``direction`` of change is bad, and how large a change (the ratio of the
    canary's mean to the stable version's) is tolerated even when it is significant."""

    name: str
    direction: Direction = "increase"
    allowed_increase: float = 1.0
    """A significant increase fails only above this ratio (1.1: up to 10 % more is fine)."""
    allowed_decrease: float = 1.0
    """A significant decrease fails only below this ratio (0.9: down to 10 % less is fine)."""
    critical: bool = False
    """A failure of this metric fails the whole run, whatever the score."""
    weight: float = 1.0


@dataclass(frozen=True)
class MetricVerdict:
    name: str
    classification: Classification
    reason: str
    shift: Shift | None = None
    p_value: float | None = None
    ratio: float | None = None
    """The canary's mean over the stable version's."""


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def classify(rule: MetricRule, canary: Sequence[float], stable: Sequence[float],
             confidence: float = 0.98) -> MetricVerdict:  # fmt: skip
    """One metric's verdict: High or Low when the Hodges-Lehmann interval of the shift excludes 0 on a bad side
    and the mean ratio passes the allowed one; Pass otherwise; NoData with fewer than MIN_SAMPLES values a side."""
    if len(canary) < MIN_SAMPLES or len(stable) < MIN_SAMPLES:
        return MetricVerdict(rule.name, "NoData", f"{rule.name}: {len(canary)} canary and {len(stable)} stable "
                             f"samples, at least {MIN_SAMPLES} of each are needed")  # fmt: skip
    shift = hodges_lehmann(canary, stable, confidence)
    p = mann_whitney(canary, stable).p_value
    base, mean = _mean(stable), _mean(canary)
    ratio = mean / base if base else (1.0 if mean == base else math.inf if mean > base else -math.inf)
    facts = (f"canary mean {mean:.4g} vs stable {base:.4g} (ratio {ratio:.3g}); shift {shift.estimate:.4g}, "
             f"{round(confidence * 100)}% interval [{shift.low:.4g}, {shift.high:.4g}]")  # fmt: skip
    if shift.low > 0 and rule.direction in ("increase", "either") and ratio > rule.allowed_increase:
        return MetricVerdict(rule.name, "High", f"{rule.name} higher: {facts}", shift, p, ratio)
    if shift.high < 0 and rule.direction in ("decrease", "either") and ratio < rule.allowed_decrease:
        return MetricVerdict(rule.name, "Low", f"{rule.name} lower: {facts}", shift, p, ratio)
    return MetricVerdict(rule.name, "Pass", f"{rule.name} passes: {facts}", shift, p, ratio)


Result = Literal["Pass", "Marginal", "Fail", "NoData"]


@dataclass(frozen=True)
class Score:
    value: float
    """100 x the weight of the passing metrics over the weight of the judged ones (NoData ones are not judged)."""
    result: Result
    reason: str


def score(rules: Sequence[MetricRule], verdicts: Sequence[MetricVerdict], pass_at: float = 90,
          marginal_at: float = 75) -> Score:  # fmt: skip
    """The run's score and result: Pass at ``pass_at`` or more, Marginal at ``marginal_at`` or more, Fail below,
    and Fail whatever the score when a critical metric fails; NoData when no metric could be judged."""
    by_name = {r.name: r for r in rules}
    judged = [v for v in verdicts if v.classification != "NoData"]
    failed = [v for v in judged if v.classification != "Pass"]
    if not judged:
        return Score(0.0, "NoData", "no metric had enough samples to be judged")
    critical = [v for v in failed if by_name[v.name].critical]
    total = sum(by_name[v.name].weight for v in judged)
    value = 100 * sum(by_name[v.name].weight for v in judged if v.classification == "Pass") / total
    if critical:
        return Score(0.0, "Fail", f"critical metric failed: {critical[0].reason}")
    result: Result = "Pass" if value >= pass_at else "Marginal" if value >= marginal_at else "Fail"
    why = "; ".join(v.reason for v in failed) or "every judged metric passes"
    return Score(
        value, result, f"score {value:.0f} ({result}; pass at {pass_at:g}, marginal at {marginal_at:g}): {why}"
    )
