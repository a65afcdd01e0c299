"""``slack``: one message per notification to a Slack incoming webhook, an attachment coloured by the group's state.

Slack answers 200 with the body ``ok``; any other answer is a failure that quotes Slack's short error
(``invalid_token``, ``channel_not_found``)."""

from __future__ import annotations

from typing import Any

from mlops_operator.api.alertrule import Receiver
from mlops_operator.receivers.base import AlertPayload, Credentials, Notification, Result, common, firing
from mlops_operator.receivers.http import Answer, Poster

USERNAME = "mlops-operator"
# A message lists this many alerts and counts the rest (Slack cuts long messages).
MAX_LISTED = 20
SEVERITY_ORDER = ("critical", "warning", "info")
HIDDEN_LABELS = ("alertname", "severity")


def slack_payload(notification: Notification, channel: str | None = None) -> dict[str, Any]:
    """The incoming webhook's message: a fallback line, and one attachment titled
    ``[FIRING:2] alertname (severity)`` listing the alerts, firing first."""
    title = _title(notification)
    fired = firing(notification)
    severity = _severity(notification)
    color = "good" if not fired else "danger" if severity == "critical" else "warning"
    ordered = fired + [a for a in notification.alerts if a.status != "firing"]
    blocks = [_describe(a) for a in ordered[:MAX_LISTED]]
    if len(ordered) > MAX_LISTED:
        blocks.append(f"… and {len(ordered) - MAX_LISTED} more")
    message: dict[str, Any] = {
        "text": _escape(title),
        "username": USERNAME,
        "attachments": [
            {
                "color": color,
                "fallback": _escape(title),
                "title": _escape(title),
                "text": "\n\n".join(blocks),
                "footer": _escape(f"AlertRule {notification.namespace}/{notification.rule}"),
            }
        ],
    }
    if channel:
        message["channel"] = channel
    return message


def _title(notification: Notification) -> str:
    fired = firing(notification)
    state = f"FIRING:{len(fired)}" if fired else "RESOLVED"
    name = common([a.labels for a in notification.alerts]).get("alertname", notification.rule)
    return f"[{state}] {name} ({_severity(notification)})"


def _severity(notification: Notification) -> str:
    """The group's severity: the alerts' common one, else the worst among them."""
    severities = {a.labels.get("severity", "") for a in notification.alerts}
    if len(severities) == 1:
        return severities.pop() or "none"
    return next((s for s in SEVERITY_ORDER if s in severities), "mixed")


def _describe(alert: AlertPayload) -> str:
    notes = alert.annotations
    lines = [f"*{alert.status.upper()}* {_escape(notes.get('summary') or alert.labels.get('alertname', ''))}"]
    if notes.get("description"):
        lines.append(_escape(notes["description"]))
    if alert.value is not None:
        lines.append(f"value: {_escape(alert.value)}")
    shown = sorted((k, v) for k, v in alert.labels.items() if k not in HIDDEN_LABELS)
    if shown:
        lines.append("labels: " + ", ".join(f"`{_escape(k)}={_escape(v)}`" for k, v in shown))
    if notes.get("runbook_url"):
        lines.append(f"<{_escape(notes['runbook_url'])}|runbook>")
    return "\n".join(lines)


def _escape(text: str) -> str:
    # The three characters Slack's message formatting asks to escape.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _accept(answer: Answer) -> str | None:
    return None if answer.body.strip() == "ok" else f"HTTP {answer.status} without Slack's ok"


class SlackSender:
    name = "slack"

    async def send(
        self, receiver: Receiver, credentials: Credentials, notification: Notification, poster: Poster
    ) -> Result:
        channel = receiver.slack.channel if receiver.slack is not None else None
        return await poster.post(credentials.get("url"), slack_payload(notification, channel), accept=_accept)
