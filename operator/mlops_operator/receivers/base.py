"""What every alert receiver is given and answers, and ``deliver``, which picks the receiver a spec names.

The controller decides what to notify and when (``logic.alerting``), reads the receiver's Secrets and hands a
``Notification`` to ``deliver`` with its own HTTP session (the outbound policy's). A receiver builds its payload with
a pure function and posts it through ``http.Poster``, which turns every way a delivery can fail into a ``Result`` whose
error names no URL, key or token. Kubernetes Events (``event``) are recorded by the controller itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, Protocol

import aiohttp

from mlops_operator.api.alertrule import Receiver
from mlops_operator.api.common import SecretKeyRef
from mlops_operator.logic import alerting
from mlops_operator.outbound import HostRule

if TYPE_CHECKING:
    from mlops_operator.receivers.http import Poster

Credentials = Mapping[str, str]
"""The Secret values the controller read for a receiver, by role: ``url`` (webhook, slack, alertmanager, and
pagerduty's endpoint override), ``routing_key`` (pagerduty), ``token`` (alertmanager's bearer token)."""

# Alertmanager's webhook payload gives firing alerts Go's zero time as their end.
ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True)
class AlertPayload:
    """One alert instance as receivers see it."""

    fingerprint: str
    """16 hex digits, a stable hash of the labels."""
    labels: dict[str, str]
    """Including alertname and severity."""
    annotations: dict[str, str]
    status: Literal["firing", "resolved"]
    starts_at: datetime
    """Timezone-aware (a naive time is read as UTC)."""
    ends_at: datetime | None
    """Resolved: when it was resolved. Firing: None, except for Alertmanager, which is given the time until which
    the alert is valid (Alertmanager resolves it itself after that)."""
    value: str | None
    generator_url: str | None


@dataclass(frozen=True)
class Notification:
    """One notification of a group of alerts to one receiver."""

    namespace: str
    rule: str
    """The AlertRule's name."""
    receiver: str
    """The receiver's name."""
    group_key: str
    """A stable key of the group, for example ``{namespace}/{rule}/{receiver}``."""
    alerts: tuple[AlertPayload, ...]
    external_url: str
    """Who sends (the operator's identity or URL), as Alertmanager's externalURL."""


@dataclass(frozen=True)
class Result:
    """How a delivery went."""

    ok: bool
    error: str | None = None
    """Why it failed, in words that carry no URL, routing key or token."""
    status: int | None = None
    """The HTTP status, when one came back."""
    retryable: bool = True
    """Whether trying again may succeed (timeouts, connection errors, 429, 5xx); else the receiver's configuration
    or the endpoint must change first."""


class Sender(Protocol):
    """What every receiver implements."""

    name: str
    """The field of ``api.alertrule.Receiver`` it serves."""

    async def send(
        self, receiver: Receiver, credentials: Credentials, notification: Notification, poster: Poster
    ) -> Result:
        """Posts the notification through ``poster``; never raises for a failed delivery."""
        ...


def every() -> tuple[Sender, ...]:
    """Every receiver that posts over HTTP, one instance each (imported here: they import this module)."""
    from mlops_operator.receivers.alertmanager import AlertmanagerSender
    from mlops_operator.receivers.pagerduty import PagerDutySender
    from mlops_operator.receivers.slack import SlackSender
    from mlops_operator.receivers.webhook import WebhookSender

    return (AlertmanagerSender(), WebhookSender(), SlackSender(), PagerDutySender())


def sender_for(receiver: Receiver) -> Sender:
    """The sender of the receiver's one set field; ValueError for ``event`` (the controller records Events) or none."""
    for sender in every():
        if getattr(receiver, sender.name) is not None:
            return sender
    if receiver.event is not None:
        raise ValueError(f"receiver {receiver.name}: event receivers are recorded by the controller, not delivered")
    raise ValueError(f"receiver {receiver.name}: none of alertmanager, webhook, slack and pagerduty is set")


async def deliver(
    receiver: Receiver,
    credentials: Credentials,
    notification: Notification,
    session: aiohttp.ClientSession,
    hosts: Sequence[HostRule] | None,
    # The receiver's spec.timeout, applied here so that a timeout is a Result like any other failure.
    timeout: float,  # noqa: ASYNC109
) -> Result:
    """Sends ``notification`` to ``receiver`` within ``timeout`` seconds (the whole delivery, every request of it).

    ``credentials`` are the Secret values by role (see ``Credentials``; surrounding whitespace is ignored), ``session``
    the caller's (its policy checks every connection), ``hosts`` the operator's allowlist of receiver hosts (None:
    any host). Redirects are never followed. Raises ValueError only for a receiver that is not delivered over HTTP
    (``event``); every failure to deliver is a Result with ``ok=False``. A notification without alerts sends
    nothing."""
    sender = sender_for(receiver)
    if not notification.alerts:
        return Result(ok=True)
    # A Secret written from a file often ends with a newline.
    clean = {role: value.strip() for role, value in credentials.items()}
    from mlops_operator.receivers.http import Poster, scrub  # http.py imports Result from here

    poster = Poster(session, None if hosts is None else tuple(hosts), clean, timeout)
    try:
        async with asyncio.timeout(timeout):
            result = await sender.send(receiver, clean, notification, poster)
    except TimeoutError:
        return Result(ok=False, error=f"timed out after {timeout:g}s", retryable=True)
    # Every message is built without the URL or secrets; this is the net under that rule.
    return result if result.error is None else replace(result, error=scrub(result.error, clean))


def secret_refs(receiver: Receiver) -> dict[str, SecretKeyRef]:
    """The Secret keys the receiver's credentials are read from, by role (see ``Credentials``)."""
    refs: dict[str, SecretKeyRef | None] = {}
    if receiver.webhook is not None:
        refs["url"] = receiver.webhook.url_secret_ref
    elif receiver.slack is not None:
        refs["url"] = receiver.slack.webhook_url_secret_ref
    elif receiver.pagerduty is not None:
        refs["routing_key"] = receiver.pagerduty.routing_key_secret_ref
        refs["url"] = receiver.pagerduty.url_secret_ref
    elif receiver.alertmanager is not None:
        refs["url"] = receiver.alertmanager.url_secret_ref
        refs["token"] = receiver.alertmanager.bearer_token_secret_ref
    return {role: ref for role, ref in refs.items() if ref is not None}


def payloads(instances: Mapping[str, alerting.Instance], due: alerting.Due, now: datetime, interval: float,
             kind: str) -> tuple[AlertPayload, ...]:  # fmt: skip
    """The alerts of one notification due, firing then resolved, from the rule's instances by fingerprint. A
    resolved alert ends when it was resolved; a firing one sent to Alertmanager is valid until four evaluation
    intervals (at least a minute each) ahead, as Prometheus sends it; to the others it has no end."""

    def one(inst: alerting.Instance, state: Literal["firing", "resolved"]) -> AlertPayload:
        if state == "resolved":
            ends: datetime | None = inst.resolved_at or now
        else:
            ends = alerting.valid_until(now, interval) if kind == "alertmanager" else None
        return AlertPayload(inst.fingerprint, dict(inst.labels), dict(inst.annotations), state,
                            inst.fired_at or inst.active_at, ends, inst.value, None)  # fmt: skip

    firing = tuple(one(instances[fp], "firing") for fp in due.firing if fp in instances)
    return firing + tuple(one(instances[fp], "resolved") for fp in due.resolved if fp in instances)


def missing(role: str) -> Result:
    """The Result of a delivery whose credentials lack ``role``."""
    return Result(ok=False, error=f"no {role} in the receiver's credentials (its Secret key)", retryable=False)


def rfc3339(at: datetime) -> str:
    """``at`` in UTC as RFC 3339 with a ``Z`` (a naive time is read as UTC)."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.isoformat().replace("+00:00", "Z")


def common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The entries equal in every one of ``maps`` (empty when there are none)."""
    if not maps:
        return {}
    first, *rest = maps
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}


def firing(notification: Notification) -> list[AlertPayload]:
    return [a for a in notification.alerts if a.status == "firing"]
