"""Alert receivers: one interface (``base.Sender``), one module per receiver that posts over HTTP (alertmanager,
webhook, slack, pagerduty), and ``deliver``, which the AlertRule controller calls with a notification, the
receiver's Secret values and its own session.

Payloads are built by pure functions (``webhook_payload``, ``alertmanager_payload``, ``slack_payload``,
``pagerduty_events``); sending them goes through ``http.Poster``, where redirects are not followed, the operator's
allowlist of receiver hosts applies, and every failure becomes a ``Result`` whose error names no URL, host, key or
token. Kubernetes Events (``event``) are recorded by the controller, not here.
"""

from mlops_operator.receivers.alertmanager import alertmanager_payload
from mlops_operator.receivers.base import (
    AlertPayload,
    Credentials,
    Notification,
    Result,
    Sender,
    deliver,
    every,
    payloads,
    secret_refs,
    sender_for,
)
from mlops_operator.receivers.http import scrub
from mlops_operator.receivers.pagerduty import pagerduty_events
from mlops_operator.receivers.slack import slack_payload
from mlops_operator.receivers.webhook import webhook_payload

__all__ = [
    "AlertPayload",
    "Credentials",
    "Notification",
    "Result",
    "Sender",
    "alertmanager_payload",
    "deliver",
    "every",
    "pagerduty_events",
    "payloads",
    "scrub",
    "secret_refs",
    "sender_for",
    "slack_payload",
    "webhook_payload",
]
