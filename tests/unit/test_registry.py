"""The registry's rules, without a cluster: gates, comparison, and who holds production."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlops_operator.logic.registry_rules import (
    Canary,
    MetricValue,
    Version,
    append_history,
    compare,
    evaluate_gates,
    identity_holders,
    plan,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def v(name: str, version: str = "", *, desired: str = "staging", granted: str | None = None, at: int = 0,
      created: int = 0, ok: bool = True, gates: list[dict[str, Any]] | None = None, superseded: bool = False,
      **metrics: float) -> Version:  # fmt: skip
    return Version(
        name=name, model="m", version=version or name, created=T0 + timedelta(seconds=created),
        desired=desired, requested_at=T0 + timedelta(seconds=at), granted=granted,
        metrics={k: MetricValue(val, k.startswith("loss")) for k, val in metrics.items()},
        gates=gates or [], artifact_ok=ok, superseded=superseded,
    )  # fmt: skip


# --- gates ---


def test_absolute_gates() -> None:
    metrics = {"auc": MetricValue(0.89)}
    (low, high, both) = evaluate_gates(
        [{"metric": "auc", "min": 0.9}, {"metric": "auc", "max": 0.95}, {"metric": "auc", "min": 0.5, "max": 0.8}],
        metrics, None,
    )  # fmt: skip
    assert low == {"metric": "auc", "value": 0.89, "required": ">= 0.9", "passed": False, "reason": "auc 0.89 < 0.9"}
    assert high["passed"] and high["required"] == "<= 0.95"
    assert not both["passed"] and both["required"] == ">= 0.5 and <= 0.8" and both["reason"] == "auc 0.89 > 0.8"


def test_missing_metric_fails_its_gate() -> None:
    (gate,) = evaluate_gates([{"metric": "f1", "min": 0.1}], {"auc": MetricValue(0.9)}, None)
    assert not gate["passed"] and gate["reason"] == "metric f1 is missing" and "value" not in gate


@pytest.mark.parametrize(
    ("own", "prod", "lower", "tolerance", "passed"),
    [
        (0.94, 0.95, False, 0.01, True),  # within tolerance
        (0.93, 0.95, False, 0.01, False),
        (0.0, 0.0, False, 0.0, True),  # zeros compare
        (-1.5, -1.0, False, 0.4, False),  # negatives compare: -1.5 < -1.4
        (-1.3, -1.0, False, 0.4, True),
        (0.22, 0.21, True, 0.01, True),  # lower is better: 0.22 <= 0.22
        (0.23, 0.21, True, 0.01, False),
        (-0.5, -0.2, True, 0.0, True),  # lower is better, negative
    ],
)
def test_relative_gate(own: float, prod: float, lower: bool, tolerance: float, passed: bool) -> None:
    production = v("p", "1.0.0", granted="production")
    production.metrics = {"x": MetricValue(prod, lower)}
    (gate,) = evaluate_gates(
        [{"metric": "x", "notWorseThan": "production", "tolerance": tolerance}], {"x": MetricValue(own, lower)},
        production,
    )  # fmt: skip
    assert gate["passed"] is passed, gate
    assert "production 1.0.0" in gate["required"]


def test_relative_gate_without_production_passes_and_says_so() -> None:
    (gate,) = evaluate_gates([{"metric": "auc", "notWorseThan": "production"}], {"auc": MetricValue(0.5)}, None)
    assert gate["passed"] and "there is none" in gate["required"]


def test_nan_metric_fails() -> None:
    (gate,) = evaluate_gates([{"metric": "auc", "min": 0.1}], {"auc": MetricValue(float("nan"))}, None)
    assert not gate["passed"]


# --- comparison ---


def test_comparison_directions_zeros_and_negatives() -> None:
    production = v("p", "1.0.0", granted="production", auc=0.95, loss=0.0, delta=-1.0)
    own = v("c", "1.1.0", auc=0.97, loss=-0.1, delta=-1.0, extra=1.0)
    cmp = compare(own.metrics, production)
    assert cmp is not None and cmp["against"] == "1.0.0"
    rows = {r["name"]: r for r in cmp["metrics"]}
    assert rows["auc"] == {"name": "auc", "from": 0.95, "to": 0.97, "change": 0.02, "improved": True}
    assert rows["loss"]["change"] == -0.1 and rows["loss"]["improved"] is True  # lower is better
    assert rows["delta"]["change"] == 0.0 and rows["delta"]["improved"] is False
    assert rows["extra"] == {"name": "extra", "to": 1.0}
    assert compare(own.metrics, None) is None


# --- identity ---


def test_oldest_object_holds_the_identity() -> None:
    a, b, c = v("b-obj", "1", created=5), v("a-obj", "1", created=9), v("c-obj", "2")
    holders = identity_holders([b, a, c])
    assert holders[("m", "1")].name == "b-obj" and holders[("m", "2")].name == "c-obj"
    tie = identity_holders([v("z", "1"), v("y", "1")])
    assert tie[("m", "1")].name == "y"
    # A version already holding its identity keeps it against an object created in the same second.
    held = v("z", "1")
    held.claimed = True
    assert identity_holders([held, v("y", "1")])[("m", "1")] is held


def test_duplicate_is_refused_and_names_the_holder() -> None:
    result = plan([v("first", "1", created=0), v("second", "1", created=1)])
    verdict = result.verdicts["second"]
    assert verdict.reason == "DuplicateVersion" and not verdict.ready and "first" in verdict.message


# --- stages ---


def test_production_granted_when_gates_pass() -> None:
    result = plan([v("a", desired="production", auc=0.95, gates=[{"metric": "auc", "min": 0.9}])])
    assert result.after and result.after.name == "a"
    assert result.verdicts["a"].granted == "production" and result.verdicts["a"].ready
    assert result.verdicts["a"].transition_reason == "Promoted"


def test_failing_gate_blocks_production_and_says_which() -> None:
    result = plan([v("a", desired="production", granted="staging", auc=0.85, gates=[{"metric": "auc", "min": 0.9}])])
    verdict = result.verdicts["a"]
    assert verdict.granted == "staging" and not verdict.ready
    assert verdict.reason == "GatesFailed" and "auc 0.85 < 0.9" in verdict.message


def test_new_production_archives_the_old() -> None:
    old = v("old", "1.0", desired="production", granted="production", at=0, auc=0.9)
    new = v("new", "1.1", desired="production", granted="staging", at=10, auc=0.95,
            gates=[{"metric": "auc", "notWorseThan": "production"}])  # fmt: skip
    result = plan([old, new], only={"new"})
    assert result.production_changes
    assert result.verdicts["new"].granted == "production"
    archived = result.verdicts["old"]
    assert archived.granted == "archived" and archived.reason == "SupersededBy" and "1.1" in archived.message
    assert archived.transition_reason == "SupersededBy"


def test_worse_candidate_does_not_supersede() -> None:
    old = v("old", "1.0", desired="production", granted="production", at=0, auc=0.9)
    new = v("new", "1.1", desired="production", at=10, auc=0.8,
            gates=[{"metric": "auc", "notWorseThan": "production", "tolerance": 0.05}])  # fmt: skip
    result = plan([old, new])
    assert result.after is old and not result.production_changes
    assert result.verdicts["new"].reason == "GatesFailed" and "by more than 0.05" in result.verdicts["new"].message
    assert result.verdicts["old"].granted == "production"


def test_simultaneous_requests_latest_wins_deterministically() -> None:
    a = v("a", "1", desired="production", at=5, created=0)
    b = v("b", "2", desired="production", at=5, created=1)
    c = v("c", "3", desired="production", at=4, created=2)
    for order in ([a, b, c], [c, b, a], [b, a, c]):
        result = plan(order)
        assert result.after is b
        assert result.verdicts["a"].reason == "SupersededBy" and "ModelVersion b" in result.verdicts["a"].message
        assert result.verdicts["c"].granted == "development"


def test_archived_old_production_stays_archived() -> None:
    old = v("old", "1.0", desired="production", granted="archived", at=0, superseded=True)
    new = v("new", "1.1", desired="production", granted="production", at=10)
    result = plan([old, new])
    assert result.verdicts["old"].granted == "archived" and result.verdicts["old"].reason == "SupersededBy"
    assert not result.production_changes


def test_stepping_down_hands_production_back() -> None:
    old = v("old", "1.0", desired="production", granted="archived", at=0, superseded=True)
    new = v("new", "1.1", desired="staging", granted="production", at=10)
    result = plan([old, new], only={"new"})
    assert result.after is old
    assert result.verdicts["new"].granted == "staging"
    assert result.verdicts["old"].granted == "production"


def test_unverified_artifact_is_granted_nothing_but_archive() -> None:
    result = plan([v("a", desired="production", ok=False), v("b", "2", desired="archived", ok=False)])
    assert result.verdicts["a"].granted is None and result.verdicts["a"].reason == "ArtifactNotVerified"
    assert result.verdicts["b"].granted == "archived"


def test_history_is_bounded() -> None:
    history: list[dict[str, Any]] = []
    for i in range(60):
        history = append_history(history, "staging", "Requested", f"#{i}", "2026-01-01T00:00:00Z")
    assert len(history) == 50 and history[-1]["message"] == "#59" and history[0]["message"] == "#10"


def test_superseded_even_when_its_own_artifact_is_being_rechecked() -> None:
    """A production version whose checksum changed is still archived when another version wins."""
    old = v("a", "1", desired="production", granted="production", at=0, ok=False)
    new = v("b", "2", desired="production", granted="staging", at=10)
    result = plan([old, new])
    grants = {name: verdict.granted for name, verdict in result.verdicts.items()}
    assert grants == {"a": "archived", "b": "production"}


def test_after_a_handover_everyone_compares_with_the_new_production() -> None:
    old = v("a", "1", desired="production", granted="production", at=0, auc=0.90)
    new = v("b", "2", desired="production", granted="staging", at=10, auc=0.95)
    bystander = v("c", "3", desired="staging", granted="staging", auc=0.93,
                  gates=[{"metric": "auc", "notWorseThan": "production"}])  # fmt: skip
    result = plan([old, new, bystander], only={"b"})
    assert result.after is new and result.production_changes
    c = result.verdicts["c"]
    assert c.comparison is not None and c.comparison["against"] == "2"
    assert not c.gates[0]["passed"] and "production 2" in c.gates[0]["required"]
    # The winner's own gates show what justified the hand-over: the comparison with the old production.
    b = result.verdicts["b"]
    assert b.comparison is not None and b.comparison["against"] == "1"
    assert result.verdicts["a"].comparison is not None and result.verdicts["a"].comparison["against"] == "2"


def test_holder_keeps_production_while_no_one_else_qualifies() -> None:
    holder = v("a", "1", desired="production", granted="production", ok=False)
    result = plan([holder, v("b", "2", desired="production", ok=False)])
    assert result.after is holder and not result.production_changes
    assert result.verdicts["a"].granted == "production"


def test_an_unrecorded_request_is_timed_from_managed_fields() -> None:
    """A sibling whose new stage request is not recorded yet is ordered by the write's time."""
    from mlops_operator.controllers.kinds import compact_version
    from mlops_operator.logic.version_status import view as view_of

    body: dict[str, Any] = {
        "apiVersion": "mlops.io/v1alpha1", "kind": "ModelVersion",
        "metadata": {"name": "b", "namespace": "n", "uid": "u", "creationTimestamp": "2026-01-01T00:00:00Z",
                     "managedFields": [{"manager": "kubectl", "time": "2026-01-02T10:00:00Z",
                                        "fieldsV1": {"f:spec": {"f:stage": {}}}}]},
        "spec": {"model": "m", "version": "2", "stage": "production", "source": "file:///x", "format": "onnx"},
        "status": {"requested": {"stage": "staging", "at": "2026-01-01T00:00:05Z"}, "stage": "staging"},
    }  # fmt: skip
    view = view_of(compact_version(body), body["status"])
    assert view.requested_at == datetime(2026, 1, 2, 10, tzinfo=UTC)
    body["status"]["requested"] = {"stage": "production", "at": "2026-01-02T10:00:00Z"}
    assert view_of(compact_version(body), body["status"]).requested_at == datetime(2026, 1, 2, 10, tzinfo=UTC)


# --- the live-canary gate ---


def live(name: str, result: str | None, reason: str | None = None, **kwargs: Any) -> Version:
    version = v(name, desired="production", at=10, **kwargs)
    version.live_canary = "fraud"
    version.canary = Canary("fraud-policy", result, reason) if result else None
    return version


@pytest.mark.parametrize("result", [None, "Running"])
def test_a_live_canary_gate_keeps_production_waiting_for_the_rollout(result: str | None) -> None:
    holder = v("a", desired="production", granted="production")
    p = plan([holder, live("b", result)])
    assert p.after is holder
    verdict = p.verdicts["b"]
    assert (verdict.granted, verdict.reason, verdict.live_gate) == ("development", "AwaitingCanary", "Unknown")
    assert verdict.message.startswith("production waits for live evidence: ")
    assert ("canaryrollout fraud-policy is running it" in verdict.message) == (result == "Running")


def test_a_promoted_canary_grants_production() -> None:
    holder = v("a", desired="production", granted="production")
    p = plan([holder, live("b", "Promoted")])
    assert p.after is not None and p.after.name == "b"
    assert "canaryrollout fraud-policy promoted it on deployment fraud" in p.verdicts["b"].message
    assert p.verdicts["a"].granted == "archived"


@pytest.mark.parametrize(("result", "word"), [("RolledBack", "rolled back"), ("Aborted", "aborted")])
def test_a_canary_rolled_back_refuses_production_with_its_reason(result: str, word: str) -> None:
    holder = v("a", desired="production", granted="production")
    p = plan([holder, live("b", result, "errors 0.5 > 0.01 at step 1")])
    verdict = p.verdicts["b"]
    assert p.after is holder and (verdict.reason, verdict.live_gate) == ("GatesFailed", "False")
    assert verdict.message == f"production refused: canary on fraud {word} by canaryrollout fraud-policy: errors " \
        "0.5 > 0.01 at step 1"  # fmt: skip


def test_failing_metric_gates_are_said_before_the_canary() -> None:
    version = live("b", None, gates=[{"metric": "auc", "min": 0.9}], auc=0.5)
    verdict = plan([version]).verdicts["b"]
    assert verdict.reason == "GatesFailed" and verdict.live_gate is None and "auc 0.5 < 0.9" in verdict.message
