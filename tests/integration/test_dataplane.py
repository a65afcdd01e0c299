"""The real data plane of the local cluster: each model-server Pod is a running server process on its Pod's IP.

The Pod runner (tests/dataplane/runner.py, started with the cluster) runs each Pod of our Deployments as an
``mlops-server`` process; these tests talk to those processes directly, and through the routes the operator wrote.
"""

from __future__ import annotations

import io
import ipaddress
import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from support import (
    Body,
    Kubectl,
    OperatorProcess,
    _model_bytes,
    deploy,
    model_artifact,
    patch,
    register,
    wait_serving,
)

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
    for path in ("/v2/health/ready", "/v2/models/fraud"):
        try:
            urllib.request.urlopen(f"http://{new_ip}:{PORT}{path}", timeout=2)
            raise AssertionError(f"1.1.0's server answered {path}")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            detail = exc.read().decode()
    # The model's own answer says why.
    assert "the model failed to load: the artifact has sha256:" in detail, detail
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
