"""Invalid resources are rejected by the API server with a message that names the field and the reason."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from support import ROOT, Kubectl


def example(kind: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "manifests" / "examples" / f"{kind.lower()}.yaml").read_text())  # type: ignore[no-any-return]


def mutate(kind: str, change: dict[str, Any], remove: tuple[str, ...] = ()) -> dict[str, Any]:
    doc = example(kind)
    doc["metadata"]["name"] = "invalid"
    spec = doc["spec"]
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        node = spec
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    for dotted in remove:
        *parents, last = dotted.split(".")
        node = spec
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        del node[last]
    return doc


# (id, kind, change, removed fields, substrings the API server's message must hold)
CASES: list[tuple[str, str, dict[str, Any], tuple[str, ...], tuple[str, ...]]] = [
    # ModelVersion: required fields, formats, gates.
    ("mv-no-model", "ModelVersion", {}, ("model",), ("spec.model", "Required value")),
    ("mv-no-version", "ModelVersion", {}, ("version",), ("spec.version", "Required value")),
    ("mv-no-source", "ModelVersion", {}, ("source",), ("spec.source", "Required value")),
    ("mv-no-format", "ModelVersion", {}, ("format",), ("spec.format", "Required value")),
    ("mv-bad-format", "ModelVersion", {"format": "pickle"}, (), ("spec.format", "Unsupported value")),
    ("mv-bad-stage", "ModelVersion", {"stage": "prod"}, (), ("spec.stage", "Unsupported value")),
    ("mv-bad-source", "ModelVersion", {"source": "ftp://x/y"}, (), ("spec.source", "should match")),
    ("mv-bad-checksum", "ModelVersion", {"checksum": "md5:abc"}, (), ("spec.checksum", "should match")),
    ("mv-bad-model-name", "ModelVersion", {"model": "Fraud_Detector"}, (), ("spec.model", "should match")),
    ("mv-no-signature-inputs", "ModelVersion", {"signature": {"inputs": []}}, (),
     ("spec.signature.inputs", "should have at least 1 items")),
    ("mv-bad-datatype", "ModelVersion", {"signature.inputs.0.datatype": "FLOAT"}, (),
     ("spec.signature.inputs[0].datatype", "Unsupported value")),
    ("mv-duplicate-metric", "ModelVersion", {"metrics": [{"name": "auc", "value": 1}, {"name": "auc", "value": 2}]},
     (), (".spec.metrics", 'duplicate entries for key [name="auc"]')),
    ("mv-gate-empty", "ModelVersion", {"gates": [{"metric": "auc"}]}, (),
     ("spec.gates[0]", "a gate needs at least one of min, max, notWorseThan")),
    ("mv-gate-min-max", "ModelVersion", {"gates": [{"metric": "auc", "min": 0.9, "max": 0.5}]}, (),
     ("spec.gates[0]", "min must not exceed max")),
    ("mv-gate-tolerance", "ModelVersion", {"gates": [{"metric": "auc", "min": 0.9, "tolerance": 0.1}]}, (),
     ("spec.gates[0].tolerance", "tolerance applies only with notWorseThan")),
    # ModelDeployment.
    ("mdep-no-model", "ModelDeployment", {}, ("model",), ("spec.model", "Required value")),
    ("mdep-grpc-port-is-port", "ModelDeployment", {"server": {"port": 9000, "grpcPort": 9000}}, (),
     ("spec.server.grpcPort", "grpcPort must differ from port")),
    ("mdep-grpc-port-is-default-port", "ModelDeployment", {"server": {"grpcPort": 8080}}, (),
     ("spec.server.grpcPort", "grpcPort must differ from port")),
    ("mdep-grpc-port-range", "ModelDeployment", {"server": {"grpcPort": 70000}}, (),
     ("spec.server.grpcPort", "should be less than or equal to 65535")),
    ("mdep-version-and-follow", "ModelDeployment", {"version": "1.0.0"}, (),
     ("spec", "exactly one of version, follow must be set")),
    ("mdep-neither", "ModelDeployment", {}, ("follow",), ("spec", "exactly one of version, follow must be set")),
    ("mdep-autoscaling", "ModelDeployment", {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, (),
     ("spec.autoscaling.minReplicas", "minReplicas must not exceed maxReplicas")),
    ("mdep-no-max-replicas", "ModelDeployment", {"autoscaling": {"minReplicas": 2}}, (),
     ("spec.autoscaling.maxReplicas", "Required value")),
    ("mdep-gateway-no-parents", "ModelDeployment", {"router": {"type": "gatewayAPI"}}, (),
     ("spec.router.parentRefs", "router.parentRefs is required when router.type is gatewayAPI")),
    ("mdep-shadow-self", "ModelDeployment", {"version": "1.0.0", "shadow": {"version": "1.0.0"}}, ("follow",),
     ("spec.shadow.version", "shadow.version must differ from version")),
    ("mdep-shadow-no-mesh", "ModelDeployment", {"version": "1.0.0", "shadow": {"version": "2.0.0"}}, ("follow",),
     ("spec.shadow", "shadow needs router.type gatewayAPI or istio")),
    ("mdep-bad-quantity", "ModelDeployment", {"resources": {"requests": {"cpu": "lots"}}}, (),
     ("spec.resources.requests.cpu", "should match")),
    ("mdep-bad-router", "ModelDeployment", {"router": {"type": "nginx"}}, (),
     ("spec.router.type", "Unsupported value")),
    # CanaryRollout.
    ("canary-no-deployment", "CanaryRollout", {}, ("deploymentRef",), ("spec.deploymentRef", "Required value")),
    ("canary-deployment-as-string", "CanaryRollout", {"deploymentRef": "fraud"}, (),
     (".spec.deploymentRef", "expected map")),
    ("canary-weight-over-100", "CanaryRollout", {"steps.0.setWeight": 120}, (),
     ("spec.steps[0].setWeight", "less than or equal to 100")),
    ("canary-weight-negative", "CanaryRollout", {"steps.0.setWeight": -5}, (),
     ("spec.steps[0].setWeight", "greater than or equal to 0")),
    ("canary-weight-decreasing", "CanaryRollout", {"steps.4.setWeight": 3}, (),
     ("spec.steps", "steps[].setWeight must never decrease along the steps")),
    ("canary-step-two-actions", "CanaryRollout", {"steps.0": {"setWeight": 5, "pause": {}}}, (),
     ("spec.steps[0]", "exactly one of setWeight, pause, analysis must be set")),
    ("canary-steps-and-ramp", "CanaryRollout", {"ramp": {"stepWeights": [5, 25]}}, (),
     ("spec", "exactly one of steps, ramp must be set")),
    ("canary-ramp-over-max", "CanaryRollout", {"ramp": {"stepWeight": 60, "maxWeight": 50}}, ("steps",),
     ("spec.ramp.stepWeight", "stepWeight must not exceed maxWeight")),
    ("canary-ramp-decreasing", "CanaryRollout", {"ramp": {"stepWeights": [50, 10]}}, ("steps",),
     ("spec.ramp.stepWeights", "stepWeights must never decrease")),
    ("canary-analysis-missing", "CanaryRollout", {}, ("analysis",),
     ("spec.analysis", "spec.analysis is required when a step runs an analysis")),
    ("canary-step-unknown-metric", "CanaryRollout", {"steps.1.analysis": {"metrics": ["nope"]}}, (),
     ("spec.steps", "steps[].analysis.metrics must name metrics of spec.analysis.metrics")),
    ("canary-count-and-duration", "CanaryRollout", {"steps.1.analysis": {"count": 2, "duration": "1m"}}, (),
     ("spec.steps[1].analysis", "set count or duration, not both")),
    ("canary-interval-too-short", "CanaryRollout", {"analysis.interval": "5s"}, (),
     ("spec.analysis.interval", "interval must be at least 10s")),
    ("canary-metric-builtin-and-query", "CanaryRollout", {"analysis.metrics.0.query": "up"}, (),
     ("spec.analysis.metrics[0]", "exactly one of builtin, query must be set")),
    ("canary-metric-no-threshold", "CanaryRollout", {}, ("analysis.metrics.0.max",),
     ("spec.analysis.metrics[0]", "a metric needs at least one of min, max, compare")),
    ("canary-shift-compared", "CanaryRollout", {"analysis.metrics.3.compare": {}}, (),
     ("spec.analysis.metrics[3].compare", "predictionShift already compares the two versions")),
    ("canary-critical-below-allowed", "CanaryRollout", {"analysis.metrics.2.compare.criticalIncrease": 1.1}, (),
     ("spec.analysis.metrics[2].compare.criticalIncrease", "criticalIncrease must not be below allowedIncrease")),
    ("canary-bad-duration", "CanaryRollout", {"steps.5.pause.duration": "2 minutes"}, (),
     ("spec.steps[5].pause.duration", "should match")),
    ("canary-two-providers", "CanaryRollout",
     {"analysis.provider": {"direct": {}, "prometheus": {"address": "http://prometheus:9090"}}}, (),
     ("spec.analysis.provider", "exactly one of prometheus, direct must be set")),
    ("canary-header-value-and-secret", "CanaryRollout",
     {"analysis.provider": {"prometheus": {"address": "http://prometheus:9090", "headers": [
         {"name": "X-Scope-OrgID", "value": "team", "valueFrom": {"name": "tenant", "key": "id"}}]}}}, (),
     ("spec.analysis.provider.prometheus.headers[0]", "exactly one of value, valueFrom must be set")),
    ("canary-bad-noData", "CanaryRollout", {"analysis.noData": "ignore"}, (),
     ("spec.analysis.noData", "Unsupported value")),
    # DriftMonitor.
    ("drift-no-deployment", "DriftMonitor", {}, ("deploymentRef",),
     ("spec", "exactly one of deploymentRef, dataset must be set")),
    ("drift-deployment-and-dataset", "DriftMonitor", {"dataset": {"uri": "s3://logs/scores.parquet"}}, (),
     ("spec", "exactly one of deploymentRef, dataset must be set")),
    ("drift-deployment-as-string", "DriftMonitor", {"deploymentRef": "fraud"}, (),
     (".spec.deploymentRef", "expected map")),
    ("drift-interval-under-10s", "DriftMonitor", {"interval": "5s"}, (),
     ("spec.interval", "interval must be at least 10s")),
    ("drift-dataset-without-reference", "DriftMonitor", {"dataset": {"uri": "s3://logs/scores.parquet"}},
     ("deploymentRef",), ("spec.reference", "a dataset monitor needs reference.modelVersion")),
    ("drift-p-value-over-1", "DriftMonitor", {"features.1.threshold": 5}, (),
     ("spec.features[1].threshold", "threshold of ks, chiSquare and zTest is a p-value: within 0..1")),
    ("drift-abort-canary-of-a-dataset", "DriftMonitor",
     {"dataset": {"uri": "s3://logs/scores.parquet"}, "reference": {"modelVersion": "fraud-1-0-0"},
      "onDrift": {"abortCanary": True}}, ("deploymentRef",),
     ("spec.onDrift.abortCanary", "onDrift.abortCanary needs deploymentRef")),
    ("drift-performance-live", "DriftMonitor", {"performance": {"metric": "accuracy", "labelColumn": "label"}}, (),
     ("spec.performance", "performance needs dataset: labels come with batch data")),
    ("drift-bad-performance-metric", "DriftMonitor", {"performance": {"metric": "f1", "labelColumn": "label"}}, (),
     ("spec.performance.metric", "Unsupported value")),
    ("drift-bad-multiple-testing", "DriftMonitor", {"multipleTesting": "holm"}, (),
     ("spec.multipleTesting", "Unsupported value")),
    ("drift-window-shorter", "DriftMonitor", {"interval": "2h", "window": "1h"}, (),
     ("spec.window", "window must not be shorter than interval")),
    ("drift-bad-interval", "DriftMonitor", {"interval": "5 minutes"}, (), ("spec.interval", "should match")),
    ("drift-share-over-1", "DriftMonitor", {"datasetDriftShare": 1.5}, (),
     ("spec.datasetDriftShare", "less than or equal to 1")),
    ("drift-bad-method", "DriftMonitor", {"features.0.method": "kl"}, (),
     ("spec.features[0].method", "Unsupported value")),
    ("drift-duplicate-feature", "DriftMonitor", {"features.1.name": "amount"}, (),
     (".spec.features", 'duplicate entries for key [name="amount"]')),
    # AlertRule.
    ("alert-expr-and-condition", "AlertRule", {"expr": "up == 0"}, (),
     ("spec", "exactly one of expr, condition, sla must be set")),
    ("alert-neither", "AlertRule", {}, ("condition",), ("spec", "exactly one of expr, condition, sla must be set")),
    ("alert-prometheus-with-condition", "AlertRule", {"prometheus": {"address": "http://p:9090"}}, (),
     ("spec.prometheus", "prometheus is used only by expr and sla rules")),
    ("alert-interval-too-short", "AlertRule", {"interval": "5s"}, (),
     ("spec.interval", "interval must be at least 10s")),
    ("alert-reserved-label", "AlertRule", {"labels": {"severity": "page"}}, (),
     ("spec.labels", "labels keys must be label names")),
    ("alert-bad-label-key", "AlertRule", {"labels": {"team-name": "fraud"}}, (),
     ("spec.labels", "labels keys must be label names")),
    ("alert-receiver-two-kinds", "AlertRule", {"receivers.0.webhook": {"urlSecretRef": {"name": "a", "key": "b"}}}, (),
     ("spec.receivers[0]", "exactly one of event, alertmanager, webhook, slack, pagerduty must be set")),
    ("alert-receiver-duplicate-name", "AlertRule", {"receivers.1.name": "events"}, (),
     ("spec.receivers", 'duplicate entries for key [name="events"]')),
    ("alert-text-with-gt", "AlertRule", {"condition.field.text": "Failed"}, ("condition.field.value",),
     ("spec.condition.field.op", "text compares only with == or !=")),
    ("alert-no-value", "AlertRule", {}, ("condition.field.value",),
     ("spec.condition.field", "exactly one of value, text must be set")),
    ("alert-two-conditions", "AlertRule", {"condition.cel": "true"}, (),
     ("spec.condition", "exactly one of field, statusCondition, cel must be set")),
    ("alert-bad-kind", "AlertRule", {"condition.selector.kind": "Pod"}, (),
     ("spec.condition.selector.kind", "Unsupported value")),
    ("alert-name-and-labels", "AlertRule", {"condition.selector.matchLabels": {"team": "fraud"}}, (),
     ("spec.condition.selector.name", "name selects one resource")),
    ("alert-bad-field", "AlertRule", {"condition.field.field": "status; rm -rf"}, (),
     ("spec.condition.field.field", "should match")),
    ("alert-bad-severity", "AlertRule", {"severity": "page"}, (), ("spec.severity", "Unsupported value")),
    ("alert-no-secret-key", "AlertRule", {}, ("receivers.1.slack.webhookUrlSecretRef.key",),
     ("spec.receivers[1].slack.webhookUrlSecretRef.key", "Required value")),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "change", "remove", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_resource_is_rejected(
    kubectl: Kubectl, kind: str, change: dict[str, Any], remove: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    result = kubectl.apply(mutate(kind, change, remove), check=False)
    assert result.returncode != 0, f"accepted: {result.stdout}"
    for part in expected:
        assert part in result.stderr, f"{part!r} not in: {result.stderr}"
    assert kubectl.run("get", kind, "invalid", check=False).returncode != 0, "nothing is stored"


IMMUTABLE = [
    ("model", {"model": "other-model"}, "spec.model", "model is immutable"),
    ("version", {"version": "9.9.9"}, "spec.version", "version is immutable"),
    ("source", {"source": "file:///elsewhere/model.onnx"}, "spec.source", "source is immutable"),
    ("lineage-changed", {"lineage": {"runId": "other"}}, "spec.lineage", "lineage is immutable"),
]


@pytest.mark.parametrize(("change", "field", "message"), [c[1:] for c in IMMUTABLE], ids=[c[0] for c in IMMUTABLE])
def test_model_version_identity_is_immutable(
    kubectl: Kubectl, change: dict[str, Any], field: str, message: str
) -> None:
    doc = example("ModelVersion")
    kubectl.apply(doc)
    changed = copy.deepcopy(doc)
    changed["spec"].update(change)
    result = kubectl.apply(changed, check=False)
    assert result.returncode != 0, "the change was accepted"
    assert field in result.stderr and message in result.stderr, result.stderr
    stored = kubectl.get("modelversion", doc["metadata"]["name"])["spec"]
    assert stored["model"] == doc["spec"]["model"] and stored["source"] == doc["spec"]["source"]


def test_model_deployment_model_is_immutable_but_its_version_changes(kubectl: Kubectl) -> None:
    doc = example("ModelDeployment")
    kubectl.apply(doc)
    name = doc["metadata"]["name"]
    result = kubectl.run("patch", "modeldeployment", name, "--type=merge", "-p", '{"spec":{"model":"another"}}',
                         check=False)  # fmt: skip
    assert result.returncode != 0, "the change was accepted"
    assert "spec.model" in result.stderr and "create another ModelDeployment" in result.stderr, result.stderr
    assert kubectl.get("modeldeployment", name)["spec"]["model"] == doc["spec"]["model"]
    kubectl.run("patch", "modeldeployment", name, "--type=merge", "-p", '{"spec":{"replicas":3}}')
    assert kubectl.get("modeldeployment", name)["spec"]["replicas"] == 3


def test_lineage_cannot_be_removed_but_stage_can_change(kubectl: Kubectl) -> None:
    doc = example("ModelVersion")
    kubectl.apply(doc)
    name = doc["metadata"]["name"]
    remove = '[{"op": "remove", "path": "/spec/lineage"}]'
    result = kubectl.run("patch", "modelversion", name, "--type=json", "-p", remove, check=False)
    assert result.returncode != 0 and "lineage is immutable" in result.stderr, result.stderr
    # Mutable fields still change.
    kubectl.run("patch", "modelversion", name, "--type=merge", "-p", '{"spec":{"stage":"production"}}')
    assert kubectl.get("modelversion", name)["spec"]["stage"] == "production"
