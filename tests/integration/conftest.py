"""Integration fixtures: the project's own test cluster, reached through KUBECONFIG, and the operator process.

Tests refuse to run against any other cluster: they create and delete namespaces and CRDs. What the fixtures and the
tests share besides (kubectl, waits, bodies, starting the operator) is in support.py.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import (
    CONTAINER,
    DATA_PLANE_LABEL,
    PROCESS,
    ROOT,
    SETUP,
    Kubectl,
    Monitoring,
    OperatorProcess,
    built_image,
    kubectl_binary,
    start_operator,
)

# The contexts tests/cluster/up.sh makes: kwok-<name> or kind-<name>, name from MLOPS_CLUSTER_NAME.
CLUSTER_NAME = os.environ.get("MLOPS_CLUSTER_NAME", "mlops-test")
TEST_CONTEXTS = {f"kwok-{CLUSTER_NAME}", f"kind-{CLUSTER_NAME}"}


@pytest.fixture(scope="session")
def kubectl_session() -> Kubectl:
    if not os.environ.get("KUBECONFIG"):
        pytest.exit("KUBECONFIG is not set: run `make cluster` and `eval \"$(tests/cluster/env.sh)\"`, "
                    "or run `make test`", returncode=2)  # fmt: skip
    kubectl = Kubectl(kubectl_binary())
    context = kubectl.run("config", "current-context").stdout.strip()
    if context not in TEST_CONTEXTS:
        pytest.exit(f"refusing to run against context {context!r}: the tests only run against the project's own "
                    f"test cluster ({', '.join(sorted(TEST_CONTEXTS))})", returncode=2)  # fmt: skip
    kubectl.wait_for(lambda: kubectl.run("get", "--raw=/readyz", check=False).stdout.strip() == "ok",
                     timeout=60, what="the API server")  # fmt: skip
    return kubectl


@pytest.fixture(scope="session")
def crds(kubectl_session: Kubectl) -> list[str]:
    """Installs the CRDs from crds/ and waits until they are established."""
    kubectl_session.run("apply", "--server-side", "--force-conflicts", "--field-manager=mlops-tests",
                        "-f", str(ROOT / "crds"))  # fmt: skip
    names = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in sorted((ROOT / "crds").glob("*.yaml"))]
    kubectl_session.run("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in names))
    return names


@pytest.fixture(scope="session")
def third_party_crds(kubectl_session: Kubectl) -> list[str]:
    """Installs the Gateway API (standard channel), Istio and prometheus-operator (PrometheusRule) CRDs fetched by
    tests/cluster/third-party-crds.sh and waits until they are established. They stay installed: later runs find them
    there."""
    proc = subprocess.run([str(ROOT / "tests/cluster/third-party-crds.sh")], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(f"tests/cluster/third-party-crds.sh failed ({proc.returncode}): {proc.stderr.strip()}")
    names: list[str] = []
    for directory in proc.stdout.splitlines():
        # Server-side: a client-side apply copies each CRD into an annotation limited to 256 KiB, and HTTPRoute's
        # alone is 237 KiB.
        kubectl_session.run("apply", "--server-side", "--force-conflicts", "--field-manager=mlops-tests",
                            "-f", directory, timeout=120)  # fmt: skip
        for path in sorted(Path(directory).glob("*.yaml")):
            # The C loader when there is one: Istio's file takes the pure Python one over a second.
            docs = yaml.load_all(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            names += [d["metadata"]["name"] for d in docs if d and d.get("kind") == "CustomResourceDefinition"]
    kubectl_session.run("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in names))
    return names


@pytest.fixture(scope="session")
def image() -> str:
    """The project's image, built by `make image` once a session (skips where no container engine runs)."""
    return built_image()


@pytest.fixture(scope="session")
def artifact_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """An HTTP server on loopback serving pytest's base folder (every test's tmp_path): where Pods that run as
    containers download the artifacts the tests write."""
    folder = tmp_path_factory.getbasetemp().resolve()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def data_plane(request: pytest.FixtureRequest) -> str:
    """How the test's model-server Pods run: the test's parameter (``@pytest.mark.parametrize("data_plane",
    [PROCESS, CONTAINER], indirect=True)``), else process, whatever the cluster's default (the namespace's label
    says which, so that the suite runs the same on a cluster made with MLOPS_DATA_PLANE=container)."""
    mode = getattr(request, "param", None) or PROCESS
    assert mode in (PROCESS, CONTAINER), f"data plane {mode!r}: process or container"
    return str(mode)


@pytest.fixture
def kubectl(kubectl_session: Kubectl, crds: list[str], data_plane: str,
            request: pytest.FixtureRequest) -> Iterator[Kubectl]:  # fmt: skip
    """kubectl in a fresh namespace, deleted after the test; the namespace labelled with the test's data plane
    (in container mode, the image is built first and artifacts are served over HTTP)."""
    artifacts = None
    if data_plane == CONTAINER:
        request.getfixturevalue("image")
        artifacts = request.getfixturevalue("artifact_server")
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    kubectl_session.apply({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": namespace, "labels": {DATA_PLANE_LABEL: data_plane}}})  # fmt: skip
    # kube-controller-manager adds the namespace's default ServiceAccount moments later; until then the API server
    # refuses Pods there, and the ReplicaSet controller's backoff after such refusals can outlast a test's wait.
    kubectl_session.wait_for(
        lambda: kubectl_session.run("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0,
        timeout=60, what=f"the default ServiceAccount of {namespace}",
    )  # fmt: skip
    yield Kubectl(kubectl_session.binary, namespace, kubectl_session.env, artifacts)
    kubectl_session.run("delete", "namespace", namespace, "--wait=false", check=False)


LOG_TAIL_LINES = 200


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test that ran the operator shows the end of the operator's log under its failure."""
    report = yield
    op = getattr(item, "funcargs", {}).get("operator")
    if report.when == "call" and report.failed and isinstance(op, OperatorProcess):
        tail = op.log().splitlines()[-LOG_TAIL_LINES:]
        report.sections.append(("Captured operator log (last lines)", "\n".join(tail)))
    return report


@pytest.fixture
def operator(kubectl: Kubectl, tmp_path: Path) -> Iterator[OperatorProcess]:
    """The operator as a real process against the test cluster, watching the test's namespace."""
    op = start_operator(tmp_path, "--namespace", kubectl.namespace or "default")
    yield op
    if op.proc.poll() is None:
        op.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The RBAC comparison runs last: it reads what every operator of the session asked the API server."""
    items.sort(key=lambda item: item.path.name == "test_rbac.py")


@pytest.fixture(scope="session")
def monitoring() -> Monitoring:
    """The local cluster's Prometheus and Alertmanager (tests/cluster/monitoring.sh), answering."""
    names = ("MLOPS_PROMETHEUS_URL", "MLOPS_ALERTMANAGER_URL", "MLOPS_MONITORING_DIR")
    if missing := [name for name in names if not os.environ.get(name)]:
        pytest.fail(f"{', '.join(missing)} not set: {SETUP}", pytrace=False)
    found = Monitoring(os.environ[names[0]].rstrip("/"), os.environ[names[1]].rstrip("/"), Path(os.environ[names[2]]))
    for url in (found.prometheus, found.alertmanager):
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=10) as resp:
                assert resp.status == 200, resp.status
        except OSError as exc:
            pytest.fail(f"{url} does not answer ({exc}): {SETUP}; `tests/cluster/monitoring.sh status` tells which "
                        "is down and where its log is", pytrace=False)  # fmt: skip
    if not (found.directory / "targets").is_dir():
        pytest.fail(f"{found.directory}/targets is missing: {SETUP}", pytrace=False)
    return found
