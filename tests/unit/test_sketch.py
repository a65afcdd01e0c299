"""Drift sketch counts of a known dataset equal numpy's histogram counts over the profile's edges."""

from __future__ import annotations

from typing import Any

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


def test_the_server_counts_after_answering_so_no_request_pays_for_the_others() -> None:
    import asyncio

    from mlops_operator.server.app import InferenceServer, ModelState
    from mlops_operator.server.metrics import ServerMetrics
    from mlops_operator.server.validation import Signature

    class Echo:
        platform = "test"

        def output_names(self) -> tuple[str, ...]:
            return ("y",)

        def predict(self, inputs: Any, outputs: tuple[str, ...]) -> dict[str, Any]:
            return {"y": inputs["x"][:, 0]}

    profile = profile_of({"x": np.arange(1000.0)})
    signature = Signature.parse({"inputs": [{"name": "x", "datatype": "FP64", "shape": [-1, 1]}]})
    state = ModelState("m", "1", Echo(), signature, Sketch(profile, ["x"]), "x", "y")  # type: ignore[arg-type]
    app = InferenceServer(state, ServerMetrics("m", "1"))
    events: list[str] = []
    flush = state.sketch.flush  # type: ignore[union-attr]

    def recorded_flush() -> None:
        events.append("flush")
        flush()

    state.sketch.flush = recorded_flush  # type: ignore[method-assign,union-attr]
    body = b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 1], "data": [10.0]}]}'

    async def requests() -> None:
        for _ in range(FLUSH_ROWS):
            messages = [{"type": "http.request", "body": body, "more_body": False}]

            async def receive(messages: list[dict[str, Any]] = messages) -> dict[str, Any]:
                return messages.pop(0)

            async def send(message: dict[str, Any]) -> None:
                events.append(message["type"])

            scope = {"type": "http", "method": "POST", "path": "/v2/models/m/infer", "headers": []}
            await app(scope, receive, send)
            await asyncio.sleep(0)  # between requests: what the loop runs next

    asyncio.run(requests())
    # The last request made the flush due: it went out whole before the rows were counted.
    assert events[-3:] == ["http.response.start", "http.response.body", "flush"]
    assert events.count("flush") == 1
    assert state.sketch.samples == FLUSH_ROWS  # type: ignore[union-attr]
