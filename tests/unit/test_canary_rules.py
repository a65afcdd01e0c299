"""How CanaryRollouts steer a deployment's canary: which rollout speaks, and what it says of the version."""

from __future__ import annotations

from typing import Any

import pytest

from mlops_operator.logic.canary import Steer, newest, steer

Body = dict[str, Any]

MONDAY = "2024-05-06T09:00:00Z"
TUESDAY = "2024-05-07T09:00:00Z"


def rollout(
    name: str,
    created: str | None,
    candidate: str | None = "2.0.0",
    phase: str = "Progressing",
    canary: Any = 10,
    running: str | None = "2.0.0",
) -> Body:
    metadata: Body = {"name": name}
    if created is not None:
        metadata["creationTimestamp"] = created
    return {
        "metadata": metadata,
        "spec": {"deploymentRef": {"name": "demo"}, **({"candidate": candidate} if candidate else {})},
        "status": {
            "phase": phase,
            "candidate": running,
            "weights": {"canary": canary, "stable": 100 - int(canary)},
            "run": {"reason": "errors 0.2 > 0.01"},
        },
    }


# --- newest ----------------------------------------------------------------------------------------------------------


def test_the_newest_is_the_latest_created() -> None:
    old, new = rollout("b-first", MONDAY), rollout("a-second", TUESDAY)

    assert newest([old, new]) is new
    assert newest([new, old]) is new


def test_the_same_creation_time_is_decided_by_name() -> None:
    a, b = rollout("demo-a", MONDAY), rollout("demo-b", MONDAY)

    assert newest([b, a]) is b
    assert newest([a, b]) is b


def test_a_rollout_without_creation_time_is_the_oldest() -> None:
    unstamped, stamped = rollout("z-unstamped", None), rollout("a-stamped", MONDAY)

    assert newest([unstamped, stamped]) is stamped


def test_no_rollouts_have_no_newest() -> None:
    assert newest([]) is None
    assert newest(iter([])) is None


# --- steer -----------------------------------------------------------------------------------------------------------


def weight(rollouts: list[Body], target: str) -> int | None:
    said = steer(rollouts, target)
    return said.weight if said is not None else None


def test_the_weight_is_the_rollouts_canary_share_as_an_int() -> None:
    assert steer([rollout("demo-1", MONDAY, canary="25")], "2.0.0") == Steer("demo-1", "Progressing", 25)


def test_a_rollout_naming_the_candidate_speaks_before_a_policy() -> None:
    policy = rollout("policy", TUESDAY, candidate=None, canary=50)
    named = rollout("named", MONDAY, canary=10)
    assert weight([policy, named], "2.0.0") == 10


def test_among_rollouts_of_the_candidate_the_newest_speaks() -> None:
    older, newer = rollout("demo-1", MONDAY, canary=50), rollout("demo-2", TUESDAY, canary=10)
    assert weight([newer, older], "2.0.0") == 10
    assert weight([older, newer], "2.0.0") == 10


def test_a_policy_speaks_for_any_version_once_it_runs_it() -> None:
    policy = rollout("policy", MONDAY, candidate=None, running="3.0.0", canary=5)
    assert weight([policy], "3.0.0") == 5
    # Not started on 2.0.0 yet: it speaks (so the deployment names it) but gives no weight.
    said = steer([policy], "2.0.0")
    assert said is not None and said.rollout == "policy" and said.weight is None


def test_a_rollout_of_another_candidate_says_nothing() -> None:
    assert steer([rollout("demo-1", MONDAY, candidate="2.0.0")], "1.5.0") is None


@pytest.mark.parametrize("phase", ["RolledBack", "Aborted"])
def test_a_run_rolled_back_or_aborted_stops_the_version_with_its_reason(phase: str) -> None:
    said = steer([rollout("demo-1", MONDAY, phase=phase, canary=0)], "2.0.0")
    assert said is not None and said.weight == 0 and said.stopped == "errors 0.2 > 0.01"


def test_a_promoted_rollout_gives_its_full_weight() -> None:
    said = steer([rollout("demo-1", MONDAY, phase="Promoted", canary=100)], "2.0.0")
    assert said is not None and said.weight == 100 and said.stopped is None


def test_runs_of_a_version_come_from_history_and_the_current_run_oldest_first() -> None:
    from mlops_operator.logic.canary import runs_of

    body = rollout("policy", MONDAY, candidate=None)
    body["status"]["history"] = [
        {"candidate": "2.0.0", "result": "RolledBack", "reason": "errors", "startedAt": "2024-05-06T10:00:00Z",
         "endedAt": "2024-05-06T10:05:00Z"},
        {"candidate": "1.9.0", "result": "Promoted", "startedAt": "2024-05-05T10:00:00Z",
         "endedAt": "2024-05-05T10:05:00Z"},
    ]  # fmt: skip
    body["status"]["run"] = {"candidate": "2.0.0", "startedAt": "2024-05-06T11:00:00Z"}
    assert runs_of([body], "2.0.0") == [
        {"rollout": "policy", "deployment": "demo", "result": "RolledBack", "reason": "errors",
         "startedAt": "2024-05-06T10:00:00Z", "endedAt": "2024-05-06T10:05:00Z"},
        {"rollout": "policy", "deployment": "demo", "result": "Running", "startedAt": "2024-05-06T11:00:00Z"},
    ]  # fmt: skip
    assert runs_of([body], "3.0.0") == []
