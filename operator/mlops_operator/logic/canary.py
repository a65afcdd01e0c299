"""How CanaryRollouts steer the canary of a deployment (the rule the deployment controller follows; the rollout
controller writes what it reads)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Body = dict[str, Any]

STOPPED = ("RolledBack", "Aborted")


def newest(rollouts: Iterable[Body]) -> Body | None:
    """The newest CanaryRollout (by creation, then name)."""
    return max(
        rollouts,
        key=lambda r: (r["metadata"].get("creationTimestamp") or "", r["metadata"]["name"]),
        default=None,
    )


@dataclass(frozen=True)
class Steer:
    """What the rollout that speaks for a deployment's canary says of it."""

    rollout: str
    """The CanaryRollout's name."""
    phase: str | None
    weight: int | None
    """The canary's weight it asks for (None: it has not started a run of this version)."""
    stopped: str | None = None
    """Why it rolled back or aborted this version (then the version is not run, until retried)."""
    message: str | None = None
    """The rollout's own account of where it is."""


def steer(rollouts: Iterable[Body], target: str) -> Steer | None:
    """The word of the CanaryRollouts of a deployment on ``target``, the version it runs as its canary.

    A rollout naming ``target`` as its spec.candidate speaks first (the newest, if several); otherwise the newest
    policy (a rollout without a candidate); one naming another candidate says nothing. It gives a weight only once
    its status says it runs ``target`` (status.candidate); a run of ``target`` that ended rolled back or aborted
    stops the version.
    """
    every = list(rollouts)
    specific = [r for r in every if str((r.get("spec") or {}).get("candidate") or "") == target]
    policies = [r for r in every if not (r.get("spec") or {}).get("candidate")]
    rollout = newest(specific) or newest(policies)
    if rollout is None:
        return None
    name = rollout["metadata"]["name"]
    status = rollout.get("status") or {}
    phase, message = status.get("phase"), status.get("message")
    if status.get("candidate") != target:
        return Steer(name, phase, None, None, message)
    if phase in STOPPED:
        reason = (status.get("run") or {}).get("reason") or message or phase
        return Steer(name, phase, 0, str(reason), message)
    weights = status.get("weights") or {}
    return Steer(name, phase, int(weights.get("canary", 0)), None, message)


def runs_of(rollouts: Iterable[Body], version: str) -> list[Body]:
    """Every run of ``version`` the rollouts' statuses record (their history and their current run), as the
    ModelVersion's status.canaries entries, oldest first."""
    out = []
    for rollout in rollouts:
        spec, status = rollout.get("spec") or {}, rollout.get("status") or {}
        where = {"rollout": rollout["metadata"]["name"], "deployment": (spec.get("deploymentRef") or {}).get("name")}
        for entry in status.get("history") or []:
            if str(entry.get("candidate")) == version:
                out.append({**where, "result": entry.get("result"), "reason": entry.get("reason"),
                            "startedAt": entry.get("startedAt"), "endedAt": entry.get("endedAt")})  # fmt: skip
        run = status.get("run") or {}
        if str(run.get("candidate")) == version:
            ended = run.get("endedAt") is not None
            out.append({**where, "result": run.get("result") if ended else "Running",
                        "reason": run.get("reason") if ended else None, "startedAt": run.get("startedAt"),
                        "endedAt": run.get("endedAt")})  # fmt: skip
    out.sort(key=lambda r: str(r.get("startedAt") or ""))
    return [{k: v for k, v in r.items() if v is not None} for r in out]
