"""ModelDeployments on a real API server, the operator as a real process, Pods Running on simulated nodes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from support import (
    Body,
    Check,
    Kubectl,
    OperatorProcess,
    assert_restart_writes_nothing,
    condition,
    condition_is,
    deploy,
    events,
    patch,
    register,
    serving,
    start_operator,
    wait_serving,
    wait_status,
)

from mlops_operator.builders.serving import child_name


def names(kubectl: Kubectl, kind: str) -> set[str]:
    out = kubectl.run("get", kind, "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    return set(out)


def running_pods(kubectl: Kubectl, version: str) -> int:
    out = kubectl.run("get", "pods", "-l", f"mlops.io/version={version}", "-o",
                      "jsonpath={range .items[*]}{.status.phase}{' '}{end}").stdout.split()  # fmt: skip
    return sum(1 for phase in out if phase == "Running")


def traffic_is(split: str) -> Check:
    """The check: status.traffic reads ``split``."""
    return lambda obj: obj.get("status", {}).get("traffic") == split


def given_serving(
    kubectl: Kubectl, tmp_path: Path, *registered: str, ready_replicas: int | None = None, **spec: Any
) -> Body:
    """Given the versions ``registered`` of model fraud and the ModelDeployment fraud with ``spec``: waits until it
    serves spec's version (on ``ready_replicas`` when given) and returns it."""
    for version in registered:
        register(kubectl, tmp_path, "fraud", version)
    deploy(kubectl, "fraud", **spec)
    return wait_serving(kubectl, "fraud", spec["version"], ready_replicas)


def test_a_pinned_version_is_served_by_its_own_children_and_status_says_so(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    obj = given_serving(kubectl, tmp_path, "1.0.0", version="1.0.0", replicas=2)
    v1 = child_name("fraud", "1.0.0")
    assert names(kubectl, "deployments") == {v1}
    assert names(kubectl, "services") == {"fraud", v1}
    assert names(kubectl, "poddisruptionbudgets") == {v1}
    kubectl.wait_for(lambda: running_pods(kubectl, "1.0.0") == 2, what="two Pods Running")
    status = obj["status"]
    assert status["url"] == f"http://fraud.{kubectl.namespace}.svc:8080"
    assert status["versions"][0] | {"since": None} == {
        "version": "1.0.0", "role": "stable", "deployment": v1, "service": v1, "replicas": 2, "readyReplicas": 2,
        "weight": 100, "since": None,
    }  # fmt: skip
    assert condition(obj, "Progressing")["status"] == "False" and condition(obj, "Degraded")["status"] == "False"
    kubectl.run("wait", "--for=condition=Ready", "--timeout=10s", "modeldeployment/fraud")
    row = kubectl.run("get", "mdep", "fraud", "--no-headers").stdout.split()
    assert row[:5] == ["fraud", "fraud", "1.0.0", "True", "2"] and row[5] == "1.0.0=100"
    assert kubectl.get("service", "fraud")["spec"]["selector"]["mlops.io/version"] == "1.0.0"


def test_the_versions_deployment_runs_the_server_with_its_artifact_and_resources(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    resources = {"requests": {"cpu": "100m", "memory": "128Mi"}}
    given_serving(kubectl, tmp_path, "1.0.0", version="1.0.0", replicas=1, resources=resources)
    dep = kubectl.get("deployment", child_name("fraud", "1.0.0"))
    container = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MLOPS_MODEL_VERSION"] == "1.0.0" and env["MLOPS_MODEL_SOURCE"].endswith("fraud-1.0.0.joblib")
    assert env["MLOPS_MODEL_CHECKSUM"].startswith("sha256:") and json.loads(env["MLOPS_MODEL_SIGNATURE"])
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"


def test_scaled_to_zero_is_ready_and_says_it_answers_nothing(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    given_serving(kubectl, tmp_path, "1.0.0", version="1.0.0", replicas=2, ready_replicas=2)
    patch(kubectl, "fraud", {"replicas": 0})
    obj = wait_status(
        kubectl, "modeldeployment", "fraud", "scaled to zero", condition_is("Ready", reason="ScaledToZero")
    )
    assert condition(obj, "Ready")["status"] == "True" and "answers nothing" in condition(obj, "Ready")["message"]
    kubectl.wait_for(lambda: running_pods(kubectl, "1.0.0") == 0, what="no Pods")


def test_a_replicas_change_scales_the_versions_deployment(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    given_serving(kubectl, tmp_path, "1.0.0", version="1.0.0", replicas=2)
    patch(kubectl, "fraud", {"replicas": 3})
    wait_serving(kubectl, "fraud", "1.0.0", ready_replicas=3)
    assert kubectl.get("deployment", child_name("fraud", "1.0.0"))["spec"]["replicas"] == 3


def test_autoscaling_hands_the_replicas_over_to_a_horizontal_pod_autoscaler(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    given_serving(kubectl, tmp_path, "1.0.0", version="1.0.0", replicas=3, ready_replicas=3)
    v1 = child_name("fraud", "1.0.0")
    # One HPA per served version, and the operator stops setting replicas; the 3 running stay (the field is handed
    # over, not dropped, which would fall back to 1).
    patch(kubectl, "fraud", {"autoscaling": {"minReplicas": 2, "maxReplicas": 5}})
    hpa = kubectl.wait_for(lambda: v1 in names(kubectl, "hpa") and kubectl.get("hpa", v1), what="the HPA")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": v1}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)

    def managers() -> dict[str, Any]:
        managed = kubectl.run("get", "deployment", v1, "--show-managed-fields", "-o", "json").stdout
        return {m["manager"]: m for m in json.loads(managed)["metadata"]["managedFields"] if m["operation"] == "Apply"}

    kubectl.wait_for(lambda: "f:replicas" not in managers()["mlops-operator"]["fieldsV1"]["f:spec"],
                     what="replicas left to the HPA")  # fmt: skip
    assert "f:replicas" in managers()["mlops-operator-handover"]["fieldsV1"]["f:spec"]
    assert kubectl.get("deployment", v1)["spec"]["replicas"] == 3
    time.sleep(1)
    assert running_pods(kubectl, "1.0.0") == 3


def test_a_version_change_rolls_to_the_new_version_and_removes_the_old(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    autoscaling = {"minReplicas": 2, "maxReplicas": 5}
    given_serving(kubectl, tmp_path, "1.0.0", "1.1.0", version="1.0.0", autoscaling=autoscaling)
    v1, v2 = child_name("fraud", "1.0.0"), child_name("fraud", "1.1.0")
    kubectl.wait_for(lambda: names(kubectl, "hpa") == names(kubectl, "pdb") == {v1}, what="an HPA and a PDB of 1.0.0")
    # To one replica without autoscaling: the new Deployment first, then the traffic, then the old one goes.
    patch(kubectl, "fraud", {"version": "1.1.0", "autoscaling": None, "replicas": 1})
    wait_serving(kubectl, "fraud", "1.1.0")
    kubectl.wait_for(lambda: names(kubectl, "deployments") == {v2}, what="only the new Deployment")
    assert names(kubectl, "services") == {"fraud", v2}
    assert names(kubectl, "hpa") == set() and names(kubectl, "pdb") == set()
    assert kubectl.get("service", "fraud")["spec"]["selector"]["mlops.io/version"] == "1.1.0"
    assert any("serving 1.1.0 (was 1.0.0)" in e["message"] for e in events(kubectl, "fraud", "VersionServed"))


def test_deleting_a_deployment_cascades_to_every_child(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    given_serving(kubectl, tmp_path, "1.0.0", version="1.0.0", replicas=2)
    assert names(kubectl, "deployments") and names(kubectl, "services")
    kubectl.run("delete", "modeldeployment", "fraud", "--wait=true")
    kubectl.wait_for(lambda: not names(kubectl, "deployments") and names(kubectl, "services") == set(),
                     timeout=60, what="children garbage-collected")  # fmt: skip


def test_rolling_moves_traffic_only_to_ready_pods(kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path) -> None:
    given_serving(kubectl, tmp_path, "1.0.0", "1.1.0", version="1.0.0", replicas=1)
    # The new version asks for more CPU than any node has: its Pods stay Pending and never become ready (the old
    # version's own rollout keeps its ready Pod, since a Deployment never goes below its desired capacity).
    patch(kubectl, "fraud", {"version": "1.1.0", "resources": {"requests": {"cpu": "500"}},
                             "rollout": {"progressDeadline": "15s"}})  # fmt: skip

    def incoming(obj: dict[str, Any]) -> bool:
        versions = {v["version"]: v for v in obj.get("status", {}).get("versions", [])}
        return versions.get("1.1.0", {}).get("role") == "incoming"

    obj = wait_status(kubectl, "modeldeployment", "fraud", "1.1.0 incoming", incoming)
    time.sleep(3)
    obj = kubectl.get("modeldeployment", "fraud")
    versions = {v["version"]: v for v in obj["status"]["versions"]}
    assert versions["1.0.0"]["role"] == "stable" and versions["1.0.0"]["weight"] == 100
    assert versions["1.1.0"]["weight"] == 0 and versions["1.1.0"]["readyReplicas"] == 0
    assert obj["status"]["traffic"] == "1.0.0=100"
    assert kubectl.get("service", "fraud")["spec"]["selector"]["mlops.io/version"] == "1.0.0"
    assert (condition(obj, "Ready")["status"], condition(obj, "Ready")["reason"]) == ("False", "RollingOut")
    assert (condition(obj, "Progressing")["status"], condition(obj, "Progressing")["reason"]) == ("True", "RollingOut")
    assert "1.1.0 0/1 ready" in condition(obj, "Ready")["message"]

    # Past the progress deadline the version counts as failed: Degraded says why, the old version keeps serving.
    # (The old version's template takes the new resources too: its own rollout may time out first, so the wait is
    # for the new version's line.)
    def new_version_failed(o: dict[str, Any]) -> bool:
        return condition_is("Degraded", "True")(o) and "1.1.0: " in condition(o, "Degraded").get("message", "")

    obj = wait_status(kubectl, "modeldeployment", "fraud", "Degraded", new_version_failed)
    assert condition(obj, "Degraded")["reason"] == "ProgressDeadlineExceeded"
    assert "1.1.0: " in condition(obj, "Degraded")["message"]
    assert (condition(obj, "Progressing")["status"], condition(obj, "Progressing")["reason"]) == (
        "False", "ProgressDeadlineExceeded")  # fmt: skip
    assert obj["status"]["traffic"] == "1.0.0=100"

    patch(kubectl, "fraud", {"resources": None})
    wait_serving(kubectl, "fraud", "1.1.0")
    assert kubectl.get("service", "fraud")["spec"]["selector"]["mlops.io/version"] == "1.1.0"


def test_missing_version_is_reported_then_served(kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path) -> None:
    deploy(kubectl, "fraud", version="2.0.0")
    obj = wait_status(
        kubectl, "modeldeployment", "fraud", "VersionNotFound", condition_is("Ready", reason="VersionNotFound")
    )
    assert condition(obj, "Ready")["status"] == "False"
    assert "no ModelVersion of model fraud has version 2.0.0" in condition(obj, "Ready")["message"]
    assert names(kubectl, "deployments") == set()
    # A version whose artifact does not verify is not served, and its own message is repeated.
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"x")
    kubectl.apply({"apiVersion": "mlops.io/v1alpha1", "kind": "ModelVersion", "metadata": {"name": "fraud-2-0-0"},
                   "spec": {"model": "fraud", "version": "2.0.0", "source": f"file://{bad}", "format": "sklearn",
                            "checksum": "sha256:" + "0" * 64}})  # fmt: skip
    obj = wait_status(kubectl, "modeldeployment", "fraud", "VersionNotReady with the version's reason",
                      lambda o: "ChecksumMismatch" in condition(o, "Ready").get("message", ""))  # fmt: skip
    assert condition(obj, "Ready")["reason"] == "VersionNotReady"
    assert names(kubectl, "deployments") == set()
    kubectl.run("delete", "modelversion", "fraud-2-0-0")
    register(kubectl, tmp_path, "fraud", "2.0.0")
    wait_serving(kubectl, "fraud", "2.0.0")


def test_follow_production(kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path) -> None:
    register(kubectl, tmp_path, "fraud", "1.0.0", stage="production")
    second = register(kubectl, tmp_path, "fraud", "1.1.0", stage="staging")
    deploy(kubectl, "fraud", follow="production", replicas=2)
    wait_serving(kubectl, "fraud", "1.0.0")
    # The registry grants production to another version: the deployment rolls to it on its own.
    kubectl.run("patch", "modelversion", second, "--type=merge", "-p", '{"spec": {"stage": "production"}}')
    wait_serving(kubectl, "fraud", "1.1.0")
    kubectl.wait_for(lambda: names(kubectl, "deployments") == {child_name("fraud", "1.1.0")}, what="old removed")
    kubectl.wait_for(lambda: running_pods(kubectl, "1.1.0") == 2, what="two Pods of 1.1.0")


def test_blue_green_preview_promote_and_delay(kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path) -> None:
    rollout = {"strategy": "blueGreen", "blueGreen": {"autoPromote": False, "scaleDownDelay": "4s"}}
    given_serving(kubectl, tmp_path, "1.0.0", "1.1.0", version="1.0.0", rollout=rollout)
    patch(kubectl, "fraud", {"version": "1.1.0"})
    waiting = condition_is("Ready", reason="WaitingForPromotion")
    obj = wait_status(kubectl, "modeldeployment", "fraud", "waiting for promotion", waiting)
    preview = kubectl.get("service", "fraud-preview")
    assert preview["spec"]["selector"]["mlops.io/version"] == "1.1.0"
    assert obj["status"]["previewUrl"] == f"http://fraud-preview.{kubectl.namespace}.svc:8080"
    assert kubectl.get("service", "fraud")["spec"]["selector"]["mlops.io/version"] == "1.0.0"
    assert obj["status"]["traffic"] == "1.0.0=100"
    assert "mlops.io/promote=1.1.0" in condition(obj, "Ready")["message"]
    assert condition(obj, "Progressing")["status"] == "False"

    kubectl.run("annotate", "modeldeployment", "fraud", "mlops.io/promote=1.1.0")
    obj = wait_status(kubectl, "modeldeployment", "fraud", "switched", lambda o: o["status"].get("version") == "1.1.0")
    switched = time.monotonic()
    roles = {v["version"]: v["role"] for v in obj["status"]["versions"]}
    assert roles == {"1.1.0": "stable", "1.0.0": "retiring"}
    assert kubectl.get("service", "fraud")["spec"]["selector"]["mlops.io/version"] == "1.1.0"
    assert child_name("fraud", "1.0.0") in names(kubectl, "deployments")
    assert "fraud-preview" not in names(kubectl, "services")
    wait_serving(kubectl, "fraud", "1.1.0", timeout=20)
    assert time.monotonic() - switched > 2
    kubectl.wait_for(lambda: names(kubectl, "deployments") == {child_name("fraud", "1.1.0")}, what="old removed")


SHADOW = {"version": "1.1.0", "percent": 25}
GATEWAY = {"type": "gatewayAPI", "parentRefs": [{"name": "gw", "sectionName": "http"}], "hostnames": ["fraud.ml"]}


def serving_with_shadow(obj: dict[str, Any]) -> bool:
    roles = {v["version"]: v["role"] for v in obj.get("status", {}).get("versions", [])}
    ready = condition(obj, "Ready")
    return roles == {"1.0.0": "stable", "1.1.0": "shadow"} and ready.get("status") == "True"


def mirrors(kubectl: Kubectl, router: str) -> bool:
    """Whether the routing object of ``router`` (gatewayAPI or istio) exists and mirrors requests."""
    kind = "httproute" if router == "gatewayAPI" else "virtualservice"
    if "fraud" not in names(kubectl, f"{kind}s"):
        return False
    spec = kubectl.get(kind, "fraud")["spec"]
    if router == "gatewayAPI":
        return all(rule.get("filters") for rule in spec["rules"])
    return all("mirror" in route for route in spec["http"])


def given_a_shadow(kubectl: Kubectl, tmp_path: Path, router: dict[str, Any]) -> None:
    """Given 1.0.0 served through ``router`` with 1.1.0 as its shadow, mirrored by the routing object."""
    register(kubectl, tmp_path, "fraud", "1.0.0")
    register(kubectl, tmp_path, "fraud", "1.1.0")
    deploy(kubectl, "fraud", version="1.0.0", router=router, shadow=SHADOW)
    wait_status(kubectl, "modeldeployment", "fraud", "serving with a mirrored shadow",
                lambda o: serving_with_shadow(o) and mirrors(kubectl, router["type"]))  # fmt: skip


def test_a_gateway_api_route_sends_the_traffic_and_mirrors_the_shadow(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path, third_party_crds: list[str]
) -> None:
    given_a_shadow(kubectl, tmp_path, GATEWAY)
    route = kubectl.get("httproute", "fraud")
    rule = route["spec"]["rules"][0]
    v1, v2 = child_name("fraud", "1.0.0"), child_name("fraud", "1.1.0")
    assert [(b["name"], b["port"], b["weight"]) for b in rule["backendRefs"]] == [(v1, 8080, 100)]
    assert rule["filters"] == [{"type": "RequestMirror",
                                "requestMirror": {"backendRef": {"group": "", "kind": "Service", "name": v2,
                                                                 "port": 8080}, "percent": 25}}]  # fmt: skip
    assert route["spec"]["parentRefs"][0]["name"] == "gw" and route["spec"]["hostnames"] == ["fraud.ml"]
    assert route["metadata"]["ownerReferences"][0]["name"] == "fraud"
    assert names(kubectl, "deployments") == {v1, v2}


def test_an_istio_virtual_service_sends_the_traffic_and_mirrors_the_shadow(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path, third_party_crds: list[str]
) -> None:
    given_a_shadow(kubectl, tmp_path, {"type": "istio"})
    vs = kubectl.get("virtualservice", "fraud")["spec"]
    ns = kubectl.namespace
    v1, v2 = child_name("fraud", "1.0.0"), child_name("fraud", "1.1.0")
    assert vs["hosts"] == [f"fraud.{ns}.svc.cluster.local"]
    # gRPC calls first (to the grpc port), then everything else (http); both weighted and mirrored alike.
    assert [route["name"] for route in vs["http"]] == ["mlops-weights-grpc", "mlops-weights"]
    for http, port in zip(vs["http"], (8081, 8080), strict=True):
        assert http["route"] == [{"destination": {"host": f"{v1}.{ns}.svc.cluster.local", "port": {"number": port}},
                                  "weight": 100}]  # fmt: skip
        assert http["mirror"] == {"host": f"{v2}.{ns}.svc.cluster.local", "port": {"number": port}}
        assert http["mirrorPercentage"] == {"value": 25}
    assert names(kubectl, "deployments") == {v1, v2}


def test_switching_from_gateway_api_to_istio_replaces_our_route_and_spares_the_users(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path, third_party_crds: list[str]
) -> None:
    # A route of the user's own in the same namespace: never touched.
    kubectl.apply({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "other"},
                   "spec": {"parentRefs": [{"name": "gw"}],
                            "rules": [{"backendRefs": [{"name": "elsewhere", "port": 80}]}]}})  # fmt: skip
    other = kubectl.get("httproute", "other")["metadata"]["resourceVersion"]
    given_a_shadow(kubectl, tmp_path, GATEWAY)
    patch(kubectl, "fraud", {"router": {"type": "istio", "parentRefs": None, "hostnames": None}})
    kubectl.wait_for(
        lambda: names(kubectl, "virtualservices") == {"fraud"} and names(kubectl, "httproutes") == {"other"},
        what="VirtualService instead of HTTPRoute",
    )
    wait_status(kubectl, "modeldeployment", "fraud", "the VirtualService mirroring",
                lambda o: serving_with_shadow(o) and mirrors(kubectl, "istio"))  # fmt: skip
    assert kubectl.get("httproute", "other")["metadata"]["resourceVersion"] == other


def test_removing_the_shadow_removes_its_mirror_and_its_children(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path, third_party_crds: list[str]
) -> None:
    given_a_shadow(kubectl, tmp_path, {"type": "istio"})
    patch(kubectl, "fraud", {"shadow": None})
    kubectl.wait_for(lambda: not any("mirror" in r for r in kubectl.get("virtualservice", "fraud")["spec"]["http"]),
                     what="mirror removed")  # fmt: skip
    kubectl.wait_for(lambda: names(kubectl, "deployments") == {child_name("fraud", "1.0.0")}, what="shadow removed")


def test_name_taken_by_someone_else_is_not_taken_over(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    register(kubectl, tmp_path, "fraud", "1.0.0")
    kubectl.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fraud"},
                   "spec": {"selector": {"app": "mine"}, "ports": [{"port": 80}]}})  # fmt: skip
    deploy(kubectl, "fraud", version="1.0.0")
    obj = wait_status(kubectl, "modeldeployment", "fraud", "Conflict", condition_is("Ready", reason="Conflict"))
    assert "Service fraud exists and is not owned by this ModelDeployment" in condition(obj, "Ready")["message"]
    assert condition(obj, "Degraded")["status"] == "True"
    assert kubectl.get("service", "fraud")["spec"]["selector"] == {"app": "mine"}
    kubectl.run("delete", "service", "fraud")
    wait_serving(kubectl, "fraud", "1.0.0")


def test_changed_replicas_and_selector_are_restored(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    given_serving(kubectl, tmp_path, "1.0.0", version="1.0.0", replicas=2)
    v1 = child_name("fraud", "1.0.0")
    kubectl.run("scale", "deployment", v1, "--replicas=5")
    kubectl.run("patch", "service", "fraud", "--type=merge", "-p", '{"spec": {"selector": {"mlops.io/version": "x"}}}')
    kubectl.wait_for(lambda: kubectl.get("deployment", v1)["spec"]["replicas"] == 2, what="replicas restored")
    kubectl.wait_for(lambda: kubectl.get("service", "fraud")["spec"]["selector"]["mlops.io/version"] == "1.0.0",
                     what="selector restored")  # fmt: skip


def test_a_key_added_to_a_selector_is_removed(kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path) -> None:
    given_serving(kubectl, tmp_path, "1.0.0", version="1.0.0", replicas=2)
    # It changes which Pods get traffic.
    selector = kubectl.get("service", "fraud")["spec"]["selector"]
    kubectl.run("patch", "service", "fraud", "--type=merge", "-p", '{"spec": {"selector": {"extra": "key"}}}')
    kubectl.wait_for(lambda: kubectl.get("service", "fraud")["spec"]["selector"] == selector,
                     what="extra selector key removed")  # fmt: skip


def test_a_deleted_child_is_recreated(kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path) -> None:
    given_serving(kubectl, tmp_path, "1.0.0", version="1.0.0", replicas=2, ready_replicas=2)
    v1 = child_name("fraud", "1.0.0")
    kubectl.run("delete", "service", v1)
    kubectl.wait_for(lambda: v1 in names(kubectl, "services"), what="Service recreated")
    wait_serving(kubectl, "fraud", "1.0.0", ready_replicas=2)


def test_a_restarted_operator_writes_nothing_to_a_deployment_it_serves(kubectl: Kubectl, tmp_path: Path) -> None:
    op = start_operator(tmp_path, "--namespace", kubectl.namespace or "default")
    try:
        given_serving(kubectl, tmp_path, "1.0.0", version="1.0.0", replicas=2, ready_replicas=2)
        time.sleep(2)
    finally:
        assert op.stop() == 0
    assert_restart_writes_nothing(kubectl, tmp_path)


def routed(kubectl: Kubectl, router: str) -> dict[str, int]:
    """The weights the routing objects hold, by child Service name (the replicas router: the front Service's pick)."""
    if router == "gatewayAPI":
        rules = kubectl.get("httproute", "fraud")["spec"]["rules"]
        return {b["name"]: b["weight"] for b in rules[0]["backendRefs"]}
    if router == "istio":
        routes = kubectl.get("virtualservice", "fraud")["spec"]["http"][0]["route"]
        return {r["destination"]["host"].split(".")[0]: r["weight"] for r in routes}
    selector = kubectl.get("service", "fraud")["spec"]["selector"]
    return {child_name("fraud", selector["mlops.io/version"]): 100}


@pytest.mark.parametrize("router", ["replicas", "gatewayAPI", "istio"])
def test_lifecycle_per_router(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path, third_party_crds: list[str], router: str
) -> None:
    register(kubectl, tmp_path, "fraud", "1.0.0")
    register(kubectl, tmp_path, "fraud", "1.1.0")
    spec: dict[str, Any] = {"type": router}
    if router == "gatewayAPI":
        spec["parentRefs"] = [{"name": "gw"}]
    v1, v2 = child_name("fraud", "1.0.0"), child_name("fraud", "1.1.0")
    routing = {"gatewayAPI": "httproutes", "istio": "virtualservices"}.get(router)

    deploy(kubectl, "fraud", version="1.0.0", replicas=1, router=spec)
    wait_serving(kubectl, "fraud", "1.0.0")
    assert routed(kubectl, router) == {v1: 100}
    assert routing is None or names(kubectl, routing) == {"fraud"}
    kubectl.wait_for(lambda: running_pods(kubectl, "1.0.0") == 1, what="a Pod of 1.0.0 Running")

    patch(kubectl, "fraud", {"replicas": 2})
    wait_serving(kubectl, "fraud", "1.0.0", ready_replicas=2)
    assert names(kubectl, "pdb") == {v1}

    patch(kubectl, "fraud", {"version": "1.1.0"})
    wait_serving(kubectl, "fraud", "1.1.0")
    kubectl.wait_for(lambda: routed(kubectl, router) == {v2: 100}, what="weights on 1.1.0")
    kubectl.wait_for(lambda: names(kubectl, "deployments") == {v2}, what="1.0.0 removed")
    kubectl.wait_for(lambda: running_pods(kubectl, "1.1.0") == 2, what="two Pods of 1.1.0 Running")

    patch(kubectl, "fraud", {"autoscaling": {"minReplicas": 1, "maxReplicas": 3}})
    kubectl.wait_for(lambda: names(kubectl, "hpa") == {v2}, what="an HPA for 1.1.0")
    kubectl.wait_for(lambda: names(kubectl, "pdb") == set(), what="no PDB at minReplicas 1")

    kubectl.run("delete", "modeldeployment", "fraud", "--wait=true")
    kubectl.wait_for(
        lambda: not names(kubectl, "deployments") and not names(kubectl, "services") and not names(kubectl, "hpa")
        and (routing is None or not names(kubectl, routing)),
        timeout=60, what="every child garbage-collected",
    )  # fmt: skip


def test_canary_weights_come_from_the_canary_rollout(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    given_serving(kubectl, tmp_path, "1.0.0", "1.1.0", version="1.0.0", replicas=10, rollout={"strategy": "canary"})
    patch(kubectl, "fraud", {"version": "1.1.0"})
    obj = wait_status(kubectl, "modeldeployment", "fraud", "canary at 0", condition_is("Ready", reason="Canary"))
    assert obj["status"]["traffic"] == "1.0.0=100 1.1.0=0"
    assert kubectl.get("service", "fraud")["spec"]["selector"]["mlops.io/version"] == "1.0.0"

    # A CanaryRollout drives the weight through its status, held at 30% by a pause; the replicas router
    # approximates 30% with 7 and 3 Pods behind the front Service.
    kubectl.apply({"apiVersion": "mlops.io/v1alpha1", "kind": "CanaryRollout", "metadata": {"name": "fraud-1-1-0"},
                   "spec": {"deploymentRef": {"name": "fraud"}, "candidate": "1.1.0",
                            "steps": [{"setWeight": 30}, {"pause": {}}]}})  # fmt: skip
    obj = wait_status(kubectl, "modeldeployment", "fraud", "70/30", traffic_is("1.0.0=70 1.1.0=30"))
    replicas = {d["metadata"]["labels"]["mlops.io/version"]: d["spec"]["replicas"]
                for d in json.loads(kubectl.run("get", "deployments", "-o", "json").stdout)["items"]}  # fmt: skip
    assert replicas == {"1.0.0": 7, "1.1.0": 3}
    assert "mlops.io/version" not in kubectl.get("service", "fraud")["spec"]["selector"]

    # Promoted by the verb: 100% to the canary, which becomes the stable version.
    kubectl.run("annotate", "canaryrollout", "fraud-1-1-0", "mlops.io/promote=1.1.0")
    wait_serving(kubectl, "fraud", "1.1.0")
    kubectl.wait_for(lambda: names(kubectl, "deployments") == {child_name("fraud", "1.1.0")}, what="old removed")
    kubectl.wait_for(lambda: kubectl.get("deployment", child_name("fraud", "1.1.0"))["spec"]["replicas"] == 10,
                     what="full size")  # fmt: skip


def test_a_canary_pinned_back_hands_its_share_back_then_drains(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    rollout = {"strategy": "canary", "drainDelay": "3s"}
    given_serving(kubectl, tmp_path, "1.0.0", "1.1.0", version="1.0.0", replicas=10, rollout=rollout)
    patch(kubectl, "fraud", {"version": "1.1.0"})
    kubectl.apply({"apiVersion": "mlops.io/v1alpha1", "kind": "CanaryRollout", "metadata": {"name": "fraud-1-1-0"},
                   "spec": {"deploymentRef": {"name": "fraud"}, "candidate": "1.1.0",
                            "steps": [{"setWeight": 30}, {"pause": {}}]}})  # fmt: skip
    wait_status(kubectl, "modeldeployment", "fraud", "70/30", traffic_is("1.0.0=70 1.1.0=30"))

    def sizes() -> dict[str, int]:
        return {d["metadata"]["labels"]["mlops.io/version"]: d["spec"]["replicas"]
                for d in json.loads(kubectl.run("get", "deployments", "-o", "json").stdout)["items"]}  # fmt: skip

    assert sizes() == {"1.0.0": 7, "1.1.0": 3}
    # Pinned back: the stable version grows to all 10 while the canary keeps its 30%, then takes everything back;
    # the canary keeps its 3 Pods (never more) while it drains, then goes.
    patch(kubectl, "fraud", {"version": "1.0.0"})
    seen: list[dict[str, int]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen.append(sizes())
        obj = kubectl.get("modeldeployment", "fraud")
        if serving("1.0.0")(obj) and "1.1.0" not in seen[-1]:
            break
        traffic = obj["status"].get("traffic")
        assert traffic in ("1.0.0=70 1.1.0=30", "1.0.0=100"), traffic
        if traffic == "1.0.0=70 1.1.0=30" and obj["metadata"]["generation"] == condition(obj, "Ready").get(
            "observedGeneration"
        ):
            assert "keeps 30% until 1.0.0 can take it back" in condition(obj, "Ready")["message"]
        time.sleep(0.2)
    else:
        raise AssertionError(f"not back on 1.0.0 alone: {seen[-3:]}")
    assert all(s.get("1.1.0", 0) <= 3 for s in seen), seen
    assert any(s.get("1.0.0") == 10 and s.get("1.1.0") == 3 for s in seen), seen
    assert sizes() == {"1.0.0": 10}


def test_a_restart_continues_a_rollout_where_it_was(kubectl: Kubectl, tmp_path: Path) -> None:
    namespace = kubectl.namespace or "default"
    op = start_operator(tmp_path, "--namespace", namespace)
    try:
        rollout = {"strategy": "blueGreen", "blueGreen": {"scaleDownDelay": "8s"}}
        given_serving(kubectl, tmp_path, "1.0.0", "1.1.0", version="1.0.0", rollout=rollout)
        patch(kubectl, "fraud", {"version": "1.1.0"})
        obj = wait_status(
            kubectl, "modeldeployment", "fraud", "switched", lambda o: o["status"].get("version") == "1.1.0"
        )
    finally:
        assert op.stop() == 0
    retiring = {v["version"]: v for v in obj["status"]["versions"]}["1.0.0"]
    assert retiring["role"] == "retiring"
    # The operator is down while the delay runs out; the one started afterwards reads the switch time from status:
    # it removes the old version at once and does not roll again.
    time.sleep(8)
    op = start_operator(tmp_path, "--namespace", namespace)
    try:
        obj = wait_serving(kubectl, "fraud", "1.1.0", timeout=15)
        kubectl.wait_for(lambda: names(kubectl, "deployments") == {child_name("fraud", "1.1.0")}, what="old removed")
        stable = obj["status"]["versions"][0]
        assert stable["version"] == "1.1.0" and stable["since"] == retiring["since"]
    finally:
        assert op.stop() == 0


QUANTITIES = ["0.5", "1024Mi", "1.5Gi", "1000", "2000m", "0.1", "512Mi", "250m", "1.5", "100M", "0.5Ki", "1536", "3"]


def test_quantities_are_applied_as_the_api_server_stores_them(kubectl: Kubectl) -> None:
    # What the builders write must read back unchanged, or every comparison would see a difference.
    from mlops_operator.builders.serving import canonical_quantity

    containers = [{"name": f"c{i}", "image": "x", "resources": {"requests": {"cpu": q, "memory": q}}}
                  for i, q in enumerate(QUANTITIES)]  # fmt: skip
    template = {"metadata": {"labels": {"app": "q"}}, "spec": {"containers": containers}}
    spec = {"replicas": 0, "selector": {"matchLabels": {"app": "q"}}, "template": template}
    kubectl.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "quantities"}, "spec": spec})
    stored = kubectl.get("deployment", "quantities")["spec"]["template"]["spec"]["containers"]
    assert [c["resources"]["requests"]["cpu"] for c in stored] == [canonical_quantity(q) for q in QUANTITIES]
    assert [c["resources"]["requests"]["memory"] for c in stored] == [canonical_quantity(q) for q in QUANTITIES]


def test_pods_lost_after_the_rollout_make_it_degraded(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    given_serving(kubectl, tmp_path, "1.0.0", version="1.0.0", replicas=2, ready_replicas=2)
    # A Pod stops being ready (as a crashing or failing container would), long after the rollout completed.
    pod = kubectl.run("get", "pods", "-l", "mlops.io/version=1.0.0", "-o", "name").stdout.split()[0]
    unready = {"status": {"conditions": [{"type": "Ready", "status": "False"},
                                         {"type": "ContainersReady", "status": "False"}]}}  # fmt: skip
    kubectl.run("patch", pod, "--subresource=status", "--type=strategic", "-p", json.dumps(unready))
    obj = wait_status(kubectl, "modeldeployment", "fraud", "Degraded", condition_is("Degraded", "True"))
    assert condition(obj, "Degraded")["reason"] == "ReplicasUnavailable"
    assert "1.0.0 1/2 ready after the rollout completed" in condition(obj, "Degraded")["message"]
    assert (condition(obj, "Ready")["status"], condition(obj, "Ready")["reason"]) == ("False", "PodsNotReady")
    assert condition(obj, "Progressing")["status"] == "False"
    # The Pod is replaced: healthy again.
    kubectl.run("delete", pod, "--wait=false")
    obj = wait_status(kubectl, "modeldeployment", "fraud", "healthy", condition_is("Degraded", "False"))
    kubectl.run("wait", "--for=condition=Ready", "--timeout=30s", "modeldeployment/fraud")


def test_a_refused_write_is_reported_in_status_and_retried(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    # A quota that allows no Deployment: the API server refuses the version's Deployment (403).
    kubectl.apply({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-deployments"},
                   "spec": {"hard": {"count/deployments.apps": "0"}}})  # fmt: skip
    register(kubectl, tmp_path, "fraud", "1.0.0")
    deploy(kubectl, "fraud", version="1.0.0", replicas=1)
    v1 = child_name("fraud", "1.0.0")

    def refused(obj: dict[str, Any]) -> bool:
        return condition(obj, "Ready").get("reason") == "ApplyFailed"

    obj = wait_status(kubectl, "modeldeployment", "fraud", "the refusal in status", refused)
    ready, degraded = condition(obj, "Ready"), condition(obj, "Degraded")
    assert ready["status"] == "False" and f"Deployment {v1}: 403" in ready["message"], ready
    assert "exceeded quota" in ready["message"] or "forbidden" in ready["message"].lower(), ready
    assert (degraded["status"], degraded["reason"]) == ("True", "ApplyFailed")
    assert ready["observedGeneration"] == obj["metadata"]["generation"]
    # What was not refused exists: the Services.
    assert names(kubectl, "services") == {"fraud", v1}

    kubectl.run("delete", "resourcequota", "no-deployments")
    wait_serving(kubectl, "fraud", "1.0.0", timeout=60)
