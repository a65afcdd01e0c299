"""The canary judge's statistics against scipy's: Mann-Whitney U and its p-values, the Hodges-Lehmann shift and
its confidence interval (the shifts the test does not reject)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.stats import mannwhitneyu  # type: ignore[import-untyped]

from mlops_operator.logic.judge import EXACT_MAX, hodges_lehmann, mann_whitney

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
