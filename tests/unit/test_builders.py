"""The ModelDeployment children: names, labels, Deployment, Services, HPA, PDB and the replica split."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops_operator.api.common import LABEL_VALUE_PATTERN
from mlops_operator.api.modeldeployment import ModelDeploymentSpec
from mlops_operator.builders.serving import (
    Workload,
    child_name,
    deployment,
    front_name,
    front_service,
    hpa,
    label_value,
    labels,
    pdb,
    selector,
    version_service,
)
from mlops_operator.logic.serving import replica_split

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
OWNER: dict[str, Any] = {
    "apiVersion": "mlops.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "fraud", "namespace": "ml", "uid": "0c7a-uid", "generation": 3},
    "spec": {"model": "fraud-detector", "version": "1.1.0"},
}
OWNER_REFS = [
    {
        "apiVersion": "mlops.io/v1alpha1",
        "kind": "ModelDeployment",
        "name": "fraud",
        "uid": "0c7a-uid",
        "controller": True,
        "blockOwnerDeletion": True,
    }
]
NAME = child_name("fraud", "1.1.0")
SELECTOR = {"app.kubernetes.io/name": "mlops-server", "mlops.io/deployment": "fraud", "mlops.io/version": "1.1.0"}
POD_LABELS = {
    "app.kubernetes.io/name": "mlops-server",
    "app.kubernetes.io/instance": "fraud",
    "app.kubernetes.io/managed-by": "mlops-operator",
    "mlops.io/deployment": "fraud",
    "mlops.io/model": "fraud-detector",
    "mlops.io/version": "1.1.0",
}
CHILD_LABELS = {**POD_LABELS, "mlops.io/role": "stable"}
METADATA = {"name": NAME, "namespace": "ml", "labels": CHILD_LABELS, "ownerReferences": OWNER_REFS}

# Object names as Kubernetes allows them (DNS-1123 subdomains), and versions as the schema allows them.
object_names = st.from_regex(r"\A[a-z0-9]([-a-z0-9.]{0,100}[a-z0-9])?\Z")
versions = st.from_regex(r"\A[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?\Z")


def spec(**fields: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({"model": "fraud-detector", "version": "1.1.0", **fields})


def served(**fields: Any) -> Workload:
    base: dict[str, Any] = {
        "version": "1.1.0",
        "role": "stable",
        "replicas": 2,
        "source": "s3://models/fraud/1.1.0/model.onnx",
        "format": "onnx",
    }
    return Workload(**{**base, **fields})


# --- names -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deployment_name", "version", "expected"),
    [
        # Pinned: these names are stable across releases, or upgrades would orphan children.
        ("fraud", "1.2.0", "fraud-1-2-0-8d3f58df"),
        ("fraud", "1-2-0", "fraud-1-2-0-74e347b7"),
        ("fraud", "v3_rc1", "fraud-v3-rc1-548bf976"),
        ("fraud", "2024-01-31", "fraud-2024-01-31-63a348ff"),
        ("fraud", "V3", "fraud-v3-9337e6ae"),
        ("fraud", "v3", "fraud-v3-e65b85bf"),
        ("1fraud.x", "1.0", "md-1fraud-x-1-0-06898988"),
    ],
)
def test_child_name_examples(deployment_name: str, version: str, expected: str) -> None:
    assert child_name(deployment_name, version) == expected


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("fraud", "1.2.0"), ("fraud", "1-2-0")),
        (("fraud", "1.2.0"), ("fraud", "1_2_0")),
        (("fraud", "V3"), ("fraud", "v3")),
        (("fraud-a", "b"), ("fraud", "a-b")),
        (("x" * 70, "1.0.0"), ("x" * 70, "1.0.1")),
        (("fraud", "1.0.0-" + "a" * 56), ("fraud", "1.0.0-" + "a" * 55 + "b")),
    ],
)
def test_child_names_do_not_collide(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert child_name(*a) != child_name(*b)


@pytest.mark.parametrize(("deployment_name", "version"), [("x" * 253, "1.0.0"), ("fraud", "v" * 63), ("a" * 60, "b")])
def test_long_child_names_are_cut_to_63(deployment_name: str, version: str) -> None:
    name = child_name(deployment_name, version)
    assert len(name) == 63 and DNS_1035.match(name)


@given(object_names, versions)
def test_child_name_is_a_dns_1035_label(deployment_name: str, version: str) -> None:
    name = child_name(deployment_name, version)
    assert len(name) <= 63 and DNS_1035.match(name)


@given(object_names, versions, versions)
def test_versions_of_one_deployment_get_distinct_names(deployment_name: str, v1: str, v2: str) -> None:
    assert (child_name(deployment_name, v1) == child_name(deployment_name, v2)) == (v1 == v2)


@pytest.mark.parametrize(
    ("deployment_name", "expected"),
    [("fraud", "fraud"), ("fraud-v2", "fraud-v2"), ("a.b", "a-b-2e7336dc"), ("1abc", "md-1abc-57cb980e")],
)
def test_front_name_is_the_deployment_name_when_valid(deployment_name: str, expected: str) -> None:
    assert front_name(deployment_name) == expected


@given(object_names)
def test_front_name_is_a_dns_1035_label(deployment_name: str) -> None:
    name = front_name(deployment_name)
    assert len(name) <= 63 and DNS_1035.match(name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.0", "1.2.0"),
        ("v3_rc1", "v3_rc1"),
        ("2024-01-31", "2024-01-31"),
        ("a" * 63, "a" * 63),
        ("a" * 64, "a" * 54 + "-ffe054fe"),
        ("...", "ab5df625"),
    ],
)
def test_label_value(text: str, expected: str) -> None:
    assert label_value(text) == expected


@given(st.text(max_size=300))
def test_label_value_is_always_valid(text: str) -> None:
    value = label_value(text)
    assert len(value) <= 63 and re.match(LABEL_VALUE_PATTERN, value)


# --- labels ----------------------------------------------------------------------------------------------------------


def test_labels_of_a_version_child() -> None:
    assert labels("fraud", "fraud-detector", "1.1.0", "stable") == CHILD_LABELS


def test_labels_of_the_whole_deployment_leave_version_and_role_out() -> None:
    assert labels("fraud", "fraud-detector") == {k: v for k, v in POD_LABELS.items() if k != "mlops.io/version"}


@pytest.mark.parametrize("role", ["stable", "canary", "preview", "shadow", "retiring"])
def test_selector_is_a_role_free_subset_of_the_labels(role: str) -> None:
    child = labels("fraud", "fraud-detector", "1.1.0", role)
    assert selector("fraud", "1.1.0") == SELECTOR
    assert SELECTOR.items() <= child.items()
    assert selector("fraud").items() <= SELECTOR.items()
    assert "mlops.io/role" not in SELECTOR and "mlops.io/version" not in selector("fraud")


# --- Deployment ------------------------------------------------------------------------------------------------------


def expected_container(env: list[dict[str, str]], **over: Any) -> dict[str, Any]:
    return {
        "name": "server",
        "image": "ghcr.io/mlops/operator:0.1.0",
        "command": ["mlops-server"],
        "env": env,
        "ports": [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "grpc", "containerPort": 8081, "protocol": "TCP"},
        ],
        "startupProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 120,
        },
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        **over,
    }


BASE_ENV = [
    {"name": "MLOPS_MODEL_NAME", "value": "fraud-detector"},
    {"name": "MLOPS_MODEL_VERSION", "value": "1.1.0"},
    {"name": "MLOPS_MODEL_SOURCE", "value": "s3://models/fraud/1.1.0/model.onnx"},
    {"name": "MLOPS_MODEL_FORMAT", "value": "onnx"},
]
SERVER_ENV = [
    {"name": "MLOPS_SERVER_PORT", "value": "8080"},
    {"name": "MLOPS_GRPC_PORT", "value": "8081"},
    {"name": "MLOPS_MAX_REQUEST_BYTES", "value": "10485760"},
    {"name": "MLOPS_GRACEFUL_SECONDS", "value": "20"},
]


def test_deployment_of_a_plain_version() -> None:
    out = deployment(OWNER, spec(), served(), "ghcr.io/mlops/operator:0.1.0")
    assert out == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": METADATA,
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": SELECTOR},
            "revisionHistoryLimit": 2,
            "progressDeadlineSeconds": 600,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {
                    "labels": POD_LABELS,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": "8080",
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": SELECTOR},
                        }
                    ],
                    "containers": [expected_container(BASE_ENV + SERVER_ENV)],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


SIGNATURE = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 3]}], "outputs": []}


@pytest.mark.parametrize(
    ("fields", "env", "volumes", "mounts"),
    [
        (
            {"checksum": "sha256:" + "a" * 64},
            [{"name": "MLOPS_MODEL_CHECKSUM", "value": "sha256:" + "a" * 64}],
            [],
            [],
        ),
        (
            {"signature": SIGNATURE},
            [
                {
                    "name": "MLOPS_MODEL_SIGNATURE",
                    "value": '{"inputs":[{"datatype":"FP32","name":"features","shape":[-1,3]}],"outputs":[]}',
                }
            ],
            [],
            [],
        ),
        (
            {"profile_configmap": "fraud-1-1-0-profile"},
            [{"name": "MLOPS_REFERENCE_PROFILE", "value": "@/etc/mlops/profile/profile.json"}],
            [{"name": "profile", "configMap": {"name": "fraud-1-1-0-profile"}}],
            [{"name": "profile", "mountPath": "/etc/mlops/profile", "readOnly": True}],
        ),
        (
            {"source": "pvc://models/fraud/model.onnx"},
            [{"name": "MLOPS_PVC_ROOT", "value": "/mnt/pvc"}],
            [{"name": "model", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}}],
            [{"name": "model", "mountPath": "/mnt/pvc/models", "readOnly": True}],
        ),
    ],
    ids=["checksum", "signature", "profile", "pvc"],
)
def test_deployment_passes_optional_settings(
    fields: dict[str, Any], env: list[dict[str, str]], volumes: list[dict[str, Any]], mounts: list[dict[str, Any]]
) -> None:
    version = served(**fields)
    pod = deployment(OWNER, spec(), version, "ghcr.io/mlops/operator:0.1.0")["spec"]["template"]["spec"]
    base_env = [{**e, "value": version.source} if e["name"] == "MLOPS_MODEL_SOURCE" else e for e in BASE_ENV]
    assert pod["containers"] == [
        expected_container(base_env + env + SERVER_ENV, volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}, *mounts])
    ]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}, *volumes]


def test_signature_env_is_the_same_whatever_the_key_order() -> None:
    reordered = {"outputs": [], "inputs": [{"shape": [-1, 3], "name": "features", "datatype": "FP32"}]}
    one, two = (deployment(OWNER, spec(), served(signature=s), "img") for s in (SIGNATURE, reordered))
    assert one == two
    env = one["spec"]["template"]["spec"]["containers"][0]["env"]
    assert json.loads(next(e["value"] for e in env if e["name"] == "MLOPS_MODEL_SIGNATURE")) == SIGNATURE


def test_deployment_server_settings_and_resources() -> None:
    settings = {
        "server": {"image": "registry.local/server:2", "port": 9000, "grpcPort": 9001, "maxRequestBytes": 2048},
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2}},
    }
    out = deployment(OWNER, spec(**settings), served(), "ghcr.io/mlops/operator:0.1.0")
    template = out["spec"]["template"]
    container = template["spec"]["containers"][0]
    assert container["image"] == "registry.local/server:2"
    assert container["ports"] == [
        {"name": "http", "containerPort": 9000, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 9001, "protocol": "TCP"},
    ]
    assert container["env"][-4:] == [
        {"name": "MLOPS_SERVER_PORT", "value": "9000"},
        {"name": "MLOPS_GRPC_PORT", "value": "9001"},
        {"name": "MLOPS_MAX_REQUEST_BYTES", "value": "2048"},
        {"name": "MLOPS_GRACEFUL_SECONDS", "value": "20"},
    ]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2"}}
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "9000"


def test_batching_settings_reach_the_server_only_when_given() -> None:
    batching = {"server": {"batching": {"maxSize": 64, "maxLatency": "500us"}}}
    with pytest.raises(ValueError, match="maxLatency"):
        spec(**batching)
    batching["server"]["batching"]["maxLatency"] = "1.5ms"
    env = deployment(OWNER, spec(**batching), served(), "img")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[-2:] == [{"name": "MLOPS_MAX_BATCH_SIZE", "value": "64"},
                        {"name": "MLOPS_MAX_BATCH_LATENCY_MS", "value": "1.5"}]  # fmt: skip
    plain = deployment(OWNER, spec(), served(), "img")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert not any(e["name"].startswith("MLOPS_MAX_BATCH") for e in plain)


@pytest.mark.parametrize(
    ("fields", "replicas"),
    [({}, 2), ({"autoscaling": {"minReplicas": 2, "maxReplicas": 5}}, None)],
    ids=["fixed", "autoscaled"],
)
def test_replicas_are_left_to_the_hpa_when_autoscaling(fields: dict[str, Any], replicas: int | None) -> None:
    out = deployment(OWNER, spec(**fields), served(replicas=2), "img")
    assert out["spec"].get("replicas") == replicas


@pytest.mark.parametrize("role", ["canary", "retiring"])
def test_a_role_change_leaves_the_pod_template_and_selector_alone(role: str) -> None:
    before = deployment(OWNER, spec(), served(role="stable"), "img")
    after = deployment(OWNER, spec(), served(role=role), "img")
    assert after["spec"] == before["spec"]
    assert after["metadata"]["labels"]["mlops.io/role"] == role


# --- Services --------------------------------------------------------------------------------------------------------

PORTS = [
    {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"},
    {"name": "grpc", "port": 8081, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"},
]


def test_version_service() -> None:
    assert version_service(OWNER, spec(), served()) == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": METADATA,
        "spec": {"type": "ClusterIP", "selector": SELECTOR, "ports": PORTS},
    }


@pytest.mark.parametrize(
    ("in_traffic", "pod_selector"),
    [
        ([], {"app.kubernetes.io/name": "mlops-server", "mlops.io/deployment": "fraud"}),
        (["1.1.0"], SELECTOR),
        (["1.0.0", "1.1.0"], {"app.kubernetes.io/name": "mlops-server", "mlops.io/deployment": "fraud"}),
    ],
    ids=["none", "one-pinned", "several-all"],
)
def test_front_service(in_traffic: list[str], pod_selector: dict[str, str]) -> None:
    out = front_service(OWNER, spec(), in_traffic)
    front_labels = {k: v for k, v in POD_LABELS.items() if k != "mlops.io/version"}
    assert out == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "fraud", "namespace": "ml", "labels": front_labels, "ownerReferences": OWNER_REFS},
        "spec": {"type": "ClusterIP", "selector": pod_selector, "ports": PORTS},
    }


def test_grpc_off_leaves_only_http() -> None:
    off = spec(server={"grpcPort": 0})
    container = deployment(OWNER, off, served(), "img")["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert {"name": "MLOPS_GRPC_PORT", "value": "0"} in container["env"]
    for service in (version_service(OWNER, off, served()), front_service(OWNER, off, ["1.1.0"])):
        assert service["spec"]["ports"] == PORTS[:1]


# --- HPA and PDB -----------------------------------------------------------------------------------------------------


def test_hpa_per_version() -> None:
    autoscaling = {"minReplicas": 2, "maxReplicas": 10, "targetCPUUtilizationPercentage": 60}
    assert hpa(OWNER, spec(autoscaling=autoscaling), served()) == {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": METADATA,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "minReplicas": 2,
            "maxReplicas": 10,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}},
                }
            ],
        },
    }


def test_no_hpa_without_autoscaling() -> None:
    assert hpa(OWNER, spec(), served()) is None


@pytest.mark.parametrize(
    ("fields", "replicas", "wanted"),
    [
        ({}, 0, False),
        ({}, 1, False),
        ({}, 2, True),
        ({"autoscaling": {"minReplicas": 1, "maxReplicas": 5}}, 3, False),
        ({"autoscaling": {"minReplicas": 2, "maxReplicas": 5}}, 0, True),
    ],
)
def test_pdb_only_with_more_than_one_replica(fields: dict[str, Any], replicas: int, wanted: bool) -> None:
    out = pdb(OWNER, spec(**fields), served(replicas=replicas))
    if not wanted:
        assert out is None
        return
    assert out == {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": METADATA,
        "spec": {
            "selector": {"matchLabels": SELECTOR},
            "maxUnavailable": 1,
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


# --- replica split ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "weights", "expected"),
    [
        (10, {"1.0.0": 90, "1.1.0": 10}, {"1.0.0": 9, "1.1.0": 1}),
        (10, {"1.0.0": 95, "1.1.0": 5}, {"1.0.0": 9, "1.1.0": 1}),
        (4, {"1.0.0": 100, "1.1.0": 0}, {"1.0.0": 4, "1.1.0": 0}),
        (5, {"b": 50, "a": 50}, {"a": 3, "b": 2}),
        (3, {"a": 98, "b": 1, "c": 1}, {"a": 1, "b": 1, "c": 1}),
        (4, {"a": 98, "b": 1, "c": 1}, {"a": 2, "b": 1, "c": 1}),
        (1, {"a": 50, "b": 50}, {"a": 1, "b": 1}),
        (7, {"a": 34, "b": 33, "c": 33}, {"a": 3, "b": 2, "c": 2}),
        (0, {"a": 50, "b": 50}, {"a": 0, "b": 0}),
        (3, {"a": 0, "b": 0}, {"a": 0, "b": 0}),
        (3, {}, {}),
    ],
)
def test_replica_split_examples(total: int, weights: dict[str, int], expected: dict[str, int]) -> None:
    assert replica_split(total, weights) == expected


@pytest.mark.parametrize(("total", "weights"), [(-1, {"a": 100}), (2, {"a": 110, "b": -10})])
def test_replica_split_rejects_negatives(total: int, weights: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        replica_split(total, weights)


split_inputs = st.tuples(
    st.integers(min_value=0, max_value=200),
    st.dictionaries(versions, st.integers(min_value=0, max_value=100), max_size=8),
)


@given(split_inputs)
def test_replica_split_properties(case: tuple[int, dict[str, int]]) -> None:
    total, weights = case
    out = replica_split(total, weights)
    positive = [v for v, w in weights.items() if w > 0]
    assert out.keys() == weights.keys()
    assert all(out[v] == 0 for v, w in weights.items() if w == 0)
    if total == 0:
        assert sum(out.values()) == 0
    elif total >= len(positive):
        assert sum(out.values()) == (total if positive else 0)
        assert all(out[v] >= 1 for v in positive)
    else:
        assert all(out[v] == 1 for v in positive)


@given(split_inputs)
def test_replica_split_stays_within_one_of_the_quota_when_no_minimum_applies(case: tuple[int, dict[str, int]]) -> None:
    total, weights = case
    weight_sum = sum(weights.values())
    if weight_sum == 0 or any(0 < total * w < weight_sum for w in weights.values()):
        return
    out = replica_split(total, weights)
    assert all(abs(out[v] * weight_sum - total * w) < weight_sum for v, w in weights.items())


@given(split_inputs)
def test_replica_split_is_monotonic_and_order_free(case: tuple[int, dict[str, int]]) -> None:
    total, weights = case
    out = replica_split(total, weights)
    assert replica_split(total, dict(reversed(weights.items()))) == out
    for a, wa in weights.items():
        for b, wb in weights.items():
            if wa > wb:
                assert out[a] >= out[b]


def test_progress_deadline_comes_from_the_rollout() -> None:
    body = deployment(OWNER, spec(rollout={"progressDeadline": "1m30s"}), served(), "img")
    assert body["spec"]["progressDeadlineSeconds"] == 90


@pytest.mark.parametrize(
    ("given", "stored"),
    [("0.5", "500m"), ("1024Mi", "1Gi"), ("1.5Gi", "1536Mi"), ("1000", "1k"), ("2000m", "2"), ("512Mi", "512Mi"),
     ("0.5Ki", "512"), ("1536", "1536"), (4, "4"), ("1e3", "1e3")],
)  # fmt: skip
def test_quantities_take_the_api_servers_canonical_form(given: str | int, stored: str) -> None:
    from mlops_operator.builders.serving import canonical_quantity

    assert canonical_quantity(given) == stored
    body = deployment(OWNER, spec(resources={"requests": {"cpu": given}}), served(), "img")
    assert body["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == stored
