"""``alertmanager``: alerts POSTed to an Alertmanager's API v2 (``/api/v2/alerts``), as Prometheus sends them.

Alertmanager groups, silences and routes them itself; a firing alert carries the time until which it holds (the
controller sends it again before then), a resolved one the time it was resolved."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mlops_operator.api.alertrule import Receiver
from mlops_operator.receivers.base import Credentials, Notification, Result, missing, rfc3339
from mlops_operator.receivers.http import NOT_HTTP, Poster

ALERTS_PATH = "/api/v2/alerts"


def alertmanager_payload(notification: Notification) -> list[dict[str, Any]]:
    """The body of ``POST /api/v2/alerts``: one postable alert per alert (endsAt and generatorURL when known)."""
    out: list[dict[str, Any]] = []
    for alert in notification.alerts:
        item: dict[str, Any] = {
            "labels": dict(alert.labels),
            "annotations": dict(alert.annotations),
            "startsAt": rfc3339(alert.starts_at),
        }
        if alert.ends_at is not None:
            item["endsAt"] = rfc3339(alert.ends_at)
        if alert.generator_url is not None:
            item["generatorURL"] = alert.generator_url
        out.append(item)
    return out


def alerts_url(base: str) -> str:
    """The alerts endpoint under an Alertmanager's base URL (with or without a trailing slash or a path prefix)."""
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + ALERTS_PATH, parts.query, ""))


class AlertmanagerSender:
    name = "alertmanager"

    async def send(
        self, receiver: Receiver, credentials: Credentials, notification: Notification, poster: Poster
    ) -> Result:
        base = credentials.get("url")
        if not base:
            return missing("url")
        try:
            url = alerts_url(base)
        except ValueError:  # a malformed address: no URL to post to
            return Result(ok=False, error=NOT_HTTP, retryable=False)
        token = credentials.get("token")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await poster.post(url, alertmanager_payload(notification), headers)
