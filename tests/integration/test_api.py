"""The CRDs on a real API server: installed, examples accepted, `kubectl get mlops` readable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import ROOT, Kubectl


def contains(stored: Any, given: Any) -> bool:
    """Whether ``stored`` holds everything in ``given`` (dicts may have more keys, from defaults)."""
    if isinstance(given, dict):
        return isinstance(stored, dict) and all(k in stored and contains(stored[k], v) for k, v in given.items())
    if isinstance(given, list):
        return isinstance(stored, list) and len(stored) == len(given) and all(map(contains, stored, given))
    return bool(stored == given)


EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))


def test_crds_are_established_in_the_mlops_category(kubectl: Kubectl, crds: list[str]) -> None:
    assert len(crds) == 5
    for name in crds:
        crd = kubectl.get("crd", name)
        established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert established["Established"] == "True" and established["NamesAccepted"] == "True"
        assert crd["spec"]["names"]["categories"] == ["mlops"]
    resources = json.loads(kubectl.run("get", "--raw", "/apis/mlops.io/v1alpha1").stdout)["resources"]
    top = {r["name"]: r for r in resources if "/" not in r["name"]}
    assert set(top) == {"modelversions", "modeldeployments", "canaryrollouts", "driftmonitors", "alertrules"}
    assert all(r["categories"] == ["mlops"] and r["namespaced"] for r in top.values())
    assert {r["name"] for r in resources if r["name"].endswith("/status")} == {f"{n}/status" for n in top}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_is_accepted_and_kept_whole(kubectl: Kubectl, path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    kubectl.apply(doc)
    stored = kubectl.get(doc["kind"], doc["metadata"]["name"])
    # Nothing the example says is pruned or changed; defaults are only added around it.
    assert contains(stored["spec"], doc["spec"]), (stored["spec"], doc["spec"])


def test_defaults_are_applied(kubectl: Kubectl) -> None:
    kubectl.apply(
        {"apiVersion": "mlops.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "d"},
         "spec": {"model": "m", "version": "1"}}
    )  # fmt: skip
    spec = kubectl.get("modeldeployment", "d")["spec"]
    assert spec["replicas"] == 1
    assert spec["router"] == {"type": "replicas"}
    assert spec["rollout"] == {"strategy": "rolling", "drainDelay": "10s", "progressDeadline": "10m"}
    assert spec["server"]["port"] == 8080


def test_kubectl_get_mlops_prints_every_kind_with_columns(kubectl: Kubectl) -> None:
    for path in EXAMPLES:
        kubectl.apply(path.read_text())
    out = kubectl.run("get", "mlops").stdout
    headers = [line.split() for line in out.splitlines() if line.startswith("NAME")]
    assert ["NAME", "MODEL", "VERSION", "STAGE", "READY", "MESSAGE", "AGE"] in headers
    assert ["NAME", "MODEL", "VERSION", "READY", "REPLICAS", "WEIGHT", "MESSAGE", "AGE"] in headers
    assert ["NAME", "DEPLOYMENT", "CANDIDATE", "PHASE", "WEIGHT", "READY", "MESSAGE", "AGE"] in headers
    assert ["NAME", "DEPLOYMENT", "DRIFT", "SHARE", "CHECKED", "READY", "MESSAGE", "AGE"] in headers
    assert ["NAME", "STATE", "SEVERITY", "SINCE", "INSTANCES", "READY", "MESSAGE", "AGE"] in headers
    for name in (
        "modelversion.mlops.io/fraud-detector-1-0-0",
        "modeldeployment.mlops.io/fraud",
        "canaryrollout.mlops.io/fraud",
        "driftmonitor.mlops.io/fraud",
        "alertrule.mlops.io/fraud-drift",
    ):
        assert name in out, out  # fmt: skip
    for short in ("mv", "mdep", "canary", "drift", "alert"):
        assert kubectl.run("get", short, "-o", "name").stdout.strip()
