"""Canary analysis on the local cluster, in one run: how fast a defect leaves the traffic, how often a healthy canary
is rolled back by noisy latency, and what the analysis costs the operator. Three parts, each printed beside its
comparison.

1. defect: the time from a defect reaching the traffic to all traffic on the stable version, p50 / p99 / max over
   ``--runs`` runs. Each run has a fresh namespace and operator: fraud 1.0.0 (a logistic regression) serving on 1
   replica behind an HTTPRoute (router gatewayAPI, strategy canary), 1.1.0 ``narrow`` (trained on 3 of the 4
   features: every request answers 500), a steady 40 requests/s through the HTTPRoute (``tests/dataplane/traffic.py``
   routes them as the route's weights say), and a CanaryRollout [setWeight 20, analysis {count: 3}, setWeight 50],
   interval 10s, errorRate max 0.01, failureLimit 0, the direct provider. From the ModelDeployment's watch: t0 when
   its status first gives the canary a weight above 0, t1 when its status.traffic is ``1.0.0=100`` again; also when
   the CanaryRollout decided (phase RollingBack or RolledBack), and the share of requests that failed from the
   start of the load (2 s before the version change) to t1. The issue's peer is Flagger, built from its Go module
   (``tests/cluster/build-binaries.sh flagger``): when its binary is there, the same defect under Flagger
   (``tests/bench/flagger_peer.py``: gatewayapi:v1 provider, interval 10s, threshold 1, stepWeight 20, maxWeight 50,
   a Prometheus error-rate max 0.01) runs ``--runs`` times after ours and is printed beside it; else the line
   printed says why not (``FLAGGER_NOT_BUILT``).
2. noise: false rollbacks of a healthy canary. 1.0.0 and 1.1.0 are the same good model, 1 replica each, 50/50
   through the HTTPRoute (a CanaryRollout [setWeight 50, pause]: it never judges), under alternating bursts of 20
   and 200 requests/s of 1024 rows each (3 s each, up to 64 in flight; BENCH_NOISE_ROWS changes the rows) for
   ``--noise-seconds`` after a 10 s baseline, with noisy neighbours after the baseline (two processes that take a
   core for 2 to 6 s, then rest 2 to 6 s, seeded). Both versions' Pods are read every 2 s (their /metrics, as the direct
   provider reads them) and cut into consecutive 10 s windows of 5 samples a side, each judged on latencyP95 two
   ways, as an analysis with failureLimit 0 would roll back: ours, ``judge.classify`` of the two versions' samples
   (increase, allowedIncrease 1.2, 95 %): a failure is High; and a plain threshold as users set one: the canary's
   p95 over the window above 1.2 x the stable version's p95 over the first (baseline) window. The baseline window
   is judged by neither. Every failure is a false rollback.
3. cpu: the operator's CPU per analysis measurement with 100 rollouts running: 100 ModelDeployments in a namespace
   labelled mlops.io/data-plane=simulated (Pods Ready at once, no server processes), each with a canary (stable
   1.0.0, version 1.1.0, strategy canary, router gatewayAPI) held by a CanaryRollout [setWeight 10, analysis
   {count: 1000}], interval 10s, the prometheus provider at $MLOPS_PROMETHEUS_URL, errorRate max 0.01 and
   latencyP99 compared (step 2s), noData wait with a 1h deadline (simulated Pods have no metrics: every rollout
   keeps measuring). Once all are in their analysis step: the operator process's CPU seconds (psutil) and the
   measurements it counted (mlops_operator_canary_measurements_total, from its /metrics) over 60 s. Beside it: the
   same operator over 30 s with the 100 ModelDeployments and no rollout.

Run (the local cluster up, the CRDs of crds/ and the Gateway API's applied, as `make bench` does):

    eval "$(tests/cluster/env.sh)"
    .venv/bin/python tests/bench/bench_canary.py [--only defect|noise|cpu] [--runs 5] [--noise-seconds 120]

About 11 minutes with the defaults on this 2-core machine (noise 3 min, defect 50 s a run, cpu 3.7 min). Namespaces
bench-canary-*, deleted at the end; each operator's log stays in the temp directory (<namespace>-operator.log).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import io
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import numpy as np
import psutil
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Namespace, Pod, ServiceAccount
from lightkube.types import PatchType, on_error_retry
from prometheus_client.parser import text_string_to_metric_families

from mlops_operator.api.canaryrollout import AnalysisMetric
from mlops_operator.builders.serving import selector
from mlops_operator.logic import measure
from mlops_operator.logic.judge import MetricRule, classify
from mlops_operator.providers import Target
from mlops_operator.providers.direct import Readings, values

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench import flagger_peer
from tests.bench.bench_deployments import free_port, make_room, set_pods, wait_live
from tests.dataplane import traffic

# --- the peer of part 1: the one place that says why it was not measured ----------------------------------------------
FLAGGER_NOT_BUILT = "peer Flagger: not measured: {why}"

MODEL = "fraud"
STABLE, CANDIDATE = "1.0.0", "1.1.0"
FEATURES = ["amount", "age_days", "merchant_risk", "hour"]
GATEWAY = {"type": "gatewayAPI", "parentRefs": [{"name": "gw"}]}
ERRORS = {"name": "errors", "builtin": "errorRate", "max": 0.01}
DEFECT_RATE = 40.0
DEFECT_STEPS: list[Body] = [{"setWeight": 20}, {"analysis": {"count": 3}}, {"setWeight": 50}]
LEAD_SECONDS = 2.0
RUN_TIMEOUT = 240.0
NOISE_RATES = (20.0, 200.0)
BURST_SECONDS = 3.0
NOISE_CONCURRENCY = 64
SAMPLE_SECONDS = 2.0
WINDOW_SAMPLES = 5
ALLOWED_INCREASE = 1.2
CONFIDENCE = 0.95
ROLLOUTS = 100
CPU_SECONDS = 60.0
IDLE_SECONDS = 30.0
CONCURRENCY = 16
ModelVersion = create_namespaced_resource("mlops.io", "v1alpha1", "ModelVersion", "modelversions")
ModelDeployment = create_namespaced_resource("mlops.io", "v1alpha1", "ModelDeployment", "modeldeployments")
CanaryRollout = create_namespaced_resource("mlops.io", "v1alpha1", "CanaryRollout", "canaryrollouts")
Body = dict[str, Any]
T = TypeVar("T")


# --- the operator as a process ---------------------------------------------------------------------------------------


@dataclass
class Operator:
    proc: subprocess.Popen[bytes]
    log: Path
    metrics: str
    """The URL of its Prometheus metrics."""

    @classmethod
    def start(cls, namespace: str, *extra: str) -> Operator:
        port, metrics_port = free_port(), free_port()
        liveness = f"http://127.0.0.1:{port}/healthz"
        log = Path(tempfile.gettempdir()) / f"{namespace}-operator.log"
        # Its default Prometheus stays unset: an analysis without a provider of its own would query it.
        env = {k: v for k, v in os.environ.items() if k != "MLOPS_OPERATOR_PROMETHEUS_URL"}
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mlops_operator", "run", "--namespace", namespace, "--liveness", liveness,
                 "--metrics", f"127.0.0.1:{metrics_port}", "--allow-file-root", tempfile.gettempdir(), *extra],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        wait_live(proc, liveness, log)
        return cls(proc, log, f"http://127.0.0.1:{metrics_port}/metrics")

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)

    def measurements(self) -> Counter[str]:
        """mlops_operator_canary_measurements_total by verdict, from its /metrics."""
        with urllib.request.urlopen(self.metrics, timeout=5) as resp:
            text = resp.read().decode()
        out: Counter[str] = Counter()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "mlops_operator_canary_measurements_total":
                    out[sample.labels.get("verdict", "")] += int(sample.value)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# --- the cluster ------------------------------------------------------------------------------------------------------


async def new_namespace(client: AsyncClient, name: str, simulated: bool = False) -> str:
    """Creates the namespace and waits for its default ServiceAccount (until it exists the API server refuses Pods
    there, and the ReplicaSet controller backs off)."""
    labels = {"mlops.io/data-plane": "simulated"} if simulated else {}
    await client.create(Namespace(metadata=ObjectMeta(name=name, labels=labels)))
    deadline = time.monotonic() + 60
    while True:
        try:
            await client.get(ServiceAccount, "default", namespace=name)
            return name
        except ApiError:
            if time.monotonic() > deadline:
                raise SystemExit(f"namespace {name}: no default ServiceAccount after 60s") from None
            await asyncio.sleep(0.2)


async def delete_namespaces(client: AsyncClient, names: list[str]) -> None:
    """Deletes the namespaces and waits until they are gone, at most two minutes."""
    for name in names:
        with contextlib.suppress(ApiError):
            await client.delete(Namespace, name)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not [n for n in await list_all(client, Namespace) if n.metadata.name in names]:
            return
        await asyncio.sleep(1)


async def require_gateway_api(client: AsyncClient) -> None:
    try:
        await client.get(CustomResourceDefinition, "httproutes.gateway.networking.k8s.io")
    except ApiError:
        raise SystemExit(
            "the Gateway API CRDs are not installed: kubectl apply --server-side -f "
            '"$(tests/cluster/third-party-crds.sh gateway-api)" (make bench does)'
        ) from None


async def list_all(client: AsyncClient, res: Any, namespace: str | None = None, **selectors: Any) -> list[Any]:
    return [o async for o in client.list(res, namespace=namespace, **selectors)]


async def create(client: AsyncClient, res: Any, body: Body, namespace: str) -> None:
    obj: Any = res.from_dict({**body, "metadata": {**body["metadata"], "namespace": namespace}})
    await client.create(obj)


def status_of(obj: Any) -> Body:
    return dict(obj.status or {})


def _condition(obj: Any, type_: str) -> Body:
    return next((c for c in status_of(obj).get("conditions") or [] if c.get("type") == type_), {})


async def wait_for(get: Callable[[], Any], check: Callable[[Any], Any], what: str, within: float = 90,
                   every: float = 0.2) -> Any:  # fmt: skip
    """Calls ``get`` every ``every`` seconds until ``check`` holds for its answer; exits naming ``what`` and the last
    status."""
    deadline = time.monotonic() + within
    while True:
        obj = await get()
        if check(obj):
            return obj
        if time.monotonic() > deadline:
            status = (
                f"{len(obj)} objects, e.g. {[status_of(o) for o in obj[:2]]}"
                if isinstance(obj, list)
                else status_of(obj)
            )
            raise SystemExit(f"timed out after {within:.0f}s waiting for {what}; last status: {status}")
        await asyncio.sleep(every)


def serving(version: str, replicas: int = 1) -> Callable[[Any], bool]:
    """The check: Ready for the current generation, ``version`` alone taking all traffic on ``replicas``."""

    def check(md: Any) -> bool:
        ready, status = _condition(md, "Ready"), status_of(md)
        return (ready.get("status") == "True" and ready.get("observedGeneration") == md.metadata.generation
                and status.get("traffic") == f"{version}=100" and len(status.get("versions") or []) == 1
                and status.get("readyReplicas") == replicas)  # fmt: skip

    return check


def canary_weight(md: Any) -> int:
    versions = status_of(md).get("versions") or []
    return next((int(v.get("weight") or 0) for v in versions if v.get("role") == "canary"), 0)


# --- the objects -----------------------------------------------------------------------------------------------------


def transactions(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.lognormal(4.0, 1.0, n), rng.uniform(0, 3000, n), rng.beta(2, 5, n),
                         rng.integers(0, 24, n).astype(np.float64)])  # fmt: skip
    logit = -6.0 + 1.2 * np.log(x[:, 0]) - 0.001 * x[:, 1] + 6 * x[:, 2]
    return x, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)


def request(rows: int) -> Body:
    """A V2 inference request of ``rows`` transactions."""
    x, _ = transactions(rows, seed=99)
    return {"inputs": [{"name": "features", "datatype": "FP64", "shape": [rows, 4], "data": x.tolist()}],
            "outputs": [{"name": "predict"}]}  # fmt: skip


REQUEST = request(8)
# The bursts send larger requests: with 8 rows a server answers a burst of 200/s as fast as a trickle (the p95 did
# not move); with 1024 each costs the server enough that a burst queues and latency moves with the load.
NOISE_ROWS = int(os.environ.get("BENCH_NOISE_ROWS", "1024"))
NOISE_REQUEST = request(NOISE_ROWS)


def model_files(directory: Path, kind: str) -> tuple[str, str, str]:
    """A real model and its reference dataset (its own predictions as the prediction column): good (a logistic
    regression) or narrow (trained on 3 of the 4 features: every request fails). Returns the model's URI, its
    checksum and the reference's URI."""
    import joblib
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.linear_model import LogisticRegression

    x, y = transactions(3000, seed=7)
    columns_used = x[:, :3] if kind == "narrow" else x
    model = LogisticRegression(max_iter=1000).fit(columns_used, y)
    out = io.BytesIO()
    joblib.dump(model, out)
    path = directory / f"{kind}.joblib"
    path.write_bytes(out.getvalue())
    columns = {name: x[:, i] for i, name in enumerate(FEATURES)}
    columns["is_fraud"] = model.predict(columns_used)
    reference = directory / f"{kind}.parquet"
    pq.write_table(pa.table(columns), reference)
    return f"file://{path}", "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(), f"file://{reference}"


def model_version(model: str, version: str, source: str, checksum: str, **spec: Any) -> Body:
    return {
        "apiVersion": "mlops.io/v1alpha1", "kind": "ModelVersion",
        "metadata": {"name": f"{model}-{version.replace('.', '-')}"},
        "spec": {"model": model, "version": version, "source": source, "checksum": checksum, "format": "sklearn",
                 "stage": "development", **spec},
    }  # fmt: skip


async def register(client: AsyncClient, namespace: str, bodies: list[Body]) -> None:
    """Creates the ModelVersions and waits until the registry made each Ready."""
    for body in bodies:
        await create(client, ModelVersion, body, namespace)
    for body in bodies:
        name = body["metadata"]["name"]
        await wait_for(functools.partial(client.get, ModelVersion, name, namespace=namespace),
                       lambda o: _condition(o, "Ready").get("status") == "True", f"ModelVersion {name} Ready",
                       within=120)  # fmt: skip


async def register_fraud(client: AsyncClient, namespace: str, tmp: Path, candidate: str) -> None:
    """fraud 1.0.0 (good) and 1.1.0 (``candidate``), with their signature and reference."""
    signature = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [-1, 4], "features": FEATURES}]}
    bodies = []
    for version, kind in ((STABLE, "good"), (CANDIDATE, candidate)):
        source, checksum, reference = model_files(tmp, kind)
        bodies.append(model_version(MODEL, version, source, checksum, signature=signature,
                                    reference={"uri": reference, "prediction": "is_fraud"}))  # fmt: skip
    await register(client, namespace, bodies)


def model_deployment(name: str, model: str) -> Body:
    return {
        "apiVersion": "mlops.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
        "spec": {"model": model, "version": STABLE, "replicas": 1, "router": GATEWAY,
                 "rollout": {"strategy": "canary", "drainDelay": "2s"}},
    }  # fmt: skip


def canary_rollout(name: str, deployment: str, steps: list[Body], analysis: Body | None = None) -> Body:
    spec: Body = {"deploymentRef": {"name": deployment}, "steps": steps}
    if analysis is not None:
        spec["analysis"] = analysis
    return {"apiVersion": "mlops.io/v1alpha1", "kind": "CanaryRollout", "metadata": {"name": name}, "spec": spec}


async def serve_stable(client: AsyncClient, namespace: str, rollout: Body) -> None:
    """The ModelDeployment fraud serving 1.0.0 on one ready replica, and its CanaryRollout (the deployment's
    policy: it runs every new version)."""
    await create(client, ModelDeployment, model_deployment(MODEL, MODEL), namespace)
    await wait_for(lambda: client.get(ModelDeployment, MODEL, namespace=namespace), serving(STABLE),
                   f"fraud serving {STABLE}", within=120)  # fmt: skip
    await create(client, CanaryRollout, rollout, namespace)
    await wait_for(lambda: client.get(CanaryRollout, MODEL, namespace=namespace),
                   lambda o: status_of(o).get("phase") == "Idle", "the CanaryRollout Idle")  # fmt: skip


async def move_to(client: AsyncClient, namespace: str, name: str, version: str) -> None:
    await client.patch(ModelDeployment, name, {"spec": {"version": version}}, namespace=namespace,
                       patch_type=PatchType.MERGE)  # fmt: skip


# --- part 1: defect -> all traffic on the stable version --------------------------------------------------------------


@dataclass
class DefectRun:
    defect_to_stable: float | None = None
    """t1 - t0: from the canary's first weight above 0 to 1.0.0=100 again."""
    defect_to_decision: float | None = None
    """From t0 to the CanaryRollout's phase RollingBack or RolledBack."""
    defect_to_weight0: float | None = None
    """From t0 to the canary's weight 0 in the ModelDeployment's status (its traffic line may still name it)."""
    total: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    result: str = ""
    """The run's result and cause, as the CanaryRollout's status.run gives them."""
    problem: str | None = None
    """Why the run gave no figure (a timeout, with the status seen)."""


async def defect_run(client: AsyncClient, tmp: Path, index: int) -> DefectRun:
    namespace = await new_namespace(client, f"bench-canary-defect-{int(time.time())}-{index}")
    op = Operator.start(namespace)
    try:
        await register_fraud(client, namespace, tmp, "narrow")
        analysis = {"interval": "10s", "failureLimit": 0, "provider": {"direct": {}}, "metrics": [ERRORS]}
        await serve_stable(client, namespace, canary_rollout(MODEL, MODEL, DEFECT_STEPS, analysis))

        marks: dict[str, float] = {}
        last: dict[str, Any] = {}
        done = asyncio.Event()

        async def watch_deployment() -> None:
            async for _, md in client.watch(ModelDeployment, namespace=namespace, on_error=on_error_retry):
                last["md"] = status_of(md)
                now = time.monotonic()
                if "t0" not in marks and canary_weight(md) > 0:
                    marks["t0"] = now
                if "t0" in marks and "weight0" not in marks and canary_weight(md) == 0:
                    marks["weight0"] = now
                if "t0" in marks and status_of(md).get("traffic") == f"{STABLE}=100":
                    marks["t1"] = now
                    done.set()

        async def watch_rollout() -> None:
            async for _, cr in client.watch(CanaryRollout, namespace=namespace, on_error=on_error_retry):
                last["cr"] = status_of(cr)
                if "decided" not in marks and status_of(cr).get("phase") in ("RollingBack", "RolledBack"):
                    marks["decided"] = time.monotonic()

        watches = [asyncio.create_task(watch_deployment()), asyncio.create_task(watch_rollout())]
        stop = asyncio.Event()
        load = asyncio.create_task(traffic.drive(namespace, f"httproute/{MODEL}", REQUEST, MODEL, DEFECT_RATE,
                                                 duration=RUN_TIMEOUT + 60, concurrency=16, client=client,
                                                 stop=stop))  # fmt: skip
        await asyncio.sleep(LEAD_SECONDS)
        await move_to(client, namespace, MODEL, CANDIDATE)
        run = DefectRun()
        try:
            await asyncio.wait_for(done.wait(), RUN_TIMEOUT)
        except TimeoutError:
            run.problem = (f"no return to {STABLE}=100 within {RUN_TIMEOUT:.0f}s of the version change; "
                           f"ModelDeployment status {last.get('md')}; CanaryRollout status "
                           f"{last.get('cr')}")  # fmt: skip
        stop.set()
        report = await load
        for task in watches:
            task.cancel()
        cr = await client.get(CanaryRollout, MODEL, namespace=namespace)
        status_run = status_of(cr).get("run") or {}
        run.result = f"{status_run.get('result')} ({status_run.get('cause')})"
        run.total, run.failed, run.errors = report.total, report.failed, dict(report.errors)
        if "t0" in marks and "t1" in marks:
            run.defect_to_stable = marks["t1"] - marks["t0"]
        if "t0" in marks and "decided" in marks:
            run.defect_to_decision = marks["decided"] - marks["t0"]
        if "t0" in marks and "weight0" in marks:
            run.defect_to_weight0 = marks["weight0"] - marks["t0"]
        return run
    finally:
        op.stop()
        with contextlib.suppress(ApiError):
            await client.delete(Namespace, namespace)


async def part_defect(client: AsyncClient, tmp: Path, runs: int) -> list[DefectRun]:
    await require_gateway_api(client)
    out = []
    for i in range(runs):
        run = await defect_run(client, tmp, i)
        took = "-" if run.defect_to_stable is None else f"{run.defect_to_stable:.2f}s"
        print(f"  defect run {i + 1}/{runs}: defect -> {STABLE}=100 {took}, {run.failed}/{run.total} requests "
              f"failed, {run.result}{'; ' + run.problem if run.problem else ''}", flush=True)  # fmt: skip
        out.append(run)
    return out


async def part_flagger(client: AsyncClient, tmp: Path, runs: int) -> list[flagger_peer.PeerRun] | str:
    """The peer of part 1: the same defect under Flagger (tests/bench/flagger_peer.py); why not, when it cannot run."""
    if why := flagger_peer.unavailable():
        return why
    folder = tmp / "flagger"
    folder.mkdir(exist_ok=True)
    good, narrow = model_files(folder, "good")[:2], model_files(folder, "narrow")[:2]
    signature = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [-1, 4], "features": FEATURES}]}
    out = []
    try:
        for i in range(runs):
            run = await flagger_peer.run(client, f"bench-canary-flagger-{int(time.time())}-{i}", good, narrow,
                                         signature, REQUEST, MODEL, (STABLE, CANDIDATE), DEFECT_RATE, LEAD_SECONDS,
                                         RUN_TIMEOUT)  # fmt: skip
            took = "-" if run.defect_to_stable is None else f"{run.defect_to_stable:.2f}s"
            print(f"  flagger run {i + 1}/{runs}: defect -> primary=100 {took}, {run.failed}/{run.total} requests "
                  f"failed, phase {run.phase}{'; ' + run.problem if run.problem else ''}", flush=True)  # fmt: skip
            out.append(run)
    finally:
        # Flagger's Canary kind has the singular name "canary", which kubectl then resolves before our short name
        # (kubectl get canary would list Flagger's): its CRDs go with the peer.
        await flagger_peer.remove_crds()
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def spread(values: list[float]) -> str:
    if not values:
        return f"{'-':>7} {'-':>7} {'-':>7}"
    return f"{pct(values, 50):7.2f} {pct(values, 99):7.2f} {max(values):7.2f}"


def report_defect(runs: list[DefectRun], peer: list[flagger_peer.PeerRun] | str = "not run") -> None:
    steps = "setWeight 20, analysis x3, setWeight 50"
    print(f"\ncanary defect: {STABLE} good (1 replica), {CANDIDATE} narrow (every request 500), {DEFECT_RATE:g} req/s "
          f"through the HTTPRoute; steps [{steps}], interval 10s, errorRate max 0.01, failureLimit 0, direct "
          f"provider; {len(runs)} runs, seconds from t0 (the canary's first weight > 0 in the ModelDeployment's "
          f"status)")  # fmt: skip
    print(f"{'':54} {'p50':>7} {'p99':>7} {'max':>7}")
    stable = [r.defect_to_stable for r in runs if r.defect_to_stable is not None]
    decided = [r.defect_to_decision for r in runs if r.defect_to_decision is not None]
    print(f"{'ours: defect -> all traffic on ' + STABLE + ' (status.traffic)':54} {spread(stable)}")
    weight0 = [r.defect_to_weight0 for r in runs if r.defect_to_weight0 is not None]
    print(f"{'  of which defect -> rollback decided (CanaryRollout)':54} {spread(decided)}")
    print(f"{'  of which defect -> canary weight 0 (ModelDeployment)':54} {spread(weight0)}")
    total, failed = sum(r.total for r in runs), sum(r.failed for r in runs)
    errors: Counter[str] = Counter()
    for r in runs:
        errors.update(r.errors)
    share = failed / total if total else 0.0
    per_run = ", ".join(f"{r.failed / r.total:.1%}" if r.total else "-" for r in runs)
    print(f"  failed requests from the load's start ({LEAD_SECONDS:g} s before the version change) to t1: {failed} of "
          f"{total} ({share:.2%}; per run {per_run}); {dict(errors)}")  # fmt: skip
    if missing := [r for r in runs if r.defect_to_stable is None]:
        print(f"  {len(missing)} run(s) gave no figure: {missing[0].problem}")
    if isinstance(peer, str):
        print(FLAGGER_NOT_BUILT.format(why=peer))
        return
    print(f"{'Flagger: defect -> fraud-primary 100 (HTTPRoute)':54} "
          f"{spread([r.defect_to_stable for r in peer if r.defect_to_stable is not None])}")  # fmt: skip
    print(f"{'  of which defect -> Canary phase Failed':54} "
          f"{spread([r.defect_to_failed for r in peer if r.defect_to_failed is not None])}")  # fmt: skip
    total, failed = sum(r.total for r in peer), sum(r.failed for r in peer)
    errors = Counter[str]()
    for r in peer:
        errors.update(r.errors)
    per_run = ", ".join(f"{r.failed}/{r.total}" for r in peer)
    lead = ", ".join("-" if r.change_to_t0 is None else f"{r.change_to_t0:.1f}" for r in peer)
    print(f"  Flagger v{flagger_peer.VERSION}: {len(peer)} runs, t0 = fraud-canary's first weight > 0 in the "
          f"HTTPRoute; gatewayapi:v1, interval 10s, threshold 1, stepWeight {flagger_peer.STEP_WEIGHT}, "
          f"maxWeight {flagger_peer.MAX_WEIGHT}, "
          f"Prometheus 5xx share of the canary's Pods max {flagger_peer.ERROR_MAX}; failed requests from the load's "
          f"start to t1: {failed} of {total} ({failed / total if total else 0:.2%}; per run {per_run}); "
          f"{dict(errors)}; the load's span is longer than ours by Flagger's template change -> t0 (s: {lead}), "
          f"so compare the failed counts, not the shares")  # fmt: skip
    if missing := [r for r in peer if r.defect_to_stable is None]:
        print(f"  {len(missing)} Flagger run(s) gave no figure: {missing[0].problem}")


# --- part 2: false rollbacks under noisy latency ----------------------------------------------------------------------


@dataclass
class Window:
    canary_p95: float | None
    stable_p95: float | None
    judge: str
    """Our judge's classification (High is a failure)."""
    threshold_failed: bool


async def read_pods(client: AsyncClient, session: aiohttp.ClientSession, target: Target) -> Readings:
    """One reading of every ready Pod of both versions, as the direct provider takes it."""
    pods = await list_all(client, Pod, target.namespace, labels=selector(target.deployment))
    wanted = [p for p in pods if p.status and p.status.podIP and not p.metadata.deletionTimestamp
              and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]  # fmt: skip

    async def scrape(pod: Any) -> str:
        async with session.get(f"http://{pod.status.podIP}:{target.port}/metrics") as response:
            response.raise_for_status()
            return await response.text()

    texts = await asyncio.gather(*(scrape(p) for p in wanted))
    out: Readings = {v: {} for v in (target.canary, target.stable) if v}
    for pod, text in zip(wanted, texts, strict=True):
        version = (pod.metadata.labels or {}).get("mlops.io/version", "")
        if version in out:
            out[version][pod.metadata.name] = measure.parse(text)
    return out


async def sample_every(client: AsyncClient, target: Target, count: int) -> list[tuple[datetime, Readings]]:
    """``count`` readings, one every SAMPLE_SECONDS on a fixed schedule."""
    readings = []
    loop = asyncio.get_running_loop()
    begin = loop.time()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for k in range(count):
            await asyncio.sleep(max(0.0, begin + k * SAMPLE_SECONDS - loop.time()))
            now = datetime.now(UTC)
            readings.append((now, await read_pods(client, session, target)))
    return readings


async def bursts(client: AsyncClient, namespace: str, stop: asyncio.Event) -> dict[str, Any]:
    """Alternating bursts at NOISE_RATES through the HTTPRoute until ``stop``: the latencies seen per rate, the
    requests sent and failed."""
    latencies: dict[float, list[float]] = {rate: [] for rate in NOISE_RATES}
    total = failed = 0
    entry = traffic.parse_entry(f"httproute/{MODEL}")
    async with traffic.View(client, namespace, entry, f"/v2/models/{MODEL}/infer") as view:
        i = 0
        while not stop.is_set():
            rate = NOISE_RATES[i % len(NOISE_RATES)]
            load = traffic.Load(rate, duration=BURST_SECONDS, concurrency=NOISE_CONCURRENCY)
            report = await traffic.send(view.table, NOISE_REQUEST, MODEL, load, stop=stop)
            latencies[rate] += report.latencies
            total, failed = total + report.total, failed + report.failed
            i += 1
    return {"latencies": latencies, "total": total, "failed": failed}


NOISE_HOGS = 2
"""Noisy neighbours: processes that spin for 2 to 6 s, then rest for 2 to 6 s (seeded), after a delay."""
HOG = """
import random, sys, time
rng = random.Random(int(sys.argv[1]))
time.sleep(float(sys.argv[2]))
while True:
    until = time.monotonic() + rng.uniform(2, 6)
    while time.monotonic() < until:
        pass
    time.sleep(rng.uniform(2, 6))
"""


async def part_noise(client: AsyncClient, tmp: Path, seconds: float) -> dict[str, Any]:
    await require_gateway_api(client)
    namespace = await new_namespace(client, f"bench-canary-noise-{int(time.time())}")
    op = Operator.start(namespace)
    try:
        # The same good model as both versions: one artifact, two ModelVersions.
        source, checksum, reference = model_files(tmp, "good")
        signature = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [-1, 4], "features": FEATURES}]}
        extra = {"signature": signature, "reference": {"uri": reference, "prediction": "is_fraud"}}
        await register(client, namespace, [model_version(MODEL, v, source, checksum, **extra)
                                           for v in (STABLE, CANDIDATE)])  # fmt: skip
        await serve_stable(client, namespace, canary_rollout(MODEL, MODEL, [{"setWeight": 50}, {"pause": {}}]))
        await move_to(client, namespace, MODEL, CANDIDATE)
        await wait_for(lambda: client.get(ModelDeployment, MODEL, namespace=namespace),
                       lambda md: canary_weight(md) == 50 and status_of(md).get("readyReplicas") == 2,
                       "the canary at 50% on its ready replica", within=120)  # fmt: skip
        target = Target(namespace, MODEL, MODEL, CANDIDATE, STABLE)
        windows = 1 + max(1, round(seconds / (SAMPLE_SECONDS * WINDOW_SAMPLES)))
        stop = asyncio.Event()
        load = asyncio.create_task(bursts(client, namespace, stop))
        await asyncio.sleep(1)  # the route is read and the first burst flows
        # Noisy neighbours from the second window on (the baseline is calibrated in a quiet spell, as a threshold
        # usually is): processes that take the CPU for a few seconds at a time, both versions' servers alike.
        delay = str(SAMPLE_SECONDS * WINDOW_SAMPLES + 1)
        hogs = [await asyncio.create_subprocess_exec(sys.executable, "-c", HOG, str(seed), delay)
                for seed in range(NOISE_HOGS)]  # fmt: skip
        try:
            readings = await sample_every(client, target, windows * WINDOW_SAMPLES + 1)
        finally:
            for hog in hogs:
                hog.kill()
                await hog.wait()
        stop.set()
        sent = await load
    finally:
        op.stop()
        with contextlib.suppress(ApiError):
            await client.delete(Namespace, namespace)
    return judge_windows(target, readings) | sent


def judge_windows(target: Target, readings: list[tuple[datetime, Readings]]) -> dict[str, Any]:
    """Consecutive windows of WINDOW_SAMPLES samples; the first is the threshold's baseline, judged by neither."""
    metric = AnalysisMetric.model_validate({"name": "latency", "builtin": "latencyP95", "compare": {
        "direction": "increase", "allowedIncrease": ALLOWED_INCREASE, "step": f"{SAMPLE_SECONDS:g}s",
        "confidence": CONFIDENCE}})  # fmt: skip
    rule = MetricRule("latency", "increase", allowed_increase=ALLOWED_INCREASE)
    measured = [values(target, [metric], readings[w * WINDOW_SAMPLES : (w + 1) * WINDOW_SAMPLES + 1])["latency"]
                for w in range(len(readings) // WINDOW_SAMPLES)]  # fmt: skip
    baseline = measured[0].stable
    if baseline is None:
        raise SystemExit(f"the baseline window has no latency of {target.stable}: {measured[0]}")
    windows = []
    for got in measured[1:]:
        verdict = classify(rule, list(got.canary_samples), list(got.stable_samples), CONFIDENCE)
        over = got.canary is not None and got.canary > ALLOWED_INCREASE * baseline
        windows.append(Window(got.canary, got.stable, verdict.classification, over))
    return {"baseline": baseline, "windows": windows}


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f}"


def report_noise(noise: dict[str, Any], seconds: float) -> None:
    windows: list[Window] = noise["windows"]
    n = len(windows)
    rates = " and ".join(f"{r:g}" for r in NOISE_RATES)
    window_s = SAMPLE_SECONDS * WINDOW_SAMPLES
    print(f"\ncanary noise: {STABLE} and {CANDIDATE} the same good model (1 replica each), 50/50 through the "
          f"HTTPRoute, bursts of {rates} req/s alternating every {BURST_SECONDS:g} s ({NOISE_ROWS} rows a request, "
          f"up to {NOISE_CONCURRENCY} in flight) for {seconds:g} s after a {window_s:g} s baseline; both versions' "
          f"Pods read every {SAMPLE_SECONDS:g} s, {window_s:g} s windows of {WINDOW_SAMPLES} samples a side, "
          f"latencyP95")  # fmt: skip
    seen = ", ".join(f"{rate:g} req/s p50 {ms(pct(lat, 50))} ms p95 {ms(pct(lat, 95))} ms"
                     for rate, lat in noise["latencies"].items() if lat)  # fmt: skip
    print(f"  the client saw: {seen}; {noise['failed']} of {noise['total']} requests failed")
    print("  per window, canary / stable p95 ms: "
          + ", ".join(f"{ms(w.canary_p95)}/{ms(w.stable_p95)}" for w in windows))  # fmt: skip
    judged = sum(w.judge == "High" for w in windows)
    plain = sum(w.threshold_failed for w in windows)
    nodata = sum(w.judge == "NoData" for w in windows)
    print(f"{'':92} {'failed':>6} {'of':>3} {'share':>6}")
    label = f"ours: the judge, both versions' samples, allowedIncrease {ALLOWED_INCREASE:g}, {CONFIDENCE:.0%}"
    print(f"{label:92} {judged:6d} {n:3d} {judged / n:6.0%}")
    label = (f"plain threshold: canary window p95 > {ALLOWED_INCREASE:g} x baseline stable p95 "
             f"({ms(noise['baseline'])} ms)")  # fmt: skip
    print(f"{label:92} {plain:6d} {n:3d} {plain / n:6.0%}")
    print(f"  both versions are the same model: every failure is a false rollback (failureLimit 0)"
          f"{f'; {nodata} window(s) NoData for the judge' if nodata else ''}")  # fmt: skip


# --- part 3: operator CPU per analysis measurement --------------------------------------------------------------------


def cpu_rollout(name: str, prometheus: str) -> Body:
    analysis = {
        "interval": "10s", "provider": {"prometheus": {"address": prometheus}}, "noData": "wait",
        "noDataDeadline": "1h",
        "metrics": [{"name": "errors", "builtin": "errorRate", "max": 0.01},
                    {"name": "latency", "builtin": "latencyP99", "compare": {"step": "2s"}}],
    }  # fmt: skip
    return canary_rollout(name, name, [{"setWeight": 10}, {"analysis": {"count": 1000}}], analysis)


async def for_each(items: list[T], call: Callable[[T], Awaitable[Any]]) -> None:
    """``call`` of every item, CONCURRENCY at a time."""
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(item: T) -> None:
        async with semaphore:
            await call(item)

    await asyncio.gather(*(one(i) for i in items))


async def part_cpu(client: AsyncClient, tmp: Path) -> dict[str, Any]:
    prometheus = os.environ.get("MLOPS_PROMETHEUS_URL")
    if not prometheus:
        raise SystemExit('MLOPS_PROMETHEUS_URL is not set: eval "$(tests/cluster/env.sh)" first')
    await require_gateway_api(client)
    restore = await make_room(client, 2 * ROLLOUTS)
    namespace = await new_namespace(client, f"bench-canary-cpu-{int(time.time())}", simulated=True)
    # The local Prometheus listens on loopback, which the outbound policy refuses unless allowed.
    op = Operator.start(namespace, "--allow-loopback")
    try:
        data = os.urandom(64 * 1024)
        path = tmp / "tiny.bin"
        path.write_bytes(data)
        checksum = "sha256:" + hashlib.sha256(data).hexdigest()
        await register(client, namespace, [model_version("tiny", v, f"file://{path}", checksum)
                                           for v in (STABLE, CANDIDATE)])  # fmt: skip
        names = [f"md-{i}" for i in range(ROLLOUTS)]
        await for_each(names, lambda n: create(client, ModelDeployment, model_deployment(n, "tiny"), namespace))
        check = serving(STABLE)
        await wait_for(lambda: list_all(client, ModelDeployment, namespace),
                       lambda mds: sum(check(md) for md in mds) == ROLLOUTS,
                       f"{ROLLOUTS} ModelDeployments serving {STABLE}", within=300, every=1)  # fmt: skip
        await asyncio.sleep(5)  # the last status writes
        idle = await cpu_window(op, IDLE_SECONDS)
        await for_each(names, lambda n: create(client, CanaryRollout, cpu_rollout(n, prometheus), namespace))
        await for_each(names, lambda n: move_to(client, namespace, n, CANDIDATE))
        analysing = await wait_for(
            lambda: list_all(client, CanaryRollout, namespace),
            lambda crs: sum(status_of(c).get("currentStep") == 1 and status_of(c).get("phase") == "Progressing"
                            for c in crs) == ROLLOUTS,
            f"{ROLLOUTS} CanaryRollouts in their analysis step", within=300, every=1)  # fmt: skip
        await asyncio.sleep(12)  # every rollout's first window has closed: measuring at its steady pace
        busy = await cpu_window(op, CPU_SECONDS)
        crs = await list_all(client, CanaryRollout, namespace)
        phases = Counter(f"{status_of(c).get('phase')} step {status_of(c).get('currentStep')}" for c in crs)
        sample = status_of(analysing[0]).get("message")
        latest = (status_of(crs[0]).get("metrics") or [{}])[0].get("message")
    finally:
        op.stop()
        await delete_namespaces(client, [namespace])
        for node, capacity in restore.items():
            await set_pods(client, node, capacity)
    return {"idle": idle, "busy": busy, "phases": dict(phases), "message": sample, "metric_message": latest}


async def cpu_window(op: Operator, seconds: float) -> dict[str, Any]:
    cpu0, counted0, t0 = op.cpu_seconds(), op.measurements(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, counted1, t1 = op.cpu_seconds(), op.measurements(), time.monotonic()
    counted = counted1 - counted0
    return {"cpu": cpu1 - cpu0, "wall": t1 - t0, "measurements": sum(counted.values()), "verdicts": dict(counted)}


def report_cpu(cpu: dict[str, Any]) -> None:
    busy, idle = cpu["busy"], cpu["idle"]
    print(f"\ncanary cpu: {ROLLOUTS} ModelDeployments (simulated Pods), each with a canary at 10% and a CanaryRollout "
          f"in its analysis step [setWeight 10, analysis x1000], interval 10s, prometheus provider, errorRate max "
          f"0.01 + latencyP99 compared (step 2s), noData wait (deadline 1h)")  # fmt: skip
    print(f"  rollouts at the end: {cpu['phases']}; a rollout's message: {cpu['message']!r}; a metric's last "
          f"verdict: {cpu['metric_message']!r}")  # fmt: skip
    print(f"{'':70} {'wall s':>7} {'CPU s':>7} {'core':>6} {'measured':>8} {'ms/meas.':>8}")
    per = f"{1000 * busy['cpu'] / busy['measurements']:8.2f}" if busy["measurements"] else f"{'-':>8}"
    print(f"{'ours: operator, ' + str(ROLLOUTS) + ' rollouts measuring':70} {busy['wall']:7.1f} {busy['cpu']:7.2f} "
          f"{busy['cpu'] / busy['wall']:6.1%} {busy['measurements']:8d} {per}")  # fmt: skip
    print(f"{'baseline: the same operator, the ' + str(ROLLOUTS) + ' ModelDeployments, no rollout':70} "
          f"{idle['wall']:7.1f} {idle['cpu']:7.2f} {idle['cpu'] / idle['wall']:6.1%} {idle['measurements']:8d} "
          f"{'-':>8}")  # fmt: skip
    rate = busy["measurements"] / busy["wall"]
    print(f"  measurements by verdict: {busy['verdicts']}; {rate:.1f}/s (expected {ROLLOUTS / 10:g}/s: one per "
          f"rollout per 10 s interval)")  # fmt: skip
    if busy["measurements"]:
        extra = (busy["cpu"] - idle["cpu"] / idle["wall"] * busy["wall"]) / busy["measurements"]
        print(f"  above the baseline: {1000 * extra:.2f} ms CPU per measurement")


# --- main ------------------------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace, tmp: Path) -> None:
    client = AsyncClient()
    parts = [args.only] if args.only else ["noise", "defect", "cpu"]
    started = time.monotonic()
    results: dict[str, Any] = {}
    for part in parts:
        print(f"== {part}", flush=True)
        if part == "defect":
            results[part] = await part_defect(client, tmp, args.runs)
            results["flagger"] = await part_flagger(client, tmp, args.runs)
        elif part == "noise":
            results[part] = await part_noise(client, tmp, args.noise_seconds)
        else:
            results[part] = await part_cpu(client, tmp)
    await delete_namespaces(client, [n.metadata.name for n in await list_all(client, Namespace)
                                     if n.metadata.name.startswith("bench-canary-")])  # fmt: skip
    if "defect" in results:
        report_defect(results["defect"], results["flagger"])
    if "noise" in results:
        report_noise(results["noise"], args.noise_seconds)
    if "cpu" in results:
        report_cpu(results["cpu"])
    print(f"\ncanary: {time.monotonic() - started:.0f} s in all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--only", choices=("defect", "noise", "cpu"), help="run one part")
    parser.add_argument("--runs", type=int, default=5, help="defect: repeated runs (default %(default)s)")
    parser.add_argument("--noise-seconds", type=float, default=120.0,
                        help="noise: seconds of noisy load after the baseline (default %(default)s)")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-canary-") as tmp:
        asyncio.run(main_async(args, Path(tmp)))


if __name__ == "__main__":
    main()
