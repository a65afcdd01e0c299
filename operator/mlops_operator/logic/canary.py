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
