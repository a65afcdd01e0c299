"""A ModelVersion's status in the registry's terms: the rules' view of a version, and a verdict folded into its
status (stage, history, gates, comparison, GatesPassed and Ready)."""

from __future__ import annotations

from typing import Any

from mlops_operator.api.modelversion import ModelVersionSpec
from mlops_operator.logic import registry_rules as rules
from mlops_operator.logic.conditions import ConditionStatus, get_condition, set_condition
from mlops_operator.logic.times import parse_time
from mlops_operator.outbound import Refused
from mlops_operator.storage import UNREADABLE_SCHEMES, scheme

Body = dict[str, Any]
DEFAULT_STAGE: str = ModelVersionSpec.model_fields["stage"].default


def artifact_ok(spec: dict[str, Any], status: dict[str, Any]) -> bool:
    artifact = status.get("artifact") or {}
    if scheme(spec["source"]) in UNREADABLE_SCHEMES:
        return True
    return bool(artifact.get("verified")) and artifact.get("checksum") == spec.get("checksum")


def view(body: dict[str, Any], status: dict[str, Any], canary: rules.Canary | None = None) -> rules.Version:
    meta, spec = body["metadata"], body["spec"]
    created = parse_time(meta.get("creationTimestamp"))
    history = status.get("history") or []
    desired = spec.get("stage", DEFAULT_STAGE)
    requested = status.get("requested") or {}
    if requested.get("stage") == desired:
        requested_at = parse_time(requested.get("at"), created)
    else:
        # A new request not recorded yet: its time is the write's, as it will be recorded, never the previous
        # request's (which could make it win and then lose).
        requested_at = parse_time(body.get("stageRequestedAt"), created)
    return rules.Version(
        name=meta["name"],
        model=spec["model"],
        version=str(spec["version"]),
        created=created,
        desired=desired,
        requested_at=requested_at,
        granted=status.get("stage"),
        metrics={
            m["name"]: rules.MetricValue(float(m["value"]), bool(m.get("lowerIsBetter", False)))
            for m in spec.get("metrics") or []
        },
        gates=list(spec.get("gates") or []),
        artifact_ok=artifact_ok(spec, status),
        superseded=bool(history) and history[-1].get("reason") == "SupersededBy",
        # Acted on before and not refused as a duplicate: it holds its (model, version).
        claimed=bool(status.get("conditions"))
        and (get_condition(status["conditions"], "Ready") or {}).get("reason") != "DuplicateVersion",
        live_canary=((spec.get("liveCanary") or {}).get("deploymentRef") or {}).get("name"),
        canary=canary,
    )


def _ready(conditions: list[dict[str, Any]], verdict: rules.Verdict) -> tuple[ConditionStatus, str, str]:
    if verdict.reason == "DuplicateVersion":
        return "False", verdict.reason, verdict.message
    artifact = get_condition(conditions, "ArtifactVerified")
    if artifact is None:
        return "Unknown", "Verifying", "checking the artifact"
    if artifact["status"] == "False":
        return "False", artifact["reason"], artifact["message"]
    profile = get_condition(conditions, "ProfileReady") or {}
    if profile.get("reason") == Refused.reason:
        return "False", Refused.reason, f"spec.reference: {profile['message']}"
    if verdict.ready:
        return "True", "Granted", verdict.message
    return "False", verdict.reason, verdict.message


def apply_verdict(status: dict[str, Any], verdict: rules.Verdict, generation: int | None, stamp: str) -> bool:
    """Folds ``verdict`` into ``status``; True when the granted stage changed."""
    granted = verdict.granted
    transition = granted is not None and granted != status.get("stage")
    if granted is not None and transition:
        status["stage"] = granted
        status["history"] = rules.append_history(
            status.get("history") or [], granted, verdict.transition_reason, verdict.transition_message, stamp
        )
    # The version holding production keeps the gates and comparison it was granted under (against the version
    # it superseded): judged again later it would be judged against itself, and every pass must say the same.
    held = granted == rules.PRODUCTION and not transition and "gates" in status
    if not held:
        status["gates"] = verdict.gates
        if verdict.comparison is None:
            status.pop("comparison", None)
        else:
            status["comparison"] = verdict.comparison
    conditions = [c for c in status.get("conditions", []) if c.get("type") != "GatesPassed"]
    if held:
        conditions = status.get("conditions", [])
    elif verdict.live_gate is not None:
        # The metric gates pass; the live canary has the last word.
        conditions = set_condition(status.get("conditions", []), "GatesPassed", verdict.live_gate, verdict.reason,
                                   verdict.message, generation)  # fmt: skip
    elif verdict.gates and verdict.reason != "DuplicateVersion":
        failing = [g for g in verdict.gates if not g["passed"]]
        conditions = set_condition(
            status.get("conditions", []),
            "GatesPassed",
            "False" if failing else "True",
            "GatesFailed" if failing else "GatesPassed",
            "; ".join(g.get("reason", g["metric"]) for g in failing) or f"all {len(verdict.gates)} gates pass",
            generation,
        )
    status["conditions"] = set_condition(conditions, "Ready", *_ready(conditions, verdict), generation)
    return transition
