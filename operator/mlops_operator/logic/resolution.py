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


def resolve(
    versions: Iterable[Body], namespace: str, model: str, version: str | None, follow: str | None
) -> Resolved | Unresolved:
    """The ModelVersion of ``versions`` (the model's, in ``namespace``) to serve: the one of ``version``, or the one
    holding the stage ``follow``; or why there is none."""
    known = list(versions)
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
