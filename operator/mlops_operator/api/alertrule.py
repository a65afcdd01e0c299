"""AlertRule: Prometheus-style alert rules over metrics (PromQL), over our own resources (conditions) and over a
ModelDeployment's service levels (SLA), with per-instance pending, firing and resolved states, delivered to
receivers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from mlops_operator.api.common import (
    LIST_MAP_BY_NAME,
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
LABEL_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
# Instances one rule may hold in status (a rule's own `limit` may ask for fewer).
MAX_INSTANCES = 200
RESERVED_LABELS = ("alertname", "severity")


class LabelSelectorRequirement(ApiModel):
    """A label selector requirement, as in Kubernetes label selectors."""

    key: str = Field(min_length=1, max_length=317)
    """The label key."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the key relates to the values."""
    values: list[Annotated[str, Field(max_length=63)]] = Field(default=[], max_length=64)
    """The values (In and NotIn need at least one; Exists and DoesNotExist none)."""


class Selector(ApiModel):
    """Which of our resources in the rule's namespace a condition rule watches: of one kind, by name or by labels
    (neither: all of the kind)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "!has(self.name) || (!has(self.matchLabels) && !has(self.matchExpressions))",
                "name selects one resource: matchLabels and matchExpressions cannot be used with it",
                ".name",
            )
        )
    )

    kind: Kind
    """The kind of resource."""
    name: DnsLabel | None = None
    """One resource by name."""
    match_labels: dict[str, Annotated[str, Field(max_length=63)]] | None = None
    """Resources carrying all of these labels."""
    match_expressions: list[LabelSelectorRequirement] | None = Field(default=None, max_length=16)
    """Resources matching all of these requirements."""


class FieldComparison(ApiModel):
    """Compares a field of the resource with a number or a string."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            exactly_one("value", "text"),
            rule("!has(self.text) || self.op == '==' || self.op == '!='", "text compares only with == or !=", ".op"),
        )
    )

    field: str = Field(pattern=r"^(status|spec|metadata)(\.[A-Za-z0-9_]+|\[[0-9]+\])+$", max_length=256)
    """A dotted path in the resource, for example status.driftedShare or status.phase."""
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    """The comparison."""
    value: float | None = None
    """A number to compare with."""
    text: str | None = Field(default=None, max_length=1024)
    """A string to compare with (== and != only), for example Failed."""


class StatusCondition(ApiModel):
    """Holds while the resource's condition of this type has this status (a missing condition does not hold)."""

    type: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9]*$", max_length=316)
    """The condition type, for example Ready."""
    status: Literal["True", "False", "Unknown"] = "False"
    """The status that makes the rule hold."""
    reason: str | None = Field(default=None, max_length=1024)
    """Only while the condition has this reason."""


class ResourceCondition(ApiModel):
    """A condition over our own resources, evaluated in the operator: exactly one of field, condition and cel.
    Every selected resource for which it holds is an alert instance (labels kind, name, namespace)."""

    model_config = ConfigDict(json_schema_extra=cel(exactly_one("field", "statusCondition", "cel")))

    selector: Selector
    """The resources watched."""
    field: FieldComparison | None = None
    """A field compared with a value; the instance's value is the field's."""
    status_condition: StatusCondition | None = None
    """A condition by type and status (Ready is False); the instance's value is the condition's message."""
    cel: str | None = Field(default=None, min_length=1, max_length=4096)
    """A CEL expression over the resource as `self`, true when the rule holds, for example
    `self.status.driftedShare > 0.3`; checked when the rule is applied (Ready=False, InvalidExpr)."""


class Sla(ApiModel):
    """Service levels of a ModelDeployment over its model servers' metrics: each objective set is an alert instance
    (label sli) that holds while the deployment misses it. Compiled to PromQL, shown in status.queries."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "has(self.latencyP99) || has(self.errorRate) || has(self.availability)",
                "an sla needs at least one of latencyP99, errorRate and availability",
            )
        )
    )

    deployment: DnsLabel
    """The ModelDeployment, in the rule's namespace."""
    window: Duration = "5m"
    """The window the levels are measured over."""
    latency_p99: float | None = Field(default=None, gt=0)
    """Seconds: holds while the 99th percentile of inference latency is above this."""
    error_rate: float | None = Field(default=None, ge=0, le=1)
    """Holds while the share of inference requests not answered 2xx (client and server errors) is above this."""
    availability: float | None = Field(default=None, ge=0, le=1)
    """Holds while the share of inference requests not answered with a server error (5xx) is below this."""


class Grouping(ApiModel):
    """When the direct receivers (webhook, slack, pagerduty) are notified, with Alertmanager's meaning; the rule's
    instances form one group."""

    group_wait: Duration = "30s"
    """How long to wait after the group's first alert fires before the first notification."""
    group_interval: Duration = "5m"
    """How long to wait before notifying changes (new alerts, resolutions) of a group already notified."""
    repeat_interval: Duration = "4h"
    """How long to wait before notifying again an unchanged group that is still firing."""


class Webhook(ApiModel):
    """POSTs Alertmanager's webhook payload (version 4) to a URL kept in a Secret."""

    url_secret_ref: SecretKeyRef
    """The Secret key holding the URL."""


class Slack(ApiModel):
    """Posts to a Slack incoming webhook."""

    webhook_url_secret_ref: SecretKeyRef
    """The Secret key holding the incoming webhook URL."""
    channel: str | None = Field(default=None, max_length=128)
    """A channel overriding the webhook's default."""


class PagerDuty(ApiModel):
    """Sends PagerDuty Events API v2 trigger and resolve events, one deduplication key per alert instance."""

    routing_key_secret_ref: SecretKeyRef
    """The Secret key holding the integration's routing key."""
    url_secret_ref: SecretKeyRef | None = None
    """A Secret key holding another Events API endpoint; by default https://events.pagerduty.com/v2/enqueue."""


class Alertmanager(ApiModel):
    """Posts alerts to an Alertmanager's API v2 (which groups, silences and routes them), as Prometheus does:
    firing alerts again while they fire, with an end time, and resolved ones once."""

    url_secret_ref: SecretKeyRef
    """The Secret key holding the Alertmanager's base URL, for example http://alertmanager.monitoring:9093."""
    bearer_token_secret_ref: SecretKeyRef | None = None
    """A bearer token sent with every request, from a Secret."""


class EventReceiver(ApiModel):
    """Records Kubernetes Events on the AlertRule (and on the resource, for condition rules) when an instance fires
    and when it resolves."""


class Receiver(ApiModel):
    """Where notifications go: exactly one of event, alertmanager, webhook, slack and pagerduty."""

    model_config = ConfigDict(
        json_schema_extra=cel(exactly_one("event", "alertmanager", "webhook", "slack", "pagerduty"))
    )

    name: DnsLabel
    """The receiver's name, unique in the rule (status reports delivery by it)."""
    event: EventReceiver | None = None
    """Kubernetes Events."""
    alertmanager: Alertmanager | None = None
    """An Alertmanager."""
    webhook: Webhook | None = None
    """A webhook taking Alertmanager's payload."""
    slack: Slack | None = None
    """Slack."""
    pagerduty: PagerDuty | None = None
    """PagerDuty."""
    send_resolved: bool = True
    """Whether resolutions are notified."""
    timeout: Duration = "10s"
    """How long one delivery may take before it counts as failed (and is retried)."""


class AlertRuleSpec(ApiModel):
    """An alert rule: exactly one of expr (PromQL), condition (our resources) and sla (a deployment's service
    levels). Every series or resource for which it holds is an alert instance, pending until it has held for `for`,
    then firing, then resolved."""

    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra=cel(
            exactly_one("expr", "condition", "sla"),
            rule(
                "!has(self.prometheus) || has(self.expr) || has(self.sla)",
                "prometheus is used only by expr and sla rules",
                ".prometheus",
            ),
            rule(
                "!has(self.prometheusRule) || !self.prometheusRule || has(self.expr)",
                "prometheusRule exports expr rules only",
                ".prometheusRule",
            ),
            rule("duration(self.interval) >= duration('10s')", "interval must be at least 10s", ".interval"),
            rule(
                "!has(self.labels) || self.labels.all(k, k.matches('^[a-zA-Z_][a-zA-Z0-9_]*$') && "
                "k != 'alertname' && k != 'severity')",
                "labels keys must be label names ([a-zA-Z_][a-zA-Z0-9_]*) other than alertname and severity "
                "(the rule's name and its severity field)",
                ".labels",
            ),
            rule(
                "!has(self.annotations) || self.annotations.all(k, k.matches('^[a-zA-Z_][a-zA-Z0-9_]*$'))",
                "annotations keys must be label names ([a-zA-Z_][a-zA-Z0-9_]*)",
                ".annotations",
            ),
        ),
    )

    expr: str | None = Field(default=None, min_length=1, max_length=8192)
    """A PromQL expression; every series it returns is an alert instance with its labels and value. Checked when
    applied (Ready=False, InvalidExpr, with the parser's message)."""
    condition: ResourceCondition | None = None
    """A condition over our own resources."""
    sla: Sla | None = None
    """A ModelDeployment's service levels."""
    prometheus: PrometheusProvider | None = None
    """The Prometheus that evaluates expr and sla rules; by default the operator's (--prometheus-url)."""
    for_: Duration = Field(default="0s", alias="for")
    """How long an instance must hold before pending becomes firing."""
    keep_firing_for: Duration = "0s"
    """How long a firing instance keeps firing after it stops holding."""
    interval: Duration = "30s"
    """How often the rule is evaluated (at least 10s)."""
    limit: int = Field(default=0, ge=0, le=MAX_INSTANCES)
    """The most instances the rule may have; more fail the evaluation (Ready=False, LimitExceeded) and clear its
    alerts, as in Prometheus. 0: up to 200."""
    severity: Literal["critical", "warning", "info"] = "warning"
    """The alert's severity (its label severity)."""
    labels: dict[str, Annotated[str, Field(max_length=1024)]] = {}
    """Labels added to every instance (keys are label names other than alertname and severity)."""
    annotations: dict[str, Annotated[str, Field(max_length=8192)]] = {}
    """Annotations such as summary and description. Templates: {{ $value }}, {{ $labels.name }},
    {{ $value | humanize }}, humanizePercentage, humanizeDuration, printf "%.2f"."""
    runbook_url: str | None = Field(default=None, pattern=r"^https?://.+$", max_length=2048)
    """A runbook's URL (annotation runbook_url)."""
    suspend: bool = False
    """Stops evaluation and notification; the alerts' state is kept."""
    receivers: list[Receiver] = Field(default=[], max_length=16, json_schema_extra=LIST_MAP_BY_NAME)
    """Where notifications go."""
    grouping: Grouping = Grouping()
    """When the direct receivers are notified."""
    prometheus_rule: bool = False
    """Emit the expr rule as a prometheus-operator PrometheusRule (owned by this rule, carrying this rule's labels,
    which a Prometheus's ruleSelector picks) instead of evaluating it."""


class Sent(ApiModel):
    """What a receiver was last told about an instance."""

    receiver: str
    """The receiver."""
    state: Literal["firing", "resolved"]
    """What was sent."""
    at: datetime
    """When."""


class Alert(ApiModel):
    """One alert instance."""

    fingerprint: str = Field(max_length=16)
    """A stable hash of the instance's labels (16 hex digits)."""
    labels: dict[str, str] = {}
    """The instance's labels: alertname, severity, the rule's labels and the series' or resource's."""
    annotations: dict[str, str] = {}
    """The rule's annotations, expanded for this instance."""
    state: Literal["pending", "firing", "resolved"]
    """pending (holds, not yet for `for`), firing, or resolved (kept for a while)."""
    active_at: datetime
    """When it started to hold."""
    fired_at: datetime | None = None
    """When it started to fire."""
    resolved_at: datetime | None = None
    """When it was resolved."""
    keep_firing_since: datetime | None = None
    """Firing, no longer holding: since when (keepFiringFor counts from here)."""
    value: str | None = Field(default=None, max_length=1024)
    """The value at the last evaluation at which it held."""
    sent: list[Sent] = Field(default=[], max_length=16)
    """What each receiver was last told about it."""


class ReceiverStatus(ApiModel):
    """Delivery to one receiver."""

    name: str
    """The receiver."""
    state: Literal["ok", "failing", "idle"] = "idle"
    """ok (last delivery succeeded), failing (being retried) or idle (nothing sent yet)."""
    attempts: int = 0
    """Failed attempts in a row of the pending delivery."""
    last_error: str | None = Field(default=None, max_length=1024)
    """Why the last attempt failed (never a URL, key or token)."""
    last_attempt: datetime | None = None
    """When delivery was last tried."""
    last_success: datetime | None = None
    """When delivery last succeeded."""
    next_try: datetime | None = None
    """When the failed delivery is tried again."""
    last_notified: datetime | None = None
    """Grouping: when the group was last notified to this receiver."""
    notified_hash: str | None = Field(default=None, max_length=16)
    """Grouping: a hash of the firing and resolved alerts last notified."""


class AlertRuleStatus(StatusBase):
    """The rule's state."""

    state: Literal["inactive", "pending", "firing"] | None = None
    """The worst state of the rule's instances: inactive, pending or firing."""
    active_since: datetime | None = None
    """Since when the worst state holds (the earliest active instance of that state)."""
    instances: int | None = None
    """Instances pending or firing."""
    value: str | None = Field(default=None, max_length=1024)
    """The value of the worst instance at the last evaluation."""
    last_evaluation: datetime | None = None
    """When the rule was last evaluated."""
    evaluation_seconds: float | None = None
    """How long the last evaluation took."""
    queries: list[str] = Field(default=[], max_length=8)
    """The PromQL evaluated (an sla rule's compiled queries)."""
    alerts: list[Alert] = Field(default=[], max_length=2 * MAX_INSTANCES)
    """The instances: pending, firing, and resolved ones for 15 minutes."""
    receivers: list[ReceiverStatus] = Field(default=[], max_length=16, json_schema_extra=LIST_MAP_BY_NAME)
    """Delivery per receiver."""
