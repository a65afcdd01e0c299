"""The operator process: starts against the cluster, acts under our own prefixes, stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import yaml
from conftest import ROOT, Kubectl, OperatorProcess, start_operator


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
