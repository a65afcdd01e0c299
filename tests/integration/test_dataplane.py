"""The real data plane of the local cluster: each model-server Pod is a running server process on its Pod's IP.

The Pod runner (tests/dataplane/runner.py, started with the cluster) runs each Pod of our Deployments as an
``mlops-server`` process; these tests talk to those processes directly, and through the routes the operator wrote.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import shutil
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from support import (
    CONTAINER,
    PROCESS,
    Body,
    Kubectl,
    Monitoring,
    OperatorProcess,
    _model_bytes,
    condition,
    deploy,
    events,
    model_artifact,
    patch,
    prometheus_data,
    register,
    wait_serving,
    wait_status,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.dataplane import traffic

PORT = 8080
ROWS = np.array([[0.5, -1.0, 2.0, 0.1], [-2.0, 0.3, 0.0, 1.5], [1.0, 1.0, -1.0, -0.5]], dtype=np.float32)


def server_pods(kubectl: Kubectl, version: str) -> list[Body]:
    """The Pods of ``version`` that are not being deleted."""
    items = json.loads(kubectl.run("get", "pods", "-l", f"mlops.io/version={version}", "-o", "json").stdout)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def is_ready(pod: Body) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def infer(ip: str, model: str = "fraud", rows: np.ndarray = ROWS, timeout: float = 5) -> Body:
    """One Open Inference Protocol request to a server process."""
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(rows.shape), "data": rows.ravel().tolist()}]}
    request = urllib.request.Request(
        f"http://{ip}:{PORT}/v2/models/{model}/infer", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def answers(ip: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{ip}:{PORT}/v2/health/live", timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


def grpc_endpoints(kubectl: Kubectl, version: str) -> list[traffic.Endpoint]:
    """The ready endpoints of the version Service's grpc port, as kube-proxy reads its EndpointSlices."""
    from mlops_operator.builders.serving import child_name

    name = child_name("fraud", version)
    service = json.loads(kubectl.run("get", "service", name, "-o", "json").stdout)
    slices = json.loads(
        kubectl.run("get", "endpointslices", "-l", f"kubernetes.io/service-name={name}", "-o", "json").stdout
    )["items"]
    return [e for e in traffic.slice_endpoints(service, slices, "grpc") if e.ready]


def grpc_predictions(address: str) -> tuple[list[Any], int]:
    """The predict output of ROWS over the gRPC endpoint at ``address``, and its health service's readiness."""
    import grpc  # type: ignore[import-untyped]
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

    from mlops_operator.server.oip import inference_pb2 as pb
    from mlops_operator.server.oip import inference_pb2_grpc as pb_grpc

    request = pb.ModelInferRequest(model_name="fraud", outputs=[{"name": "predict"}])
    request.inputs.add(name="x", datatype="FP32", shape=ROWS.shape).contents.fp32_contents.extend(ROWS.ravel().tolist())
    with grpc.insecure_channel(address) as channel:
        answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
        check = health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService")
        status = health_pb2_grpc.HealthStub(channel).Check(check, timeout=10).status
    assert (answer.model_name, answer.model_version) == ("fraud", "1.0.0")
    return list(answer.outputs[0].contents.int64_contents), status


def predictions(artifact_name: str) -> list[Any]:
    model = joblib.load(io.BytesIO(_model_bytes(artifact_name)))
    return model.predict(ROWS).tolist()  # type: ignore[no-any-return]


def test_each_pod_is_a_server_process_on_its_own_ip(kubectl: Kubectl, operator: OperatorProcess,
                                                    tmp_path: Path) -> None:  # fmt: skip
    register(kubectl, tmp_path, "fraud", "1.0.0")
    deploy(kubectl, "fraud", version="1.0.0", replicas=2)
    wait_serving(kubectl, "fraud", "1.0.0", ready_replicas=2, timeout=60)
    pods = server_pods(kubectl, "1.0.0")
    ips = {p["status"]["podIP"] for p in pods}
    assert len(pods) == 2 and len(ips) == 2 and all(is_ready(p) for p in pods)
    # Addresses of the nodes' Pod range, which the cluster makes local to this machine.
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("10.244.0.0/16") for ip in ips)
    expected = predictions("fraud-1.0.0.joblib")
    for ip in ips:
        answer = infer(ip)
        assert (answer["model_name"], answer["model_version"]) == ("fraud", "1.0.0")
        predicted = next(o for o in answer["outputs"] if o["name"] == "predict")
        assert predicted["data"] == expected, ip
    # The gRPC endpoint of each Pod, found as a client in the cluster finds it: the version Service's grpc port.
    endpoints = grpc_endpoints(kubectl, "1.0.0")
    assert {(e.address, e.port) for e in endpoints} == {(ip, 8081) for ip in ips}
    for endpoint in endpoints:
        assert grpc_predictions(f"{endpoint.address}:{endpoint.port}") == (expected, 1)  # 1: SERVING
    # A deleted Pod's process stops (after its preStop pause and SIGTERM); the ReplicaSet's new Pod gets a process
    # of its own on a new IP.
    victim = pods[0]
    kubectl.run("delete", "pod", victim["metadata"]["name"], "--wait=false")
    old_ip = victim["status"]["podIP"]
    kubectl.wait_for(lambda: not answers(old_ip), timeout=40, what=f"the deleted Pod's server at {old_ip} stops")
    kubectl.wait_for(
        lambda: len([p for p in server_pods(kubectl, "1.0.0") if is_ready(p)]) == 2
        and len({p["status"]["podIP"] for p in server_pods(kubectl, "1.0.0")} - ips) == 1,
        timeout=60, what="a new ready Pod on a new IP",
    )  # fmt: skip
    new_ip = ({p["status"]["podIP"] for p in server_pods(kubectl, "1.0.0")} - ips).pop()
    assert infer(new_ip)["model_version"] == "1.0.0"


@pytest.mark.parametrize("data_plane", [CONTAINER], indirect=True)
def test_a_pod_whose_image_the_engine_lacks_waits_and_says_why(kubectl: Kubectl, operator: OperatorProcess,
                                                              tmp_path: Path) -> None:  # fmt: skip
    register(kubectl, tmp_path, "fraud", "1.0.0")
    deploy(kubectl, "fraud", version="1.0.0", replicas=1, server={"image": "localhost/mlops-absent:0"})

    def waiting() -> str | None:
        pods = server_pods(kubectl, "1.0.0")
        statuses = pods[0].get("status", {}).get("containerStatuses") if pods else None
        return ((statuses or [{}])[0].get("state") or {}).get("waiting", {}).get("reason") if statuses else None

    kubectl.wait_for(lambda: waiting() == "ErrImageNeverPull", timeout=60, what="the Pod waiting, ErrImageNeverPull")
    (pod,) = server_pods(kubectl, "1.0.0")
    assert not is_ready(pod)
    (event,) = events(kubectl, pod["metadata"]["name"], "ErrImageNeverPull")
    assert "localhost/mlops-absent:0" in event["message"] and "make image" in event["message"], event


def test_a_server_whose_artifact_fails_its_checksum_is_never_ready(kubectl: Kubectl, operator: OperatorProcess,
                                                                   tmp_path: Path) -> None:  # fmt: skip
    register(kubectl, tmp_path, "fraud", "1.0.0")
    register(kubectl, tmp_path, "fraud", "1.1.0")
    deploy(kubectl, "fraud", version="1.0.0", replicas=1)
    wait_serving(kubectl, "fraud", "1.0.0", ready_replicas=1, timeout=60)
    # 1.1.0's artifact is replaced after the registry verified it: its servers refuse to load it.
    other, _ = model_artifact(tmp_path, "tampered.joblib")
    shutil.copyfile(other.removeprefix("file://"), tmp_path / "fraud-1.1.0.joblib")
    patch(kubectl, "fraud", {"version": "1.1.0"})
    kubectl.wait_for(lambda: any(p["status"].get("phase") == "Running" for p in server_pods(kubectl, "1.1.0")),
                     timeout=60, what="a running Pod of 1.1.0")  # fmt: skip
    new_ip = server_pods(kubectl, "1.1.0")[0]["status"]["podIP"]
    kubectl.wait_for(lambda: answers(new_ip), timeout=30, what="1.1.0's server process is live")

    def refusal(path: str) -> str:
        try:
            urllib.request.urlopen(f"http://{new_ip}:{PORT}{path}", timeout=2)
        except urllib.error.HTTPError as exc:
            assert exc.code == 503, exc.code
            return exc.read().decode()
        raise AssertionError(f"1.1.0's server answered {path}")

    # The model's own answer says why, once its load has ended; readiness says no all along.
    kubectl.wait_for(lambda: "failed to load" in refusal("/v2/models/fraud"), timeout=30, what="1.1.0's load fails")
    assert "the model failed to load: the artifact has sha256:" in refusal("/v2/models/fraud")
    assert refusal("/v2/health/ready") == '{"ready":false}'

    # For as long as we look: the Pod is not Ready, the front Service's endpoints are 1.0.0's alone, and the
    # answers come from 1.0.0.
    old_ips = {p["status"]["podIP"] for p in server_pods(kubectl, "1.0.0")}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert not any(is_ready(p) for p in server_pods(kubectl, "1.1.0"))
        assert front_endpoints(kubectl, "fraud") == old_ips
        time.sleep(1)
    assert {infer(ip)["model_version"] for ip in front_endpoints(kubectl, "fraud")} == {"1.0.0"}
    status = kubectl.get("modeldeployment", "fraud")["status"]
    assert status["traffic"] == "1.0.0=100", status


def front_endpoints(kubectl: Kubectl, service: str) -> set[str]:
    """The ready addresses of a Service's EndpointSlices."""
    slices = json.loads(kubectl.run("get", "endpointslices", "-l", f"kubernetes.io/service-name={service}",
                                    "-o", "json").stdout)["items"]  # fmt: skip
    return {a for s in slices for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")
            for a in e["addresses"]}  # fmt: skip


# --- traffic through the routes the operator wrote -----------------------------------------------------------------

REQUEST = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0.5, -1.0, 2.0, 0.1]}]}
GATEWAY = {"type": "gatewayAPI", "parentRefs": [{"name": "gw"}]}
# Requests per measured split, and the tolerance: at 2,000 requests one standard deviation of a 10% share is 0.7
# points, of a 30% share 1 point; the tolerance is more than three of them.
REQUESTS = 2000
TOLERANCE = 0.035


def drive(kubectl: Kubectl, entry: str, rate: float = 400, count: int | None = REQUESTS,
          duration: float | None = None) -> traffic.Report:  # fmt: skip
    """Real inference requests routed as the data plane would route ``entry``, from the test's namespace."""
    return asyncio.run(traffic.drive(kubectl.namespace or "", entry, REQUEST, "fraud", rate, duration=duration,
                                     count=count, concurrency=32))  # fmt: skip


def given_a_canary(kubectl: Kubectl, tmp_path: Path, weight: int, replicas: int, **spec: Any) -> None:
    """1.0.0 stable and 1.1.0 its canary at ``weight`` percent, held there by a CanaryRollout's pause, the routes
    written and every Pod of both versions ready."""
    register(kubectl, tmp_path, "fraud", "1.0.0")
    register(kubectl, tmp_path, "fraud", "1.1.0")
    deploy(kubectl, "fraud", version="1.0.0", replicas=replicas, rollout={"strategy": "canary"}, **spec)
    wait_serving(kubectl, "fraud", "1.0.0", ready_replicas=replicas, timeout=90)
    patch(kubectl, "fraud", {"version": "1.1.0"})
    steps = [{"setWeight": weight}, {"pause": {}}]
    kubectl.apply({"apiVersion": "mlops.io/v1alpha1", "kind": "CanaryRollout", "metadata": {"name": "fraud-1-1-0"},
                   "spec": {"deploymentRef": {"name": "fraud"}, "candidate": "1.1.0", "steps": steps}})  # fmt: skip
    split = f"1.0.0={100 - weight} 1.1.0={weight}"
    wait_status(kubectl, "modeldeployment", "fraud", f"traffic {split}, every replica ready",
                lambda o: o.get("status", {}).get("traffic") == split
                and o["status"].get("observedGeneration") == o["metadata"]["generation"]
                and all(v.get("readyReplicas") == v.get("replicas") for v in o["status"].get("versions", [])),
                timeout=90)  # fmt: skip


def assert_split(report: traffic.Report, expected: dict[str, float]) -> None:
    assert report.failed == 0 and report.ok == report.total == REQUESTS, report.summary()
    measured = report.split()
    print(f"measured {measured} over {report.total} requests, expected {expected}")
    assert set(measured) == set(expected), measured
    for version, share in expected.items():
        assert abs(measured[version] - share) <= TOLERANCE, (version, measured, expected)


def test_the_replicas_router_splits_by_pods_behind_the_front_service(kubectl: Kubectl, operator: OperatorProcess,
                                                                     tmp_path: Path) -> None:  # fmt: skip
    # 90/10 over 10 replicas: 9 Pods of 1.0.0 and 1 of 1.1.0 behind the front Service, chosen at random per
    # connection as kube-proxy does.
    given_a_canary(kubectl, tmp_path, 10, replicas=10)
    assert len(front_endpoints(kubectl, "fraud")) == 10
    assert_split(drive(kubectl, "service/fraud"), {"1.0.0": 0.9, "1.1.0": 0.1})


@pytest.mark.parametrize("router", ["gatewayAPI", "istio"])
def test_route_weights_split_the_traffic(kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path,
                                         third_party_crds: list[str], router: str) -> None:  # fmt: skip
    given_a_canary(kubectl, tmp_path, 30, replicas=2, router=GATEWAY if router == "gatewayAPI" else {"type": router})
    entry = "httproute/fraud" if router == "gatewayAPI" else "virtualservice/fraud"
    assert_split(drive(kubectl, entry), {"1.0.0": 0.7, "1.1.0": 0.3})


def test_a_shadow_receives_its_mirror_percentage(kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path,
                                                 third_party_crds: list[str]) -> None:  # fmt: skip
    register(kubectl, tmp_path, "fraud", "1.0.0")
    register(kubectl, tmp_path, "fraud", "1.1.0")
    deploy(kubectl, "fraud", version="1.0.0", replicas=1, router=GATEWAY, shadow={"version": "1.1.0", "percent": 25})
    wait_status(kubectl, "modeldeployment", "fraud", "1.1.0 mirrored, every replica ready",
                lambda o: {v["version"]: v["role"] for v in o.get("status", {}).get("versions", [])}
                == {"1.0.0": "stable", "1.1.0": "shadow"} and condition(o, "Ready").get("status") == "True"
                and all(v.get("readyReplicas") == v.get("replicas") for v in o["status"]["versions"]),
                timeout=90)  # fmt: skip
    report = drive(kubectl, "httproute/fraud")
    # Every answer comes from the stable version; the shadow got a copy of about a quarter of the requests.
    assert_split(report, {"1.0.0": 1.0})
    mirrored = sum(report.mirrored_by_version.values())
    print(f"mirrored {mirrored} of {REQUESTS} requests to the shadow, expected 25%")
    assert set(report.mirrored_by_version) == {"1.1.0"}, report.summary()
    assert abs(mirrored / REQUESTS - 0.25) <= TOLERANCE, report.summary()


# Once more with each Pod a container of the image (the model server as it ships).
@pytest.mark.parametrize("data_plane", [PROCESS, CONTAINER], indirect=True)
def test_a_rolling_update_under_load_loses_no_request(kubectl: Kubectl, operator: OperatorProcess,
                                                      tmp_path: Path) -> None:  # fmt: skip
    register(kubectl, tmp_path, "fraud", "1.0.0")
    register(kubectl, tmp_path, "fraud", "1.1.0")
    deploy(kubectl, "fraud", version="1.0.0", replicas=2, rollout={"drainDelay": "2s"})
    wait_serving(kubectl, "fraud", "1.0.0", ready_replicas=2, timeout=60)
    reports: list[traffic.Report] = []
    load = threading.Thread(target=lambda: reports.append(drive(kubectl, "service/fraud", rate=50, count=None,
                                                                duration=40)))  # fmt: skip
    load.start()
    time.sleep(3)
    patch(kubectl, "fraud", {"version": "1.1.0"})
    wait_serving(kubectl, "fraud", "1.1.0", ready_replicas=2, timeout=40)
    # The old version's Deployment goes after its drain delay; its Pods stop after preStop and SIGTERM.
    kubectl.wait_for(lambda: not server_pods(kubectl, "1.0.0"), timeout=35, what="every Pod of 1.0.0 gone")
    gone_at = time.monotonic()
    load.join()
    report = reports[0]
    assert report.elapsed > time.monotonic() - gone_at, "the load ended before 1.0.0's Pods were gone"
    assert report.total >= 1800 and report.failed == 0, report.summary()
    assert set(report.by_code) == {200} and set(report.by_version) == {"1.0.0", "1.1.0"}, report.summary()


def test_prometheus_scrapes_both_versions_of_a_canary(kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path,
                                                      monitoring: Monitoring) -> None:  # fmt: skip
    given_a_canary(kubectl, tmp_path, 30, replicas=2)
    report = drive(kubectl, "service/fraud", count=600)
    assert report.failed == 0, report.summary()
    query = f'sum by (version) (mlops_server_requests_total{{namespace="{kubectl.namespace}", model="fraud"}})'
    answered = dict(report.by_version)

    def scraped() -> dict[str, float]:
        return {
            r["metric"]["version"]: float(r["value"][1])
            for r in prometheus_data(monitoring, "/api/v1/query", query=query)["result"]
        }

    kubectl.wait_for(lambda: scraped() == {v: float(n) for v, n in answered.items()}, timeout=30,
                     what=f"Prometheus counts {answered} by version")  # fmt: skip
    up = f'up{{namespace="{kubectl.namespace}", job="model-servers"}}'
    targets = prometheus_data(monitoring, "/api/v1/query", query=up)["result"]
    assert {t["metric"]["version"] for t in targets if t["value"][1] == "1"} == {"1.0.0", "1.1.0"}
    assert {t["metric"]["deployment"] for t in targets} == {"fraud"}
