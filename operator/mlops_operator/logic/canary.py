"""How CanaryRollouts steer the traffic of a deployment (rules the deployment and the rollout controllers share)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Body = dict[str, Any]

ENDED_WITHOUT_PROMOTION = ("RolledBack", "Failed", "Aborted")


def newest(rollouts: Iterable[Body]) -> Body | None:
    """The newest CanaryRollout (by creation, then name): the one that speaks for the deployment now."""
    return max(
        rollouts,
        key=lambda r: (r["metadata"].get("creationTimestamp") or "", r["metadata"]["name"]),
        default=None,
    )


def canary_weight(rollouts: Iterable[Body], candidate: str) -> int | None:
    """The share the CanaryRollouts of a deployment give ``candidate`` (the newest one's status.weights.canary),
    if any.

    This is how the rollouts drive the weights: they write their own status, the deployment routes by it through
    its router. Only the newest rollout counts (an older one, promoted or not, speaks of an earlier attempt), and
    only for its own candidate; one that was rolled back, failed or aborted gives none.
    """
    rollout = newest(rollouts)
    if rollout is None:
        return None
    spec, status = rollout.get("spec") or {}, rollout.get("status") or {}
    weights = status.get("weights") or {}
    if str(spec.get("candidate")) != candidate or not weights or status.get("phase") in ENDED_WITHOUT_PROMOTION:
        return None
    return int(weights.get("canary", 0))
