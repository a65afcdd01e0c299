"""The Open Inference Protocol V2 REST endpoints as a plain ASGI application.

A plain ASGI callable, not a framework: at a few hundred microseconds per request, routing and request objects are
a visible share of the time. Bodies are parsed with orjson, which also refuses NaN and Infinity (not JSON).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mlops_operator import __version__
from mlops_operator.server.batching import Batcher
from mlops_operator.server.metrics import ServerMetrics
from mlops_operator.server.openapi import document
from mlops_operator.server.runtimes import Runtime
from mlops_operator.server.sketch import Sketch, WindowError, duration_seconds
from mlops_operator.server.validation import RequestError, Signature, binary_output, output_tensor, parse_inputs

log = logging.getLogger("mlops_operator.server")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
JSON_HEADERS = [(b"content-type", b"application/json")]
CANCELLED = 499
"""The code counted for a request cancelled before its answer (its client went away; the code proxies use)."""
EXTENSIONS = ("binary_tensor_data",)
"""The protocol extensions the server supports, as its metadata lists them."""


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ModelState:
    """The one model this server serves, once loaded."""

    name: str
    version: str
    runtime: Runtime | None = None
    signature: Signature | None = None
    sketch: Sketch | None = None
    sketch_input: str | None = None
    sketch_output: str | None = None
    """The output counted as the prediction (the signature's first, else the runtime's first)."""
    error: str | None = None


class InferenceServer:
    """The ASGI application."""

    def __init__(self, state: ModelState, metrics: ServerMetrics, max_body_bytes: int = 10 * 1024 * 1024,
                 max_batch_size: int = 16, max_batch_latency: float = 0.002) -> None:  # fmt: skip
        self.state = state
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.openapi = orjson.dumps(document(state.name))
        self._busy = 0
        """Inference requests being handled (read, waiting for a batch, predicted)."""
        self.batcher = Batcher(self._run_model, max_batch_size, max_batch_latency, lambda: self._busy,
                               metrics.observe_batch)  # fmt: skip

    def _run_model(self, inputs: Any, outputs: tuple[str, ...]) -> dict[str, Any]:
        assert self.state.runtime is not None
        return self.state.runtime.predict(inputs, outputs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        try:
            if path.startswith("/v2/models/") and path.endswith("/infer"):
                await self._infer(scope, receive, send)
                return
            status, body, headers = self._get(path, method, scope.get("query_string", b""))
        except HttpError as exc:
            status, body, headers = exc.status, orjson.dumps({"error": str(exc)}), JSON_HEADERS
        except Exception as exc:  # answered as JSON like every other error, and logged
            log.exception("request failed")
            status, body, headers = 500, orjson.dumps({"error": f"{type(exc).__name__}: {exc}"}), JSON_HEADERS
        await _respond(send, status, body, headers)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- GET endpoints ---------------------------------------------------------------------------------------------

    def _get(self, path: str, method: str, query: bytes = b"") -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if method not in ("GET", "HEAD"):
            raise HttpError(405, f"{method} is not allowed on {path}")
        state = self.state
        ready = state.runtime is not None
        if path == "/v2/health/live":
            return 200, b'{"live":true}', JSON_HEADERS
        if path == "/v2/health/ready":
            return (200 if ready else 503), orjson.dumps({"ready": ready}), JSON_HEADERS
        if path == "/v2":
            return 200, orjson.dumps(self.server_metadata()), JSON_HEADERS
        if path == "/metrics":
            return 200, generate_latest(self.metrics.registry), [(b"content-type", CONTENT_TYPE_LATEST.encode())]
        if path in ("/openapi.json", "/v2/openapi.json"):
            return 200, self.openapi, JSON_HEADERS
        if path.startswith("/v2/models/"):
            rest = self._model_path(path)
            if rest == "":
                return 200, orjson.dumps(self.model_metadata()), JSON_HEADERS
            if rest == "/ready":
                return 200, orjson.dumps({"name": state.name, "ready": ready}), JSON_HEADERS
            if rest == "/sketch":
                if state.sketch is None:
                    raise HttpError(404, "no reference profile is configured: no drift sketch")
                window = _sketch_window(query)
                try:
                    counts = state.sketch.snapshot(window)
                except WindowError as exc:
                    raise HttpError(400, f"query parameter window: {exc}") from None
                body = {"model_name": state.name, "model_version": state.version, **counts}
                return 200, orjson.dumps(body), JSON_HEADERS
        raise HttpError(404, f"no such endpoint: {path}")

    def _model_path(self, path: str) -> str:
        """The part after /v2/models/{name}[/versions/{v}], checking name and version."""
        parts = path[len("/v2/models/") :].split("/")
        name, rest = parts[0], parts[1:]
        if name != self.state.name:
            raise HttpError(404, f"model {name!r} is not served here (this server serves {self.state.name!r})")
        if len(rest) >= 2 and rest[0] == "versions":
            if rest[1] != self.state.version:
                raise HttpError(404, f"version {rest[1]!r} of {name!r} is not served here "
                                f"(this server serves {self.state.version!r})")  # fmt: skip
            rest = rest[2:]
        return "/" + "/".join(rest) if rest else ""

    def model_metadata(self) -> dict[str, Any]:
        state = self.state
        if state.runtime is None or state.signature is None:
            raise HttpError(503, state.error or f"model {state.name!r} is loading")
        outputs = [t.describe() for t in state.signature.outputs or state.runtime.output_specs()]
        return {
            "name": state.name,
            "versions": [state.version],
            "platform": state.runtime.platform,
            "inputs": [t.describe() for t in state.signature.inputs],
            "outputs": outputs,
        }

    # --- inference -------------------------------------------------------------------------------------------------

    async def _infer(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = self.begin()
        status, answered = CANCELLED, False
        try:
            try:
                if scope["method"] != "POST":
                    raise HttpError(405, "infer takes POST")
                if self._model_path(scope["path"]) != "/infer":
                    raise HttpError(404, f"no such endpoint: {scope['path']}")
                body = await self._read_body(scope, receive)
                if self.state.runtime is None:
                    raise HttpError(503, self.state.error or f"model {self.state.name!r} is not ready")
                payload, headers = await self._predict(body, _header_length(scope))
                status = 200
            except HttpError as exc:
                status, payload, headers = exc.status, orjson.dumps({"error": str(exc)}), JSON_HEADERS
            except Exception as exc:  # a model failure must not take the server down
                log.exception("inference failed")
                status, headers = 500, JSON_HEADERS
                payload = orjson.dumps({"error": f"inference failed: {type(exc).__name__}: {exc}"})
            self.answered()
            answered = True
            await _respond(send, status, payload, headers)
        finally:
            # Also when the request is cancelled: it must not hold batches back, nor stay counted in flight.
            if not answered:
                self.answered()
            self.end(started, status, "rest")

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_body_bytes
        for key, value in scope.get("headers", ()):
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                raise HttpError(413, f"the body has {int(value)} bytes; the limit is {limit}")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HttpError(400, "the client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise HttpError(413, f"the body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _predict(self, raw: bytes, header_length: int | None) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """The answer's body and headers. With ``header_length`` (the binary tensor extension) the body is that
        many bytes of JSON followed by the binary inputs."""
        binary = b""
        if header_length is not None:
            if header_length > len(raw):
                raise HttpError(400, f"Inference-Header-Content-Length is {header_length}, larger than the body's "
                                     f"{len(raw)} bytes")  # fmt: skip
            raw, binary = raw[:header_length], raw[header_length:]
        try:
            request = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            where = " (the JSON header of a binary request)" if header_length is not None else ""
            raise HttpError(400, f"the body is not valid JSON{where}: {exc}") from None
        try:
            inputs, wanted = self.prepare(request, binary)
            in_binary = binary_outputs(request, wanted)
        except RequestError as exc:
            raise HttpError(400, str(exc)) from None
        results = await self.run(inputs, wanted)
        outputs, tails = [], []
        for name in wanted:
            if name in in_binary:
                header, tail = binary_output(name, np.asarray(results[name]))
                outputs.append(header)
                tails.append(tail)
            else:
                outputs.append(output_tensor(name, np.asarray(results[name])))
        state = self.state
        response: dict[str, Any] = {"model_name": state.name, "model_version": state.version, "outputs": outputs}
        if isinstance(request.get("id"), str):
            response["id"] = request["id"]
        head = orjson.dumps(response)
        if not in_binary:
            return head, JSON_HEADERS
        headers = [(b"content-type", b"application/octet-stream"),
                   (b"inference-header-content-length", str(len(head)).encode())]  # fmt: skip
        return b"".join([head, *tails]), headers

    # --- shared by REST and gRPC -----------------------------------------------------------------------------------

    def prepare(self, request: Any, binary: bytes = b"") -> tuple[dict[str, Any], tuple[str, ...]]:
        """A request (V2 JSON form; binary inputs read from ``binary``) checked against the signature: its inputs as
        arrays and the outputs it asks for. Raises RequestError; nothing is predicted."""
        state = self.state
        assert state.runtime is not None and state.signature is not None
        inputs = parse_inputs(request, state.signature, binary)
        return inputs, _requested_outputs(request, state.runtime.output_names(), state.signature)

    async def run(self, inputs: dict[str, Any], wanted: tuple[str, ...]) -> dict[str, Any]:
        """The outputs ``wanted`` for checked ``inputs``, predicted with the requests that wait with it; the inputs
        (and the prediction, when asked for) counted into the drift sketch."""
        state = self.state
        results = await self.batcher(inputs, wanted)
        if state.sketch is not None and state.sketch_input is not None:
            # Inputs are always counted; the prediction when this request asked for that output.
            state.sketch.count(inputs[state.sketch_input], results.get(state.sketch_output or ""))
        return results

    def begin(self) -> float:
        """An inference request starts (REST or gRPC): counted as in flight and busy (batches wait for it)."""
        self.metrics.inflight.inc()
        self._busy += 1
        return time.perf_counter()

    def answered(self) -> None:
        """The request's answer is ready: it no longer holds a batch back."""
        self._busy -= 1

    def end(self, started: float, status: int, protocol: str) -> None:
        """The request's answer is on its way: its metrics, and the sketch's flush when one is due."""
        metrics = self.metrics
        metrics.inflight.dec()
        metrics.count(status, protocol)
        metrics.observe_latency(time.perf_counter() - started, protocol)
        sketch = self.state.sketch
        if sketch is not None and sketch.due:
            # Counted once this answer is on its way, between requests: none of them waits for it.
            asyncio.get_running_loop().call_soon(sketch.flush)

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "mlops-server", "version": __version__, "extensions": list(EXTENSIONS)}


def _sketch_window(query: bytes) -> float | None:
    """The seconds of the sketch's ``window`` query parameter (``30s``, ``15m``, ``1h``, ``1h30m`` or plain seconds);
    None without one: the cumulative counts."""
    if not query:
        return None
    try:
        params = parse_qs(query.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    except ValueError:  # UnicodeDecodeError too
        raise HttpError(400, f"the query string is malformed: {query.decode('latin-1')!r}") from None
    unknown = sorted(set(params) - {"window"})
    if unknown:
        raise HttpError(400, f"unknown query parameter(s) {', '.join(map(repr, unknown))}: the sketch takes window")
    values = params.get("window")
    if not values:
        return None
    if len(values) > 1:
        raise HttpError(400, f"query parameter window is given {len(values)} times; give it once")
    try:
        return duration_seconds(values[0])
    except ValueError as exc:
        raise HttpError(400, f"query parameter window: {exc}") from None


def _header_length(scope: Scope) -> int | None:
    """The Inference-Header-Content-Length of a binary request (None: the body is all JSON)."""
    for key, value in scope.get("headers", ()):
        if key == b"inference-header-content-length":
            if not value.isdigit():
                raise HttpError(400, f"Inference-Header-Content-Length must be a byte count, got {value.decode()!r}")
            return int(value)
    return None


def binary_outputs(request: dict[str, Any], wanted: tuple[str, ...]) -> set[str]:
    """The outputs asked for in binary: every one with the request's parameters.binary_data_output, else those
    whose own parameters.binary_data is true."""
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RequestError("'parameters' must be an object")
    every = parameters.get("binary_data_output", False)
    if not isinstance(every, bool):
        raise RequestError("parameters.binary_data_output must be true or false")
    chosen = set(wanted) if every else set()
    for item in request.get("outputs") or []:
        flag = (item.get("parameters") or {}).get("binary_data")
        if flag is None:
            continue
        if not isinstance(flag, bool):
            raise RequestError(f"output {item['name']!r}: parameters.binary_data must be true or false")
        (chosen.add if flag else chosen.discard)(item["name"])
    return chosen


def _requested_outputs(request: dict[str, Any], available: tuple[str, ...], signature: Signature) -> tuple[str, ...]:
    asked = request.get("outputs")
    if asked is None:
        default = tuple(t.name for t in signature.outputs if t.name in available)
        return default or available[:1]
    if not isinstance(asked, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in asked):
        raise RequestError("'outputs' must be a list of objects with a name")
    names = tuple(o["name"] for o in asked)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise RequestError(f"output(s) {', '.join(map(repr, unknown))} not produced (outputs: {', '.join(available)})")
    return names


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
