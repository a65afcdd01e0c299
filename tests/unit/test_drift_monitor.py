"""A DriftMonitor's analysis of live counts, pure: servers' sketches summed across Pods and judged against the
reference profile, with the monitor's settings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mlops_operator.api.driftmonitor import DriftMonitorSpec
from mlops_operator.logic import drift_monitor
from mlops_operator.logic.profile import categorical_feature, numeric_feature
from mlops_operator.server.sketch import Sketch

NAMES = ["amount", "age", "channel"]


def rows(n: int, seed: int, amount_scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    channels = rng.choice(["web", "app", "pos"], n, p=[0.5, 0.3, 0.2])
    return np.column_stack([rng.lognormal(3, 1, n) * amount_scale, rng.normal(40, 10, n), channels]).astype(object)


def profile() -> dict[str, Any]:
    reference = rows(20000, seed=0)
    values, counts = np.unique(reference[:, 2].astype(str), return_counts=True)
    predictions = (reference[:, 0].astype(float) > 30).astype(float)
    return {
        "format": "mlops.io/profile/v1",
        "rows": 20000,
        "prediction": "flag",
        "features": {
            "amount": numeric_feature(reference[:, 0].astype(float), 0),
            "age": numeric_feature(reference[:, 1].astype(float), 0),
            "channel": categorical_feature(values.tolist(), counts.tolist(), 0),
            "flag": numeric_feature(predictions, 0),
        },
    }


def counted(data: np.ndarray, pods: int = 2) -> dict[str, Any]:
    """The counts of ``data`` sent to ``pods`` servers, as the operator sums their snapshots."""
    sketches = [Sketch(profile(), NAMES) for _ in range(pods)]
    for i, chunk in enumerate(np.array_split(data, 20)):
        flags = (chunk[:, 0].astype(float) > 30).astype(float)
        sketches[i % pods].count(chunk, flags)
    return drift_monitor.merge(s.snapshot() for s in sketches)


def spec(**fields: Any) -> DriftMonitorSpec:
    return DriftMonitorSpec.model_validate({"deploymentRef": {"name": "fraud"}, "minSamples": 100, **fields})


def test_merged_counts_equal_one_server_that_saw_everything() -> None:
    data = rows(3000, seed=1)
    two, one = counted(data, pods=2), counted(data, pods=1)
    assert two["samples"] == one["samples"] == 3000
    assert two["features"] == one["features"]
    assert two["servers"] == 2 and two["complete"] is True


def test_servers_counting_in_different_bins_are_refused() -> None:
    good = counted(rows(100, seed=2), pods=1)
    other = {"samples": 1, "features": {"amount": {"type": "numeric", "counts": [1, 2], "nulls": 0}}}
    with pytest.raises(ValueError, match="servers count it in different bins"):
        drift_monitor.merge([good, other])


def test_traffic_from_the_reference_does_not_drift() -> None:
    result = drift_monitor.evaluate(profile(), counted(rows(5000, seed=3)), drift_monitor.settings(spec()))
    assert result.verdict == "NotDrifted"
    assert {r.name: r.verdict for r in result.features} == dict.fromkeys(["amount", "age", "channel"], "NotDrifted")
    assert result.prediction is not None and result.prediction.name == "flag"


def test_a_shifted_feature_drifts_alone_and_the_prediction_with_it() -> None:
    result = drift_monitor.evaluate(profile(), counted(rows(5000, seed=4, amount_scale=3)),
                                    drift_monitor.settings(spec()))  # fmt: skip
    assert [r.name for r in result.features if r.verdict == "Drifted"] == ["amount"]
    assert result.prediction is not None and result.prediction.verdict == "Drifted"
    assert result.drifted == 2 and result.judged == 4 and result.verdict == "Drifted"  # 2 of 4: the share 0.5
    apart = drift_monitor.evaluate(profile(), counted(rows(5000, seed=4, amount_scale=3)),
                                   drift_monitor.settings(spec(prediction={"countsTowardShare": False})))  # fmt: skip
    assert apart.drifted == 1 and apart.judged == 3 and apart.verdict == "NotDrifted"


def test_settings_reach_the_statistics() -> None:
    override = {"name": "amount", "method": "ks", "threshold": 0.01}
    chosen = spec(numMethod="psi", catMethod="chiSquare", exclude=["age"], features=[override],
                  prediction={"enabled": False})  # fmt: skip
    result = drift_monitor.evaluate(profile(), counted(rows(5000, seed=5)), drift_monitor.settings(chosen))
    methods = {r.name: (r.method, r.threshold) for r in result.features}
    # amount's 0.01 shared with its out-of-range test (Bonferroni within the feature): 0.005 each.
    assert methods == {"amount": ("ks", 0.005), "channel": ("chiSquare", 0.05)}
    assert result.prediction is None


def test_values_outside_the_reference_range_are_counted_live_and_flagged() -> None:
    data = rows(3000, seed=8)
    data[:40, 1] = 500.0  # ages far above any the reference had
    counted_ = counted(data)
    # The 40, and the odd value of the reference distribution beyond its 20,000-row range.
    assert 40 <= counted_["features"]["age"]["above"] <= 42 and counted_["features"]["age"]["below"] <= 2
    result = drift_monitor.evaluate(profile(), counted_, drift_monitor.settings(spec()))
    age = next(r for r in result.features if r.name == "age")
    assert age.verdict == "Drifted" and "outOfRange" in age.reason
    assert [r.name for r in result.features if r.verdict == "Drifted"] == ["age"]


def test_below_min_samples_there_is_no_verdict() -> None:
    result = drift_monitor.evaluate(profile(), counted(rows(50, seed=6)), drift_monitor.settings(spec()))
    assert result.verdict == "NoData"
    assert all(r.verdict == "NoData" and "fewer than minSamples 100" in r.reason for r in result.features)
    assert drift_monitor.summary(result, 50) == "not enough samples to judge (50 in the window)"


def test_nothing_counted_is_no_data_and_a_bad_count_is_an_error() -> None:
    empty = drift_monitor.evaluate(profile(), {"samples": 0, "features": {}}, drift_monitor.settings(spec()))
    assert empty.verdict == "NoData"
    wrong = {"samples": 500, "features": {"amount": {"type": "numeric", "counts": [500], "nulls": 0}}}
    result = drift_monitor.evaluate(profile(), wrong, drift_monitor.settings(spec(exclude=["age", "channel"])))
    amount = result.features[0]
    assert amount.verdict == "Error" and "counted in 1 bins, the reference has 10" in amount.reason


def test_the_summary_names_what_drifted() -> None:
    result = drift_monitor.evaluate(profile(), counted(rows(5000, seed=7, amount_scale=3)),
                                    drift_monitor.settings(spec()))  # fmt: skip
    assert drift_monitor.summary(result, 5000) == "drift: 2 of 4 features drifted (50%): amount, flag"


def test_due_in() -> None:
    assert drift_monitor.due_in(None, 60, 1000) == 0
    assert drift_monitor.due_in(990, 60, 1000) == 50
    assert drift_monitor.due_in(900, 60, 1000) == 0
