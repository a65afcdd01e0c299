"""``webhook``: Alertmanager's webhook payload (version 4), POSTed as JSON to a URL from a Secret."""

from __future__ import annotations

from typing import Any

from mlops_operator.api.alertrule import Receiver
from mlops_operator.receivers.base import ZERO_TIME, Credentials, Notification, Result, common, firing, rfc3339
from mlops_operator.receivers.http import Poster


def webhook_payload(notification: Notification) -> dict[str, Any]:
    """The group as Alertmanager's webhook receiver sends it. The group is the rule in its namespace: its group
    labels are alertname and namespace (the alerts' own when they share them, else the rule's)."""
    alerts = notification.alerts
    labels = common([a.labels for a in alerts])
    group = {"alertname": labels.get("alertname", notification.rule),
             "namespace": labels.get("namespace", notification.namespace)}  # fmt: skip
    return {
        "version": "4",
        "groupKey": notification.group_key,
        "truncatedAlerts": 0,
        "status": "firing" if firing(notification) else "resolved",
        "receiver": notification.receiver,
        "groupLabels": group,
        "commonLabels": labels,
        "commonAnnotations": common([a.annotations for a in alerts]),
        "externalURL": notification.external_url,
        "alerts": [
            {
                "status": a.status,
                "labels": dict(a.labels),
                "annotations": dict(a.annotations),
                "startsAt": rfc3339(a.starts_at),
                "endsAt": rfc3339(a.ends_at) if a.status == "resolved" and a.ends_at is not None else ZERO_TIME,
                "generatorURL": a.generator_url or "",
                "fingerprint": a.fingerprint,
            }
            for a in alerts
        ],
    }


class WebhookSender:
    name = "webhook"

    async def send(
        self, receiver: Receiver, credentials: Credentials, notification: Notification, poster: Poster
    ) -> Result:
        return await poster.post(credentials.get("url"), webhook_payload(notification))
