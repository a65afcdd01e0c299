"""One measurement window of a CanaryRollout's analysis, judged: every metric's verdict, and the window's.

Thresholds (min, max) judge the candidate's value over the window; ``compare`` judges its samples against the
stable version's over the same window (``logic.judge``: Mann-Whitney U, the Hodges-Lehmann shift, the score of the
compared metrics with its pass and marginal thresholds). Dry-run metrics are judged and shown, never counted. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mlops_operator.api.canaryrollout import AnalysisMetric, Judge
from mlops_operator.logic import judge
from mlops_operator.logic.rollout import Result, Verdict


@dataclass(frozen=True)
class Values:
    """What a provider measured of one metric over one window."""

    canary: float | None = None
    """The candidate's value over the window (None: no data)."""
    stable: float | None = None
    """The stable version's value over the window."""
    canary_samples: Sequence[float] = field(default_factory=tuple)
    """The candidate's value per sample step within the window (for compare)."""
    stable_samples: Sequence[float] = field(default_factory=tuple)
    error: str | None = None
    """Why the metric could not be measured (the provider failed)."""


@dataclass(frozen=True)
class MetricVerdict:
    name: str
    verdict: Result
    message: str
    canary: float | None
    stable: float | None
    critical: bool = False
    dry_run: bool = False


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"


def _thresholds(metric: AnalysisMetric, value: float | None) -> tuple[Result, str] | None:
    if metric.min is None and metric.max is None:
        return None
    if value is None:
        return "NoData", f"{metric.name}: no data for the candidate"
    if metric.max is not None and value > metric.max:
        return "Fail", f"{metric.name} {_number(value)} > {metric.max:g}"
    if metric.min is not None and value < metric.min:
        return "Fail", f"{metric.name} {_number(value)} < {metric.min:g}"
    bounds = " and ".join(f"{op} {v:g}" for op, v in ((">=", metric.min), ("<=", metric.max)) if v is not None)
    return "Pass", f"{metric.name} {_number(value)} {bounds}"


def _rule(metric: AnalysisMetric) -> judge.MetricRule:
    compare = metric.compare
    assert compare is not None
    return judge.MetricRule(metric.name, compare.direction, compare.allowed_increase, compare.allowed_decrease,
                            metric.critical, compare.weight)  # fmt: skip


def judge_window(
    metrics: Sequence[AnalysisMetric], values: dict[str, Values], thresholds: Judge
) -> tuple[Verdict, list[MetricVerdict]]:
    """The window's verdict and every metric's. Error when a counted metric could not be measured; Fail when a
    threshold fails, a critical change is found, or the compared metrics' score is below marginal (critical when
    the failing metric is); NoData when a counted metric has no data; Inconclusive on a marginal score; else Pass."""
    records: list[MetricVerdict] = []
    compared: list[tuple[AnalysisMetric, judge.MetricVerdict]] = []
    critical_changes: list[str] = []
    limit_failed: list[tuple[str, bool]] = []
    for metric in metrics:
        got = values.get(metric.name) or Values(error="not measured")
        if got.error is not None:
            records.append(MetricVerdict(metric.name, "Error", f"{metric.name}: {got.error}", None, None,
                                         metric.critical, metric.dry_run))  # fmt: skip
            continue
        parts: list[tuple[Result, str]] = []
        limit = _thresholds(metric, got.canary)
        if limit is not None:
            parts.append(limit)
            if limit[0] == "Fail" and not metric.dry_run:
                limit_failed.append((limit[1], metric.critical))
        if metric.compare is not None:
            verdict = judge.classify(_rule(metric), list(got.canary_samples), list(got.stable_samples),
                                     metric.compare.confidence)  # fmt: skip
            if not metric.dry_run:
                compared.append((metric, verdict))
            result: Result = {"Pass": "Pass", "NoData": "NoData"}.get(verdict.classification, "Fail")  # type: ignore[assignment]
            parts.append((result, verdict.reason))
            ratio = verdict.ratio
            c = metric.compare
            if result == "Fail" and ratio is not None and (
                (verdict.classification == "High" and c.critical_increase is not None and ratio > c.critical_increase)
                or (verdict.classification == "Low" and c.critical_decrease is not None
                    and ratio < c.critical_decrease)
            ):  # fmt: skip
                critical_changes.append(f"{verdict.reason} (beyond the critical ratio)")
        order = {"Fail": 0, "NoData": 1, "Pass": 2}
        worst = min(parts, key=lambda p: order[p[0]])
        records.append(MetricVerdict(metric.name, worst[0], "; ".join(m for _, m in parts), got.canary, got.stable,
                                     metric.critical, metric.dry_run))  # fmt: skip

    counted = [r for r in records if not r.dry_run]
    errors = [r for r in counted if r.verdict == "Error"]
    if errors:
        # One cause often fails every metric (the servers unreadable): said once, with the metrics it failed.
        causes: dict[str, list[str]] = {}
        for r in errors:
            causes.setdefault(r.message.removeprefix(f"{r.name}: "), []).append(r.name)
        return Verdict("Error", "; ".join(f"{', '.join(names)}: {cause}" for cause, names in causes.items())), records
    if critical_changes:
        return Verdict("Fail", "; ".join(critical_changes), critical=True), records
    if limit_failed:
        return Verdict("Fail", "; ".join(m for m, _ in limit_failed), any(c for _, c in limit_failed)), records
    score: judge.Score | None = None
    if compared:
        score = judge.score([_rule(m) for m, _ in compared], [v for _, v in compared], thresholds.pass_,
                            thresholds.marginal)  # fmt: skip
        if score.result == "Fail":
            critical = any(m.critical and v.classification not in ("Pass", "NoData") for m, v in compared)
            return Verdict("Fail", score.reason, critical), records
    missing = [r for r in counted if r.verdict == "NoData"]
    if missing:
        return Verdict("NoData", "no data: " + "; ".join(r.message for r in missing)), records
    if score is not None and score.result == "Marginal":
        return Verdict("Inconclusive", score.reason), records
    passed = ", ".join(r.name for r in counted) or "no counted metric"
    return Verdict("Pass", f"passed: {passed}" + (f" (score {score.value:.0f})" if score else "")), records
