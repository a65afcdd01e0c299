"""The PrometheusRule (prometheus-operator's monitoring.coreos.com/v1) that an AlertRule with prometheusRule: true is
exported as, so that a Prometheus evaluates its expr instead of the operator.

Pure: reads only its argument and returns a complete object for server-side apply, owned by the AlertRule.
"""

from __future__ import annotations

from typing import Any

from mlops_operator.api.alertrule import AlertRuleSpec
from mlops_operator.api.common import duration_seconds
from mlops_operator.builders.ownership import owner_reference
from mlops_operator.builders.serving import MANAGED_BY

Body = dict[str, Any]

API_VERSION = "monitoring.coreos.com/v1"
KIND = "PrometheusRule"

_UNITS_MS = (("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1))


def prometheus_rule(rule: Body) -> Body:
    """The PrometheusRule of an expr AlertRule (a body as the API server stores it): same name and namespace, one
    group ``<namespace>/<name>`` holding one alerting rule named after the AlertRule. ValueError for a rule without
    expr (condition and sla rules are evaluated by the operator only)."""
    meta = rule["metadata"]
    spec = AlertRuleSpec.model_validate(rule["spec"])
    if spec.expr is None:
        raise ValueError(f"AlertRule {meta['namespace']}/{meta['name']} has no expr: only expr rules are exported")
    annotations = dict(spec.annotations)
    if spec.runbook_url:
        annotations["runbook_url"] = spec.runbook_url
    alerting: Body = {
        "alert": meta["name"],
        "expr": spec.expr,
        "for": prometheus_duration(spec.for_),
        "labels": {**spec.labels, "severity": spec.severity},
        "annotations": annotations,
    }
    keep_firing_for = prometheus_duration(spec.keep_firing_for)
    if keep_firing_for != "0s":
        alerting["keep_firing_for"] = keep_firing_for
    group: Body = {
        "name": f"{meta['namespace']}/{meta['name']}",
        "interval": prometheus_duration(spec.interval),
        "rules": [alerting],
    }
    # Our limit 0 means "up to the operator's own cap", which a Prometheus does not need: it has no cap at 0.
    if spec.limit > 0:
        group["limit"] = spec.limit
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            # The AlertRule's own labels: a Prometheus picks PrometheusRules by label (its ruleSelector).
            "labels": {**(meta.get("labels") or {}), "app.kubernetes.io/managed-by": MANAGED_BY},
            "ownerReferences": [owner_reference(rule)],
        },
        "spec": {"groups": [group]},
    }


def prometheus_duration(text: str) -> str:
    """A Duration (``1.5m``, ``90m``, ``30s``) in the syntax Prometheus and the PrometheusRule schema accept:
    whole units from the largest down (``1m30s``, ``1h30m``, ``30s``), rounded to the millisecond; ``0s`` for
    zero. Ours also allows fractions and units in any order, which theirs refuses."""
    left = round(duration_seconds(text) * 1000)
    parts = []
    for unit, ms in _UNITS_MS:
        count, left = divmod(left, ms)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
