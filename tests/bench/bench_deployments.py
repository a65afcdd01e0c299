"""Serving at scale: 200 ModelDeployments, beside 200 plain Deployments run by Kubernetes itself; once applied in
a burst (all at once), once as a steady stream (20 per second).

Twenty models, one ModelVersion each (a real artifact on local disk, sha256 verified), are registered first. Then
200 ModelDeployments (router ``replicas``, 1 or 2 replicas, spread over the models) are created, as fast as 16
concurrent requests allow or at a steady rate. Watches (started before the first create) give, per object: apply
to all children (the version's apps/v1 Deployment and Service, the front Service, the PodDisruptionBudget when
replicas > 1), and apply to Ready (the Pods run on kwok's simulated nodes; their namespaces are labelled
mlops.io/data-plane=simulated, so the local Pod runner makes them Running and Ready at once instead of starting
hundreds of server processes).
The apply time is when the create call returned, on this process's clock.

The peer, measured in the same run right after ours (one at a time: both go through the one controller manager,
whose API client is rate limited): Kubernetes' own Deployment controller doing the analogous job, 200 apps/v1
Deployments with the very Pod template the operator builds and the same replicas, in another namespace. Its
children: the ReplicaSet; its Ready: Available with every replica ready.

Also: the operator's idle and peak RSS, its API requests per reconcile (from the line it logs when stopped), and
the writes a restarted operator makes when everything is in place (expected: none). kwok's nodes hold 110 Pods
each: when the run needs more, their capacity is raised for it and put back afterwards.

Run with `make bench` (the local cluster must be up). Goals: p99 apply-to-children < 1 s, peak RSS < 250 MB.
BENCH_DEPLOYMENTS changes the count; BENCH_RATES the creation rates, one run each (default "0,20": a burst, then
20 per second); BENCH_PROFILE=<file> runs the loaded operator under cProfile.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from lightkube import ALL_NS, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment, ReplicaSet
from lightkube.resources.core_v1 import Namespace, Node, Pod, Service
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import PatchType, on_error_retry

from mlops_operator.api.modeldeployment import ModelDeploymentSpec
from mlops_operator.builders import serving as build
from mlops_operator.controllers.modeldeployment import DEFAULT_SERVER_IMAGE

DEPLOYMENTS = int(os.environ.get("BENCH_DEPLOYMENTS", "200"))
MODELS = 20
VERSION = "1.0.0"
ARTIFACT_BYTES = 64 * 1024
CONCURRENCY = 16
# Creation rates per second, one run each: 0 is a burst (all at once), then a steady stream.
RATES = tuple(float(r) for r in os.environ.get("BENCH_RATES", "0,20").split(","))
READY_TIMEOUT = 300.0
RESTART_SETTLE = 10.0
GOAL_P99_CHILDREN = 1.0
GOAL_RSS_MB = 250
ModelVersion = create_namespaced_resource("mlops.io", "v1alpha1", "ModelVersion", "modelversions")
ModelDeployment = create_namespaced_resource("mlops.io", "v1alpha1", "ModelDeployment", "modeldeployments")
WRITES = ("apply", "patch", "delete", "create")
STATS_LINE = re.compile(r"ModelDeployment reconciles: (\d+) \((\d+) wrote nothing\); API requests: (\{.*\})")


def replicas_of(i: int) -> int:
    return 2 if i % 2 else 1


def model_of(i: int) -> str:
    return f"model-{i % MODELS}"


# --- the operator as a process ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_live(proc: subprocess.Popen[bytes], liveness: str, log: Path, within: float = 60) -> None:
    """Until the operator process answers its liveness endpoint; killed, and the bench ended, if it does not."""
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(liveness, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the operator did not become live; see {log}")
        time.sleep(0.1)


@dataclass
class Operator:
    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, namespace: str, tag: str, profile: str | None = None) -> Operator:
        port = free_port()
        liveness = f"http://127.0.0.1:{port}/healthz"
        log = Path(tempfile.gettempdir()) / f"{namespace}-operator-{tag}.log"
        python = [sys.executable, "-m", "cProfile", "-o", profile] if profile else [sys.executable]
        with log.open("w") as out:
            proc = subprocess.Popen(
                [*python, "-m", "mlops_operator", "run", "--namespace", namespace, "--liveness", liveness,
                 "--metrics", "", "--allow-file-root", tempfile.gettempdir()],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_live(proc, liveness, log)
        return cls(proc, log)

    def status_kb(self, field_name: str) -> int:
        """A figure of /proc/<pid>/status in kB (VmRSS, VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
        raise KeyError(field_name)

    def stop(self) -> dict[str, Any]:
        """SIGTERM, then the figures of the line the ModelDeployment controller logs on its way out."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise SystemExit(f"the operator did not stop within 60s; see {self.log}") from None
        found = STATS_LINE.findall(self.log.read_text(errors="replace"))
        if not found:
            raise SystemExit(f"no statistics line in {self.log}")
        reconciles, quiet, requests = found[-1]
        return {"reconciles": int(reconciles), "quiet": int(quiet), "requests": json.loads(requests)}


class PeakRss:
    """RSS sampled every 100 ms."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.1)

    def stop(self) -> int:
        self.done.set()
        self.thread.join()
        return self.peak


# --- watching --------------------------------------------------------------------------------------------------------


@dataclass
class Tracker:
    """Per object: when its create returned, when each expected child was first seen, when it became Ready."""

    expected: dict[str, set[tuple[str, str]]]
    """Object name -> the (kind, name) of the children it must have."""
    applied: dict[str, float] = field(default_factory=dict)
    seen: dict[str, dict[tuple[str, str], float]] = field(default_factory=dict)
    ready: dict[str, float] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def child(self, owner: str, kind: str, name: str) -> None:
        if owner in self.expected and (kind, name) in self.expected[owner]:
            self.seen.setdefault(owner, {}).setdefault((kind, name), time.monotonic())

    def became_ready(self, name: str) -> None:
        if name in self.expected and name not in self.ready:
            self.ready[name] = time.monotonic()
            if len(self.ready) == len(self.expected):
                self.done.set()

    def children_at(self, name: str) -> float | None:
        seen = self.seen.get(name, {})
        return max(seen.values()) if len(seen) == len(self.expected[name]) else None

    def figures(self) -> dict[str, Any]:
        missing = [n for n in self.expected if n not in self.ready or self.children_at(n) is None]
        if missing:
            raise SystemExit(f"{len(missing)} objects never got their children or Ready, e.g. {missing[:3]}")
        first = min(self.applied.values())
        children = [self.children_at(n) - self.applied[n] for n in self.expected]  # type: ignore[operator]
        ready = [self.ready[n] - self.applied[n] for n in self.expected]
        return {
            "children": children,
            "ready": ready,
            "applied_in": max(self.applied.values()) - first,
            "all_children": max(self.children_at(n) for n in self.expected) - first,  # type: ignore[type-var]
            "wall": max(self.ready.values()) - first,
        }


def _owner(meta: Any, kind: str) -> str | None:
    for ref in meta.ownerReferences or []:
        if ref.kind == kind and ref.controller:
            return str(ref.name)
    return None


async def _watch(client: AsyncClient, res: Any, namespace: str, on_event: Callable[[Any], None]) -> None:
    async for kind, obj in client.watch(res, namespace=namespace, on_error=on_error_retry):
        if kind != "DELETED":
            on_event(obj)


def _condition(conditions: list[Any] | None, type_: str) -> Any:
    for c in conditions or []:
        c = c if isinstance(c, dict) else c.to_dict()
        if c.get("type") == type_:
            return c
    return None


def watch_ours(client: AsyncClient, namespace: str, tracker: Tracker) -> list[asyncio.Task[None]]:
    def child(kind: str) -> Callable[[Any], None]:
        def on_event(obj: Any) -> None:
            owner = _owner(obj.metadata, "ModelDeployment")
            if owner is not None:
                tracker.child(owner, kind, obj.metadata.name)

        return on_event

    def on_md(obj: Any) -> None:
        status = obj.status or {}
        ready = _condition(status.get("conditions"), "Ready")
        if ready and ready["status"] == "True" and ready.get("observedGeneration") == obj.metadata.generation:
            tracker.became_ready(obj.metadata.name)

    watches = [(Deployment, child("Deployment")), (Service, child("Service")),
               (PodDisruptionBudget, child("PodDisruptionBudget")), (ModelDeployment, on_md)]  # fmt: skip
    return [asyncio.create_task(_watch(client, res, namespace, fn)) for res, fn in watches]


def watch_peer(client: AsyncClient, namespace: str, tracker: Tracker) -> list[asyncio.Task[None]]:
    def on_replicaset(obj: Any) -> None:
        owner = _owner(obj.metadata, "Deployment")
        if owner is not None:
            tracker.child(owner, "ReplicaSet", "*")

    def on_deployment(obj: Any) -> None:
        status, spec = obj.status, obj.spec
        if status is None or status.observedGeneration != obj.metadata.generation:
            return
        available = _condition(status.conditions, "Available")
        if available and available["status"] == "True" and (status.readyReplicas or 0) == spec.replicas:
            tracker.became_ready(obj.metadata.name)

    watches = [(ReplicaSet, on_replicaset), (Deployment, on_deployment)]
    return [asyncio.create_task(_watch(client, res, namespace, fn)) for res, fn in watches]


# --- the objects -----------------------------------------------------------------------------------------------------


def model_version(model: str, source: str, checksum: str) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.io/v1alpha1", "kind": "ModelVersion", "metadata": {"name": f"{model}-v1"},
        "spec": {"model": model, "version": VERSION, "source": source, "checksum": checksum, "format": "sklearn",
                 "stage": "production"},
    }  # fmt: skip


def model_deployment(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": f"md-{i}"},
        "spec": {"model": model_of(i), "version": VERSION, "replicas": replicas_of(i),
                 "router": {"type": "replicas"}},
    }  # fmt: skip


def expected_children(i: int) -> set[tuple[str, str]]:
    name = f"md-{i}"
    child = build.child_name(name, VERSION)
    out = {("Deployment", child), ("Service", child), ("Service", build.front_name(name))}
    if replicas_of(i) > 1:
        out.add(("PodDisruptionBudget", child))
    return out


def peer_deployment(i: int, namespace: str, artifacts: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """The apps/v1 Deployment the operator would make for ModelDeployment ``i``, with no owner."""
    owner = {"apiVersion": "mlops.io/v1alpha1", "kind": "ModelDeployment",
             "metadata": {"name": f"md-{i}", "namespace": namespace, "uid": "0"}}  # fmt: skip
    spec = ModelDeploymentSpec.model_validate(model_deployment(i)["spec"])
    source, checksum = artifacts[model_of(i)]
    served = build.Workload(version=VERSION, role="stable", replicas=replicas_of(i), source=source,
                                 format="sklearn", checksum=checksum)  # fmt: skip
    body = build.deployment(owner, spec, served, DEFAULT_SERVER_IMAGE)
    meta = body["metadata"]
    meta["name"] = f"dep-{i}"
    del meta["ownerReferences"]
    return body


# --- the runs --------------------------------------------------------------------------------------------------------


async def create_all(client: AsyncClient, namespace: str, res: Any, bodies: dict[str, dict[str, Any]],
                     tracker: Tracker, rate: float) -> None:  # fmt: skip
    """Creates every body: as fast as CONCURRENCY requests allow (rate 0), or one every 1/rate seconds."""
    semaphore = asyncio.Semaphore(CONCURRENCY)
    started = time.monotonic()

    async def create(i: int, name: str) -> None:
        if rate:
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
        async with semaphore:
            await client.create(res.from_dict(bodies[name]), namespace=namespace)
            tracker.applied[name] = time.monotonic()

    await asyncio.gather(*(create(i, n) for i, n in enumerate(bodies)))


async def wait_ready(tracker: Tracker, what: str) -> None:
    try:
        await asyncio.wait_for(tracker.done.wait(), READY_TIMEOUT)
    except TimeoutError:
        raise SystemExit(f"{what}: only {len(tracker.ready)}/{len(tracker.expected)} Ready after "
                         f"{READY_TIMEOUT:.0f}s") from None  # fmt: skip


async def register(client: AsyncClient, namespace: str, artifacts: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """The ModelVersions, made Ready by an operator that is stopped afterwards (its requests are not counted)."""
    op = Operator.start(namespace, "register")
    try:
        for model, (source, checksum) in artifacts.items():
            await client.create(ModelVersion.from_dict(model_version(model, source, checksum)), namespace=namespace)
        deadline = time.monotonic() + 120
        while True:
            items = [o async for o in client.list(ModelVersion, namespace=namespace)]
            ready = [o for o in items if (_condition((o.status or {}).get("conditions"), "Ready") or {}).get(
                "status") == "True"]  # fmt: skip
            if len(ready) == len(artifacts):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(ready)}/{len(artifacts)} ModelVersions Ready; see {op.log}")
            await asyncio.sleep(0.2)
    finally:
        stats = op.stop()
    return stats


async def run_ours(client: AsyncClient, namespace: str, artifacts: dict[str, tuple[str, str]],
                   rate: float) -> dict[str, Any]:  # fmt: skip
    await register(client, namespace, artifacts)
    op = Operator.start(namespace, "load", os.environ.get("BENCH_PROFILE") or None)
    try:
        await asyncio.sleep(3)  # up, its watches listed the (empty but for the versions) namespace
        idle_rss = op.status_kb("VmRSS") * 1024
        rss = PeakRss(op.proc.pid)
        cpu_before = sum(rss.process.cpu_times()[:2])
        bodies = {f"md-{i}": model_deployment(i) for i in range(DEPLOYMENTS)}
        tracker = Tracker({f"md-{i}": expected_children(i) for i in range(DEPLOYMENTS)})
        tasks = watch_ours(client, namespace, tracker)
        await asyncio.sleep(1)  # the watches are open
        await create_all(client, namespace, ModelDeployment, bodies, tracker, rate)
        await wait_ready(tracker, "ModelDeployments")
        cpu = sum(rss.process.cpu_times()[:2]) - cpu_before
        await asyncio.sleep(2)  # the last status writes and events
        for task in tasks:
            task.cancel()
        peak = max(rss.stop(), op.status_kb("VmHWM") * 1024)
        settled_rss = op.status_kb("VmRSS") * 1024
    except BaseException:
        op.proc.kill()
        raise
    load = op.stop()
    restart_op = Operator.start(namespace, "restart")
    await asyncio.sleep(RESTART_SETTLE)
    restart_rss = restart_op.status_kb("VmHWM") * 1024
    restart = restart_op.stop()
    return {**tracker.figures(), "idle_rss": idle_rss, "peak_rss": peak, "settled_rss": settled_rss, "cpu": cpu,
            "load": load, "restart": restart, "restart_rss": restart_rss}  # fmt: skip


async def run_peer(client: AsyncClient, namespace: str, artifacts: dict[str, tuple[str, str]],
                   rate: float) -> dict[str, Any]:  # fmt: skip
    bodies = {f"dep-{i}": peer_deployment(i, namespace, artifacts) for i in range(DEPLOYMENTS)}
    tracker = Tracker({name: {("ReplicaSet", "*")} for name in bodies})
    tasks = watch_peer(client, namespace, tracker)
    await asyncio.sleep(1)
    await create_all(client, namespace, Deployment, bodies, tracker, rate)
    await wait_ready(tracker, "Deployments")
    for task in tasks:
        task.cancel()
    return tracker.figures()


# --- the cluster: enough room for the Pods ---------------------------------------------------------------------------


async def make_room(client: AsyncClient, pods_needed: int) -> dict[str, str]:
    """Raise the Pod capacity of kwok's simulated nodes (110 each) when the run needs more; returns what to put
    back. kwok keeps a node's capacity as it finds it."""
    nodes = [n async for n in client.list(Node) if (n.metadata.annotations or {}).get("kwok.x-k8s.io/node")]
    if not nodes:
        return {}
    present = len([p async for p in client.list(Pod, namespace=ALL_NS)])
    capacity = sum(int(n.status.allocatable.get("pods", "0")) for n in nodes)
    if capacity >= present + pods_needed + 20:
        return {}
    per_node = str(math.ceil((present + pods_needed + 20) / len(nodes)) + 10)
    original = {n.metadata.name: n.status.allocatable.get("pods", "110") for n in nodes}
    for name in original:
        await set_pods(client, name, per_node)
    return original


async def set_pods(client: AsyncClient, node: str, pods: str) -> None:
    patch = {"status": {"capacity": {"pods": pods}, "allocatable": {"pods": pods}}}
    await client.patch(Node.Status, node, patch, patch_type=PatchType.MERGE)


# --- the report ------------------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def spread(values: list[float]) -> str:
    return f"{pct(values, 50):6.2f} {pct(values, 99):6.2f} {max(values):6.2f}"


def report(ours: dict[str, Any], peer: dict[str, Any], rate: float) -> None:
    n = DEPLOYMENTS
    how = f"one every {1 / rate * 1000:.0f} ms ({rate:g}/s)" if rate else f"at once, {CONCURRENCY} requests at a time"
    print(f"\ndeployments: {n} objects created {how}; times in seconds from each create's return")
    head = f"{'':51} {'created':>7}  {'apply->children':^20}  {'apply->Ready':^20}  {'all Ready':>9} {'obj/s':>6}"
    print(head)
    print(f"{'':51} {'in':>7}  {'p50':>6} {'p99':>6} {'max':>6}  {'p50':>6} {'p99':>6} {'max':>6}  {'wall':>9}")
    rows = [("ours: ModelDeployment (mlops-operator)", ours),
            ("peer: apps/v1 Deployment (kube-controller-manager)", peer)]  # fmt: skip
    for label, r in rows:
        print(f"{label:51} {r['applied_in']:7.2f}  {spread(r['children'])}  {spread(r['ready'])}  "
              f"{r['wall']:9.2f} {n / r['wall']:6.1f}")  # fmt: skip
    print(f"  ours: children of every object = Deployment + version Service + front Service (+ PDB at 2 replicas); "
          f"all existed {ours['all_children']:.2f}s after the first create")  # fmt: skip
    print(f"  peer: children = the ReplicaSet; all existed {peer['all_children']:.2f}s after the first create; "
          f"Ready = Available with every replica ready")  # fmt: skip
    mb = 2**20
    print(f"deployments: operator RSS idle {ours['idle_rss'] / mb:.0f} MB, peak {ours['peak_rss'] / mb:.0f} MB, "
          f"{ours['settled_rss'] / mb:.0f} MB with all Ready; restarted: {ours['restart_rss'] / mb:.0f} MB "
          f"peak")  # fmt: skip
    print(f"deployments: operator CPU {ours['cpu']:.1f} s from the first create to all Ready "
          f"({ours['cpu'] / ours['wall']:.0%} of one core over {ours['wall']:.1f} s)")  # fmt: skip
    load = ours["load"]
    requests = load["requests"]
    total = sum(requests.values())
    verbs = ", ".join(f"{v} {requests.get(v, 0)}" for v in ("get", *WRITES))
    print(f"deployments: {load['reconciles']} reconciles ({load['quiet']} wrote nothing); API requests {total}: "
          f"{verbs}; {total / n:.1f} per ModelDeployment, {total / max(1, load['reconciles']):.2f} per reconcile "
          f"(the operator's own client; watches not counted)")  # fmt: skip
    restart = ours["restart"]
    writes = sum(restart["requests"].get(v, 0) for v in WRITES)
    print(f"deployments: restart with everything in place, {RESTART_SETTLE:.0f}s: {restart['reconciles']} reconciles "
          f"({restart['quiet']} wrote nothing), requests {json.dumps(restart['requests'], sort_keys=True)}: "
          f"{writes} writes (expected 0: {'PASS' if writes == 0 else 'FAIL'})")  # fmt: skip
    p99 = pct(ours["children"], 99)
    peak_mb = ours["peak_rss"] / mb
    print(f"goal ({'paced' if rate else 'burst'}): p99 apply->children < {GOAL_P99_CHILDREN:.0f} s: {p99:.2f} s "
          f"{'PASS' if p99 < GOAL_P99_CHILDREN else 'FAIL'}")  # fmt: skip
    print(f"goal ({'paced' if rate else 'burst'}): operator peak RSS < {GOAL_RSS_MB} MB: {peak_mb:.0f} MB "
          f"{'PASS' if peak_mb < GOAL_RSS_MB else 'FAIL'}")  # fmt: skip


async def main_async(tmp: Path) -> None:
    artifacts: dict[str, tuple[str, str]] = {}
    for m in range(MODELS):
        path = tmp / f"model-{m}.bin"
        data = os.urandom(ARTIFACT_BYTES)
        path.write_bytes(data)
        artifacts[f"model-{m}"] = (f"file://{path}", "sha256:" + hashlib.sha256(data).hexdigest())
    client = AsyncClient()
    pods = sum(replicas_of(i) for i in range(DEPLOYMENTS))
    results = []
    for rate in RATES:
        stamp = int(time.time())
        ours_ns, peer_ns = f"bench-deploy-{stamp}", f"bench-deploy-peer-{stamp}"
        restore = await make_room(client, 2 * pods)
        for ns in (ours_ns, peer_ns):
            # Hundreds of Pods: simulated ones (Ready at once, as kwok makes them), not server processes.
            labels = {"mlops.io/data-plane": "simulated"}
            await client.create(Namespace.from_dict({"metadata": {"name": ns, "labels": labels}}))
        try:
            ours = await run_ours(client, ours_ns, artifacts, rate)
            peer = await run_peer(client, peer_ns, artifacts, rate)
        finally:
            for ns in (ours_ns, peer_ns):
                with contextlib.suppress(Exception):
                    await client.delete(Namespace, ns)
            await wait_gone(client, (ours_ns, peer_ns))
            for node, capacity in restore.items():
                await set_pods(client, node, capacity)
        results.append((ours, peer, rate))
    for ours, peer, rate in results:
        report(ours, peer, rate)


async def wait_gone(client: AsyncClient, namespaces: tuple[str, ...]) -> None:
    """Until the namespaces are gone (capacity is only put back then), at most two minutes."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        left = [n.metadata.name async for n in client.list(Namespace) if n.metadata.name in namespaces]
        if not left:
            return
        await asyncio.sleep(1)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-deployments-") as tmp:
        asyncio.run(main_async(Path(tmp)))


if __name__ == "__main__":
    main()
