"""The alert state machine and the notification schedule (logic/alerting.py), on a clock the tests move."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from mlops_operator.logic import alerting
from mlops_operator.logic.alerting import Delivery, Grouping, Instance, Receiver, Rule, Sample

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fp(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def expand(template: str, labels: Mapping[str, str], value: float | str | None) -> str:
    return template.replace("$value", str(value)).replace("$name", labels.get("name", ""))


def rule(for_: float = 0, keep: float = 0, **kw: str) -> Rule:
    return Rule("high-errors", "critical", dict(kw), {"summary": "errors at $value on $name"}, for_, keep)


def step(r: Rule, instances: Sequence[Instance], names: Sequence[str], now: float, limit: int = 200,
         value: str = "0.5") -> list[Instance]:  # fmt: skip
    ev = alerting.evaluate(r, instances, [Sample({"name": n}, value) for n in names], at(now), expand, fp, limit)
    assert ev.error is None
    return ev.instances


def states(instances: Sequence[Instance]) -> dict[str, str]:
    return {i.labels["name"]: i.state for i in instances}


def test_an_instance_is_pending_until_it_has_held_for_for_then_fires() -> None:
    r = rule(for_=60)
    s = step(r, [], ["a"], 0)
    assert states(s) == {"a": "pending"} and s[0].active_at == at(0) and s[0].fired_at is None
    s = step(r, s, ["a"], 30)
    assert states(s) == {"a": "pending"}
    s = step(r, s, ["a"], 60)
    assert states(s) == {"a": "firing"} and s[0].fired_at == at(60) and s[0].active_at == at(0)


def test_for_zero_fires_at_the_first_evaluation() -> None:
    s = step(rule(), [], ["a"], 0)
    assert states(s) == {"a": "firing"} and s[0].fired_at == at(0)


def test_a_pending_instance_that_stops_holding_is_dropped_not_resolved() -> None:
    r = rule(for_=60)
    s = step(r, [], ["a", "b"], 0)
    s = step(r, s, ["b"], 30)
    assert states(s) == {"b": "pending"}


def test_a_firing_instance_resolves_when_it_stops_holding_and_is_kept_fifteen_minutes() -> None:
    r = rule()
    s = step(r, [], ["a"], 0)
    s = step(r, s, [], 30)
    assert states(s) == {"a": "resolved"} and s[0].resolved_at == at(30)
    s = step(r, s, [], 30 + 15 * 60)
    assert states(s) == {"a": "resolved"}
    s = step(r, s, [], 31 + 15 * 60)
    assert s == []


def test_keep_firing_for_counts_from_the_first_evaluation_that_did_not_see_it() -> None:
    r = rule(keep=60)
    s = step(r, [], ["a"], 0)
    s = step(r, s, [], 30)
    assert states(s) == {"a": "firing"} and s[0].keep_firing_since == at(30)
    s = step(r, s, [], 60)
    assert states(s) == {"a": "firing"}
    s = step(r, s, ["a"], 70)  # holds again: the count starts over
    assert states(s) == {"a": "firing"} and s[0].keep_firing_since is None
    s = step(r, s, [], 80)
    s = step(r, s, [], 139)
    assert states(s) == {"a": "firing"}
    s = step(r, s, [], 140)
    assert states(s) == {"a": "resolved"} and s[0].resolved_at == at(140)


def test_a_resolved_instance_that_holds_again_starts_over_as_pending() -> None:
    r = rule(for_=60)
    s = step(r, [], ["a"], 0)
    s = step(r, s, ["a"], 60)
    s = step(r, s, [], 90)
    assert states(s) == {"a": "resolved"}
    s = step(r, s, ["a"], 120)
    assert states(s) == {"a": "pending"} and s[0].active_at == at(120) and s[0].resolved_at is None


def test_labels_are_the_samples_then_the_rules_then_alertname_and_severity() -> None:
    r = rule(team="fraud", name="overridden")
    ev = alerting.evaluate(r, [], [Sample({"__name__": "x", "name": "a", "pod": "p"}, "1")], at(0), expand, fp, 10)
    (inst,) = ev.instances
    assert inst.labels == {"name": "overridden", "pod": "p", "team": "fraud", "alertname": "high-errors",
                           "severity": "critical"}  # fmt: skip
    assert inst.annotations == {"summary": "errors at 1 on overridden"}


def test_values_and_annotations_follow_the_latest_evaluation() -> None:
    r = rule(for_=60)
    s = step(r, [], ["a"], 0, value="0.5")
    s = step(r, s, ["a"], 30, value="0.7")
    assert s[0].value == "0.7" and s[0].annotations["summary"] == "errors at 0.7 on a"


def test_over_the_limit_the_evaluation_fails_and_clears_the_alerts() -> None:
    r = rule()
    s = step(r, [], ["a", "b"], 0, limit=2)
    ev = alerting.evaluate(r, s, [Sample({"name": n}) for n in "abc"], at(30), expand, fp, 2)
    assert ev.instances == [] and ev.reason == "LimitExceeded" and "3 instances" in (ev.error or "")


def test_the_rule_state_is_the_worst_instances() -> None:
    r = rule(for_=60)
    s = step(r, [], ["a"], 0)
    assert alerting.rule_state(s)[:2] == ("pending", at(0))
    s = step(r, s, ["a", "b"], 60)
    state, since, value, active = alerting.rule_state(s)
    assert (state, since, value, active) == ("firing", at(60), "0.5", 2)
    assert alerting.rule_state([])[0] == "inactive"


# --- notifications -------------------------------------------------------------------------------------------


SLACK = Receiver("slack", "slack")
GROUP = Grouping(wait=30, interval=300, repeat=3600)


def plan(receivers: Sequence[Receiver], s: Sequence[Instance], deliveries: Mapping[str, Delivery],
         now: float) -> alerting.Plan:  # fmt: skip
    return alerting.plan(receivers, s, deliveries, GROUP, at(now))


def send(s: list[Instance], deliveries: dict[str, Delivery], now: float,
         receivers: Sequence[Receiver] = (SLACK,)) -> list[alerting.Due]:  # fmt: skip
    p = plan(receivers, s, deliveries, now)
    for due in p.due:
        deliveries[due.receiver.name] = alerting.delivered(s, due, deliveries.get(due.receiver.name)
                                                           or Delivery(due.receiver.name), at(now))  # fmt: skip
    return p.due


def test_a_new_group_waits_group_wait_then_notifies_every_firing_instance() -> None:
    r = rule()
    s = step(r, [], ["a"], 0)
    deliveries: dict[str, Delivery] = {}
    p = plan([SLACK], s, deliveries, 10)
    assert p.due == [] and p.next_at == at(30)
    s = step(r, s, ["a", "b"], 20)
    (due,) = send(s, deliveries, 30)
    assert sorted(due.firing) == sorted(i.fingerprint for i in s) and due.resolved == ()
    assert all(i.sent["slack"] == alerting.Sent("firing", at(30)) for i in s)


def test_changes_wait_group_interval_and_an_unchanged_group_repeats_after_repeat_interval() -> None:
    r = rule()
    s = step(r, [], ["a"], 0)
    deliveries: dict[str, Delivery] = {}
    send(s, deliveries, 30)
    s = step(r, s, ["a", "b"], 60)  # a new instance: notified groupInterval after the last notification
    p = plan([SLACK], s, deliveries, 60)
    assert p.due == [] and p.next_at == at(330)
    (due,) = send(s, deliveries, 330)
    assert len(due.firing) == 2
    p = plan([SLACK], s, deliveries, 700)  # unchanged: nothing until repeatInterval
    assert p.due == [] and p.next_at == at(330 + 3600)
    (due,) = send(s, deliveries, 330 + 3600)
    assert len(due.firing) == 2


def test_a_resolution_is_notified_once_with_the_resolved_instance() -> None:
    r = rule()
    s = step(r, [], ["a", "b"], 0)
    deliveries: dict[str, Delivery] = {}
    send(s, deliveries, 30)
    s = step(r, s, ["b"], 60)
    (due,) = send(s, deliveries, 330)
    resolved = next(i for i in s if i.state == "resolved")
    assert due.resolved == (resolved.fingerprint,) and len(due.firing) == 1
    assert resolved.sent["slack"].state == "resolved"
    assert plan([SLACK], s, deliveries, 640).due == []  # told: not again


def test_without_send_resolved_a_resolution_alone_notifies_nothing() -> None:
    quiet = Receiver("slack", "slack", send_resolved=False)
    r = rule()
    s = step(r, [], ["a", "b"], 0)
    deliveries: dict[str, Delivery] = {}
    send(s, deliveries, 30, [quiet])
    s = step(r, s, ["b"], 60)
    alerting.settle(s, [quiet], at(60))
    p = plan([quiet], s, deliveries, 400)
    assert p.due == [] and p.next_at == at(30 + 3600)  # b unchanged: its repeat
    s = step(r, s, [], 500)
    alerting.settle(s, [quiet], at(500))
    assert plan([quiet], s, deliveries, 900) == alerting.Plan([], None)


def test_a_group_that_emptied_starts_over_with_group_wait() -> None:
    r = rule()
    s = step(r, [], ["a"], 0)
    deliveries: dict[str, Delivery] = {}
    send(s, deliveries, 30)
    s = step(r, s, [], 60)
    send(s, deliveries, 330)  # the resolution
    s = step(r, s, ["b"], 400)
    p = plan([SLACK], s, deliveries, 400)
    assert p.due == [] and p.next_at == at(430)


def test_alertmanager_gets_firing_instances_every_resend_delay_and_resolved_ones_once() -> None:
    am = Receiver("am", "alertmanager")
    r = rule(for_=60)
    s = step(r, [], ["a"], 0)
    deliveries: dict[str, Delivery] = {}
    assert send(s, deliveries, 0, [am]) == []  # pending: never sent
    s = step(r, s, ["a"], 60)
    (due,) = send(s, deliveries, 60, [am])
    assert len(due.firing) == 1
    assert plan([am], s, deliveries, 90) == alerting.Plan([], at(120))
    assert len(send(s, deliveries, 120, [am])) == 1
    s = step(r, s, [], 150)
    (due,) = send(s, deliveries, 150, [am])
    assert due.firing == () and len(due.resolved) == 1
    assert plan([am], s, deliveries, 300).due == []


def test_events_are_immediate_and_once() -> None:
    ev = Receiver("ev", "event")
    r = rule()
    s = step(r, [], ["a"], 0)
    deliveries: dict[str, Delivery] = {}
    (due,) = send(s, deliveries, 0, [ev])
    assert len(due.firing) == 1
    assert send(s, deliveries, 10, [ev]) == []
    s = step(r, s, [], 20)
    (due,) = send(s, deliveries, 20, [ev])
    assert len(due.resolved) == 1


def test_a_failed_delivery_backs_off_doubling_and_does_not_hold_back_other_receivers() -> None:
    am = Receiver("am", "alertmanager")
    ev = Receiver("ev", "event")
    r = rule()
    s = step(r, [], ["a"], 0)
    deliveries = {"am": alerting.failed(Delivery("am"), "HTTP 500", at(0))}
    assert deliveries["am"].next_try == at(2) and deliveries["am"].attempts == 1
    p = plan([am, ev], s, deliveries, 1)
    assert [d.receiver.name for d in p.due] == ["ev"] and p.next_at == at(2)
    assert [d.receiver.name for d in plan([am], s, deliveries, 2).due] == ["am"]
    d = deliveries["am"]
    for _ in range(12):
        d = alerting.failed(d, "timed out", at(0))
    assert d.attempts == 13 and d.next_try == at(alerting.BACKOFF_MAX) and d.state == "failing"
    ok = alerting.delivered(s, plan([am], s, {}, 5).due[0], d, at(5))
    assert (ok.state, ok.attempts, ok.next_try, ok.last_success) == ("ok", 0, None, at(5))


def test_a_resolved_instance_waits_for_a_failing_receiver_up_to_a_day() -> None:
    r = rule()
    s = step(r, [], ["a"], 0)
    s[0].sent["slack"] = alerting.Sent("firing", at(0))
    s = step(r, s, [], 10)
    s = step(r, s, [], 10 + 3600)
    assert states(s) == {"a": "resolved"}  # slack was told it fired, not yet that it resolved
    s = step(r, s, [], 11 + 86400)
    assert s == []


def test_condition_helpers() -> None:
    obj = {"kind": "DriftMonitor", "metadata": {"name": "m", "labels": {"team": "fraud"}},
           "status": {"driftedShare": 0.5, "phase": "Drifted",
                      "conditions": [{"type": "Ready", "status": "False", "message": "no reference"}]}}  # fmt: skip
    assert alerting.field_value(obj, "status.driftedShare") == 0.5
    assert alerting.field_value(obj, "status.conditions[0].type") == "Ready"
    assert alerting.field_value(obj, "status.conditions[3].type") is None
    assert alerting.compare(0.5, ">", 0.3, None) and not alerting.compare(None, ">", 0.3, None)
    assert alerting.compare(1, ">=", 1.0, None) and alerting.compare(None, "!=", 1.0, None)
    assert alerting.compare("Drifted", "==", None, "Drifted") and not alerting.compare("x", "==", None, "Drifted")
    assert alerting.selects("DriftMonitor", None, {"team": "fraud"}, [], obj)
    assert not alerting.selects("DriftMonitor", None, {"team": "risk"}, [], obj)
    assert not alerting.selects("ModelDeployment", None, None, [], obj)
    assert alerting.selects("DriftMonitor", None, None, [("team", "In", ["fraud", "risk"])], obj)
    assert not alerting.selects("DriftMonitor", None, None, [("team", "DoesNotExist", [])], obj)
    assert alerting.selects("DriftMonitor", "m", None, [], obj) and not alerting.selects(
        "DriftMonitor", "n", None, [], obj
    )
    conditions = obj["status"]["conditions"]  # type: ignore[index]
    assert alerting.condition_holds(conditions, "Ready", "False", None) == (True, "no reference")
    assert alerting.condition_holds(conditions, "Ready", "True", None) == (False, None)
    assert alerting.condition_holds(conditions, "Ready", "False", "Other") == (False, None)
    assert alerting.condition_holds(None, "Ready", "False", None) == (False, None)
    assert [alerting.format_value(v) for v in (0.3, 5.0, 1e-05, True, "x")] == ["0.3", "5", "1e-05", "true", "x"]


def test_valid_until_is_four_resend_periods_ahead() -> None:
    assert alerting.valid_until(at(0), 10) == at(240)
    assert alerting.valid_until(at(0), 120) == at(480)
