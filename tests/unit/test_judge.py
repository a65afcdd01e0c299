"""The canary judge's statistics against scipy's: Mann-Whitney U and its p-values, the Hodges-Lehmann shift and
its confidence interval (the shifts the test does not reject)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from mlops_operator.logic.judge import (
    EXACT_MAX,
    MetricRule,
    MetricVerdict,
    classify,
    hodges_lehmann,
    mann_whitney,
    score,
)

SIZES = [(3, 4), (5, 6), (8, 8), (8, 3), (9, 12), (20, 25), (40, 30), (100, 80)]
ALTERNATIVES = ["two-sided", "greater", "less"]


def samples(n: int, m: int, seed: int, shift: float = 0.5, decimals: int = 6) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    return rng.normal(shift, 1, n).round(decimals), rng.normal(0, 1, m).round(decimals)


@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize(("n", "m"), SIZES)
def test_mann_whitney_matches_scipy(n: int, m: int, alternative: Any) -> None:
    for seed in range(5):
        canary, stable = samples(n, m, seed)
        ours = mann_whitney(list(canary), list(stable), alternative)
        method = "exact" if max(n, m) <= EXACT_MAX else "asymptotic"
        theirs = mannwhitneyu(canary, stable, alternative=alternative, method=method)
        assert ours.u == pytest.approx(theirs.statistic, abs=1e-9)
        assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-6, abs=1e-12), (seed, ours, theirs)
        assert ours.exact is (method == "exact")


@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_ties_use_the_corrected_normal_approximation(alternative: Any) -> None:
    # Latencies rounded to whole milliseconds: many ties, even in small samples.
    for seed in range(5):
        canary, stable = samples(7, 6, seed, decimals=0)
        ours = mann_whitney(list(canary), list(stable), alternative)
        theirs = mannwhitneyu(canary, stable, alternative=alternative, method="asymptotic")
        assert not ours.exact
        assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-6), seed


def test_all_values_tied_is_no_evidence() -> None:
    assert mann_whitney([1.0, 1.0, 1.0], [1.0] * 10).p_value == 1.0


def test_a_clear_shift_is_found_and_its_direction_told() -> None:
    canary, stable = samples(30, 30, 7, shift=2.0)
    assert mann_whitney(list(canary), list(stable), "greater").p_value < 1e-6
    assert mann_whitney(list(canary), list(stable), "less").p_value > 0.99


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.98])
@pytest.mark.parametrize(("n", "m"), SIZES)
def test_hodges_lehmann_estimate_and_interval(n: int, m: int, confidence: float) -> None:
    canary, stable = samples(n, m, 3)
    shift = hodges_lehmann(list(canary), list(stable), confidence)
    differences = sorted(c - s for c in canary for s in stable)
    assert shift.estimate == pytest.approx(float(np.median(differences)))
    assert shift.low <= shift.estimate <= shift.high
    # The interval is exactly the shifts the two-sided test does not reject at 1 - confidence: just inside either
    # end scipy's p-value is above it, just outside it is not.
    method = "exact" if max(n, m) <= EXACT_MAX else "asymptotic"
    alpha = 1 - confidence

    def p(delta: float) -> float:
        return float(mannwhitneyu(canary - delta, stable, method=method).pvalue)

    if math.isinf(shift.low):
        # Too few values: no shift is rejected, not even one beyond every difference (scipy agrees).
        assert (shift.low, shift.high) == (-math.inf, math.inf)
        assert p(differences[-1] + 1) > alpha and p(differences[0] - 1) > alpha
        return
    lo, hi = differences.index(shift.low), len(differences) - 1 - differences[::-1].index(shift.high)
    assert p((differences[lo] + differences[lo + 1]) / 2) > alpha
    assert p((differences[hi - 1] + differences[hi]) / 2) > alpha
    if lo > 0:
        assert p((differences[lo - 1] + differences[lo]) / 2) <= alpha
    if hi < len(differences) - 1:
        assert p((differences[hi] + differences[hi + 1]) / 2) <= alpha


def test_the_interval_narrows_with_more_samples() -> None:
    canary, stable = samples(10, 10, 5)
    small = hodges_lehmann(list(canary), list(stable))
    canary, stable = samples(200, 200, 5)
    large = hodges_lehmann(list(canary), list(stable))
    assert large.high - large.low < (small.high - small.low) / 2


def test_bad_input_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        mann_whitney([], [1.0])
    with pytest.raises(ValueError, match="at least one value"):
        hodges_lehmann([1.0], [])
    with pytest.raises(ValueError, match=r"confidence must be between 0 and 1, got 1\.5"):
        hodges_lehmann([1.0], [2.0], 1.5)


# --- verdicts and the score --------------------------------------------------------------------------------------

LATENCY = MetricRule("latencyP99", direction="increase", allowed_increase=1.1)


def latencies(mean: float, n: int = 30, seed: int = 0) -> list[float]:
    return list(np.random.default_rng(seed).normal(mean, 0.002, n))


@pytest.mark.parametrize(
    ("rule", "canary_mean", "expected"),
    [
        (LATENCY, 0.050, "Pass"),  # the same
        (LATENCY, 0.080, "High"),  # 60 % slower: significant and above the allowed 10 %
        (LATENCY, 0.053, "Pass"),  # significantly slower, but only 6 %: allowed
        (LATENCY, 0.030, "Pass"),  # faster: not the bad direction
        (MetricRule("requestRate", direction="decrease", allowed_decrease=0.9), 0.030, "Low"),
        (MetricRule("requestRate", direction="decrease", allowed_decrease=0.9), 0.080, "Pass"),
        (MetricRule("predictionShift", direction="either"), 0.080, "High"),
        (MetricRule("predictionShift", direction="either"), 0.030, "Low"),
    ],
)
def test_classify(rule: MetricRule, canary_mean: float, expected: str) -> None:
    verdict = classify(rule, latencies(canary_mean, seed=1), latencies(0.050, seed=2))
    assert verdict.classification == expected, verdict.reason
    assert verdict.reason.startswith(rule.name)
    assert verdict.ratio == pytest.approx(canary_mean / 0.050, rel=0.02)


def test_too_few_samples_is_no_data_and_says_how_many() -> None:
    verdict = classify(LATENCY, [0.1, 0.2], latencies(0.05))
    assert verdict.classification == "NoData"
    assert verdict.reason == "latencyP99: 2 canary and 30 stable samples, at least 3 of each are needed"


def verdict(name: str, classification: Any) -> MetricVerdict:
    return MetricVerdict(name, classification, f"{name} {classification.lower()}")


RULES = [MetricRule("a", weight=3), MetricRule("b"), MetricRule("c", critical=True), MetricRule("d")]


@pytest.mark.parametrize(
    ("classes", "value", "result"),
    [
        ({"a": "Pass", "b": "Pass", "c": "Pass", "d": "Pass"}, 100, "Pass"),
        ({"a": "Pass", "b": "High", "c": "Pass", "d": "NoData"}, 80, "Marginal"),  # 4 of 5 judged weight
        ({"a": "High", "b": "Pass", "c": "Pass", "d": "Pass"}, 50, "Fail"),
        ({"a": "Pass", "b": "Pass", "c": "High", "d": "Pass"}, 0, "Fail"),  # critical
        ({"a": "NoData", "b": "NoData", "c": "NoData", "d": "NoData"}, 0, "NoData"),
    ],
)
def test_score(classes: dict[str, str], value: float, result: str) -> None:
    got = score(RULES, [verdict(name, c) for name, c in classes.items()])
    assert got.value == pytest.approx(value) and got.result == result, got.reason
    if result == "Fail" and classes["c"] == "High":
        assert got.reason == "critical metric failed: c high"
    if result == "Marginal":
        assert got.reason == "score 80 (Marginal; pass at 90, marginal at 75): b high"


def test_three_against_three_never_calls_a_change_real_at_95_percent() -> None:
    # Every canary value above every stable one: the exact two-sided p is 0.1, so at 95 % nothing is significant.
    verdict = classify(MetricRule("latency"), [10.0, 11.0, 12.0], [1.0, 2.0, 3.0], 0.95)
    assert verdict.classification == "Pass" and verdict.shift is not None and math.isinf(verdict.shift.high)
    verdict = classify(MetricRule("latency"), [10.0, 11.0, 12.0, 13.0], [1.0, 2.0, 3.0, 4.0], 0.95)
    assert verdict.classification == "High"
