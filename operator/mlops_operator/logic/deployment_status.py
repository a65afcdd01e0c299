"""What a ModelDeployment's status says: each served version's line and the Ready, Progressing and Degraded
conditions, from the plan, the Deployments' health and what the API server refused."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mlops_operator.logic.serving import Health, Served

ConditionStatus = Literal["True", "False", "Unknown"]
Verdict = tuple[ConditionStatus, str, str]
"""A condition's status, reason and message."""


@dataclass(frozen=True)
class Facts:
    """Everything the conditions are decided from."""

    served: list[Served]
    replicas: dict[str, int]
    """The replicas each version's Deployment is given."""
    health: dict[str, Health]
    """What each version's Deployment reports (absent: not created yet)."""
    phase: str
    """The plan's phase (Serving, RollingOut, Preview, WaitingForPromotion, Canary, ...)."""
    phase_message: str
    url: str | None
    autoscaling_min: int | None = None
    """spec.autoscaling.minReplicas when autoscaled."""
    scaled_to_zero: bool = False
    """spec.replicas is 0 (not autoscaled)."""
    unresolved: tuple[str, str] | None = None
    """(reason, message) when the version to serve is not resolved."""
    problems: list[tuple[str, str]] = field(default_factory=list)
    """(reason, message) of writes the API server refused or names held by others."""
    notes: list[str] = field(default_factory=list)
    """Said after the Ready message (shadow, fields the API server did not keep)."""


@dataclass(frozen=True)
class VersionLine:
    version: str
    role: str
    since: str
    replicas: int
    ready_replicas: int
    weight: int


@dataclass(frozen=True)
class Summary:
    versions: list[VersionLine]
    stable: str | None
    ready: Verdict
    progressing: Verdict
    degraded: Verdict


def summarize(facts: Facts) -> Summary:
    """The version lines and the three conditions (see the README's table of reasons)."""
    versions: list[VersionLine] = []
    failed: list[str] = []  # Deployments past their progress deadline
    lost: list[str] = []  # rolled out, then Pods lost
    not_ready: list[str] = []  # short of their replicas
    # What keeps Ready False: a version that takes, or is about to take, the traffic falling short. A shadow shows
    # only in Progressing and Degraded; under autoscaling, a scale-up the autoscaler started is progress, not a
    # fault.
    short: list[str] = []
    autoscaled = facts.autoscaling_min is not None
    for s in facts.served:
        h = facts.health.get(s.version)
        desired = h.desired if h is not None else facts.replicas.get(s.version, 0)
        ready_count = h.ready if h is not None else 0
        if not autoscaled:
            desired = facts.replicas.get(s.version, desired)
        versions.append(VersionLine(s.version, s.role, s.since, desired, ready_count, s.weight))
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
            floor = min(desired, facts.autoscaling_min) if facts.autoscaling_min is not None else desired
            if s.role != "shadow" and (h is None or ready_count < floor or not autoscaled or h.rolling):
                short.append(line)
    stable = next((s.version for s in facts.served if s.role == "stable"), None)
    problems = "; ".join(m for _, m in facts.problems)
    first_problem = facts.problems[0][0] if facts.problems else ""
    gone = " after the rollout completed"

    ready: Verdict
    if facts.unresolved is not None:
        reason, message = facts.unresolved
        ready = ("False", reason, message + (f"; still serving {stable}" if stable else ""))
    elif facts.problems:
        ready = ("False", first_problem, problems)
    elif facts.phase != "Serving":
        ready = ("False", facts.phase, facts.phase_message)
    elif short:
        ready = ("False", "PodsNotReady", "; ".join(short))
    elif facts.scaled_to_zero:
        ready = ("True", "ScaledToZero", f"{stable} is scaled to zero (spec.replicas is 0): {facts.url} answers "
                 "nothing until replicas is raised")  # fmt: skip
    else:
        ready = ("True", "Serving", f"serving {stable} at {facts.url}")
    if facts.notes:
        ready = (ready[0], ready[1], f"{ready[2]}; {'; '.join(facts.notes)}")

    progressing: Verdict
    if failed:
        progressing = ("False", "ProgressDeadlineExceeded", "; ".join(failed))
    elif facts.phase in ("RollingOut", "Preview", "Canary"):
        progressing = ("True", facts.phase, facts.phase_message)
    elif facts.phase == "WaitingForPromotion":
        progressing = ("False", facts.phase, facts.phase_message)
    elif facts.unresolved is not None:
        progressing = ("True", "WaitingForVersion", facts.unresolved[1])
    elif not_ready:
        progressing = ("True", "ScalingReplicas", "; ".join(not_ready))
    elif lost:
        progressing = ("False", "ReplicasUnavailable", "; ".join(lost) + gone)
    else:
        progressing = ("False", "Complete", facts.phase_message)

    degraded: Verdict
    if failed:
        degraded = ("True", "ProgressDeadlineExceeded", "; ".join(failed))
    elif facts.problems:
        degraded = ("True", first_problem, problems)
    elif not facts.served and facts.unresolved is not None:
        degraded = ("True", "NothingServed", facts.unresolved[1])
    elif lost:
        degraded = ("True", "ReplicasUnavailable", "; ".join(lost) + gone)
    else:
        degraded = ("False", "AsExpected", "no served version reports a failure")
    return Summary(versions, stable, ready, progressing, degraded)
