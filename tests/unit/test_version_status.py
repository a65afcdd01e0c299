"""A verdict folded into a ModelVersion's status: stage, history, gates and conditions; the same verdict twice
changes nothing."""

from __future__ import annotations

import copy
from typing import Any

from mlops_operator.logic.registry_rules import Verdict
from mlops_operator.logic.version_status import apply_verdict

ARTIFACT = {"type": "ArtifactVerified", "status": "True", "reason": "Verified", "message": "ok",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}  # fmt: skip
AGAINST_OLD = [{"metric": "auc", "value": 0.95, "required": ">= 0.94 (production 1.0.0 0.95, tolerance 0.01)",
                "passed": True}]  # fmt: skip
AGAINST_NONE = [{"metric": "auc", "value": 0.95, "required": "not worse than production (there is none)",
                 "passed": True}]  # fmt: skip


def promoted() -> Verdict:
    return Verdict("production", True, "Granted", "production: every gate passes; supersedes version 1.0.0",
                   AGAINST_OLD, {"against": "1.0.0", "metrics": []}, "Promoted", "supersedes 1.0.0")  # fmt: skip


def test_a_promotion_records_history_gates_and_conditions() -> None:
    status: dict[str, Any] = {"stage": "staging", "conditions": [ARTIFACT]}
    assert apply_verdict(status, promoted(), 2, "2026-01-02T00:00:00Z")
    assert status["stage"] == "production" and status["history"][-1]["reason"] == "Promoted"
    assert status["gates"] == AGAINST_OLD and status["comparison"]["against"] == "1.0.0"
    types = {c["type"]: c["reason"] for c in status["conditions"]}
    assert types == {"ArtifactVerified": "Verified", "GatesPassed": "GatesPassed", "Ready": "Granted"}


def test_the_production_holder_keeps_the_gates_it_was_granted_under() -> None:
    status: dict[str, Any] = {"stage": "staging", "conditions": [ARTIFACT]}
    apply_verdict(status, promoted(), 2, "2026-01-02T00:00:00Z")
    before = copy.deepcopy(status)
    # A later pass: production is held by this version itself, so the plan judges it against no one.
    again = Verdict("production", True, "Granted", "production: every gate passes; supersedes version 1.0.0",
                    AGAINST_NONE, None)  # fmt: skip
    assert not apply_verdict(status, again, 2, "2026-01-03T00:00:00Z")
    assert status == before


def test_a_version_not_holding_production_gets_its_gates_judged_again() -> None:
    status: dict[str, Any] = {"stage": "staging", "conditions": [ARTIFACT], "gates": AGAINST_OLD}
    failing = [{"metric": "auc", "value": 0.5, "required": ">= 0.9", "passed": False, "reason": "auc 0.5 < 0.9"}]
    verdict = Verdict("staging", False, "GatesFailed", "production refused: auc 0.5 < 0.9", failing, None)
    assert not apply_verdict(status, verdict, 3, "2026-01-03T00:00:00Z")
    assert status["gates"] == failing
    gates = next(c for c in status["conditions"] if c["type"] == "GatesPassed")
    assert (gates["status"], gates["reason"], gates["message"]) == ("False", "GatesFailed", "auc 0.5 < 0.9")
