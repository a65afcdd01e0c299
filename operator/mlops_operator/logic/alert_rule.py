"""An AlertRule's decisions around the state machine (``logic.alerting``): its expressions checked, its spec and
status converted to and from the machine's types, its Ready condition and summary, and whether a new status is worth
writing. Pure: no Kubernetes client, no I/O."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from mlops_operator.api.alertrule import MAX_INSTANCES, Alert, AlertRuleSpec, Receiver, ReceiverStatus, Sent
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


SUSPENDED: ReadyState = ("False", "Suspended", "suspended: not evaluated, nothing sent; the alerts' state is kept")


def due_in(interval: float, now: datetime, changed: bool, *evaluated: datetime | None) -> float:
    """Seconds until the rule's next evaluation (0 or less: now): at once after a spec change or before the first,
    else ``interval`` after the latest of ``evaluated`` (status' lastEvaluation, and one not written yet)."""
    known = [t for t in evaluated if t is not None]
    if changed or not known:
        return 0.0
    return interval - (now - max(known)).total_seconds()


def evaluate(
    name: str,
    spec: AlertRuleSpec,
    instances: Sequence[alerting.Instance],
    samples: Sequence[alerting.Sample],
    now: datetime,
) -> tuple[list[alerting.Instance], ReadyState | None]:
    """The rule's instances after one evaluation of ``samples`` (``logic.alerting``, with the rule's templates and
    limit), and its Ready state when the evaluation failed (over the limit)."""
    rule = rule_of(name, spec)
    evaluated = alerting.evaluate(rule, list(instances), list(samples), now, alert_expr.expand, alert_expr.fingerprint,
                                  spec.limit or MAX_INSTANCES)  # fmt: skip
    if evaluated.error is not None:
        return evaluated.instances, ("False", evaluated.reason or "EvaluationFailed", evaluated.error)
    return evaluated.instances, None


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


# --- evaluation ----------------------------------------------------------------------------------------------------


def queries(namespace: str, spec: AlertRuleSpec) -> list[tuple[str, str]]:
    """The PromQL a rule runs, each with its service level (empty for an ``expr``): the rule's expression, or its
    service levels compiled. A condition rule runs none."""
    if spec.expr is not None:
        return [("", spec.expr)]
    if spec.sla is None:
        return []
    sla = spec.sla
    return alert_expr.sla_queries(namespace, sla.deployment, sla.window, sla.latency_p99, sla.error_rate,
                                  sla.availability)  # fmt: skip


def query_samples(namespace: str, spec: AlertRuleSpec, ran: Sequence[tuple[str, str]],
                  answers: Sequence[Sequence[tuple[Mapping[str, str], float]]]) -> list[alerting.Sample]:  # fmt: skip
    """The samples of the queries' answers: each series as is, or, for service levels, one instance per level
    broken, labelled by the deployment and the level."""
    out = []
    for (sli, _), series in zip(ran, answers, strict=True):
        for labels, value in series:
            if spec.sla is not None:
                labels = alert_expr.sla_value_labels(namespace, spec.sla.deployment, sli)
            out.append(alerting.Sample(dict(labels), value))
    return out


CelHolds = Callable[[Mapping[str, Any]], tuple[bool, str | None]]
"""A rule's compiled CEL run on one object: whether it holds, and why not when it failed."""


def condition_sample(spec: AlertRuleSpec, namespace: str, obj: Mapping[str, Any],
                     cel: CelHolds | None) -> alerting.Sample | None:  # fmt: skip
    """The instance a condition rule finds on ``obj`` (one of its selector's candidates), or None when the object
    is not selected or the condition does not hold; ``cel`` evaluates the rule's compiled CEL on an object."""
    condition = spec.condition
    assert condition is not None
    selector = condition.selector
    expressions = [(e.key, e.operator, e.values) for e in selector.match_expressions or []]
    if not alerting.selects(selector.kind, selector.name, selector.match_labels, expressions, obj):
        return None
    value: str | None
    if condition.field is not None:
        f = condition.field
        actual = alerting.field_value(obj, f.field)
        held = alerting.compare(actual, f.op, f.value, f.text)
        value = None if actual is None else alerting.format_value(actual)
    elif condition.status_condition is not None:
        c = condition.status_condition
        held, value = alerting.condition_holds((obj.get("status") or {}).get("conditions"), c.type, c.status, c.reason)
    else:
        assert cel is not None
        held, error = cel(obj)
        value = "true" if held else error
    if not held:
        return None
    return alerting.Sample({"kind": selector.kind, "name": obj["metadata"]["name"], "namespace": namespace}, value)


def requeue(due_in: float, elapsed: float, next_at: datetime | None, now: datetime) -> float:
    """Seconds until the rule's next look: its next evaluation, counted from the evaluation's start (``elapsed``
    seconds ago, so that a rule keeps its period whatever its pass costs), or the next notification due, if sooner;
    at least half a second."""
    after = [max(0.5, due_in - elapsed)]
    if next_at is not None:
        after.append(max(0.5, (next_at - now).total_seconds()))
    return min(after)


def export_failure(error: str) -> str:
    """Why a PrometheusRule could not be applied, saying what to install when its kind is not served."""
    if "404" in error or "not found" in error.lower():
        return ("the PrometheusRule kind is not served (install prometheus-operator's CRDs), or cannot be applied: "
                f"{error[:300]}")  # fmt: skip
    return error


def exported(name: str) -> ReadyState:
    return "True", "Exported", f"exported as PrometheusRule {name}: Prometheus evaluates it"
