"""Status conditions following the Kubernetes API conventions."""

from __future__ import annotations

from typing import Any, Literal

from mlops_operator.logic.times import now_rfc3339

ConditionStatus = Literal["True", "False", "Unknown"]


def set_condition(
    conditions: list[dict[str, Any]] | None,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """A copy of ``conditions`` with the condition ``type_`` set.

    ``lastTransitionTime`` moves only when the status changes, so that it says how long the condition has held;
    the other conditions and their order are kept.
    """
    existing = next((c for c in conditions or [] if c.get("type") == type_), None)
    transition = (
        existing["lastTransitionTime"]
        if existing and existing.get("status") == status and existing.get("lastTransitionTime")
        else now or now_rfc3339()
    )
    updated: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
    }
    if generation is not None:
        updated["observedGeneration"] = generation
    out = [dict(c) for c in conditions or [] if c.get("type") != type_]
    index = next((i for i, c in enumerate(conditions or []) if c.get("type") == type_), len(out))
    out.insert(index, updated)
    return out


def get_condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    """The condition ``type_``, if present."""
    return next((c for c in conditions or [] if c.get("type") == type_), None)
