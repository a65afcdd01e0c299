"""The ModelDeployment controller: resolves the version to serve, runs its children, routes the traffic.

Level-triggered, like the controllers of Kubernetes itself: watch events of ModelDeployments, ModelVersions,
CanaryRollouts and every object of the child kinds (Deployments, Services, HPAs, PDBs, HTTPRoutes, VirtualServices:
ours are cached whole, the others by name and owner, so that a taken name is known) only update in-memory caches
and queue the owning ModelDeployment; workers then compare what should exist with what the caches
hold and write only the differences. So a child edited or deleted by hand is put back by the next event, and a
restarted operator that finds everything as it should be writes nothing. The version plan (roles, weights) lives
in ``logic.serving``; objects come from ``builders.serving`` and ``routers``; this module applies them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from lightkube import ApiError

from mlops_operator import GROUP, VERSION, __version__, kube, metrics, routers
from mlops_operator.api.common import duration_seconds
from mlops_operator.api.modeldeployment import ModelDeploymentSpec
from mlops_operator.builders import serving as build
from mlops_operator.builders.serving import ServedVersion as Workload
from mlops_operator.controllers.intake import in_background, plain, spec_problem
from mlops_operator.logic import serving
from mlops_operator.logic.conditions import ConditionStatus, get_condition, set_condition

log = logging.getLogger(__name__)

KIND, PLURAL = "ModelDeployment", "modeldeployments"
PROMOTE_ANNOTATION = f"{GROUP}/promote"
# The model server image when spec.server.image is not set: the operator's own (the chart sets it).
SERVER_IMAGE_ENV = "MLOPS_SERVER_IMAGE"
DEFAULT_SERVER_IMAGE = f"mlops-operator:{__version__}"
# Reconciles at the same time: each mostly waits on the API server.
WORKERS = 32
RESYNC_SECONDS = 300
# Every kind is listed again this often and the caches corrected by it: a watch that restarts after a gap (410 Gone)
# lists what exists but reports no deletion that happened in the gap.
RELIST_SECONDS = 600
MAX_BACKOFF_SECONDS = 60
# A name taken by an object that is not ours, a router kind not installed: checked again this often.
ERROR_RETRY_SECONDS = 10
CONFLICT_RETRY_SECONDS = 2

Key = tuple[str, str]
ChildKey = tuple[str, str, str]  # apiVersion, kind, name
Body = dict[str, Any]

# group, version, plural, kind of every child kind; the routers' kinds are added from the routers.
_WORKLOAD_KINDS = (
    ("apps", "v1", "deployments", "Deployment"),
    ("", "v1", "services", "Service"),
    ("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
)
_ROUTER_KINDS = tuple((k.group, k.version, k.plural, k.kind) for r in routers.every() for k in r.kinds)
CHILD_KINDS = _WORKLOAD_KINDS + _ROUTER_KINDS
_ROUTING_KINDS = {kind for _, _, _, kind in _ROUTER_KINDS}


@dataclass
class Caches:
    """What the watches delivered: the operator's view of the cluster."""

    deployments: dict[Key, Body] = field(default_factory=dict)
    """ModelDeployments by (namespace, name)."""
    versions: dict[Key, dict[str, Body]] = field(default_factory=dict)
    """ModelVersions (compact) by (namespace, model), then by object name."""
    canaries: dict[Key, dict[str, Body]] = field(default_factory=dict)
    """CanaryRollouts (candidate, phase, weights) by (namespace, deploymentRef), then by object name."""
    children: dict[str, dict[ChildKey, Body]] = field(default_factory=dict)
    """Children by the owner's uid."""
    written: dict[str, tuple[Body, str]] = field(default_factory=dict)
    """The status this operator last wrote and the resourceVersion it made, by uid (fresher than the watch)."""
    owners: dict[tuple[str, str, str, str], str | None] = field(default_factory=dict)
    """Every object of a child kind, ours or not: (apiVersion, kind, namespace, name) -> the uid of the
    ModelDeployment controlling it, or None. Tells a free name from a taken one without a read."""
    applied: dict[tuple[str, ChildKey], tuple[str, int, str]] = field(default_factory=dict)
    """(owner uid, child) -> the uid, generation and digest of what our last apply of it made."""
    dropped: dict[tuple[str, ChildKey], str] = field(default_factory=dict)
    """(owner uid, child) -> the field the API server dropped or changed from our last apply of it."""
    synced: set[tuple[str, str]] = field(default_factory=set)
    """The child kinds (apiVersion, kind) that ``relist`` listed: for them, ``owners`` is complete."""


caches = Caches()
stats: Counter[str] = Counter()


# --- the work queue --------------------------------------------------------------------------------------------------


class WorkQueue:
    """Keys to reconcile: each key at most once in the queue, never reconciled twice at the same time; a key queued
    while it is being reconciled is reconciled again afterwards. Urgent keys (a spec not acted on yet) go before
    the others, so that a burst of status changes does not delay a new or changed deployment."""

    def __init__(self) -> None:
        self._queue: asyncio.PriorityQueue[tuple[int, int, Key]] = asyncio.PriorityQueue()
        self._pending: dict[Key, int] = {}
        self._running: set[Key] = set()
        self._again: dict[Key, int] = {}
        self._seq = 0
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self.queued_at: dict[Key, float] = {}

    def add(self, key: Key, urgent: bool = False) -> None:
        priority = 0 if urgent else 1
        if key in self._running:
            self._again[key] = min(priority, self._again.get(key, priority))
        elif self._pending.get(key, 2) > priority:
            # New, or now more urgent: an entry of its own (the older one is skipped when it comes up).
            self._pending[key] = priority
            self.queued_at.setdefault(key, time.monotonic())
            self._seq += 1
            self._queue.put_nowait((priority, self._seq, key))

    def add_after(self, key: Key, delay: float) -> None:
        """Queue ``key`` in ``delay`` seconds; of several such requests for one key only the earliest stands."""
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> Key:
        while True:
            priority, _, key = await self._queue.get()
            if self._pending.get(key) == priority:
                break
        del self._pending[key]
        self._running.add(key)
        return key

    def depth(self) -> int:
        """Keys waiting (not counting those being reconciled or waiting on a timer)."""
        return len(self._pending)

    def done(self, key: Key) -> None:
        self._running.discard(key)
        self.queued_at.pop(key, None)
        if key in self._again:
            self.add(key, urgent=self._again.pop(key) == 0)


queue: WorkQueue | None = None
_failures: Counter[Key] = Counter()


def enqueue(key: Key, urgent: bool = False) -> None:
    if queue is not None:
        queue.add(key, urgent)


# Seconds each reconcile waited in the queue and took, the latest ones (for the closing log line and benchmarks).
waits: deque[float] = deque(maxlen=20_000)
durations: deque[float] = deque(maxlen=20_000)


async def _worker() -> None:
    assert queue is not None
    while True:
        key = await queue.get()
        started = time.monotonic()
        waits.append(started - queue.queued_at.get(key, started))
        metrics.QUEUE_WAIT_SECONDS.labels(KIND).observe(waits[-1])
        try:
            delay = await reconcile(key)
            _failures.pop(key, None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            metrics.RECONCILES.labels(KIND, "error").inc()
            _failures[key] += 1
            delay = min(MAX_BACKOFF_SECONDS, 2 ** (_failures[key] - 1))
            log.warning("reconciling ModelDeployment %s/%s failed (%s); retrying in %ss", *key, _error(exc), delay)
        finally:
            durations.append(time.monotonic() - started)
            metrics.RECONCILE_SECONDS.labels(KIND).observe(durations[-1])
            queue.done(key)
        if delay is not None:
            queue.add_after(key, delay)


async def _resync(namespaces: tuple[str, ...]) -> None:
    last_relist = time.monotonic()
    while True:
        await asyncio.sleep(RESYNC_SECONDS)
        if time.monotonic() - last_relist >= RELIST_SECONDS:
            last_relist = time.monotonic()
            try:
                await relist(namespaces)
            except Exception as exc:
                log.warning("listing every kind again failed (%s); the watches keep the caches meanwhile", _error(exc))
        for key in list(caches.deployments):
            enqueue(key)


def _error(exc: BaseException | object) -> str:
    if isinstance(exc, ApiError):
        return f"{exc.status.code} {exc.status.reason}: {exc.status.message}"
    return str(exc) or type(exc).__name__


# --- watches ---------------------------------------------------------------------------------------------------------


def _newer(candidate: Body, current: Body | None) -> bool:
    """Whether ``candidate`` is at least as new as ``current`` (resourceVersions compared as numbers when they are)."""
    if current is None:
        return True
    a = candidate["metadata"].get("resourceVersion", "")
    b = current["metadata"].get("resourceVersion", "")
    if a.isdigit() and b.isdigit():
        return int(a) >= int(b)
    return True


def _same_version(cached: Body, body: Any) -> bool:
    """Whether ``body`` is the very object version the cache holds (same resourceVersion)."""
    version = body["metadata"].get("resourceVersion")
    return bool(version) and cached["metadata"].get("resourceVersion") == version


def _compact_version(body: Any) -> Body:
    """What resolution needs of a ModelVersion (no managedFields, history or gates)."""
    meta = body["metadata"]
    status = body.get("status") or {}
    return plain(
        {
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion") if k in meta},
            "spec": dict(body.get("spec") or {}),
            "status": {k: status[k] for k in ("stage", "artifact", "profile", "conditions") if k in status},
        }
    )


def _forget(namespace: str, name: str, uid: str) -> None:
    """Drops a ModelDeployment that is gone from the caches; a newer object of the same name stays."""
    current = caches.deployments.get((namespace, name))
    if current is not None and current["metadata"]["uid"] == uid:
        del caches.deployments[(namespace, name)]
    caches.children.pop(uid, None)
    caches.written.pop(uid, None)
    for memo in (caches.applied, caches.dropped):
        for k in [k for k in memo if k[0] == uid]:
            del memo[k]


def _key_of(uid: str) -> Key | None:
    """The (namespace, name) of the cached ModelDeployment with ``uid``."""
    return next((key for key, md in caches.deployments.items() if md["metadata"]["uid"] == uid), None)


def _file_canary(namespace: str, name: str, body: Any) -> str | None:
    """Caches what the deployment needs of a CanaryRollout; returns the deployment it refers to."""
    spec = body.get("spec") or {}
    target = spec.get("deploymentRef")
    if not target:
        return None
    status = body.get("status") or {}
    caches.canaries.setdefault((namespace, target), {})[name] = {
        "candidate": str(spec.get("candidate")),
        "phase": status.get("phase"),
        "weights": plain(status.get("weights") or {}),
        "created": body["metadata"].get("creationTimestamp") or "",
        "metadata": {"resourceVersion": body["metadata"].get("resourceVersion") or ""},
    }
    return str(target)


def _controller_of(body: Any) -> dict[str, Any] | None:
    for ref in body["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion") == f"{GROUP}/{VERSION}" and ref.get("controller"):
            return dict(ref)
    return None


# Names (kind, namespace, name) an event touched while a relist of their kind runs: the relist then leaves them to
# the event (which is newer than the list, or not older).
_relisting: dict[str, set[tuple[str, str]]] = {}


def _touch(kind: str, namespace: str, name: str) -> None:
    touched = _relisting.get(kind)
    if touched is not None:
        touched.add((namespace, name))


def on_deployment(type_: str, body: Any) -> None:
    """A ModelDeployment event: cache it and queue it (urgently when its spec is not acted on yet)."""
    meta = body["metadata"]
    key = (meta.get("namespace") or "", meta["name"])
    _touch(KIND, *key)
    if type_ == "DELETED":
        _forget(key[0], key[1], meta["uid"])
        return
    cached = caches.deployments.get(key)
    if cached is not None and _same_version(cached, body):
        return  # delivered again (a list, a watch restarting): queued or handled when it first came
    copy = plain(body)
    if _newer(copy, cached):
        caches.deployments[key] = copy
    meta = copy["metadata"]
    if meta.get("resourceVersion") == caches.written.get(meta["uid"], ({}, None))[1]:
        return  # the echo of our own status write: nothing new to act on
    observed = (copy.get("status") or {}).get("observedGeneration")
    enqueue(key, urgent=observed != meta.get("generation"))


def on_version(type_: str, body: Any) -> None:
    """A ModelVersion event: cache what resolution needs, queue the deployments of its model."""
    model = (body.get("spec") or {}).get("model")
    if not model:
        return
    namespace, name = body["metadata"].get("namespace") or "", body["metadata"]["name"]
    _touch("ModelVersion", namespace, name)
    versions = caches.versions.setdefault((namespace, model), {})
    if type_ == "DELETED":
        versions.pop(name, None)
    else:
        if name in versions and _same_version(versions[name], body):
            return  # delivered again: nothing new for the deployments of this model
        compact = _compact_version(body)
        if _newer(compact, versions.get(name)):
            versions[name] = compact
    for (ns, md_name), md in list(caches.deployments.items()):
        if ns == namespace and (md.get("spec") or {}).get("model") == model:
            enqueue((ns, md_name))


def on_canary(type_: str, body: Any) -> None:
    """A CanaryRollout event: file it under the deployment it steers, queue that (and the one it left)."""
    namespace, name = body["metadata"].get("namespace") or "", body["metadata"]["name"]
    _touch("CanaryRollout", namespace, name)
    cached = next((r[name] for (ns, _), r in caches.canaries.items() if ns == namespace and name in r), None)
    if type_ != "DELETED" and cached is not None and (_same_version(cached, body) or not _newer(body, cached)):
        return  # delivered again, or older than what the cache holds
    # Forget it wherever it was (its deploymentRef may have changed), then file it under its deployment.
    for (ns, other), rollouts in caches.canaries.items():
        if ns == namespace and name in rollouts:
            rollouts.pop(name)
            enqueue((ns, other))
    if type_ != "DELETED":
        target = _file_canary(namespace, name, body)
        if target:
            enqueue((namespace, target))


def on_child(type_: str, body: Any) -> None:
    """An event of an object of a child kind, ours or not: note who controls the name, cache ours, queue the
    ModelDeployment it belongs (or belonged) to."""
    meta = body["metadata"]
    owner = _controller_of(body)
    api_version, kind, namespace, name = body["apiVersion"], body["kind"], meta.get("namespace") or "", meta["name"]
    _touch(kind, namespace, name)
    named = (api_version, kind, namespace, name)
    before = caches.owners.get(named)
    if type_ == "DELETED":
        caches.owners.pop(named, None)
    else:
        caches.owners[named] = owner["uid"] if owner else None
    if before is not None and before != (owner or {}).get("uid"):
        # Orphaned or handed over: no longer the former owner's child, which must look at it again.
        caches.children.get(before, {}).pop((api_version, kind, name), None)
        former = _key_of(before)
        if former is not None:
            enqueue(former)
    if owner is None:
        return
    child_key = (api_version, kind, name)
    children = caches.children.setdefault(owner["uid"], {})
    if type_ == "DELETED":
        children.pop(child_key, None)
    else:
        cached = children.get(child_key)
        if cached is not None and cached["metadata"].get("resourceVersion") == meta.get("resourceVersion"):
            return  # the echo of our own apply: the cache holds it already
        copy = plain(body)
        if _newer(copy, cached):
            children[child_key] = copy
    enqueue((namespace, owner["name"]))


def _cached_names(kind: str, scope: str) -> dict[tuple[str, str], Any]:
    """What the caches hold of ``kind`` in ``scope`` (a namespace or ``*``): (namespace, name) -> a body enough
    for its DELETED event."""

    def within(ns: str) -> bool:
        return scope in ("*", ns)

    if kind == KIND:
        return {k: md for k, md in caches.deployments.items() if within(k[0])}
    if kind == "ModelVersion":
        return {(ns, n): mv for (ns, _), named in caches.versions.items() if within(ns) for n, mv in named.items()}
    if kind == "CanaryRollout":
        return {
            (ns, n): {"metadata": {"namespace": ns, "name": n}}
            for (ns, _), named in caches.canaries.items() if within(ns) for n in named
        }  # fmt: skip
    out: dict[tuple[str, str], Any] = {}
    names_by_uid = {md["metadata"]["uid"]: key[1] for key, md in caches.deployments.items()}
    for (api_version, k, ns, n), uid in caches.owners.items():
        if k == kind and within(ns):
            refs = [{"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "uid": uid, "controller": True,
                     "name": names_by_uid.get(uid, "")}] if uid else []  # fmt: skip
            out[(ns, n)] = {"apiVersion": api_version, "kind": k,
                            "metadata": {"namespace": ns, "name": n, "ownerReferences": refs}}  # fmt: skip
    return out


async def relist(namespaces: tuple[str, ...]) -> None:
    """Lists every kind (in each watched namespace, or cluster-wide) and brings the caches in line: what is listed
    goes through the event functions, what is cached but no longer exists is dropped as deleted. Fills the caches at
    startup; repeated, it repairs what a watch gap left behind. A kind the cluster does not serve stays unsynced:
    its children are then read before written."""
    scopes: tuple[str, ...] = namespaces or ("*",)
    kinds: list[tuple[str, str, str, Any]] = [
        (f"{GROUP}/{VERSION}", "ModelVersion", "modelversions", on_version),
        (f"{GROUP}/{VERSION}", "CanaryRollout", "canaryrollouts", on_canary),
        *(((f"{g}/{v}" if g else v), kind, plural, on_child) for g, v, plural, kind in CHILD_KINDS),
        (f"{GROUP}/{VERSION}", KIND, PLURAL, on_deployment),
    ]
    for api_version, kind, plural, on_event in kinds:
        _relisting[kind] = set()
        try:
            for scope in scopes:
                items = await kube.list_objects(api_version, kind, plural, scope)
                listed = set()
                for item in items:
                    item = {**item, "apiVersion": api_version, "kind": kind}
                    named = (item["metadata"].get("namespace") or "", item["metadata"]["name"])
                    listed.add(named)
                    if named not in _relisting[kind]:  # an event since the list began is newer: it stands
                        on_event("MODIFIED", item)
                for named, cached in _cached_names(kind, scope).items():
                    if named not in listed and named not in _relisting[kind]:
                        log.info("%s %s/%s is gone without a watch event: dropped from the caches", kind, *named)
                        on_event("DELETED", cached)
        except kube.KindNotServed:
            continue
        finally:
            del _relisting[kind]
        if on_event is on_child:
            caches.synced.add((api_version, kind))


def _ours_if_newer(md: Body) -> tuple[Body, str] | None:
    """Our last status write of ``md`` and the resourceVersion it made, when the watch has not brought it back."""
    written = caches.written.get(md["metadata"]["uid"])
    if written is not None and _newer({"metadata": {"resourceVersion": written[1]}}, md):
        return written
    return None


def _current(md: Body) -> Body:
    """A cached ModelDeployment with the newest status we know."""
    ours = _ours_if_newer(md)
    return {**md, "status": ours[0]} if ours else md


def register(registry: kopf.OperatorRegistry, namespaces: tuple[str, ...] = ()) -> None:
    """Register the controller; ``namespaces`` are the watched ones (empty: all)."""
    metrics.STATE.objects(KIND, lambda: [_current(md) for md in caches.deployments.values()])
    metrics.STATE.objects("ModelVersion", lambda: [mv for named in caches.versions.values() for mv in named.values()])
    metrics.STATE.queue(KIND, lambda: queue.depth() if queue is not None else 0)
    for group, version, plural, kind in _ROUTER_KINDS:
        kube.register_kind(f"{group}/{version}", kind, plural)

    @kopf.on.startup(registry=registry)
    async def _start(**_: Any) -> None:
        global queue
        queue = WorkQueue()
        # The workers start once what exists is known: a reconcile against half-filled caches would take a
        # version for unresolved, or a child for missing, and write (or delete) what it should not.
        delay = 0.5
        while True:
            try:
                await relist(namespaces)
                break
            except Exception as exc:
                # kopf would try a failed startup again only after a minute; a cluster that is still starting
                # (or a CustomResourceDefinition whose storage initialises) answers within seconds.
                log.warning("listing what exists failed (%s); trying again in %.0fs", _error(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
        loop = asyncio.get_running_loop()
        _tasks.extend(loop.create_task(_worker()) for _ in range(WORKERS))
        _tasks.append(loop.create_task(_resync(namespaces)))

    @kopf.on.cleanup(registry=registry)
    async def _stop(**_: Any) -> None:
        for task in _tasks:
            task.cancel()
        for task in _tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        _tasks.clear()
        log.info(
            "ModelDeployment reconciles: %d (%d wrote nothing); API requests: %s",
            stats["reconciles"], stats["quiet"], json.dumps(dict(kube.requests), sort_keys=True),
        )  # fmt: skip
        log.info("ModelDeployment queue wait: %s; reconcile: %s", kube.timings(waits), kube.timings(durations))
        log.info("API request latency: %s", kube.latency_summary())

    @kopf.on.event(GROUP, VERSION, PLURAL, id="modeldeployment-watch", registry=registry)
    async def _deployment_event(type: str, body: kopf.Body, **_: Any) -> None:
        on_deployment(type, body)

    @kopf.on.event(GROUP, VERSION, "modelversions", id="modeldeployment-versions", registry=registry)
    async def _version_event(type: str, body: kopf.Body, **_: Any) -> None:
        on_version(type, body)

    @kopf.on.event(GROUP, VERSION, "canaryrollouts", id="modeldeployment-canaries", registry=registry)
    async def _canary_event(type: str, body: kopf.Body, **_: Any) -> None:
        on_canary(type, body)

    async def _child_event(type: str, body: kopf.Body, **_: Any) -> None:
        on_child(type, body)

    # Every object of these kinds, not only ours: a name another object holds must not be taken over.
    for group, version, plural, _kind in CHILD_KINDS:
        kopf.on.event(group, version, plural, id=f"modeldeployment-child-{plural}", registry=registry)(_child_event)


_tasks: list[asyncio.Task[None]] = []


# --- resolution ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    name: str
    """The ModelVersion object."""
    version: str
    spec: Body
    status: Body


@dataclass(frozen=True)
class Unresolved:
    reason: str
    message: str


def _servable(mv: Body) -> tuple[bool, str]:
    conditions = mv["status"].get("conditions") or []
    ready = get_condition(conditions, "Ready") or {}
    if ready.get("reason") == "DuplicateVersion":
        return False, f"DuplicateVersion: {ready.get('message', '')}"
    artifact = get_condition(conditions, "ArtifactVerified")
    if artifact is None:
        return False, "its artifact is not checked yet"
    if artifact["status"] == "True" or (artifact["status"] == "Unknown" and artifact.get("reason") == "NotReadable"):
        return True, ""
    return False, f"{artifact.get('reason', 'ArtifactNotVerified')}: {artifact.get('message', '')}"


def _holder(candidates: list[Body]) -> Body:
    # Of duplicates, the identity holder (the one the registry did not mark as a duplicate).
    def rank(mv: Body) -> tuple[int, str]:
        ready = get_condition(mv["status"].get("conditions") or [], "Ready") or {}
        return (1 if ready.get("reason") == "DuplicateVersion" else 0, mv["metadata"]["name"])

    return min(candidates, key=rank)


def resolve(namespace: str, model: str, version: str | None, follow: str | None) -> Resolved | Unresolved:
    """The ModelVersion to serve, or why there is none."""
    known = list(caches.versions.get((namespace, model), {}).values())
    if follow is not None:
        candidates = [mv for mv in known if mv["status"].get("stage") == follow]
        if not candidates:
            return Unresolved("VersionNotFound", f"no version of model {model} holds {follow} in {namespace}")
    else:
        candidates = [mv for mv in known if str(mv["spec"].get("version")) == version]
        if not candidates:
            return Unresolved(
                "VersionNotFound", f"no ModelVersion of model {model} has version {version} in {namespace}"
            )
    mv = _holder(candidates)
    ok, why = _servable(mv)
    found = str(mv["spec"]["version"])
    if not ok:
        return Unresolved("VersionNotReady", f"ModelVersion {mv['metadata']['name']} ({model} {found}): {why}")
    return Resolved(mv["metadata"]["name"], found, mv["spec"], mv["status"])


ENDED_WITHOUT_PROMOTION = ("RolledBack", "Failed", "Aborted")


def canary_weight_of(namespace: str, deployment: str, candidate: str) -> int | None:
    """The share the CanaryRollout of ``deployment`` gives ``candidate`` (its status.weights.canary), if any.

    This is how the canary rollouts drive the weights: they write their own status, the deployment routes by it
    through its router. Only the newest rollout of the deployment counts (an older one, promoted or not, speaks of
    an earlier attempt), and only for its own candidate; one that was rolled back, failed or aborted gives none.
    """
    rollouts = caches.canaries.get((namespace, deployment), {})
    if not rollouts:
        return None
    newest = max(rollouts.items(), key=lambda item: (item[1].get("created") or "", item[0]))[1]
    if newest["candidate"] != candidate or not newest["weights"] or newest["phase"] in ENDED_WITHOUT_PROMOTION:
        return None
    return int(newest["weights"].get("canary", 0))


def _workload(resolved: Resolved, role: str, replicas: int, created: bool = True) -> Workload:
    spec, status = resolved.spec, resolved.status
    checksum = spec.get("checksum") or (status.get("artifact") or {}).get("sha256")
    profile = status.get("profile") or {}
    return Workload(
        version=resolved.version,
        role=role,
        replicas=replicas,
        source=spec["source"],
        format=spec["format"],
        checksum=checksum,
        signature=spec.get("signature"),
        profile_configmap=profile.get("configMap") if profile.get("rows") is not None else None,
        created=created,
    )


# --- comparing and applying ------------------------------------------------------------------------------------------


def covers(live: Any, desired: Any) -> bool:
    """Whether ``live`` holds every field ``desired`` sets, with the same value (fields the API server defaulted or
    others added are ignored; lists must match item by item)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and covers(live[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(map(covers, live, desired))
    return bool(live == desired)


def first_difference(live: Any, desired: Any, path: str = "") -> str | None:
    """The first field (as a path) where ``live`` does not cover ``desired``; None when it does."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return path or "."
        for k, v in desired.items():
            if k not in live:
                return f"{path}.{k}"
            found = first_difference(live[k], v, f"{path}.{k}")
            if found:
                return found
        return None
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return path
        for i, (a, b) in enumerate(zip(live, desired, strict=True)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if live == desired else path


# Selectors decide which Pods get traffic: a key added by hand changes their meaning, so they must match exactly.
_EXACT = {"Service": ("spec", "selector"), "PodDisruptionBudget": ("spec", "selector")}


def _selectors_match(live: Body, desired: Body) -> bool:
    path = _EXACT.get(desired["kind"])
    if path is None:
        return True
    a: Any = live
    b: Any = desired
    for part in path:
        a, b = (a or {}).get(part), (b or {}).get(part)
    return bool(a == b)


def _owns_replicas(live: Body) -> bool:
    """Whether our field manager claims the Deployment's spec.replicas."""
    return any(
        entry.get("manager") == kube.FIELD_MANAGER
        and entry.get("operation") == "Apply"
        and "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
        for entry in live["metadata"].get("managedFields") or []
    )


APPLIED_ANNOTATION = f"{GROUP}/applied"
# Holds spec.replicas of a Deployment between our last apply of it and the HPA's first scaling.
HANDOVER_MANAGER = f"{kube.FIELD_MANAGER}-handover"


def _stamped(desired: Body) -> Body:
    """``desired`` with a digest of itself in an annotation. ``covers`` sees edits to fields we set, but not a field
    we stopped setting (replicas once an HPA takes over): the digest changes then, so the object is applied again
    and the API server drops our claim on the field."""
    digest = hashlib.sha256(json.dumps(desired, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    meta = desired["metadata"]
    return {**desired, "metadata": {**meta, "annotations": {**meta.get("annotations", {}), APPLIED_ANNOTATION: digest}}}


class Conflict(Exception):
    """An object of the name we need exists and is not ours."""


async def _ensure(uid: str, desired: Body) -> Body:
    """Make the child ``desired`` exist as built; writes only when the cached object differs. Refuses to take over
    an object that another owner, or nobody, controls."""
    desired = _stamped(desired)
    meta = desired["metadata"]
    api_version, kind, name, namespace = desired["apiVersion"], desired["kind"], meta["name"], meta["namespace"]
    key = (api_version, kind, name)
    children = caches.children.setdefault(uid, {})
    live = children.get(key)

    async def read_and_check() -> Body | None:
        found = await kube.get(api_version, kind, namespace, name)
        if found is not None:
            owner = _controller_of(found)
            if owner is None or owner.get("uid") != uid:
                raise Conflict(f"{kind} {name} exists and is not owned by this ModelDeployment")
            children[key] = found
        return found

    free = False
    if live is None:
        named = (api_version, kind, namespace, name)
        if (api_version, kind) in caches.synced and named not in caches.owners:
            free = True  # the caches are complete for this kind
        else:
            # Taken (or unknown): read it, so that a deletion the watch has not reported yet is not a conflict.
            live = await read_and_check()
    digest = meta["annotations"][APPLIED_ANNOTATION]
    if live is not None:
        if covers(live, desired) and _selectors_match(live, desired):
            return live
        generation = live["metadata"].get("generation")
        if (
            generation is not None
            and caches.applied.get((uid, key)) == (live["metadata"].get("uid"), generation, digest)
            and covers(live["metadata"], meta)
        ):
            # What the API server made of our last apply, untouched since (it dropped or changed a field: see
            # ``dropped``): applying the same again would change nothing.
            return live
        if kind == "Deployment" and "replicas" not in desired["spec"] and _owns_replicas(live):
            # Autoscaling took over: another manager holds the current replicas while ours lets go of the field,
            # which would otherwise fall back to 1 before the HPA acts.
            handover = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": namespace},
                        "spec": {"replicas": (live.get("spec") or {}).get("replicas", 1)}}  # fmt: skip
            await kube.apply(handover, field_manager=HANDOVER_MANAGER)
    try:
        # A name believed free is applied without force: should an object the watch has not reported yet hold it,
        # the API server answers with a conflict instead of handing its fields to us.
        applied = await kube.apply(desired, force=not free)
    except ApiError as exc:
        if not (free and exc.status.code == 409):
            raise
        live = await read_and_check()
        applied = await kube.apply(desired)
    caches.owners[(api_version, kind, namespace, name)] = uid
    _touch(kind, namespace, name)  # newer than a list that may be running
    if applied["metadata"].get("generation") is not None:
        caches.applied[(uid, key)] = (applied["metadata"].get("uid"), applied["metadata"]["generation"], digest)
    lost = first_difference(applied, desired)
    if lost:
        if caches.dropped.get((uid, key)) != lost:
            log.warning("%s %s/%s: the API server did not keep %s as applied (a CustomResourceDefinition older "
                        "than this operator needs?)", kind, namespace, name, lost.lstrip("."))  # fmt: skip
        caches.dropped[(uid, key)] = lost
    else:
        caches.dropped.pop((uid, key), None)
    if _newer(applied, children.get(key)):
        children[key] = applied
    return applied


async def _ensure_all(uid: str, objects: list[Body], errors: list[tuple[str, str]]) -> None:
    """``_ensure`` every object at the same time (they do not depend on each other); failures of ownership and of
    a missing kind are collected in ``errors``, others raised."""
    results = await asyncio.gather(*(_ensure(uid, obj) for obj in objects), return_exceptions=True)
    failure: BaseException | None = None
    for obj, result in zip(objects, results, strict=True):
        if isinstance(result, Conflict):
            errors.append(("Conflict", str(result)))
        elif isinstance(result, kube.KindNotServed):
            errors.append(("RouterUnavailable", f"{result}: install its CustomResourceDefinitions"))
        elif _refused(result):
            errors.append(("ApplyFailed", f"{obj['kind']} {obj['metadata']['name']}: {_error(result)}"))
        elif isinstance(result, BaseException):
            failure = failure or _raisable(result)
    if failure is not None:
        raise failure


def _raisable(result: BaseException) -> BaseException:
    """A failure of one of several gathered requests, as this reconcile raises it: a request cancelled on its own
    (not the worker being stopped) is an error of this pass, not the end of the worker."""
    task = asyncio.current_task()
    if isinstance(result, asyncio.CancelledError) and not (task and task.cancelling()):
        return RuntimeError("a request was cancelled")
    return result


def _refused(result: object) -> bool:
    """An answer of the API server that trying again will not change (invalid, forbidden, denied by an admission
    webhook, over quota): it belongs in status, not only in the log."""
    return (
        isinstance(result, ApiError)
        and kube.transient(result) is None
        and 400 <= (result.status.code or 0) < 500
        and result.status.code != 409
    )


# --- the reconcile ---------------------------------------------------------------------------------------------------


def _image() -> str:
    return os.environ.get(SERVER_IMAGE_ENV) or DEFAULT_SERVER_IMAGE


def _previous(status: Body) -> list[serving.Served]:
    out = []
    for entry in status.get("versions") or []:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            out.append(
                serving.Served(
                    str(entry["version"]), entry["role"], int(entry.get("weight", 0)),
                    entry.get("since") or serving.stamp(datetime.now(UTC)),
                )
            )  # fmt: skip
    return out


def _strategy(spec: ModelDeploymentSpec) -> serving.Strategy:
    rollout = spec.rollout
    sizing = {
        "drain": duration_seconds(rollout.drain_delay),
        "total": None if spec.autoscaling else spec.replicas,
        "split": spec.router.type == "replicas",
    }
    if rollout.strategy == "blueGreen":
        settings = rollout.blue_green
        auto = settings.auto_promote if settings else True
        delay = duration_seconds(settings.scale_down_delay) if settings else 30.0
        return serving.Strategy("blueGreen", auto_promote=auto, scale_down_delay=delay, **sizing)  # type: ignore[arg-type]
    return serving.Strategy(rollout.strategy, **sizing)  # type: ignore[arg-type]


async def reconcile(key: Key) -> float | None:
    """One pass over one ModelDeployment; returns seconds until it must be looked at again (None: on events)."""
    body = caches.deployments.get(key)
    if body is None:
        return None
    stats["reconciles"] += 1
    started = time.monotonic()
    with kube.counting_writes() as writes:
        delay = await _reconcile(body)
    quiet = writes[0] == 0
    stats["quiet"] += quiet
    metrics.RECONCILES.labels(KIND, "unchanged" if quiet else "changed").inc()
    log.debug("reconciled ModelDeployment %s/%s in %.1f ms", *key, (time.monotonic() - started) * 1000)
    return delay


async def _reconcile(body: Body) -> float | None:
    meta = body["metadata"]
    namespace, name, uid, generation = meta["namespace"], meta["name"], meta["uid"], meta.get("generation")
    stored = _current(body).get("status") or {}
    status = json.loads(json.dumps(stored))
    status["observedGeneration"] = generation

    problem = spec_problem(_KIND_INFO, body.get("spec") or {})
    if problem is not None:
        invalid: tuple[ConditionStatus, str, str] = ("False", "InvalidSpec", problem)
        _conditions(status, generation, ready=invalid, progressing=invalid, degraded=("True", "InvalidSpec", problem))
        await _write_status(body, stored, status)
        return None
    if meta.get("deletionTimestamp"):
        # Being deleted (the garbage collector may be removing the children first): put nothing back.
        return None
    spec = ModelDeploymentSpec.model_validate(body["spec"])
    router = routers.get(spec.router.type)
    now = datetime.now(UTC)
    children = caches.children.setdefault(uid, {})

    def health_of(version: str) -> serving.Health | None:
        child = children.get(("apps/v1", "Deployment", build.child_name(name, version)))
        return serving.deployment_health(child) if child is not None else None

    target = resolve(namespace, spec.model, spec.version, spec.follow)
    previous = _previous(status)
    known = {s.version for s in previous}
    if spec.version:
        known.add(spec.version)
    if isinstance(target, Resolved):
        known.add(target.version)
    health = {v: h for v in known if (h := health_of(v)) is not None}
    promote = (meta.get("annotations") or {}).get(PROMOTE_ANNOTATION)
    canary_weight = None
    if isinstance(target, Resolved) and spec.rollout.strategy == "canary":
        canary_weight = canary_weight_of(namespace, name, target.version)
    decision = serving.plan(
        target.version if isinstance(target, Resolved) else None, previous, health, _strategy(spec), now, promote,
        canary_weight,
    )  # fmt: skip
    served = list(decision.served)

    notes: list[str] = []
    mirror: tuple[str, int] | None = None
    if spec.shadow is not None:
        shadow = resolve(namespace, spec.model, spec.shadow.version, None)
        if isinstance(shadow, Unresolved):
            notes.append(f"shadow not running: {shadow.message}")
        elif shadow.version in {s.version for s in served}:
            notes.append(f"shadow {shadow.version} is already served; nothing mirrored")
        else:
            since = next((s.since for s in previous if s.version == shadow.version and s.role == "shadow"), None)
            served.append(serving.Served(shadow.version, "shadow", 0, since or serving.stamp(now)))
            shadow_health = health_of(shadow.version)
            if shadow_health is not None and shadow_health.ready > 0:
                mirror = (shadow.version, spec.shadow.percent)
            else:
                notes.append(f"shadow {shadow.version} gets mirrored traffic once ready")

    # The version objects each served version resolves to; a version whose ModelVersion is gone keeps its
    # children as they are (they cannot be rebuilt, and removing them would cut its traffic).
    resolved: dict[str, Resolved] = {}
    for s in served:
        r = (
            target
            if isinstance(target, Resolved) and target.version == s.version
            else resolve(namespace, spec.model, s.version, None)
        )
        if isinstance(r, Resolved):
            resolved[s.version] = r
    served = [s for s in served if s.version in resolved or health_of(s.version) is not None]

    traffic = routers.Traffic({s.version: s.weight for s in served if s.role in serving.TRAFFIC_ROLES}, mirror)
    shadow_percent = spec.shadow.percent if spec.shadow else 100
    replicas = serving.replicas(served, spec.replicas, split=router.name == "replicas", shadow_percent=shadow_percent)
    for s in served:
        # A retiring version never grows (a canary handing its share back keeps its few Pods while it drains).
        h = health_of(s.version)
        if s.role == "retiring" and h is not None and s.version in replicas:
            replicas[s.version] = min(replicas[s.version], h.desired)
    if spec.autoscaling is not None:
        # A version's Deployment starts with the capacity the traffic has now (the stable version's replicas, at
        # least minReplicas), then the HPA owns its size.
        stable_health = next((health_of(s.version) for s in served if s.role == "stable"), None)
        start = max(spec.autoscaling.min_replicas, stable_health.desired if stable_health else 0)
        replicas = {
            s.version: spec.autoscaling.min_replicas if s.role in ("canary", "shadow") else start for s in served
        }
    image = _image()
    desired: list[Body] = []
    for s in served:
        if s.version not in resolved:
            continue
        created = health_of(s.version) is not None
        workload = _workload(resolved[s.version], s.role, replicas[s.version], created)
        desired += [build.deployment(body, spec, workload, image), build.version_service(body, spec, workload)]
        desired += [obj for obj in (build.hpa(body, spec, workload), build.pdb(body, spec, workload)) if obj]
    desired_routes: list[Body] = []
    front = [s.version for s in served if s.version in router.front_versions(traffic)]
    if front:
        desired_routes.append(build.front_service(body, spec, front))
    preview = next((s for s in served if s.role == "preview"), None)
    if preview is not None:
        desired_routes.append(build.preview_service(body, spec, preview.version))
    if traffic.weights:
        desired_routes += [build.owned(body, obj) for obj in router.objects(body, spec, traffic)]

    # What is no longer served goes last: a version loses its objects only after the traffic has left it.
    errors: list[tuple[str, str]] = []
    # At once: traffic cannot reach a version before its objects exist, since it only ever moves to ready Pods.
    await _ensure_all(uid, desired + desired_routes, errors)
    wanted = {(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in desired + desired_routes}
    kept = {build.child_name(name, s.version) for s in served if s.version not in resolved}
    routing_failed = any(reason in ("RouterUnavailable", "ApplyFailed") for reason, _ in errors)
    # Without the new router's objects, the Services and the previous router's objects still carry the traffic:
    # they stay. Only objects that carry our label are removed (not a user's object given our owner reference).
    stale = [
        k for k, child in children.items()
        if k not in wanted and k[2] not in kept
        and not (routing_failed and (k[1] == "Service" or k[1] in _ROUTING_KINDS))
        and (child["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == build.MANAGED_BY
    ]  # fmt: skip
    deleted = await asyncio.gather(
        *(kube.delete(api_version, kind, namespace, child) for api_version, kind, child in stale),
        return_exceptions=True,
    )
    for child_key, result in zip(stale, deleted, strict=True):
        if result is None:
            children.pop(child_key, None)
            _touch(child_key[1], namespace, child_key[2])  # newer than a list that may be running
        elif _refused(result):
            errors.append(("DeleteFailed", f"{child_key[1]} {child_key[2]}: {_error(result)}"))
        else:
            raise _raisable(result)
    for (owner_uid, child_key), field_path in caches.dropped.items():
        if owner_uid == uid and child_key in wanted:
            notes.append(f"{child_key[1]} {child_key[2]}: the API server did not keep {field_path.lstrip('.')} "
                         "as applied (is its CustomResourceDefinition older than needed?)")  # fmt: skip

    previous_stable = next((s.version for s in previous if s.role == "stable"), None)
    _status(status, spec, body, served, replicas, health_of, decision, target, errors, notes, generation)
    written = await _write_status(body, stored, status)
    stable = status.get("version")
    if written and stable and stable != previous_stable:
        message = f"serving {stable}" + (f" (was {previous_stable})" if previous_stable else "")
        in_background(kube.post_event(body, "VersionServed", message))
    if errors:
        # Nothing is watched that would say when the name is free or the kind installed: look again later.
        return min(d for d in (decision.requeue_after, ERROR_RETRY_SECONDS) if d is not None)
    return decision.requeue_after


def _status(
    status: Body,
    spec: ModelDeploymentSpec,
    body: Body,
    served: list[serving.Served],
    replicas: dict[str, int],
    health_of: Any,
    decision: serving.Decision,
    target: Resolved | Unresolved,
    errors: list[tuple[str, str]],
    notes: list[str],
    generation: int | None,
) -> None:
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    versions: list[Body] = []
    failed: list[str] = []  # Deployments past their progress deadline
    lost: list[str] = []  # rolled out, then Pods lost
    not_ready: list[str] = []  # short of their replicas
    # What keeps Ready False: a version that takes, or is about to take, the traffic falling short. A shadow shows
    # only in Progressing and Degraded; under autoscaling, a scale-up the HPA started is progress, not a fault.
    short: list[str] = []
    for s in served:
        h = health_of(s.version)
        desired = h.desired if h is not None else replicas.get(s.version, 0)
        ready_count = h.ready if h is not None else 0
        if spec.autoscaling is None:
            desired = replicas.get(s.version, desired)
        child = build.child_name(name, s.version)
        versions.append(
            {
                "version": s.version, "role": s.role, "since": s.since, "deployment": child, "service": child,
                "replicas": desired, "readyReplicas": ready_count, "weight": s.weight,
            }
        )  # fmt: skip
        line = f"{s.version} {ready_count}/{desired} ready" + (" (shadow)" if s.role == "shadow" else "")
        if h is not None and h.failed:
            failed.append(f"{s.version}: {h.failed}")
            if s.role not in ("shadow", "retiring"):
                short.append(failed[-1])
        elif s.role != "retiring" and h is not None and h.lost:
            lost.append(line)
            if s.role != "shadow":
                short.append(line)
        elif s.role != "retiring" and (h is None or not h.available or ready_count < desired):
            not_ready.append(line)
            floor = desired if spec.autoscaling is None else min(desired, spec.autoscaling.min_replicas)
            if s.role != "shadow" and (h is None or ready_count < floor or spec.autoscaling is None or h.rolling):
                short.append(line)
    stable = next((s.version for s in served if s.role == "stable"), None)
    status["versions"] = versions
    status["version"] = stable
    status["replicas"] = sum(v["replicas"] for v in versions)
    status["readyReplicas"] = sum(v["readyReplicas"] for v in versions)
    status["traffic"] = serving.traffic_line(served) or None
    status["url"] = f"http://{build.front_name(name)}.{namespace}.svc:{build.SERVICE_PORT}" if served else None
    preview = any(s.role == "preview" for s in served)
    status["previewUrl"] = (
        f"http://{build.preview_name(name)}.{namespace}.svc:{build.SERVICE_PORT}" if preview else None
    )
    for k in [k for k, v in status.items() if v is None]:
        del status[k]

    extra = "; ".join(notes)

    def said(message: str) -> str:
        return f"{message}; {extra}" if extra else message

    ready: tuple[ConditionStatus, str, str]
    if isinstance(target, Unresolved):
        serving_now = f"; still serving {stable}" if stable else ""
        ready = ("False", target.reason, target.message + serving_now)
    elif errors:
        ready = ("False", errors[0][0], "; ".join(m for _, m in errors))
    elif decision.phase != "Serving":
        ready = ("False", decision.phase, decision.message)
    elif short:
        ready = ("False", "PodsNotReady", "; ".join(short))
    elif spec.autoscaling is None and spec.replicas == 0:
        ready = ("True", "ScaledToZero", f"{stable} is scaled to zero (spec.replicas is 0): {status['url']} "
                 "answers nothing until replicas is raised")  # fmt: skip
    else:
        ready = ("True", "Serving", f"serving {stable} at {status['url']}")
    progressing: tuple[ConditionStatus, str, str]
    if failed:
        progressing = ("False", "ProgressDeadlineExceeded", "; ".join(failed))
    elif decision.phase in ("RollingOut", "Preview", "Canary"):
        progressing = ("True", decision.phase, decision.message)
    elif decision.phase == "WaitingForPromotion":
        progressing = ("False", decision.phase, decision.message)
    elif isinstance(target, Unresolved):
        progressing = ("True", "WaitingForVersion", target.message)
    elif not_ready:
        progressing = ("True", "ScalingReplicas", "; ".join(not_ready))
    elif lost:
        progressing = ("False", "ReplicasUnavailable", "; ".join(lost) + " after the rollout completed")
    else:
        progressing = ("False", "Complete", decision.message)
    degraded: tuple[ConditionStatus, str, str]
    if failed:
        degraded = ("True", "ProgressDeadlineExceeded", "; ".join(failed))
    elif errors:
        degraded = ("True", errors[0][0], "; ".join(m for _, m in errors))
    elif not served and isinstance(target, Unresolved):
        degraded = ("True", "NothingServed", target.message)
    elif lost:
        degraded = ("True", "ReplicasUnavailable", "; ".join(lost) + " after the rollout completed")
    else:
        degraded = ("False", "AsExpected", "no served version reports a failure")
    _conditions(status, generation, (ready[0], ready[1], said(ready[2])), progressing, degraded)


def _conditions(
    status: Body,
    generation: int | None,
    ready: tuple[ConditionStatus, str, str],
    progressing: tuple[ConditionStatus, str, str] | None,
    degraded: tuple[ConditionStatus, str, str] | None,
) -> None:
    conditions = list(status.get("conditions") or [])
    conditions = set_condition(conditions, "Ready", *ready, generation)
    if progressing is not None:
        conditions = set_condition(conditions, "Progressing", *progressing, generation)
    if degraded is not None:
        conditions = set_condition(conditions, "Degraded", *degraded, generation)
    status["conditions"] = conditions


async def _write_status(body: Body, stored: Body, status: Body) -> bool:
    """Writes the status (only what changed); False when the object changed or went meanwhile."""
    patch = kube.merge_patch(stored, status)
    if not patch:
        return True
    meta = body["metadata"]
    uid = meta["uid"]
    # Written against the newest version we know (ours, when the watch has not brought it back yet): the patch is
    # refused if the object changed since (the change is on its way and queues another pass) or was replaced.
    ours = _ours_if_newer(body)
    version = ours[1] if ours else meta.get("resourceVersion")
    try:
        stored_now = await kube.patch_status(KIND, PLURAL, meta["namespace"], meta["name"], patch, version)
    except ApiError as exc:
        if exc.status.code == 404:
            _forget(meta["namespace"], meta["name"], uid)
            return False
        if exc.status.code == 409:
            # The change is on its way (its watch event queues another pass); in case it was lost, look again.
            if queue is not None:
                queue.add_after((meta["namespace"], meta["name"]), CONFLICT_RETRY_SECONDS)
            return False
        raise
    caches.written[uid] = (status, stored_now["metadata"]["resourceVersion"])
    return True


def _kind_info() -> Any:
    from mlops_operator.api.crds import BY_KIND

    return BY_KIND[KIND]


_KIND_INFO = _kind_info()
