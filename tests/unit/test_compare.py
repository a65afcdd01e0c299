"""How the runtime compares a child as stored with the child as built: pure logic, no cluster."""

from __future__ import annotations

from typing import Any

from mlops_operator.runtime.apply import covers, exact_fields_match, first_difference, owns_replicas

ROUTE = {"spec": {"rules": [{"filters": [{"type": "RequestMirror", "requestMirror": {"percent": 10}}]}]}}


def test_covers_ignores_what_the_api_server_or_others_added() -> None:
    live = {"spec": {"replicas": 2, "strategy": {"type": "RollingUpdate"}}, "status": {"replicas": 2}}
    assert covers(live, {"spec": {"replicas": 2}})
    assert not covers(live, {"spec": {"replicas": 3}})
    assert not covers({"spec": {"ports": [{"port": 80}, {"port": 81}]}}, {"spec": {"ports": [{"port": 80}]}})


def test_first_difference_names_the_field_an_older_crd_dropped() -> None:
    pruned: dict[str, Any] = {"spec": {"rules": [{"filters": [{"type": "RequestMirror", "requestMirror": {}}]}]}}
    assert first_difference(pruned, ROUTE) == ".spec.rules[0].filters[0].requestMirror.percent"
    assert first_difference(ROUTE, ROUTE) is None
    assert first_difference({"spec": {"rules": []}}, ROUTE) == ".spec.rules"
    assert first_difference({"spec": {"x": 1}}, {"spec": {"x": 2}}) == ".spec.x"


def test_selectors_must_match_exactly() -> None:
    desired = {"kind": "Service", "spec": {"selector": {"app": "fraud", "mlops.io/version": "1.0.0"}}}
    extra = {"kind": "Service", "spec": {"selector": {"app": "fraud", "mlops.io/version": "1.0.0", "x": "y"}}}
    assert covers(extra, desired) and not exact_fields_match(extra, desired)
    assert exact_fields_match(desired, desired)
    # Other kinds: subset comparison only.
    assert exact_fields_match({"kind": "Deployment", "spec": {}}, {"kind": "Deployment", "spec": {"a": 1}})


def testowns_replicas_reads_the_managed_fields_of_our_applies() -> None:
    def live(manager: str, operation: str, fields: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"managedFields": [
            {"manager": manager, "operation": operation, "fieldsV1": {"f:spec": fields}}]}}  # fmt: skip

    assert owns_replicas(live("mlops-operator", "Apply", {"f:replicas": {}, "f:template": {}}))
    assert not owns_replicas(live("mlops-operator", "Apply", {"f:template": {}}))
    assert not owns_replicas(live("kube-controller-manager", "Update", {"f:replicas": {}}))
    assert not owns_replicas({"metadata": {}})
