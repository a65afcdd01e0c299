"""Packaging with helm and the test cluster: lint, schema refusals, manifests/install.yaml freshness, the chart's RBAC
in both modes, and installs (helm install, kubectl apply) whose operator Deployment becomes Available.

The local Pod runner makes the operator's Pods Ready without running them (simulated), unless their namespace runs
in container mode: there the last test installs the chart with the image built here, and the operator runs in its
container.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import CONTAINER, ROOT, Kubectl, Result, container_engine, deploy, register, wait_serving

CHART = ROOT / "charts" / "mlops-operator"
INSTALL = ROOT / "manifests" / "install.yaml"
NAMESPACED_VALUES = CHART / "ci" / "namespaced-values.yaml"
SCHEMA_ERROR = "values don't meet the specifications of the schema"


class Helm:
    def __init__(self, binary: str, context: str) -> None:
        self.binary = binary
        self.context = context

    def run(self, *args: str, check: bool = True, timeout: float = 180) -> Result:
        proc = subprocess.run(
            [self.binary, "--kube-context", self.context, *args],
            capture_output=True, text=True, timeout=timeout, env=dict(os.environ),
        )  # fmt: skip
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return result

    def template(self, *args: str, namespace: str = "mlops-system") -> list[dict[str, Any]]:
        out = self.run("template", "mlops-operator", str(CHART), "--namespace", namespace, *args).stdout
        return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module")
def helm(kubectl_session: Kubectl) -> Helm:
    found = shutil.which("helm", path=os.environ.get("PATH"))
    assert found, "helm not found on PATH: run the tests through `make test` (it builds helm with the cluster)"
    return Helm(found, kubectl_session.run("config", "current-context").stdout.strip())


def _by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        out.setdefault(doc["kind"], []).append(doc)
    return out


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = _by_kind(docs)["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


# --- helm without a release --------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [[], ["--values", str(NAMESPACED_VALUES)]], ids=["cluster", "namespaced"])
def test_chart_lints_strictly(helm: Helm, values: list[str]) -> None:
    result = helm.run("lint", "--strict", str(CHART), *values)
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "replicaCount=2"], "at '/replicaCount': maximum: got 2, want 1"),
        (["--set", "replicaCount=one"], "at '/replicaCount': got string, want integer"),
        (["--set", "watchNamespaces=team-a"], "at '/watchNamespaces': got string, want array"),
        (["--set", "serviceMonitor.enable=true"], "additional properties 'enable' not allowed"),
        (["--set", "metrics.port=8081"], "at '/metrics/port': 'not' failed"),  # the liveness port
        (["--set", "metrics.port=0"], "at '/metrics/port': minimum: got 0, want 1"),
    ],
    ids=["two-replicas", "replicas-string", "namespaces-string", "unknown-key", "metrics-on-liveness", "port-0"],
)
def test_schema_refuses_bad_values(helm: Helm, args: list[str], message: str) -> None:
    result = helm.run("template", "x", str(CHART), *args, check=False)
    assert result.returncode != 0
    assert SCHEMA_ERROR in result.stderr
    assert message in result.stderr


def test_manifests_install_is_a_fresh_render(tmp_path: Path) -> None:
    fresh = tmp_path / "install.yaml"
    subprocess.run([str(ROOT / "charts" / "render-manifests.sh"), str(fresh)], check=True, timeout=60)
    assert fresh.read_text() == INSTALL.read_text(), "manifests/install.yaml is stale: run `make manifests`"


def test_cluster_mode_renders_a_cluster_role_and_no_service_monitor(helm: Helm) -> None:
    kinds = _by_kind(helm.template())
    assert sorted(kinds) == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount"]
    assert "--namespace" not in " ".join(_container(helm.template())["args"])


def test_namespaced_mode_renders_roles_in_each_namespace_and_nothing_cluster_scoped(helm: Helm) -> None:
    cluster_rules = _by_kind(helm.template())["ClusterRole"][0]["rules"]
    docs = helm.template("--values", str(NAMESPACED_VALUES))
    kinds = _by_kind(docs)
    assert sorted(kinds) == ["Deployment", "Role", "RoleBinding", "Service", "ServiceAccount", "ServiceMonitor"]
    assert sorted(r["metadata"]["namespace"] for r in kinds["Role"]) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in kinds["RoleBinding"]) == ["team-a", "team-b"]
    # The Roles hold the ClusterRole's rules but the cluster-scoped ones.
    namespaced_rules = [r for r in cluster_rules if r["apiGroups"] != ["apiextensions.k8s.io"]]
    assert len(namespaced_rules) == len(cluster_rules) - 1
    assert all(role["rules"] == namespaced_rules for role in kinds["Role"])
    for binding in kinds["RoleBinding"]:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "mlops-operator", "namespace": "mlops-system"}
        ]
    assert _container(docs)["args"] == [
        "run", "--liveness=http://0.0.0.0:8081/healthz", "--metrics=:8080", "--namespace=team-a", "--namespace=team-b",
    ]  # fmt: skip
    (monitor,) = kinds["ServiceMonitor"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}


def test_outbound_values_become_the_operators_flags(helm: Helm) -> None:
    default = [a for a in _container(helm.template())["args"] if a.startswith("--allow")]
    assert default == []  # nothing allowed: no files, no internal addresses
    docs = helm.template(
        "--set", "outbound.fileRoots={/data/models}", "--set", "outbound.allowPrivate=true",
        "--set", "outbound.allowHosts={minio.storage.svc:9000,10.20.0.0/16}", "--set", "outbound.allowBuckets={team-*}",
    )  # fmt: skip
    assert [a for a in _container(docs)["args"] if a.startswith("--allow")] == [
        "--allow-file-root=/data/models", "--allow-private", "--allow-host=minio.storage.svc:9000",
        "--allow-host=10.20.0.0/16", "--allow-bucket=team-*",
    ]  # fmt: skip
    # The operator parses every one of them.
    from mlops_operator.outbound import HostRule

    assert [HostRule.parse(h).port for h in ("minio.storage.svc:9000", "10.20.0.0/16")] == [9000, None]
    receivers = helm.template("--set", "outbound.receiverHosts={hooks.slack.com,alertmanager.monitoring:9093}")
    assert [a for a in _container(receivers)["args"] if a.startswith("--receiver-host")] == [
        "--receiver-host=hooks.slack.com", "--receiver-host=alertmanager.monitoring:9093"]  # fmt: skip


def test_operator_metrics_can_be_turned_off_moved_and_monitored(helm: Helm) -> None:
    off = helm.template("--set", "metrics.enabled=false")
    assert "Service" not in _by_kind(off)
    assert "--metrics=" in _container(off)["args"]
    assert all(p["name"] != "metrics" for p in _container(off)["ports"])

    docs = helm.template("--set", "metrics.port=9090", "--set", "metrics.serviceMonitor.enabled=true",
                         "--set", "metrics.serviceMonitor.labels.release=prom")  # fmt: skip
    kinds = _by_kind(docs)
    assert "--metrics=:9090" in _container(docs)["args"]
    (service,) = kinds["Service"]
    assert service["spec"]["ports"][0]["port"] == 9090
    (monitor,) = kinds["ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]


def test_service_monitor_scrapes_each_model_server_once(helm: Helm) -> None:
    (monitor,) = _by_kind(helm.template("--set", "serviceMonitor.enabled=true"))["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"any": True}
    assert spec["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "mlops-server",
        "app.kubernetes.io/managed-by": "mlops-operator",
    }
    # The per-version Services only: the front Service selects the same Pods.
    assert spec["selector"]["matchExpressions"] == [{"key": "mlops.io/version", "operator": "Exists"}]
    assert spec["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}]


def test_server_image_follows_the_image_unless_set(helm: Helm) -> None:
    env = {e["name"]: e["value"] for e in _container(helm.template("--set", "image.tag=1.2.3"))["env"]}
    assert env["MLOPS_SERVER_IMAGE"] == "mlops-operator:1.2.3"
    container = _container(helm.template("--set", "serverImage=registry.example/server:9"))
    assert {"name": "MLOPS_SERVER_IMAGE", "value": "registry.example/server:9"} in container["env"]
    assert container["image"] == "mlops-operator:0.1.0"


# --- installs ----------------------------------------------------------------------------------------------------


def _restricted(kubectl: Kubectl, namespace: str) -> None:
    """Pods the namespace admits must meet the restricted Pod Security Standard."""
    kubectl.run("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted", "--overwrite")


def _wait_available(kubectl: Kubectl, namespace: str, name: str) -> None:
    kubectl.run("wait", "--namespace", namespace, "--for=condition=Available", "--timeout=120s",
                f"deployment/{name}", timeout=130)  # fmt: skip


def _can(kubectl: Kubectl, account: str, verb: str, resource: str, namespace: str | None = None) -> bool:
    """Whether ``account`` may ``verb`` ``resource`` (``plural.group`` or ``plural.group/subresource``)."""
    resource, _, subresource = resource.partition("/")
    args = ["auth", "can-i", verb, resource, f"--as={account}"]
    args += [f"--subresource={subresource}"] if subresource else []
    args += ["--namespace", namespace] if namespace else ["--all-namespaces"]
    result = kubectl.run(*args, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


@pytest.fixture
def release(kubectl: Kubectl, helm: Helm) -> Iterator[str]:
    """A unique release name in the test's namespace; uninstalled afterwards, cluster-scoped objects included."""
    name = f"r{uuid.uuid4().hex[:8]}"
    yield name
    helm.run("uninstall", name, "--namespace", kubectl.namespace or "", "--wait", "--ignore-not-found", check=False)
    # Whatever the uninstall left, the release's cluster-scoped objects go.
    kubectl.run("delete", "clusterrole,clusterrolebinding", "--ignore-not-found",
                "--selector", f"app.kubernetes.io/instance={name}", check=False)  # fmt: skip


def test_helm_install_cluster_wide(kubectl: Kubectl, helm: Helm, release: str) -> None:
    namespace = kubectl.namespace or ""
    _restricted(kubectl, namespace)
    # The CRDs are installed by the tests' fixture from crds/, identical to the chart's.
    helm.run("install", release, str(CHART), "--namespace", namespace, "--skip-crds", "--wait", "--timeout=120s")
    fullname = f"{release}-mlops-operator"
    _wait_available(kubectl, namespace, fullname)
    account = f"system:serviceaccount:{namespace}:{fullname}"
    assert kubectl.get("serviceaccount", fullname)
    role = kubectl.get("clusterrole", fullname)
    assert role["metadata"]["labels"]["app.kubernetes.io/instance"] == release
    binding = kubectl.get("clusterrolebinding", fullname)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": fullname, "namespace": namespace}]

    # What the API server grants the operator's service account, in any namespace.
    assert _can(kubectl, account, "watch", "modelversions.mlops.io")
    assert _can(kubectl, account, "patch", "canaryrollouts.mlops.io/status")
    assert _can(kubectl, account, "delete", "deployments.apps")
    assert _can(kubectl, account, "create", "httproutes.gateway.networking.k8s.io")
    assert not _can(kubectl, account, "update", "httproutes.gateway.networking.k8s.io")
    assert _can(kubectl, account, "create", "events")
    assert _can(kubectl, account, "watch", "customresourcedefinitions.apiextensions.k8s.io")
    # Secrets one by one (the canary analysis' Prometheus credentials), never listed; Pods listed, never created.
    assert _can(kubectl, account, "get", "secrets")
    assert _can(kubectl, account, "list", "pods")
    # ... and what it refuses.
    assert not _can(kubectl, account, "list", "secrets")
    assert not _can(kubectl, account, "create", "secrets")
    assert not _can(kubectl, account, "delete", "modelversions.mlops.io")
    assert not _can(kubectl, account, "create", "customresourcedefinitions.apiextensions.k8s.io")
    assert not _can(kubectl, account, "create", "pods")
    assert not _can(kubectl, account, "list", "namespaces")

    helm.run("uninstall", release, "--namespace", namespace, "--wait")
    kubectl.wait_for(
        lambda: kubectl.run("get", "clusterrole", fullname, check=False).returncode != 0,
        timeout=30, what="the ClusterRole to go with the release",
    )  # fmt: skip


def test_helm_install_namespaced(kubectl: Kubectl, helm: Helm, release: str) -> None:
    namespace = kubectl.namespace or ""
    watched = f"w-{uuid.uuid4().hex[:10]}"
    kubectl.run("create", "namespace", watched)
    try:
        _restricted(kubectl, namespace)
        helm.run("install", release, str(CHART), "--namespace", namespace, "--skip-crds", "--wait",
                 "--timeout=120s", "--set", f"watchNamespaces={{{watched}}}")  # fmt: skip
        fullname = f"{release}-mlops-operator"
        _wait_available(kubectl, namespace, fullname)
        deployment = kubectl.get("deployment", fullname)
        assert f"--namespace={watched}" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert kubectl.run("get", "role,rolebinding", fullname, "--namespace", watched).returncode == 0
        assert kubectl.run("get", "clusterrole", fullname, check=False).returncode != 0

        account = f"system:serviceaccount:{namespace}:{fullname}"
        assert _can(kubectl, account, "watch", "modeldeployments.mlops.io", watched)
        assert _can(kubectl, account, "patch", "modelversions.mlops.io/status", watched)
        assert _can(kubectl, account, "patch", "services", watched)
        # Nothing outside the watched namespace, nothing cluster-scoped.
        assert not _can(kubectl, account, "watch", "modeldeployments.mlops.io", namespace)
        assert not _can(kubectl, account, "watch", "modeldeployments.mlops.io")
        assert not _can(kubectl, account, "list", "customresourcedefinitions.apiextensions.k8s.io")
    finally:
        kubectl.run("delete", "namespace", watched, "--wait=false", check=False)


@pytest.fixture
def install_namespace(kubectl_session: Kubectl, crds: list[str]) -> Iterator[str]:
    """manifests/install.yaml's namespace and cluster-scoped RBAC, removed afterwards (the CRDs stay: the tests'
    fixture installed them)."""
    yield "mlops-system"
    kubectl_session.run("delete", "clusterrole,clusterrolebinding", "mlops-operator", "--ignore-not-found",
                        check=False)  # fmt: skip
    kubectl_session.run("delete", "namespace", "mlops-system", "--ignore-not-found", "--timeout=90s", timeout=100,
                        check=False)  # fmt: skip


def test_kubectl_apply_install(kubectl_session: Kubectl, crds: list[str], install_namespace: str) -> None:
    docs = [d for d in yaml.safe_load_all(INSTALL.read_text()) if d]
    # Applying must leave the CRDs other tests use as they are: the ones in install.yaml are crds/.
    in_install = {d["metadata"]["name"]: d for d in docs if d["kind"] == "CustomResourceDefinition"}
    from_crds = {d["metadata"]["name"]: d for d in (yaml.safe_load(p.read_text()) for p in (ROOT / "crds").glob("*"))}
    assert in_install == from_crds, "manifests/install.yaml is stale: run `make manifests`"

    # The field manager of the CRDs fixture, so that the CRDs keep one owner.
    kubectl_session.run("apply", "--server-side", "--field-manager=mlops-tests", "-f", str(INSTALL))
    _wait_available(kubectl_session, install_namespace, "mlops-operator")
    namespace = kubectl_session.get("namespace", install_namespace)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = kubectl_session.run("get", "pods", "--namespace", install_namespace, "-o", "yaml",
                               "--selector", "app.kubernetes.io/name=mlops-operator").stdout  # fmt: skip
    (pod,) = yaml.safe_load(pods)["items"]
    assert pod["spec"]["serviceAccountName"] == "mlops-operator"
    assert pod["status"]["phase"] == "Running"
    account = "system:serviceaccount:mlops-system:mlops-operator"
    assert _can(kubectl_session, account, "patch", "alertrules.mlops.io/status")
    assert not _can(kubectl_session, account, "update", "secrets")

    kubectl_session.run("delete", "clusterrole,clusterrolebinding", "mlops-operator")
    kubectl_session.run("delete", "namespace", install_namespace, "--timeout=90s", timeout=100)
    assert kubectl_session.run("get", "namespace", install_namespace, check=False).returncode != 0
    for name in in_install:
        assert kubectl_session.run("get", "crd", name).returncode == 0


@pytest.mark.parametrize("data_plane", [CONTAINER], indirect=True)
def test_helm_install_of_the_built_image_runs_the_operator_in_its_container(
    kubectl: Kubectl, helm: Helm, release: str, image: str, tmp_path: Path
) -> None:
    """The chart with the image built here: the local Pod runner runs the operator's Pod as a container of that
    image (its own service account token, read-only root, uid 65532), and the operator reconciles from inside it,
    down to a ModelDeployment whose server Pods are containers of the same image."""
    namespace = kubectl.namespace or ""
    _restricted(kubectl, namespace)
    repository, _, tag = image.rpartition(":")
    helm.run("install", release, str(CHART), "--namespace", namespace, "--skip-crds", "--wait", "--timeout=180s",
             "--set", f"image.repository={repository}", "--set", f"image.tag={tag}", "--set", "image.pullPolicy=Never",
             "--set", f"watchNamespaces={{{namespace}}}", "--set", "listenOnPodIP=true",
             "--set", "outbound.allowLoopback=true", timeout=200)  # fmt: skip
    fullname = f"{release}-mlops-operator"
    _wait_available(kubectl, namespace, fullname)
    pods = json.loads(kubectl.run("get", "pods", "-l", f"app.kubernetes.io/instance={release}", "-o", "json").stdout)
    (pod,) = pods["items"]
    # The runner's container, not a simulated Pod: the engine runs it, as the image's user, on a read-only root.
    container = f"mlops-{namespace}_{pod['metadata']['name']}_{pod['metadata']['uid'][:8]}"
    engine = container_engine()
    assert engine is not None
    control = engine[: engine.index("run")]
    fields = ("{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.State.Running}} {{.HostConfig.Memory}} "
              "{{.HostConfig.CpuShares}} {{.ImageName}}")  # fmt: skip
    inspect = subprocess.run([*control, "inspect", "--format", fields, container], capture_output=True, text=True,
                             timeout=60)  # fmt: skip
    assert inspect.returncode == 0, inspect.stderr
    user, read_only, running, memory, shares, image_name = inspect.stdout.split()
    assert (user, read_only, running) == ("65532:65532", "true", "true"), inspect.stdout
    # The chart's resources as its cgroup: the 1Gi memory limit, the 100m CPU request as shares.
    assert (memory, shares) == (str(2**30), "102"), inspect.stdout
    assert image_name.endswith(image), inspect.stdout
    ip = pod["status"]["podIP"]
    with urllib.request.urlopen(f"http://{ip}:8081/healthz", timeout=10) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(f"http://{ip}:8080/metrics", timeout=10) as resp:
        assert b"mlops_operator_" in resp.read()

    # What it reconciles: a version, then a deployment served by containers of the same image.
    version_name = register(kubectl, tmp_path, "fraud", "1.0.0")
    shown = kubectl.run("get", "modelversion", version_name, "-o", "json", "--show-managed-fields").stdout
    managers = {m["manager"] for m in json.loads(shown)["metadata"]["managedFields"]}
    assert "mlops-operator" in managers, managers
    deploy(kubectl, "fraud", version="1.0.0", replicas=1)
    wait_serving(kubectl, "fraud", "1.0.0", ready_replicas=1, timeout=120)
    (server,) = json.loads(kubectl.run("get", "pods", "-l", "mlops.io/version=1.0.0", "-o", "json").stdout)["items"]
    assert server["spec"]["containers"][0]["image"] == image
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0.5, -1.0, 2.0, 0.1]}]}
    request = urllib.request.Request(f"http://{server['status']['podIP']}:8080/v2/models/fraud/infer",
                                     json.dumps(body).encode(), {"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert json.loads(resp.read())["model_version"] == "1.0.0"
    log = Path(os.environ["MLOPS_RUNNER_DIR"], "pods", container.removeprefix("mlops-"), "server.log").read_text()
    assert "--entrypoint mlops-operator" in log and "serving metrics on http://" + ip in log, log[-3000:]
    # Every part of it reached the API server (kopf's own watches too, at the address the kubelet gives): no error,
    # no restart.
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert not errors, "\n".join(errors[:10])
    (pod,) = json.loads(kubectl.run("get", "pods", "-l", f"app.kubernetes.io/instance={release}", "-o", "json").stdout)[
        "items"
    ]
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0, pod["status"]

    # Uninstalled: the Pod goes, and its container with it.
    helm.run("uninstall", release, "--namespace", namespace, "--wait", "--timeout=120s", timeout=140)
    kubectl.wait_for(lambda: subprocess.run([*control, "container", "exists", container], timeout=60).returncode != 0,
                     timeout=60, what="the operator's container to be gone")  # fmt: skip
