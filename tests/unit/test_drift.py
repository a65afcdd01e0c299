"""Drift statistics against scipy's (PSI, Jensen-Shannon, chi-square, two-proportion z, KS, Wasserstein), live
values counted in a profile's bins, one feature's verdict and its signals, multiple testing across features, the
dataset's verdict, and the calibration: features drawn from the reference distribution are flagged at most at the
nominal rate.

Equality with scipy: statistics to 1e-9 relative; p-values to 1e-6 relative (both sides come from the same
distribution functions, so a relative bound holds even for tiny p-values)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import binom, chi2_contingency, ks_2samp, norm, wasserstein_distance

from mlops_operator.logic.drift import (
    DEFAULT_THRESHOLDS,
    EPSILON,
    KS_EXACT_MAX,
    LARGE,
    MISSING_DELTA,
    Binned,
    Current,
    DriftError,
    FeatureResult,
    FeatureSettings,
    Signal,
    adjust,
    beyond_tail,
    bin_categorical,
    bin_numeric,
    chi_square,
    choose,
    compare,
    dataset,
    decide,
    from_profile,
    jensen_shannon,
    ks_binned,
    ks_raw,
    out_of_range_p,
    psi,
    wasserstein_binned,
    wasserstein_raw,
    z_test,
)
from mlops_operator.logic.profile import categorical_feature, numeric_feature

Floats = npt.NDArray[np.float64]

STAT = 1e-9
"""Relative tolerance of statistics against scipy's."""
P_VALUE = 1e-6
"""Relative tolerance of p-values against scipy's."""


def count_pair(seed: int, k: int) -> tuple[Floats, Floats]:
    """Two count vectors over ``k`` bins with different shares; for k > 3, one bin empty in both, one empty in the
    reference only and one in the current only."""
    rng = np.random.default_rng(seed)
    p, q = rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k))
    ref = rng.multinomial(int(rng.integers(50, 5000)), p).astype(np.float64)
    cur = rng.multinomial(int(rng.integers(50, 5000)), (p + q) / 2).astype(np.float64)
    if k > 3:
        ref[0] = cur[0] = 0.0
        ref[1] = 0.0
        cur[2] = 0.0
    return ref, cur


SEEDS = [0, 1, 2, 3]
BINS = [2, 3, 5, 10, 21]


# --- statistics against scipy ----------------------------------------------------------------------------------------


def psi_formula(ref: Floats, cur: Floats) -> float:
    """PSI as the docstring defines it: natural log, shares floored at 1e-4."""
    p = [max(c / ref.sum(), 1e-4) for c in ref]
    q = [max(c / cur.sum(), 1e-4) for c in cur]
    return float(sum((qi - pi) * math.log(qi / pi) for pi, qi in zip(p, q, strict=True)))


@pytest.mark.parametrize("k", BINS, ids=[f"{k}bins" for k in BINS])
@pytest.mark.parametrize("seed", SEEDS)
def test_psi_matches_the_formula(seed: int, k: int) -> None:
    """PSI equals the textbook sum, empty bins included (floored, so finite)."""
    ref, cur = count_pair(seed, k)
    assert EPSILON == 1e-4
    value = psi(ref, cur)
    assert math.isfinite(value) and value > 0
    assert value == pytest.approx(psi_formula(ref, cur), rel=STAT)
    assert psi(cur, ref) == pytest.approx(value, rel=STAT)  # symmetric


def test_psi_of_equal_shares_is_zero() -> None:
    """Counts with the same shares have no PSI, whatever the sample sizes."""
    counts = np.array([10.0, 0.0, 30.0, 60.0])
    assert psi(counts, counts * 7) == 0.0


@pytest.mark.parametrize("k", BINS, ids=[f"{k}bins" for k in BINS])
@pytest.mark.parametrize("seed", SEEDS)
def test_jensen_shannon_matches_scipy(seed: int, k: int) -> None:
    """The Jensen-Shannon distance is scipy's, base 2, in 0..1."""
    ref, cur = count_pair(seed, k)
    ours = jensen_shannon(ref, cur)
    assert 0 < ours <= 1
    assert ours == pytest.approx(float(jensenshannon(ref, cur, base=2)), rel=STAT)


def test_jensen_shannon_bounds() -> None:
    """Equal shares are at distance 0, disjoint supports at 1."""
    assert jensen_shannon(np.array([1.0, 3.0]), np.array([10.0, 30.0])) == pytest.approx(0.0, abs=1e-7)
    assert jensen_shannon(np.array([5.0, 0.0]), np.array([0.0, 7.0])) == pytest.approx(1.0, rel=STAT)


def scipy_chi_square(ref: Floats, cur: Floats) -> tuple[float, float]:
    table = np.vstack([ref, cur])
    table = table[:, table.sum(axis=0) > 0]  # scipy refuses columns with a zero expected count
    result = chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


@pytest.mark.parametrize("k", BINS, ids=[f"{k}bins" for k in BINS])
@pytest.mark.parametrize("seed", SEEDS)
def test_chi_square_matches_scipy(seed: int, k: int) -> None:
    """Pearson's test on the 2 x K table is scipy's without continuity correction, columns empty in both dropped
    (k=2: a 2 x 2 table, where scipy would otherwise correct)."""
    ref, cur = count_pair(seed, k)
    statistic, p_value = chi_square(ref, cur)
    expected_statistic, expected_p = scipy_chi_square(ref, cur)
    assert statistic == pytest.approx(expected_statistic, rel=STAT)
    assert p_value == pytest.approx(expected_p, rel=P_VALUE)


def test_chi_square_two_by_two_by_hand() -> None:
    """A 2 x 2 table: the uncorrected statistic (scipy's default would apply Yates' correction)."""
    ref, cur = np.array([30.0, 70.0]), np.array([45.0, 55.0])
    statistic, p_value = chi_square(ref, cur)
    # Expected counts 37.5 and 62.5 in both rows: 2 * (7.5^2 / 37.5 + 7.5^2 / 62.5) = 4.8.
    assert statistic == pytest.approx(4.8, rel=STAT)
    assert p_value == pytest.approx(float(chi2_contingency(np.vstack([ref, cur]), correction=False).pvalue), rel=1e-6)
    assert p_value < float(chi2_contingency(np.vstack([ref, cur])).pvalue)  # the corrected one is larger


def test_chi_square_with_a_single_non_empty_column_is_no_evidence() -> None:
    """A single category left (after dropping empty columns) cannot show a difference."""
    assert chi_square(np.array([10.0, 0.0, 0.0]), np.array([3.0, 0.0, 0.0])) == (0.0, 1.0)


def pooled_z(x1: float, n1: float, x2: float, n2: float) -> tuple[float, float]:
    """The two-proportion z-test with the pooled variance, two-sided."""
    pooled = (x1 + x2) / (n1 + n2)
    z = (x2 / n2 - x1 / n1) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return z, float(2 * norm.sf(abs(z)))


Z_CASES = [(10, 100, 20, 100), (40, 200, 20, 200), (1, 20000, 30, 500), (500, 1000, 520, 1000), (3, 7, 5, 9)]


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), Z_CASES, ids=[f"{a}of{b}-{c}of{d}" for a, b, c, d in Z_CASES])
def test_z_test_matches_the_pooled_formula_and_the_two_by_two_chi_square(x1: int, n1: int, x2: int, n2: int) -> None:
    """z as the pooled formula (positive when the current share is higher); z squared is the 2 x 2 chi-square and
    the p-values agree with scipy's."""
    z, p_value = z_test((x1, x2), (n1, n2))
    expected_z, expected_p = pooled_z(x1, n1, x2, n2)
    assert z == pytest.approx(expected_z, rel=STAT)
    assert p_value == pytest.approx(expected_p, rel=P_VALUE)
    assert (z > 0) == (x2 / n2 > x1 / n1)
    statistic, chi_p = scipy_chi_square(np.array([x1, n1 - x1], dtype=float), np.array([x2, n2 - x2], dtype=float))
    assert z**2 == pytest.approx(statistic, rel=STAT)
    assert p_value == pytest.approx(chi_p, rel=P_VALUE)


@pytest.mark.parametrize(
    ("successes", "totals"),
    [((0, 0), (100, 50)), ((100, 50), (100, 50)), ((3, 1), (0, 10)), ((3, 0), (10, 0))],
    ids=["none-in-both", "all-in-both", "empty-reference", "empty-current"],
)
def test_z_test_without_variance_or_samples_is_no_evidence(
    successes: tuple[float, float], totals: tuple[float, float]
) -> None:
    """All or none in both samples, or an empty sample: z = 0, p = 1."""
    assert z_test(successes, totals) == (0.0, 1.0)


def ks_samples(n1: int, n2: int, seed: int, decimals: int | None) -> tuple[Floats, Floats]:
    rng = np.random.default_rng(seed)
    ref, cur = rng.normal(0, 1, n1), rng.normal(0.03, 1, n2)
    if decimals is not None:  # ties
        ref, cur = ref.round(decimals), cur.round(decimals)
    return ref, cur


SMALL_KS = [(5, 7), (30, 20), (200, 500), (1000, 3000), (10_000, 10_000)]


@pytest.mark.parametrize("decimals", [None, 1], ids=["continuous", "ties"])
@pytest.mark.parametrize(("n1", "n2"), SMALL_KS, ids=[f"{a}v{b}" for a, b in SMALL_KS])
def test_ks_raw_matches_scipy_on_the_exact_path(n1: int, n2: int, decimals: int | None) -> None:
    """At most 10,000 values on either side: ks_2samp's exact p-value."""
    assert max(n1, n2) <= KS_EXACT_MAX
    for seed in range(3):
        ref, cur = ks_samples(n1, n2, seed, decimals)
        statistic, p_value = ks_raw(ref, cur)
        expected = ks_2samp(ref, cur)
        assert statistic == pytest.approx(float(expected.statistic), rel=STAT)
        assert p_value == pytest.approx(float(expected.pvalue), rel=P_VALUE)


LARGE_KS = [(20_000, 50_000), (50_000, 20_000), (500, 20_000), (10_001, 10_001)]


@pytest.mark.parametrize("decimals", [None, 2, 1], ids=["continuous", "ties", "many-ties"])
@pytest.mark.parametrize(("n1", "n2"), LARGE_KS, ids=[f"{a}v{b}" for a, b in LARGE_KS])
def test_ks_raw_matches_scipy_on_the_asymptotic_path(n1: int, n2: int, decimals: int | None) -> None:
    """Above 10,000 values on one side: the statistic read from one sort of each sample, and Smirnov's asymptotic
    p-value, are ks_2samp's, ties included; a presorted reference gives the same."""
    for seed in range(2):
        ref, cur = ks_samples(n1, n2, seed, decimals)
        expected = ks_2samp(ref, cur)
        for statistic, p_value in (ks_raw(ref, cur), ks_raw(np.sort(ref), cur, reference_sorted=True)):
            assert statistic == pytest.approx(float(expected.statistic), rel=STAT)
            assert p_value == pytest.approx(float(expected.pvalue), rel=P_VALUE)


WASSERSTEIN_SIZES = [(5, 7), (100, 1000), (20_000, 50_000)]


@pytest.mark.parametrize("decimals", [None, 1], ids=["continuous", "ties"])
@pytest.mark.parametrize(("n1", "n2"), WASSERSTEIN_SIZES, ids=[f"{a}v{b}" for a, b in WASSERSTEIN_SIZES])
def test_wasserstein_raw_matches_scipy(n1: int, n2: int, decimals: int | None) -> None:
    """W1 is scipy's, as is (scale 1) or divided by the reference's standard deviation; presorted or not."""
    for seed in range(2):
        rng = np.random.default_rng(seed)
        ref, cur = rng.lognormal(1, 0.7, n1), rng.lognormal(1.1, 0.6, n2)
        if decimals is not None:
            ref, cur = ref.round(decimals), cur.round(decimals)
        expected = float(wasserstein_distance(ref, cur))
        scale = float(np.std(ref))
        assert wasserstein_raw(ref, cur, 1.0) == pytest.approx(expected, rel=STAT)
        assert wasserstein_raw(ref, cur, scale) == pytest.approx(expected / scale, rel=STAT)
        assert wasserstein_raw(np.sort(ref), cur, scale, reference_sorted=True) == pytest.approx(
            expected / scale, rel=STAT
        )


def test_wasserstein_raw_of_a_constant_reference_is_not_divided() -> None:
    """A constant reference (standard deviation 0): W1 itself."""
    ref, cur = np.full(10, 3.0), np.array([3.0, 4.0, 5.0, 6.0])
    assert wasserstein_raw(ref, cur, 0.0) == pytest.approx(float(wasserstein_distance(ref, cur)), rel=STAT)
    assert wasserstein_raw(ref, cur, 0.0) == pytest.approx(1.5, rel=STAT)


# --- binned statistics -----------------------------------------------------------------------------------------------


def numeric_reference(values: Floats, nulls: int = 0) -> tuple[Binned, dict[str, Any], Floats]:
    """The reference of a numeric feature from its non-missing values: binned (from the profile), its profile, and
    its values sorted."""
    profile = numeric_feature(values, nulls)
    return from_profile(profile), profile, np.sort(values)


def numeric_current(values: Floats, profile: dict[str, Any], raw: bool) -> Current:
    """A current numeric sample (NaN missing): its counts in the profile's bins, as a live sketch gives, and with
    ``raw`` its values and how many are below the reference's minimum and above its maximum, as batch data gives."""
    counts, missing = bin_numeric(values, profile["edges"])
    binned = Binned("numeric", counts, float(missing))
    if not raw:
        return Current(binned)
    present = values[~np.isnan(values)]
    below, above = int(np.count_nonzero(present < profile["min"])), int(np.count_nonzero(present > profile["max"]))
    return Current(binned, present, (below, above))


def test_identical_shares_have_no_binned_drift() -> None:
    """The same shares (different sizes): ks_binned 0 with p = 1, wasserstein_binned 0."""
    reference, _, _ = numeric_reference(np.random.default_rng(0).normal(0, 1, 5000))
    assert ks_binned(reference.counts, reference.counts * 3) == (0.0, 1.0)
    assert wasserstein_binned(reference, reference.counts * 3) == 0.0
    assert jensen_shannon(reference.counts, reference.counts * 3) == pytest.approx(0.0, abs=1e-7)


def test_empty_binned_sample_is_no_evidence() -> None:
    """ks_binned of an empty sample: statistic 0, p = 1."""
    assert ks_binned(np.array([3.0, 4.0]), np.zeros(2)) == (0.0, 1.0)


def continuous(distribution: str, rng: np.random.Generator, n: int) -> Floats:
    if distribution == "normal":
        return rng.normal(0, 1, n)
    return rng.lognormal(0, 1, n) if distribution == "lognormal" else rng.random(n)


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.2, 1.0])
@pytest.mark.parametrize("distribution", ["normal", "lognormal", "uniform"])
def test_ks_binned_is_a_lower_bound_of_the_exact_statistic(distribution: str, shift: float) -> None:
    """The largest gap at the profile's decile edges never exceeds the exact KS statistic of the raw values, and its
    p-value is Smirnov's asymptotic one for these sizes (so never below the exact-statistic's)."""
    for seed in range(3):
        rng = np.random.default_rng(seed)
        ref_values = continuous(distribution, rng, 5000)
        cur_values = continuous(distribution, rng, 800) + shift * float(ref_values.std())
        reference, profile, _ = numeric_reference(ref_values)
        counts, _ = bin_numeric(cur_values, profile["edges"])
        statistic, p_value = ks_binned(reference.counts, counts)
        exact = ks_2samp(ref_values, cur_values, method="asymp")
        assert statistic <= float(exact.statistic) + 1e-12
        assert p_value >= float(exact.pvalue) - 1e-12
        if shift >= 1.0:  # a clear shift is still found at the bin edges
            assert statistic >= 0.5 * float(exact.statistic) and p_value < 0.01


def test_ks_binned_is_exact_with_a_bin_per_value() -> None:
    """A numeric feature with few distinct values (a bin per value): the binned statistic is the exact one and the
    p-value is ks_2samp's asymptotic p-value."""
    rng = np.random.default_rng(4)
    values = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    ref_values = rng.choice(values, 3000, p=[0.4, 0.3, 0.15, 0.1, 0.05])
    cur_values = rng.choice(values, 700, p=[0.35, 0.3, 0.2, 0.1, 0.05])
    reference, profile, _ = numeric_reference(ref_values)
    assert profile["edges"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    counts, _ = bin_numeric(cur_values, profile["edges"])
    statistic, p_value = ks_binned(reference.counts, counts)
    expected = ks_2samp(ref_values, cur_values, method="asymp")
    assert statistic == pytest.approx(float(expected.statistic), rel=STAT)
    assert p_value == pytest.approx(float(expected.pvalue), rel=P_VALUE)


# Measured with seeds 0-19, 20,000 reference and 20,000 current values, normal data on decile bins: binned / exact
# normalised W1 = 0.72-0.83 for shifts of 0.1-1 standard deviation (mean 0.80 at 0.1 and 0.2, 0.78 at 0.5, 0.73 at
# 1; 0.72-0.84 at 0.05). The binned value reads low: the outer bins count at their inner edge (zero width), so the
# gap beyond the first and last inner deciles is left out, the more so as the shift moves mass into an outer bin.
# Lognormal(0, 0.5) data: 0.70-0.86.
WASSERSTEIN_BINNED_RATIO = (0.7, 0.9)


@pytest.mark.parametrize("shift", [0.1, 0.2, 0.5, 1.0])
def test_wasserstein_binned_is_close_to_the_exact_for_a_location_shift(shift: float) -> None:
    """On decile bins, a location shift of a normal feature: the binned normalised W1 is 0.7-0.9 of the exact one
    (measured: 0.72-0.83)."""
    low, high = WASSERSTEIN_BINNED_RATIO
    for seed in range(5):
        rng = np.random.default_rng(seed)
        ref_values = rng.normal(10, 2, 20_000)
        cur_values = rng.normal(10, 2, 20_000) + shift * float(ref_values.std())
        reference, profile, sorted_ref = numeric_reference(ref_values)
        assert reference.maximum == profile["edges"][-1]  # decile bins: the maximum is the last edge
        counts, _ = bin_numeric(cur_values, profile["edges"])
        binned = wasserstein_binned(reference, counts)
        exact = wasserstein_raw(sorted_ref, cur_values, float(ref_values.std()), reference_sorted=True)
        assert exact == pytest.approx(shift, abs=0.02)
        assert low <= binned / exact <= high, (seed, binned, exact)


BIN_PER_VALUE = {"equally-spaced": [0.0, 1.0, 2.0, 3.0, 4.0], "unequally-spaced": [-3.0, 0.5, 1.0, 7.0, 20.0, 21.5]}


@pytest.mark.parametrize("values", list(BIN_PER_VALUE.values()), ids=list(BIN_PER_VALUE))
def test_wasserstein_binned_is_exact_with_a_bin_per_value(values: list[float]) -> None:
    """Few distinct values (a bin each, the maximum below the last edge), current values among the reference's: each
    bin's values sit at its value, so the binned W1 is scipy's exact one, divided by the reference's standard
    deviation, whatever the spacing and whether or not the gap of the cumulative shares changes sign."""
    points = np.array(values)
    sign_changes = 0
    for seed in range(5):
        rng = np.random.default_rng(seed)
        ref_values = rng.choice(points, 4000, p=rng.dirichlet(np.ones(points.size)))
        cur_values = rng.choice(points, 900, p=rng.dirichlet(np.ones(points.size)))
        reference, profile, _ = numeric_reference(ref_values)
        assert profile["edges"][:-1] == values and reference.maximum == values[-1] < profile["edges"][-1]
        counts, _ = bin_numeric(cur_values, profile["edges"])
        gap = np.cumsum(reference.counts / reference.size - counts / counts.sum())[:-1]
        sign_changes += bool(gap.min() < 0 < gap.max())
        exact = float(wasserstein_distance(ref_values, cur_values)) / float(ref_values.std())
        assert wasserstein_binned(reference, counts) == pytest.approx(exact, rel=STAT), seed
    assert sign_changes >= 2  # not only one-sided changes


def test_wasserstein_binned_by_hand() -> None:
    """Unit bins: the integral of the gap of the cumulative shares, divided by the reference's standard deviation.
    Decile bins (the maximum at the last edge): the gap linear within each inner bin, the outer bins of no width. A
    bin per value (the maximum below the last edge): the gap constant from one value to the next."""
    edges = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    deciles = Binned("numeric", np.full(5, 20.0), edges=edges, std=2.0, minimum=0.0, maximum=5.0)
    # Current shares 0.2, 0.35, 0, 0.25, 0.2: the gaps at the edges are 0, 0, -0.15, 0.05, 0, 0. Over [1, 2] a
    # triangle of 0.075; over [2, 3] the gap changes sign: two triangles, 0.15^2 / 0.4 + 0.05^2 / 0.4 = 0.0625 (not
    # the trapezoid's 0.05); over [3, 4] 0.025. W1 = 0.1625, divided by the std 2.
    assert wasserstein_binned(deciles, np.array([4.0, 7.0, 0.0, 5.0, 4.0])) == pytest.approx(0.08125, rel=STAT)
    # Current shares 0.4, 0.2, 0.2, 0.2, 0: the gaps at the edges are 0, -0.2, -0.2, -0.2, -0.2, 0. The outer bins,
    # open, have no width: 0.2 over each of the three inner bins, W1 = 0.6 (their unit width would add 0.2).
    shifted = np.array([8.0, 4.0, 4.0, 4.0, 0.0])
    assert wasserstein_binned(deciles, shifted) == pytest.approx(0.3, rel=STAT)
    # The same counts with a bin per value (0 to 4, the maximum 4 below the last edge 5): the gap -0.2 from each
    # value to the next, W1 = 0.8, as scipy's on the values themselves.
    per_value = replace(deciles, maximum=4.0)
    assert wasserstein_binned(per_value, shifted) == pytest.approx(0.4, rel=STAT)
    ref_values, cur_values = np.repeat(np.arange(5.0), 20), np.repeat(np.arange(5.0), [8, 4, 4, 4, 0])
    assert float(wasserstein_distance(ref_values, cur_values)) == pytest.approx(0.8, rel=STAT)
    # A constant reference (a single edge): no binned distance.
    constant = Binned("numeric", np.array([10.0]), edges=(3.0,), std=0.0)
    assert wasserstein_binned(constant, np.array([4.0])) == 0.0


# --- profiles and binning --------------------------------------------------------------------------------------------


def test_from_profile_numeric() -> None:
    """A numeric profile entry: its counts, nulls, edges and moments."""
    values = np.random.default_rng(2).normal(5, 2, 1000)
    profile = numeric_feature(values, 7)
    reference = from_profile(profile)
    assert reference.kind == "numeric"
    np.testing.assert_array_equal(reference.counts, profile["counts"])
    assert reference.size == 1000 and reference.nulls == 7.0
    assert reference.edges == tuple(profile["edges"]) and len(reference.edges) == len(reference.counts) + 1
    assert reference.mean == pytest.approx(values.mean()) and reference.std == pytest.approx(values.std())
    assert (reference.minimum, reference.maximum) == (values.min(), values.max())


def test_from_profile_categorical_appends_the_other_bin() -> None:
    """A categorical profile entry: its categories' counts (most frequent first) then every other value together."""
    categories = [f"c{i}" for i in range(25)]
    counts = list(range(100, 125))
    profile = categorical_feature(categories, counts, 3)
    reference = from_profile(profile)
    assert reference.kind == "categorical" and reference.nulls == 3.0
    assert reference.counts.tolist() == [float(c) for c in range(124, 104, -1)] + [sum(range(100, 105))]
    assert reference.size == sum(counts)


def test_bin_numeric_outer_bins_are_open_and_nan_is_missing() -> None:
    """Bins as numpy.histogram's (lower edge in, the last bin holding the last edge); below the first edge counts
    in the first bin, above the last in the last; NaN is missing."""
    edges = [0.0, 1.0, 2.0, 3.0]
    values = np.array([-5.0, 0.0, 0.5, 1.0, 1.999, 2.0, 3.0, 100.0, np.nan, np.nan, -np.inf, np.inf])
    counts, missing = bin_numeric(values, edges)
    assert counts.tolist() == [4.0, 2.0, 4.0] and missing == 2
    inside = values[(values >= 0) & (values <= 3)]  # the rest: -5 and -inf below, 100 and inf above
    assert (counts - [2.0, 0.0, 2.0]).tolist() == np.histogram(inside, bins=edges)[0].tolist()


@pytest.mark.parametrize("seed", SEEDS)
def test_bin_numeric_reproduces_the_profile_counts(seed: int) -> None:
    """The reference's own values counted in its profile's bins are the profile's counts (deciles, a bin per value,
    a constant)."""
    rng = np.random.default_rng(seed)
    for values in (rng.lognormal(0, 1, 3000), rng.integers(0, 6, 3000).astype(float), np.full(50, 2.5)):
        profile = numeric_feature(values, 0)
        counts, missing = bin_numeric(values, profile["edges"])
        assert counts.tolist() == profile["counts"] and missing == 0


def test_bin_numeric_constant_feature_has_one_bin() -> None:
    """A constant feature (one edge): every present value in its one bin."""
    counts, missing = bin_numeric(np.array([2.5, 7.0, np.nan, -1.0]), [2.5])
    assert counts.tolist() == [3.0] and missing == 1


def test_bin_categorical() -> None:
    """Counts per profile category, every unknown value in the last ("other") bin, None missing, booleans counted
    as "true" / "false" and other values as their string."""
    categories = ["a", "b", "true", "false", "1"]
    values = ["a", "b", "a", None, True, False, False, 1, "1", "zzz", 2.5, None, "A"]
    counts, missing = bin_categorical(values, categories)
    assert counts.tolist() == [2.0, 1.0, 1.0, 2.0, 2.0, 3.0] and missing == 2
    counts, missing = bin_categorical([], categories)
    assert counts.tolist() == [0.0] * 6 and missing == 0


# --- the automatic choice --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "reference", "current", "categories", "method"),
    [
        ("numeric", 20_000, 500, 0, "ks"),
        ("numeric", 20_000, LARGE - 1, 0, "ks"),
        ("numeric", 500, 20_000, 0, "ks"),  # the smaller side decides
        ("numeric", 20_000, LARGE + 1, 0, "wasserstein"),
        ("numeric", LARGE + 1, 200_000, 0, "wasserstein"),
        ("categorical", 20_000, 500, 8, "chiSquare"),
        ("categorical", 800, 20_000, 8, "chiSquare"),
        ("categorical", 20_000, 500, 2, "zTest"),
        ("categorical", 20_000, 500, 3, "chiSquare"),
        ("categorical", 20_000, LARGE + 1, 8, "jensenShannon"),
        ("categorical", 20_000, 5000, 2, "jensenShannon"),
    ],
    ids=lambda v: str(v),
)
def test_choose(kind: str, reference: int, current: int, categories: int, method: str) -> None:
    """Tests below 1,000 samples on the smaller side, distances above; zTest for two categories."""
    assert choose(kind, reference, current, categories) == method


# --- one feature -----------------------------------------------------------------------------------------------------

CATEGORIES = [f"k{i}" for i in range(8)]
CATEGORY_SHARES = [0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.05, 0.02]


def categorical_reference(seed: int, n: int = 20_000, nulls: int = 0) -> tuple[Binned, dict[str, Any]]:
    counts = np.random.default_rng(seed).multinomial(n, CATEGORY_SHARES)
    profile = categorical_feature(CATEGORIES, counts.tolist(), nulls)
    return from_profile(profile), profile


@pytest.fixture(scope="module")
def normal_reference() -> tuple[Binned, dict[str, Any], Floats]:
    return numeric_reference(np.random.default_rng(11).normal(50, 10, 20_000))


@pytest.mark.parametrize("raw", [False, True], ids=["binned", "raw"])
@pytest.mark.parametrize(("size", "method"), [(500, "ks"), (5000, "wasserstein")])
def test_a_shifted_numeric_feature_drifts_and_an_unshifted_one_does_not(
    normal_reference: tuple[Binned, dict[str, Any], Floats], size: int, method: str, raw: bool
) -> None:
    """Half a standard deviation of shift drifts (the reason names the distribution signal); a sample from the
    reference distribution does not (reason empty)."""
    reference, profile, sorted_ref = normal_reference
    rng = np.random.default_rng(12)
    kwargs: dict[str, Any] = {"reference_raw": sorted_ref} if raw else {}

    shifted = compare("amount", reference, numeric_current(rng.normal(55, 10, size), profile, raw), **kwargs)
    assert shifted.method == method and shifted.verdict == "Drifted"
    assert shifted.samples == size and shifted.missing_share == 0.0
    assert shifted.reason.startswith(f"distribution ({method} ")
    assert shifted.statistic is not None
    if method == "ks":
        assert shifted.p_value is not None and shifted.p_value < 1e-6
    else:
        # Exact, about the shift of 0.5; binned on deciles, 0.7-0.9 of it (WASSERSTEIN_BINNED_RATIO).
        assert shifted.p_value is None and shifted.statistic >= (0.45 if raw else 0.35)

    same = compare("amount", reference, numeric_current(rng.normal(50, 10, size), profile, raw), **kwargs)
    assert same.method == method and same.verdict == "NotDrifted" and same.reason == ""
    assert [s.name for s in same.signals] == ["distribution", *(["outOfRange"] if raw else [])]
    assert not any(s.drifted for s in same.signals)


def test_raw_and_binned_statistics_are_the_exact_and_the_binned_ones(
    normal_reference: tuple[Binned, dict[str, Any], Floats],
) -> None:
    """With raw values the distribution signal is ks_raw / wasserstein_raw's, without them ks_binned /
    wasserstein_binned's."""
    reference, profile, sorted_ref = normal_reference
    values = np.random.default_rng(13).normal(51, 10, 3000)
    counts, _ = bin_numeric(values, profile["edges"])
    scale = float(np.std(sorted_ref))
    for method, raw_value, binned_value in (
        ("ks", ks_raw(sorted_ref, values)[0], ks_binned(reference.counts, counts)[0]),
        ("wasserstein", wasserstein_raw(sorted_ref, values, scale), wasserstein_binned(reference, counts)),
    ):
        settings = FeatureSettings(method)
        exact = compare("x", reference, numeric_current(values, profile, True), settings, reference_raw=sorted_ref)
        binned = compare("x", reference, numeric_current(values, profile, False), settings)
        assert exact.statistic == pytest.approx(raw_value, rel=STAT)
        assert binned.statistic == pytest.approx(binned_value, rel=STAT)


@pytest.mark.parametrize("size", [500, 5000])
def test_missing_values_appearing_are_flagged_on_their_own(
    normal_reference: tuple[Binned, dict[str, Any], Floats], size: int
) -> None:
    """From 0 % to 10 % missing with the present values' distribution unchanged: the missing signal drifts (one rule
    at every size: the two-proportion z-test, its statistic the share difference), the distribution does not."""
    reference, profile, sorted_ref = normal_reference
    values = np.random.default_rng(14).normal(50, 10, size)
    values[: size // 10] = np.nan
    for raw in (False, True):
        result = compare("amount", reference, numeric_current(values, profile, raw),
                         reference_raw=sorted_ref if raw else None)  # fmt: skip
        signals = {s.name: s for s in result.signals}
        assert result.verdict == "Drifted" and result.missing_share == pytest.approx(0.1)
        assert result.samples == size - size // 10
        missing = signals["missing"]
        assert missing.drifted and missing.method == "zTest" and missing.threshold == DEFAULT_THRESHOLDS["zTest"]
        assert missing.statistic == pytest.approx(0.1, rel=STAT)
        assert missing.p_value == pytest.approx(z_test((0, size // 10), (20_000, size))[1], rel=STAT)
        assert not signals["distribution"].drifted
        assert result.reason.startswith("missing (zTest p=")


def test_a_small_missing_change_among_many_samples_is_not_flagged(
    normal_reference: tuple[Binned, dict[str, Any], Floats],
) -> None:
    """Many samples: a missing share 0.5 points off is significant (p far below the cut) but below MISSING_DELTA,
    so not flagged; 1 point off is."""
    reference, profile, _ = normal_reference
    values = np.random.default_rng(15).normal(50, 10, 20_000)
    values[:100] = np.nan
    result = compare("amount", reference, numeric_current(values, profile, False))
    signals = {s.name: s for s in result.signals}
    assert signals["missing"].statistic == pytest.approx(0.005) and not signals["missing"].drifted
    assert signals["missing"].p_value is not None and signals["missing"].p_value < 1e-10
    assert result.verdict == "NotDrifted"
    values[:200] = np.nan
    result = compare("amount", reference, numeric_current(values, profile, False))
    signals = {s.name: s for s in result.signals}
    assert signals["missing"].statistic == pytest.approx(MISSING_DELTA) and signals["missing"].drifted
    assert result.verdict == "Drifted" and result.reason.startswith("missing (zTest p=")


def test_a_missing_change_by_chance_in_a_small_window_is_not_flagged() -> None:
    """5 % missing in the reference, 8 of 100 in the window: a difference above MISSING_DELTA, but not significant
    (p = 0.17), so not flagged; 20 of 100 is."""
    values = np.random.default_rng(19).normal(50, 10, 19_000)
    reference, profile, _ = numeric_reference(values, 1000)
    for missing, drifted in ((8, False), (20, True)):
        window = np.random.default_rng(20).normal(50, 10, 100)
        window[:missing] = np.nan
        signal = next(s for s in compare("amount", reference, numeric_current(window, profile, False)).signals
                      if s.name == "missing")  # fmt: skip
        assert signal.statistic == pytest.approx(missing / 100 - 0.05, rel=STAT)
        assert signal.statistic is not None and signal.statistic >= MISSING_DELTA
        assert signal.p_value == pytest.approx(z_test((1000, missing), (20_000, 100))[1], rel=STAT)
        assert signal.p_value is not None and (signal.p_value < 0.05 / 2) == drifted == signal.drifted


def test_values_outside_the_reference_range_are_flagged(
    normal_reference: tuple[Binned, dict[str, Any], Floats],
) -> None:
    """Five values of 500 above the reference's maximum (or below its minimum): outOfRange drifts, with the exact
    p-value of five beyond the 20,000 reference values; the distribution does not; binned counts alone (a live
    sketch) cannot tell."""
    reference, profile, sorted_ref = normal_reference
    for side, outside in ((1.0, profile["max"] + np.arange(1.0, 6.0)), (-1.0, profile["min"] - np.arange(1.0, 6.0))):
        values = np.random.default_rng(16).normal(50, 10, 500)
        values[:5] = outside
        current = numeric_current(values, profile, True)
        assert current.out_of_range == ((0, 5) if side > 0 else (5, 0))
        result = compare("amount", reference, current, reference_raw=sorted_ref)
        signals = {s.name: s for s in result.signals}
        signal = signals["outOfRange"]
        assert signal.drifted and signal.method == "exchangeable" and signal.statistic == pytest.approx(0.01)
        assert signal.p_value == pytest.approx(2 * beyond_tail(5, 20_000, 500), rel=STAT)
        assert not signals["distribution"].drifted
        assert result.verdict == "Drifted" and result.reason.startswith("outOfRange (exchangeable p=")
        binned = compare("amount", reference, numeric_current(values, profile, False))
        assert binned.verdict == "NotDrifted" and "outOfRange" not in {s.name for s in binned.signals}


@pytest.mark.parametrize(("k", "n", "m"), [(1, 20_000, 500), (5, 20_000, 500), (3, 10, 10), (10, 2_000, 20_000),
                                           (7, 7, 7), (2, 1, 5)])  # fmt: skip
def test_beyond_tail_is_the_chance_that_the_first_k_of_the_pooled_order_are_current(k: int, n: int, m: int) -> None:
    """k of m current values below all n reference values: C(m, k) / C(n + m, k) (the first k of the pooled order
    all current); none needed: 1; more than the current values: 0."""
    assert beyond_tail(k, n, m) == pytest.approx(math.comb(m, k) / math.comb(n + m, k), rel=STAT)
    assert beyond_tail(1, n, m) == pytest.approx(m / (n + m), rel=STAT)
    assert beyond_tail(0, n, m) == 1.0 and beyond_tail(-1, n, m) == 1.0 and beyond_tail(m + 1, n, m) == 0.0
    assert beyond_tail(k + 1, n, m) < beyond_tail(k, n, m)


def test_beyond_tail_matches_a_simulation() -> None:
    """Reference and current from one continuous distribution (200 and 2,000 values: the window outnumbers the
    reference): the share of draws with at least k current values below the reference's minimum is beyond_tail's,
    within three binomial standard errors. A binomial count of independent 1 / (n + 1) chances (the former test)
    is far too thin-tailed: the values share the one reference minimum."""
    rng = np.random.default_rng(40)
    n, m, draws = 200, 2_000, 20_000
    below = np.array([int(np.count_nonzero(rng.random(m) < rng.random(n).min())) for _ in range(draws)])
    for k in (1, 5, 10, 20, 30):
        expected = beyond_tail(k, n, m)
        observed = float(np.mean(below >= k))
        assert abs(observed - expected) <= 3 * math.sqrt(expected * (1 - expected) / draws) + 1e-4, (k, observed)
    assert float(np.mean(below >= 30)) > 0.04 > 1000 * float(binom.sf(29, m, 1 / (n + 1)))


@pytest.mark.parametrize(
    ("below", "above", "n", "m", "expected"),
    [(0, 0, 20_000, 500, 1.0), (0, 5, 20_000, 500, 2 * math.comb(500, 5) / math.comb(20_500, 5)),
     (5, 0, 20_000, 500, 2 * math.comb(500, 5) / math.comb(20_500, 5)),
     (30, 1, 2_000, 20_000, 2 * math.comb(20_000, 30) / math.comb(22_000, 30)), (1, 1, 100, 300, 1.0)],
    ids=["none", "above", "below", "both-sides", "capped"],
)  # fmt: skip
def test_out_of_range_p_doubles_the_smaller_side(below: int, above: int, n: int, m: int, expected: float) -> None:
    """The smaller one-sided p-value, doubled (Bonferroni over the two sides), at most 1."""
    assert out_of_range_p(below, above, n, m) == pytest.approx(expected, rel=STAT)


@pytest.mark.parametrize(("size", "method"), [(500, "chiSquare"), (5000, "jensenShannon")])
def test_a_new_category_is_flagged(size: int, method: str) -> None:
    """10 % of the current values in a category the reference (which kept every category) never had: the unseen
    signal drifts (the two-proportion z-test on the share of other values, at every size)."""
    reference, profile = categorical_reference(20)
    rng = np.random.default_rng(21)
    values: list[Any] = list(rng.choice(CATEGORIES, size - size // 10, p=CATEGORY_SHARES)) + ["new"] * (size // 10)
    counts, missing = bin_categorical(values, profile["categories"])
    result = compare("country", reference, Current(Binned("categorical", counts, float(missing))))
    signals = {s.name: s for s in result.signals}
    assert result.method == method and result.verdict == "Drifted"
    assert reference.counts[-1] == 0
    assert signals["unseen"].drifted and signals["unseen"].method == "zTest"
    assert signals["unseen"].statistic == pytest.approx(0.1, rel=STAT)
    assert signals["unseen"].p_value == pytest.approx(z_test((0, size // 10), (20_000, size))[1], rel=STAT)
    assert "unseen (zTest p=" in result.reason
    same_counts, _ = bin_categorical(list(rng.choice(CATEGORIES, size, p=CATEGORY_SHARES)), profile["categories"])
    same = compare("country", reference, Current(Binned("categorical", same_counts)))
    assert same.verdict == "NotDrifted" and [s.name for s in same.signals] == ["distribution"]


def test_a_new_category_in_a_two_category_feature_is_drift_not_an_error() -> None:
    """A two-category feature whose current window holds a third, unseen value: auto counts the columns with values
    on either side (three), so chiSquare rather than zTest (which would refuse the third column); the unseen signal
    drifts too."""
    reference = from_profile(categorical_feature(["yes", "no"], [600, 400], 0))
    counts, missing = bin_categorical(["yes"] * 50 + ["no"] * 40 + ["maybe"] * 10, ["yes", "no"])
    result = compare("answer", reference, Current(Binned("categorical", counts, float(missing))))
    assert result.method == "chiSquare" and result.verdict == "Drifted"
    assert result.p_value == pytest.approx(scipy_chi_square(reference.counts, counts)[1], rel=P_VALUE)
    assert any(s.name == "unseen" and s.drifted for s in result.signals)
    with pytest.raises(DriftError, match="zTest compares two categories; this one has 3"):
        compare("answer", reference, Current(Binned("categorical", counts)), FeatureSettings("zTest"))


def test_no_unseen_signal_when_the_profile_left_categories_out() -> None:
    """A reference whose profile kept only its 20 most frequent categories (other values counted together): its
    other share is biased low, so the current other share is not tested; the distribution test still sees it."""
    names = [f"c{i:02d}" for i in range(25)]
    reference = from_profile(categorical_feature(names, [1000] * 20 + [10] * 5, 0))
    assert reference.counts[-1] == 50
    current = np.append(np.full(20, 20.0), 100.0)  # a fifth of the window in other values, against 0.25 %
    result = compare("country", reference, Current(Binned("categorical", current)))
    assert [s.name for s in result.signals] == ["distribution"]
    assert result.method == "chiSquare" and result.verdict == "Drifted"


def test_a_two_category_feature_uses_the_z_test() -> None:
    """Two categories, few samples: zTest, the same p-value as z_test on the first category's counts."""
    reference = from_profile(categorical_feature([True, False], [700, 300], 0))
    counts, _ = bin_categorical([True] * 60 + [False] * 40, ["true", "false"])
    result = compare("flag", reference, Current(Binned("categorical", counts)))
    assert result.method == "zTest"
    assert result.p_value == pytest.approx(z_test((700, 60), (1000, 100))[1], rel=STAT)
    assert result.verdict == "Drifted"  # 70 % against 60 %: p = 0.04 < 0.05


def test_below_min_samples_is_no_data_with_a_reason(
    normal_reference: tuple[Binned, dict[str, Any], Floats],
) -> None:
    """Fewer current samples (missing ones included) than min_samples: NoData, and why; at min_samples: judged."""
    reference, profile, _ = normal_reference
    result = compare("amount", reference, numeric_current(np.array([1.0, 2.0, np.nan]), profile, False),
                     min_samples=10)  # fmt: skip
    assert result.verdict == "NoData" and result.reason == "3 samples, fewer than minSamples 10"
    assert result.statistic is None and result.p_value is None and result.signals == ()
    enough = compare("amount", reference, numeric_current(np.full(10, 50.0), profile, False), min_samples=10)
    assert enough.verdict != "NoData"


@pytest.mark.parametrize("method", ["ks", "auto"])
def test_a_reference_without_values_is_no_data(method: str) -> None:
    """A numeric feature missing in every reference row (its profile has no bins): NoData, "the reference has no
    values", with the method named or chosen (auto: ks, from the sizes alone)."""
    empty = from_profile(numeric_feature(np.array([]), 5))
    assert empty.size == 0 and empty.counts.size == 0
    result = compare("amount", empty, Current(Binned("numeric", np.array([4.0]))), FeatureSettings(method))
    assert result.verdict == "NoData" and result.reason == "the reference has no values"
    assert result.method == "ks" and result.signals == ()


def test_a_current_sample_of_missing_values_only(normal_reference: tuple[Binned, dict[str, Any], Floats]) -> None:
    """No present value: no distribution signal; the missing signal still judges (all missing against none)."""
    reference, profile, _ = normal_reference
    result = compare("amount", reference, numeric_current(np.full(50, np.nan), profile, False))
    assert [s.name for s in result.signals] == ["missing"] and result.verdict == "Drifted"
    assert result.statistic is None and result.missing_share == 1.0 and result.samples == 0
    with_nulls = from_profile(numeric_feature(np.arange(10.0), 10))  # half missing in the reference
    result = compare("amount", with_nulls, Current(Binned("numeric", np.zeros(10), 2.0)))
    assert result.verdict == "NotDrifted" and result.reason == "no non-missing values"


@pytest.mark.parametrize("method", ["ks", "wasserstein"])
def test_a_numeric_method_on_a_categorical_feature_is_refused(method: str) -> None:
    """ks and wasserstein need numbers: DriftError naming the feature and the method; so does an unknown method."""
    reference, profile = categorical_reference(3)
    counts, _ = bin_categorical(["k0", "k1"], profile["categories"])
    with pytest.raises(DriftError, match=f"feature 'country': {method} needs a numeric feature"):
        compare("country", reference, Current(Binned("categorical", counts)), FeatureSettings(method))
    with pytest.raises(DriftError, match="unknown method 'foo'"):
        compare("country", reference, Current(Binned("categorical", counts)), FeatureSettings("foo"))


def test_the_reason_names_every_drifted_signal(normal_reference: tuple[Binned, dict[str, Any], Floats]) -> None:
    """A shift and missing values: both in the reason, with their method, p-value and (shared) cut."""
    reference, profile, sorted_ref = normal_reference
    values = np.random.default_rng(17).normal(55, 10, 400)
    values[:80] = np.nan
    result = compare("amount", reference, numeric_current(values, profile, True), reference_raw=sorted_ref)
    assert result.verdict == "Drifted"
    drifted = [s.name for s in result.signals if s.drifted]
    assert drifted == ["distribution", "missing"]
    assert result.reason.startswith("distribution (ks p=") and ", missing (zTest p=" in result.reason
    assert "outOfRange" not in result.reason
    # Three p-value signals share the 0.05 level.
    assert result.reason.count(f"< {0.05 / 3:.3g})") == 2


def test_a_threshold_setting_replaces_the_default(normal_reference: tuple[Binned, dict[str, Any], Floats]) -> None:
    """A 0.6 standard-deviation shift (PSI about 0.36): above the default 0.1, below a configured 0.5."""
    reference, profile, _ = normal_reference
    current = numeric_current(np.random.default_rng(18).normal(56, 10, 5000), profile, False)
    default = compare("amount", reference, current, FeatureSettings("psi"))
    relaxed = compare("amount", reference, current, FeatureSettings("psi", 0.5))
    assert default.threshold == DEFAULT_THRESHOLDS["psi"] and default.verdict == "Drifted"
    assert relaxed.threshold == 0.5 and relaxed.verdict == "NotDrifted"
    assert relaxed.statistic == default.statistic


def with_test(name: str, p_value: float, *, extra: float | None = None, method: str = "ks") -> FeatureResult:
    """A judged feature with a distribution test of this p-value (and, with ``extra``, a missing-share test)."""
    signals = [Signal("distribution", method, 0.1, p_value, 0.05, False)]
    if extra is not None:
        signals.append(Signal("missing", "zTest", 1.0, extra, 0.05, False))
    return decide(FeatureResult(name, method, None, None, 0.05, "NotDrifted", 100, 0.0, tuple(signals)))


def distance(name: str, statistic: float) -> FeatureResult:
    signals = (Signal("distribution", "psi", statistic, None, 0.1, False),)
    return decide(FeatureResult(name, "psi", None, None, 0.1, "NotDrifted", 100, 0.0, signals))


def test_decide_shares_the_level_among_a_features_p_value_signals() -> None:
    """Two p-value signals: each at half the level (0.03 and 0.03 do not drift; 0.02 does, and the reason shows the
    shared cut); distances keep theirs."""
    assert with_test("a", 0.03, extra=0.03).verdict == "NotDrifted"
    result = with_test("a", 0.02, extra=0.03)
    assert result.verdict == "Drifted" and result.reason == "distribution (ks p=0.02 < 0.025)"
    assert result.threshold == 0.025 and result.p_value == 0.02
    assert with_test("a", 0.04).verdict == "Drifted"
    assert distance("b", 0.1).verdict == "Drifted" and distance("b", 0.099).verdict == "NotDrifted"


# --- multiple testing ------------------------------------------------------------------------------------------------


def test_bonferroni_divides_the_test_thresholds_by_the_tested_features() -> None:
    """Four tested features: each distribution test at 0.05 / 4; distances and NoData untouched and not counted."""
    results = [with_test("a", 0.001), with_test("b", 0.012), with_test("c", 0.02), with_test("d", 0.3),
               distance("e", 0.2), distance("f", 0.01),
               FeatureResult("g", "ks", None, None, 0.05, "NoData", 0, None, (), "too few")]  # fmt: skip
    assert [r.verdict for r in results[:4]] == ["Drifted", "Drifted", "Drifted", "NotDrifted"]
    adjusted = adjust(results, "bonferroni")
    assert [r.verdict for r in adjusted] == ["Drifted", "Drifted", "NotDrifted", "NotDrifted", "Drifted",
                                             "NotDrifted", "NoData"]  # fmt: skip
    for r in adjusted[:4]:
        assert r.threshold == pytest.approx(0.05 / 4, rel=STAT)
    assert adjusted[4:] == results[4:]
    # Within a feature the p-value signals then share its adjusted level.
    unadjusted = with_test("a", 0.015, extra=0.9)
    assert unadjusted.verdict == "Drifted" and unadjusted.threshold == 0.025
    shared = adjust([unadjusted, with_test("b", 0.5)], "bonferroni")
    assert shared[0].threshold == pytest.approx(0.05 / 2 / 2) and shared[0].verdict == "NotDrifted"


def benjamini_hochberg(p_values: list[float], alpha: float) -> set[int]:
    """The textbook step-up rule: find the largest k with p_(k) <= k alpha / m; reject the k smallest."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    k = max((rank for rank, i in enumerate(order, 1) if p_values[i] <= rank * alpha / m), default=0)
    return set(order[:k])


BH_SETS = {
    "textbook": [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216],
    "step-up-past-a-gap": [0.005, 0.025, 0.028, 0.9, 0.029],  # p_(2) > 2 * 0.01, yet p_(4) <= 4 * 0.01: 4 drift
    "ties": [0.02, 0.02, 0.02, 0.5, 0.03],
    "none": [0.2, 0.03, 0.5, 0.04],
    "all": [0.001, 0.002, 0.003],
    "boundary": [0.0125, 0.025, 0.0375, 0.05],  # p_(k) at k alpha / m (up to rounding)
}


@pytest.mark.parametrize("p_values", list(BH_SETS.values()), ids=list(BH_SETS))
def test_benjamini_hochberg_drifts_exactly_the_rejected_features(p_values: list[float]) -> None:
    """The features that drift are exactly those the step-up rule rejects; distances are untouched."""
    results = [with_test(f"f{i}", p) for i, p in enumerate(p_values)] + [distance("psi", 0.3)]
    adjusted = adjust(results, "benjaminiHochberg")
    expected = benjamini_hochberg(p_values, 0.05)
    assert {i for i, r in enumerate(adjusted[:-1]) if r.verdict == "Drifted"} == expected
    assert adjusted[-1] == results[-1]
    for r in adjusted[:-1]:
        assert ("distribution" in r.reason) == (r.verdict == "Drifted")


def test_benjamini_hochberg_on_random_p_values() -> None:
    """Many random sets (some true effects among uniform p-values): always the textbook rejections."""
    rng = np.random.default_rng(30)
    for _ in range(200):
        m = int(rng.integers(2, 30))
        p_values = [float(p) for p in np.concatenate([rng.random(m), rng.random(int(rng.integers(0, 5))) * 1e-3])]
        adjusted = adjust([with_test(f"f{i}", p) for i, p in enumerate(p_values)], "benjaminiHochberg")
        assert {i for i, r in enumerate(adjusted) if r.verdict == "Drifted"} == benjamini_hochberg(p_values, 0.05)


def test_no_adjustment_and_a_single_test_leave_results_unchanged() -> None:
    """'none', or a single tested feature: the results as they were."""
    results = [with_test("a", 0.001), with_test("b", 0.04), distance("c", 0.5)]
    assert adjust(results, "none") == results
    single = [with_test("a", 0.04), distance("c", 0.5)]
    assert adjust(single, "bonferroni") == single and adjust(single, "benjaminiHochberg") == single


# --- a dataset -------------------------------------------------------------------------------------------------------


def judged(name: str, verdict: Any) -> FeatureResult:
    return FeatureResult(name, "psi", 0.1, None, 0.1, verdict, 100, 0.0)


def test_dataset_share_and_verdict() -> None:
    """The share of judged features that drifted (NoData and Error not judged), drifted at the share threshold."""
    results = [judged("a", "Drifted"), judged("b", "NotDrifted"), judged("c", "NoData"), judged("d", "Error"),
               judged("e", "NotDrifted"), judged("f", "Drifted")]  # fmt: skip
    at = dataset(results, 0.5)
    assert (at.drifted, at.judged, at.share, at.verdict) == (2, 4, 0.5, "Drifted")
    assert at.features == tuple(results) and at.threshold == 0.5
    assert dataset(results, 0.51).verdict == "NotDrifted"
    none = dataset([judged("a", "NotDrifted")], 0.0)
    assert none.share == 0.0 and none.verdict == "NotDrifted"  # a zero threshold needs at least one drifted


def test_dataset_counts_the_prediction_when_asked() -> None:
    """The prediction is one more feature when it counts, and is kept but not counted otherwise."""
    results = [judged("a", "Drifted"), judged("b", "NotDrifted")]
    prediction = judged("score", "Drifted")
    counted = dataset(results, 0.6, prediction)
    assert (counted.drifted, counted.judged, counted.verdict) == (2, 3, "Drifted")
    assert counted.share == pytest.approx(2 / 3, rel=STAT)
    assert counted.prediction == prediction and counted.features == tuple(results)
    alone = dataset(results, 0.6, prediction, prediction_counts=False)
    assert (alone.drifted, alone.judged, alone.share, alone.verdict) == (1, 2, 0.5, "NotDrifted")
    assert alone.prediction == prediction


def test_dataset_with_nothing_judged() -> None:
    """No judged feature: NoData (Error when a feature failed), no share."""
    nodata = dataset([judged("a", "NoData")], 0.5)
    assert (nodata.verdict, nodata.share, nodata.judged, nodata.drifted) == ("NoData", None, 0, 0)
    assert dataset([], 0.5).verdict == "NoData"
    assert dataset([judged("a", "NoData"), judged("b", "Error")], 0.5).verdict == "Error"
    assert dataset([judged("a", "NoData")], 0.5, judged("p", "NoData")).verdict == "NoData"


# --- calibration -----------------------------------------------------------------------------------------------------
#
# Features drawn from the reference distribution must be flagged at most at the nominal 5 % (plus sampling error).
# A two-sample test is calibrated over draws of both samples, so every window is compared with a fresh reference of
# 20,000 rows (one fixed reference would make the windows' verdicts depend on that one draw: its extremes for
# outOfRange, say). Measured flag rates (seed 0; feature: any signal; bound: 5 % plus three binomial standard errors):
#   500 values, binned (ks, chiSquare), 500 windows: normal (5 % missing) 0.034, lognormal 0.020, five values 0.012,
#     categorical (2 % missing) 0.036 (overall 0.026; bounds 0.079 per feature, 0.065 overall)
#   500 values, raw (ks_2samp's asymptotic path, 20,000 > 10,000), 500 windows: normal 0.030, lognormal 0.034, five
#     values 0.010 (overall 0.025; bounds 0.079, 0.067)
#   200,000 values, binned (wasserstein, jensenShannon), 50 windows: 0.0 for every feature (bounds 0.142, 0.096)
#   200,000 values, raw (wasserstein), 60 windows: normal 0.017, lognormal 0.017 (both from outOfRange, now exact
#     under exchangeability), five values 0.0 (overall 0.011; bounds 0.134, 0.099)

FIVE_VALUES = np.array([0.0, 1.0, 2.0, 3.0, 4.0])


def draw(kind: str, rng: np.random.Generator, n: int) -> Any:
    """``n`` rows of a feature: numeric with NaN missing, or categorical as category indices (8 is missing)."""
    if kind == "normal":
        values = rng.normal(50, 10, n)
        values[rng.random(n) < 0.05] = np.nan
        return values
    if kind == "lognormal":
        return rng.lognormal(3, 1, n)
    if kind == "fiveValues":
        return rng.choice(FIVE_VALUES, n, p=[0.4, 0.3, 0.15, 0.1, 0.05])
    return rng.choice(9, n, p=[s * 0.98 for s in CATEGORY_SHARES] + [0.02])


def judge_window(kind: str, rng: np.random.Generator, size: int, raw: bool) -> FeatureResult:
    """A fresh reference of 20,000 rows, profiled, and one current window of ``size`` rows, compared with the
    default method and thresholds."""
    reference_values, values = draw(kind, rng, 20_000), draw(kind, rng, size)
    if kind == "categorical":
        # Category counts as a sketch gives them (numpy's bincount: bin_categorical's loop is slow for 200,000).
        ref_counts = np.bincount(reference_values, minlength=9)
        profile = categorical_feature(CATEGORIES, ref_counts[:8].tolist(), int(ref_counts[8]))
        counts = np.bincount(values, minlength=9)
        order = [CATEGORIES.index(c) for c in profile["categories"]]
        current = Binned("categorical", np.append(counts[order], 0.0).astype(np.float64), float(counts[8]))
        return compare(kind, from_profile(profile), Current(current))
    present = reference_values[~np.isnan(reference_values)]
    reference, profile, sorted_ref = numeric_reference(present, int(reference_values.size - present.size))
    return compare(kind, reference, numeric_current(values, profile, raw), reference_raw=sorted_ref if raw else None)


def binomial_bound(rate: float, n: int) -> float:
    """The largest flag rate consistent with ``rate`` over ``n`` independent trials (one-sided, 3 sigma)."""
    return rate + 3 * math.sqrt(rate * (1 - rate) / n)


CALIBRATION = [
    # size, windows, raw, default methods
    (500, 500, False, {"normal": "ks", "lognormal": "ks", "fiveValues": "ks", "categorical": "chiSquare"}),
    (500, 500, True, {"normal": "ks", "lognormal": "ks", "fiveValues": "ks"}),
    (
        200_000,
        50,
        False,
        {
            "normal": "wasserstein",
            "lognormal": "wasserstein",
            "fiveValues": "wasserstein",
            "categorical": "jensenShannon",
        },
    ),
    (200_000, 60, True, {"normal": "wasserstein", "lognormal": "wasserstein", "fiveValues": "wasserstein"}),
]


@pytest.mark.parametrize(
    ("size", "windows", "raw", "methods"),
    CALIBRATION,
    ids=[f"{size}-{'raw' if raw else 'binned'}" for size, _, raw, _ in CALIBRATION],
)
def test_features_from_the_reference_distribution_are_flagged_at_most_at_the_nominal_rate(
    size: int, windows: int, raw: bool, methods: dict[str, str]
) -> None:
    """Default methods and thresholds, with binned current counts (a live sketch) and raw values (batch data): the
    share of flagged features stays within the 5 % level plus three binomial standard errors."""
    rng = np.random.default_rng(0)
    flagged: Counter[str] = Counter()
    by_signal: Counter[tuple[str, str]] = Counter()
    for _ in range(windows):
        for kind, method in methods.items():
            result = judge_window(kind, rng, size, raw)
            assert result.method == method
            flagged[kind] += result.verdict == "Drifted"
            by_signal.update((kind, s.name) for s in result.signals if s.drifted)
    rates = {kind: flagged[kind] / windows for kind in methods}
    overall = sum(flagged.values()) / (windows * len(methods))
    path = "raw" if raw else "binned"
    per_feature = ", ".join(f"{kind} ({methods[kind]}) {rate:.4f}" for kind, rate in rates.items())
    per_signal = ", ".join(f"{kind}/{name} {n / windows:.4f}" for (kind, name), n in sorted(by_signal.items()))
    print(f"\ncalibration {size} {path}: overall {overall:.4f}; {per_feature}; drifted signals: {per_signal}")
    assert overall <= binomial_bound(0.05, windows * len(methods)), (overall, dict(by_signal))
    for kind, rate in rates.items():
        assert rate <= binomial_bound(0.05, windows), (kind, rate, dict(by_signal))


def test_out_of_range_is_calibrated_when_the_window_outnumbers_the_reference() -> None:
    """Current windows ten times the reference's size, both from one continuous distribution: the outOfRange signal
    alone (binned counts plus the counts below and above the range) flags at most 5 % plus sampling error. Its
    p-value is exact under exchangeability (the values share the reference's minimum and maximum, so a binomial
    count would be far too spread). Measured: 0.0425 of 400 windows (2,000 reference rows, 20,000 current; the
    distribution method is wasserstein, a distance, so outOfRange has the whole 0.05), against a bound of 0.083."""
    rng = np.random.default_rng(1)
    windows, flagged = 400, 0
    for _ in range(windows):
        reference, profile, _ = numeric_reference(rng.normal(0, 1, 2_000))
        values = rng.normal(0, 1, 20_000)
        counts, _ = bin_numeric(values, profile["edges"])
        outside = (int(np.count_nonzero(values < profile["min"])), int(np.count_nonzero(values > profile["max"])))
        result = compare("x", reference, Current(Binned("numeric", counts), None, outside))
        assert [s.name for s in result.signals] == ["distribution", "outOfRange"] and result.method == "wasserstein"
        flagged += any(s.name == "outOfRange" and s.drifted for s in result.signals)
    print(f"\noutOfRange, 20,000 current against 2,000 reference rows: {flagged / windows:.4f}")
    assert flagged / windows <= binomial_bound(0.05, windows)


@pytest.mark.parametrize("size", [500, 200_000])
def test_a_feature_with_more_categories_than_the_profile_keeps_is_calibrated(size: int) -> None:
    """40 equally likely categories (the profile keeps the 20 most frequent; the rest are "other"), reference and
    current from that one distribution: flagged at most at 5 % plus sampling error. The profile's top 20 are the
    categories the reference drew most often, so its "other" share is biased low (about 0.482 against 0.5): no
    unseen signal is made from it, and the distribution test alone judges. Measured: 0.040 of 1,000 windows at 500
    values (chiSquare; bound 0.071) and 0.0 of 50 at 200,000 (jensenShannon; bound 0.142)."""
    rng = np.random.default_rng(2)
    names = [f"c{i:02d}" for i in range(40)]
    windows, flagged = (1000 if size == 500 else 50), 0
    for _ in range(windows):
        profile = categorical_feature(names, rng.multinomial(20_000, np.full(40, 1 / 40)).tolist(), 0)
        counts = rng.multinomial(size, np.full(40, 1 / 40))
        kept = counts[[names.index(c) for c in profile["categories"]]]
        current = Binned("categorical", np.append(kept, size - kept.sum()).astype(np.float64))
        result = compare("country", from_profile(profile), Current(current))
        assert [s.name for s in result.signals] == ["distribution"]
        flagged += result.verdict == "Drifted"
    print(f"\n40 categories, {size} values: {flagged / windows:.4f}")
    assert flagged / windows <= binomial_bound(0.05, windows)
