"""The PrometheusRule an expr AlertRule is exported as."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops_operator.api.common import DURATION_PATTERN, duration_seconds
from mlops_operator.builders.prometheus_rule import prometheus_duration, prometheus_rule

# The pattern of every duration in prometheus-operator's PrometheusRule CRD (v0.85.0).
PROMETHEUS_DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
RULE: dict[str, Any] = {
    "apiVersion": "mlops.io/v1alpha1",
    "kind": "AlertRule",
    "metadata": {"name": "fraud-errors", "namespace": "ml", "uid": "5f1e-uid", "generation": 2},
    "spec": {
        "expr": 'sum(rate(mlops_server_requests_total{model="fraud",code=~"5.."}[5m])) > 1',
        "for": "5m",
        "keepFiringFor": "10m",
        "interval": "1m",
        "limit": 20,
        "severity": "critical",
        "labels": {"team": "risk"},
        "annotations": {"summary": "fraud answers {{ $value | humanize }} errors/s"},
        "runbookUrl": "https://runbooks.example.com/fraud-errors",
        "prometheusRule": True,
    },
}


def rule_with(**spec: Any) -> dict[str, Any]:
    rule = copy.deepcopy(RULE)
    rule["spec"] = spec
    return rule


def test_one_group_with_one_alerting_rule_owned_by_the_alert_rule() -> None:
    assert prometheus_rule(RULE) == {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "fraud-errors",
            "namespace": "ml",
            "labels": {"app.kubernetes.io/managed-by": "mlops-operator"},
            "ownerReferences": [
                {
                    "apiVersion": "mlops.io/v1alpha1",
                    "kind": "AlertRule",
                    "name": "fraud-errors",
                    "uid": "5f1e-uid",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "groups": [
                {
                    "name": "ml/fraud-errors",
                    "interval": "1m",
                    "limit": 20,
                    "rules": [
                        {
                            "alert": "fraud-errors",
                            "expr": RULE["spec"]["expr"],
                            "for": "5m",
                            "keep_firing_for": "10m",
                            "labels": {"team": "risk", "severity": "critical"},
                            "annotations": {
                                "summary": "fraud answers {{ $value | humanize }} errors/s",
                                "runbook_url": "https://runbooks.example.com/fraud-errors",
                            },
                        }
                    ],
                }
            ]
        },
    }


def test_defaults_leave_out_keep_firing_for_limit_and_runbook() -> None:
    group = prometheus_rule(rule_with(expr="up == 0"))["spec"]["groups"][0]
    assert group == {
        "name": "ml/fraud-errors",
        "interval": "30s",
        "rules": [
            {"alert": "fraud-errors", "expr": "up == 0", "for": "0s", "labels": {"severity": "warning"},
             "annotations": {}},
        ],
    }  # fmt: skip


def test_runbook_url_wins_over_an_annotation_of_that_name() -> None:
    rule = rule_with(expr="up == 0", annotations={"runbook_url": "https://old"}, runbookUrl="https://new")
    assert prometheus_rule(rule)["spec"]["groups"][0]["rules"][0]["annotations"] == {"runbook_url": "https://new"}


def test_a_zero_keep_firing_for_in_any_unit_is_left_out() -> None:
    alerting = prometheus_rule(rule_with(expr="up == 0", keepFiringFor="0m"))["spec"]["groups"][0]["rules"][0]
    assert "keep_firing_for" not in alerting


@pytest.mark.parametrize("spec", [{"condition": {"selector": {"kind": "ModelDeployment"}, "cel": "true"}},
                                  {"sla": {"deployment": "fraud", "latencyP99": 0.2}}])  # fmt: skip
def test_only_expr_rules_are_exported(spec: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="only expr rules"):
        prometheus_rule(rule_with(**spec))


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [("30s", "30s"), ("1.5m", "1m30s"), ("90m", "1h30m"), ("30m1h", "1h30m"), ("250ms", "250ms"),
     ("1h0m0s", "1h"), ("0s", "0s"), ("0.4ms", "0s"), ("1.6ms", "2ms"), ("72h", "72h")],
)  # fmt: skip
def test_durations_in_prometheus_syntax(ours: str, theirs: str) -> None:
    assert prometheus_duration(ours) == theirs


@given(st.from_regex(DURATION_PATTERN, fullmatch=True).filter(lambda d: duration_seconds(d) < 1e9))
def test_every_duration_we_accept_is_one_the_crd_accepts(ours: str) -> None:
    theirs = prometheus_duration(ours)
    assert PROMETHEUS_DURATION.match(theirs)
    # Rounded to the millisecond (a tie may go either way).
    assert abs(duration_seconds(theirs) - duration_seconds(ours)) <= 0.0005 + 1e-9
