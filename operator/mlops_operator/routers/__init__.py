"""Traffic routers: one interface, one class per way of splitting traffic between served versions.

A router turns the weights of a ModelDeployment (and an optional mirror) into the routing objects it owns, and
says which versions the front Service selects. It never reads or writes anything else: the controller applies what
it returns, under the operator's field manager and with an owner reference, and removes the objects of a router the
deployment no longer uses. The canary rollouts drive weights through this same interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from mlops_operator.api.modeldeployment import ModelDeploymentSpec
from mlops_operator.runtime.kinds import Resource

Body = dict[str, Any]


@dataclass(frozen=True)
class Traffic:
    """The split a router must put in place."""

    weights: dict[str, int]
    """Version -> percent of the live traffic; the versions that take live traffic, in order (stable first)."""
    mirror: tuple[str, int] | None = None
    """A version receiving a copy of this percent of the requests (responses discarded)."""


class Router(Protocol):
    """What every router implements."""

    name: str
    kinds: tuple[Resource, ...]
    """The kinds of object this router owns (the controller watches them and removes stale ones)."""

    def objects(self, owner: Body, spec: ModelDeploymentSpec, traffic: Traffic) -> list[Body]:
        """The complete routing objects for server-side apply (without owner references: the caller adds them)."""
        ...

    def front_versions(self, traffic: Traffic) -> list[str]:
        """The versions whose Pods the front Service selects."""
        ...


def every() -> tuple[Router, ...]:
    """Every router, one instance each."""
    from mlops_operator.routers.gateway_api import GatewayApiRouter
    from mlops_operator.routers.istio import IstioRouter
    from mlops_operator.routers.replicas import ReplicasRouter

    return (GatewayApiRouter(), IstioRouter(), ReplicasRouter())


def get(name: str) -> Router:
    """The router registered under ``name`` (spec.router.type)."""
    routers = {r.name: r for r in every()}
    try:
        return routers[name]
    except KeyError:
        raise ValueError(f"unknown router type {name!r}; known: {', '.join(sorted(routers))}") from None


def stable_only(traffic: Traffic) -> list[str]:
    """The stable version (the first in ``weights`` that takes traffic) as a one-element list; empty without any.

    What the front Service selects under a mesh router: callers that bypass the mesh reach the stable version only,
    so a canary never gets more than the share its route gives it."""
    taking = [v for v, w in traffic.weights.items() if w > 0] or list(traffic.weights)
    return taking[:1]
