"""The replicas each served version's Deployment is given, and the shadow rule."""

from __future__ import annotations

import pytest

from mlops_operator.logic.serving import Health, Served, Shadow, replicas, shadow, sized

EARLIER = "2024-05-01T11:00:00Z"
NOW = "2024-05-01T12:00:00Z"
READY = Health(desired=2, ready=2, available=True)


def served(version: str, role: str, weight: int = 0) -> Served:
    return Served(version, role, weight, EARLIER)


# --- sized: not autoscaled -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("versions", "split", "expected"),
    [
        pytest.param([served("1.0.0", "stable", 100)], False, {"1.0.0": 10}, id="stable"),
        pytest.param(
            [served("1.0.0", "stable", 90), served("1.1.0", "canary", 10)],
            False,
            {"1.0.0": 10, "1.1.0": 1},
            id="canary-share",
        ),
        pytest.param(
            [served("1.0.0", "stable", 70), served("1.1.0", "canary", 30)],
            True,
            {"1.0.0": 7, "1.1.0": 3},
            id="replicas-router-split",
        ),
        pytest.param(
            [served("1.0.0", "stable", 100), served("1.1.0", "incoming")],
            False,
            {"1.0.0": 10, "1.1.0": 10},
            id="incoming-full-size",
        ),
        pytest.param(
            [served("1.0.0", "stable", 100), served("2.0.0", "shadow")],
            False,
            {"1.0.0": 10, "2.0.0": 5},
            id="shadow-share",
        ),
    ],
)
def test_not_autoscaled_sizes_are_the_replicas(versions: list[Served], split: bool, expected: dict[str, int]) -> None:
    health = {s.version: READY for s in versions}

    out = sized(versions, 10, split, 50, health, None)

    assert out == expected
    assert out == replicas(versions, 10, split, 50)


def test_a_retiring_version_never_grows_above_its_deployment() -> None:
    # A canary that handed its share back drains on its few Pods, not on a full set.
    versions = [served("1.0.0", "stable", 100), served("1.1.0", "retiring")]
    health = {"1.0.0": Health(10, 10, True), "1.1.0": Health(desired=1, ready=1, available=True)}

    assert replicas(versions, 10, False)["1.1.0"] == 10
    assert sized(versions, 10, False, 100, health, None) == {"1.0.0": 10, "1.1.0": 1}


def test_a_retiring_version_larger_than_the_replicas_shrinks_to_them() -> None:
    versions = [served("1.0.0", "stable", 100), served("0.9.0", "retiring")]
    health = {"0.9.0": Health(desired=20, ready=20, available=True)}

    assert sized(versions, 10, False, 100, health, None)["0.9.0"] == 10


def test_a_retiring_version_without_a_deployment_keeps_the_replicas() -> None:
    versions = [served("1.0.0", "stable", 100), served("0.9.0", "retiring")]

    assert sized(versions, 10, False, 100, {}, None)["0.9.0"] == 10


def test_only_a_retiring_version_is_held_to_its_deployment() -> None:
    versions = [served("1.0.0", "stable", 100), served("1.1.0", "incoming")]
    small = {"1.0.0": Health(2, 2, True), "1.1.0": Health(2, 2, True)}

    assert sized(versions, 10, False, 100, small, None) == {"1.0.0": 10, "1.1.0": 10}


# --- sized: autoscaled -----------------------------------------------------------------------------------------------


def test_autoscaled_versions_start_at_the_stable_versions_size() -> None:
    versions = [
        served("1.0.0", "stable", 90),
        served("1.1.0", "incoming"),
        served("1.2.0", "canary", 10),
        served("2.0.0", "shadow"),
        served("0.9.0", "retiring"),
    ]
    health = {"1.0.0": Health(desired=6, ready=6, available=True)}

    assert sized(versions, 10, False, 100, health, 2) == {
        "1.0.0": 6,
        "1.1.0": 6,
        "1.2.0": 2,
        "2.0.0": 2,
        "0.9.0": 6,
    }


def test_autoscaled_versions_start_at_least_at_the_minimum() -> None:
    versions = [served("1.0.0", "stable", 100), served("1.1.0", "incoming")]
    health = {"1.0.0": Health(desired=1, ready=1, available=True)}

    assert sized(versions, 10, False, 100, health, 3) == {"1.0.0": 3, "1.1.0": 3}


def test_autoscaled_without_a_stable_deployment_starts_at_the_minimum() -> None:
    first = [served("1.0.0", "stable", 100)]
    no_stable = [served("1.1.0", "incoming"), served("2.0.0", "shadow")]
    other_health = {"1.1.0": Health(desired=8, ready=8, available=True)}

    assert sized(first, 10, False, 100, {}, 2) == {"1.0.0": 2}
    assert sized(no_stable, 10, False, 100, other_health, 2) == {"1.1.0": 2, "2.0.0": 2}


def test_autoscaled_sizes_ignore_the_replicas_and_the_split() -> None:
    versions = [served("1.0.0", "stable", 70), served("1.1.0", "canary", 30)]
    health = {"1.0.0": Health(desired=4, ready=4, available=True)}

    assert sized(versions, 0, True, 100, health, 2) == {"1.0.0": 4, "1.1.0": 2}


# --- shadow ----------------------------------------------------------------------------------------------------------


def test_an_unresolved_shadow_does_not_run_and_says_why() -> None:
    why = "no ModelVersion of model iris has version 3.0.0 in ml"

    out = shadow(None, why, 20, [served("1.0.0", "stable", 100)], [], None, NOW)

    assert out == Shadow(None, None, f"shadow not running: {why}")


@pytest.mark.parametrize("role", ["stable", "incoming", "canary", "retiring"])
def test_a_shadow_already_served_is_not_run_twice(role: str) -> None:
    versions = [served("1.0.0", "stable", 100)] + ([served("2.0.0", role)] if role != "stable" else [])
    version = "1.0.0" if role == "stable" else "2.0.0"

    out = shadow(version, None, 20, versions, [], READY, NOW)

    assert out == Shadow(None, None, f"shadow {version} is already served; nothing mirrored")


def test_a_ready_shadow_gets_its_percent_mirrored() -> None:
    out = shadow("2.0.0", None, 20, [served("1.0.0", "stable", 100)], [], READY, NOW)

    assert out == Shadow(Served("2.0.0", "shadow", 0, NOW), ("2.0.0", 20), None)


def test_a_shadow_keeps_its_previous_since() -> None:
    previous = [served("1.0.0", "stable", 100), Served("2.0.0", "shadow", 0, EARLIER)]

    out = shadow("2.0.0", None, 20, [served("1.0.0", "stable", 100)], previous, READY, NOW)

    assert out.served == Served("2.0.0", "shadow", 0, EARLIER)


def test_a_version_that_was_served_in_another_role_starts_its_shadow_now() -> None:
    previous = [served("1.0.0", "stable", 100), Served("2.0.0", "retiring", 0, EARLIER)]

    out = shadow("2.0.0", None, 20, [served("1.0.0", "stable", 100)], previous, READY, NOW)

    assert out.served == Served("2.0.0", "shadow", 0, NOW)


@pytest.mark.parametrize(
    "health",
    [
        pytest.param(None, id="no-deployment-yet"),
        pytest.param(Health(desired=1, ready=0, available=False, rolling=True), id="starting"),
        pytest.param(Health(desired=1, ready=0, available=True), id="rolled-out-not-ready"),
    ],
)
def test_a_shadow_without_a_ready_pod_runs_but_is_not_mirrored(health: Health | None) -> None:
    out = shadow("2.0.0", None, 20, [served("1.0.0", "stable", 100)], [], health, NOW)

    assert out == Shadow(Served("2.0.0", "shadow", 0, NOW), None, "shadow 2.0.0 gets mirrored traffic once ready")


def test_one_ready_pod_is_enough_to_mirror() -> None:
    partly = Health(desired=3, ready=1, available=False)

    out = shadow("2.0.0", None, 5, [served("1.0.0", "stable", 100)], [], partly, NOW)

    assert out.mirror == ("2.0.0", 5)
    assert out.note is None
