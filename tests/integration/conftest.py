"""Integration fixtures: the project's own test cluster, reached through KUBECONFIG, and the operator process.

Tests refuse to run against any other cluster: they create and delete namespaces and CRDs.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# The contexts tests/cluster/up.sh makes: kwok-<name> or kind-<name>, name from MLOPS_CLUSTER_NAME.
CLUSTER_NAME = os.environ.get("MLOPS_CLUSTER_NAME", "mlops-test")
TEST_CONTEXTS = {f"kwok-{CLUSTER_NAME}", f"kind-{CLUSTER_NAME}"}


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Kubectl:
    """kubectl against the test cluster, in one namespace by default."""

    binary: str
    namespace: str | None = None
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def run(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60) -> Result:
        cmd = [self.binary, *args]
        if self.namespace and not any(a in ("-n", "--namespace", "-A", "--all-namespaces") for a in args):
            cmd += ["--namespace", self.namespace]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=self.env)
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return result

    def apply(self, doc: dict[str, Any] | str, check: bool = True, server_side: bool = True) -> Result:
        text = doc if isinstance(doc, str) else yaml.safe_dump(doc)
        args = ["apply", "-f", "-"]
        if server_side:
            args += ["--server-side", "--field-manager=mlops-tests"]
        return self.run(*args, input=text, check=check)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return json.loads(self.run("get", kind, name, "-o", "json").stdout)  # type: ignore[no-any-return]

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.2, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
            except AssertionError as exc:
                last = exc
            else:
                if last:
                    return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def _kubectl_binary() -> str:
    found = shutil.which("kubectl", path=os.environ.get("PATH"))
    if not found:
        pytest.exit("kubectl not found on PATH: run the tests through `make test`", returncode=2)
    return found


@pytest.fixture(scope="session")
def kubectl_session() -> Kubectl:
    if not os.environ.get("KUBECONFIG"):
        pytest.exit("KUBECONFIG is not set: run `make cluster` and `eval \"$(tests/cluster/env.sh)\"`, "
                    "or run `make test`", returncode=2)  # fmt: skip
    kubectl = Kubectl(_kubectl_binary())
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
    """Installs the Gateway API (standard channel) and Istio CRDs fetched by tests/cluster/third-party-crds.sh and
    waits until they are established. They stay installed: later runs find them there."""
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


@pytest.fixture
def kubectl(kubectl_session: Kubectl, crds: list[str]) -> Iterator[Kubectl]:
    """kubectl in a fresh namespace, deleted after the test."""
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    kubectl_session.run("create", "namespace", namespace)
    # kube-controller-manager adds the namespace's default ServiceAccount moments later; until then the API server
    # refuses Pods there, and the ReplicaSet controller's backoff after such refusals can outlast a test's wait.
    kubectl_session.wait_for(
        lambda: kubectl_session.run("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0,
        timeout=60, what=f"the default ServiceAccount of {namespace}",
    )  # fmt: skip
    yield Kubectl(kubectl_session.binary, namespace, kubectl_session.env)
    kubectl_session.run("delete", "namespace", namespace, "--wait=false", check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OperatorProcess:
    proc: subprocess.Popen[str]
    liveness: str
    log_path: Path
    metrics: str = ""
    """The URL of its Prometheus metrics."""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        try:
            with urllib.request.urlopen(self.liveness, timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


# Every operator the tests start runs as this service account, bound to the rules the chart grants in cluster mode
# (rendered from charts/): a right the chart lacks fails the test that needs it, and the API server's audit log
# (tests/cluster/audit-policy.yaml records this namespace's service accounts) tells which rights were used.
RBAC_NAMESPACE = "mlops-rbac"
OPERATOR_ACCOUNT = "mlops-rbac-operator"
SESSION_STARTED = datetime.now(UTC)


def render_chart(*args: str) -> list[dict[str, Any]]:
    """The chart rendered with helm (built with the cluster's binaries) as release ``mlops`` in RBAC_NAMESPACE."""
    helm = shutil.which("helm", path=os.environ.get("PATH"))
    if not helm:
        raise AssertionError("helm not found on PATH: run the tests through `make test` (it builds helm)")
    out = subprocess.run(
        [helm, "template", "mlops", str(ROOT / "charts" / "mlops-operator"), "--namespace", RBAC_NAMESPACE, *args],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(out) if d]


def account_kubeconfig(kubectl: Kubectl, account: str, directory: Path) -> Path:
    """A kubeconfig for the service account ``account`` of RBAC_NAMESPACE: the test cluster's server and CA, and a
    token of the account (no client certificate, which the API server would prefer)."""
    view = json.loads(kubectl.run("config", "view", "--raw", "--minify", "-o", "json").stdout)
    token = kubectl.run("create", "token", account, "--namespace", RBAC_NAMESPACE, "--duration=24h").stdout.strip()
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "test", "cluster": view["clusters"][0]["cluster"]}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "test", "user": account}}],
    }  # fmt: skip
    path = directory / f"{account}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def apply_rbac(kubectl: Kubectl, docs: list[dict[str, Any]]) -> None:
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RBAC_NAMESPACE}})
    for doc in docs:
        if doc["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
            namespace = doc["metadata"].get("namespace", RBAC_NAMESPACE)
            kubectl.run("apply", "--server-side", "--force-conflicts", "--field-manager=mlops-tests", "-f", "-",
                        "--namespace", namespace, input=yaml.safe_dump(doc))  # fmt: skip


@functools.cache
def operator_kubeconfig() -> Path:
    """The kubeconfig of the operator's service account with the chart's cluster-mode rules (made once a session)."""
    kubectl = Kubectl(_kubectl_binary())
    apply_rbac(kubectl, render_chart("--set", f"fullnameOverride={OPERATOR_ACCOUNT}"))
    return account_kubeconfig(kubectl, OPERATOR_ACCOUNT, Path(tempfile.mkdtemp(prefix="mlops-rbac-")))


def local_allowance(tmp_path: Path) -> tuple[str, ...]:
    """The outbound allowance of the local cluster's tests: files under pytest's base directory (every test's
    tmp_path) and servers on loopback. Tests of the policy itself pass their own."""
    return ("--allow-file-root", str(tmp_path.parent), "--allow-loopback")


def start_operator(
    tmp_path: Path, *args: str, outbound: tuple[str, ...] | None = None, kubeconfig: Path | None = None
) -> OperatorProcess:
    """Starts the operator with ``args``, ``outbound`` (default: ``local_allowance``) as its outbound policy, as the
    service account of ``kubeconfig`` (default: the chart's cluster-mode rules, ``operator_kubeconfig``)."""
    args = (*args, *(local_allowance(tmp_path) if outbound is None else outbound))
    env = {**os.environ, "KUBECONFIG": str(kubeconfig or operator_kubeconfig())}
    port, metrics_port = free_port(), free_port()
    liveness = f"http://127.0.0.1:{port}/healthz"
    log_path = tmp_path / f"operator-{port}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlops_operator", "run", "--liveness", liveness,
             "--metrics", f"127.0.0.1:{metrics_port}", *args],
            stdout=log, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
    op = OperatorProcess(proc, liveness, log_path, f"http://127.0.0.1:{metrics_port}/metrics")
    deadline = time.monotonic() + 60
    while not op.alive():
        if proc.poll() is not None or time.monotonic() > deadline:
            op.stop(signal.SIGKILL)
            raise AssertionError(f"the operator did not become live:\n{op.log()}")
        time.sleep(0.2)
    return op


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
