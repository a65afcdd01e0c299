"""The traffic routers: registry, the Gateway API HTTPRoute, the Istio VirtualService and the replicas router."""

from __future__ import annotations

from typing import Any

import pytest

from mlops_operator.api.modeldeployment import ModelDeploymentSpec
from mlops_operator.builders.serving import child_name, front_name
from mlops_operator.routers import Traffic, get
from mlops_operator.routers.gateway_api import GatewayApiRouter
from mlops_operator.routers.istio import IstioRouter
from mlops_operator.routers.replicas import ReplicasRouter

OWNER: dict[str, Any] = {
    "apiVersion": "mlops.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "fraud", "namespace": "ml", "uid": "u1"},
}
SPLIT = Traffic({"1.0.0": 90, "1.1.0": 10})
MIRRORED = Traffic({"1.0.0": 100}, mirror=("2.0.0", 25))


def spec(server: dict[str, Any] | None = None, **router: Any) -> ModelDeploymentSpec:
    body = {"model": "fraud-detector", "version": "1.1.0", "router": router, "server": server or {}}
    return ModelDeploymentSpec.model_validate(body)


def gateway_spec(server: dict[str, Any] | None = None, **router: Any) -> ModelDeploymentSpec:
    return spec(server, type="gatewayAPI", parentRefs=[{"name": "public"}], **router)


def fqdn(service: str) -> str:
    return f"{service}.ml.svc.cluster.local"


# --- registry --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"), [("gatewayAPI", GatewayApiRouter), ("istio", IstioRouter), ("replicas", ReplicasRouter)]
)
def test_get_returns_the_router_registered_under_its_name(name: str, cls: type) -> None:
    router = get(name)

    assert isinstance(router, cls)
    assert router.name == name


@pytest.mark.parametrize("name", ["linkerd", "GatewayAPI", ""])
def test_get_refuses_an_unknown_name(name: str) -> None:
    with pytest.raises(ValueError, match="unknown router type"):
        get(name)


def test_every_schema_router_type_is_registered() -> None:
    for name in ("gatewayAPI", "istio", "replicas"):
        assert spec(type=name, parentRefs=[{"name": "gw"}]).router.type == get(name).name


# --- Gateway API -----------------------------------------------------------------------------------------------------


def test_httproute_identity() -> None:
    (route,) = GatewayApiRouter().objects(OWNER, gateway_spec(), SPLIT)

    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["kind"] == "HTTPRoute"
    assert route["metadata"]["name"] == front_name("fraud")
    assert route["metadata"]["namespace"] == "ml"
    assert route["metadata"]["labels"]["mlops.io/deployment"] == "fraud"
    assert "ownerReferences" not in route["metadata"]


def test_httproute_maps_parent_refs() -> None:
    refs = [{"name": "public", "namespace": "gateways", "sectionName": "https"}, {"name": "internal"}]

    (route,) = GatewayApiRouter().objects(OWNER, spec(type="gatewayAPI", parentRefs=refs), SPLIT)

    assert route["spec"]["parentRefs"] == refs


def test_httproute_hostnames_only_when_set() -> None:
    (without,) = GatewayApiRouter().objects(OWNER, gateway_spec(), SPLIT)
    (with_hosts,) = GatewayApiRouter().objects(OWNER, gateway_spec(hostnames=["fraud.example.com"]), SPLIT)

    assert "hostnames" not in without["spec"]
    assert with_hosts["spec"]["hostnames"] == ["fraud.example.com"]


def test_httproute_weights_each_version_service_in_order() -> None:
    (route,) = GatewayApiRouter().objects(OWNER, gateway_spec(), SPLIT)

    assert route["spec"]["rules"] == [
        {
            "backendRefs": [
                {"name": child_name("fraud", "1.0.0"), "port": 8080, "weight": 90},
                {"name": child_name("fraud", "1.1.0"), "port": 8080, "weight": 10},
            ]
        },
        {
            # gRPC calls (their content type) go to the grpc port, weighted the same.
            "matches": [{"headers": [{"type": "Exact", "name": "content-type", "value": "application/grpc"}]}],
            "backendRefs": [
                {"name": child_name("fraud", "1.0.0"), "port": 8081, "weight": 90},
                {"name": child_name("fraud", "1.1.0"), "port": 8081, "weight": 10},
            ],
        },
    ]


def test_httproute_mirrors_to_the_shadow_service() -> None:
    (route,) = GatewayApiRouter().objects(OWNER, gateway_spec(), MIRRORED)

    for rule, port in zip(route["spec"]["rules"], (8080, 8081), strict=True):
        assert rule["filters"] == [
            {
                "type": "RequestMirror",
                "requestMirror": {"backendRef": {"name": child_name("fraud", "2.0.0"), "port": port}, "percent": 25},
            }
        ]
        assert [ref["name"] for ref in rule["backendRefs"]] == [child_name("fraud", "1.0.0")]


def test_without_grpc_one_rule_and_one_route() -> None:
    (route,) = GatewayApiRouter().objects(OWNER, gateway_spec(server={"grpcPort": 0}), SPLIT)
    (rule,) = route["spec"]["rules"]
    assert "matches" not in rule and {ref["port"] for ref in rule["backendRefs"]} == {8080}
    (vs,) = IstioRouter().objects(OWNER, spec(type="istio", server={"grpcPort": 0}), SPLIT)
    (http,) = vs["spec"]["http"]
    assert http["name"] == "mlops-weights" and "match" not in http


# --- Istio -----------------------------------------------------------------------------------------------------------


def test_virtualservice_identity() -> None:
    (vs,) = IstioRouter().objects(OWNER, spec(type="istio"), SPLIT)

    assert vs["apiVersion"] == "networking.istio.io/v1"
    assert vs["kind"] == "VirtualService"
    assert vs["metadata"]["name"] == front_name("fraud")
    assert vs["metadata"]["namespace"] == "ml"


def test_virtualservice_binds_the_front_service_host_by_default_and_no_gateways() -> None:
    (vs,) = IstioRouter().objects(OWNER, spec(type="istio"), SPLIT)

    assert vs["spec"]["hosts"] == [fqdn(front_name("fraud"))]
    assert "gateways" not in vs["spec"]


def test_virtualservice_hostnames_and_gateways_override() -> None:
    router = spec(type="istio", hostnames=["fraud.example.com"], gateways=["istio-system/public"])

    (vs,) = IstioRouter().objects(OWNER, router, SPLIT)

    assert vs["spec"]["hosts"] == ["fraud.example.com"]
    assert vs["spec"]["gateways"] == ["istio-system/public"]


def test_virtualservice_weights_each_version_service_in_order() -> None:
    (vs,) = IstioRouter().objects(OWNER, spec(type="istio"), SPLIT)

    # gRPC calls first (matched by content type) to the grpc port; everything else to http.
    grpc, http = vs["spec"]["http"]
    assert grpc["name"] == "mlops-weights-grpc"
    assert grpc["match"] == [{"headers": {"content-type": {"prefix": "application/grpc"}}}]
    assert http["name"] == "mlops-weights" and "match" not in http
    for route, port in ((grpc, 8081), (http, 8080)):
        assert route["route"] == [
            {"destination": {"host": fqdn(child_name("fraud", "1.0.0")), "port": {"number": port}}, "weight": 90},
            {"destination": {"host": fqdn(child_name("fraud", "1.1.0")), "port": {"number": port}}, "weight": 10},
        ]
        assert "mirror" not in route
        assert "mirrorPercentage" not in route


def test_virtualservice_mirrors_to_the_shadow_service() -> None:
    (vs,) = IstioRouter().objects(OWNER, spec(type="istio"), MIRRORED)

    for http, port in zip(vs["spec"]["http"], (8081, 8080), strict=True):
        assert http["mirror"] == {"host": fqdn(child_name("fraud", "2.0.0")), "port": {"number": port}}
        assert http["mirrorPercentage"] == {"value": 25.0}
        assert isinstance(http["mirrorPercentage"]["value"], float)


# --- replicas --------------------------------------------------------------------------------------------------------


def test_replicas_router_builds_no_objects_and_owns_no_kinds() -> None:
    router = ReplicasRouter()

    assert router.objects(OWNER, spec(), SPLIT) == []
    assert router.kinds == ()


# --- front_versions --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "expected"),
    [({"1.0.0": 90, "1.1.0": 10}, ["1.0.0", "1.1.0"]), ({"1.0.0": 100, "1.1.0": 0}, ["1.0.0"]), ({}, [])],
)
def test_replicas_front_selects_every_version_with_weight(weights: dict[str, int], expected: list[str]) -> None:
    assert ReplicasRouter().front_versions(Traffic(weights)) == expected


@pytest.mark.parametrize("name", ["gatewayAPI", "istio"])
@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ({"1.0.0": 90, "1.1.0": 10}, ["1.0.0"]),
        ({"1.0.0": 10, "1.1.0": 90}, ["1.0.0"]),
        ({"1.0.0": 0, "1.1.0": 100}, ["1.1.0"]),
        ({"1.0.0": 50, "1.1.0": 50}, ["1.0.0"]),
        ({}, []),
    ],
)
def test_mesh_front_selects_the_stable_version(name: str, weights: dict[str, int], expected: list[str]) -> None:
    assert get(name).front_versions(Traffic(weights)) == expected
