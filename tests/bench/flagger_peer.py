"""The peer of bench_canary's part 1 (defect): Flagger, built from its Go module, on the same cluster and the same
defect.

Flagger v1.36.1 (github.com/fluxcd/flagger, built by ``tests/cluster/build-binaries.sh flagger`` into
``<cache>/bin/flagger-v<version>/flagger``) runs as a local process against the cluster's KUBECONFIG, watching one
fresh namespace, with the Gateway API provider (``-mesh-provider gatewayapi:v1``): it writes the weights of an
HTTPRoute, and ``tests/dataplane/traffic.py`` sends the requests as that route says, as it does for our operator.
Each run:

- a Deployment ``fraud`` running our model server (``mlops-server``, so the Pod runner runs it; the template is the
  one our operator's builder makes: env, port, probes, the prometheus.io annotations) with the good model 1.0.0,
  a Gateway ``gw`` (no controller: only the route's parentRef), a MetricTemplate ``error-rate`` (Prometheus at
  $MLOPS_PROMETHEUS_URL: the 5xx share of mlops_server_requests_total of the canary's Pods, ``fraud-<rs>-<pod>``,
  over the analysis interval) and a Canary (provider gatewayapi:v1, analysis interval 10s, threshold 1,
  stepWeight 20, maxWeight 50, error-rate thresholdRange max 0.01);
- once Flagger has made fraud-primary and the HTTPRoute (phase Initialized): 40 requests/s through the HTTPRoute,
  and 2 s later the Deployment's template moves to 1.1.0 ``narrow`` (every request answers 500);
- t0 when the HTTPRoute first gives fraud-canary a weight above 0, t1 when it is back to fraud-primary 100 /
  fraud-canary 0; also when the Canary's phase turned Failed (Flagger's decision, written after the route).

Flagger's CRDs (artifacts/flagger/crd.yaml of the module) are applied server-side when missing, and removed after the
bench's Flagger runs (``remove_crds``: Flagger's kind Canary would shadow our short name canary in kubectl). Its log
stays in the temp directory (<namespace>-flagger.log).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace, ServiceAccount
from lightkube.types import PatchType, on_error_retry

from tests.dataplane import traffic

VERSION = "1.36.1"
MODULE = "github.com/fluxcd/flagger"
Body = dict[str, Any]

Canary = create_namespaced_resource("flagger.app", "v1beta1", "Canary", "canaries")
MetricTemplate = create_namespaced_resource("flagger.app", "v1beta1", "MetricTemplate", "metrictemplates")
HTTPRoute = create_namespaced_resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")
Gateway = create_namespaced_resource("gateway.networking.k8s.io", "v1", "Gateway", "gateways")

NAME = "fraud"
PORT = 8080
INTERVAL = "10s"
THRESHOLD = 1
STEP_WEIGHT = 20
MAX_WEIGHT = 50
ERROR_MAX = 0.01
SETUP_TIMEOUT = 180.0


def binary() -> Path:
    """Where build-binaries.sh puts Flagger (the cache of tests/cluster/common.sh)."""
    cache = os.environ.get("MLOPS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mlops-operator"
    )
    return Path(cache) / "bin" / f"flagger-v{VERSION}" / "flagger"


def crd_file() -> Path | None:
    """artifacts/flagger/crd.yaml of the module in the Go module cache (the build put it there)."""
    go = shutil.which("go")
    if go is None:
        return None
    try:
        modcache = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(modcache.strip()) / f"{MODULE}@v{VERSION}" / "artifacts" / "flagger" / "crd.yaml"
    return path if path.is_file() else None


def unavailable() -> str | None:
    """Why the peer cannot run here (None: it can)."""
    if not os.access(binary(), os.X_OK):
        return f"not built: no {binary()} (tests/cluster/build-binaries.sh flagger builds {MODULE} v{VERSION})"
    if not os.environ.get("MLOPS_PROMETHEUS_URL"):
        return 'no Prometheus: MLOPS_PROMETHEUS_URL is unset (eval "$(tests/cluster/env.sh)" sets it)'
    return None


async def ensure_crds(client: AsyncClient) -> None:
    try:
        for name in ("canaries.flagger.app", "metrictemplates.flagger.app"):
            await client.get(CustomResourceDefinition, name)
        return
    except ApiError:
        pass
    crds = crd_file()
    if crds is None:
        raise RuntimeError(f"Flagger's CRDs are not installed and {MODULE}@v{VERSION} is not in the module cache")
    pipe = asyncio.subprocess
    proc = await asyncio.create_subprocess_exec("kubectl", "apply", "--server-side", "-f", str(crds),
                                                stdout=pipe.PIPE, stderr=pipe.STDOUT)  # fmt: skip
    output, _ = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"kubectl apply of Flagger's CRDs failed: {output.decode().strip()}")
    for _ in range(100):
        try:
            await client.get(CustomResourceDefinition, "canaries.flagger.app")
            return
        except ApiError:
            await asyncio.sleep(0.1)


async def remove_crds() -> None:
    """Deletes Flagger's CRDs (and with them any Canary left): they must not stay on a cluster of ours, where
    Flagger's kind Canary (singular "canary") would shadow the short name of our CanaryRollout in kubectl."""
    crds = crd_file()
    if crds is None:
        return
    proc = await asyncio.create_subprocess_exec("kubectl", "delete", "--ignore-not-found", "--wait=false", "-f",
                                                str(crds), stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)  # fmt: skip
    await proc.wait()


# --- the objects -------------------------------------------------------------------------------------------------


def container(model: str, version: str, source: str, checksum: str, signature: Body) -> Body:
    """The model server container as builders/serving.py writes it."""
    env = {
        "MLOPS_MODEL_NAME": model,
        "MLOPS_MODEL_VERSION": version,
        "MLOPS_MODEL_SOURCE": source,
        "MLOPS_MODEL_FORMAT": "sklearn",
        "MLOPS_MODEL_CHECKSUM": checksum,
        "MLOPS_MODEL_SIGNATURE": json.dumps(signature, sort_keys=True, separators=(",", ":")),
        "MLOPS_SERVER_PORT": str(PORT),
        "MLOPS_MAX_REQUEST_BYTES": str(8 * 1024 * 1024),
        "MLOPS_GRACEFUL_SECONDS": "20",
    }

    def probe(path: str, period: int, timeout: int, failures: int) -> Body:
        return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": timeout,
                "failureThreshold": failures}  # fmt: skip

    return {
        "name": "server",
        "image": "mlops-operator:0.1.0",
        "command": ["mlops-server"],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "startupProbe": probe("/v2/health/ready", 5, 2, 120),
        "readinessProbe": probe("/v2/health/ready", 5, 2, 3),
        "livenessProbe": probe("/v2/health/live", 10, 5, 3),
        # No preStop sleep, unlike ours: Flagger v1.36.1 is built on k8s.io/api v0.27, which has no sleep handler, so
        # the primary Deployment it copies from this template would carry an empty preStop (the API server refuses
        # it). It only matters when a Pod goes, after the figure is taken.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def deployment(server: Body) -> Body:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME, "labels": {"app": NAME}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": NAME}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": NAME},
                             "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(PORT),
                                             "prometheus.io/path": "/metrics"}},
                "spec": {"automountServiceAccountToken": False, "enableServiceLinks": False,
                         "terminationGracePeriodSeconds": 30, "containers": [server],
                         "volumes": [{"name": "tmp", "emptyDir": {}}]},
            },
        },
    }  # fmt: skip


def metric_template(prometheus: str) -> Body:
    # Flagger's canary Pods are <target>-<replicaset hash>-<pod hash>; the primary's are <target>-primary-...
    canary_pods = 'namespace="{{ namespace }}",pod=~"{{ target }}-[0-9a-z]+-[0-9a-z]+"'
    query = (f'sum(rate(mlops_server_requests_total{{{canary_pods},code=~"5.."}}[{{{{ interval }}}}])) / '
             f"sum(rate(mlops_server_requests_total{{{canary_pods}}}[{{{{ interval }}}}]))")  # fmt: skip
    return {
        "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate", "metadata": {"name": "error-rate"},
        "spec": {"provider": {"type": "prometheus", "address": prometheus}, "query": query},
    }  # fmt: skip


def canary() -> Body:
    return {
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary", "metadata": {"name": NAME},
        "spec": {
            "provider": "gatewayapi:v1",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "progressDeadlineSeconds": 120,
            "service": {"port": PORT, "targetPort": PORT, "gatewayRefs": [{"name": "gw"}]},
            "analysis": {
                "interval": INTERVAL, "threshold": THRESHOLD, "maxWeight": MAX_WEIGHT, "stepWeight": STEP_WEIGHT,
                "metrics": [{"name": "error-rate", "templateRef": {"name": "error-rate"}, "interval": INTERVAL,
                             "thresholdRange": {"max": ERROR_MAX}}],
            },
        },
    }  # fmt: skip


GATEWAY = {
    "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw"},
    "spec": {"gatewayClassName": "none", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
}  # fmt: skip


# --- a run -------------------------------------------------------------------------------------------------------


@dataclass
class PeerRun:
    defect_to_stable: float | None = None
    """t1 - t0: from fraud-canary's first weight above 0 in the HTTPRoute to fraud-primary 100 again."""
    defect_to_failed: float | None = None
    """From t0 to the Canary's phase Failed."""
    change_to_t0: float | None = None
    """From the Deployment's template change to t0: Flagger's revision detection, canary scale-up and first step."""
    total: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    by_version: dict[str, int] = field(default_factory=dict)
    phase: str = ""
    log: Path | None = None
    problem: str | None = None


def start_flagger(namespace: str, prometheus: str, log: Path) -> subprocess.Popen[bytes]:
    """Flagger watching ``namespace`` only, through the cluster's KUBECONFIG; its log to ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(
            [str(binary()), "-kubeconfig", os.environ["KUBECONFIG"], "-namespace", namespace,
             "-mesh-provider", "gatewayapi:v1", "-metrics-server", prometheus, "-port", str(free_port()),
             "-log-level", "info"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def weights(spec: Body) -> dict[str, int]:
    """The backend weights of an HTTPRoute's spec (Flagger writes one rule: primary and canary)."""
    rules = spec.get("rules") or []
    if not rules:
        return {}
    return {ref.get("name"): int(ref.get("weight", 1)) for ref in rules[0].get("backendRefs") or []}


def status_of(obj: Any) -> Body:
    return dict(obj.status or {})


async def wait_until(get: Callable[[], Any], check: Callable[[Any], bool], what: str, within: float) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(ApiError):
            last = await get()
            if check(last):
                return last
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{what} not reached within {within:.0f}s; last status "
                       f"{status_of(last) if last is not None else None}")  # fmt: skip


async def new_namespace(client: AsyncClient, name: str) -> None:
    await client.create(Namespace(metadata=ObjectMeta(name=name)))
    await wait_until(lambda: client.get(ServiceAccount, "default", namespace=name), lambda _: True,
                     f"namespace {name}'s default ServiceAccount", 60)  # fmt: skip


async def create(client: AsyncClient, res: Any, body: Body, namespace: str) -> None:
    await client.create(res.from_dict({**body, "metadata": {**body["metadata"], "namespace": namespace}}))


async def run(client: AsyncClient, namespace: str, good: tuple[str, str], narrow: tuple[str, str], signature: Body,
              request: Mapping[str, Any], model: str, versions: tuple[str, str], rate: float, lead: float,
              run_timeout: float) -> PeerRun:  # fmt: skip
    """One run in a fresh ``namespace`` (deleted at the end): ``good`` and ``narrow`` are (source URI, checksum)."""
    await ensure_crds(client)
    await new_namespace(client, namespace)
    log = Path(tempfile.gettempdir()) / f"{namespace}-flagger.log"
    out = PeerRun(log=log)
    proc: subprocess.Popen[bytes] | None = None
    try:
        stable, candidate = versions
        prometheus = os.environ["MLOPS_PROMETHEUS_URL"]
        await create(client, Gateway, GATEWAY, namespace)
        await create(client, MetricTemplate, metric_template(prometheus), namespace)
        await create(client, Deployment, deployment(container(model, stable, *good, signature)), namespace)
        await wait_until(lambda: client.get(Deployment, NAME, namespace=namespace),
                         lambda d: (d.status.readyReplicas or 0) >= 1, f"Deployment {NAME} ready",
                         SETUP_TIMEOUT)  # fmt: skip
        proc = start_flagger(namespace, prometheus, log)
        await create(client, Canary, canary(), namespace)
        await wait_until(lambda: client.get(Canary, NAME, namespace=namespace),
                         lambda c: status_of(c).get("phase") == "Initialized", "the Canary Initialized",
                         SETUP_TIMEOUT)  # fmt: skip

        marks: dict[str, float] = {}
        last: dict[str, Any] = {}
        done = asyncio.Event()
        primary, canary_svc = f"{NAME}-primary", f"{NAME}-canary"

        async def watch_route() -> None:
            async for _, route in client.watch(HTTPRoute, namespace=namespace, on_error=on_error_retry):
                w = weights(dict(route.spec or {}))
                last["route"] = w
                now = time.monotonic()
                if "t0" not in marks and w.get(canary_svc, 0) > 0:
                    marks["t0"] = now
                if "t0" in marks and w.get(primary) == 100 and w.get(canary_svc, 0) == 0:
                    marks["t1"] = now
                    done.set()

        async def watch_canary() -> None:
            async for _, cd in client.watch(Canary, namespace=namespace, on_error=on_error_retry):
                last["canary"] = {k: status_of(cd).get(k) for k in ("phase", "canaryWeight", "failedChecks")}
                if "failed" not in marks and status_of(cd).get("phase") == "Failed":
                    marks["failed"] = time.monotonic()

        watches = [asyncio.create_task(watch_route()), asyncio.create_task(watch_canary())]
        stop = asyncio.Event()
        load = asyncio.create_task(traffic.drive(namespace, f"httproute/{NAME}", request, model, rate,
                                                 duration=run_timeout + 60, concurrency=16, client=client,
                                                 stop=stop))  # fmt: skip
        await asyncio.sleep(lead)
        await client.patch(Deployment, NAME, {"spec": {"template": {"spec": {"containers": [
            container(model, candidate, *narrow, signature)]}}}}, namespace=namespace,
            patch_type=PatchType.STRATEGIC)  # fmt: skip
        marks["change"] = time.monotonic()
        try:
            await asyncio.wait_for(done.wait(), run_timeout)
            # The decision (phase Failed) follows the route's reset within Flagger's same step.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wait_until(lambda: client.get(Canary, NAME, namespace=namespace),
                                                  lambda c: status_of(c).get("phase") == "Failed", "Failed", 30),
                                       35)  # fmt: skip
        except TimeoutError:
            out.problem = (f"no return to {primary}=100 within {run_timeout:.0f}s of the template change; HTTPRoute "
                           f"weights {last.get('route')}; Canary {last.get('canary')}; see {out.log}")  # fmt: skip
        stop.set()
        report = await load
        for task in watches:
            task.cancel()
        cd = await client.get(Canary, NAME, namespace=namespace)
        out.phase = str(status_of(cd).get("phase"))
        if "failed" not in marks and out.phase == "Failed":
            marks["failed"] = time.monotonic()
        out.total, out.failed, out.errors = report.total, report.failed, dict(report.errors)
        out.by_version = dict(report.by_version)
        if "t0" in marks and "t1" in marks:
            out.defect_to_stable = marks["t1"] - marks["t0"]
        if "t0" in marks:
            out.change_to_t0 = marks["t0"] - marks["change"]
        if "t0" in marks and "failed" in marks:
            out.defect_to_failed = marks["failed"] - marks["t0"]
        return out
    except (TimeoutError, RuntimeError, ApiError) as exc:
        out.problem = f"{type(exc).__name__}: {exc}; see {out.log}"
        return out
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        with contextlib.suppress(ApiError):
            await client.delete(Namespace, namespace)
