"""What the AlertRule controller decides from a rule without the cluster: the queries it runs and the samples they
give, the instances a condition finds on an object, when it looks again, the alerts each notification carries and
the Secrets a receiver reads, the Prometheus a rule names or the operator's own, and the CEL objects it keeps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import mlops_operator.logic.alert_expr as alert_expr
import mlops_operator.logic.alert_rule as alert_rule
import mlops_operator.logic.alerting as alerting
import mlops_operator.providers.prometheus as prometheus
from mlops_operator.api.alertrule import AlertRuleSpec, Receiver
from mlops_operator.api.common import PrometheusProvider
from mlops_operator.cli import PROMETHEUS_SETTING
from mlops_operator.outbound import UNRESTRICTED, Policy
from mlops_operator.receivers import payloads, secret_refs

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def spec(**fields: Any) -> AlertRuleSpec:
    return AlertRuleSpec.model_validate(fields)


def deployment(name: str, ready: int, labels: dict[str, str] | None = None, uid: str = "u", rv: str = "1") -> Any:
    return {
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "team", "labels": labels or {}, "uid": uid, "resourceVersion": rv},
        "status": {"readyReplicas": ready, "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                                           "reason": "Serving" if ready else "NoReplicas"}]},
    }  # fmt: skip


def test_an_expression_runs_as_is_and_its_series_are_the_samples() -> None:
    rule = spec(expr="up == 0")
    ran = alert_rule.queries("team", rule)
    assert ran == [("", "up == 0")]
    samples = alert_rule.query_samples("team", rule, ran, [[({"job": "a"}, 0.0), ({"job": "b"}, 0.0)]])
    assert samples == [alerting.Sample({"job": "a"}, 0.0), alerting.Sample({"job": "b"}, 0.0)]
    assert alert_rule.queries("team", spec(condition={"selector": {"kind": "ModelDeployment"}, "cel": "true"})) == []


def test_service_levels_run_one_query_each_and_are_labelled_by_the_level_they_break() -> None:
    rule = spec(sla={"deployment": "fraud", "window": "5m", "latencyP99": 0.25, "errorRate": 0.01})
    ran = alert_rule.queries("team", rule)
    assert [sli for sli, _ in ran] == ["latencyP99", "errorRate"]
    assert 'deployment="fraud"' in ran[0][1] and "> 0.25" in ran[0][1]
    # The latency level is broken (one series answered), the error rate holds (no series).
    samples = alert_rule.query_samples("team", rule, ran, [[({}, 0.4)], []])
    assert samples == [alerting.Sample({"sli": "latencyP99", "deployment": "fraud", "namespace": "team"}, 0.4)]


def test_a_field_condition_finds_the_selected_objects_where_it_holds() -> None:
    rule = spec(condition={"selector": {"kind": "ModelDeployment", "matchLabels": {"team": "a"}},
                           "field": {"field": "status.readyReplicas", "op": "<", "value": 2}})  # fmt: skip
    found = alert_rule.condition_sample(rule, "team", deployment("fraud", 1, {"team": "a"}), None)
    assert found == alerting.Sample({"kind": "ModelDeployment", "name": "fraud", "namespace": "team"}, "1")
    assert alert_rule.condition_sample(rule, "team", deployment("fraud", 3, {"team": "a"}), None) is None
    # Not selected: another team's.
    assert alert_rule.condition_sample(rule, "team", deployment("fraud", 1, {"team": "b"}), None) is None


def test_a_status_condition_and_a_cel_condition_find_theirs() -> None:
    by_condition = spec(condition={"selector": {"kind": "ModelDeployment", "name": "fraud"},
                                   "statusCondition": {"type": "Ready", "status": "False"}})  # fmt: skip
    assert alert_rule.condition_sample(by_condition, "team", deployment("fraud", 0), None) is not None
    assert alert_rule.condition_sample(by_condition, "team", deployment("fraud", 2), None) is None
    by_cel = spec(condition={"selector": {"kind": "ModelDeployment"}, "cel": "self.status.readyReplicas == 0"})
    program = alert_expr.compile_cel("self.status.readyReplicas == 0")
    objects = alert_expr.CelObjects()

    def cel(obj: Any) -> tuple[bool, str | None]:
        return program.holds(objects.of(obj))

    found = alert_rule.condition_sample(by_cel, "team", deployment("fraud", 0), cel)
    assert found is not None and found.value == "true"
    # A newer version of the object (another resourceVersion) is converted again.
    assert alert_rule.condition_sample(by_cel, "team", deployment("fraud", 2, rv="2"), cel) is None


def test_cel_objects_are_converted_once_per_version_and_dropped_when_full() -> None:
    objects = alert_expr.CelObjects(limit=2)
    first = objects.of(deployment("a", 1, uid="1", rv="7"))
    assert objects.of(deployment("a", 1, uid="1", rv="7")) is first
    assert objects.of(deployment("a", 2, uid="1", rv="8")) is not first
    objects.of(deployment("b", 1, uid="2", rv="1"))  # full: every kept object goes, this one stays
    assert objects.of(deployment("a", 1, uid="1", rv="7")) is not first


def test_the_next_look_keeps_the_period_from_the_evaluations_start_or_comes_sooner_for_a_notification() -> None:
    assert alert_rule.requeue(30.0, 2.5, None, NOW) == 27.5
    assert alert_rule.requeue(30.0, 2.5, NOW + timedelta(seconds=4), NOW) == 4.0
    assert alert_rule.requeue(30.0, 45.0, NOW - timedelta(seconds=1), NOW) == 0.5


def test_an_export_failure_says_what_to_install_when_the_kind_is_not_served() -> None:
    assert "install prometheus-operator's CRDs" in alert_rule.export_failure("404 page not found")
    assert alert_rule.export_failure("forbidden: prometheusrules") == "forbidden: prometheusrules"
    reason, message = alert_rule.exported("fraud-slo")[1:]
    assert (reason, message) == ("Exported", "exported as PrometheusRule fraud-slo: Prometheus evaluates it")


def instance(fp: str, state: alerting.State, resolved_at: datetime | None = None) -> alerting.Instance:
    return alerting.Instance(fingerprint=fp, labels={"alertname": "Slow", "fp": fp}, annotations={"summary": fp},
                             state=state, active_at=NOW - timedelta(minutes=5), fired_at=NOW - timedelta(minutes=4),
                             resolved_at=resolved_at, value="0.4")  # fmt: skip


def test_a_notification_carries_its_firing_then_resolved_alerts_with_their_ends() -> None:
    resolved_at = NOW - timedelta(seconds=30)
    by_fp = {"a": instance("a", "firing"), "b": instance("b", "resolved", resolved_at)}
    due = alerting.Due(alerting.Receiver("am", "alertmanager", True), ("a", "gone"), ("b",))
    sent = payloads(by_fp, due, NOW, 30.0, "alertmanager")
    assert [(p.fingerprint, p.status) for p in sent] == [("a", "firing"), ("b", "resolved")]
    # Alertmanager: valid four resend periods (at least a minute each) ahead; resolved: when it was.
    assert sent[0].ends_at == NOW + timedelta(minutes=4) and sent[1].ends_at == resolved_at
    assert sent[0].starts_at == NOW - timedelta(minutes=4) and sent[0].labels == {"alertname": "Slow", "fp": "a"}
    assert payloads(by_fp, due, NOW, 30.0, "webhook")[0].ends_at is None


@pytest.mark.parametrize(
    ("receiver", "roles"),
    [
        ({"webhook": {"urlSecretRef": {"name": "s", "key": "url"}}}, {"url"}),
        ({"slack": {"webhookUrlSecretRef": {"name": "s", "key": "url"}}}, {"url"}),
        ({"pagerduty": {"routingKeySecretRef": {"name": "s", "key": "k"}}}, {"routing_key"}),
        (
            {
                "alertmanager": {
                    "urlSecretRef": {"name": "s", "key": "url"},
                    "bearerTokenSecretRef": {"name": "s", "key": "t"},
                }
            },
            {"url", "token"},
        ),
        ({"event": {}}, set()),
    ],
)
def test_each_receiver_reads_its_credentials_from_its_secret_keys(receiver: Any, roles: set[str]) -> None:
    refs = secret_refs(Receiver.model_validate({"name": "r", **receiver}))
    assert set(refs) == roles


def test_a_rule_queries_the_prometheus_it_names_else_the_operators_own(monkeypatch: pytest.MonkeyPatch) -> None:
    async def secret(namespace: str, ref: Any) -> str:
        raise AssertionError("no Secret is read")

    async def check() -> None:
        sessions, policy = prometheus.Sessions(), Policy()
        monkeypatch.delenv(PROMETHEUS_SETTING, raising=False)
        assert prometheus.connect(None, "team", secret, policy, sessions) is None
        monkeypatch.setenv(PROMETHEUS_SETTING, "http://prometheus.monitoring:9090")
        own = prometheus.connect(None, "team", secret, policy, sessions)
        # The operator's own setting is not a user's address: no outbound policy.
        assert own is not None and own.policy is UNRESTRICTED and own.spec.address.endswith("monitoring:9090")
        mine = PrometheusProvider(address="http://mine:9090")
        named = prometheus.connect(mine, "team", secret, policy, sessions)
        assert named is not None and named.policy is policy and named.spec is mine
        await sessions.close()

    asyncio.run(check())


def test_a_rule_is_due_at_once_after_a_change_else_an_interval_after_its_latest_evaluation() -> None:
    written, unwritten = NOW - timedelta(seconds=50), NOW - timedelta(seconds=10)
    assert alert_rule.due_in(30.0, NOW, False, written, unwritten) == 20.0
    assert alert_rule.due_in(30.0, NOW, False, written, None) == -20.0
    assert alert_rule.due_in(30.0, NOW, True, written, unwritten) == 0.0
    assert alert_rule.due_in(30.0, NOW, False, None, None) == 0.0


def test_an_evaluation_over_the_limit_fails_and_says_so() -> None:
    samples = [alerting.Sample({"job": str(i)}, 1.0) for i in range(3)]
    instances, ready = alert_rule.evaluate("down", spec(expr="up == 0"), [], samples, NOW)
    assert len(instances) == 3 and ready is None and {i.labels["alertname"] for i in instances} == {"down"}
    instances, ready = alert_rule.evaluate("down", spec(expr="up == 0", limit=2), [], samples, NOW)
    assert instances == [] and ready is not None and ready[0] == "False", ready
