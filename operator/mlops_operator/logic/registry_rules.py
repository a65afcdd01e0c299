"""The registry's rules: identity, quality gates, comparison with production, and who holds production.

Everything here is a pure function of the versions of one model (their specs and what was granted so far), so the
same inputs give the same grants after a restart: nothing depends on the order events arrive in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlops_operator.logic.conditions import ConditionStatus

PRODUCTION = "production"
ARCHIVED = "archived"
DEVELOPMENT = "development"
HISTORY_LIMIT = 50


@dataclass(frozen=True)
class MetricValue:
    value: float
    lower_is_better: bool = False


@dataclass(frozen=True)
class Canary:
    """A CanaryRollout's run of a version on a deployment."""

    rollout: str
    result: str
    """Running, Promoted, RolledBack or Aborted."""
    reason: str | None = None


@dataclass
class Version:
    """What the rules need to know of one ModelVersion."""

    name: str
    model: str
    version: str
    created: datetime
    desired: str
    requested_at: datetime
    granted: str | None = None
    metrics: dict[str, MetricValue] = field(default_factory=dict)
    gates: list[dict[str, Any]] = field(default_factory=list)
    artifact_ok: bool = False
    superseded: bool = False
    claimed: bool = False
    live_canary: str | None = None
    """The deployment whose canary must promote the version before production (spec.liveCanary)."""
    canary: Canary | None = None
    """The latest CanaryRollout run of the version on that deployment."""

    def live_evidence(self) -> bool:
        """Whether production may be granted as far as the live canary is concerned."""
        return self.live_canary is None or (self.canary is not None and self.canary.result == "Promoted")

    @property
    def request_key(self) -> tuple[datetime, datetime, str]:
        """The order of production requests: the latest request wins; same instant: the newer object, then name."""
        return (self.requested_at, self.created, self.name)


def fmt(value: float) -> str:
    """A metric value for people: short, exact enough."""
    return f"{value:.6g}"


# --- identity ----------------------------------------------------------------------------------------------------


def identity_holders(versions: Iterable[Version]) -> dict[tuple[str, str], Version]:
    """For each (model, version), the object that holds it: the one that already holds it, else the oldest (then
    by name; creation times have one-second precision)."""

    def rank(v: Version) -> tuple[bool, datetime, str]:
        return (not v.claimed, v.created, v.name)

    holders: dict[tuple[str, str], Version] = {}
    for v in versions:
        key = (v.model, v.version)
        current = holders.get(key)
        if current is None or rank(v) < rank(current):
            holders[key] = v
    return holders


# --- gates and comparison ------------------------------------------------------------------------------------------


def improvement(change: float, lower_is_better: bool) -> bool:
    """Whether ``change`` (to - from) is an improvement in the metric's direction."""
    return change < 0 if lower_is_better else change > 0


def evaluate_gates(
    gates: Sequence[Mapping[str, Any]], metrics: Mapping[str, MetricValue], production: Version | None
) -> list[dict[str, Any]]:
    """The verdict of every gate, in spec order, as status.gates entries."""
    results = []
    for gate in gates:
        name = gate["metric"]
        own = metrics.get(name)
        required_parts = []
        if gate.get("min") is not None:
            required_parts.append(f">= {fmt(gate['min'])}")
        if gate.get("max") is not None:
            required_parts.append(f"<= {fmt(gate['max'])}")
        result: dict[str, Any] = {"metric": name}
        if own is not None:
            # Left out when missing: the API server drops nulls, and status must read back as written.
            result["value"] = own.value
        failures = []
        if own is None:
            failures.append(f"metric {name} is missing")
        elif not math.isfinite(own.value):
            failures.append(f"metric {name} is {own.value}")
        else:
            if gate.get("min") is not None and not own.value >= gate["min"]:
                failures.append(f"{name} {fmt(own.value)} < {fmt(gate['min'])}")
            if gate.get("max") is not None and not own.value <= gate["max"]:
                failures.append(f"{name} {fmt(own.value)} > {fmt(gate['max'])}")
        if gate.get("notWorseThan") == PRODUCTION:
            tolerance = float(gate.get("tolerance") or 0.0)
            prod = production.metrics.get(name) if production else None
            if production is None:
                required_parts.append("not worse than production (there is none)")
            elif prod is None:
                required_parts.append(f"not worse than production {production.version} (which has no {name})")
            else:
                lower = own.lower_is_better if own else prod.lower_is_better
                bound = prod.value + tolerance if lower else prod.value - tolerance
                op = "<=" if lower else ">="
                required_parts.append(
                    f"{op} {fmt(bound)} (production {production.version}: {fmt(prod.value)}, "
                    f"tolerance {fmt(tolerance)})"
                )
                if own is not None and math.isfinite(own.value):
                    ok = own.value <= bound if lower else own.value >= bound
                    if not ok:
                        worse = "above" if lower else "below"
                        failures.append(
                            f"{name} {fmt(own.value)} is {worse} production {production.version}'s "
                            f"{fmt(prod.value)} by more than {fmt(tolerance)}"
                        )
        result["required"] = " and ".join(required_parts)
        result["passed"] = not failures
        if failures:
            result["reason"] = "; ".join(failures)
        results.append(result)
    return results


def compare(metrics: Mapping[str, MetricValue], production: Version | None) -> dict[str, Any] | None:
    """Each metric of this version against the production version's, as status.comparison."""
    if production is None:
        return None
    rows = []
    for name in sorted(set(metrics) | set(production.metrics)):
        own, prod = metrics.get(name), production.metrics.get(name)
        row: dict[str, Any] = {"name": name}
        if prod is not None:
            row["from"] = prod.value
        if own is not None:
            row["to"] = own.value
        if own is not None and prod is not None and math.isfinite(own.value) and math.isfinite(prod.value):
            # Rounded so that 0.97 - 0.95 reads 0.02, not 0.020000000000000018.
            change = round(own.value - prod.value, 12)
            row["change"] = change
            row["improved"] = improvement(change, own.lower_is_better)
        rows.append(row)
    return {"against": production.version, "metrics": rows}


# --- stages --------------------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What one version is granted, and why, in the light of its siblings."""

    granted: str | None
    ready: bool
    reason: str
    message: str
    gates: list[dict[str, Any]]
    comparison: dict[str, Any] | None
    transition_reason: str = "Requested"
    transition_message: str = ""
    live_gate: ConditionStatus | None = None
    """Unknown while the live canary has not decided, False when it failed: the GatesPassed condition's status
    when the metric gates pass but the live canary has the last word."""


@dataclass
class Plan:
    """The grants of one model's versions."""

    holder: Version | None
    """Production before the plan."""
    after: Version | None
    """Production after the plan."""
    verdicts: dict[str, Verdict]

    @property
    def production_changes(self) -> bool:
        return self.after is not self.holder


def plan(versions: Sequence[Version], only: Iterable[str] | None = None) -> Plan:
    """Decides which version holds production and what each version is granted.

    At most one version holds production. Among the versions asking for it whose artifact is verified and whose
    gates pass (relative gates against the current holder), the latest request wins; the holder it replaces is
    archived. A version whose request cannot be granted keeps its stage (development if it had none yet).

    Verdicts are computed for the versions named in ``only`` (all when None), the holder and the winner, and for
    every version when production changes hands, since everyone's gates and comparison refer to production.
    """
    holders = identity_holders(versions)
    duplicates = {v.name: holders[(v.model, v.version)] for v in versions if holders[(v.model, v.version)] is not v}
    granted_production = [v for v in versions if v.granted == PRODUCTION and v.name not in duplicates]
    holder = max(granted_production, key=lambda v: v.request_key, default=None)

    candidate_gates: dict[str, list[dict[str, Any]]] = {}
    eligible = []
    for v in versions:
        if v.desired != PRODUCTION or v.name in duplicates or not v.artifact_ok:
            continue
        candidate_gates[v.name] = evaluate_gates(v.gates, v.metrics, holder if holder is not v else None)
        if all(g["passed"] for g in candidate_gates[v.name]) and v.live_evidence():
            eligible.append(v)
    winner = max(eligible, key=lambda v: v.request_key, default=None)
    # Production after this plan: the winner; else a holder that still asks for it keeps it.
    after = winner or (holder if holder is not None and holder.desired == PRODUCTION else None)
    changes = after is not holder

    def reference(v: Version) -> Version | None:
        """The production version v's gates and comparison are shown against."""
        if v is after:
            return holder if v is winner and holder is not v else None
        return after

    names = {v.name for v in versions} if only is None or changes else set(only)
    names |= {v.name for v in (holder, winner) if v is not None}
    verdicts = {}
    for v in versions:
        if v.name not in names:
            continue
        ref = reference(v)
        gates = candidate_gates[v.name] if ref is holder and v.name in candidate_gates else (
            evaluate_gates(v.gates, v.metrics, ref))  # fmt: skip
        comparison = compare(v.metrics, ref)
        if v.name in duplicates:
            owner = duplicates[v.name]
            verdicts[v.name] = Verdict(
                v.granted, False, "DuplicateVersion",
                f"{v.model} {v.version} is already registered by ModelVersion {owner.name}; this object is ignored",
                gates, comparison,
            )  # fmt: skip
            continue
        verdicts[v.name] = _verdict(v, winner, holder, gates, comparison)
    return Plan(holder, after, verdicts)


def _verdict(
    v: Version,
    winner: Version | None,
    holder: Version | None,
    gates: list[dict[str, Any]],
    comparison: dict[str, Any] | None,
) -> Verdict:
    failing = [g for g in gates if not g["passed"]]
    base = v.granted or DEVELOPMENT

    def unchanged(ready_reason: str, message: str, granted: str | None = None) -> Verdict:
        return Verdict(granted or base, False, ready_reason, message, gates, comparison)

    if v.desired == ARCHIVED:
        # Retiring a version is always allowed, verified or not.
        return Verdict(ARCHIVED, True, "Granted", "archived as requested", gates, comparison)
    if v.granted == PRODUCTION and v.desired != PRODUCTION:
        # Stepping down needs no verification: nothing is promoted.
        message = f"{v.desired} as requested, out of production"
        return Verdict(v.desired, True, "Granted", message, gates, comparison, "Requested", message)
    if v.granted == PRODUCTION and winner is not None and winner is not v:
        # Superseded, whatever else holds for this version: one production version at a time.
        message = f"superseded by version {winner.version} (ModelVersion {winner.name})"
        return Verdict(ARCHIVED, False, "SupersededBy", message, gates, comparison, "SupersededBy", message)
    if not v.artifact_ok:
        return Verdict(v.granted, False, "ArtifactNotVerified", "waiting for the artifact check", gates, comparison)
    if v.desired != PRODUCTION:
        message = f"{v.desired} as requested"
        return Verdict(v.desired, True, "Granted", message, gates, comparison, "Requested", message)

    # Asks for production.
    if winner is v:
        message = "production: every gate passes"
        if v.live_canary is not None and v.canary is not None:
            message += f" and canaryrollout {v.canary.rollout} promoted it on deployment {v.live_canary}"
        if holder is not None and holder is not v:
            message += f"; supersedes version {holder.version}"
        return Verdict(PRODUCTION, True, "Granted", message, gates, comparison, "Promoted", message)
    if v.superseded and v.granted == ARCHIVED:
        later = f"version {winner.version} (ModelVersion {winner.name})" if winner else "a later version"
        return unchanged("SupersededBy", f"superseded by {later}")
    if failing:
        why = "; ".join(g.get("reason", g["metric"]) for g in failing)
        return unchanged("GatesFailed", f"production refused: {why}")
    if not v.live_evidence():
        deployment, run = v.live_canary, v.canary
        if run is not None and run.result in ("RolledBack", "Aborted"):
            ended = "rolled back" if run.result == "RolledBack" else "aborted"
            message = (f"production refused: canary on {deployment} {ended} by canaryrollout {run.rollout}: "
                       f"{run.reason or run.result}")  # fmt: skip
            return Verdict(base, False, "GatesFailed", message, gates, comparison, live_gate="False")
        where = (f"canaryrollout {run.rollout} is running it on deployment {deployment}" if run is not None
                 else f"deployment {deployment} runs it as its canary once its CanaryRollout starts a run")  # fmt: skip
        message = f"production waits for live evidence: {where}"
        return Verdict(base, False, "AwaitingCanary", message, gates, comparison, live_gate="Unknown")
    if winner is not None:
        return unchanged(
            "SupersededBy",
            f"production was requested later by version {winner.version} (ModelVersion {winner.name})",
        )
    return unchanged("Pending", "waiting for production")


def append_history(
    history: list[dict[str, Any]], stage: str, reason: str, message: str, at: str
) -> list[dict[str, Any]]:
    """history with a transition appended, bounded to the latest HISTORY_LIMIT entries."""
    entry = {"stage": stage, "at": at, "reason": reason}
    if message:
        entry["message"] = message
    return [*history, entry][-HISTORY_LIMIT:]
