"""Which API answers are tried again, and how: pure logic, no cluster."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest
from lightkube import ApiError

from mlops_operator import kube, telemetry


def api_error(code: int, retry_after: int | None = None, header: str | None = None) -> ApiError:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                            "message": f"answer {code}", "reason": "Test"}  # fmt: skip
    if retry_after is not None:
        body["details"] = {"retryAfterSeconds": retry_after}
    request = httpx2.Request("GET", "https://api.test/apis/mlops.io/v1alpha1/modelversions")
    headers = {"Retry-After": header} if header else {}
    return ApiError(request=request, response=httpx2.Response(code, json=body, headers=headers, request=request))


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (api_error(429, retry_after=1), 1.0),
        (api_error(429, header="3"), 3.0),
        (api_error(503), 0.0),
        (api_error(500), 0.0),
        (api_error(404), None),
        (api_error(409), None),
        (api_error(422), None),
        (api_error(403), None),
        (httpx2.ConnectError("refused"), 0.0),
        (ValueError("bug"), None),
    ],
)
def test_transient(exc: BaseException, expected: float | None) -> None:
    assert kube.transient(exc) == expected


def plain_error(code: int) -> httpx2.HTTPStatusError:
    request = httpx2.Request("GET", "https://api.test/apis/")
    response = httpx2.Response(code, text="<html>bad gateway</html>", request=request)
    return httpx2.HTTPStatusError("bad gateway", request=request, response=response)


@pytest.mark.parametrize(
    ("exc", "verb", "expected"),
    [
        (plain_error(502), "get", 0.0),  # a proxy's page, not a Status
        (plain_error(404), "get", None),
        (api_error(503), "create", 0.0),  # refused before acting
        (api_error(429, retry_after=2), "create", 2.0),
        (api_error(500), "create", None),  # may have been created: not twice
        (api_error(504), "apply", 0.0),  # applying again changes nothing
        (httpx2.ConnectTimeout("no answer"), "create", 0.0),
        (httpx2.ReadTimeout("slow"), "list", 0.0),
        (httpx2.ReadTimeout("slow"), "apply", None),
        (httpx2.RemoteProtocolError("dropped"), "patch", 0.0),
        (httpx2.RemoteProtocolError("dropped"), "create", None),
    ],
)
def test_transient_by_verb(exc: BaseException, verb: str, expected: float | None) -> None:
    assert kube.transient(exc, verb) == expected


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    return delays


def test_call_tries_a_transient_failure_again_and_counts_every_request(slept: list[float]) -> None:
    answers: list[BaseException | str] = [api_error(429, retry_after=1), api_error(503), "done"]

    async def request() -> str:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    before = telemetry.requests["get-test"]
    assert asyncio.run(kube._call("get-test", request)) == "done"
    assert telemetry.requests["get-test"] - before == 3
    # The server's Retry-After first, then a growing delay of our own.
    assert slept == [1.0, 0.2]


@pytest.mark.parametrize(
    ("code", "verb", "attempts"),
    [(503, "get-test", kube.RETRY_ATTEMPTS), (409, "patch-test", 1)],
    ids=["gives-up-after-the-last-attempt", "a-refusal-is-not-repeated"],
)
def test_call_stops_trying(slept: list[float], code: int, verb: str, attempts: int) -> None:
    calls = 0

    async def request() -> None:
        nonlocal calls
        calls += 1
        raise api_error(code)

    with pytest.raises(ApiError):
        asyncio.run(kube._call(verb, request))
    assert calls == attempts and len(slept) == attempts - 1
    assert all(delay <= kube.RETRY_MAX_DELAY for delay in slept)
