"""Drift of a feature, and of a dataset, between a reference and a current sample: one pure implementation for the
DriftMonitor controller (live counts from the servers' sketches) and the ``mlops-operator drift`` command (raw
values of two datasets, or a profile and a dataset).

Two kinds of input, one set of conventions:

- **Raw values** (batch data): numeric arrays (NaN is missing) or categorical arrays (None is missing). Every
  statistic is exact: KS as ``scipy.stats.ks_2samp`` with its defaults (two-sided; exact p-value when both samples
  have at most 10,000 values, else Smirnov's asymptotic distribution with n = round(n1 n2 / (n1 + n2))),
  Wasserstein W1 as ``scipy.stats.wasserstein_distance``.
- **Binned counts** (a reference profile, and live counts in its bins): numeric features in the profile's bins
  (decile edges; the outer bins open: a value below the first edge counts in the first bin, above the last in the
  last), categorical features in the profile's categories plus one bin for every other value. KS is then computed
  on the bins' cumulative shares (the largest gap at a bin edge: a lower bound of the exact statistic), with the
  p-value of the asymptotic distribution; Wasserstein integrates the gap between the two cumulative distributions
  with values spread evenly within each inner bin (the outer bins, open, count at their inner edge; a profile with a
  bin per value counts each bin's values at its value, which is exact).

Methods: ``psi`` (population stability index, natural log, shares floored at ``EPSILON`` = 1e-4 so empty bins stay
finite; a distance, drift at >= 0.1 by default), ``jensenShannon`` (the Jensen-Shannon distance, base 2, in 0..1;
>= 0.1), ``wasserstein`` (W1 divided by the reference's standard deviation; >= 0.1), ``ks`` (p-value < 0.05),
``chiSquare`` (Pearson's test on the 2 x K table of reference and current counts, empty columns dropped, no
continuity correction; p < 0.05), ``zTest`` (two proportions, pooled, two-sided: for a feature with two
categories; p < 0.05). Numeric data is put in the reference's bins for psi, jensenShannon and chiSquare.

The automatic choice (``auto``): tests below ``LARGE`` (1,000) samples on the smaller side, distances above, so
that a large window is not flagged for a trivial shift that a test would find significant: numeric ``ks`` /
``wasserstein``; categorical ``chiSquare`` (``zTest`` for two categories) / ``jensenShannon``.

Data quality, tested on its own: missing values are left out of the distributions and their share is compared with
the reference's (a two-proportion z-test, and a difference of at least ``MISSING_DELTA``: chance is not flagged in a
small window, nor a trivial change in a large one); for numeric raw data, the values below the reference's minimum
and above its maximum (exact under exchangeability: the chance that k of m values come before all n reference
values is prod (m - i) / (n + m - i), each side, doubled); for categorical features whose reference kept every
category, the share of values in none of them (tested like missing values). A feature drifts when any of its signals
does; its p-value signals share the level (Bonferroni within the feature), so a feature from the reference
distribution is flagged at most at the nominal rate. Across features, ``multiple_testing`` adjusts the p-value
methods' levels (Bonferroni, or Benjamini-Hochberg's step-up on the distribution tests).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Method = Literal["psi", "ks", "jensenShannon", "wasserstein", "chiSquare", "zTest"]
Verdict = Literal["Drifted", "NotDrifted", "NoData", "Error"]
MultipleTesting = Literal["none", "bonferroni", "benjaminiHochberg"]

METHODS: tuple[str, ...] = ("psi", "ks", "jensenShannon", "wasserstein", "chiSquare", "zTest")
TESTS = frozenset({"ks", "chiSquare", "zTest"})
"""Methods with a p-value: drift when it is below the threshold. The others are distances: drift at or above it."""
DEFAULT_THRESHOLDS: dict[str, float] = {
    "psi": 0.1, "jensenShannon": 0.1, "wasserstein": 0.1, "ks": 0.05, "chiSquare": 0.05, "zTest": 0.05,
}  # fmt: skip
EPSILON = 1e-4
LARGE = 1000
MISSING_DELTA = 0.01
"""Above LARGE samples, a change of missing (or unseen-category) share of at least this much is drift."""
KS_EXACT_MAX = 10_000
"""scipy.stats.ks_2samp's 'auto' mode: exact p-values when neither sample is larger."""


class DriftError(ValueError):
    """A comparison that cannot be made as asked (a method that does not fit the feature's type, no reference)."""


# --- samples -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Binned:
    """A sample as counts in the reference profile's bins (numeric) or categories plus "other" (categorical)."""

    kind: Literal["numeric", "categorical"]
    counts: npt.NDArray[np.float64]
    """Per bin; for categorical, the profile's categories then every other value together."""
    nulls: float = 0.0
    edges: tuple[float, ...] = ()
    """Numeric: the profile's bin edges (len(counts) + 1, or one edge for a constant feature)."""
    mean: float | None = None
    std: float | None = None
    minimum: float | None = None
    maximum: float | None = None

    @property
    def size(self) -> float:
        return float(self.counts.sum())


def from_profile(feature: Mapping[str, Any]) -> Binned:
    """The reference of one feature from its profile entry (``logic.profile`` format)."""
    if feature["type"] == "numeric":
        return Binned("numeric", np.asarray(feature["counts"], dtype=np.float64), float(feature["nulls"]),
                      tuple(float(e) for e in feature["edges"]), feature.get("mean"), feature.get("std"),
                      feature.get("min"), feature.get("max"))  # fmt: skip
    counts = [*feature["counts"], feature.get("otherCount", 0)]
    return Binned("categorical", np.asarray(counts, dtype=np.float64), float(feature["nulls"]))


def bin_numeric(values: npt.NDArray[np.float64], edges: Sequence[float]) -> tuple[npt.NDArray[np.float64], int]:
    """Counts of non-missing ``values`` in the profile's bins (outer bins open), and how many are missing."""
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    present = values[~missing]
    if len(edges) <= 1:
        return np.array([float(present.size)]), int(missing.sum())
    index = np.searchsorted(np.asarray(edges[1:-1], dtype=np.float64), present, side="right")
    return np.bincount(index, minlength=len(edges) - 1).astype(np.float64), int(missing.sum())


def bin_categorical(values: Sequence[Any], categories: Sequence[str]) -> tuple[npt.NDArray[np.float64], int]:
    """Counts of ``values`` per profile category plus one for every other value, and how many are missing (None)."""
    from mlops_operator.logic.profile import category

    index = {c: i for i, c in enumerate(categories)}
    counts = np.zeros(len(categories) + 1)
    missing = 0
    for value in values:
        if value is None:
            missing += 1
        else:
            counts[index.get(category(value), len(categories))] += 1
    return counts, missing


# --- statistics ------------------------------------------------------------------------------------------------------


def shares(counts: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    total = counts.sum()
    return counts / total if total else np.zeros_like(counts)


def psi(reference: npt.NDArray[np.float64], current: npt.NDArray[np.float64]) -> float:
    """Population stability index of two count vectors over the same bins (natural log, shares floored at
    EPSILON)."""
    p = np.maximum(shares(reference), EPSILON)
    q = np.maximum(shares(current), EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def jensen_shannon(reference: npt.NDArray[np.float64], current: npt.NDArray[np.float64]) -> float:
    """The Jensen-Shannon distance (base 2, in 0..1) of two count vectors over the same bins, as
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)``."""
    p, q = shares(reference), shares(current)
    m = (p + q) / 2

    def kl(a: npt.NDArray[np.float64]) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return math.sqrt(max((kl(p) + kl(q)) / 2, 0.0))


def chi_square(reference: npt.NDArray[np.float64], current: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Pearson's chi-square test of homogeneity on the 2 x K table (columns empty in both dropped; no continuity
    correction), as ``scipy.stats.chi2_contingency(table, correction=False)``: statistic and p-value."""
    from scipy.stats import chi2

    table = np.vstack([reference, current]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return statistic, float(chi2.sf(statistic, table.shape[1] - 1))


def z_test(successes: tuple[float, float], totals: tuple[float, float]) -> tuple[float, float]:
    """Two-proportion z-test (pooled variance, two-sided): z and p-value. Equal proportions with no variance (all
    or none in both) give z = 0 and p = 1."""
    from scipy.stats import norm

    (x1, x2), (n1, n2) = successes, totals
    if n1 == 0 or n2 == 0:
        return 0.0, 1.0
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0:
        return 0.0, 1.0
    z = (x2 / n2 - x1 / n1) / math.sqrt(variance)
    return z, float(2 * norm.sf(abs(z)))


def _merged(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64],
                                                                            npt.NDArray[np.float64]]:  # fmt: skip
    """Both samples' values in order, and the gap F_a - F_b of their empirical CDFs just after each value (valid at
    the last of equal values, where the gap is read). One stable sort of both, cumulative counts: no search."""
    both = np.concatenate([a, b])
    order = np.argsort(both, kind="stable")
    from_a = order < a.size
    gap = np.cumsum(from_a) / a.size - np.cumsum(~from_a) / b.size
    return both[order], gap


def ks_raw(reference: npt.NDArray[np.float64], current: npt.NDArray[np.float64],
           reference_sorted: bool = False) -> tuple[float, float]:  # fmt: skip
    """The two-sample KS statistic and p-value of ``scipy.stats.ks_2samp(reference, current)`` with its defaults.
    Large samples take the asymptotic path without scipy's merge of both samples: the gap is read at every value
    of either sample from one sort of each."""
    from scipy.stats import distributions, ks_2samp

    n1, n2 = reference.size, current.size
    if max(n1, n2) <= KS_EXACT_MAX:
        result = ks_2samp(reference, current)
        return float(result.statistic), float(result.pvalue)
    values, gap = _merged(reference, current)
    last_of_equal = np.append(values[1:] != values[:-1], True)
    d = float(np.max(np.abs(gap[last_of_equal])))
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return d, float(np.clip(distributions.kstwo.sf(d, np.round(en)), 0, 1))


def ks_binned(reference: npt.NDArray[np.float64], current: npt.NDArray[np.float64]) -> tuple[float, float]:
    """KS on binned counts: the largest gap of the cumulative shares at a bin edge, with the asymptotic p-value of
    ks_2samp for samples of these sizes."""
    from scipy.stats import distributions

    n1, n2 = reference.sum(), current.sum()
    if n1 == 0 or n2 == 0:
        return 0.0, 1.0
    d = float(np.max(np.abs(np.cumsum(reference) / n1 - np.cumsum(current) / n2)))
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return d, float(np.clip(distributions.kstwo.sf(d, max(np.round(en), 1)), 0, 1))


def wasserstein_raw(reference: npt.NDArray[np.float64], current: npt.NDArray[np.float64], scale: float,
                    reference_sorted: bool = False) -> float:  # fmt: skip
    """W1 between the samples (as ``scipy.stats.wasserstein_distance``) divided by ``scale`` (the reference's
    standard deviation; a constant reference: not divided)."""
    values, gap = _merged(reference, current)
    # Between two consecutive values the gap is constant; within equal values the width is 0.
    w1 = float(np.sum(np.abs(gap[:-1]) * np.diff(values)))
    return w1 / scale if scale > 0 else w1


def wasserstein_binned(reference: Binned, current: npt.NDArray[np.float64]) -> float:
    """W1 between binned samples over the profile's edges, divided by the reference's standard deviation. A profile
    with a bin per value (its maximum below its last edge) is exact: each bin's values sit at its value. Decile bins
    spread the values evenly within each inner bin and put the outer bins' values at their inner edge (the outer
    bins are open: their width says nothing of where their values are; with only two bins, both outer, each keeps
    its width); on a location shift this reads about 0.8 of the exact W1."""
    edges = np.asarray(reference.edges, dtype=np.float64)
    if edges.size < 2:
        return 0.0
    p, q = shares(reference.counts), shares(current)
    cumulative = np.cumsum(p - q)  # the CDF gap just after each bin's values
    widths = np.diff(edges)
    if reference.maximum is not None and reference.maximum < edges[-1]:
        # A bin per value: the gap is constant from one value to the next; nothing lies past the last value.
        w1 = float(np.sum(np.abs(cumulative[:-1]) * widths[:-1]))
    else:
        gap_at_edges = np.concatenate([[0.0], cumulative])  # the CDF gap at each edge, linear in between
        if widths.size > 2:
            widths[0] = widths[-1] = 0.0
        left, right = gap_at_edges[:-1], gap_at_edges[1:]
        # The integral of |linear| over each bin: the two triangles when the gap changes sign inside it.
        same_sign = left * right >= 0
        area = np.where(same_sign, np.abs(left + right) / 2,
                        (left**2 + right**2) / (2 * np.maximum(np.abs(left) + np.abs(right), 1e-300)))  # fmt: skip
        w1 = float(np.sum(area * widths))
    scale = reference.std or 0.0
    return w1 / scale if scale > 0 else w1


def beyond_tail(k: int, reference: int, current: int) -> float:
    """P(at least ``k`` of ``current`` values fall below the smallest of ``reference`` values), all of them drawn
    from one continuous distribution: the first k of the pooled order are all current ones,
    prod_{i<k} (current - i) / (reference + current - i). (The same for above the largest.)"""
    if k <= 0:
        return 1.0
    if k > current:
        return 0.0
    i = np.arange(k, dtype=np.float64)
    return float(np.exp(np.sum(np.log((current - i) / (reference + current - i)))))


def out_of_range_p(below: int, above: int, reference: int, current: int) -> float:
    """The p-value of ``below`` current values under the reference's minimum and ``above`` over its maximum: the
    smaller one-sided exact p-value (``beyond_tail``), doubled (Bonferroni over the two sides). Exact under
    exchangeability, whatever the sizes: the values share one minimum and one maximum, so they are not
    independent draws of a 2 / (n + 1) chance."""
    return min(1.0, 2 * min(beyond_tail(below, reference, current), beyond_tail(above, reference, current)))


# --- one feature ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signal:
    """One test of a feature: its distribution, its missing share, its values out of range, its unseen categories."""

    name: Literal["distribution", "missing", "outOfRange", "unseen"]
    method: str
    statistic: float | None
    p_value: float | None
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class FeatureResult:
    name: str
    method: str
    """The distribution method used."""
    statistic: float | None
    p_value: float | None
    threshold: float | None
    """The distribution test's threshold as applied (None: an Error without a method)."""
    verdict: Verdict
    samples: int
    """Current non-missing values."""
    missing_share: float | None
    signals: tuple[Signal, ...] = ()
    reason: str = ""
    """Why the verdict (the signals that drifted, NoData's or Error's cause)."""


@dataclass(frozen=True)
class FeatureSettings:
    method: str = "auto"
    threshold: float | None = None


def choose(kind: str, reference_size: float, current_size: float, categories: int = 0) -> str:
    """The automatic method: a test below LARGE samples on the smaller side, a distance above."""
    small = min(reference_size, current_size) <= LARGE
    if kind == "numeric":
        return "ks" if small else "wasserstein"
    if small:
        return "zTest" if categories == 2 else "chiSquare"
    return "jensenShannon"


@dataclass
class Current:
    """The current sample of one feature: raw values (exact) or counts in the reference's bins."""

    binned: Binned
    raw: npt.NDArray[Any] | None = None
    """Numeric raw values without missing ones (batch data), for exact ks and wasserstein."""
    out_of_range: tuple[int, int] | None = None
    """Numeric raw data: values below the reference's minimum, and above its maximum."""


def compare(name: str, reference: Binned, current: Current, settings: FeatureSettings = FeatureSettings(),
            min_samples: int = 1, reference_raw: npt.NDArray[np.float64] | None = None) -> FeatureResult:  # fmt: skip
    """One feature's verdict. ``reference_raw`` (sorted, without missing values) makes ks and wasserstein exact."""
    cur = current.binned
    n_cur, n_ref = cur.size, reference.size
    total_cur = n_cur + cur.nulls
    missing_share = cur.nulls / total_cur if total_cur else None
    categories = 0
    if reference.kind == "categorical":
        # The columns with values on either side: a two-category feature with a new value has three.
        categories = int(np.count_nonzero(reference.counts + cur.counts))
    method = settings.method
    if method == "auto":
        method = choose(reference.kind, n_ref, n_cur, categories)
    if method not in METHODS:
        raise DriftError(f"feature {name!r}: unknown method {method!r} (methods: {', '.join(METHODS)})")
    if reference.kind == "categorical" and method in ("ks", "wasserstein"):
        raise DriftError(f"feature {name!r}: {method} needs a numeric feature; it is categorical")
    threshold = settings.threshold if settings.threshold is not None else DEFAULT_THRESHOLDS[method]
    if total_cur < min_samples or n_ref == 0:
        why = (f"{int(total_cur)} samples, fewer than minSamples {min_samples}" if n_ref
               else "the reference has no values")  # fmt: skip
        return FeatureResult(name, method, None, None, threshold, "NoData", int(n_cur), missing_share, (), why)
    signals: list[Signal] = []
    if n_cur > 0:
        signals.append(_distribution(name, method, threshold, reference, current, reference_raw))
    signals += _quality(reference, current)
    first = FeatureResult(name, method, None, None, threshold, "NotDrifted", int(n_cur), missing_share, tuple(signals))
    return decide(first)


def decide(result: FeatureResult, level: float | None = None) -> FeatureResult:
    """The verdict from the signals: ``level`` replaces the distribution test's threshold (multiple testing across
    features); the p-value signals then share the feature's level (Bonferroni within the feature), so that a
    feature drawn from the reference is flagged at most at that level."""
    if result.verdict == "NoData" or not result.signals:
        return result
    signals = list(result.signals)
    if level is not None:
        signals = [replace(s, threshold=level) if s.name == "distribution" and s.p_value is not None else s
                   for s in signals]  # fmt: skip
    share = sum(1 for s in signals if s.p_value is not None)
    kept: list[Signal] = []
    reasons: list[str] = []
    distribution: tuple[Signal, float] | None = None
    for s in signals:
        if s.p_value is not None:
            cut = s.threshold / share
            # A difference of exactly MISSING_DELTA computes a hair below it (0.06 - 0.05): a tolerance.
            effect = s.name not in ("missing", "unseen") or (s.statistic or 0.0) >= MISSING_DELTA - 1e-12
            drifted = bool(s.p_value < cut and effect)
        else:
            cut = s.threshold
            drifted = bool(s.statistic is not None and s.statistic >= s.threshold)
        # The thresholds kept in the signals are their base ones; the shared cut is in the reason.
        signal = s if s.drifted == drifted else replace(s, drifted=drifted)
        kept.append(signal)
        if drifted:
            reasons.append(_describe(signal, cut))
        if s.name == "distribution":
            distribution = (signal, cut)
    verdict: Verdict = "Drifted" if reasons else "NotDrifted"
    reason = ", ".join(reasons)
    if distribution is None:
        return replace(result, verdict=verdict, signals=tuple(kept), reason=reason or "no non-missing values")
    signal, cut = distribution
    return replace(result, statistic=signal.statistic, p_value=signal.p_value, threshold=cut, verdict=verdict,
                   signals=tuple(kept), reason=reason)  # fmt: skip


def adjust(results: Sequence[FeatureResult], how: MultipleTesting) -> list[FeatureResult]:
    """Multiple testing across features, on the distribution tests (p-value methods) of the judged features:
    Bonferroni (each at threshold / m) or Benjamini-Hochberg (every p-value at or below the largest
    p_(k) <= k threshold / m drifts; the threshold becomes that cut-off)."""
    tested = [r for r in results if r.p_value is not None and r.verdict != "NoData" and r.method in TESTS]
    m = len(tested)
    if how == "none" or m <= 1:
        return list(results)
    base = {r.name: next(s.threshold for s in r.signals if s.name == "distribution") for r in tested}
    if how == "bonferroni":
        cut = {name: t / m for name, t in base.items()}
    else:
        ordered = sorted(tested, key=lambda r: r.p_value or 0.0)
        largest = max((k for k, r in enumerate(ordered, 1) if (r.p_value or 0.0) <= k * base[r.name] / m), default=0)
        # BH rejects exactly the p-values at or below p_(largest): a strict threshold just above it (or, when none
        # passes, the first rank's bound, which every p-value exceeds).
        cut = {
            r.name: (math.nextafter(ordered[largest - 1].p_value or 0.0, math.inf) if largest else base[r.name] / m)
            for r in tested
        }
    return [decide(r, cut[r.name]) if r.name in cut else r for r in results]


def _describe(signal: Signal, cut: float) -> str:
    if signal.p_value is not None:
        return f"{signal.name} ({signal.method} p={signal.p_value:.3g} < {cut:.3g})"
    return f"{signal.name} ({signal.method} {signal.statistic:.3g} >= {cut:.3g})"


def _distribution(name: str, method: str, threshold: float, reference: Binned, current: Current,
                  reference_raw: npt.NDArray[np.float64] | None) -> Signal:  # fmt: skip
    ref, cur = reference.counts, current.binned.counts
    p_value: float | None = None
    if method == "psi":
        statistic = psi(ref, cur)
    elif method == "jensenShannon":
        statistic = jensen_shannon(ref, cur)
    elif method == "chiSquare":
        statistic, p_value = chi_square(ref, cur)
    elif method == "zTest":
        kept = [i for i in range(len(ref)) if ref[i] + cur[i] > 0]
        if len(kept) > 2:
            raise DriftError(f"feature {name!r}: zTest compares two categories; this one has {len(kept)}")
        first = kept[0] if kept else 0
        statistic, p_value = z_test((ref[first], cur[first]), (ref.sum(), cur.sum()))
    elif method == "ks":
        if current.raw is not None and reference_raw is not None:
            statistic, p_value = ks_raw(reference_raw, current.raw.astype(np.float64), reference_sorted=True)
        else:
            statistic, p_value = ks_binned(ref, cur)
    else:  # wasserstein
        if current.raw is not None and reference_raw is not None:
            scale = float(np.std(reference_raw))
            statistic = wasserstein_raw(reference_raw, current.raw.astype(np.float64), scale, reference_sorted=True)
        else:
            statistic = wasserstein_binned(reference, cur)
    return Signal("distribution", method, float(statistic), None if p_value is None else float(p_value), threshold,
                  False)  # fmt: skip


def _proportion(name: Literal["missing", "unseen"], ref: tuple[float, float], cur: tuple[float, float]) -> Signal:
    """A share compared with the reference's: drifted when the two-proportion z-test is significant and the shares
    differ by at least MISSING_DELTA (a large window is not flagged for a trivial change, a small one not for
    chance). The statistic is the absolute difference."""
    (x1, n1), (x2, n2) = ref, cur
    _, p = z_test((x1, x2), (n1, n2))
    delta = float(abs(x2 / n2 - x1 / n1)) if n1 and n2 else 0.0
    return Signal(name, "zTest", delta, float(p), DEFAULT_THRESHOLDS["zTest"], False)


def _quality(reference: Binned, current: Current) -> list[Signal]:
    cur = current.binned
    out: list[Signal] = []
    ref_total, cur_total = reference.size + reference.nulls, cur.size + cur.nulls
    if reference.nulls or cur.nulls:
        out.append(_proportion("missing", (reference.nulls, ref_total), (cur.nulls, cur_total)))
    if reference.kind == "categorical":
        # Only when the reference kept every category (no "other" values): values in the other bin are then new.
        # A profile keeps its most frequent categories, so its other share is biased low: no fair comparison.
        if cur.counts[-1] and cur.size and not reference.counts[-1]:
            out.append(_proportion("unseen", (reference.counts[-1], reference.size), (cur.counts[-1], cur.size)))
    elif current.out_of_range is not None and cur.size and reference.size:
        below, above = current.out_of_range
        p = out_of_range_p(below, above, int(reference.size), int(cur.size))
        share = float((below + above) / cur.size)
        out.append(Signal("outOfRange", "exchangeable", share, p, DEFAULT_THRESHOLDS["ks"], False))
    return out


# --- a dataset -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetResult:
    features: tuple[FeatureResult, ...]
    drifted: int
    """Features (the prediction included when it counts) with verdict Drifted."""
    judged: int
    """Features with verdict Drifted or NotDrifted."""
    share: float | None
    threshold: float
    verdict: Verdict
    prediction: FeatureResult | None = None
    errors: tuple[str, ...] = field(default=())
    window: tuple[float, float] | None = None
    """Batch data with a time column: the rows' time span compared (unix seconds)."""
    performance: Any = None
    """Batch data with labels: a ``logic.performance.Performance``."""


def dataset(results: Sequence[FeatureResult], share_threshold: float, prediction: FeatureResult | None = None,
            prediction_counts: bool = True) -> DatasetResult:  # fmt: skip
    """The dataset's verdict: drifted when the share of judged features that drifted reaches ``share_threshold``
    (the prediction counted as a feature when ``prediction_counts``)."""
    counted = list(results) + ([prediction] if prediction is not None and prediction_counts else [])
    judged = [r for r in counted if r.verdict in ("Drifted", "NotDrifted")]
    drifted = sum(1 for r in judged if r.verdict == "Drifted")
    if not judged:
        verdict: Verdict = "Error" if any(r.verdict == "Error" for r in counted) else "NoData"
        return DatasetResult(tuple(results), 0, 0, None, share_threshold, verdict, prediction)
    share = drifted / len(judged)
    verdict = "Drifted" if share >= share_threshold and drifted > 0 else "NotDrifted"
    return DatasetResult(tuple(results), drifted, len(judged), share, share_threshold, verdict, prediction)
