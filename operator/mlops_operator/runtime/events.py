"""Kubernetes Events about our objects: the one path every controller records them by."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Coroutine
from typing import Any, Literal

from lightkube import ApiError

from mlops_operator import kube
from mlops_operator.logic.times import now_rfc3339
from mlops_operator.runtime.kinds import Body

log = logging.getLogger(__name__)
MESSAGE_LIMIT = 1024
# Events posted at the same time: a burst of transitions would otherwise open a connection each.
CONCURRENT_POSTS = 8
_posting: asyncio.Semaphore | None = None

_background: set[asyncio.Task[None]] = set()


def in_background(work: Coroutine[Any, Any, None]) -> None:
    """Runs ``work`` without waiting for it, keeping a reference until it ends (the loop holds tasks weakly)."""
    task = asyncio.get_running_loop().create_task(work)
    _background.add(task)
    task.add_done_callback(_background.discard)


def event(owner: Body, reason: str, message: str, type_: Literal["Normal", "Warning"] = "Normal") -> Body:
    """The Event object about ``owner`` (shown by ``kubectl describe``)."""
    meta = owner["metadata"]
    stamp = now_rfc3339()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
            "namespace": meta["namespace"], "uid": meta["uid"],
        },
        "reason": reason,
        "message": message[:MESSAGE_LIMIT],
        "type": type_,
        "source": {"component": kube.FIELD_MANAGER},
        "reportingComponent": kube.FIELD_MANAGER,
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }  # fmt: skip


async def post(owner: Body, reason: str, message: str, type_: Literal["Normal", "Warning"] = "Normal") -> None:
    """Records an Event about ``owner``; a failure is logged, not raised (an Event is a courtesy, status is the
    record)."""
    global _posting
    if _posting is None:
        _posting = asyncio.Semaphore(CONCURRENT_POSTS)
    try:
        async with _posting:
            await kube.create(event(owner, reason, message, type_))
    except ApiError as exc:
        meta = owner["metadata"]
        log.warning("could not record event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], exc)


def record(owner: Body, reason: str, message: str, type_: Literal["Normal", "Warning"] = "Normal") -> None:
    """Records an Event about ``owner`` without waiting for it."""
    in_background(post(owner, reason, message, type_))
