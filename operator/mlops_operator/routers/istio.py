"""The Istio router: one VirtualService (networking.istio.io/v1) whose HTTP route weights a destination per version's
Service, with a mirror for a shadow version. It binds the front Service's host (mesh traffic) unless
spec.router.hostnames names others, and the Istio Gateways of spec.router.gateways when given. With the gRPC endpoint
on, a first route takes gRPC calls (content-type application/grpc...) to the Services' grpc port with the same
weights; everything else goes to their http port."""

from __future__ import annotations

from mlops_operator.api.modeldeployment import ModelDeploymentSpec
from mlops_operator.builders.serving import SERVICE_GRPC_PORT, SERVICE_PORT, child_name, front_name, labels
from mlops_operator.routers import Body, Traffic, stable_only
from mlops_operator.runtime.kinds import Resource

VIRTUALSERVICE = Resource("networking.istio.io", "v1", "virtualservices", "VirtualService")
ROUTE_NAME = "mlops-weights"
GRPC_ROUTE_NAME = "mlops-weights-grpc"
GRPC_MATCH = {"headers": {"content-type": {"prefix": "application/grpc"}}}


def _host(service: str, namespace: str) -> str:
    return f"{service}.{namespace}.svc.cluster.local"


class IstioRouter:
    name = "istio"
    kinds: tuple[Resource, ...] = (VIRTUALSERVICE,)

    def objects(self, owner: Body, spec: ModelDeploymentSpec, traffic: Traffic) -> list[Body]:
        name, namespace = owner["metadata"]["name"], owner["metadata"]["namespace"]

        def destination(version: str, port: int) -> Body:
            return {"host": _host(child_name(name, version), namespace), "port": {"number": port}}

        def route(route_name: str, port: int) -> Body:
            out: Body = {
                "name": route_name,
                "route": [{"destination": destination(v, port), "weight": w} for v, w in traffic.weights.items()],
            }
            if traffic.mirror is not None:
                version, percent = traffic.mirror
                out["mirror"] = destination(version, port)
                out["mirrorPercentage"] = {"value": float(percent)}
            return out

        routes = [route(ROUTE_NAME, SERVICE_PORT)]
        if spec.server.grpc_port:
            routes.insert(
                0, {"name": GRPC_ROUTE_NAME, "match": [GRPC_MATCH], **route(GRPC_ROUTE_NAME, SERVICE_GRPC_PORT)}
            )
        body: Body = {
            "hosts": list(spec.router.hostnames or [_host(front_name(name), namespace)]),
            "http": routes,
        }
        if spec.router.gateways:
            body["gateways"] = list(spec.router.gateways)
        return [
            {
                "apiVersion": VIRTUALSERVICE.api_version,
                "kind": VIRTUALSERVICE.kind,
                "metadata": {"name": front_name(name), "namespace": namespace, "labels": labels(name, spec.model)},
                "spec": body,
            }
        ]

    def front_versions(self, traffic: Traffic) -> list[str]:
        return stable_only(traffic)
