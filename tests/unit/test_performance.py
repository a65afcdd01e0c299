"""Performance on labelled data against the registered metric: every metric equal to scikit-learn's, the verdict
against the tolerance in the metric's direction, and the cases that cannot be judged."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from mlops_operator.logic import performance as perf


@pytest.mark.parametrize("seed", range(5))
def test_every_metric_equals_scikit_learns(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 2000))
    labels = rng.integers(0, 2, n)
    scores = np.clip(labels * 0.3 + rng.random(n) * 0.7, 0, 1)
    scores[: n // 10] = np.round(scores[: n // 10], 1)  # ties
    predicted = (scores > 0.5).astype(int)
    assert perf.accuracy(labels, predicted) == pytest.approx(sk.accuracy_score(labels, predicted), rel=1e-12)
    assert perf.auc(labels, scores) == pytest.approx(sk.roc_auc_score(labels, scores), rel=1e-12)
    assert perf.log_loss(labels, scores) == pytest.approx(sk.log_loss(labels, np.clip(scores, 1e-15, 1 - 1e-15)),
                                                          rel=1e-9)  # fmt: skip
    target = rng.normal(size=n)
    guess = target + rng.normal(scale=0.3, size=n)
    assert perf.rmse(target, guess) == pytest.approx(np.sqrt(sk.mean_squared_error(target, guess)), rel=1e-12)
    assert perf.mae(target, guess) == pytest.approx(sk.mean_absolute_error(target, guess), rel=1e-12)


def test_labels_as_text_or_booleans_are_read_as_the_same_classes() -> None:
    scores = np.array([0.9, 0.2, 0.7, 0.4])
    for labels in (np.array([1, 0, 1, 0]), np.array(["1", "0", "1", "0"]), np.array([True, False, True, False]),
                   np.array(["yes", "no", "yes", "no"])):  # fmt: skip
        assert perf.auc(labels, scores) == 1.0
    assert perf.accuracy(np.array(["1", "0", "1"]), np.array([1.0, 0.0, 0.0])) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("metric", "labels", "predictions", "reference", "degraded"),
    [
        ("accuracy", [1, 0, 1, 0], [1, 0, 0, 1], 0.9, True),  # 0.5 against 0.9: 0.4 worse
        ("accuracy", [1, 0, 1, 0], [1, 0, 1, 1], 0.78, False),  # 0.75 against 0.78: within 0.05
        ("rmse", [0.0, 0.0], [1.0, 1.0], 0.9, True),  # lower is better: 1.0 is 0.1 above 0.9
        ("rmse", [0.0, 0.0], [1.0, 1.0], 0.96, False),
        ("mae", [0.0, 0.0], [0.5, 0.5], 0.6, False),  # better than registered: not degraded
    ],
)
def test_degraded_means_worse_than_registered_by_more_than_the_tolerance(
    metric: str, labels: list[float], predictions: list[float], reference: float, degraded: bool
) -> None:
    result = perf.judge(metric, np.array(labels), np.array(predictions), reference, 0.05)
    assert result.degraded is degraded and result.samples == len(labels)
    assert ("below" in result.reason or "above" in result.reason) is degraded


def test_what_cannot_be_judged_says_why() -> None:
    few = perf.judge("accuracy", np.array([1, 0]), np.array([1, 0]), 0.9, 0.05, min_samples=10)
    assert few.degraded is None and few.reason == "2 labelled rows, fewer than minSamples 10"
    one_class = perf.judge("auc", np.array([1, 1, 1]), np.array([0.2, 0.5, 0.9]), 0.8, 0.05)
    assert one_class.value is None and one_class.reason == "auc needs labels of both classes"
    three = perf.judge("logLoss", np.array([0, 1, 2]), np.array([0.2, 0.5, 0.9]), 0.3, 0.05)
    assert three.reason == "the labels have 3 classes; auc and logLoss take two"
    unregistered = perf.judge("mae", np.array([1.0]), np.array([1.5]), None, 0.05)
    assert unregistered.value == 0.5 and unregistered.degraded is None
    assert unregistered.reason == "the ModelVersion registers no mae"


def test_rows_missing_a_label_or_a_prediction_are_left_out() -> None:
    labels = np.array([1.0, np.nan, 0.0, 1.0])
    predictions = np.array([1.0, 1.0, np.nan, 0.0])
    result = perf.judge("accuracy", labels, predictions, 0.5, 0.05)
    assert result.samples == 2 and result.value == 0.5
