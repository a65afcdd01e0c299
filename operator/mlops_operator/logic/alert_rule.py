"""An AlertRule's decisions around the state machine (``logic.alerting``): its expressions checked, its spec and
status converted to and from the machine's types, its Ready condition and summary, and whether a new status is worth
writing. Pure: no Kubernetes client, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from mlops_operator.api.alertrule import Alert, AlertRuleSpec, Receiver, ReceiverStatus, Sent
from mlops_operator.api.common import Condition, duration_seconds
from mlops_operator.logic import alert_expr, alerting
from mlops_operator.logic.conditions import set_condition

Body = dict[str, Any]
ReadyState = tuple[Literal["True", "False", "Unknown"], str, str]
"""The Ready condition's status, reason and message."""
STATUS_REFRESH = timedelta(minutes=5)
"""How long an unchanged outcome goes without a status write (status.lastEvaluation lags by up to this)."""


def check(spec: AlertRuleSpec) -> str | None:
    """What is wrong with the rule's expression (PromQL syntax, CEL), None when nothing."""
    if spec.expr is not None:
        problem = alert_expr.check_promql(spec.expr)
        if problem is not None:
            return f"spec.expr: {problem}"
    if spec.condition is not None and spec.condition.cel is not None:
        try:
            alert_expr.compile_cel(spec.condition.cel)
        except alert_expr.CelError as exc:
            return f"spec.condition.cel: {exc}"
    return None


def rule_of(name: str, spec: AlertRuleSpec) -> alerting.Rule:
    annotations = dict(spec.annotations)
    if spec.runbook_url:
        annotations.setdefault("runbook_url", spec.runbook_url)
    return alerting.Rule(name, spec.severity, dict(spec.labels), annotations, duration_seconds(spec.for_),
                         duration_seconds(spec.keep_firing_for))  # fmt: skip


def grouping(spec: AlertRuleSpec) -> alerting.Grouping:
    g = spec.grouping
    return alerting.Grouping(duration_seconds(g.group_wait), duration_seconds(g.group_interval),
                             duration_seconds(g.repeat_interval))  # fmt: skip


def receiver_type(receiver: Receiver) -> alerting.ReceiverType:
    for kind in ("event", "alertmanager", "webhook", "slack", "pagerduty"):
        if getattr(receiver, kind) is not None:
            return kind
    raise ValueError(f"receiver {receiver.name}: no type")


def receiver(receiver: Receiver) -> alerting.Receiver:
    return alerting.Receiver(receiver.name, receiver_type(receiver), receiver.send_resolved)


def instance(alert: Alert) -> alerting.Instance:
    return alerting.Instance(
        fingerprint=alert.fingerprint, labels=dict(alert.labels), state=alert.state, active_at=alert.active_at,
        annotations=dict(alert.annotations), fired_at=alert.fired_at, resolved_at=alert.resolved_at,
        keep_firing_since=alert.keep_firing_since, value=alert.value,
        sent={s.receiver: alerting.Sent(s.state, s.at) for s in alert.sent},
    )  # fmt: skip


def alert(inst: alerting.Instance) -> Alert:
    return Alert(
        fingerprint=inst.fingerprint, labels=inst.labels, annotations=inst.annotations, state=inst.state,
        active_at=inst.active_at, fired_at=inst.fired_at, resolved_at=inst.resolved_at,
        keep_firing_since=inst.keep_firing_since, value=inst.value,
        sent=[Sent(receiver=k, state=v.state, at=v.at) for k, v in sorted(inst.sent.items())],
    )  # fmt: skip


def delivery(r: ReceiverStatus) -> alerting.Delivery:
    return alerting.Delivery(r.name, r.state, r.attempts, r.last_error, r.last_attempt, r.last_success, r.next_try,
                             r.last_notified)  # fmt: skip


def receiver_status(d: alerting.Delivery) -> ReceiverStatus:
    error = d.last_error[:1024] if d.last_error else None
    return ReceiverStatus(name=d.name, state=d.state, attempts=d.attempts, last_error=error,
                          last_attempt=d.last_attempt, last_success=d.last_success, next_try=d.next_try,
                          last_notified=d.last_notified)  # fmt: skip


def event_message(inst: alerting.Instance, reason: str) -> str:
    labels = ", ".join(f"{k}={v}" for k, v in sorted(inst.labels.items()) if k not in ("alertname", "severity"))
    what = "firing" if reason == "AlertFiring" else "resolved"
    summary = inst.annotations.get("summary") or inst.annotations.get("description") or ""
    text = f"{inst.labels.get('alertname')} {what} ({inst.labels.get('severity')}) {{{labels}}}"
    if inst.value is not None and reason == "AlertFiring":
        text += f" value {inst.value}"
    return f"{text}: {summary}" if summary else text


def delivery_ready(deliveries: Mapping[str, alerting.Delivery] | None,
                    instances: Sequence[alerting.Instance]) -> ReadyState:  # fmt: skip
    """Ready after an evaluation that worked: False while a receiver fails (SecretMissing or ReceiverFailing)."""
    failing = [d for d in (deliveries or {}).values() if d.state == "failing"]
    if not failing:
        return "True", "Evaluated", summary(instances)
    first = failing[0]
    error = first.last_error or "failed"
    reason = "SecretMissing" if error.startswith("SecretMissing") else "ReceiverFailing"
    retry = f", next try at {first.next_try:%H:%M:%S}" if first.next_try else ""
    others = f" ({len(failing) - 1} more receivers failing)" if len(failing) > 1 else ""
    return "False", reason, f"receiver {first.name}: {error} (attempt {first.attempts}{retry}){others}"


def latest(*times: datetime | None) -> datetime | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


def only_timestamps(stored: Body, new: Body) -> bool:
    """Whether ``new`` differs from ``stored`` only in when the rule was evaluated and how long it took, and the
    stored evaluation time is recent: such a status is not written (an evaluation that changes nothing costs no
    write), so ``lastEvaluation`` lags by up to ``STATUS_REFRESH``."""
    last = stored.get("lastEvaluation")
    if not last or datetime.now(UTC) - datetime.fromisoformat(str(last).replace("Z", "+00:00")) > STATUS_REFRESH:
        return False
    skipped = ("lastEvaluation", "evaluationSeconds")
    return {k: v for k, v in stored.items() if k not in skipped} == {k: v for k, v in new.items() if k not in skipped}


def summary(instances: Sequence[alerting.Instance]) -> str:
    firing = sum(1 for i in instances if i.state == "firing")
    pending = sum(1 for i in instances if i.state == "pending")
    resolved = sum(1 for i in instances if i.state == "resolved")
    if not firing and not pending:
        return "evaluated: nothing holds" + (f" ({resolved} resolved recently)" if resolved else "")
    return f"evaluated: {firing} firing, {pending} pending" + (f", {resolved} resolved recently" if resolved else "")


def ready_conditions(stored: Mapping[str, Any], generation: int | None, ready: ReadyState) -> list[Any]:
    conditions = set_condition(list(stored.get("conditions") or []), "Ready", *ready, generation)
    return [Condition.model_validate(c) for c in conditions]
