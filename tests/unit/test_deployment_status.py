"""A ModelDeployment's conditions: Ready, Progressing and Degraded from the plan, the Deployments and the API server."""

from __future__ import annotations

from typing import Any

import pytest

from mlops_operator.logic.deployment_status import Facts, Summary, VersionLine, summarize
from mlops_operator.logic.serving import Health, Served

SINCE = "2024-05-01T11:00:00Z"
URL = "http://demo.ml.svc:8080"
READY = Health(desired=2, ready=2, available=True)
STARTING = Health(desired=2, ready=0, available=False, rolling=True)
HALF = Health(desired=2, ready=1, available=False)
DEADLINE = "ReplicaSet demo-2-0-0 has timed out progressing."
FAILED = Health(desired=2, ready=0, available=False, failed=DEADLINE)
LOST = Health(desired=2, ready=1, available=False, lost=True)
NOT_READY = ("VersionNotReady", "ModelVersion iris-2 (iris 2.0.0): its artifact is not checked yet")
NOT_FOUND = ("VersionNotFound", "no ModelVersion of model iris has version 9.9.9 in ml")

Pair = tuple[str, str]


def stable(version: str = "1.0.0", weight: int = 100) -> Served:
    return Served(version, "stable", weight, SINCE)


def other(role: str, version: str = "2.0.0", weight: int = 0) -> Served:
    return Served(version, role, weight, SINCE)


def facts(
    served: list[Served],
    health: dict[str, Health],
    phase: str = "Serving",
    phase_message: str = "serving 1.0.0",
    **changes: Any,
) -> Facts:
    """Facts of a deployment of 2 replicas per version, unless ``changes`` say otherwise."""
    changes.setdefault("replicas", {s.version: 2 for s in served})
    changes.setdefault("url", URL if served else None)
    return Facts(served=served, health=health, phase=phase, phase_message=phase_message, **changes)


def verdicts(summary: Summary) -> tuple[Pair, Pair, Pair]:
    return (
        (summary.ready[0], summary.ready[1]),
        (summary.progressing[0], summary.progressing[1]),
        (summary.degraded[0], summary.degraded[1]),
    )


SERVING = facts([stable()], {"1.0.0": READY})
AS_EXPECTED = ("False", "AsExpected")
COMPLETE = ("False", "Complete")

TABLE = [
    # --- Ready ---
    pytest.param(
        facts([], {}, "NothingServed", "no version to serve", unresolved=NOT_FOUND),
        ("False", "VersionNotFound"), ("True", "WaitingForVersion"), ("True", "NothingServed"),
        id="ready-version-not-found-nothing-served",
    ),
    pytest.param(
        facts([stable()], {"1.0.0": READY}, "WaitingForVersion", "keeps serving", unresolved=NOT_FOUND),
        ("False", "VersionNotFound"), ("True", "WaitingForVersion"), AS_EXPECTED,
        id="ready-version-not-found-still-serving",
    ),
    pytest.param(
        facts([stable()], {"1.0.0": READY}, "WaitingForVersion", "keeps serving", unresolved=NOT_READY),
        ("False", "VersionNotReady"), ("True", "WaitingForVersion"), AS_EXPECTED,
        id="ready-version-not-ready-still-serving",
    ),
    pytest.param(
        facts([], {}, "NothingServed", "no version to serve", unresolved=NOT_READY),
        ("False", "VersionNotReady"), ("True", "WaitingForVersion"), ("True", "NothingServed"),
        id="ready-version-not-ready-nothing-served",
    ),
    pytest.param(
        facts([stable()], {"1.0.0": READY}, problems=[("Conflict", "Service demo is held by another owner")]),
        ("False", "Conflict"), COMPLETE, ("True", "Conflict"),
        id="ready-conflict",
    ),
    pytest.param(
        facts([stable()], {"1.0.0": READY}, problems=[("RouterUnavailable", "no HTTPRoute"), ("ApplyFailed", "x")]),
        ("False", "RouterUnavailable"), COMPLETE, ("True", "RouterUnavailable"),
        id="ready-router-unavailable-first-of-two",
    ),
    pytest.param(
        facts([stable()], {"1.0.0": READY}, problems=[("ApplyFailed", "Deployment demo-1-0-0: 422")]),
        ("False", "ApplyFailed"), COMPLETE, ("True", "ApplyFailed"),
        id="ready-apply-failed",
    ),
    pytest.param(
        facts([stable()], {"1.0.0": READY}, problems=[("DeleteFailed", "Service demo-0-9-0: 500")]),
        ("False", "DeleteFailed"), COMPLETE, ("True", "DeleteFailed"),
        id="ready-delete-failed",
    ),
    pytest.param(
        facts([stable(), other("incoming")], {"1.0.0": READY, "2.0.0": STARTING}, "RollingOut", "2.0.0 starting"),
        ("False", "RollingOut"), ("True", "RollingOut"), AS_EXPECTED,
        id="ready-rolling-out",
    ),
    pytest.param(
        facts([stable(), other("preview")], {"1.0.0": READY, "2.0.0": STARTING}, "Preview", "2.0.0 starting"),
        ("False", "Preview"), ("True", "Preview"), AS_EXPECTED,
        id="ready-preview",
    ),
    pytest.param(
        facts([stable(), other("preview")], {"1.0.0": READY, "2.0.0": READY}, "WaitingForPromotion", "promote it"),
        ("False", "WaitingForPromotion"), ("False", "WaitingForPromotion"), AS_EXPECTED,
        id="ready-waiting-for-promotion",
    ),
    pytest.param(
        facts([stable(weight=90), other("canary", weight=10)], {"1.0.0": READY, "2.0.0": READY}, "Canary", "10%"),
        ("False", "Canary"), ("True", "Canary"), AS_EXPECTED,
        id="ready-canary",
    ),
    pytest.param(
        facts([stable()], {"1.0.0": HALF}),
        ("False", "PodsNotReady"), ("True", "ScalingReplicas"), AS_EXPECTED,
        id="ready-pods-not-ready",
    ),
    pytest.param(
        facts([stable()], {}),
        ("False", "PodsNotReady"), ("True", "ScalingReplicas"), AS_EXPECTED,
        id="ready-pods-not-ready-no-deployment-yet",
    ),
    pytest.param(
        facts([stable()], {"1.0.0": Health(0, 0, True)}, replicas={"1.0.0": 0}, scaled_to_zero=True),
        ("True", "ScaledToZero"), COMPLETE, AS_EXPECTED,
        id="ready-scaled-to-zero",
    ),
    pytest.param(
        SERVING,
        ("True", "Serving"), COMPLETE, AS_EXPECTED,
        id="ready-serving",
    ),
    # --- Progressing ---
    pytest.param(
        facts([stable()], {"1.0.0": FAILED}),
        ("False", "PodsNotReady"), ("False", "ProgressDeadlineExceeded"), ("True", "ProgressDeadlineExceeded"),
        id="progressing-deadline-exceeded-stable",
    ),
    pytest.param(
        facts([stable(), other("incoming")], {"1.0.0": READY, "2.0.0": FAILED}, "RollingOut", "2.0.0 0/2 ready"),
        ("False", "RollingOut"), ("False", "ProgressDeadlineExceeded"), ("True", "ProgressDeadlineExceeded"),
        id="progressing-deadline-exceeded-beats-the-phase",
    ),
    pytest.param(
        facts([stable()], {"1.0.0": LOST}),
        ("False", "PodsNotReady"), ("False", "ReplicasUnavailable"), ("True", "ReplicasUnavailable"),
        id="progressing-replicas-unavailable",
    ),
    pytest.param(
        facts([stable(weight=90), other("canary", weight=10)], {"1.0.0": LOST, "2.0.0": HALF}, "Canary", "10%"),
        ("False", "Canary"), ("True", "Canary"), ("True", "ReplicasUnavailable"),
        id="progressing-phase-beats-scaling",
    ),
    pytest.param(
        facts([stable(), other("shadow")], {"1.0.0": LOST, "2.0.0": HALF}),
        ("False", "PodsNotReady"), ("True", "ScalingReplicas"), ("True", "ReplicasUnavailable"),
        id="progressing-scaling-beats-replicas-unavailable",
    ),
    # --- Degraded ---
    pytest.param(
        facts([stable()], {"1.0.0": FAILED}, problems=[("Conflict", "held by another owner")]),
        ("False", "Conflict"), ("False", "ProgressDeadlineExceeded"), ("True", "ProgressDeadlineExceeded"),
        id="degraded-deadline-beats-problems",
    ),
    pytest.param(
        facts([stable()], {"1.0.0": LOST}, problems=[("ApplyFailed", "422")]),
        ("False", "ApplyFailed"), ("False", "ReplicasUnavailable"), ("True", "ApplyFailed"),
        id="degraded-problems-beat-replicas-unavailable",
    ),
    pytest.param(
        facts([], {}, "NothingServed", "no version to serve", unresolved=NOT_FOUND, problems=[("DeleteFailed", "x")]),
        ("False", "VersionNotFound"), ("True", "WaitingForVersion"), ("True", "DeleteFailed"),
        id="degraded-problems-beat-nothing-served",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("given", "ready", "progressing", "degraded"), TABLE)
def test_condition_table(given: Facts, ready: Pair, progressing: Pair, degraded: Pair) -> None:
    assert verdicts(summarize(given)) == (ready, progressing, degraded)


# --- messages --------------------------------------------------------------------------------------------------------


def test_serving_says_which_version_at_which_url() -> None:
    summary = summarize(SERVING)

    assert summary.ready == ("True", "Serving", f"serving 1.0.0 at {URL}")
    assert summary.progressing == ("False", "Complete", "serving 1.0.0")
    assert summary.degraded == ("False", "AsExpected", "no served version reports a failure")


def test_an_unresolved_version_says_what_is_still_served() -> None:
    still = summarize(facts([stable()], {"1.0.0": READY}, "WaitingForVersion", "keeps serving", unresolved=NOT_READY))
    nothing = summarize(facts([], {}, "NothingServed", "no version to serve", unresolved=NOT_READY))

    assert still.ready[2] == f"{NOT_READY[1]}; still serving 1.0.0"
    assert nothing.ready[2] == NOT_READY[1]
    # Progressing and Degraded carry the reason the version does not resolve, without the suffix.
    assert still.progressing[2] == nothing.progressing[2] == NOT_READY[1]
    assert nothing.degraded[2] == NOT_READY[1]


def test_problems_are_joined_and_the_first_gives_the_reason() -> None:
    problems = [("RouterUnavailable", "no HTTPRoute kind"), ("ApplyFailed", "Deployment demo-1-0-0: 422")]

    summary = summarize(facts([stable()], {"1.0.0": READY}, problems=problems))

    message = "no HTTPRoute kind; Deployment demo-1-0-0: 422"
    assert summary.ready == ("False", "RouterUnavailable", message)
    assert summary.degraded == ("True", "RouterUnavailable", message)


def test_a_phase_other_than_serving_speaks_with_its_own_message() -> None:
    summary = summarize(
        facts([stable(), other("incoming")], {"1.0.0": READY, "2.0.0": STARTING}, "RollingOut", "2.0.0 0/2 ready")
    )

    assert summary.ready == ("False", "RollingOut", "2.0.0 0/2 ready")
    assert summary.progressing == ("True", "RollingOut", "2.0.0 0/2 ready")


def test_pods_not_ready_and_scaling_name_each_short_version() -> None:
    served = [stable(), other("shadow")]

    summary = summarize(facts(served, {"1.0.0": HALF}))

    # The shadow takes no traffic: it is short in Progressing only.
    assert summary.ready == ("False", "PodsNotReady", "1.0.0 1/2 ready")
    assert summary.progressing == ("True", "ScalingReplicas", "1.0.0 1/2 ready; 2.0.0 0/2 ready (shadow)")


def test_deadline_and_lost_pods_say_what_happened() -> None:
    failed = summarize(facts([stable()], {"1.0.0": FAILED}))
    lost = summarize(facts([stable()], {"1.0.0": LOST}))

    assert failed.ready[2] == failed.progressing[2] == failed.degraded[2] == f"1.0.0: {DEADLINE}"
    assert lost.ready[2] == "1.0.0 1/2 ready"
    assert lost.progressing[2] == lost.degraded[2] == "1.0.0 1/2 ready after the rollout completed"


def test_scaled_to_zero_says_nothing_answers() -> None:
    summary = summarize(facts([stable()], {"1.0.0": Health(0, 0, True)}, replicas={"1.0.0": 0}, scaled_to_zero=True))

    assert summary.ready == (
        "True",
        "ScaledToZero",
        f"1.0.0 is scaled to zero (spec.replicas is 0): {URL} answers nothing until replicas is raised",
    )


def test_notes_are_appended_to_the_ready_message_only() -> None:
    notes = ["shadow not running: no ModelVersion of model iris has version 3.0.0 in ml", "Deployment x: dropped"]

    serving = summarize(facts([stable()], {"1.0.0": READY}, notes=notes))
    short = summarize(facts([stable()], {"1.0.0": HALF}, notes=notes))

    assert serving.ready == ("True", "Serving", f"serving 1.0.0 at {URL}; {notes[0]}; {notes[1]}")
    assert short.ready == ("False", "PodsNotReady", f"1.0.0 1/2 ready; {notes[0]}; {notes[1]}")
    assert notes[0] not in serving.progressing[2] + serving.degraded[2]


# --- shadow ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shadow_health",
    [None, Health(desired=1, ready=0, available=False, rolling=True)],
    ids=["no-deployment-yet", "starting"],
)
def test_a_shadow_short_of_replicas_keeps_ready_but_shows_in_progressing(shadow_health: Health | None) -> None:
    health = {"1.0.0": READY} | ({"2.0.0": shadow_health} if shadow_health else {})

    summary = summarize(facts([stable(), other("shadow")], health, replicas={"1.0.0": 2, "2.0.0": 1}))

    assert summary.ready == ("True", "Serving", f"serving 1.0.0 at {URL}")
    assert summary.progressing == ("True", "ScalingReplicas", "2.0.0 0/1 ready (shadow)")
    assert summary.degraded[:2] == AS_EXPECTED


def test_a_failed_or_lost_shadow_keeps_ready_but_is_degraded() -> None:
    failed = summarize(facts([stable(), other("shadow")], {"1.0.0": READY, "2.0.0": FAILED}))
    lost = summarize(facts([stable(), other("shadow")], {"1.0.0": READY, "2.0.0": LOST}))

    assert failed.ready[:2] == lost.ready[:2] == ("True", "Serving")
    assert failed.degraded == ("True", "ProgressDeadlineExceeded", f"2.0.0: {DEADLINE}")
    assert lost.degraded == ("True", "ReplicasUnavailable", "2.0.0 1/2 ready (shadow) after the rollout completed")


# --- autoscaling -----------------------------------------------------------------------------------------------------


def autoscaled(h: Health | None, minimum: int = 2) -> Summary:
    return summarize(facts([stable()], {"1.0.0": h} if h else {}, autoscaling_min=minimum))


def test_an_autoscaler_scale_up_above_the_minimum_is_progress_not_pods_not_ready() -> None:
    summary = autoscaled(Health(desired=5, ready=3, available=False))

    assert summary.ready[:2] == ("True", "Serving")
    assert summary.progressing == ("True", "ScalingReplicas", "1.0.0 3/5 ready")
    assert summary.degraded[:2] == AS_EXPECTED


def test_exactly_the_minimum_ready_is_enough_under_autoscaling() -> None:
    assert autoscaled(Health(desired=5, ready=2, available=False)).ready[:2] == ("True", "Serving")


def test_below_the_minimum_is_pods_not_ready_under_autoscaling() -> None:
    summary = autoscaled(Health(desired=5, ready=1, available=False))

    assert summary.ready == ("False", "PodsNotReady", "1.0.0 1/5 ready")


def test_a_desired_size_below_the_minimum_is_the_floor() -> None:
    # The autoscaler was not created yet or the Deployment is being resized: its own size is what must be ready.
    assert autoscaled(Health(desired=1, ready=0, available=False), minimum=3).ready[:2] == ("False", "PodsNotReady")
    assert autoscaled(Health(desired=1, ready=1, available=True), minimum=3).ready[:2] == ("True", "Serving")


def test_no_deployment_yet_is_pods_not_ready_under_autoscaling() -> None:
    assert autoscaled(None).ready == ("False", "PodsNotReady", "1.0.0 0/2 ready")


def test_a_rolling_template_change_is_pods_not_ready_under_autoscaling() -> None:
    summary = autoscaled(Health(desired=5, ready=4, available=False, rolling=True))

    assert summary.ready == ("False", "PodsNotReady", "1.0.0 4/5 ready")


def test_the_same_shortfall_without_autoscaling_is_pods_not_ready() -> None:
    summary = summarize(
        facts([stable()], {"1.0.0": Health(desired=5, ready=3, available=False)}, replicas={"1.0.0": 5})
    )

    assert summary.ready == ("False", "PodsNotReady", "1.0.0 3/5 ready")


# --- retiring --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "retiring_health",
    [None, STARTING, HALF, LOST, FAILED],
    ids=["no-deployment", "starting", "half-ready", "lost", "deadline-exceeded"],
)
def test_a_retiring_version_never_makes_ready_false(retiring_health: Health | None) -> None:
    health = {"1.0.0": READY} | ({"0.9.0": retiring_health} if retiring_health else {})

    summary = summarize(facts([stable(), other("retiring", "0.9.0")], health))

    assert summary.ready == ("True", "Serving", f"serving 1.0.0 at {URL}")


@pytest.mark.parametrize("retiring_health", [None, STARTING, HALF, LOST], ids=["none", "starting", "half", "lost"])
def test_a_retiring_version_short_of_pods_is_neither_progress_nor_degradation(retiring_health: Health | None) -> None:
    health = {"1.0.0": READY} | ({"0.9.0": retiring_health} if retiring_health else {})

    summary = summarize(facts([stable(), other("retiring", "0.9.0")], health))

    assert summary.progressing[:2] == COMPLETE
    assert summary.degraded[:2] == AS_EXPECTED


# --- version lines ---------------------------------------------------------------------------------------------------


def test_autoscaled_version_lines_carry_the_deployments_size() -> None:
    # replicas holds the size the Deployment was created with; the autoscaler has grown it since.
    served = [stable(weight=90), Served("2.0.0", "canary", 10, "2024-05-01T11:30:00Z")]
    health = {"1.0.0": Health(desired=5, ready=4, available=False)}

    summary = summarize(facts(served, health, "Canary", "10%", replicas={"1.0.0": 2, "2.0.0": 2}, autoscaling_min=2))

    assert summary.versions == [
        VersionLine("1.0.0", "stable", SINCE, replicas=5, ready_replicas=4, weight=90),
        VersionLine("2.0.0", "canary", "2024-05-01T11:30:00Z", replicas=2, ready_replicas=0, weight=10),
    ]
    assert summary.stable == "1.0.0"


def test_version_lines_without_autoscaling_carry_the_replicas_given() -> None:
    # The Deployment still reports its old size while it scales to the new one.
    health = {"1.0.0": Health(desired=2, ready=2, available=True)}

    summary = summarize(facts([stable()], health, replicas={"1.0.0": 3}))

    assert summary.versions == [VersionLine("1.0.0", "stable", SINCE, replicas=3, ready_replicas=2, weight=100)]
    assert summary.ready == ("False", "PodsNotReady", "1.0.0 2/3 ready")


def test_nothing_served_has_no_lines_and_no_stable() -> None:
    summary = summarize(facts([], {}, "NothingServed", "no version to serve", unresolved=NOT_FOUND))

    assert summary.versions == []
    assert summary.stable is None
