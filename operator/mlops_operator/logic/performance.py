"""A model's performance on labelled data (delayed labels joined to its predictions), against the metric registered
with its ModelVersion: concept drift shows as the metric moving past a tolerance while the inputs may not drift.

Metrics, as scikit-learn computes them: ``accuracy`` (share of predictions equal to the label), ``auc`` (the area
under the ROC curve of a score for the positive class: the Mann-Whitney statistic with mid-ranks for ties; labels of
two classes, the positive one 1, true, or the larger), ``logLoss`` (binary: the mean negative log-likelihood of the
label under the predicted probability of the positive class, clipped to [1e-15, 1 - 1e-15]), ``rmse`` and ``mae``
(regression). Accuracy and AUC are better higher; the others lower. Pure functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Metric = Literal["accuracy", "auc", "logLoss", "rmse", "mae"]
HIGHER_IS_BETTER = frozenset({"accuracy", "auc"})
CLIP = 1e-15


class PerformanceError(ValueError):
    """Labels or predictions that the metric cannot be computed on (the message says why)."""


def _positive(labels: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Labels of two classes as booleans (positive: 1, true, or the larger value)."""
    values = np.unique(labels)
    if values.size > 2:
        raise PerformanceError(f"the labels have {values.size} classes; auc and logLoss take two")
    if values.size == 0:
        raise PerformanceError("no labels")
    if labels.dtype.kind == "b":
        return labels.astype(bool)
    strings = {str(v).lower() for v in values}
    if strings <= {"0", "1", "true", "false", "0.0", "1.0"}:
        return np.isin(np.char.lower(labels.astype(str)), ["1", "true", "1.0"])
    return np.asarray(labels == values[-1], dtype=bool)  # np.unique sorts: the larger value


def _numbers(values: npt.NDArray[Any], what: str) -> npt.NDArray[np.float64]:
    try:
        return values.astype(np.float64)
    except (TypeError, ValueError):
        raise PerformanceError(f"the {what} are not numbers") from None


def accuracy(labels: npt.NDArray[Any], predictions: npt.NDArray[Any]) -> float:
    if labels.dtype.kind != predictions.dtype.kind:
        # 1 and "1", 1.0 and 1: compared as text, so that a label column read as text still matches.
        labels, predictions = _text(labels), _text(predictions)
    return float(np.mean(labels == predictions))


def _text(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    if values.dtype.kind == "f" and np.all(np.mod(values, 1) == 0):
        values = values.astype(np.int64)
    return np.char.lower(values.astype(str))


def auc(labels: npt.NDArray[Any], scores: npt.NDArray[Any]) -> float:
    from scipy.stats import rankdata

    positive = _positive(labels)
    n1 = int(positive.sum())
    n0 = positive.size - n1
    if n1 == 0 or n0 == 0:
        raise PerformanceError("auc needs labels of both classes")
    ranks = rankdata(_numbers(scores, "scores"))
    u = float(ranks[positive].sum()) - n1 * (n1 + 1) / 2
    return u / (n1 * n0)


def log_loss(labels: npt.NDArray[Any], probabilities: npt.NDArray[Any]) -> float:
    positive = _positive(labels)
    p = np.clip(_numbers(probabilities, "probabilities"), CLIP, 1 - CLIP)
    if np.any(p < 0) or np.any(p > 1):
        raise PerformanceError("logLoss takes probabilities within 0..1")
    return float(-np.mean(np.where(positive, np.log(p), np.log(1 - p))))


def rmse(labels: npt.NDArray[Any], predictions: npt.NDArray[Any]) -> float:
    error = _numbers(predictions, "predictions") - _numbers(labels, "labels")
    return math.sqrt(float(np.mean(error**2)))


def mae(labels: npt.NDArray[Any], predictions: npt.NDArray[Any]) -> float:
    return float(np.mean(np.abs(_numbers(predictions, "predictions") - _numbers(labels, "labels"))))


SCORES = {"accuracy": accuracy, "auc": auc, "logLoss": log_loss, "rmse": rmse, "mae": mae}


@dataclass(frozen=True)
class Performance:
    metric: str
    value: float | None
    reference: float | None
    """The ModelVersion's registered value."""
    tolerance: float
    degraded: bool | None
    """None: not judged (no registered value, too few samples, an error)."""
    samples: int
    reason: str


def judge(metric: str, labels: npt.NDArray[Any], predictions: npt.NDArray[Any], reference: float | None,
          tolerance: float, min_samples: int = 1) -> Performance:  # fmt: skip
    """The metric on the labelled rows (rows missing either value left out) against ``reference``: degraded when
    it is worse by more than ``tolerance`` (absolute)."""
    keep = ~(_missing(labels) | _missing(predictions))
    labels, predictions = labels[keep], predictions[keep]
    samples = int(labels.size)
    if samples < min_samples:
        why = f"{samples} labelled rows, fewer than minSamples {min_samples}"
        return Performance(metric, None, reference, tolerance, None, samples, why)
    try:
        value = SCORES[metric](labels, predictions)
    except PerformanceError as exc:
        return Performance(metric, None, reference, tolerance, None, samples, str(exc))
    if reference is None:
        return Performance(metric, value, None, tolerance, None, samples, f"the ModelVersion registers no {metric}")
    worse = reference - value if metric in HIGHER_IS_BETTER else value - reference
    degraded = worse > tolerance
    direction = "below" if metric in HIGHER_IS_BETTER else "above"
    if degraded:
        reason = (
            f"{metric} {value:.4g} is {worse:.4g} {direction} the registered {reference:.4g} (tolerance {tolerance:g})"
        )
    else:
        reason = f"{metric} {value:.4g} within {tolerance:g} of the registered {reference:.4g}"
    return Performance(metric, value, reference, tolerance, degraded, samples, reason)


def _missing(values: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    if values.dtype.kind == "f":
        return np.asarray(np.isnan(values), dtype=bool)
    if values.dtype.kind == "O":
        return np.array([v is None or (isinstance(v, float) and math.isnan(v)) for v in values], dtype=bool)
    return np.zeros(values.shape, dtype=bool)
