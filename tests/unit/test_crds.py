"""The CRDs generated from the models: fresh, structural, and complete enough for kubectl and GitOps tools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_operator.api.common import DURATION_PATTERN, DURATION_SYNTAX
from mlops_operator.api.crds import KINDS, Kind, crd_file_name
from mlops_operator.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "manifests" / "examples"


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node with its path."""
    out = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        out += walk(sub, f"{path}.{name}")
    if "items" in node:
        out += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += walk(node["additionalProperties"], f"{path}{{}}")
    return out


def openapi_schema(kind: Kind) -> dict[str, Any]:
    """The schema of ``kind``'s only version, as generated from the models."""
    schema: dict[str, Any] = kind.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_checked_in_crds_match_the_models() -> None:
    assert main(["crds", "--output", str(ROOT / "crds"), "--check"]) == 0, "crds/ is stale: run `make crds`"


def test_stale_crds_are_detected(tmp_path: Path) -> None:
    assert main(["crds", "--output", str(tmp_path)]) == 0
    assert main(["crds", "--output", str(tmp_path), "--check"]) == 0
    victim = tmp_path / crd_file_name(KINDS[0])
    victim.write_text(victim.read_text().replace("maxLength: 63", "maxLength: 64", 1))
    assert main(["crds", "--output", str(tmp_path), "--check"]) == 1


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_crd_shape(kind: Kind) -> None:
    crd = yaml.safe_load((ROOT / "crds" / crd_file_name(kind)).read_text())
    names = crd["spec"]["names"]
    assert names["categories"] == ["mlops"]
    assert names["shortNames"]
    (version,) = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Message"] == '.status.conditions[?(@.type=="Ready")].message'
    assert "Age" in columns


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_schema_is_structural_and_documented(kind: Kind) -> None:
    schema = openapi_schema(kind)
    for path, node in walk(schema):
        typed = (
            "type" in node or node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        )
        assert typed, f"{kind.kind}{path} has no type"
        assert not {"$ref", "anyOf", "allOf", "oneOf", "title"} & node.keys(), f"{kind.kind}{path}: {node.keys()}"
        if path.startswith((".spec", ".status")) and path.count(".") >= 2 and not path.endswith(("[]", "}")):
            assert node.get("description"), f"{kind.kind}{path} has no description"
    status = schema["properties"]["status"]["properties"]
    assert status["conditions"]["x-kubernetes-list-type"] == "map"
    assert "observedGeneration" in status


def test_cel_rules_the_platform_promises() -> None:
    rules = {
        k.kind: [r["rule"] for _, node in walk(openapi_schema(k))
                 for r in node.get("x-kubernetes-validations", [])]
        for k in KINDS
    }  # fmt: skip
    assert rules["ModelVersion"].count("self == oldSelf") == 3  # model, version, source
    assert any("oldSelf.lineage" in r for r in rules["ModelVersion"])
    assert any("isSorted()" in r for r in rules["CanaryRollout"])
    assert any("has(self.expr)" in r and "has(self.condition)" in r for r in rules["AlertRule"])


def test_duration_fields_keep_their_own_description() -> None:
    nodes = {f"{k.kind}{path}": node for k in KINDS for path, node in walk(openapi_schema(k))}
    generic = [path for path, node in nodes.items() if node.get("description") == DURATION_SYNTAX]
    assert not generic, f"the Duration type's description replaced the field's own: {generic}"
    durations = {path: node["description"] for path, node in nodes.items() if node.get("pattern") == DURATION_PATTERN}
    assert len(durations) >= 18 and all(text.endswith(DURATION_SYNTAX) for text in durations.values()), durations
    assert durations["AlertRule.spec.for"] == (
        f"How long an instance must hold before pending becomes firing. {DURATION_SYNTAX}"
    )
    assert durations["ModelDeployment.spec.rollout.drainDelay"].startswith(
        "rolling and canary: how long a version that lost its traffic keeps running"
    )


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_example_parses_in_the_typed_model(kind: Kind) -> None:
    doc = yaml.safe_load((EXAMPLES / f"{kind.singular}.yaml").read_text())
    assert doc["kind"] == kind.kind and doc["apiVersion"] == "mlops.io/v1alpha1"
    spec = kind.spec.model_validate(doc["spec"])
    # What the model writes back is what it read: nothing is renamed or lost on the way.
    wire = spec.model_dump(by_alias=True, exclude_unset=True, mode="json")
    assert wire == doc["spec"]
