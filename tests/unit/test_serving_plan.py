"""The version plan of a ModelDeployment: roles, weights, strategies, replicas, Deployment health, traffic line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlops_operator.logic.serving import (
    Health,
    Served,
    Strategy,
    deployment_health,
    plan,
    replicas,
    traffic_line,
)
from mlops_operator.logic.times import stamp

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
EARLIER = stamp(T0 - timedelta(hours=1))
ROLLING = Strategy("rolling")
BLUE_GREEN = Strategy("blueGreen", auto_promote=True, scale_down_delay=30)
CANARY = Strategy("canary")
READY = Health(desired=2, ready=2, available=True)
STARTING = Health(desired=2, ready=0, available=False)
# Rolled out but no Pod ready (a readiness probe started failing): traffic must not move either.
AVAILABLE_NOT_READY = Health(desired=2, ready=0, available=True)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stable(version: str = "1.0.0", weight: int = 100, since: str = EARLIER, wanted: int | None = None) -> Served:
    return Served(version, "stable", weight, since, wanted)


def roles(served: list[Served]) -> list[tuple[str, str, int]]:
    return [(s.version, s.role, s.weight) for s in served]


# --- plan: first deploy and steady state -----------------------------------------------------------------------------


def test_first_deploy_makes_the_target_stable_with_all_traffic() -> None:
    decision = plan("1.0.0", [], {}, ROLLING, T0)

    assert decision.served == [Served("1.0.0", "stable", 100, stamp(T0))]
    assert decision.phase == "Serving"
    assert decision.requeue_after is None


def test_same_target_keeps_the_stable_version_and_its_since() -> None:
    decision = plan("1.0.0", [stable(weight=100)], {"1.0.0": READY}, ROLLING, T0)

    assert decision.served == [stable()]
    assert decision.phase == "Serving"


def test_same_target_restores_full_weight_to_stable() -> None:
    previous = [stable(weight=90), Served("1.1.0", "canary", 10, EARLIER)]

    decision = plan("1.0.0", previous, {"1.0.0": READY, "1.1.0": READY}, CANARY, T0)

    assert roles(decision.served) == [("1.0.0", "stable", 100)]


# --- plan: rolling ---------------------------------------------------------------------------------------------------


def test_rolling_new_version_is_incoming_without_traffic_until_available() -> None:
    decision = plan("1.1.0", [stable()], {"1.0.0": READY, "1.1.0": STARTING}, ROLLING, T0)

    assert roles(decision.served) == [("1.0.0", "stable", 100), ("1.1.0", "incoming", 0)]
    assert decision.phase == "RollingOut"
    assert "0/2 ready" in decision.message


def test_rolling_incoming_without_a_deployment_yet_is_starting() -> None:
    decision = plan("1.1.0", [stable()], {"1.0.0": READY}, ROLLING, T0)

    assert roles(decision.served) == [("1.0.0", "stable", 100), ("1.1.0", "incoming", 0)]
    assert "starting" in decision.message


def test_rolling_incoming_keeps_its_since_across_calls() -> None:
    first = plan("1.1.0", [stable()], {"1.1.0": STARTING}, ROLLING, T0)

    second = plan("1.1.0", first.served, {"1.1.0": STARTING}, ROLLING, at(60))

    assert second.served[1] == Served("1.1.0", "incoming", 0, stamp(T0))


def test_rolling_switches_once_available_and_drops_the_old_version_at_once() -> None:
    previous = [stable(), Served("1.1.0", "incoming", 0, EARLIER)]

    decision = plan("1.1.0", previous, {"1.0.0": READY, "1.1.0": READY}, ROLLING, T0)

    assert decision.served == [Served("1.1.0", "stable", 100, stamp(T0))]
    assert decision.phase == "Serving"
    assert decision.requeue_after is None


def test_rolling_does_not_switch_to_an_available_version_without_ready_pods() -> None:
    decision = plan("1.1.0", [stable()], {"1.1.0": AVAILABLE_NOT_READY}, ROLLING, T0)

    assert roles(decision.served) == [("1.0.0", "stable", 100), ("1.1.0", "incoming", 0)]


def test_a_version_scaled_to_zero_is_ready_once_rolled_out() -> None:
    decision = plan("1.1.0", [stable()], {"1.1.0": Health(desired=0, ready=0, available=True)}, ROLLING, T0)

    assert roles(decision.served) == [("1.1.0", "stable", 100)]


def test_target_change_mid_rollout_drops_the_earlier_incoming_version() -> None:
    previous = [stable(), Served("1.1.0", "incoming", 0, EARLIER)]

    decision = plan("1.2.0", previous, {"1.1.0": STARTING, "1.2.0": STARTING}, ROLLING, T0)

    assert decision.served == [stable(), Served("1.2.0", "incoming", 0, stamp(T0))]


# --- plan: blueGreen -------------------------------------------------------------------------------------------------


def test_blue_green_previews_the_new_version_until_ready() -> None:
    decision = plan("1.1.0", [stable()], {"1.1.0": STARTING}, BLUE_GREEN, T0)

    assert roles(decision.served) == [("1.0.0", "stable", 100), ("1.1.0", "preview", 0)]
    assert decision.phase == "Preview"


def test_blue_green_switches_and_keeps_the_old_version_retiring_for_the_delay() -> None:
    previous = [stable(), Served("1.1.0", "preview", 0, EARLIER)]

    decision = plan("1.1.0", previous, {"1.0.0": READY, "1.1.0": READY}, BLUE_GREEN, T0)

    assert decision.served == [Served("1.1.0", "stable", 100, stamp(T0)), Served("1.0.0", "retiring", 0, stamp(T0))]
    assert decision.phase == "Serving"
    assert decision.requeue_after == pytest.approx(30)


def test_blue_green_retiring_version_requeues_for_the_remaining_delay() -> None:
    previous = [Served("1.1.0", "stable", 100, stamp(T0)), Served("1.0.0", "retiring", 0, stamp(T0))]

    decision = plan("1.1.0", previous, {"1.1.0": READY}, BLUE_GREEN, at(10))

    assert roles(decision.served) == [("1.1.0", "stable", 100), ("1.0.0", "retiring", 0)]
    assert decision.requeue_after == pytest.approx(20)


def test_blue_green_retiring_version_is_dropped_after_the_delay() -> None:
    previous = [Served("1.1.0", "stable", 100, stamp(T0)), Served("1.0.0", "retiring", 0, stamp(T0))]

    decision = plan("1.1.0", previous, {"1.1.0": READY}, BLUE_GREEN, at(30))

    assert roles(decision.served) == [("1.1.0", "stable", 100)]
    assert decision.requeue_after is None


def test_blue_green_without_auto_promote_waits_for_promotion() -> None:
    manual = Strategy("blueGreen", auto_promote=False, scale_down_delay=30)
    previous = [stable(), Served("1.1.0", "preview", 0, EARLIER)]

    decision = plan("1.1.0", previous, {"1.1.0": READY}, manual, T0, promote="0.9.0")

    assert decision.served == previous
    assert decision.phase == "WaitingForPromotion"
    assert "mlops.io/promote=1.1.0" in decision.message


def test_blue_green_without_auto_promote_switches_when_promoted() -> None:
    manual = Strategy("blueGreen", auto_promote=False, scale_down_delay=30)
    previous = [stable(), Served("1.1.0", "preview", 0, EARLIER)]

    decision = plan("1.1.0", previous, {"1.1.0": READY}, manual, T0, promote="1.1.0")

    assert roles(decision.served) == [("1.1.0", "stable", 100), ("1.0.0", "retiring", 0)]
    assert decision.phase == "Serving"


def test_blue_green_rollback_to_an_available_retiring_version_switches_at_once() -> None:
    previous = [Served("1.1.0", "stable", 100, stamp(T0)), Served("1.0.0", "retiring", 0, stamp(T0))]

    decision = plan("1.0.0", previous, {"1.0.0": READY, "1.1.0": READY}, BLUE_GREEN, at(5))

    switched = stamp(at(5))
    assert decision.served == [Served("1.0.0", "stable", 100, switched), Served("1.1.0", "retiring", 0, switched)]
    assert decision.requeue_after == pytest.approx(30)


# --- plan: canary ----------------------------------------------------------------------------------------------------


def test_canary_takes_its_weight_when_ready_and_stable_the_rest() -> None:
    decision = plan("1.1.0", [stable()], {"1.1.0": READY}, CANARY, T0, canary_weight=10)

    assert roles(decision.served) == [("1.0.0", "stable", 90), ("1.1.0", "canary", 10)]
    assert decision.phase == "Canary"


def test_canary_gets_no_weight_while_its_pods_are_not_ready() -> None:
    decision = plan("1.1.0", [stable()], {"1.1.0": STARTING}, CANARY, T0, canary_weight=10)

    assert roles(decision.served) == [("1.0.0", "stable", 100), ("1.1.0", "canary", 0)]


def test_canary_weight_is_clamped_to_100_and_100_promotes() -> None:
    decision = plan("1.1.0", [stable()], {"1.1.0": READY}, CANARY, T0, canary_weight=150)

    assert roles(decision.served) == [("1.1.0", "stable", 100)]
    assert decision.phase == "Serving" and "promoted canary 1.1.0 over 1.0.0" in decision.message


def test_canary_scaling_for_more_weight_keeps_its_weight_until_ready() -> None:
    previous = [stable(weight=90), Served("1.1.0", "canary", 10, EARLIER)]
    scaling = {"1.1.0": Health(desired=3, ready=1, available=False)}

    decision = plan("1.1.0", previous, scaling, CANARY, T0, canary_weight=30)

    assert decision.served == [stable(weight=90, wanted=70), Served("1.1.0", "canary", 10, EARLIER, wanted=30)]
    assert "scaling to take 30% (1/3 ready)" in decision.message
    # The canary scales to the weight asked for before the traffic moves; the stable keeps its share until then.
    assert replicas(decision.served, 10, split=True) == {"1.0.0": 9, "1.1.0": 3}
    assert replicas(decision.served, 10, split=False) == {"1.0.0": 10, "1.1.0": 3}


def test_canary_keeps_its_since_across_weight_changes() -> None:
    previous = [stable(weight=90), Served("1.1.0", "canary", 10, EARLIER)]

    decision = plan("1.1.0", previous, {"1.1.0": READY}, CANARY, T0, canary_weight=50)

    assert decision.served == [stable(weight=50, wanted=50), Served("1.1.0", "canary", 50, EARLIER, wanted=50)]


# --- plan: no target, shadows ----------------------------------------------------------------------------------------


def test_unresolved_target_keeps_what_runs() -> None:
    previous = [stable(weight=90), Served("1.1.0", "canary", 10, EARLIER)]

    decision = plan(None, previous, {}, CANARY, T0)

    assert decision.served == previous
    assert decision.phase == "WaitingForVersion"


def test_unresolved_target_with_nothing_running_serves_nothing() -> None:
    decision = plan(None, [], {}, ROLLING, T0)

    assert decision.served == []
    assert decision.phase == "NothingServed"


def test_shadow_entries_in_previous_are_ignored() -> None:
    previous = [stable(), Served("2.0.0", "shadow", 0, EARLIER)]

    decision = plan("1.0.0", previous, {"1.0.0": READY, "2.0.0": READY}, ROLLING, T0)

    assert decision.served == [stable()]


def test_a_shadow_alone_does_not_count_as_stable() -> None:
    decision = plan("1.0.0", [Served("2.0.0", "shadow", 0, EARLIER)], {}, ROLLING, T0)

    assert decision.served == [Served("1.0.0", "stable", 100, stamp(T0))]


# --- replicas --------------------------------------------------------------------------------------------------------


def test_replicas_router_splits_replicas_by_weight() -> None:
    served = [stable(weight=90), Served("1.1.0", "canary", 10, EARLIER)]

    assert replicas(served, 10, split=True) == {"1.0.0": 9, "1.1.0": 1}


def test_split_leaves_a_stable_without_weight_its_full_capacity() -> None:
    served = [stable(weight=0), Served("1.1.0", "canary", 100, EARLIER)]

    assert replicas(served, 10, split=True) == {"1.0.0": 10, "1.1.0": 10}


def test_split_with_a_single_live_version_runs_the_total_everywhere() -> None:
    served = [stable(), Served("1.1.0", "incoming", 0, EARLIER)]

    assert replicas(served, 4, split=True) == {"1.0.0": 4, "1.1.0": 4}


def test_without_split_stable_incoming_preview_and_retiring_run_the_total() -> None:
    served = [
        stable(),
        Served("1.1.0", "incoming", 0, EARLIER),
        Served("1.2.0", "preview", 0, EARLIER),
        Served("0.9.0", "retiring", 0, EARLIER),
    ]

    assert replicas(served, 3, split=False) == {"1.0.0": 3, "1.1.0": 3, "1.2.0": 3, "0.9.0": 3}


@pytest.mark.parametrize(("weight", "expected"), [(0, 1), (10, 1), (25, 3), (50, 5), (100, 10)])
def test_without_split_a_canary_runs_its_share_rounded_up_and_at_least_one(weight: int, expected: int) -> None:
    served = [stable(weight=100 - weight), Served("1.1.0", "canary", weight, EARLIER)]

    assert replicas(served, 10, split=False) == {"1.0.0": 10, "1.1.0": expected}


@pytest.mark.parametrize(("percent", "expected"), [(100, 4), (50, 2), (10, 1), (0, 1)])
def test_a_shadow_runs_its_mirrored_share(percent: int, expected: int) -> None:
    served = [stable(), Served("2.0.0", "shadow", 0, EARLIER)]

    assert replicas(served, 4, split=False, shadow_percent=percent) == {"1.0.0": 4, "2.0.0": expected}


@pytest.mark.parametrize("split", [True, False])
def test_zero_total_gives_zero_replicas_to_every_version(split: bool) -> None:
    served = [stable(weight=90), Served("1.1.0", "canary", 10, EARLIER), Served("2.0.0", "shadow", 0, EARLIER)]

    assert replicas(served, 0, split=split) == {"1.0.0": 0, "1.1.0": 0, "2.0.0": 0}


# --- deployment_health -----------------------------------------------------------------------------------------------


def deployment(desired: int, status: dict[str, Any], generation: int = 3) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "spec": {"replicas": desired}, "status": status}


ROLLED: dict[str, Any] = {
    "observedGeneration": 3,
    "replicas": 2,
    "updatedReplicas": 2,
    "availableReplicas": 2,
    "readyReplicas": 2,
}


def test_a_rolled_out_deployment_is_available() -> None:
    assert deployment_health(deployment(2, ROLLED)) == Health(desired=2, ready=2, available=True)


def test_a_deployment_without_status_is_not_available() -> None:
    health = deployment_health({"metadata": {"generation": 1}, "spec": {"replicas": 2}})

    assert health == Health(desired=2, ready=0, available=False, rolling=True)


def test_a_generation_not_yet_observed_is_not_available() -> None:
    assert not deployment_health(deployment(2, {**ROLLED, "observedGeneration": 2})).available


@pytest.mark.parametrize("field", ["updatedReplicas", "availableReplicas"])
def test_too_few_updated_or_available_replicas_is_not_available(field: str) -> None:
    assert not deployment_health(deployment(2, {**ROLLED, field: 1})).available


def test_old_replicas_still_present_is_not_available() -> None:
    health = deployment_health(deployment(2, {**ROLLED, "replicas": 3}))

    assert not health.available
    assert health.ready == 2


def test_progress_deadline_exceeded_is_reported_as_failed() -> None:
    condition = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": 'ReplicaSet "fraud-abc" has timed out progressing.',
    }

    health = deployment_health(deployment(2, {"observedGeneration": 3, "replicas": 2, "conditions": [condition]}))

    assert health.failed == 'ReplicaSet "fraud-abc" has timed out progressing.'
    assert not health.available


def test_a_progressing_deployment_has_not_failed() -> None:
    condition = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}

    assert deployment_health(deployment(2, {**ROLLED, "conditions": [condition]})).failed is None


def test_a_deployment_scaled_to_zero_is_available() -> None:
    health = deployment_health(deployment(0, {"observedGeneration": 3}))

    assert health == Health(desired=0, ready=0, available=True)


# --- traffic_line ----------------------------------------------------------------------------------------------------


def test_traffic_line_lists_the_versions_taking_live_traffic() -> None:
    served = [
        stable(weight=90),
        Served("1.1.0", "canary", 10, EARLIER),
        Served("2.0.0", "shadow", 0, EARLIER),
        Served("0.9.0", "retiring", 0, EARLIER),
        Served("1.2.0", "incoming", 0, EARLIER),
    ]

    assert traffic_line(served) == "1.0.0=90 1.1.0=10"


def test_traffic_line_of_nothing_is_empty() -> None:
    assert traffic_line([]) == ""


# --- plan and replicas together --------------------------------------------------------------------------------------


def test_replicas_router_runs_a_pod_for_a_canary_without_weight() -> None:
    served = [stable(), Served("1.1.0", "canary", 0, EARLIER)]

    assert replicas(served, 10, split=True) == {"1.0.0": 10, "1.1.0": 1}


def test_replicas_router_never_weights_a_canary_without_ready_pods() -> None:
    # Given the replicas router, a CanaryRollout asking 10%, and a canary whose Pods never get ready
    served, health = [stable()], dict[str, Health]()
    for tick in range(3):
        # When the controller plans, then scales the canary's Deployment as planned
        served = plan("1.1.0", served, health, CANARY, at(tick), canary_weight=10).served
        count = replicas(served, 10, split=True)["1.1.0"]
        status = {"observedGeneration": 3, "replicas": count, "updatedReplicas": count, "availableReplicas": 0}
        health = {"1.1.0": deployment_health(deployment(count, status))}
        # Then the canary runs a Pod and takes no traffic
        assert count == 1
        assert traffic_line(served) == "1.0.0=100 1.1.0=0"


def test_canary_weight_waits_for_the_capacity_it_needs() -> None:
    # 10% on one ready Pod, 30% asked: the Deployment still runs 1 of the 3 Pods 30% needs.
    previous = [stable(weight=90), Served("1.1.0", "canary", 10, EARLIER)]
    one_pod = {"1.1.0": Health(desired=1, ready=1, available=True)}
    sized = Strategy("canary", total=10, split=True)

    decision = plan("1.1.0", previous, one_pod, sized, T0, canary_weight=30)
    assert roles(decision.served) == [("1.0.0", "stable", 90), ("1.1.0", "canary", 10)]

    three = {"1.1.0": Health(desired=3, ready=3, available=True)}
    decision = plan("1.1.0", previous, three, sized, T0, canary_weight=30)
    assert roles(decision.served) == [("1.0.0", "stable", 70), ("1.1.0", "canary", 30)]
    assert replicas(decision.served, 10, split=True) == {"1.0.0": 7, "1.1.0": 3}


def test_promotion_waits_for_full_capacity_and_the_old_version_drains() -> None:
    previous = [stable(weight=70), Served("1.1.0", "canary", 30, EARLIER)]
    sized = Strategy("canary", total=10, split=False, drain=10)

    decision = plan(
        "1.1.0", previous, {"1.1.0": Health(desired=3, ready=3, available=True)}, sized, T0, canary_weight=100
    )
    assert roles(decision.served) == [("1.0.0", "stable", 70), ("1.1.0", "canary", 30)]
    assert replicas(decision.served, 10, split=False)["1.1.0"] == 10

    full = {"1.1.0": Health(desired=10, ready=10, available=True)}
    decision = plan("1.1.0", previous, full, sized, T0, canary_weight=100)
    assert roles(decision.served) == [("1.1.0", "stable", 100), ("1.0.0", "retiring", 0)]
    assert decision.requeue_after == 10


def test_rolling_switch_waits_for_the_full_size() -> None:
    # A version that ran as a shadow on 2 Pods becomes the target of a deployment of 10.
    small = {"1.1.0": Health(desired=2, ready=2, available=True)}
    decision = plan("1.1.0", [stable()], small, Strategy("rolling", total=10, drain=10), T0)
    assert roles(decision.served) == [("1.0.0", "stable", 100), ("1.1.0", "incoming", 0)]
    full = {"1.1.0": Health(desired=10, ready=10, available=True)}
    decision = plan("1.1.0", [stable()], full, Strategy("rolling", total=10, drain=10), T0)
    assert roles(decision.served) == [("1.1.0", "stable", 100), ("1.0.0", "retiring", 0)]


def test_pods_lost_after_a_completed_rollout() -> None:
    conditions = [
        {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
        {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
    ]
    status = {**ROLLED, "availableReplicas": 1, "readyReplicas": 1, "conditions": conditions}

    health = deployment_health(deployment(2, status))

    assert health.lost and not health.available and health.ready == 1
    # Scaling up is progress, not a loss: the controller then reports ReplicaSetUpdated.
    scaling = [{**conditions[0], "reason": "ReplicaSetUpdated"}, conditions[1]]
    assert not deployment_health(deployment(2, {**status, "conditions": scaling})).lost


# --- plan over time: the controller's loop, with Deployments that become ready at the size they are given ----------


def settle(
    target: str,
    served: list[Served],
    strategy: Strategy,
    canary_weight: int | None = None,
    ticks: int = 6,
    ready_at: dict[str, int] | None = None,
) -> tuple[list[Served], list[dict[str, int]]]:
    """Plans, sizes every version as planned and lets its Pods get ready (at most ``ready_at[version]`` of them),
    ``ticks`` times; returns the last plan and the replicas each tick ran, to check capacity never dropped."""
    health: dict[str, Health] = {}
    history: list[dict[str, int]] = []
    assert strategy.total is not None
    for tick in range(ticks):
        served = plan(target, served, health, strategy, at(tick), canary_weight=canary_weight).served
        sizes = replicas(served, strategy.total, strategy.split)
        history.append(sizes)
        health = {
            v: Health(desired=n, ready=min(n, (ready_at or {}).get(v, n)), available=n <= (ready_at or {}).get(v, n))
            for v, n in sizes.items()
        }
    return served, history


@pytest.mark.parametrize(("total", "weight"), [(3, 50), (10, 25), (10, 15), (5, 50), (10, 30), (7, 33)])
def test_replicas_router_canary_reaches_the_weight_asked_when_shares_tie(total: int, weight: int) -> None:
    # The size the weight needs and the size the canary is given come from the same split (ties included).
    served, _ = settle("1.1.0", [stable()], Strategy("canary", total=total, split=True), canary_weight=weight)

    assert roles(served) == [("1.0.0", "stable", 100 - weight), ("1.1.0", "canary", weight)]


def test_pinning_back_the_stable_version_drains_the_canary_mesh_router() -> None:
    previous = [stable(weight=50), Served("1.1.0", "canary", 50, EARLIER)]
    sized = Strategy("canary", total=10, drain=10)
    full = {"1.0.0": Health(desired=10, ready=10, available=True), "1.1.0": Health(5, 5, True)}

    decision = plan("1.0.0", previous, full, sized, T0)

    # The stable version runs everything already: the canary's share goes back at once, the canary drains.
    assert roles(decision.served) == [("1.0.0", "stable", 100), ("1.1.0", "retiring", 0)]
    assert decision.requeue_after == 10


def test_pinning_back_with_the_replicas_router_scales_the_stable_version_before_the_canary_goes() -> None:
    previous = [stable(weight=50), Served("1.1.0", "canary", 50, EARLIER)]
    sized = Strategy("canary", total=10, split=True, drain=10)
    halves = {"1.0.0": Health(5, 5, True), "1.1.0": Health(5, 5, True)}

    decision = plan("1.0.0", previous, halves, sized, T0)
    assert roles(decision.served) == [("1.0.0", "stable", 50), ("1.1.0", "canary", 50)]
    assert "keeps 50% until 1.0.0 can take it back" in decision.message and decision.phase == "Canary"
    assert replicas(decision.served, 10, split=True) == {"1.0.0": 10, "1.1.0": 5}

    scaled = {"1.0.0": Health(10, 10, True), "1.1.0": Health(5, 5, True)}
    decision = plan("1.0.0", decision.served, scaled, sized, T0)
    assert roles(decision.served) == [("1.0.0", "stable", 100), ("1.1.0", "retiring", 0)]


def test_lowering_a_canary_weight_waits_for_the_stable_capacity() -> None:
    previous = [stable(weight=50), Served("1.1.0", "canary", 50, EARLIER)]
    sized = Strategy("canary", total=10, split=True)
    halves = {"1.0.0": Health(5, 5, True), "1.1.0": Health(5, 5, True)}

    decision = plan("1.1.0", previous, halves, sized, T0, canary_weight=20)
    assert roles(decision.served) == [("1.0.0", "stable", 50), ("1.1.0", "canary", 50)]
    assert "1.0.0 scaling to take 80% back (5/5 ready)" in decision.message
    # The stable version grows first; the canary keeps its Pods until the weight has moved.
    assert replicas(decision.served, 10, split=True) == {"1.0.0": 8, "1.1.0": 5}

    grown = {"1.0.0": Health(8, 8, True), "1.1.0": Health(5, 5, True)}
    decision = plan("1.1.0", decision.served, grown, sized, T0, canary_weight=20)
    assert roles(decision.served) == [("1.0.0", "stable", 80), ("1.1.0", "canary", 20)]
    assert replicas(decision.served, 10, split=True) == {"1.0.0": 8, "1.1.0": 2}


@pytest.mark.parametrize("split", [True, False])
def test_capacity_never_drops_below_the_total_while_a_canary_moves_and_is_abandoned(split: bool) -> None:
    sized = Strategy("canary", total=10, split=split, drain=100)
    served, history = settle("1.1.0", [stable()], sized, canary_weight=50)
    assert traffic_line(served) == "1.0.0=50 1.1.0=50"
    served, more = settle("1.1.0", served, sized, canary_weight=20)
    assert traffic_line(served) == "1.0.0=80 1.1.0=20"
    served, back = settle("1.0.0", served, sized)
    assert roles(served) == [("1.0.0", "stable", 100), ("1.1.0", "retiring", 0)]
    for sizes in history + more + back:
        assert sum(sizes.values()) >= 10, sizes


def test_a_canary_replaced_by_another_candidate_drains_and_the_new_one_starts_at_zero() -> None:
    previous = [stable(weight=70), Served("1.1.0", "canary", 30, EARLIER)]
    sized = Strategy("canary", total=10, drain=10)
    health = {"1.0.0": Health(10, 10, True), "1.1.0": Health(3, 3, True)}

    decision = plan("1.2.0", previous, health, sized, T0)

    assert roles(decision.served) == [("1.0.0", "stable", 100), ("1.2.0", "canary", 0), ("1.1.0", "retiring", 0)]


def test_switching_from_canary_to_rolling_rolls_the_same_version_at_full_size() -> None:
    previous = [stable(weight=70), Served("1.1.0", "canary", 30, EARLIER)]
    rolling = Strategy("rolling", total=10, drain=10)
    health = {"1.0.0": Health(10, 10, True), "1.1.0": Health(3, 3, True)}

    decision = plan("1.1.0", previous, health, rolling, T0)
    assert roles(decision.served) == [("1.0.0", "stable", 100), ("1.1.0", "incoming", 0)]
    assert replicas(decision.served, 10, split=False) == {"1.0.0": 10, "1.1.0": 10}

    health["1.1.0"] = Health(10, 10, True)
    decision = plan("1.1.0", decision.served, health, rolling, T0)
    assert roles(decision.served) == [("1.1.0", "stable", 100), ("1.0.0", "retiring", 0)]


def test_at_most_three_retiring_versions_are_kept_the_newest() -> None:
    previous = [stable("1.4.0")] + [
        Served(f"1.{i}.0", "retiring", 0, stamp(at(-10 * (4 - i)))) for i in range(4)
    ]  # 1.0.0 is the oldest
    decision = plan("1.4.0", previous, {}, Strategy("blueGreen", scale_down_delay=3600), T0)

    assert [s.version for s in decision.served if s.role == "retiring"] == ["1.3.0", "1.2.0", "1.1.0"]


def test_a_scale_up_is_not_a_rollout_of_the_template() -> None:
    # The HPA asked for 5: the new Pods are of the current template, not ready yet.
    scaling = {"observedGeneration": 3, "replicas": 5, "updatedReplicas": 5, "availableReplicas": 2,
               "readyReplicas": 2}  # fmt: skip
    health = deployment_health(deployment(5, scaling))
    assert (health.available, health.rolling) == (False, False)
    # A template change: old Pods still run beside new ones.
    rolling = {"observedGeneration": 3, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2,
               "readyReplicas": 2}  # fmt: skip
    assert deployment_health(deployment(2, rolling)).rolling
