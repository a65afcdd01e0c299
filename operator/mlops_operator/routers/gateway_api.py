"""The Gateway API router: one HTTPRoute (gateway.networking.k8s.io/v1) with a weighted backendRef per version's
Service, attached to the Gateways of spec.router.parentRefs, and a RequestMirror filter for a shadow version. With
the gRPC endpoint on, a second rule takes gRPC calls (header content-type exactly application/grpc, what gRPC
clients send) to the Services' grpc port with the same weights; the first takes everything else to their http
port."""

from __future__ import annotations

from mlops_operator.api.modeldeployment import ModelDeploymentSpec
from mlops_operator.builders.serving import SERVICE_GRPC_PORT, SERVICE_PORT, child_name, front_name, labels
from mlops_operator.routers import Body, Traffic, stable_only
from mlops_operator.runtime.kinds import Resource

HTTPROUTE = Resource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")
GRPC_MATCH = {"headers": [{"type": "Exact", "name": "content-type", "value": "application/grpc"}]}


class GatewayApiRouter:
    name = "gatewayAPI"
    kinds: tuple[Resource, ...] = (HTTPROUTE,)

    def objects(self, owner: Body, spec: ModelDeploymentSpec, traffic: Traffic) -> list[Body]:
        name = owner["metadata"]["name"]
        router = spec.router
        parents: list[Body] = []
        for ref in router.parent_refs or []:
            parent: Body = {"name": ref.name}
            if ref.namespace:
                parent["namespace"] = ref.namespace
            if ref.section_name:
                parent["sectionName"] = ref.section_name
            parents.append(parent)

        def rule(port: int) -> Body:
            out: Body = {
                "backendRefs": [
                    {"name": child_name(name, version), "port": port, "weight": weight}
                    for version, weight in traffic.weights.items()
                ]
            }
            if traffic.mirror is not None:
                version, percent = traffic.mirror
                out["filters"] = [
                    {
                        "type": "RequestMirror",
                        "requestMirror": {
                            "backendRef": {"name": child_name(name, version), "port": port},
                            "percent": percent,
                        },
                    }
                ]
            return out

        rules = [rule(SERVICE_PORT)]
        if spec.server.grpc_port:
            rules.append({"matches": [GRPC_MATCH], **rule(SERVICE_GRPC_PORT)})
        body: Body = {"parentRefs": parents, "rules": rules}
        if router.hostnames:
            body["hostnames"] = list(router.hostnames)
        return [
            {
                "apiVersion": HTTPROUTE.api_version,
                "kind": HTTPROUTE.kind,
                "metadata": {
                    "name": front_name(name),
                    "namespace": owner["metadata"]["namespace"],
                    "labels": labels(name, spec.model),
                },
                "spec": body,
            }
        ]

    def front_versions(self, traffic: Traffic) -> list[str]:
        # Traffic through the Gateway is weighted by the route; in-cluster callers of the front Service reach the
        # stable version only.
        return stable_only(traffic)
