"""The ModelDeployment controller: resolves the version to serve, runs its children, routes the traffic.

Declarations: it reconciles ModelDeployments; owns Deployments, Services, HPAs, PDBs and the routers' kinds
(every object of these kinds is stored, so that a name someone else holds is known); watches ModelVersions (the
deployments of their model) and CanaryRollouts (the deployment they steer). The decisions are in ``logic``
(resolution, the serving plan and sizing, the canary weight, the conditions); the objects come from ``builders``
and ``routers``; the runtime applies them, writing only differences.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from typing import Any

from mlops_operator import GROUP, __version__, metrics, routers
from mlops_operator.api.common import Condition, duration_seconds
from mlops_operator.api.crds import BY_KIND
from mlops_operator.api.modeldeployment import (
    CanaryDriver,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ServedVersion,
)
from mlops_operator.builders import serving as build
from mlops_operator.controllers import kinds
from mlops_operator.logic import canary, serving
from mlops_operator.logic.conditions import set_condition
from mlops_operator.logic.deployment_status import Facts, Summary, Verdict, summarize
from mlops_operator.logic.resolution import Resolved, Unresolved, resolve
from mlops_operator.logic.times import stamp
from mlops_operator.outbound import Policy
from mlops_operator.runtime import events
from mlops_operator.runtime.apply import Applier, ChildKey, Report
from mlops_operator.runtime.controller import Controller, Watch
from mlops_operator.runtime.kinds import Body, Key, key_of
from mlops_operator.runtime.manager import Manager
from mlops_operator.runtime.status import StatusWriter

KIND = kinds.MODEL_DEPLOYMENTS.kind
PROMOTE_ANNOTATION = f"{GROUP}/promote"
# The model server image when spec.server.image is not set: the operator's own (the chart sets it).
SERVER_IMAGE_ENV = "MLOPS_SERVER_IMAGE"
DEFAULT_SERVER_IMAGE = f"mlops-operator:{__version__}"
# Reconciles at the same time: each mostly waits on the API server.
WORKERS = 32
# A name taken by an object that is not ours, a router kind not installed: nothing watched says when that ends.
ERROR_RETRY_SECONDS = 10
CONFLICT_RETRY_SECONDS = 2
ROUTING = {r.kind for r in kinds.ROUTING_KINDS}
# A router kind the cluster does not serve, as the deployment reports it.
REASONS = {"KindNotServed": "RouterUnavailable"}


class ModelDeployments:
    """The controller; ``controller`` is what the manager runs (it opens nothing for users: no ``policy``)."""

    def __init__(self, manager: Manager, policy: Policy | None = None) -> None:
        self.deployments = kinds.model_deployments(manager)
        self.versions = kinds.model_versions(manager)
        self.rollouts = kinds.canary_rollouts(manager)
        self.children = Applier(manager, kinds.MODEL_DEPLOYMENTS, kinds.SERVING_KINDS)
        self.status = StatusWriter(kinds.MODEL_DEPLOYMENTS, self._changed_meanwhile, self._forget)
        self.controller = manager.add(
            Controller(
                name=KIND,
                resource=kinds.MODEL_DEPLOYMENTS,
                reconcile=self.reconcile,
                owns=kinds.SERVING_KINDS,
                watches=(
                    Watch(kinds.MODEL_VERSIONS, self._deployments_of_model),
                    Watch(kinds.CANARY_ROLLOUTS, kinds.referenced_deployment),
                ),
                forget=self._forget,
                is_echo=self.status.is_echo,
                workers=WORKERS,
            )
        )
        metrics.STATE.objects(KIND, lambda: [self.status.current(md) for md in self.deployments])

    def _deployments_of_model(self, mv: Body) -> list[Key]:
        return [key_of(md) for model in kinds.model_of(mv) for md in self.deployments.by("model", model)]

    def _changed_meanwhile(self, body: Body) -> None:
        # The change is on its way (its watch event queues another pass); in case it was lost, look again.
        self.controller.queue.add_after(key_of(body), CONFLICT_RETRY_SECONDS)

    def _forget(self, body: Body) -> None:
        uid = body["metadata"]["uid"]
        self.deployments.remove(key_of(body), uid)
        self.status.forget(uid)
        self.children.forget(uid)

    async def reconcile(self, key: Key) -> float | None:
        body = self.deployments.get(key)
        if body is None:
            return None
        meta = body["metadata"]
        problem = BY_KIND[KIND].spec_problem(body.get("spec") or {})
        if problem is not None:
            status = ModelDeploymentStatus.model_validate(self.status.status(body))
            invalid: Verdict = ("False", "InvalidSpec", problem)
            await self.status.write(body, _with_conditions(status, meta.get("generation"), invalid, invalid,
                                                           ("True", "InvalidSpec", problem)))  # fmt: skip
            return None
        if meta.get("deletionTimestamp"):
            # Being deleted (the garbage collector may be removing the children first): put nothing back.
            return None
        return await self._serve(body, ModelDeploymentSpec.model_validate(body["spec"]))

    async def _serve(self, body: Body, spec: ModelDeploymentSpec) -> float | None:
        meta = body["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        stored = self.status.status(body)
        router = routers.get(spec.router.type)
        now = datetime.now(UTC)
        children = self.children.children(uid)
        model_versions = self.versions.by("model", (namespace, spec.model))

        def health_of(version: str) -> serving.Health | None:
            child = children.get(("apps/v1", "Deployment", build.child_name(name, version)))
            return serving.deployment_health(child) if child is not None else None

        canary_of = name if spec.rollout.strategy == "canary" else None
        target = resolve(model_versions, namespace, spec.model, spec.version, spec.follow, canary_of)
        previous = _previous(stored)
        previous_stable = next((s.version for s in previous if s.role == "stable"), None)
        known = {s.version for s in previous} | {v for v in (spec.version,) if v}
        if isinstance(target, Resolved):
            known.add(target.version)
        steer = None
        planned = target.version if isinstance(target, Resolved) else None
        notes: list[str] = []
        if isinstance(target, Resolved) and spec.rollout.strategy == "canary":
            steer = canary.steer(self.rollouts.by("deployment", (namespace, name)), target.version)
            if (
                steer is not None and steer.stopped is not None
                and previous_stable is not None and previous_stable != target.version
            ):  # fmt: skip
                # Rolled back or aborted: the stable version takes the traffic back and the candidate drains.
                planned = previous_stable
                notes.append(f"canary {target.version} stopped by canaryrollout {steer.rollout} ({steer.phase}): "
                             f"{steer.stopped}")  # fmt: skip
        weight = steer.weight if steer is not None else None
        decision = serving.plan(
            planned, previous,
            {v: h for v in known if (h := health_of(v)) is not None}, _strategy(spec), now,
            (meta.get("annotations") or {}).get(PROMOTE_ANNOTATION), weight,
        )  # fmt: skip
        served = list(decision.served)
        mirror = None
        if spec.shadow is not None:
            found = resolve(model_versions, namespace, spec.model, spec.shadow.version, None)
            shadow = serving.shadow(
                found.version if isinstance(found, Resolved) else None,
                found.message if isinstance(found, Unresolved) else None,
                spec.shadow.percent, served, previous,
                health_of(found.version) if isinstance(found, Resolved) else None, stamp(now),
            )  # fmt: skip
            served += [shadow.served] if shadow.served else []
            mirror = shadow.mirror
            notes += [shadow.note] if shadow.note else []

        # The version objects each served version resolves to; a version whose ModelVersion is gone keeps its
        # children as they are (they cannot be rebuilt, and removing them would cut its traffic).
        resolved: dict[str, Resolved] = {}
        for s in served:
            same = isinstance(target, Resolved) and target.version == s.version
            r = target if same else resolve(model_versions, namespace, spec.model, s.version, None)
            if isinstance(r, Resolved):
                resolved[s.version] = r
        served = [s for s in served if s.version in resolved or health_of(s.version) is not None]
        health = {s.version: h for s in served if (h := health_of(s.version)) is not None}
        autoscaling_min = spec.autoscaling.min_replicas if spec.autoscaling else None
        replicas = serving.sized(served, spec.replicas, router.name == "replicas",
                                 spec.shadow.percent if spec.shadow else 100, health, autoscaling_min)  # fmt: skip

        desired = self._children(body, spec, served, resolved, replicas, health, router, mirror)
        report = Report()
        # At once: traffic cannot reach a version before its objects exist, since it only ever moves to ready Pods.
        await self.children.apply(uid, desired, report)
        # What the applies made (and what the watches changed meanwhile): what is pruned and reported comes from it.
        children = self.children.children(uid)
        health = {s.version: h for s in served if (h := health_of(s.version)) is not None}
        await self._prune(body, served, resolved, desired, children, report)
        wanted = {(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in desired}
        for child, path in self.children.dropped(uid).items():
            if child in wanted:
                notes.append(f"{child[1]} {child[2]}: the API server did not keep {path.lstrip('.')} as applied "
                             "(is its CustomResourceDefinition older than needed?)")  # fmt: skip

        url = f"http://{build.front_name(name)}.{namespace}.svc:{build.SERVICE_PORT}" if served else None
        summary = summarize(
            Facts(
                served,
                replicas,
                health,
                decision.phase,
                decision.message,
                url,
                autoscaling_min,
                scaled_to_zero=spec.autoscaling is None and spec.replicas == 0,
                unresolved=(target.reason, target.message) if isinstance(target, Unresolved) else None,
                problems=[(REASONS.get(reason, reason), message) for reason, message in report.problems],
                notes=notes,
            )
        )
        status = _status(stored, meta.get("generation"), summary, name, namespace, url, served)
        if steer is not None and isinstance(target, Resolved) and target.version != summary.stable:
            stopped = target.version if steer.stopped else None
            status.canary = CanaryDriver(rollout=steer.rollout, phase=steer.phase, candidate=target.version,
                                         stopped=stopped, message=steer.message)  # fmt: skip
        if await self.status.write(body, status) and summary.stable and summary.stable != previous_stable:
            message = f"serving {summary.stable}" + (f" (was {previous_stable})" if previous_stable else "")
            events.record(body, "VersionServed", message)
        if report:
            return min(d for d in (decision.requeue_after, ERROR_RETRY_SECONDS) if d is not None)
        return decision.requeue_after

    def _children(
        self, body: Body, spec: ModelDeploymentSpec, served: list[serving.Served], resolved: dict[str, Resolved],
        replicas: dict[str, int], health: dict[str, serving.Health], router: Any, mirror: tuple[str, int] | None,
    ) -> list[Body]:  # fmt: skip
        """Every child the deployment should have: per version its Deployment, Service, HPA and PDB; the front and
        preview Services; the router's objects."""
        image = os.environ.get(SERVER_IMAGE_ENV) or DEFAULT_SERVER_IMAGE
        out: list[Body] = []
        for s in served:
            r = resolved.get(s.version)
            if r is not None:
                w = build.workload(s.version, s.role, replicas[s.version], r.spec, r.status, s.version in health)
                out += [build.deployment(body, spec, w, image), build.version_service(body, spec, w)]
                out += [obj for obj in (build.hpa(body, spec, w), build.pdb(body, spec, w)) if obj]
        traffic = routers.Traffic({s.version: s.weight for s in served if s.role in serving.TRAFFIC_ROLES}, mirror)
        front = [s.version for s in served if s.version in router.front_versions(traffic)]
        if front:
            out.append(build.front_service(body, spec, front))
        preview = next((s for s in served if s.role == "preview"), None)
        if preview is not None:
            out.append(build.preview_service(body, spec, preview.version))
        if traffic.weights:
            out += [build.owned(body, obj) for obj in router.objects(body, spec, traffic)]
        return out

    async def _prune(
        self, body: Body, served: list[serving.Served], resolved: dict[str, Resolved], desired: list[Body],
        children: dict[ChildKey, Body], report: Report,
    ) -> None:  # fmt: skip
        """Removes what is no longer served (after the new objects are in place: a version loses its objects only
        after the traffic has left it). Without the new router's objects, the Services and the previous router's
        objects still carry the traffic: they stay."""
        meta = body["metadata"]
        wanted = {(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in desired}
        kept = {build.child_name(meta["name"], s.version) for s in served if s.version not in resolved}
        routing_failed = bool(report.reasons() & {"KindNotServed", "ApplyFailed"})
        stale = [
            k for k, child in children.items()
            if k not in wanted and k[2] not in kept and self.children.managed(child)
            and not (routing_failed and (k[1] == "Service" or k[1] in ROUTING))
        ]  # fmt: skip
        await self.children.prune(meta["namespace"], meta["uid"], stale, report)


def _previous(status: Body) -> list[serving.Served]:
    out = []
    for entry in status.get("versions") or []:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            since = entry.get("since") or stamp(datetime.now(UTC))
            out.append(serving.Served(str(entry["version"]), entry["role"], int(entry.get("weight", 0)), since))
    return out


def _strategy(spec: ModelDeploymentSpec) -> serving.Strategy:
    rollout = spec.rollout
    total = None if spec.autoscaling else spec.replicas
    sizing: dict[str, Any] = {"drain": duration_seconds(rollout.drain_delay), "total": total,
                              "split": spec.router.type == "replicas"}  # fmt: skip
    if rollout.strategy == "blueGreen":
        settings = rollout.blue_green
        auto = settings.auto_promote if settings else True
        delay = duration_seconds(settings.scale_down_delay) if settings else 30.0
        return serving.Strategy("blueGreen", auto_promote=auto, scale_down_delay=delay, **sizing)
    return serving.Strategy(rollout.strategy, **sizing)


def _with_conditions(
    status: ModelDeploymentStatus, generation: int | None, ready: Verdict, progressing: Verdict, degraded: Verdict
) -> ModelDeploymentStatus:
    conditions = [c.wire() for c in status.conditions]
    for type_, verdict in (("Ready", ready), ("Progressing", progressing), ("Degraded", degraded)):
        conditions = set_condition(conditions, type_, *verdict, generation)
    typed = [Condition.model_validate(c) for c in conditions]
    return status.model_copy(update={"observed_generation": generation, "conditions": typed})


def _status(
    stored: Body, generation: int | None, summary: Summary, name: str, namespace: str, url: str | None,
    served: list[serving.Served],
) -> ModelDeploymentStatus:  # fmt: skip
    versions = [
        ServedVersion(
            version=v.version, role=v.role, since=v.since, deployment=build.child_name(name, v.version),
            service=build.child_name(name, v.version), replicas=v.replicas, ready_replicas=v.ready_replicas,
            weight=v.weight,
        )
        for v in summary.versions
    ]  # fmt: skip
    preview = any(s.role == "preview" for s in served)
    status = ModelDeploymentStatus(
        version=summary.stable,
        url=url,
        preview_url=f"http://{build.preview_name(name)}.{namespace}.svc:{build.SERVICE_PORT}" if preview else None,
        replicas=sum(v.replicas for v in versions),
        ready_replicas=sum(v.ready_replicas for v in versions),
        traffic=serving.traffic_line(served) or None,
        versions=versions,
        conditions=[Condition.model_validate(c) for c in stored.get("conditions") or []],
    )
    return _with_conditions(status, generation, summary.ready, summary.progressing, summary.degraded)
