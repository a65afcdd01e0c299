"""Windowed drift sketches: the counts of the last minutes, kept by the server itself so that the DriftMonitor gets
the last hour of every Pod (and sums them) without snapshots of its own. A fake clock moves across minutes; the
counts of a window are compared with those of a sketch that saw exactly the window's rows."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest
from asgi import call

from mlops_operator.profiling import profile_column
from mlops_operator.server.app import InferenceServer, ModelState
from mlops_operator.server.main import parse_args
from mlops_operator.server.metrics import ServerMetrics
from mlops_operator.server.sketch import FLUSH_ROWS, Sketch, WindowError
from mlops_operator.server.validation import Signature

T0 = 1_700_000_040.0
"""A minute's start (unix seconds)."""
WINDOW_FIELDS = ("window", "windowStart", "windowEnd", "startedAt", "complete")
RNG = np.random.default_rng(7)
PROFILE = {
    "format": "mlops.io/profile/v1",
    "prediction": "label",
    "features": {
        "x": profile_column(pa.chunked_array([RNG.normal(0, 1, 5_000)])),
        "n": profile_column(pa.chunked_array([RNG.integers(0, 5, 5_000).astype(float)])),
        "c": profile_column(pa.chunked_array([np.array(["de", "fr", "it"] * 100, dtype=object)])),
        "label": profile_column(pa.chunked_array([np.array(["no"] * 70 + ["yes"] * 30, dtype=object)])),
    },
}
FEATURES = ["x", "n", "c"]
Array = npt.NDArray[Any]


class Clock:
    """A wall clock the test moves."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def batch(size: int, shift: float = 0.0) -> tuple[Array, Array]:
    """``size`` rows (x, n, c) with NaNs, unknown and missing categories, and their predicted labels."""
    x = RNG.normal(shift, 1, size)
    x[RNG.random(size) < 0.1] = np.nan
    rows = np.empty((size, 3), dtype=object)
    rows[:, 0] = x
    rows[:, 1] = RNG.integers(0, 7, size).astype(float)
    rows[:, 2] = RNG.choice(np.array(["de", "fr", "it", "es", None], dtype=object), size)
    labels = RNG.choice(np.array(["no", "yes", "maybe"], dtype=object), size)
    return rows, labels


def send(sketch: Sketch, rows: Array, labels: Array, sizes: tuple[int, ...] = (1, 3, 17)) -> None:
    """The rows as requests of a few sizes, as the server counts them (staged; flushed when due, as it does)."""
    start = 0
    while start < len(rows):
        size = sizes[start % len(sizes)]
        sketch.count(rows[start : start + size], labels[start : start + size])
        start += size
        if sketch.due:
            sketch.flush()


def counts_of(*batches: tuple[Array, Array]) -> dict[str, Any]:
    """The cumulative counts of a sketch that saw exactly ``batches``."""
    sketch = Sketch(PROFILE, FEATURES)
    for rows, labels in batches:
        sketch.count(rows, labels)
    return sketch.snapshot()


def counts(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A windowed snapshot without its window fields: the cumulative snapshot's shape."""
    return {k: v for k, v in snapshot.items() if k not in WINDOW_FIELDS}


def merged(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two Pods' sketch answers summed, as the DriftMonitor sums them; complete only when both are."""
    features: dict[str, Any] = {}
    for name, fa in a["features"].items():
        fb = b["features"][name]
        assert fa["type"] == fb["type"] and fa.get("categories") == fb.get("categories"), name
        feature = {**fa, "counts": [x + y for x, y in zip(fa["counts"], fb["counts"], strict=True)],
                   "nulls": fa["nulls"] + fb["nulls"]}  # fmt: skip
        if fa["type"] == "categorical":
            feature["otherCount"] = fa["otherCount"] + fb["otherCount"]
        else:
            feature["below"], feature["above"] = fa["below"] + fb["below"], fa["above"] + fb["above"]
        features[name] = feature
    assert (a["windowStart"], a["windowEnd"]) == (b["windowStart"], b["windowEnd"])
    return {"samples": a["samples"] + b["samples"], "features": features, "window": a["window"],
            "windowStart": a["windowStart"], "windowEnd": a["windowEnd"],
            "complete": a["complete"] and b["complete"]}  # fmt: skip


def test_a_window_counts_exactly_the_rows_of_its_minutes() -> None:
    clock = Clock(T0 + 5)
    sketch = Sketch(PROFILE, FEATURES, clock=clock)
    minute0, minute1, minute3 = batch(300), batch(200, shift=2.0), batch(150, shift=-1.0)
    send(sketch, *minute0)
    clock.now = T0 + 60 + 59.9
    send(sketch, *minute1)
    clock.now = T0 + 3 * 60 + 30  # minute 2 had no traffic
    send(sketch, *minute3)

    last = sketch.snapshot(60)
    assert counts(last) == counts_of(minute3)
    assert last["samples"] == 150
    assert (last["window"], last["windowStart"], last["windowEnd"]) == (60, T0 + 180, T0 + 240)
    # The window's rows do have unknown categories, missing values and an unknown label: all of them compared.
    assert last["features"]["c"]["otherCount"] > 0 and last["features"]["c"]["nulls"] > 0
    assert last["features"]["x"]["nulls"] > 0 and last["features"]["label"]["otherCount"] > 0
    assert counts(sketch.snapshot(120)) == counts_of(minute3)  # the empty minute 2 adds nothing
    assert counts(sketch.snapshot(180)) == counts_of(minute1, minute3)
    assert counts(sketch.snapshot(240)) == counts_of(minute0, minute1, minute3)
    # Seconds are rounded up to whole minutes: 61 seconds are the last two minutes.
    assert sketch.snapshot(61)["window"] == 120 and sketch.snapshot(61)["windowStart"] == T0 + 120
    assert counts(sketch.snapshot(181)) == counts_of(minute0, minute1, minute3)
    assert counts(sketch.snapshot(181)) != counts(sketch.snapshot(180))


def test_rows_staged_across_a_minute_boundary_count_in_the_minute_they_arrived_in() -> None:
    clock = Clock(T0 + 50)
    sketch = Sketch(PROFILE, FEATURES, clock=clock)
    early = np.array([[-3.0, 0.0, "de"]] * (FLUSH_ROWS - 1), dtype=object)
    late = np.array([[3.0, 4.0, "fr"]], dtype=object)
    sketch.count(early, np.array(["no"] * len(early), dtype=object))
    assert not sketch.due and sketch.samples == 0  # staged, not counted
    clock.now = T0 + 61
    sketch.count(late, np.array(["yes"], dtype=object))
    assert sketch.due
    sketch.flush()  # one flush, two minutes
    this_minute, both = sketch.snapshot(60), sketch.snapshot(120)
    assert this_minute["samples"] == 1
    assert this_minute["features"]["x"]["counts"][-1] == 1 and this_minute["features"]["x"]["counts"][0] == 0
    assert this_minute["features"]["c"]["counts"] == [0, 1, 0] and this_minute["features"]["label"]["counts"] == [0, 1]
    assert both["samples"] == FLUSH_ROWS and both["features"]["x"]["counts"][0] == FLUSH_ROWS - 1
    # Rows staged in minute 1 and read in minute 2 (no flush in between) still count in minute 1.
    sketch.count(late, np.array(["yes"], dtype=object))
    clock.now = T0 + 125
    assert sketch.snapshot(60)["samples"] == 0
    assert sketch.snapshot(120)["samples"] == 2


def test_a_clock_stepped_back_leaves_the_later_minutes_out_of_the_current_window() -> None:
    clock = Clock(T0 + 5 * 60)
    sketch = Sketch(PROFILE, FEATURES, clock=clock)
    ahead, now = batch(20), batch(10)
    send(sketch, *ahead)
    clock.now = T0 + 3 * 60 + 1  # the wall clock corrected by two minutes
    send(sketch, *now)
    assert counts(sketch.snapshot(60)) == counts_of(now)
    clock.now = T0 + 5 * 60 + 1
    assert counts(sketch.snapshot(180)) == counts_of(ahead, now)


def test_minutes_older_than_the_retention_are_dropped() -> None:
    clock = Clock(T0)
    sketch = Sketch(PROFILE, FEATURES, retention_minutes=10, clock=clock)
    first, second = batch(40), batch(30)
    send(sketch, *first)
    clock.now = T0 + 5 * 60
    send(sketch, *second)
    clock.now = T0 + 9 * 60 + 59  # minutes 0 to 9: both
    assert counts(sketch.snapshot(600)) == counts_of(first, second)
    clock.now = T0 + 10 * 60  # minutes 1 to 10: minute 0 is gone
    assert counts(sketch.snapshot(600)) == counts_of(second)
    assert list(sketch._minutes) == [int(T0) // 60 + 5]  # memory: the minutes with traffic in the retention
    clock.now = T0 + 15 * 60
    sketch.flush()
    assert sketch._minutes == {}
    assert sketch.snapshot(600)["samples"] == 0
    assert counts(sketch.snapshot()) == counts_of(first, second)  # the cumulative counts keep everything
    # Rows staged, then neither read nor flushed for longer than the retention: counted, in no window.
    sketch.count(*batch(5))
    clock.now = T0 + 40 * 60
    assert sketch.snapshot(600)["samples"] == 0 and sketch._minutes == {}
    assert sketch.snapshot()["samples"] == 75


def test_memory_grows_with_the_minutes_that_had_traffic_not_with_the_retention() -> None:
    clock = Clock(T0)
    sketch = Sketch(PROFILE, FEATURES, clock=clock)  # 24 hours
    for minute in (0, 1, 600):
        clock.now = T0 + minute * 60 + 1
        send(sketch, *batch(FLUSH_ROWS + 3))
    sketch.flush()
    assert len(sketch._minutes) == 3
    assert all(v.nbytes == 8 * sketch.size for v in sketch._minutes.values())


def test_a_window_longer_than_the_retention_or_not_positive_is_refused() -> None:
    sketch = Sketch(PROFILE, FEATURES, retention_minutes=60, clock=Clock())
    assert sketch.snapshot(3600)["window"] == 3600
    with pytest.raises(WindowError, match="longer than the sketch's retention of 60 minutes"):
        sketch.snapshot(3601)
    with pytest.raises(ValueError, match="must be positive"):
        sketch.snapshot(0)
    with pytest.raises(ValueError, match="must be positive"):
        sketch.snapshot(float("nan"))
    with pytest.raises(ValueError, match="at least one minute"):
        Sketch(PROFILE, FEATURES, retention_minutes=0)


def test_complete_only_when_the_sketch_counted_for_the_whole_window() -> None:
    clock = Clock(T0 + 30)  # a Pod started half a minute into a minute
    sketch = Sketch(PROFILE, FEATURES, clock=clock)
    clock.now = T0 + 2 * 60 + 10
    recent, whole = sketch.snapshot(60), sketch.snapshot(180)
    assert recent["startedAt"] == whole["startedAt"] == T0 + 30
    assert recent["complete"] is True  # the current minute began after the start
    assert whole["windowStart"] == T0 and whole["complete"] is False  # its first 30 seconds are missing
    on_the_minute = Sketch(PROFILE, FEATURES, clock=Clock(T0))
    assert on_the_minute.snapshot(60)["complete"] is True  # started when the window did


def test_windows_leave_the_cumulative_snapshot_as_it_was() -> None:
    clock = Clock(T0)
    windowed, plain = Sketch(PROFILE, FEATURES, clock=clock), Sketch(PROFILE, FEATURES)
    for minute in range(5):
        clock.now = T0 + minute * 60 + 7
        rows, labels = batch(100 + minute)
        send(windowed, rows, labels)
        send(plain, rows, labels)
        windowed.snapshot(120)
    assert windowed.snapshot() == plain.snapshot()
    assert set(windowed.snapshot()) == {"samples", "features"}
    assert windowed.samples == plain.samples == sum(100 + m for m in range(5))
    # Every minute is in the last five: the window's counts are the cumulative ones.
    assert counts(windowed.snapshot(300)) == windowed.snapshot()


def test_two_pods_windows_summed_equal_one_sketch_that_saw_every_row() -> None:
    clock = Clock(T0 + 20)
    pod_a, pod_b, alone = (Sketch(PROFILE, FEATURES, clock=clock) for _ in range(3))
    for minute in range(4):
        clock.now = T0 + minute * 60 + 20
        for pod in (pod_a, pod_b):
            rows, labels = batch(int(RNG.integers(50, 400)), shift=minute / 2)
            send(pod, rows, labels)
            send(alone, rows, labels)
    clock.now = T0 + 3 * 60 + 50
    for window in (60, 120, 240):
        total = merged(pod_a.snapshot(window), pod_b.snapshot(window))
        expected = alone.snapshot(window)
        assert total == {k: v for k, v in expected.items() if k != "startedAt"}, window
    assert merged(pod_a.snapshot(120), pod_b.snapshot(120))["samples"] < alone.snapshot()["samples"]
    assert merged(pod_a.snapshot(240), pod_b.snapshot(240))["complete"] is False  # the Pods started at +20 s


# --- the endpoint ------------------------------------------------------------------------------------------------


class Echo:
    platform = "test"

    def output_names(self) -> tuple[str, ...]:
        return ("label",)

    def predict(self, inputs: Any, outputs: tuple[str, ...]) -> dict[str, Any]:
        return {"label": np.where(inputs["x"][:, 0] > 0, "yes", "no")}


@pytest.fixture
def server() -> tuple[InferenceServer, Clock]:
    clock = Clock(T0 + 1)
    sketch = Sketch(PROFILE, ["x"], retention_minutes=120, clock=clock)
    signature = Signature.parse({"inputs": [{"name": "x", "datatype": "FP64", "shape": [-1, 1]}]})
    state = ModelState("m", "1", Echo(), signature, sketch, "x", "label")  # type: ignore[arg-type]
    return InferenceServer(state, ServerMetrics("m", "1")), clock


def get(app: InferenceServer, query: str = "", path: str = "/v2/models/m/sketch") -> tuple[int, dict[str, Any]]:
    """A GET with a query string (tests/unit/asgi.py's ``call`` sends none)."""
    scope = {"type": "http", "method": "GET", "path": path, "query_string": query.encode(), "headers": []}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def answer(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, answer))
    return sent[0]["status"], json.loads(sent[1]["body"])


def infer(app: InferenceServer, values: list[float]) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [len(values), 1], "data": values}]}
    status, _, answer = call(app, json.dumps(body).encode())
    assert status == 200, answer


def test_the_endpoint_answers_a_window_or_the_cumulative_counts(server: tuple[InferenceServer, Clock]) -> None:
    app, clock = server
    infer(app, [-1.0, -2.0, 0.5])  # minute 0
    clock.now = T0 + 90 * 60 + 5
    infer(app, [1.0, 2.0])  # minute 90
    status, cumulative = get(app)
    assert status == 200 and cumulative["samples"] == 5
    assert (cumulative["model_name"], cumulative["model_version"]) == ("m", "1")
    assert not set(WINDOW_FIELDS) & set(cumulative)
    assert get(app, "window=")[0] == 400 and get(app, "")[1] == cumulative

    status, hour = get(app, "window=1h")
    assert status == 200 and (hour["model_name"], hour["model_version"]) == ("m", "1")
    assert hour["samples"] == 2 and hour["features"]["label"]["counts"] == [0, 2]
    assert hour["window"] == 3600 and hour["windowEnd"] == T0 + 91 * 60 and hour["complete"] is True
    assert hour["startedAt"] == T0 + 1
    for query, seconds, samples in [("window=1h30m", 5400, 2), ("window=91m", 5460, 5), ("window=30s", 60, 2),
                                    ("window=5461", 5520, 5), ("window=2h", 7200, 5)]:  # fmt: skip
        status, body = get(app, query)
        assert (status, body["window"], body["samples"]) == (200, seconds, samples), query
    assert get(app, "window=91m")[1]["complete"] is False  # begins a minute before the sketch did
    status, versioned = get(app, "window=15m", "/v2/models/m/versions/1/sketch")
    assert status == 200 and versioned["window"] == 900 and versioned["samples"] == 2


BAD_WINDOWS = [
    ("window=abc", "query parameter window: 'abc' is not a duration (such as 30s, 15m, 1h or 1h30m) nor a number "
                   "of seconds"),
    ("window=", "query parameter window: '' is not a duration"),
    ("window=1d", "query parameter window: '1d' is not a duration"),
    ("window=-5m", "query parameter window: '-5m' is not a duration"),
    ("window=0", "query parameter window: the window must be positive, got 0 seconds"),
    ("window=0m", "query parameter window: the window must be positive"),
    ("window=2h1s", "query parameter window: the window of 7201 seconds is longer than the sketch's retention of "
                    "120 minutes (7200 seconds)"),
    ("window=1h&window=2h", "query parameter window is given 2 times; give it once"),
    ("windw=1h", "unknown query parameter(s) 'windw': the sketch takes window"),
    ("window", "the query string is malformed: 'window'"),
]  # fmt: skip


@pytest.mark.parametrize(("query", "message"), BAD_WINDOWS, ids=[q for q, _ in BAD_WINDOWS])
def test_a_bad_window_is_400_naming_the_parameter_and_the_reason(server: tuple[InferenceServer, Clock], query: str,
                                                                 message: str) -> None:  # fmt: skip
    status, body = get(server[0], query)
    assert status == 400 and body["error"].startswith(message), body


def test_the_retention_flag_takes_a_duration_or_minutes(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    base = ["--model-name", "m", "--source", "file:///m.joblib"]
    assert parse_args(base).sketch_retention == 24 * 60
    for given, minutes in [("90m", 90), ("1h30m", 90), ("90", 90), ("61s", 2), ("2h", 120)]:
        assert parse_args([*base, "--sketch-retention", given]).sketch_retention == minutes, given
    monkeypatch.setenv("MLOPS_SKETCH_RETENTION", "3h")
    assert parse_args(base).sketch_retention == 180
    for bad, message in [("1d", "'1d' is not a duration"), ("0", "must be at least one minute, got 0")]:
        with pytest.raises(SystemExit):
            parse_args([*base, "--sketch-retention", bad])
        assert f"--sketch-retention (MLOPS_SKETCH_RETENTION): {message}" in capsys.readouterr().err
