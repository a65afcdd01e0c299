"""The alert state machine and the notification schedule of AlertRule: pure decisions over the instances kept in
status, with the evaluation's samples and the clock given.

States follow Prometheus's alerting rules. An instance (one series of an expr rule, one resource of a condition
rule, one objective of an sla rule) that starts to hold is pending; once it has held for ``for`` it fires (at once
with ``for: 0s``). A pending instance that stops holding is dropped (never notified). A firing one that stops
holding keeps firing for ``keepFiringFor`` (counted from the first evaluation that did not see it), then is resolved;
a resolved instance is kept 15 minutes (longer while a receiver that wants resolutions has not been told, up to a
day), and one that holds again starts over as pending. More instances than the limit fail the evaluation and clear
them all. A failed evaluation changes nothing.

Notifications:

- ``event``: a Kubernetes Event when an instance fires and when it resolves (no grouping).
- ``alertmanager``: as Prometheus sends: firing instances every ``RESEND_DELAY`` while they fire, with an end time
  (``endsAt``) four resend periods ahead so that Alertmanager resolves them itself if the operator goes away;
  resolved ones once, with their resolution time.
- ``webhook``, ``slack``, ``pagerduty``: the rule's instances are one group, notified with Alertmanager's timing:
  ``groupWait`` after the first instance fires; later changes (new firing instances, resolutions) no sooner than
  ``groupInterval`` after the last notification; an unchanged firing group again after ``repeatInterval``.
  A notification carries every firing instance and the resolved ones the receiver has not been told of.

What a receiver was told of each instance is kept on the instance (``sent``) and the delivery state per receiver
(failures in a row, next try with backoff) beside: all in status, so that a restart repeats nothing that was recorded
and loses nothing. A crash between a send and its record sends again (at least once).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

State = Literal["pending", "firing", "resolved"]
RuleState = Literal["inactive", "pending", "firing"]
ReceiverType = Literal["event", "alertmanager", "webhook", "slack", "pagerduty"]

RESOLVED_RETENTION = timedelta(minutes=15)
# A resolved instance waits at most this long for a receiver that has not been told (failing all that time).
UNTOLD_RETENTION = timedelta(hours=24)
# Alertmanager: firing instances are sent again this often (Prometheus's default resend delay).
RESEND_DELAY = timedelta(minutes=1)
BACKOFF_FIRST = 2.0
BACKOFF_MAX = 300.0


@dataclass(frozen=True)
class Sample:
    """One instance the evaluation found holding: its own labels (series or resource) and its value."""

    labels: Mapping[str, str]
    value: float | str | None = None


@dataclass(frozen=True)
class Sent:
    """What one receiver was last told of an instance."""

    state: Literal["firing", "resolved"]
    at: datetime


@dataclass
class Instance:
    """One alert instance, as kept in status."""

    fingerprint: str
    labels: dict[str, str]
    state: State
    active_at: datetime
    annotations: dict[str, str] = field(default_factory=dict)
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    keep_firing_since: datetime | None = None
    value: str | None = None
    sent: dict[str, Sent] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """What the state machine needs of a rule."""

    name: str
    severity: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    for_seconds: float
    keep_firing_seconds: float


Expand = Callable[[str, Mapping[str, str], float | str | None], str]
Fingerprint = Callable[[Mapping[str, str]], str]


@dataclass(frozen=True)
class Evaluated:
    """The instances after one evaluation, and why it failed (then the instances are as they were)."""

    instances: list[Instance]
    error: str | None = None
    reason: str | None = None


def labels_of(rule: Rule, sample: Sample) -> dict[str, str]:
    """An instance's labels: the sample's, then the rule's (which win), then alertname and severity."""
    out = {k: v for k, v in sample.labels.items() if k != "__name__"}
    out.update(rule.labels)
    out["alertname"] = rule.name
    out["severity"] = rule.severity
    return out


def evaluate(
    rule: Rule,
    instances: Sequence[Instance],
    samples: Sequence[Sample],
    now: datetime,
    expand: Expand,
    fingerprint: Fingerprint,
    limit: int,
) -> Evaluated:
    """The instances after an evaluation at ``now`` that found ``samples`` holding (see the module's text)."""
    by_fp = {i.fingerprint: replace(i, labels=dict(i.labels), annotations=dict(i.annotations), sent=dict(i.sent))
             for i in instances}  # fmt: skip
    seen: set[str] = set()
    for sample in samples:
        labels = labels_of(rule, sample)
        fp = fingerprint(labels)
        if fp in seen:
            continue  # two series with the same labels once the rule's are applied: the first one counts
        seen.add(fp)
        annotations = {k: expand(v, labels, sample.value) for k, v in rule.annotations.items()}
        value = None if sample.value is None else format_value(sample.value)[:1024]
        current = by_fp.get(fp)
        if current is not None and current.state != "resolved":
            current.value, current.annotations, current.labels = value, annotations, labels
            current.keep_firing_since = None
        else:
            sent = current.sent if current is not None else {}
            by_fp[fp] = Instance(fp, labels, "pending", now, annotations, value=value,
                                 sent=sent)  # fmt: skip
    out: list[Instance] = []
    active = 0
    for fp, inst in by_fp.items():
        if fp not in seen:
            if inst.state == "pending":
                continue
            if inst.state == "firing":
                if inst.keep_firing_since is None:
                    inst.keep_firing_since = now
                if (now - inst.keep_firing_since).total_seconds() >= rule.keep_firing_seconds:
                    inst.state, inst.resolved_at, inst.keep_firing_since = "resolved", now, None
            if inst.state == "resolved" and _expired(inst, now):
                continue
        if inst.state in ("pending", "firing"):
            active += 1
        if inst.state == "pending" and (now - inst.active_at).total_seconds() >= rule.for_seconds:
            inst.state, inst.fired_at = "firing", now
        out.append(inst)
    if active > limit:
        return Evaluated([], f"the rule found {active} instances, over its limit of {limit}: its alerts are "
                         "cleared until it finds fewer", "LimitExceeded")  # fmt: skip
    out.sort(key=lambda i: (_ORDER[i.state], i.active_at, i.fingerprint))
    return Evaluated(out)


_ORDER = {"firing": 0, "pending": 1, "resolved": 2}


def _expired(inst: Instance, now: datetime) -> bool:
    assert inst.resolved_at is not None
    age = now - inst.resolved_at
    if age > UNTOLD_RETENTION:
        return True
    if age <= RESOLVED_RETENTION:
        return False
    # Past the usual retention: kept only while a receiver told of the firing has not been told of the resolution.
    return not any(s.state == "firing" for s in inst.sent.values())


def expire(instances: Sequence[Instance], now: datetime) -> list[Instance]:
    """The instances without the resolved ones past their retention (for a rule not evaluated: suspended)."""
    return [i for i in instances if i.state != "resolved" or not _expired(i, now)]


def rule_state(instances: Sequence[Instance]) -> tuple[RuleState, datetime | None, str | None, int]:
    """The worst state of the instances, since when it holds, the worst instance's value and the active count."""
    firing = [i for i in instances if i.state == "firing"]
    pending = [i for i in instances if i.state == "pending"]
    active = len(firing) + len(pending)
    if firing:
        first = min(firing, key=lambda i: (i.fired_at or i.active_at, i.fingerprint))
        return "firing", first.fired_at or first.active_at, first.value, active
    if pending:
        first = min(pending, key=lambda i: (i.active_at, i.fingerprint))
        return "pending", first.active_at, first.value, active
    return "inactive", None, None, 0


# --- notifications ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grouping:
    """Alertmanager's timing for the grouped receivers, in seconds."""

    wait: float = 30.0
    interval: float = 300.0
    repeat: float = 14400.0


@dataclass(frozen=True)
class Receiver:
    """What the schedule needs of a receiver."""

    name: str
    type: ReceiverType
    send_resolved: bool = True


@dataclass
class Delivery:
    """Delivery to one receiver, as kept in status."""

    name: str
    state: Literal["ok", "failing", "idle"] = "idle"
    attempts: int = 0
    last_error: str | None = None
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    next_try: datetime | None = None
    last_notified: datetime | None = None


@dataclass(frozen=True)
class Due:
    """A notification to send now: the instances it carries (firing and resolved), by fingerprint."""

    receiver: Receiver
    firing: tuple[str, ...]
    resolved: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """What to send now, and when to look again for what is not due yet."""

    due: list[Due]
    next_at: datetime | None


def _told(inst: Instance, receiver: str) -> str | None:
    sent = inst.sent.get(receiver)
    return sent.state if sent is not None else None


def _earliest(*times: datetime | None) -> datetime | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


def plan(
    receivers: Sequence[Receiver],
    instances: Sequence[Instance],
    deliveries: Mapping[str, Delivery],
    grouping: Grouping,
    now: datetime,
) -> Plan:
    """The notifications due at ``now`` and the next time one may become due (see the module's text)."""
    due: list[Due] = []
    next_at: datetime | None = None
    for receiver in receivers:
        delivery = deliveries.get(receiver.name) or Delivery(receiver.name)
        if receiver.type == "alertmanager":
            item, at = _plan_alertmanager(receiver, instances, now)
        elif receiver.type == "event":
            item, at = _plan_event(receiver, instances), None
        else:
            item, at = _plan_group(receiver, instances, delivery, grouping, now)
        if item is not None and delivery.next_try is not None and delivery.next_try > now:
            # Failing: retried at the backoff's time, with what is due then.
            at, item = _earliest(at, delivery.next_try), None
        if item is not None:
            due.append(item)
        next_at = _earliest(next_at, at)
    return Plan(due, next_at)


def _plan_event(receiver: Receiver, instances: Sequence[Instance]) -> Due | None:
    firing = tuple(i.fingerprint for i in instances if i.state == "firing" and _told(i, receiver.name) != "firing")
    resolved = tuple(i.fingerprint for i in instances if i.state == "resolved" and _told(i, receiver.name) == "firing")
    if not receiver.send_resolved:
        resolved = ()
    return Due(receiver, firing, resolved) if firing or resolved else None


def _plan_alertmanager(
    receiver: Receiver, instances: Sequence[Instance], now: datetime
) -> tuple[Due | None, datetime | None]:
    firing: list[str] = []
    resolved: list[str] = []
    next_at: datetime | None = None
    for inst in instances:
        sent = inst.sent.get(receiver.name)
        if inst.state == "firing":
            if sent is None or sent.state != "firing" or sent.at + RESEND_DELAY <= now:
                firing.append(inst.fingerprint)
            else:
                next_at = _earliest(next_at, sent.at + RESEND_DELAY)
        elif inst.state == "resolved" and sent is not None and sent.state == "firing" and receiver.send_resolved:
            resolved.append(inst.fingerprint)
    if not firing and not resolved:
        return None, next_at
    # Everything firing goes along (one request), so that all are re-sent on the same beat.
    firing = [i.fingerprint for i in instances if i.state == "firing"]
    return Due(receiver, tuple(firing), tuple(resolved)), now + RESEND_DELAY


def _plan_group(
    receiver: Receiver, instances: Sequence[Instance], delivery: Delivery, grouping: Grouping, now: datetime
) -> tuple[Due | None, datetime | None]:
    name = receiver.name
    firing = [i for i in instances if i.state == "firing"]
    resolved = [i for i in instances if i.state == "resolved" and _told(i, name) == "firing"]
    told_firing = {i.fingerprint for i in instances if _told(i, name) == "firing"}
    firing_now = {i.fingerprint for i in firing}
    if receiver.send_resolved:
        changed = firing_now != (told_firing & firing_now) or bool(resolved)
    else:
        changed = not firing_now <= told_firing
    if not firing and not (receiver.send_resolved and resolved):
        return None, None
    if not told_firing:
        # A new group: its first notification groupWait after its first instance fired.
        start = min(i.fired_at or i.active_at for i in firing) if firing else now
        at = start + timedelta(seconds=grouping.wait)
    else:
        last = delivery.last_notified or now
        at = last + timedelta(seconds=grouping.interval)
        if not changed:
            at = last + timedelta(seconds=max(grouping.repeat, grouping.interval))
            if not firing:
                return None, None
    if at > now:
        return None, at
    carried = tuple(i.fingerprint for i in resolved) if receiver.send_resolved else ()
    return Due(receiver, tuple(i.fingerprint for i in firing), carried), None


def settle(instances: Sequence[Instance], receivers: Sequence[Receiver], now: datetime) -> None:
    """Marks resolved instances as told to the receivers that do not want resolutions: they leave those receivers'
    groups at once, and nothing waits on them."""
    for receiver in receivers:
        if receiver.send_resolved:
            continue
        for inst in instances:
            if inst.state == "resolved" and _told(inst, receiver.name) == "firing":
                inst.sent[receiver.name] = Sent("resolved", now)


def delivered(instances: Sequence[Instance], due: Due, delivery: Delivery, now: datetime) -> Delivery:
    """Records a successful notification: the instances it carried are marked told."""
    name = due.receiver.name
    by_fp = {i.fingerprint: i for i in instances}
    for fp in due.firing:
        if fp in by_fp:
            by_fp[fp].sent[name] = Sent("firing", now)
    for fp in due.resolved:
        if fp in by_fp:
            by_fp[fp].sent[name] = Sent("resolved", now)
    return Delivery(name, "ok", 0, None, now, now, None, now)


def failed(delivery: Delivery, error: str, now: datetime) -> Delivery:
    """Records a failed notification: retried after a backoff doubling from 2 s up to 5 minutes."""
    attempts = delivery.attempts + 1
    wait = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempts - 1))
    return Delivery(delivery.name, "failing", attempts, error, now, delivery.last_success,
                    now + timedelta(seconds=wait), delivery.last_notified)  # fmt: skip


def valid_until(now: datetime, interval_seconds: float) -> datetime:
    """The end time a firing instance is sent to Alertmanager with (Prometheus: four resend periods ahead)."""
    return now + 4 * max(RESEND_DELAY, timedelta(seconds=interval_seconds))


# --- condition rules over our resources --------------------------------------------------------------------------

_PATH_PART = re.compile(r"\.([A-Za-z0-9_]+)|\[([0-9]+)\]")


def field_value(obj: Any, path: str) -> Any:
    """The value at a dotted path such as ``status.driftedShare`` or ``status.conditions[0].type``; None when any
    part is missing."""
    current: Any = obj
    for name, index in _PATH_PART.findall("." + path):
        if name:
            current = current.get(name) if isinstance(current, dict) else None
        else:
            current = current[int(index)] if isinstance(current, list) and int(index) < len(current) else None
        if current is None:
            return None
    return current


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
}  # fmt: skip


def compare(actual: Any, op: str, value: float | None, text: str | None) -> bool:
    """Whether ``actual`` compares so with the number ``value`` or the string ``text``: a missing or non-number field
    never holds against a number (except with !=, as a missing field is not equal)."""
    if text is not None:
        if actual is None:
            return op == "!="
        return _OPS[op](str(actual) if not isinstance(actual, bool) else str(actual).lower(), text)
    if isinstance(actual, bool) or not isinstance(actual, int | float):
        try:
            actual = float(actual) if isinstance(actual, str) else None
        except ValueError:
            actual = None
    if actual is None or value is None or math.isnan(actual):
        return op == "!="
    return _OPS[op](float(actual), value)


def selects(kind: str, name: str | None, match_labels: Mapping[str, str] | None,
            expressions: Sequence[tuple[str, str, Sequence[str]]], body: Mapping[str, Any]) -> bool:  # fmt: skip
    """Whether a condition rule's selector takes ``body`` (of the rule's namespace)."""
    meta = body.get("metadata") or {}
    if body.get("kind") != kind:
        return False
    if name is not None:
        return bool(meta.get("name") == name)
    labels = meta.get("labels") or {}
    for key, value in (match_labels or {}).items():
        if labels.get(key) != value:
            return False
    for key, operator, values in expressions:
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def condition_holds(conditions: Any, type_: str, status: str, reason: str | None) -> tuple[bool, str | None]:
    """Whether the status conditions hold one of ``type_`` with ``status`` (and ``reason``), and its message."""
    for c in conditions if isinstance(conditions, list) else []:
        if isinstance(c, dict) and c.get("type") == type_:
            held = c.get("status") == status and (reason is None or c.get("reason") == reason)
            return held, (str(c.get("message") or c.get("reason") or status) if held else None)
    return False, None


def format_value(value: Any) -> str:
    """A value for status and templates: numbers shortest (0.3, 5, 1e-05), others as text."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value) if not value.is_integer() or abs(value) >= 1e21 else str(int(value))
    return str(value)
