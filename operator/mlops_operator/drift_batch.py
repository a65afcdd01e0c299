"""Drift between two datasets (CSV or Parquet), or between a reference profile and a dataset, exactly: the
``mlops-operator drift`` command and, later, the DriftMonitor's batch mode. The statistics are ``logic.drift``'s.

Each column is read on its own (``profiling.columns``), so memory stays bounded by one column of each dataset. With
a reference dataset, numeric features are compared on raw values (exact KS and Wasserstein; the reference's decile
bins for psi, jensenShannon and chiSquare) and categorical features over every reference category (values the
reference never had count together as unseen). With a reference profile, on its bins and categories.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from mlops_operator.logic import drift
from mlops_operator.logic.profile import category, numeric_feature
from mlops_operator.outbound import UNRESTRICTED, Policy
from mlops_operator.profiling import ProfileError, Table, columns


@dataclass
class Options:
    features: Sequence[str] | None = None
    """The features compared; by default every column the reference (or its profile) has and the current dataset
    too, the prediction apart."""
    exclude: Sequence[str] = ()
    prediction: str | None = None
    """The prediction column (compared like a feature, reported apart)."""
    prediction_counts: bool = True
    """Whether the prediction counts toward the dataset's drift share."""
    num_method: str = "auto"
    cat_method: str = "auto"
    overrides: Mapping[str, drift.FeatureSettings] = field(default_factory=dict)
    drift_share: float = 0.5
    multiple_testing: drift.MultipleTesting = "none"
    min_samples: int = 1
    time_column: str | None = None
    """With ``window_seconds``: only the current rows within that many seconds of the newest are compared."""
    window_seconds: float | None = None
    format: str | None = None
    """csv or parquet; by default from the file name."""
    performance: tuple[str, str, str | None, float | None, float, int] | None = None
    """(metric, label column, prediction column, registered value, tolerance, min samples): the model's
    performance on the labelled rows (the prediction column by default the prediction's)."""


@dataclass
class _Reference:
    binned: drift.Binned
    raw: npt.NDArray[np.float64] | None = None
    """Numeric: sorted non-missing values (a reference dataset)."""
    categories: list[str] = field(default_factory=list)


def _is_numeric(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind))


def _is_categorical(kind: Any) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_boolean(kind)
        or pa.types.is_dictionary(kind)
    )  # fmt: skip


def _numeric_values(column: Any) -> tuple[npt.NDArray[np.float64], int]:
    """A numeric Arrow column's finite values and how many are missing (null, NaN or infinite)."""
    values = column.drop_null().to_numpy().astype(np.float64, copy=False)
    nulls = int(column.null_count)
    finite = np.isfinite(values)
    if not finite.all():
        nulls += int((~finite).sum())
        values = values[finite]
    return values, nulls


def _value_counts(column: Any) -> tuple[dict[str, int], int]:
    import pyarrow.compute as pc

    counted = pc.value_counts(column.drop_null())
    values = counted.field("values").to_pylist()
    return {category(v): int(c) for v, c in zip(values, counted.field("counts").to_pylist(), strict=True)}, int(
        column.null_count
    )


def _reference_from_data(column: Any) -> _Reference:
    if _is_numeric(column.type):
        values, nulls = _numeric_values(column)
        feature = numeric_feature(values, nulls)
        return _Reference(drift.from_profile(feature), np.sort(values))
    if _is_categorical(column.type):
        counts, nulls = _value_counts(column)
        ordered = sorted(counts, key=lambda c: (-counts[c], c))
        binned = drift.Binned("categorical", np.array([*(counts[c] for c in ordered), 0], dtype=np.float64), nulls)
        return _Reference(binned, None, ordered)
    raise drift.DriftError(f"type {column.type} is neither numeric nor categorical")


def _reference_from_profile(feature: Mapping[str, Any]) -> _Reference:
    return _Reference(drift.from_profile(feature), None, list(feature.get("categories") or []))


def _current(reference: _Reference, column: Any) -> drift.Current:
    ref = reference.binned
    if ref.kind == "numeric":
        if not _is_numeric(column.type):
            raise drift.DriftError(f"the reference is numeric, the current column is {column.type}")
        values, nulls = _numeric_values(column)
        # Sorted once: the bins, the values out of range and the exact statistics all read the order.
        values = np.sort(values)
        if len(ref.edges) <= 1:
            counts = np.array([float(values.size)])
        else:
            below = np.searchsorted(values, np.asarray(ref.edges[1:-1]), side="left")
            counts = np.diff(np.concatenate([[0], below, [values.size]])).astype(np.float64)
        outside = None
        if ref.minimum is not None and ref.maximum is not None:
            low = int(np.searchsorted(values, ref.minimum, side="left"))
            high = int(values.size - np.searchsorted(values, ref.maximum, side="right"))
            outside = (low, high)
        return drift.Current(drift.Binned("numeric", counts, float(nulls)), values, outside)
    if not _is_categorical(column.type) and not _is_numeric(column.type):
        raise drift.DriftError(f"the reference is categorical, the current column is {column.type}")
    counted, nulls = _value_counts(column)
    position = {c: i for i, c in enumerate(reference.categories)}
    binned = np.zeros(len(reference.categories) + 1)
    for value, count in counted.items():
        binned[position.get(value, len(reference.categories))] += count
    return drift.Current(drift.Binned("categorical", binned, float(nulls)))


def _settings(name: str, kind: str, options: Options) -> drift.FeatureSettings:
    if name in options.overrides:
        return options.overrides[name]
    return drift.FeatureSettings(options.num_method if kind == "numeric" else options.cat_method)


def _error(name: str, reason: str) -> drift.FeatureResult:
    return drift.FeatureResult(name, "", None, None, None, "Error", 0, None, (), reason)


def compare_datasets(current: str, reference: str | None = None, profile: Mapping[str, Any] | None = None,
                     options: Options | None = None, policy: Policy = UNRESTRICTED) -> drift.DatasetResult:  # fmt: skip
    """The drift of the dataset at ``current`` from the dataset at ``reference`` or from ``profile``."""
    options = options or Options()
    if (reference is None) == (profile is None):
        raise ValueError("give a reference dataset or a reference profile, not both or neither")
    window: tuple[float, float] | None = None
    with contextlib.ExitStack() as stack:
        cur_table = stack.enter_context(columns(current, policy, options.format))
        ref_table = stack.enter_context(columns(reference, policy)) if reference is not None else None
        if options.time_column and options.window_seconds:
            cur_table, window = _recent(cur_table, options.time_column, options.window_seconds)
        prediction = options.prediction or (profile or {}).get("prediction")
        names = _features(options, cur_table, ref_table, profile, prediction)
        names = [n for n in names if n != options.time_column]
        names = [n for n in names if not options.performance or n != options.performance[1]]
        results = [_one(name, cur_table, ref_table, profile, options) for name in names]
        predicted = _one(prediction, cur_table, ref_table, profile, options) if prediction else None
        scored = _performance(cur_table, options, prediction) if options.performance else None
    adjusted = drift.adjust([*results, *([predicted] if predicted else [])], options.multiple_testing)
    if predicted is not None:
        predicted = adjusted.pop()
    result = drift.dataset(adjusted, options.drift_share, predicted, options.prediction_counts)
    return replace(result, window=window, performance=scored)


def _performance(table: Table, options: Options, prediction: str | None) -> Any:
    from mlops_operator.logic import performance

    assert options.performance is not None
    metric, label, predicted, registered, tolerance, min_samples = options.performance
    predicted = predicted or prediction
    if not predicted:
        return performance.Performance(metric, None, registered, tolerance, None, 0,
                                       "no prediction column: set performance.predictionColumn")  # fmt: skip
    missing = [c for c in (label, predicted) if c not in table.names]
    if missing:
        return performance.Performance(metric, None, registered, tolerance, None, 0,
                                       f"column(s) not in the dataset: {', '.join(missing)}")  # fmt: skip
    labels = np.asarray(table.column(label).to_numpy(zero_copy_only=False))
    scores = np.asarray(table.column(predicted).to_numpy(zero_copy_only=False))
    return performance.judge(metric, labels, scores, registered, tolerance, min_samples)


def _seconds(column: Any) -> npt.NDArray[np.float64]:
    """A time column as unix seconds (NaN where missing): timestamps, dates, ISO 8601 text, or numbers of
    seconds."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        column = pc.cast(column, pa.timestamp("ns"))
        kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        nanos = pc.cast(pc.cast(column, pa.timestamp("ns")), pa.int64())
        return np.asarray(nanos.to_numpy(zero_copy_only=False), dtype=np.float64) / 1e9
    if _is_numeric(kind):
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    raise drift.DriftError(f"time column of type {kind}: use timestamps, dates, ISO 8601 text or unix seconds")


def _recent(table: Table, name: str, seconds: float) -> tuple[Table, tuple[float, float]]:
    """The table's rows within ``seconds`` of its newest time, and that span."""
    import pyarrow as pa

    if name not in table.names:
        raise drift.DriftError(f"time column {name!r} is not in the dataset")
    try:
        times = _seconds(table.column(name))
    except (pa.ArrowException, ValueError) as exc:
        raise drift.DriftError(f"time column {name!r} cannot be read as times ({type(exc).__name__})") from None
    known = times[~np.isnan(times)]
    if known.size == 0:
        raise drift.DriftError(f"time column {name!r} has no values")
    newest = float(known.max())
    start = newest - seconds
    mask = pa.array(np.nan_to_num(times, nan=-np.inf) >= start)
    kept = int(np.count_nonzero(mask.to_numpy(zero_copy_only=False)))

    def column(column_name: str) -> Any:
        return table.column(column_name).filter(mask)

    return Table(table.format, table.names, kept, column), (start, newest)


def _features(options: Options, cur: Table, ref: Table | None, profile: Mapping[str, Any] | None,
              prediction: str | None) -> list[str]:  # fmt: skip
    if options.features:
        names = list(options.features)
    elif ref is not None:
        names = [n for n in ref.names if n in cur.names]
    else:
        names = [n for n in (profile or {}).get("features", {}) if n in cur.names]
    return [n for n in names if n != prediction and n not in options.exclude]


def _one(name: str, cur: Table, ref: Table | None, profile: Mapping[str, Any] | None,
         options: Options) -> drift.FeatureResult:  # fmt: skip
    if name not in cur.names:
        return _error(name, "not in the current dataset")
    try:
        if ref is not None:
            if name not in ref.names:
                return _error(name, "not in the reference dataset")
            reference = _reference_from_data(ref.column(name))
        else:
            feature = (profile or {}).get("features", {}).get(name)
            if feature is None:
                return _error(name, "not in the reference profile")
            reference = _reference_from_profile(feature)
        current = _current(reference, cur.column(name))
        settings = _settings(name, reference.binned.kind, options)
        return drift.compare(name, reference.binned, current, settings, options.min_samples, reference.raw)
    except drift.DriftError as exc:
        return _error(name, str(exc).removeprefix(f"feature {name!r}: "))


# --- presentation ----------------------------------------------------------------------------------------------------


def feature_json(result: drift.FeatureResult) -> dict[str, Any]:
    out: dict[str, Any] = {"name": result.name, "method": result.method, "statistic": result.statistic,
                           "pValue": result.p_value, "threshold": result.threshold, "verdict": result.verdict,
                           "samples": result.samples, "missingShare": result.missing_share}  # fmt: skip
    if result.reason:
        out["reason"] = result.reason
    if result.signals:
        out["signals"] = [{"name": s.name, "method": s.method, "statistic": s.statistic, "pValue": s.p_value,
                           "threshold": s.threshold, "drifted": s.drifted} for s in result.signals]  # fmt: skip
    return out


def dataset_json(result: drift.DatasetResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "verdict": result.verdict,
        "driftedFeatures": result.drifted,
        "judgedFeatures": result.judged,
        "share": result.share,
        "shareThreshold": result.threshold,
        "features": [feature_json(r) for r in result.features],
    }
    if result.prediction is not None:
        out["prediction"] = feature_json(result.prediction)
    return out


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def table(result: drift.DatasetResult) -> Iterator[str]:
    """The result as text: a line per feature (the prediction last), then the dataset's verdict."""
    rows = [*result.features, *([result.prediction] if result.prediction is not None else [])]
    width = max([len(r.name) for r in rows] + [7])
    yield (f"{'feature':{width}}  {'method':13}  {'statistic':>9}  {'p-value':>9}  {'threshold':>9}  "
           f"{'verdict':11}  {'samples':>8}  {'missing':>7}  reason")  # fmt: skip
    for r in rows:
        missing = "-" if r.missing_share is None else f"{r.missing_share:.1%}"
        label = f"{r.name} (prediction)" if r is result.prediction else r.name
        yield (f"{label:{width}}  {r.method or '-':13}  {_number(r.statistic):>9}  {_number(r.p_value):>9}  "
               f"{_number(r.threshold) if r.method else '-':>9}  {r.verdict:11}  {r.samples:>8}  {missing:>7}  "
               f"{r.reason}")  # fmt: skip
    share = "-" if result.share is None else f"{result.share:.1%}"
    yield (
        f"dataset: {result.verdict} ({result.drifted} of {result.judged} features drifted, {share}; "
        f"threshold {result.threshold:.0%})"
    )


def load_profile(path: str) -> dict[str, Any]:
    """A reference profile from a file: the profile JSON, or a ConfigMap (YAML or JSON) holding it as
    ``data["profile.json"]``."""
    import yaml

    with open(path) as f:
        text = f.read()
    doc = yaml.safe_load(text)
    if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
        doc = json.loads((doc.get("data") or {}).get("profile.json", "null"))
    if not isinstance(doc, dict) or not isinstance(doc.get("features"), dict):
        raise ProfileError(f"{path} is not a reference profile (no features)")
    return doc
