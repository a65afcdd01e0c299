"""``pagerduty``: PagerDuty Events API v2, one event per alert: ``trigger`` while it fires, ``resolve`` once resolved.

The deduplication key is ``{namespace}/{rule}/{fingerprint}``: the same alert instance is the same PagerDuty alert
across notifications and operator restarts, so a trigger sent again only updates it and the resolve closes it."""

from __future__ import annotations

import asyncio
from typing import Any

from mlops_operator.api.alertrule import Receiver
from mlops_operator.receivers.base import AlertPayload, Credentials, Notification, Result, missing, rfc3339
from mlops_operator.receivers.http import Poster

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
CLIENT = "mlops-operator"
MAX_SUMMARY = 1024
SEVERITIES = {"critical": "critical", "warning": "warning", "info": "info"}
# Events of one group in flight at once.
CONCURRENCY = 8


def dedup_key(notification: Notification, alert: AlertPayload) -> str:
    return f"{notification.namespace}/{notification.rule}/{alert.fingerprint}"


def pagerduty_events(notification: Notification, routing_key: str) -> list[dict[str, Any]]:
    """The events of a notification, one per alert, in its order."""
    return [_event(notification, alert, routing_key) for alert in notification.alerts]


def _event(notification: Notification, alert: AlertPayload, routing_key: str) -> dict[str, Any]:
    key = dedup_key(notification, alert)
    if alert.status == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}
    labels = alert.labels
    name = labels.get("alertname", notification.rule)
    details: dict[str, Any] = {"labels": dict(labels), "annotations": dict(alert.annotations)}
    if alert.value is not None:
        details["value"] = alert.value
    payload: dict[str, Any] = {
        "summary": _summary(alert, name),
        "source": _source(notification, labels),
        "severity": SEVERITIES.get(labels.get("severity", ""), "error"),
        "timestamp": rfc3339(alert.starts_at),
        "group": notification.rule,
        "class": name,
        "custom_details": details,
    }
    # The resource the alert is about, when its labels say: a condition rule's resource, an sla rule's deployment.
    component = labels.get("name") or labels.get("deployment") or labels.get("model")
    if component:
        payload["component"] = component
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": payload,
        "client": CLIENT,
    }
    if alert.annotations.get("runbook_url"):
        event["links"] = [{"href": alert.annotations["runbook_url"], "text": "runbook"}]
    return event


def _summary(alert: AlertPayload, name: str) -> str:
    summary = alert.annotations.get("summary") or (
        f"{name}: " + ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k != "alertname")
    )
    return summary if len(summary) <= MAX_SUMMARY else summary[: MAX_SUMMARY - 1] + "…"


def _source(notification: Notification, labels: dict[str, str]) -> str:
    if labels.get("namespace") and labels.get("name"):
        return f"{labels['namespace']}/{labels['name']}"
    return f"{notification.namespace}/{notification.rule}"


class PagerDutySender:
    name = "pagerduty"

    async def send(
        self, receiver: Receiver, credentials: Credentials, notification: Notification, poster: Poster
    ) -> Result:
        """Sends the events concurrently: ok only when every one was accepted; otherwise the error counts the
        failures and gives the first one's reason (sending them all again is safe: each has its dedup key)."""
        routing_key = credentials.get("routing_key")
        if not routing_key:
            return missing("routing_key")
        url = credentials.get("url") or DEFAULT_URL
        slots = asyncio.Semaphore(CONCURRENCY)

        async def one(event: dict[str, Any]) -> Result:
            async with slots:
                return await poster.post(url, event)

        results = await asyncio.gather(*(one(e) for e in pagerduty_events(notification, routing_key)))
        failed = [r for r in results if not r.ok]
        if not failed:
            return Result(ok=True, status=results[0].status if results else None)
        first = failed[0]
        error = first.error if len(results) == 1 else f"{len(failed)} of {len(results)} events failed: {first.error}"
        return Result(ok=False, error=error, status=first.status, retryable=any(r.retryable for r in failed))
