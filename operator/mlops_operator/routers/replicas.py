"""The replicas router: no mesh. The front Service selects every version that takes traffic, and the weights are
approximated by replica counts (``logic.serving.replica_split``): 90/10 over 10 replicas is 9 and 1 Pods."""

from __future__ import annotations

from mlops_operator.api.modeldeployment import ModelDeploymentSpec
from mlops_operator.routers import Body, Traffic
from mlops_operator.runtime.kinds import Resource


class ReplicasRouter:
    name = "replicas"
    kinds: tuple[Resource, ...] = ()

    def objects(self, owner: Body, spec: ModelDeploymentSpec, traffic: Traffic) -> list[Body]:
        return []

    def front_versions(self, traffic: Traffic) -> list[str]:
        return [v for v, w in traffic.weights.items() if w > 0]
