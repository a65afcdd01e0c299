"""What the integration tests share: kubectl on the test cluster, waits on an object's status, the bodies of our
kinds, and the operator as a real process (started as the chart's service account, its closing counts read).

conftest.py holds the fixtures and hooks built on these; test files import them with ``from support import ...``
(pytest puts this directory on sys.path, as it does for conftest).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

Body = dict[str, Any]
Check = Callable[[Body], Any]
"""A test of an object read from the API server: true once it stands as the test waits for."""


# --- kubectl -----------------------------------------------------------------------------------------------------


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
    artifacts: tuple[Path, str] | None = None
    """In container mode: a folder and the HTTP address that serves it, for artifacts the Pods download (a
    container does not see this machine's files)."""

    def served(self, uri: str) -> str:
        """A ``file://`` URI as the Pods of this namespace reach it: as is (they are processes of this machine), or,
        in container mode, the file's address on the tests' artifact server."""
        if self.artifacts is None:
            return uri
        folder, base = self.artifacts
        path = Path(uri.removeprefix("file://")).resolve()
        return f"{base}/{urllib.parse.quote(str(path.relative_to(folder)))}"

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
        """Calls ``predicate`` until it returns something true, and returns that. An AssertionError it raises counts
        as a no, and its message is the last answer a timeout shows (with the namespace's ``situation``)."""
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
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}\n{self.situation()}")

    def situation(self) -> str:
        """What the namespace's Deployments, Pods and warning Events say, for a timeout's message: a wait on the
        operator may have failed because the cluster did not do its part (Pods not scheduled, not started)."""
        lines = []
        with contextlib.suppress(Exception):
            columns = ("custom-columns=KIND:.kind,NAME:.metadata.name,PHASE:.status.phase,NODE:.spec.nodeName,"
                       "READY:.status.readyReplicas,REPLICAS:.spec.replicas")  # fmt: skip
            lines.append(self.run("get", "deployments,pods", "-o", columns).stdout.strip())
            warnings = "custom-columns=OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message"
            events = self.run("get", "events", "--field-selector", "type=Warning", "-o", warnings).stdout
            lines.append("\n".join(events.strip().splitlines()[-10:]))
        return "\n".join(line for line in lines if line)


def kubectl_binary() -> str:
    found = shutil.which("kubectl", path=os.environ.get("PATH"))
    if not found:
        pytest.exit("kubectl not found on PATH: run the tests through `make test`", returncode=2)
    return found


def events(kubectl: Kubectl, name: str, reason: str | None = None) -> list[Body]:
    """The namespace's Events about the object ``name`` (of the reason ``reason``, when given)."""
    selector = f"involvedObject.name={name}" + (f",reason={reason}" if reason else "")
    out = kubectl.run("get", "events", "--field-selector", selector, "-o", "json").stdout
    return json.loads(out)["items"]  # type: ignore[no-any-return]


# --- status ------------------------------------------------------------------------------------------------------


def condition(obj: Body, type_: str) -> dict[str, Any]:
    """The condition ``type_`` of the object's status, {} when it has none."""
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def condition_is(type_: str, status: str | None = None, reason: str | None = None) -> Check:
    """The check: the condition ``type_`` has ``status`` and ``reason`` (each when given)."""

    def check(obj: Body) -> bool:
        found = condition(obj, type_)
        return bool(found) and status in (None, found.get("status")) and reason in (None, found.get("reason"))

    return check


def wait_status(kubectl: Kubectl, kind: str, name: str, what: str, check: Check, timeout: float = 40) -> Body:
    """Waits until ``check`` holds for the object ``kind``/``name`` and returns the object. A timeout says where the
    object stood last (its generation and status) and what the namespace's workloads say."""

    def probe() -> Body:
        obj = kubectl.get(kind, name)
        if not check(obj):
            # wait_for keeps it as the last answer.
            raise AssertionError(f"generation {obj['metadata'].get('generation')}, status {obj.get('status')}")
        return obj

    return kubectl.wait_for(probe, timeout=timeout, what=f"{kind} {name}: {what}")  # type: ignore[no-any-return]


# --- the image and the data plane --------------------------------------------------------------------------------

PROCESS, CONTAINER = "process", "container"
DATA_PLANE_LABEL = "mlops.io/data-plane"
"""A namespace's label that tells the local Pod runner how its model-server Pods run (tests/dataplane/runner.py)."""


@functools.cache
def container_engine() -> list[str] | None:
    """The command that runs containers here, as the local Pod runner runs them (docker where an engine answers,
    else podman with runc and rlimits within the current hard limits), else None."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.dataplane.runner import engine_command

    try:
        return engine_command()
    except SystemExit:
        return None


@functools.cache
def built_image() -> str:
    """The project's image, built by `make image` once a session (layers cached: a second build takes seconds);
    its tag, which is the operator's default model-server image. Skips where no engine runs at all."""
    if container_engine() is None:
        pytest.skip("no container engine here (neither a docker engine nor podman): the image cannot be built or run")
    started = time.monotonic()
    proc = subprocess.run([str(ROOT / "tests/cluster/image.sh")], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"make image failed:\n{proc.stderr[-4000:]}"
    tag = proc.stdout.strip().splitlines()[-1]
    print(f"image {tag} built in {time.monotonic() - started:.1f}s")
    return tag


# --- ModelVersion ------------------------------------------------------------------------------------------------


def artifact(directory: Path, name: str, size: int = 50_000) -> tuple[str, str]:
    """A file of random bytes (the same for the same name) in ``directory``: its file:// URI and its checksum."""
    path = directory / name
    path.write_bytes(random.Random(name).randbytes(size))
    return f"file://{path}", "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def version(name: str, model: str, ver: str, source: str, checksum: str | None = None, stage: str = "development",
            metrics: dict[str, float] | None = None, gates: list[dict[str, Any]] | None = None,
            **spec: Any) -> Body:  # fmt: skip
    """A ModelVersion's body; ``spec`` adds fields to its spec."""
    body: Body = {
        "apiVersion": "mlops.io/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name},
        "spec": {"model": model, "version": ver, "source": source, "format": "sklearn", "stage": stage,
                 "metrics": [{"name": k, "value": v} for k, v in (metrics or {}).items()], "gates": gates or [],
                 **spec},
    }  # fmt: skip
    if checksum:
        body["spec"]["checksum"] = checksum
    return body


def wait_version(kubectl: Kubectl, name: str, what: str, timeout: float = 30, stage: str | None = None,
                 ready: str | None = None, reason: str | None = None) -> Body:  # fmt: skip
    """Waits until the ModelVersion's status has ``stage`` and its Ready condition ``ready`` and ``reason`` (each
    when given)."""
    ready_is = condition_is("Ready", ready, reason) if ready or reason else lambda _: True

    def check(obj: Body) -> bool:
        return stage in (None, obj.get("status", {}).get("stage")) and ready_is(obj)

    return wait_status(kubectl, "modelversion", name, what, check, timeout=timeout)


FEATURES = 4


@functools.cache
def _model_bytes(seed: str) -> bytes:
    import io

    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16))
    x = rng.normal(size=(200, FEATURES))
    y = (x @ rng.normal(size=FEATURES) > 0).astype(int)
    out = io.BytesIO()
    joblib.dump(LogisticRegression().fit(x, y), out)
    return out.getvalue()


def model_artifact(directory: Path, name: str) -> tuple[str, str]:
    """A real scikit-learn model (a logistic regression on FEATURES inputs, its weights drawn from ``name``) saved
    in ``directory``, which the model server loads: its file:// URI and its checksum."""
    path = directory / name
    path.write_bytes(_model_bytes(name))
    return f"file://{path}", "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def register(kubectl: Kubectl, tmp_path: Path, model: str, ver: str, stage: str = "development") -> str:
    """A ModelVersion of ``model`` with a real scikit-learn model (tmp_path/<model>-<ver>.joblib), which the model
    server Pods load and serve; returns its object name once the registry made it Ready."""
    source, checksum = model_artifact(tmp_path, f"{model}-{ver}.joblib")
    source = kubectl.served(source)
    name = f"{model}-{ver.replace('.', '-')}"
    signature = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]}
    kubectl.apply(version(name, model, ver, source, checksum, stage=stage, signature=signature))
    kubectl.run("wait", "--for=condition=Ready", "--timeout=30s", f"modelversion/{name}")
    return name


# --- ModelDeployment ---------------------------------------------------------------------------------------------


def deploy(kubectl: Kubectl, name: str, **spec: Any) -> None:
    """Applies the ModelDeployment ``name`` of model fraud (unless ``spec`` names another) with ``spec``."""
    kubectl.apply({"apiVersion": "mlops.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
                   "spec": {"model": "fraud", **spec}})  # fmt: skip


def patch(kubectl: Kubectl, name: str, spec: dict[str, Any]) -> None:
    """Merges ``spec`` into the ModelDeployment's spec (None removes a field)."""
    kubectl.run("patch", "modeldeployment", name, "--type=merge", "-p", json.dumps({"spec": spec}))


def serving(ver: str) -> Check:
    """The check: Ready, for the current generation, with ``ver`` stable and taking all traffic."""

    def check(obj: Body) -> bool:
        ready = condition(obj, "Ready")
        status = obj.get("status", {})
        return (
            ready.get("status") == "True"
            and ready.get("observedGeneration") == obj["metadata"]["generation"]
            and status.get("version") == ver
            and status.get("traffic") == f"{ver}=100"
            and len(status.get("versions", [])) == 1
        )

    return check


def wait_serving(kubectl: Kubectl, name: str, ver: str, ready_replicas: int | None = None,
                 timeout: float = 40) -> Body:  # fmt: skip
    """Waits until the ModelDeployment serves ``ver`` alone (``serving``), on ``ready_replicas`` when given."""
    check = serving(ver)
    if ready_replicas is None:
        return wait_status(kubectl, "modeldeployment", name, f"serving {ver}", check, timeout)
    return wait_status(kubectl, "modeldeployment", name, f"serving {ver} on {ready_replicas} ready replicas",
                       lambda o: check(o) and o["status"].get("readyReplicas") == ready_replicas, timeout)  # fmt: skip


# --- the operator process ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Closing:
    """What a controller's closing log line (written on SIGTERM) counts."""

    reconciles: int
    quiet: int
    """Reconciles that wrote nothing."""
    requests: dict[str, int]
    """The process's API requests by verb (the same on every controller's line)."""


CLOSING_LINE = re.compile(r"(\w+) reconciles: (\d+) \((\d+) wrote nothing\); API requests: (\{.*\})$")
WRITE_VERBS = frozenset({"apply", "patch", "delete", "create", "update"})


@dataclass
class OperatorProcess:
    proc: subprocess.Popen[str]
    liveness: str
    log_path: Path
    metrics: str = ""
    """The URL of its Prometheus metrics."""
    target: Path | None = None
    """The file that has the local Prometheus scrape those metrics (while the process runs)."""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        try:
            with urllib.request.urlopen(self.liveness, timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        if self.target is not None:
            self.target.unlink(missing_ok=True)
        return code

    def closing(self) -> dict[str, Closing]:
        """Each controller's closing counts, by kind (after a stop with SIGTERM)."""
        found = {}
        for line in self.log().splitlines():
            if match := CLOSING_LINE.search(line):
                kind, reconciles, quiet, requests = match.groups()
                found[kind] = Closing(int(reconciles), int(quiet), json.loads(requests))
        return found


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
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
    kubectl = Kubectl(kubectl_binary())
    apply_rbac(kubectl, render_chart("--set", f"fullnameOverride={OPERATOR_ACCOUNT}"))
    return account_kubeconfig(kubectl, OPERATOR_ACCOUNT, Path(tempfile.mkdtemp(prefix="mlops-rbac-")))


def scrape_target(address: str) -> Path | None:
    """Has the local cluster's Prometheus scrape ``address`` (job mlops-operator): a target file in the monitoring
    folder that tests/cluster/env.sh names (none without it)."""
    folder = os.environ.get("MLOPS_MONITORING_DIR")
    if not folder:
        return None
    targets = Path(folder) / "targets"
    targets.mkdir(parents=True, exist_ok=True)
    path = targets / f"operator-{address.replace(':', '-')}.json"
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps([{"targets": [address]}]))
    partial.rename(path)
    return path


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
    op = OperatorProcess(proc, liveness, log_path, f"http://127.0.0.1:{metrics_port}/metrics",
                         scrape_target(f"127.0.0.1:{metrics_port}"))  # fmt: skip
    deadline = time.monotonic() + 60
    while not op.alive():
        if proc.poll() is not None or time.monotonic() > deadline:
            op.stop(signal.SIGKILL)
            raise AssertionError(f"the operator did not become live:\n{op.log()}")
        time.sleep(0.2)
    return op


# What the operator writes in a namespace: its kinds and the children of a ModelDeployment (replicas router).
WRITTEN = ("modelversions,modeldeployments,canaryrollouts,driftmonitors,alertrules,"
           "deployments,services,horizontalpodautoscalers,poddisruptionbudgets,configmaps")  # fmt: skip
CONTROLLED = ("ModelVersion", "ModelDeployment", "CanaryRollout", "DriftMonitor", "AlertRule")
"""The kinds with a controller of the runtime (the others pass kopf's intake)."""


def resource_versions(kubectl: Kubectl) -> dict[str, str]:
    """kind/name -> resourceVersion of every object of the namespace the operator may write (``WRITTEN``)."""
    items = json.loads(kubectl.run("get", WRITTEN, "-o", "json").stdout)["items"]
    return {f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items}


def assert_restart_writes_nothing(kubectl: Kubectl, tmp_path: Path, grace: float = 3) -> dict[str, Closing]:
    """Starts the operator over what a stopped one left in the namespace, waits until it reconciled every object of
    the ``CONTROLLED`` kinds and ``grace`` seconds more, and stops it. Fails unless no object changed (every
    resourceVersion the same, none added or gone) and each controller's closing line counts reconciles that all
    wrote nothing, and no write among the API requests. Returns the closing counts."""
    before = resource_versions(kubectl)
    present = {kind: sum(key.startswith(f"{kind}/") for key in before) for kind in CONTROLLED}
    op = start_operator(tmp_path, "--namespace", kubectl.namespace or "default")
    try:

        def reconciled() -> bool:
            samples = scrape(op.metrics)
            done = {
                kind: sum(v for (n, labels), v in samples.items()
                          if n == "mlops_operator_reconciles_total" and ("kind", kind) in labels)
                for kind in CONTROLLED
            }  # fmt: skip
            if any(done[kind] < present[kind] for kind in CONTROLLED):
                raise AssertionError(f"reconciled {done} of {present}")
            return True

        kubectl.wait_for(reconciled, timeout=60, what="the restarted operator to reconcile every object")
        time.sleep(grace)
    finally:
        assert op.stop(signal.SIGTERM) == 0, op.log()
    after = resource_versions(kubectl)
    changed = {key: (before.get(key), after.get(key)) for key in before.keys() | after.keys()
               if before.get(key) != after.get(key)}  # fmt: skip
    assert not changed, f"the restarted operator changed these objects (resourceVersion before, after): {changed}"
    closing = op.closing()
    assert set(closing) == set(CONTROLLED), op.log()
    for kind, counts in closing.items():
        assert counts.reconciles >= present[kind], (kind, counts)
        assert counts.quiet == counts.reconciles, (kind, counts)
        assert not WRITE_VERBS & set(counts.requests), (kind, counts)
    return closing


# --- the local Prometheus and Alertmanager ------------------------------------------------------------------------

SETUP = 'run `tests/cluster/monitoring.sh up` and `eval "$(tests/cluster/monitoring.sh env)"` (or `make test`)'


@dataclass(frozen=True)
class Monitoring:
    prometheus: str
    alertmanager: str
    directory: Path
    """Where monitoring.sh keeps its state; targets/*.json are the scrape targets of the job mlops-operator."""


def call(url: str, body: Any = None) -> Any:
    """GET ``url``, or POST ``body`` as JSON; the decoded JSON answer (None for an empty one)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200, (url, resp.status)
        text = resp.read()
    return json.loads(text) if text.strip() else None


def prometheus_data(monitoring: Monitoring, path: str, **params: str) -> Any:
    """The ``data`` of a Prometheus API answer, which must say success."""
    answer = call(f"{monitoring.prometheus}{path}?{urllib.parse.urlencode(params)}")
    assert answer["status"] == "success", answer
    return answer["data"]
