"""The version plan of a ModelDeployment: which versions run, in which role, with what share of the traffic.

Pure: the controller passes in what it observed (the version the spec resolves to, the versions served so far as
recorded in status, each version's Deployment health, the time) and applies the plan it gets back. Status is the
plan's memory, so a restarted operator continues a rollout where it was.

Roles: ``stable`` takes the live traffic; ``incoming`` (rolling) and ``preview`` (blueGreen) start with no traffic
and take it all once their Deployment is available; ``canary`` takes the share a CanaryRollout gives it;
``retiring`` lost its traffic and is removed once the strategy's delay has passed; ``shadow`` gets mirrored requests.
Traffic only ever moves to a version whose Pods are ready.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

from mlops_operator.logic.times import parse_time, stamp

TRAFFIC_ROLES = ("stable", "canary")
MAX_RETIRING = 3
"""Retiring versions kept at most (the newest): each runs a full set of Pods while its delay lasts."""


@dataclass(frozen=True)
class Served:
    """One served version in the plan (and in status.versions)."""

    version: str
    role: str
    weight: int
    since: str
    """RFC 3339 time the version took this role."""
    wanted: int | None = None
    """The weight asked for, when the version is still scaling to take it (replicas are sized for it)."""


@dataclass(frozen=True)
class Health:
    """What a version's Deployment reports."""

    desired: int
    ready: int
    available: bool
    """Rolled out: the Deployment saw its latest spec and every desired replica is updated and available."""
    failed: str | None = None
    """Why the Deployment stopped progressing (ProgressDeadlineExceeded), if it did."""
    lost: bool = False
    """Its rollout completed, but fewer Pods than desired are available now (crashed, evicted, not ready)."""
    rolling: bool = False
    """Its Pods are not all of its current template yet (a template change rolling out, not a scale-up)."""


@dataclass(frozen=True)
class Strategy:
    kind: str
    """rolling, blueGreen or canary."""
    auto_promote: bool = True
    scale_down_delay: float = 0.0
    """Seconds a retiring version is kept by blueGreen."""
    drain: float = 0.0
    """Seconds a retiring version is kept by rolling and canary (proxies stop sending to it meanwhile)."""
    total: int | None = None
    """Replicas a version needs at full weight; None when autoscaled (capacity is then the autoscaler's)."""
    split: bool = False
    """The replicas router: weights are replica counts (see ``replicas``)."""


@dataclass(frozen=True)
class Decision:
    served: list[Served]
    phase: str
    """Serving, RollingOut, Preview, WaitingForPromotion, Canary, WaitingForVersion or NothingServed."""
    message: str
    requeue_after: float | None = None
    """Seconds until the plan changes on its own (a retiring version's delay ends)."""


def replica_split(total: int, weights: dict[str, int]) -> dict[str, int]:
    """Distributes ``total`` replicas over versions in proportion to their weights (largest remainder).

    Every version in ``weights`` is in the result; a weight of 0 gets 0 replicas, any other weight at least 1. The
    sum is ``total`` whenever ``total`` is at least the number of positive weights; below that each positive weight
    gets exactly 1 (more than ``total``), and a ``total`` of 0 gives 0 to every version. Weights are relative (need
    not sum to 100). Ties go to the version whose name sorts first, so the result does not depend on dict order.
    Raises ValueError on a negative weight or total.
    """
    if total < 0 or any(w < 0 for w in weights.values()):
        raise ValueError(f"total and weights must not be negative: {total}, {weights}")
    out = dict.fromkeys(weights, 0)
    positive = sorted(v for v, w in weights.items() if w > 0)
    if total == 0 or not positive:
        return out
    weight_sum = sum(weights[v] for v in positive)
    quota = {v: Fraction(total * weights[v], weight_sum) for v in positive}
    for v in positive:
        out[v] = max(1, int(quota[v]))
    # The floors leave units over, the minimum of 1 can take too many; either way the version furthest from its
    # quota in the needed direction changes first, by one unit at a time.
    while (left := total - sum(out.values())) != 0:
        if left > 0:
            v = min(positive, key=lambda v: (out[v] - quota[v], v))
            out[v] += 1
        else:
            candidates = [v for v in positive if out[v] > 1]
            if not candidates:
                break
            v = min(candidates, key=lambda v: (quota[v] - out[v], v))
            out[v] -= 1
    return out


def deployment_health(deployment: dict[str, Any]) -> Health:
    """The health of an apps/v1 Deployment as its controller reports it."""
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    generation = (deployment.get("metadata") or {}).get("generation", 0)
    observed = status.get("observedGeneration", -1) >= generation
    updated = status.get("updatedReplicas", 0)
    available = status.get("availableReplicas", 0)
    total = status.get("replicas", 0)
    failed = next(
        (
            c.get("message") or "progress deadline exceeded"
            for c in status.get("conditions") or []
            if c.get("type") == "Progressing" and c.get("status") == "False"
            and c.get("reason") == "ProgressDeadlineExceeded"
        ),
        None,
    )  # fmt: skip
    rolled = observed and updated >= desired and available >= desired and total <= desired
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    lost = (
        observed
        and (conditions.get("Progressing") or {}).get("reason") == "NewReplicaSetAvailable"
        and (conditions.get("Available") or {}).get("status") == "False"
    )
    rolling = not observed or updated < desired or total > desired
    return Health(desired, status.get("readyReplicas", 0), rolled, failed, bool(lost), rolling)


def _ready(health: dict[str, Health], version: str, need: int | None = None) -> bool:
    """Whether ``version`` can take traffic: its Deployment rolled out with ready Pods, at least ``need`` of them
    (the size the new weight needs: traffic never moves before the capacity for it is there)."""
    h = health.get(version)
    if h is None or not h.available or (h.ready == 0 and h.desired > 0):
        return False
    return need is None or (h.desired >= need and h.ready >= need)


def plan(
    target: str | None,
    previous: list[Served],
    health: dict[str, Health],
    strategy: Strategy,
    now: datetime,
    promote: str | None = None,
    canary_weight: int | None = None,
) -> Decision:
    """The next plan.

    ``target``: the version the spec resolves to, None while it does not resolve (then what runs keeps running).
    ``previous``: status.versions (shadow entries are ignored: the caller adds the shadow). ``promote``: the version
    named by the promote verb (blueGreen without autoPromote). ``canary_weight``: the canary's share set by a
    CanaryRollout.
    """
    stamp_now = stamp(now)
    previous = [s for s in previous if s.role != "shadow"]
    stable = next((s for s in previous if s.role == "stable"), None)
    requeue: list[float] = []

    def retiring(exclude: set[str], extra: list[Served] = ()) -> list[Served]:  # type: ignore[assignment]
        kept = []
        delay = strategy.scale_down_delay if strategy.kind == "blueGreen" else strategy.drain
        candidates = [s for s in [*previous, *extra] if s.role == "retiring" and s.version not in exclude]
        # The newest first: past MAX_RETIRING, the oldest go at once (each runs a full set of Pods).
        for s in sorted(candidates, key=lambda s: parse_time(s.since), reverse=True)[:MAX_RETIRING]:
            left = (parse_time(s.since) + timedelta(seconds=delay) - now).total_seconds()
            if left > 0:
                kept.append(s)
                requeue.append(left)
        return kept

    def size(served: list[Served], version: str) -> int | None:
        # The replicas ``version`` runs once ``served`` holds (None when autoscaled): the capacity a weight needs.
        return None if strategy.total is None else replicas(served, strategy.total, strategy.split)[version]

    def state(version: str) -> str:
        h = health.get(version)
        return f"{h.ready}/{h.desired} ready" if h else "starting"

    def decision(served: list[Served], phase: str, message: str) -> Decision:
        return Decision(served, phase, message, min(requeue) if requeue else None)

    if target is None:
        keep = [s for s in previous if s.role != "retiring"]
        keep += retiring({s.version for s in keep})
        if not keep:
            return decision([], "NothingServed", "no version to serve")
        return decision(keep, "WaitingForVersion", "keeps serving what runs until the version resolves")

    if stable is None:
        served = [Served(target, "stable", 100, stamp_now)]
        return decision(served + retiring({target}), "Serving", f"serving {target}")

    # A canary that stops being one (the target moved back to the stable version or on to another, or the strategy
    # changed) hands its share back to the stable version once that has the capacity for all of it, then drains.
    leaving = next(
        (s for s in previous if s.role == "canary" and not (strategy.kind == "canary" and s.version == target)), None
    )
    if leaving is not None:
        full = size([replace(stable, weight=100, wanted=None)], stable.version)
        if leaving.weight > 0 and not _ready(health, stable.version, full):
            served = [replace(stable, wanted=100), replace(leaving, wanted=0)]
            message = (
                f"canary {leaving.version} keeps {leaving.weight}% until {stable.version} can take it back "
                f"({state(stable.version)})"
            )
            return decision(served + retiring({stable.version, leaving.version}), "Canary", message)
        previous = [Served(s.version, "retiring", 0, stamp_now) if s is leaving else s for s in previous]

    if stable.version == target:
        served = [replace(stable, weight=100)]
        return decision(served + retiring({target}), "Serving", f"serving {target}")

    old = stable.version
    earlier = next((s for s in previous if s.version == target and s.role != "retiring"), None)
    if strategy.kind == "canary":
        since = earlier.since if earlier and earlier.role == "canary" else stamp_now
        requested = max(0, min(100, canary_weight or 0))
        had = earlier.weight if earlier and earlier.role == "canary" else 0
        h = health.get(target)
        at_requested = [
            replace(stable, weight=100 - requested, wanted=None),
            Served(target, "canary", requested, since),
        ]
        if h is None or (h.ready == 0 and h.desired > 0):
            weight = 0  # nothing there to take traffic
        elif requested > had:
            # The canary gains: its new Pods must be ready first (it keeps the weight it had until then).
            weight = requested if _ready(health, target, size(at_requested, target)) else had
        elif requested < had:
            # The stable version gains: likewise (with the replicas router it runs a share, not everything).
            weight = requested if _ready(health, old, size(at_requested, old)) else had
        else:
            weight = requested
        if weight == 100:
            # Promoted: the canary becomes the stable version and the old one retires, as in a rolling switch.
            switched = [Served(target, "stable", 100, stamp_now)]
            old_retiring = Served(old, "retiring", 0, stamp_now)
            message = f"promoted canary {target} over {old}"
            return decision(switched + retiring({target}, [old_retiring]), "Serving", message)
        served = [
            replace(stable, weight=100 - weight, wanted=100 - requested),
            Served(target, "canary", weight, since, wanted=requested),
        ]
        message = f"canary {target} takes {weight}% beside {old}"
        if weight < requested:
            message += f"; scaling to take {requested}% ({state(target)})"
        elif weight > requested:
            message += f"; {old} scaling to take {100 - requested}% back ({state(old)})"
        elif canary_weight is None:
            message += "; a CanaryRollout moves the weights"
        return decision(served + retiring({old, target}), "Canary", message)

    role = "preview" if strategy.kind == "blueGreen" else "incoming"
    since = earlier.since if earlier and earlier.role == role else stamp_now
    if _ready(health, target, strategy.total):
        if strategy.kind == "blueGreen" and not strategy.auto_promote and promote != target:
            served = [replace(stable, weight=100), Served(target, role, 0, since)]
            message = (
                f"{target} is ready in preview; promote it with "
                f"kubectl annotate modeldeployment <name> mlops.io/promote={target}"
            )
            return decision(served + retiring({old, target}), "WaitingForPromotion", message)
        switched = [Served(target, "stable", 100, stamp_now)]
        old_retiring = Served(old, "retiring", 0, stamp_now)
        return decision(
            switched + retiring({target}, [old_retiring]), "Serving", f"switched traffic from {old} to {target}"
        )
    phase = "Preview" if role == "preview" else "RollingOut"
    served = [replace(stable, weight=100), Served(target, role, 0, since)]
    return decision(served + retiring({old, target}), phase, f"{target} {state(target)}; {old} takes the traffic")


def replicas(served: list[Served], total: int, split: bool, shadow_percent: int = 100) -> dict[str, int]:
    """Replicas per version when not autoscaled.

    ``split`` (the replicas router): the versions taking traffic share ``total`` in proportion to their weights.
    Otherwise the stable, incoming, preview and retiring versions run ``total`` each (a switch never lowers
    capacity, and a retiring blue-green version can take the traffic back at once), a canary runs its share of
    ``total`` (at least 1), a shadow its mirrored share.
    """

    out: dict[str, int] = {}
    if split:
        # While the weights move, each version runs the larger of its share now and its share asked for: the
        # one gaining weight scales up first, the one losing it scales down once the weight has moved.
        now = _shares(total, {s.version: s.weight for s in served if s.role in TRAFFIC_ROLES and s.weight > 0})
        wanted = _shares(total, {s.version: _sized(s) for s in served if s.role in TRAFFIC_ROLES and _sized(s) > 0})
        for version in now.keys() | wanted.keys():
            out[version] = max(now.get(version, 0), wanted.get(version, 0))
    for s in served:
        if s.version in out:
            continue
        if total == 0:
            out[s.version] = 0
        elif s.role == "canary":
            out[s.version] = max(1, math.ceil(total * max(s.weight, _sized(s)) / 100))
        elif s.role == "shadow":
            out[s.version] = max(1, math.ceil(total * shadow_percent / 100))
        else:
            out[s.version] = total
    return out


def _shares(total: int, weights: dict[str, int]) -> dict[str, int]:
    if len(weights) == 1:
        return dict.fromkeys(weights, total)
    return replica_split(total, weights) if weights else {}


def _sized(s: Served) -> int:
    # Replicas follow the weight asked for, so that a canary scales before its weight moves.
    return s.wanted if s.wanted is not None else s.weight


def traffic_line(served: list[Served]) -> str:
    """The weights in one line: ``1.0.0=90 1.1.0=10``."""
    return " ".join(f"{s.version}={s.weight}" for s in served if s.role in TRAFFIC_ROLES)


def sized(
    served: list[Served],
    total: int,
    split: bool,
    shadow_percent: int,
    health: dict[str, Health],
    autoscaling_min: int | None,
) -> dict[str, int]:
    """The replicas each served version's Deployment is given.

    Not autoscaled: ``replicas``, except that a retiring version never grows (a canary handing its share back
    keeps its few Pods while it drains). Autoscaled (``autoscaling_min``): a version's Deployment starts with the
    capacity the traffic has now (the stable version's replicas, at least the minimum), a canary or shadow with
    the minimum; then the autoscaler owns its size.
    """
    if autoscaling_min is not None:
        stable = next((health.get(s.version) for s in served if s.role == "stable"), None)
        start = max(autoscaling_min, stable.desired if stable else 0)
        return {s.version: autoscaling_min if s.role in ("canary", "shadow") else start for s in served}
    out = replicas(served, total, split, shadow_percent)
    for s in served:
        h = health.get(s.version)
        if s.role == "retiring" and h is not None and s.version in out:
            out[s.version] = min(out[s.version], h.desired)
    return out


@dataclass(frozen=True)
class Shadow:
    """What mirroring to a shadow version comes to."""

    served: Served | None
    """The shadow's entry among the served versions (None: not run)."""
    mirror: tuple[str, int] | None
    """(version, percent) mirrored, once its Pods are ready."""
    note: str | None
    """Why nothing is mirrored yet, for the Ready message."""


def shadow(
    version: str | None,
    unresolved: str | None,
    percent: int,
    served: list[Served],
    previous: list[Served],
    health: Health | None,
    now: str,
) -> Shadow:
    """The shadow rule: a resolved shadow ``version`` that is not served otherwise runs (keeping its ``since``) and
    gets ``percent`` of the requests mirrored once it has a ready Pod; ``unresolved`` says why it cannot run."""
    if version is None:
        return Shadow(None, None, f"shadow not running: {unresolved}")
    if version in {s.version for s in served}:
        return Shadow(None, None, f"shadow {version} is already served; nothing mirrored")
    since = next((s.since for s in previous if s.version == version and s.role == "shadow"), None)
    entry = Served(version, "shadow", 0, since or now)
    if health is not None and health.ready > 0:
        return Shadow(entry, (version, percent), None)
    return Shadow(entry, None, f"shadow {version} gets mirrored traffic once ready")
