"""The operator process: starts against the cluster, acts under our own prefixes, stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import time
import urllib.request
from pathlib import Path

import yaml
from conftest import ROOT, Kubectl, OperatorProcess, start_operator

from mlops_operator import __version__


def ready(obj: dict) -> dict | None:  # type: ignore[type-arg]
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"), None)


def test_operator_observes_every_kind_and_stops_on_sigterm(kubectl: Kubectl, operator: OperatorProcess) -> None:
    assert operator.alive()
    docs = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "manifests" / "examples").glob("*.yaml"))]
    for doc in docs:
        kubectl.apply(doc)
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        obj = kubectl.wait_for(
            lambda kind=kind, name=name: (
                (o := kubectl.get(kind, name)).get("status", {}).get("observedGeneration") and o
            ),
            what=f"{kind} {name} observed",
        )
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        cond = ready(obj)
        assert cond and cond["observedGeneration"] == obj["metadata"]["generation"]
        if kind not in ("ModelVersion", "ModelDeployment"):  # the others have no controller yet
            assert cond["reason"] == "Accepted", cond
        annotations = obj["metadata"].get("annotations", {})
        if kind == "ModelDeployment":
            # Its controller works from watch events: kopf keeps no bookkeeping annotations on it.
            assert not any(k.startswith("mlops.io/") for k in annotations), annotations
        else:
            assert any(k.startswith("mlops.io/") for k in annotations), annotations
        assert not any("kopf.zalando.org" in k for k in annotations), annotations

    # A change of spec is observed again: observedGeneration follows the generation.
    kubectl.run(
        "patch", "modelversion", "fraud-detector-1-0-0", "--type=merge", "-p", '{"spec":{"stage":"production"}}'
    )
    kubectl.wait_for(
        lambda: (
            (o := kubectl.get("modelversion", "fraud-detector-1-0-0"))["status"]["observedGeneration"]
            == o["metadata"]["generation"]
            == 2
        ),
        what="generation 2 observed",
    )

    started = time.monotonic()
    assert operator.stop(signal.SIGTERM, timeout=30) == 0, operator.log()
    assert time.monotonic() - started < 30
    assert not operator.alive()
    assert "Traceback" not in operator.log(), operator.log()


def test_restart_resumes_without_rewriting(kubectl: Kubectl, tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "manifests" / "examples" / "driftmonitor.yaml").read_text())
    kubectl.apply(doc)
    first = start_operator(tmp_path, "--namespace", kubectl.namespace or "default")
    obj = kubectl.wait_for(
        lambda: (o := kubectl.get("driftmonitor", "fraud")).get("status", {}).get("conditions") and o
    )
    transition = ready(obj)["lastTransitionTime"]  # type: ignore[index]
    assert first.stop() == 0
    second = start_operator(tmp_path, "--namespace", kubectl.namespace or "default")
    try:
        time.sleep(3)
        again = kubectl.get("driftmonitor", "fraud")
        assert ready(again)["lastTransitionTime"] == transition  # type: ignore[index]
        assert again["status"]["observedGeneration"] == obj["status"]["observedGeneration"]
    finally:
        assert second.stop() == 0, second.log()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of a /metrics page: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_operator_metrics_count_reconciles_requests_and_ready_objects(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    from test_modeldeployment import deploy, register, serving

    register(kubectl, tmp_path, "fraud", "1.0.0")
    deploy(kubectl, "fraud", version="1.0.0", replicas=1)
    kubectl.wait_for(lambda: serving("1.0.0")(kubectl.get("modeldeployment", "fraud")), what="fraud serving")

    def sample(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def settled() -> bool:
        nonlocal samples
        samples = scrape(operator.metrics)
        return sample("mlops_operator_objects", kind="ModelDeployment", ready="True") == 1

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    kubectl.wait_for(settled, what="the deployment counted as Ready")
    assert sample("mlops_operator_objects", kind="ModelDeployment", ready="False") == 0
    assert sample("mlops_operator_objects", kind="ModelVersion", ready="True") == 1
    assert sample("mlops_operator_reconciles_total", kind="ModelDeployment", result="changed") >= 1
    assert sample("mlops_operator_reconciles_total", kind="ModelVersion", result="changed") >= 1
    assert sample("mlops_operator_reconcile_duration_seconds_count", kind="ModelDeployment") >= 1
    assert sample("mlops_operator_queue_wait_seconds_count", kind="ModelDeployment") >= 1
    # Every apply the operator made shows, by verb and outcome, with its latency.
    applies = sample("mlops_operator_api_requests_total", verb="apply", code="ok")
    assert applies >= 3, samples  # at least the Deployment and the two Services
    assert sample("mlops_operator_api_request_duration_seconds_count", verb="apply") >= applies
    assert sample("mlops_operator_build_info", version=__version__) == 1
    assert sample("mlops_operator_queue_depth", kind="ModelDeployment") >= 0
    assert not any(n.endswith("_created") for n, _ in samples)
