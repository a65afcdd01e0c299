"""Which ModelVersion a deployment serves: by version or by the stage it follows, and whether it can be served."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mlops_operator.logic.conditions import get_condition

Body = dict[str, Any]


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
    """VersionNotFound or VersionNotReady."""
    message: str


def servable(mv: Body) -> tuple[bool, str]:
    """Whether the ModelVersion ``mv`` can be served, and why not: not a duplicate, and its artifact verified (or
    of a kind only the model server reads)."""
    conditions = (mv.get("status") or {}).get("conditions") or []
    ready = get_condition(conditions, "Ready") or {}
    if ready.get("reason") == "DuplicateVersion":
        return False, f"DuplicateVersion: {ready.get('message', '')}"
    artifact = get_condition(conditions, "ArtifactVerified")
    if artifact is None:
        return False, "its artifact is not checked yet"
    if artifact["status"] == "True" or (artifact["status"] == "Unknown" and artifact.get("reason") == "NotReadable"):
        return True, ""
    return False, f"{artifact.get('reason', 'ArtifactNotVerified')}: {artifact.get('message', '')}"


def holder(candidates: list[Body]) -> Body:
    """Of several objects of one version, the identity holder: the one the registry did not mark as a duplicate,
    then by name."""

    def rank(mv: Body) -> tuple[int, str]:
        ready = get_condition((mv.get("status") or {}).get("conditions") or [], "Ready") or {}
        return (1 if ready.get("reason") == "DuplicateVersion" else 0, mv["metadata"]["name"])

    return min(candidates, key=rank)


def awaiting_canary(mv: Body, deployment: str) -> bool:
    """Whether ``mv`` asks for production and waits for live evidence from ``deployment``'s canary (its
    live-canary gate names it; its other gates pass)."""
    gate = ((mv.get("spec") or {}).get("liveCanary") or {}).get("deploymentRef") or {}
    ready = get_condition((mv.get("status") or {}).get("conditions") or [], "Ready") or {}
    return gate.get("name") == deployment and ready.get("reason") == "AwaitingCanary"


def resolve(
    versions: Iterable[Body], namespace: str, model: str, version: str | None, follow: str | None,
    canary_of: str | None = None,
) -> Resolved | Unresolved:  # fmt: skip
    """The ModelVersion of ``versions`` (the model's, in ``namespace``) to serve: the one of ``version``, or the one
    holding the stage ``follow``; or why there is none. ``canary_of`` (a deployment following production with the
    canary strategy): a version waiting for this deployment's canary before production is served first (the
    latest request), so that its canary runs."""
    known = list(versions)
    if follow is not None and canary_of is not None:
        waiting = [mv for mv in known if awaiting_canary(mv, canary_of)]
        if waiting:
            mv = max(waiting, key=lambda m: (str(((m.get("status") or {}).get("requested") or {}).get("at") or ""),
                                             m["metadata"]["name"]))  # fmt: skip
            ok, _ = servable(mv)
            if ok:
                return Resolved(mv["metadata"]["name"], str(mv["spec"]["version"]), mv["spec"], mv.get("status") or {})
    if follow is not None:
        candidates = [mv for mv in known if (mv.get("status") or {}).get("stage") == follow]
        if not candidates:
            return Unresolved("VersionNotFound", f"no version of model {model} holds {follow} in {namespace}")
    else:
        candidates = [mv for mv in known if str(mv["spec"].get("version")) == version]
        if not candidates:
            return Unresolved(
                "VersionNotFound", f"no ModelVersion of model {model} has version {version} in {namespace}"
            )
    mv = holder(candidates)
    ok, why = servable(mv)
    found = str(mv["spec"]["version"])
    if not ok:
        return Unresolved("VersionNotReady", f"ModelVersion {mv['metadata']['name']} ({model} {found}): {why}")
    return Resolved(mv["metadata"]["name"], found, mv["spec"], mv.get("status") or {})
