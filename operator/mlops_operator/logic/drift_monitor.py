"""A DriftMonitor's analysis, pure: the live counts of a version's servers (their windowed drift sketches, summed
across Pods) judged against the reference profile with ``logic.drift``, and the status that says so.

The counts come in the sketch endpoint's shape (``/v2/models/{name}/sketch?window=...``): per feature, numeric
``counts`` per profile bin and ``nulls``; categorical ``categories``, ``counts``, ``otherCount`` and ``nulls``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mlops_operator.api.common import Condition
from mlops_operator.api.driftmonitor import (
    HISTORY,
    DriftMonitorSpec,
    DriftMonitorStatus,
    FeatureResult,
    HistoryEntry,
    PerformanceStatus,
    ReferenceStatus,
)
from mlops_operator.logic import drift
from mlops_operator.logic.conditions import set_condition

Snapshot = Mapping[str, Any]


class Unavailable(Exception):
    """The analysis cannot run yet (no deployment, no reference, no server to read): the reason (Ready False)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Settings:
    """What ``logic.drift`` needs from a DriftMonitor's spec."""

    num_method: str = "auto"
    cat_method: str = "auto"
    overrides: Mapping[str, drift.FeatureSettings] | None = None
    exclude: frozenset[str] = frozenset()
    multiple_testing: drift.MultipleTesting = "none"
    share: float = 0.5
    min_samples: int = 1
    prediction: bool = True
    prediction_settings: drift.FeatureSettings = field(default_factory=drift.FeatureSettings)
    prediction_counts: bool = True


def settings(spec: DriftMonitorSpec) -> Settings:
    return Settings(
        num_method=spec.num_method,
        cat_method=spec.cat_method,
        overrides={f.name: drift.FeatureSettings(f.method, f.threshold) for f in spec.features or []},
        exclude=frozenset(spec.exclude or []),
        multiple_testing=spec.multiple_testing,
        share=spec.dataset_drift_share,
        min_samples=spec.min_samples,
        prediction=spec.prediction.enabled,
        prediction_settings=drift.FeatureSettings(spec.prediction.method, spec.prediction.threshold),
        prediction_counts=spec.prediction.counts_toward_share,
    )


def merge(snapshots: Iterable[Snapshot]) -> dict[str, Any]:
    """The sum of several servers' sketch snapshots of the same profile (the Pods of one version): counts, nulls,
    other counts and samples add up; ``complete`` holds when every server's does."""
    out: dict[str, Any] = {"samples": 0, "features": {}, "complete": True, "servers": 0}
    for snap in snapshots:
        out["servers"] += 1
        out["samples"] += int(snap.get("samples") or 0)
        out["complete"] = out["complete"] and bool(snap.get("complete", True))
        for key in ("windowStart", "windowEnd"):
            if key in snap:
                pick = min if key == "windowStart" else max
                out[key] = pick(out.get(key, snap[key]), snap[key])
        for name, feature in (snap.get("features") or {}).items():
            mine = out["features"].get(name)
            if mine is None:
                out["features"][name] = {k: (list(v) if isinstance(v, list) else v) for k, v in feature.items()}
                continue
            if len(mine.get("counts") or []) != len(feature.get("counts") or []):
                raise ValueError(f"feature {name!r}: servers count it in different bins (profiles differ)")
            mine["counts"] = [a + b for a, b in zip(mine["counts"], feature["counts"], strict=True)]
            for key in ("nulls", "otherCount", "below", "above"):
                if key in feature:
                    mine[key] = int(mine.get(key) or 0) + int(feature[key])
    return out


def _current(name: str, reference: Mapping[str, Any], counted: Mapping[str, Any] | None) -> drift.Current:
    """One feature's live counts in the reference's bins (nothing counted: an empty sample)."""
    if reference["type"] == "numeric":
        bins = max(len(reference.get("edges") or []) - 1, 1)
        counts = np.asarray((counted or {}).get("counts") or [0] * bins, dtype=np.float64)
        if counts.size != bins:
            raise drift.DriftError(f"feature {name!r}: counted in {counts.size} bins, the reference has {bins}")
        outside = None
        if counted is not None and "below" in counted and "above" in counted:
            outside = (round(counted["below"]), round(counted["above"]))
        return drift.Current(drift.Binned("numeric", counts, float((counted or {}).get("nulls") or 0)), None, outside)
    categories = list(reference.get("categories") or [])
    counts = np.zeros(len(categories) + 1)
    if counted is not None:
        position = {c: i for i, c in enumerate(categories)}
        for value, count in zip(counted.get("categories") or [], counted.get("counts") or [], strict=True):
            counts[position.get(str(value), len(categories))] += count
        counts[-1] += float(counted.get("otherCount") or 0)
    return drift.Current(drift.Binned("categorical", counts, float((counted or {}).get("nulls") or 0)))


def _feature_settings(name: str, kind: str, settings: Settings) -> drift.FeatureSettings:
    if settings.overrides and name in settings.overrides:
        return settings.overrides[name]
    return drift.FeatureSettings(settings.num_method if kind == "numeric" else settings.cat_method)


def _judge(name: str, reference: Mapping[str, Any], counted: Mapping[str, Any] | None,
           chosen: drift.FeatureSettings, min_samples: int) -> drift.FeatureResult:  # fmt: skip
    try:
        current = _current(name, reference, counted)
        return drift.compare(name, drift.from_profile(reference), current, chosen, min_samples)
    except drift.DriftError as exc:
        return drift.FeatureResult(name, chosen.method, None, None, None, "Error", 0, None, (),
                                   str(exc).removeprefix(f"feature {name!r}: "))  # fmt: skip


def evaluate(profile: Mapping[str, Any], counted: Snapshot, settings: Settings) -> drift.DatasetResult:
    """The live window's verdict: every profiled feature (but the excluded) and the prediction."""
    features: Mapping[str, Any] = profile.get("features") or {}
    prediction = profile.get("prediction")
    live: Mapping[str, Any] = counted.get("features") or {}
    results = [
        _judge(name, reference, live.get(name), _feature_settings(name, reference["type"], settings),
               settings.min_samples)
        for name, reference in features.items()
        if name != prediction and name not in settings.exclude
    ]  # fmt: skip
    predicted = None
    if settings.prediction and prediction and prediction in features:
        chosen = settings.prediction_settings
        if chosen.method == "auto":
            chosen = drift.FeatureSettings(
                _feature_settings(prediction, features[prediction]["type"], settings).method, chosen.threshold
            )
        predicted = _judge(prediction, features[prediction], live.get(prediction), chosen, settings.min_samples)
    adjusted = drift.adjust([*results, *([predicted] if predicted else [])], settings.multiple_testing)
    if predicted is not None:
        predicted = adjusted.pop()
    return drift.dataset(adjusted, settings.share, predicted, settings.prediction_counts)


def summary(result: drift.DatasetResult, samples: int | None) -> str:
    """The analysis in a sentence."""
    if result.verdict == "NoData":
        return f"not enough samples to judge ({samples or 0} in the window)"
    if result.verdict == "Error":
        reasons = sorted({r.reason for r in result.features if r.verdict == "Error" and r.reason})
        return "no feature could be judged: " + "; ".join(reasons[:3])
    drifted = [r.name for r in (*result.features, *([result.prediction] if result.prediction else ()))
               if r.verdict == "Drifted"]  # fmt: skip
    share = f"{result.share:.0%}" if result.share is not None else "-"
    if not drifted:
        return f"no drift: 0 of {result.judged} features drifted"
    named = ", ".join(drifted[:5]) + (f" and {len(drifted) - 5} more" if len(drifted) > 5 else "")
    verdict = "drift" if result.verdict == "Drifted" else "below the dataset threshold"
    return f"{verdict}: {result.drifted} of {result.judged} features drifted ({share}): {named}"


def due_in(last_check: float | None, interval: float, now: float) -> float:
    """Seconds until the next analysis (0: now)."""
    if last_check is None:
        return 0.0
    return max(0.0, last_check + interval - now)


def drifted_names(results: Sequence[drift.FeatureResult]) -> list[str]:
    return [r.name for r in results if r.verdict == "Drifted"]


def from_series(profile: Mapping[str, Any], series: Iterable[tuple[Mapping[str, str], float]], samples: float,
                start: float, end: float) -> dict[str, Any]:  # fmt: skip
    """Prometheus' ``sum by (feature, bin)`` of the servers' bin counters over a window, in the sketch endpoint's
    shape (every profiled feature, zero where no series came)."""
    features: dict[str, Any] = {}
    for name, reference in (profile.get("features") or {}).items():
        if reference["type"] == "numeric":
            bins = max(len(reference.get("edges") or []) - 1, 1)
            features[name] = {"type": "numeric", "counts": [0.0] * bins, "nulls": 0.0, "below": 0.0, "above": 0.0}
        else:
            categories = list(reference.get("categories") or [])
            features[name] = {"type": "categorical", "categories": categories, "counts": [0.0] * len(categories),
                              "otherCount": 0.0, "nulls": 0.0}  # fmt: skip
    for labels, value in series:
        feature = features.get(labels.get("feature", ""))
        bin_ = labels.get("bin", "")
        if feature is None:
            continue
        if bin_ == "__null__":
            feature["nulls"] += value
        elif bin_ in ("__below__", "__above__") and feature["type"] == "numeric":
            feature[bin_.strip("_")] += value
        elif feature["type"] == "numeric":
            if bin_.isdigit() and int(bin_) < len(feature["counts"]):
                feature["counts"][int(bin_)] += value
        elif bin_ == "__other__":
            feature["otherCount"] += value
        elif bin_ in feature["categories"]:
            feature["counts"][feature["categories"].index(bin_)] += value
    return {"samples": round(samples), "features": features, "windowStart": start, "windowEnd": end}


# --- the status ------------------------------------------------------------------------------------------------------


def conditions(stored: Mapping[str, Any], generation: int | None, ready: tuple[Any, str, str],
                detected: tuple[Any, str, str] | None = None) -> list[Condition]:  # fmt: skip
    conditions = set_condition(stored.get("conditions") or [], "Ready", *ready, generation)
    if detected is not None:
        conditions = set_condition(conditions, "DriftDetected", *detected, generation)
    return [Condition.model_validate(c) for c in conditions]


def feature_status(result: drift.FeatureResult) -> FeatureResult:
    return FeatureResult(
        name=result.name, method=result.method or "-", statistic=result.statistic, p_value=result.p_value,
        threshold=result.threshold, verdict=result.verdict, samples=result.samples,
        missing_share=result.missing_share, reason=(result.reason or None) and result.reason[:1024],
    )  # fmt: skip


def status(old: DriftMonitorStatus, stored: Mapping[str, Any], generation: int | None, spec: DriftMonitorSpec,
            result: drift.DatasetResult, counted: dict[str, Any], version: str | None, reference: ReferenceStatus,
            now: datetime) -> DriftMonitorStatus:  # fmt: skip
    samples = int(counted.get("samples") or 0)
    message = summary(result, samples)
    complete = counted.get("complete")
    if complete is False:
        message += " (partial window: a server started within it, or did not answer)"
    if result.verdict == "NoData":
        detected = ("Unknown", "NotEnoughSamples", f"{samples} samples in the window, minSamples {spec.min_samples}")
    elif result.verdict == "Error":
        detected = ("Unknown", "AnalysisFailed", message)
    elif result.verdict == "Drifted":
        detected = ("True", "DatasetDrift", message)
    else:
        detected = ("False", "NoDatasetDrift", message)
    ready = ("True", "Analysed", message) if result.verdict != "Error" else ("False", "AnalysisFailed", message)
    checked = result.performance
    performance = None
    degraded: tuple[Any, str, str] | None = None
    if checked is not None:
        performance = PerformanceStatus(metric=checked.metric, value=checked.value, registered=checked.reference,
                                        tolerance=checked.tolerance, degraded=checked.degraded,
                                        samples=checked.samples, reason=checked.reason[:1024])  # fmt: skip
        degraded = {True: ("True", "BelowRegistered", checked.reason),
                    False: ("False", "WithinTolerance", checked.reason)}.get(
            checked.degraded, ("Unknown", "NotJudged", checked.reason))  # fmt: skip

    def at(key: str) -> datetime | None:
        value = counted.get(key)
        return datetime.fromtimestamp(float(value), UTC) if value is not None else None

    history = [*old.history, HistoryEntry(at=now, verdict=result.verdict, drifted_share=result.share,
                                          samples=samples)][-HISTORY:]  # fmt: skip
    found = conditions(stored, generation, ready, detected)
    if degraded is not None:
        wire = [c.wire() for c in found]
        found = [Condition.model_validate(c)
                 for c in set_condition(wire, "PerformanceDegraded", *degraded, generation)]  # fmt: skip
    return DriftMonitorStatus(
        observed_generation=generation,
        conditions=found,
        last_check=now,
        window_start=at("windowStart"),
        window_end=at("windowEnd"),
        complete=complete if isinstance(complete, bool) else None,
        version=version,
        samples=samples,
        reference=reference,
        features=[feature_status(r) for r in result.features],
        prediction=feature_status(result.prediction) if result.prediction is not None else None,
        drifted_features=result.drifted,
        judged_features=result.judged,
        drifted_share=result.share,
        verdict=result.verdict,
        message=message[:4096],
        performance=performance,
        history=history,
    )
