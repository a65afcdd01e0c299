"""AlertRule: alert rules over metrics or our own resources' status, with pending, firing and resolved states."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from mlops_operator.api.common import (
    ApiModel,
    DnsLabel,
    Duration,
    PrometheusProvider,
    SecretKeyRef,
    StatusBase,
    cel,
    exactly_one,
    rule,
)

Kind = Literal["ModelVersion", "ModelDeployment", "CanaryRollout", "DriftMonitor", "AlertRule"]


class ResourceRef(ApiModel):
    """A resource of ours in the rule's namespace."""

    kind: Kind
    """The kind."""
    name: DnsLabel
    """The name."""


class ResourceCondition(ApiModel):
    """Compares a field of one of our resources with a value."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            exactly_one("value", "text"),
            rule("!has(self.text) || self.op == '==' || self.op == '!='", "text compares only with == or !=", ".op"),
        )
    )

    resource: ResourceRef
    """The resource watched."""
    field: str = Field(pattern=r"^(status|spec|metadata)(\.[A-Za-z0-9_]+|\[[0-9]+\])+$", max_length=256)
    """A dotted path in the resource, for example status.driftedShare or status.phase."""
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    """The comparison."""
    value: float | None = None
    """A number to compare with."""
    text: str | None = Field(default=None, max_length=1024)
    """A string to compare with (== and != only), for example Failed."""


class Webhook(ApiModel):
    """POSTs the alert as JSON to a URL kept in a Secret."""

    url_secret_ref: SecretKeyRef
    """The Secret key holding the URL."""


class Slack(ApiModel):
    """Posts to a Slack incoming webhook."""

    webhook_url_secret_ref: SecretKeyRef
    """The Secret key holding the incoming webhook URL."""
    channel: str | None = Field(default=None, max_length=128)
    """A channel overriding the webhook's default."""


class PagerDuty(ApiModel):
    """Sends PagerDuty Events API v2 trigger and resolve events."""

    routing_key_secret_ref: SecretKeyRef
    """The Secret key holding the integration's routing key."""
    url: str = Field(default="https://events.pagerduty.com/v2/enqueue", pattern=r"^https?://.+$", max_length=2048)
    """The Events API endpoint."""


class Alertmanager(ApiModel):
    """Posts alerts to an Alertmanager's v2 API, which groups, silences and routes them."""

    url: str = Field(pattern=r"^https?://.+$", max_length=2048)
    """The Alertmanager base URL, for example http://alertmanager.monitoring:9093."""


class EventReceiver(ApiModel):
    """Records a Kubernetes Event on the AlertRule (and on the watched resource, for condition rules)."""


class Receiver(ApiModel):
    """Where notifications go: exactly one of webhook, slack, pagerduty, alertmanager, event."""

    model_config = ConfigDict(
        json_schema_extra=cel(exactly_one("webhook", "slack", "pagerduty", "alertmanager", "event"))
    )

    name: str | None = Field(default=None, max_length=128)
    """A name for status; by default the receiver's type and index."""
    webhook: Webhook | None = None
    """A generic JSON webhook."""
    slack: Slack | None = None
    """Slack."""
    pagerduty: PagerDuty | None = None
    """PagerDuty."""
    alertmanager: Alertmanager | None = None
    """Alertmanager."""
    event: EventReceiver | None = None
    """Kubernetes Events."""


class AlertRuleSpec(ApiModel):
    """An alert rule: a PromQL expression or a condition on one of our resources."""

    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra=cel(
            exactly_one("expr", "condition"),
            rule(
                "!has(self.expr) || has(self.prometheus)",
                "prometheus is required with expr",
                ".prometheus",
                "FieldValueRequired",
            ),
        ),
    )

    expr: str | None = Field(default=None, min_length=1, max_length=8192)
    """A PromQL expression; every series it returns is an alert instance."""
    prometheus: PrometheusProvider | None = None
    """The Prometheus that evaluates expr."""
    condition: ResourceCondition | None = None
    """A condition on one of our resources' fields."""
    for_: Duration = Field(default="0s", alias="for")
    """How long the rule must hold before pending becomes firing."""
    keep_firing_for: Duration = "0s"
    """How long a firing alert keeps firing after the rule stops holding."""
    interval: Duration = "30s"
    """How often the rule is evaluated."""
    severity: Literal["critical", "warning", "info"] = "warning"
    """The alert's severity."""
    labels: dict[str, Annotated[str, Field(max_length=1024)]] = {}
    """Labels added to the alert."""
    annotations: dict[str, Annotated[str, Field(max_length=8192)]] = {}
    """Annotations such as summary, description and runbook_url; {{ $value }} and {{ $labels.x }} are expanded."""
    receivers: list[Receiver] = Field(default=[], max_length=16)
    """Where notifications go."""
    repeat_interval: Duration = "4h"
    """How often a still-firing alert is sent again."""
    send_resolved: bool = True
    """Whether resolution is notified."""


class Notification(ApiModel):
    """The last delivery to one receiver."""

    receiver: str
    """The receiver."""
    at: datetime
    """When."""
    state: Literal["firing", "resolved"]
    """What was sent."""
    success: bool
    """Whether it was delivered."""
    error: str | None = None
    """Why not (never a secret)."""


class AlertRuleStatus(StatusBase):
    """The rule's state."""

    state: Literal["inactive", "pending", "firing"] | None = None
    """inactive, pending (holds, not yet for long enough) or firing."""
    active_since: datetime | None = None
    """When the rule started to hold."""
    last_evaluation: datetime | None = None
    """When the rule was last evaluated."""
    value: str | None = None
    """The value seen at the last evaluation."""
    active_alerts: int | None = None
    """Alert instances pending or firing."""
    last_notified: list[Notification] = Field(default=[], max_length=16)
    """The last delivery to each receiver."""
