"""How CanaryRollouts steer a deployment's canary weight: only the newest speaks, and only for its own candidate."""

from __future__ import annotations

from typing import Any

import pytest

from mlops_operator.logic.canary import canary_weight, newest

Body = dict[str, Any]

MONDAY = "2024-05-06T09:00:00Z"
TUESDAY = "2024-05-07T09:00:00Z"


def rollout(
    name: str,
    created: str | None,
    candidate: str = "2.0.0",
    phase: str = "Progressing",
    canary: Any = 10,
) -> Body:
    metadata: Body = {"name": name}
    if created is not None:
        metadata["creationTimestamp"] = created
    return {
        "metadata": metadata,
        "spec": {"deploymentRef": "demo", "candidate": candidate},
        "status": {"phase": phase, "weights": {"canary": canary, "stable": 100 - int(canary)}},
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


# --- canary_weight ---------------------------------------------------------------------------------------------------


def test_the_weight_is_the_rollouts_canary_share() -> None:
    assert canary_weight([rollout("demo-1", MONDAY, canary=25)], "2.0.0") == 25


def test_the_weight_is_an_int() -> None:
    weight = canary_weight([rollout("demo-1", MONDAY, canary="30")], "2.0.0")

    assert weight == 30
    assert isinstance(weight, int)


def test_only_the_newest_rollout_steers() -> None:
    older = rollout("demo-1", MONDAY, canary=50)
    newer = rollout("demo-2", TUESDAY, canary=10)

    assert canary_weight([newer, older], "2.0.0") == 10
    assert canary_weight([older, newer], "2.0.0") == 10


def test_an_older_rollout_of_the_candidate_gives_nothing_when_a_newer_one_is_for_another() -> None:
    older = rollout("demo-1", MONDAY, candidate="2.0.0", canary=50)
    newer = rollout("demo-2", TUESDAY, candidate="3.0.0", canary=10)

    assert canary_weight([older, newer], "2.0.0") is None
    assert canary_weight([older, newer], "3.0.0") == 10


def test_another_candidate_gets_none() -> None:
    assert canary_weight([rollout("demo-1", MONDAY, candidate="2.0.0")], "1.5.0") is None


def test_a_candidate_written_as_a_number_matches_its_text() -> None:
    body = rollout("demo-1", MONDAY)
    body["spec"]["candidate"] = 2

    assert canary_weight([body], "2") == 10


@pytest.mark.parametrize("phase", ["RolledBack", "Failed", "Aborted"])
def test_a_rollout_that_ended_without_promotion_gives_none(phase: str) -> None:
    assert canary_weight([rollout("demo-1", MONDAY, phase=phase, canary=40)], "2.0.0") is None


def test_an_ended_newest_rollout_hides_an_older_one() -> None:
    older = rollout("demo-1", MONDAY, canary=50)
    aborted = rollout("demo-2", TUESDAY, phase="Aborted", canary=10)

    assert canary_weight([older, aborted], "2.0.0") is None


def test_a_promoted_rollout_still_gives_its_weight() -> None:
    assert canary_weight([rollout("demo-1", MONDAY, phase="Promoted", canary=100)], "2.0.0") == 100


@pytest.mark.parametrize(
    "status",
    [
        pytest.param({"phase": "Progressing"}, id="no-weights"),
        pytest.param({"phase": "Progressing", "weights": {}}, id="empty-weights"),
        pytest.param({"phase": "Progressing", "weights": None}, id="null-weights"),
        pytest.param({}, id="empty-status"),
        pytest.param(None, id="no-status"),
    ],
)
def test_no_weights_give_none(status: Body | None) -> None:
    body = rollout("demo-1", MONDAY)
    body["status"] = status

    assert canary_weight([body], "2.0.0") is None


def test_weights_without_a_canary_share_give_zero() -> None:
    body = rollout("demo-1", MONDAY)
    body["status"]["weights"] = {"stable": 100}

    assert canary_weight([body], "2.0.0") == 0


def test_no_rollouts_give_none() -> None:
    assert canary_weight([], "2.0.0") is None
