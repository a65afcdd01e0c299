"""Drift sketch counts of a known dataset equal numpy's histogram counts over the profile's edges."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mlops_operator.profiling import profile_column
from mlops_operator.server.sketch import FLUSH_ROWS, Sketch


def profile_of(columns: dict[str, np.ndarray], prediction: str | None = None) -> dict:  # type: ignore[type-arg]
    features = {name: profile_column(pa.chunked_array([values])) for name, values in columns.items()}
    return {"format": "mlops.io/profile/v1", "features": features, "prediction": prediction}


def test_counts_equal_numpy_histogram() -> None:
    rng = np.random.default_rng(3)
    reference = {"a": rng.normal(0, 1, 10_000), "b": rng.exponential(2, 10_000), "c": rng.integers(0, 5, 10_000)}
    profile = profile_of({k: v.astype(float) for k, v in reference.items()})
    sketch = Sketch(profile, ["a", "b", "c"])
    live = np.column_stack([rng.normal(0.5, 1.2, 3_001), rng.exponential(2.5, 3_001), rng.integers(0, 7, 3_001)])
    live[5, 0] = np.nan
    # Rows arrive as requests of different sizes.
    start = 0
    for size in [1, 7, 300, 1, 1200, 1492]:
        sketch.count(live[start : start + size])
        start += size
    snapshot = sketch.snapshot()
    assert snapshot["samples"] == 3_001
    for j, name in enumerate(["a", "b", "c"]):
        edges = np.array(profile["features"][name]["edges"])
        values = live[:, j][~np.isnan(live[:, j])]
        # Outside the reference range: first or last bin, as documented.
        expected, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
        assert snapshot["features"][name]["counts"] == expected.tolist(), name
        assert snapshot["features"][name]["nulls"] == int(np.isnan(live[:, j]).sum())


def test_categorical_inputs_and_predictions() -> None:
    profile = profile_of({"x": np.arange(100.0), "label": np.array(["no"] * 70 + ["yes"] * 30)}, prediction="label")
    sketch = Sketch(profile, ["x"])
    predictions = np.array(["yes", "no", "maybe", "yes"])
    sketch.count(np.array([[1.0], [50.0], [99.0], [500.0]]), predictions)
    snap = sketch.snapshot()
    assert snap["features"]["label"]["categories"] == ["no", "yes"]
    assert snap["features"]["label"]["counts"] == [1, 2] and snap["features"]["label"]["otherCount"] == 1
    assert sum(snap["features"]["x"]["counts"]) == 4 and snap["features"]["x"]["counts"][-1] == 2


def test_counting_is_batched_but_reads_are_exact() -> None:
    profile = profile_of({"x": np.arange(1000.0)})
    sketch = Sketch(profile, ["x"])
    for _ in range(FLUSH_ROWS - 1):
        sketch.count(np.array([[10.0]]))
    assert sketch.samples == 0  # pending
    assert sketch.snapshot()["samples"] == FLUSH_ROWS - 1
    sketch.count(np.array([[10.0]]))
    assert sketch.snapshot()["features"]["x"]["counts"][0] == FLUSH_ROWS


def test_requests_without_the_prediction_still_count_their_inputs() -> None:
    profile = profile_of({"x": np.arange(10.0), "y": np.arange(10.0)}, prediction="y")
    sketch = Sketch(profile, ["x"])
    sketch.count(np.array([[1.0], [2.0]]), np.array([[0.9, 0.1], [0.2, 0.8]]))  # 2-column output: first column
    sketch.count(np.array([[3.0]]), None)
    sketch.count(np.array([[4.0]]), np.array([9.0]))
    snap = sketch.snapshot()
    assert snap["samples"] == 4 and sum(snap["features"]["x"]["counts"]) == 4
    assert sum(snap["features"]["y"]["counts"]) == 3
