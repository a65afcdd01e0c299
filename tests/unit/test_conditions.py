"""Conditions keep their transition time while their status holds."""

from __future__ import annotations

from mlops_operator.logic.conditions import get_condition, set_condition


def test_new_condition_gets_time_and_generation() -> None:
    out = set_condition(
        None,
        "Ready",
        "False",
        "GatesFailed",
        "auc 0.8 < 0.9",
        3,
        now="2026-01-01T00:00:00Z",
    )
    assert out == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "GatesFailed",
            "message": "auc 0.8 < 0.9",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 3,
        }
    ]


def test_transition_time_moves_only_when_status_changes() -> None:
    first = set_condition([], "Ready", "False", "A", "a", 1, now="2026-01-01T00:00:00Z")
    same = set_condition(first, "Ready", "False", "B", "b", 2, now="2026-01-02T00:00:00Z")
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert same[0]["reason"] == "B" and same[0]["observedGeneration"] == 2
    flipped = set_condition(same, "Ready", "True", "Ok", "ok", 2, now="2026-01-03T00:00:00Z")
    assert flipped[0]["lastTransitionTime"] == "2026-01-03T00:00:00Z"


def test_other_conditions_and_order_are_kept() -> None:
    conds = set_condition([], "ArtifactVerified", "True", "Verified", "ok", 1)
    conds = set_condition(conds, "Ready", "False", "Pending", "wait", 1)
    conds = set_condition(conds, "ArtifactVerified", "False", "SourceUnreachable", "boom", 2)
    assert [c["type"] for c in conds] == ["ArtifactVerified", "Ready"]
    assert get_condition(conds, "ArtifactVerified")["reason"] == "SourceUnreachable"  # type: ignore[index]
    assert get_condition(conds, "Missing") is None
