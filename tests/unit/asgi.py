"""Calls into the model server's ASGI application in-process, for unit tests: no socket, no server process."""

from __future__ import annotations

import asyncio
from typing import Any

from mlops_operator.server.app import InferenceServer


def call(app: InferenceServer, body: bytes, headers: dict[str, str] | None = None,
         path: str = "/v2/models/m/infer", method: str = "POST") -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """One request: the answer's status, headers and body."""
    scope = {"type": "http", "method": method, "path": path,
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]}  # fmt: skip
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    out_headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], out_headers, b"".join(m.get("body", b"") for m in sent[1:])
