"""The kinds our controllers reconcile, own and watch, and how the stores they share keep them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlops_operator import GROUP, VERSION, routers
from mlops_operator.logic.times import now_rfc3339, parse_time
from mlops_operator.runtime.kinds import Body, Resource
from mlops_operator.runtime.manager import Manager
from mlops_operator.runtime.store import Store, plain

MODEL_VERSIONS = Resource(GROUP, VERSION, "modelversions", "ModelVersion")
MODEL_DEPLOYMENTS = Resource(GROUP, VERSION, "modeldeployments", "ModelDeployment")
CANARY_ROLLOUTS = Resource(GROUP, VERSION, "canaryrollouts", "CanaryRollout")

DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
SERVICES = Resource("", "v1", "services", "Service")
AUTOSCALERS = Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")
DISRUPTION_BUDGETS = Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget")
ROUTING_KINDS = tuple(k for r in routers.every() for k in r.kinds)
SERVING_KINDS = (DEPLOYMENTS, SERVICES, AUTOSCALERS, DISRUPTION_BUDGETS, *ROUTING_KINDS)
"""The children of a ModelDeployment."""


def stage_requested_at(body: Any) -> str:
    """When spec.stage got its value: the latest write of a manager owning spec.stage (from managedFields), else
    now."""
    times = [
        entry["time"]
        for entry in body["metadata"].get("managedFields") or []
        if entry.get("time") and "f:stage" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
    ]
    return max(times, key=parse_time) if times else now_rfc3339()


KEPT_METADATA = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "generation", "deletionTimestamp",
                 "labels")  # fmt: skip


def compact(resource: Resource, *metadata: str) -> Callable[[Any], Body]:
    """How the controllers keep an object of ``resource``: all but managedFields (memory per object), with the
    metadata of KEPT_METADATA and ``metadata``."""
    kept = (*KEPT_METADATA, *metadata)

    def of(body: Any) -> Body:
        meta = body["metadata"]
        return {
            "apiVersion": body.get("apiVersion") or resource.api_version,
            "kind": resource.kind,
            "metadata": plain({k: meta[k] for k in kept if k in meta}),
            "spec": plain(body.get("spec") or {}),
            "status": plain(body.get("status") or {}),
        }

    return of


_compact_model_version = compact(MODEL_VERSIONS)


def compact_version(body: Any) -> Body:
    """What the controllers read of a ModelVersion: as ``compact`` keeps any object, plus the time of the current
    stage request, read from its managedFields."""
    return {**_compact_model_version(body), "stageRequestedAt": stage_requested_at(body)}


def model_of(body: Body) -> list[tuple[str, str]]:
    """The (namespace, model) of a ModelVersion or a ModelDeployment."""
    model = (body.get("spec") or {}).get("model")
    return [(body["metadata"].get("namespace") or "", str(model))] if model else []


def model_versions(manager: Manager) -> Store:
    """The ModelVersions, indexed by (namespace, model) (index ``model``)."""
    return manager.store(MODEL_VERSIONS, compact_version, {"model": model_of})


def model_deployments(manager: Manager) -> Store:
    """The ModelDeployments, indexed by (namespace, model) (index ``model``)."""
    return manager.store(MODEL_DEPLOYMENTS, indexes={"model": model_of})


def referenced_deployment(body: Body) -> list[tuple[str, str]]:
    """The (namespace, name) of the ModelDeployment a CanaryRollout steers or a DriftMonitor watches (spec.
    deploymentRef; none for a dataset monitor)."""
    target = ((body.get("spec") or {}).get("deploymentRef") or {}).get("name")
    return [(body["metadata"].get("namespace") or "", str(target))] if target else []


# One function per kind: a store is declared once per kind and its compaction must be the same object each time.
compact_rollout = compact(CANARY_ROLLOUTS, "annotations")


def canary_rollouts(manager: Manager) -> Store:
    """The CanaryRollouts, indexed by the (namespace, name) of the ModelDeployment they steer (index
    ``deployment``)."""
    return manager.store(CANARY_ROLLOUTS, compact_rollout, {"deployment": referenced_deployment})


DRIFT_MONITORS = Resource(GROUP, VERSION, "driftmonitors", "DriftMonitor")
compact_monitor = compact(DRIFT_MONITORS)


ALERT_RULES = Resource(GROUP, VERSION, "alertrules", "AlertRule")
compact_rule = compact(ALERT_RULES)


def drift_monitors(manager: Manager) -> Store:
    """The DriftMonitors, indexed by the (namespace, name) of the ModelDeployment they watch (index
    ``deployment``)."""
    return manager.store(DRIFT_MONITORS, compact_monitor, {"deployment": referenced_deployment})


def labels_of(body: Body) -> list[tuple[str, str, str]]:
    """(namespace, key, value) of each label of an object (index ``label``)."""
    meta = body["metadata"]
    return [(meta.get("namespace") or "", k, v) for k, v in (meta.get("labels") or {}).items()]


def namespace_of(body: Body) -> list[str]:
    """The namespace of an object (index ``namespace``)."""
    return [body["metadata"].get("namespace") or ""]
