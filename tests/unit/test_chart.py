"""Packaging without a cluster: the Dockerfile, the chart's files and the rendered manifests/install.yaml.

What needs helm (lint, schema refusals, a fresh render, installs) is in tests/integration/test_packaging.py.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # from schemathesis, a dev dependency; no stubs
import pytest
import yaml

from mlops_operator import __version__
from mlops_operator.api.crds import KINDS
from mlops_operator.builders import serving

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mlops-operator"
INSTALL = ROOT / "manifests" / "install.yaml"
UID = 65532


# --- Dockerfile ------------------------------------------------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends in a continuation line"
    return out


def _stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in instructions:
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, args))
    return stages


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in stage:
        if keyword == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return _instructions((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def scripts() -> dict[str, str]:
    project = tomllib.loads((ROOT / "operator" / "pyproject.toml").read_text())
    return dict(project["project"]["scripts"])


def test_dockerfile_builds_a_venv_and_copies_it_into_a_slim_final_stage(dockerfile: list[tuple[str, str]]) -> None:
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for k, a in dockerfile if k == "ARG" and "=" in a}
    build, final = _stages(dockerfile)
    assert build[0] == ("FROM", "${PYTHON_IMAGE} AS build")
    assert final[0] == ("FROM", "${PYTHON_IMAGE}")
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    runs = " ".join(a for k, a in build if k == "RUN")
    assert "python -m venv /opt/mlops" in runs
    assert "'/src/operator[server,xgboost,lightgbm,s3,gcs]'" in runs
    assert "import mlops_operator.server.grpc_service" in runs, "the gRPC modules are part of the image"
    assert "compileall" in runs, "bytecode is compiled at build time: the root filesystem is read-only at run time"
    assert ("COPY", "--from=build /opt/mlops /opt/mlops") in final


def test_dockerfile_runs_as_a_numeric_non_root_user(dockerfile: list[tuple[str, str]]) -> None:
    final = _stages(dockerfile)[-1]
    users = [a for k, a in final if k == "USER"]
    assert users, "the final stage sets no USER: the image would run as root"
    user, _, group = users[-1].partition(":")
    # Numeric, so that the kubelet can check runAsNonRoot; the same uid as the Pods the operator and chart make.
    assert user == str(UID) and group == str(UID)
    assert serving.RUN_AS == UID
    assert f"--uid {UID}" in " ".join(a for k, a in final if k == "RUN")


def test_dockerfile_writes_nothing_outside_tmp(dockerfile: list[tuple[str, str]]) -> None:
    env = _env(_stages(dockerfile)[-1])
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"] == "/tmp"
    assert all(env[k].startswith("/tmp") for k in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "JOBLIB_TEMP_FOLDER"))
    assert env["PATH"].split(":")[0] == "/opt/mlops/bin"


def test_dockerfile_has_two_entry_points(dockerfile: list[tuple[str, str]], scripts: dict[str, str]) -> None:
    final = _stages(dockerfile)[-1]
    # No ENTRYPOINT: a Pod's `command: [mlops-server]` then replaces the whole default command.
    assert not [a for k, a in final if k == "ENTRYPOINT"]
    cmd = [a for k, a in final if k == "CMD"]
    assert [json.loads(c) for c in cmd] == [["mlops-operator", "run"]], "CMD must be the exec form"
    assert {"mlops-operator", "mlops-server"} <= set(scripts)
    # The model server Deployments run the image's mlops-server script.
    assert serving.SERVER in scripts
    assert scripts[serving.SERVER] == "mlops_operator.server.main:main"


def test_dockerignore_sends_only_the_python_project() -> None:
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[:2] == ["*", "!operator/"]


# --- the chart's files -----------------------------------------------------------------------------------------------


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "mlops-operator"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == __version__, "appVersion must be operator/mlops_operator/__init__.py's __version__"


def test_chart_crds_are_byte_identical_to_crds() -> None:
    ours = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert len(ours) == len(KINDS)
    assert sorted(chart) == sorted(ours), "charts/mlops-operator/crds/ holds other files than crds/: `make manifests`"
    stale = sorted(name for name in ours if chart[name] != ours[name])
    assert not stale, f"charts/mlops-operator/crds/ differs from crds/ in {stale}: run `make manifests`"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(loaded)
    return loaded


@pytest.mark.parametrize("values", ["values.yaml", "ci/namespaced-values.yaml"])
def test_values_meet_the_schema(schema: dict[str, Any], values: str) -> None:
    jsonschema.validate(yaml.safe_load((CHART / values).read_text()), schema)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 2}, "2 is greater than the maximum of 1"),
        ({"watchNamespaces": "team-a"}, "'team-a' is not of type 'array'"),
        ({"watchNamespaces": ["Team_A"]}, "does not match"),
        ({"serviceAccount": {"create": True, "nmae": "x"}}, "Additional properties are not allowed ('nmae'"),
        ({"replicas": 1}, "Additional properties are not allowed ('replicas'"),
        ({"image": {"repository": "r", "pullPolicy": "Sometimes"}}, "'Sometimes' is not one of"),
        ({"outbound": {"fileRoots": ["data"]}}, "'data' does not match '^/'"),
        ({"outbound": {"allowHosts": ["http://minio:9000/"]}}, "'http://minio:9000/' does not match"),
        ({"outbound": {"allowHosts": ["minio:9000/path"]}}, "does not match"),
        ({"outbound": {"receiverHosts": ["https://hooks.slack.com/"]}}, "does not match"),
        ({"outbound": {"allowEverything": True}}, "Additional properties are not allowed ('allowEverything'"),
    ],
)
def test_schema_refuses_bad_values(schema: dict[str, Any], values: dict[str, Any], message: str) -> None:
    with pytest.raises(jsonschema.ValidationError, match=re.escape(message)):
        jsonschema.validate(values, schema)


def test_every_default_value_is_described_by_the_schema(schema: dict[str, Any]) -> None:
    def walk(values: dict[str, Any], node: dict[str, Any], path: str) -> None:
        props = node.get("properties", {})
        for key, value in values.items():
            assert key in props, f"{path}{key} is not in values.schema.json"
            if isinstance(value, dict) and props[key].get("additionalProperties") is False:
                walk(value, props[key], f"{path}{key}.")

    assert schema["additionalProperties"] is False
    walk(yaml.safe_load((CHART / "values.yaml").read_text()), schema, "")


# --- manifests/install.yaml (a render of the chart; tests/integration/test_packaging.py checks it is fresh) ----------


@pytest.fixture(scope="module")
def install() -> dict[tuple[str, str], dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(INSTALL.read_text()) if d]
    by_key = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert len(by_key) == len(docs), "two objects of the same kind and name"
    return by_key


def test_install_holds_the_namespace_crds_rbac_and_deployment(install: dict[tuple[str, str], Any]) -> None:
    assert sorted(kind for kind, _ in install) == sorted(
        ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"]
        + ["CustomResourceDefinition"] * len(KINDS)
    )
    namespace = install[("Namespace", "mlops-system")]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for (kind, _), doc in install.items():
        if kind in ("ServiceAccount", "Deployment", "Service"):
            assert doc["metadata"]["namespace"] == "mlops-system"
    for path in (ROOT / "crds").glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        assert install[("CustomResourceDefinition", crd["metadata"]["name"])] == crd, f"{path.name} is stale"


def test_install_deployment_is_a_single_restricted_operator(install: dict[tuple[str, str], Any]) -> None:
    spec = install[("Deployment", "mlops-operator")]["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "mlops-operator"
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }
    assert container["command"] == ["mlops-operator"]
    assert container["args"] == ["run", "--liveness=http://0.0.0.0:8081/healthz", "--metrics=:8080"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert {"name": "healthz", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    assert {"name": "metrics", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLOPS_SERVER_IMAGE"] == container["image"] == f"mlops-operator:{__version__}"
    # /tmp is the only writable path.
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]


def test_install_metrics_service_selects_the_operator_pod(install: dict[tuple[str, str], Any]) -> None:
    service = install[("Service", "mlops-operator-metrics")]
    pod_labels = install[("Deployment", "mlops-operator")]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]


def _grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


READ = ("get", "list", "watch")
OWN = (*READ, "create", "patch", "delete")
KIND_PLURALS = ("modelversions", "modeldeployments", "canaryrollouts", "driftmonitors", "alertrules")
OWNED = {
    "": ("configmaps", "services"),
    "apps": ("deployments",),
    "autoscaling": ("horizontalpodautoscalers",),
    "policy": ("poddisruptionbudgets",),
    "gateway.networking.k8s.io": ("httproutes",),
    "networking.istio.io": ("virtualservices",),
}


def test_install_cluster_role_is_exactly_what_the_operator_needs(install: dict[tuple[str, str], Any]) -> None:
    role = install[("ClusterRole", "mlops-operator")]
    # What the operator's requests use (tests/integration/test_rbac.py checks it against the audit log).
    # Our kinds watched; the CanaryRollout controller clears the verbs' annotations (and DriftMonitors set the abort
    # verb).
    expected = {("mlops.io", p, v) for p in KIND_PLURALS for v in ("list", "watch")}
    expected |= {("mlops.io", "canaryrollouts", "patch")}
    expected |= {("mlops.io", f"{p}/status", "patch") for p in KIND_PLURALS}
    expected |= {("mlops.io", f"{p}/finalizers", "update") for p in ("modelversions", "modeldeployments")}
    # Reference profiles: applied by the registry, read by DriftMonitors.
    expected |= {("", "events", "create"), ("", "configmaps", "create"), ("", "configmaps", "patch")}
    expected |= {("", "configmaps", "get")}
    expected |= {(g, r, v) for g, resources in OWNED.items() for r in resources for v in OWN if r != "configmaps"}
    expected |= {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")}
    # The canary analysis: Pods listed (direct provider), Secrets read one by one (prometheus provider's
    # credentials), never listed or watched.
    expected |= {("", "pods", "list"), ("", "secrets", "get")}
    # AlertRules exported as PrometheusRules: server-side applied.
    expected |= {("monitoring.coreos.com", "prometheusrules", v) for v in ("create", "patch")}
    assert {v for _, r, v in _grants(role["rules"]) if r == "secrets"} == {"get"}
    assert _grants(role["rules"]) == expected
    assert {p.name.removeprefix("mlops.io_").removesuffix(".yaml") for p in (ROOT / "crds").glob("*.yaml")} == set(
        KIND_PLURALS
    )
    binding = install[("ClusterRoleBinding", "mlops-operator")]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "mlops-operator",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mlops-operator", "namespace": "mlops-system"}]


class _StrictLoader(yaml.SafeLoader):
    """Refuses a mapping with a key twice (PyYAML keeps the last; stricter parsers refuse, or keep the first)."""


def _no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    keys = [loader.construct_object(key, deep=deep) for key, _ in node.value]
    twice = sorted({str(k) for k in keys if keys.count(k) > 1})
    assert not twice, f"keys {twice} twice in the mapping at line {node.start_mark.line + 1}"
    return loader.construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def test_install_has_no_key_twice() -> None:
    docs = [d for d in yaml.load_all(INSTALL.read_text(), Loader=_StrictLoader) if d]
    assert len(docs) >= 10
