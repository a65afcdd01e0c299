"""The chart's RBAC is as small as the code: the rights it grants are the rights the operator uses.

Every operator the integration tests start runs as a service account bound to the chart's rules (support.py), and the
API server's audit log records that account's requests (tests/cluster/audit-policy.yaml). This file runs last: it
compares the rights those requests used with the rights the chart grants, per mode.
"""

from __future__ import annotations

import json
import subprocess
from itertools import product
from pathlib import Path
from typing import Any

import pytest
from support import (
    OPERATOR_ACCOUNT,
    RBAC_NAMESPACE,
    ROOT,
    SESSION_STARTED,
    Kubectl,
    account_kubeconfig,
    apply_rbac,
    deploy,
    register,
    render_chart,
    start_operator,
    wait_serving,
)

Right = tuple[str, str, str]  # (API group, resource[/subresource], verb)

# Rights no request names: the OwnerReferencesPermissionEnforcement admission plugin asks for them when a child's
# owner reference blocks its owner's deletion (blockOwnerDeletion).
ADMISSION_ONLY: set[Right] = {
    ("mlops.io", "modelversions/finalizers", "update"),
    ("mlops.io", "modeldeployments/finalizers", "update"),
}
# Code paths the suite reaches for one kind only: a child name the watch has not reported as taken is confirmed with
# a read (test_modeldeployment's conflict test reaches it with a Service); the same code reads any child kind.
RARE_PATHS: set[Right] = {
    (group, resource, "get")
    for group, resource in (
        ("apps", "deployments"), ("autoscaling", "horizontalpodautoscalers"), ("policy", "poddisruptionbudgets"),
        ("gateway.networking.k8s.io", "httproutes"), ("networking.istio.io", "virtualservices"),
    )
} | {
    # Switching a deployment's router away from istio deletes its VirtualService; the suite switches the other way
    # (gatewayAPI to istio, which deletes the HTTPRoute).
    ("networking.istio.io", "virtualservices", "delete"),
}  # fmt: skip


def granted(rules: list[dict[str, Any]]) -> set[Right]:
    return {right for rule in rules for right in product(rule["apiGroups"], rule["resources"], rule["verbs"])}


def audited(account: str) -> list[dict[str, Any]]:
    """This session's audited requests of ``account`` (a service account of RBAC_NAMESPACE)."""
    out = subprocess.run([str(ROOT / "tests/cluster/audit-log.sh")], capture_output=True, text=True, check=True,
                         timeout=60).stdout  # fmt: skip
    user = f"system:serviceaccount:{RBAC_NAMESPACE}:{account}"
    since = SESSION_STARTED.isoformat().replace("+00:00", "Z")
    events = (json.loads(line) for line in out.splitlines() if line.startswith("{"))
    return [e for e in events if e["user"]["username"] == user and e["requestReceivedTimestamp"] >= since]


def rights_of(event: dict[str, Any]) -> set[Right]:
    ref = event.get("objectRef")
    if not ref or "resource" not in ref:
        return set()  # discovery (/api, /apis, /version): granted to every authenticated user
    resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    rights = {(ref.get("apiGroup", ""), resource, event["verb"])}
    if event["verb"] == "patch" and event.get("responseStatus", {}).get("code") == 201:
        # A server-side apply that creates the object is authorized as a create as well.
        rights.add((ref.get("apiGroup", ""), resource, "create"))
    return rights


def used_by(events: list[dict[str, Any]]) -> set[Right]:
    return set().union(*map(rights_of, events))


def forbidden(events: list[dict[str, Any]]) -> list[str]:
    """Requests RBAC refused (a 403 of an admission plugin, such as a quota, is not RBAC's)."""
    return sorted(
        {f"{e['verb']} {e['requestURI']}" for e in events
         if e.get("annotations", {}).get("authorization.k8s.io/decision") == "forbid"}
    )  # fmt: skip


def test_namespaced_mode_serves_its_namespace_with_its_roles_alone(kubectl: Kubectl, tmp_path: Path) -> None:
    """The chart's namespaced mode (a Role and RoleBinding in each watched namespace, nothing cluster-scoped): the
    operator registers a version and serves it, asking for nothing its Role does not grant (no Namespaces, no
    CRDs)."""
    namespace = kubectl.namespace or ""
    account = "mlops-rbac-namespaced"
    docs = render_chart("--set", f"fullnameOverride={account}", "--set", f"watchNamespaces={{{namespace}}}")
    apply_rbac(kubectl, docs)
    (role,) = [d for d in docs if d["kind"] == "Role"]
    op = start_operator(tmp_path, "--namespace", namespace, kubeconfig=account_kubeconfig(kubectl, account, tmp_path))
    try:
        register(kubectl, tmp_path, "fraud", "1.0.0")
        deploy(kubectl, "fraud", version="1.0.0", replicas=2)
        wait_serving(kubectl, "fraud", "1.0.0")
    finally:
        op.stop()
    events = audited(account)
    assert events, "the audit log recorded nothing of the namespaced operator"
    used = used_by(events)
    beyond = used - granted(role["rules"])
    assert not beyond, f"the namespaced operator used rights its Role does not grant: {sorted(beyond)}"
    assert not forbidden(events), f"refused requests: {forbidden(events)}"


def test_cluster_mode_grants_exactly_the_rights_the_operator_used(
    request: pytest.FixtureRequest, kubectl: Kubectl, tmp_path: Path
) -> None:
    # Every other test watches its own namespace: one operator watching every namespace uses the cluster-mode rights.
    op = start_operator(tmp_path)
    crd_watch = ("apiextensions.k8s.io", "customresourcedefinitions", "watch")
    try:
        register(kubectl, tmp_path, "fraud", "1.0.0")
        # kopf starts watching CRDs after listing them; the audit log is written as requests complete or begin.
        kubectl.wait_for(lambda: crd_watch in used_by(audited(OPERATOR_ACCOUNT)), timeout=30, interval=1,
                         what="the cluster-wide operator to watch CRDs")  # fmt: skip
    finally:
        op.stop()
    (role,) = [d for d in render_chart("--set", f"fullnameOverride={OPERATOR_ACCOUNT}") if d["kind"] == "ClusterRole"]
    rules = granted(role["rules"])
    events = audited(OPERATOR_ACCOUNT)
    assert events, "no operator request of this session in the audit log: did any test start the operator?"
    assert not forbidden(events), f"the API server refused these requests of the operator: {forbidden(events)}"
    used = used_by(events)
    assert used <= rules, f"used but not granted: {sorted(used - rules)}"
    # Whether every right was used can only be told when every test that starts the operator ran.
    modules = {item.path.name for item in request.session.items}
    everything = {p.name for p in (ROOT / "tests/integration").glob("test_*.py")}
    if everything <= modules:
        unused = rules - used - ADMISSION_ONLY - RARE_PATHS
        assert not unused, f"granted but never used by the operator in the whole suite: {sorted(unused)}"
