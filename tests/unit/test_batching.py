"""Adaptive batching through the server's ASGI application, in-process: concurrent requests share predict calls and
each gets exactly the answer it would get alone; a request alone is not delayed; a bad request or a failing batch
never costs its neighbours their answers."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from mlops_operator.server.app import InferenceServer, ModelState
from mlops_operator.server.batching import Batcher
from mlops_operator.server.metrics import ServerMetrics
from mlops_operator.server.runtimes import load
from mlops_operator.server.validation import Signature

SIGNATURE = Signature.parse({"inputs": [{"name": "x", "datatype": "FP64", "shape": [-1, 3]}]})
X = np.random.default_rng(0).normal(size=(300, 3))
MODEL = LogisticRegression().fit(X, (X[:, 0] + X[:, 1] > 0).astype(int))


class Counting:
    """A runtime that counts its predict calls (and can refuse batches over ``fail_over`` rows)."""

    def __init__(self, path: Path, fail_over: int | None = None) -> None:
        self.inner = load("sklearn", str(path))
        self.platform = "sklearn"
        self.calls: list[int] = []
        self.fail_over = fail_over

    def output_names(self) -> tuple[str, ...]:
        return self.inner.output_names()

    def predict(self, inputs: Any, outputs: tuple[str, ...]) -> dict[str, Any]:
        rows = next(iter(inputs.values())).shape[0]
        self.calls.append(rows)
        if self.fail_over is not None and rows > self.fail_over:
            raise RuntimeError("too many rows")
        return self.inner.predict(inputs, outputs)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("m") / "m.joblib"
    joblib.dump(MODEL, path)
    return path


def server(runtime: Counting, **options: Any) -> InferenceServer:
    return InferenceServer(ModelState("m", "1", runtime, SIGNATURE), ServerMetrics("m", "1"), **options)  # type: ignore[arg-type]


async def request(app: InferenceServer, body: dict[str, Any], delay: float = 0.0) -> tuple[int, dict[str, Any]]:
    """One request as a connection would bring it: it arrives after ``delay`` and its body takes a loop turn."""
    await asyncio.sleep(delay)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0)  # reading the body: the loop turns, others arrive
        return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": "POST", "path": "/v2/models/m/infer", "headers": []}, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


def rows_body(rows: np.ndarray, outputs: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": [{"name": "x", "datatype": "FP64", "shape": list(rows.shape),
                                        "data": rows.ravel().tolist()}]}  # fmt: skip
    if outputs:
        body["outputs"] = [{"name": n} for n in outputs]
    return body


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=2, max_size=24),
       delays=st.lists(st.sampled_from([0.0, 0.0, 0.0005, 0.002]), min_size=24, max_size=24))  # fmt: skip
def test_concurrent_requests_get_exactly_their_own_answers(model_path: Path, sizes: list[int],
                                                           delays: list[float]) -> None:  # fmt: skip
    runtime = Counting(model_path)
    app = server(runtime, max_batch_size=16, max_batch_latency=0.002)
    starts = np.cumsum([0, *sizes])
    chunks = [X[a:b] for a, b in itertools.pairwise(starts)]

    async def burst() -> list[tuple[int, dict[str, Any]]]:
        return await asyncio.gather(*(request(app, rows_body(c, ["predict", "predict_proba"]), d)
                                      for c, d in zip(chunks, delays, strict=False)))  # fmt: skip

    answers = asyncio.run(burst())
    for chunk, (status, body) in zip(chunks, answers, strict=True):
        assert status == 200, body
        outputs = {o["name"]: o for o in body["outputs"]}
        assert outputs["predict"]["data"] == MODEL.predict(chunk).tolist()
        assert outputs["predict_proba"]["shape"] == [len(chunk), 2]
        np.testing.assert_allclose(outputs["predict_proba"]["data"], MODEL.predict_proba(chunk).ravel())
    assert sum(runtime.calls) == sum(sizes)  # every row predicted once
    assert max(runtime.calls) <= 16


def test_a_burst_is_batched(model_path: Path) -> None:
    runtime = Counting(model_path)
    app = server(runtime, max_batch_size=32)

    async def burst() -> list[tuple[int, dict[str, Any]]]:
        return await asyncio.gather(*(request(app, rows_body(X[i : i + 1])) for i in range(20)))

    assert all(status == 200 for status, _ in asyncio.run(burst()))
    assert len(runtime.calls) < 20 and max(runtime.calls) > 1, runtime.calls
    # The batch size histogram says so too.
    sizes = next(iter(app.metrics.batch_size.collect())).samples
    count = next(s.value for s in sizes if s.name.endswith("_count"))
    above_one = count - next(s.value for s in sizes if s.name.endswith("_bucket") and s.labels["le"] == "1.0")
    assert count == 20 and above_one > 0


def test_a_request_alone_is_predicted_at_once(model_path: Path) -> None:
    runtime = Counting(model_path)
    app = server(runtime, max_batch_size=32, max_batch_latency=5.0)  # a long wait would show
    started = asyncio.run(asyncio.wait_for(request(app, rows_body(X[:2])), 1.0))
    assert started[0] == 200 and runtime.calls == [2]
    waits = next(iter(app.metrics.batch_wait.collect())).samples
    assert next(s.value for s in waits if s.name.endswith("_sum")) == 0.0


def test_a_bad_request_in_a_burst_gets_its_400_and_the_others_their_200s(model_path: Path) -> None:
    runtime = Counting(model_path)
    app = server(runtime)
    bad = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 2], "data": [1.0, 2.0]}]}
    bodies = [rows_body(X[i : i + 1]) for i in range(6)]
    bodies.insert(3, bad)

    async def burst() -> list[tuple[int, dict[str, Any]]]:
        return await asyncio.gather(*(request(app, b) for b in bodies))

    answers = asyncio.run(burst())
    assert [status for status, _ in answers] == [200, 200, 200, 400, 200, 200, 200]
    assert "does not match the signature" in answers[3][1]["error"]


def test_a_failing_batch_is_predicted_again_request_by_request(model_path: Path) -> None:
    runtime = Counting(model_path, fail_over=3)  # batches over 3 rows fail; each request alone has 2
    app = server(runtime)

    async def burst() -> list[tuple[int, dict[str, Any]]]:
        return await asyncio.gather(*(request(app, rows_body(X[2 * i : 2 * i + 2])) for i in range(5)))

    answers = asyncio.run(burst())
    assert [status for status, _ in answers] == [200] * 5
    for i, (_, body) in enumerate(answers):
        assert body["outputs"][0]["data"] == MODEL.predict(X[2 * i : 2 * i + 2]).tolist()
    assert any(rows > 3 for rows in runtime.calls)  # the batch was tried


def test_requests_asking_for_other_outputs_are_not_batched_together(model_path: Path) -> None:
    runtime = Counting(model_path)
    app = server(runtime)
    bodies = [rows_body(X[i : i + 1], ["predict"] if i % 2 else ["predict_proba"]) for i in range(8)]

    async def burst() -> list[tuple[int, dict[str, Any]]]:
        return await asyncio.gather(*(request(app, b) for b in bodies))

    answers = asyncio.run(burst())
    for i, (status, body) in enumerate(answers):
        assert status == 200 and [o["name"] for o in body["outputs"]] == ["predict" if i % 2 else "predict_proba"]
    assert sum(runtime.calls) == 8 and len(runtime.calls) >= 2


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_rows must be at least 1"):
        Batcher(lambda i, o: {}, 0, 0.001, lambda: 0)
