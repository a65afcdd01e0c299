"""The traffic driver (tests/dataplane/traffic.py): routes read from the HTTPRoutes and VirtualServices the routers
write, endpoints from the EndpointSlices of the operator's Services and which of them take traffic, weighted and
mirror choices, the statistics, a view that follows the API server's events, runs against servers on the loopback,
and the guard that keeps requests on this machine."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web

from mlops_operator.api.modeldeployment import ModelDeploymentSpec
from mlops_operator.builders.serving import Workload, child_name, deployment, version_service
from mlops_operator.routers import Traffic
from mlops_operator.routers.gateway_api import GatewayApiRouter
from mlops_operator.routers.istio import IstioRouter

# tests/dataplane is not a package: with the repository root on sys.path it is the namespace package
# tests.dataplane, the same name mypy gives it when run from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.dataplane import traffic
from tests.dataplane.traffic import (
    Backend,
    Endpoint,
    Entry,
    Load,
    Mirror,
    Outcome,
    Pick,
    Report,
    ServiceRef,
    Table,
    Target,
)

Body = dict[str, Any]
OWNER: Body = {
    "apiVersion": "mlops.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "fraud", "namespace": "ml", "uid": "u1"},
}
PATH = "/v2/models/fraud-detector/infer"
STABLE, CANARY, SHADOW = (child_name("fraud", v) for v in ("1.0.0", "1.1.0", "2.0.0"))
READY = {"ready": True, "serving": True, "terminating": False}
NOT_READY = {"ready": False, "serving": False, "terminating": False}
TERMINATING = {"ready": False, "serving": True, "terminating": True}
STOPPING = {"ready": False, "serving": False, "terminating": True}
DRAWS = 10_000
TOLERANCE = 0.015


@pytest.fixture(autouse=True)
def _no_pod_range_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # The driver reads MLOPS_POD_RANGE: the tests start from the default, whatever the shell that runs them says.
    monkeypatch.delenv(traffic.POD_RANGE_ENV, raising=False)


def spec(router: str) -> ModelDeploymentSpec:
    # The server on 9000 behind Service port 8080 (targetPort "http"): the endpoint port is the container's.
    parents = [{"name": "public"}] if router == "gatewayAPI" else None
    return ModelDeploymentSpec.model_validate(
        {
            "model": "fraud-detector",
            "version": "1.1.0",
            "router": {"type": router, "parentRefs": parents},
            "server": {"port": 9000},
        }
    )


def httproute(weights: dict[str, int], mirror: tuple[str, int] | None = None) -> Body:
    (route,) = GatewayApiRouter().objects(OWNER, spec("gatewayAPI"), Traffic(weights, mirror))
    return route


def virtualservice(weights: dict[str, int], mirror: tuple[str, int] | None = None) -> Body:
    (service,) = IstioRouter().objects(OWNER, spec("istio"), Traffic(weights, mirror))
    return service


def workload(version: str) -> Workload:
    return Workload(version=version, role="stable", replicas=1, source="s3://models/fraud.pkl", format="sklearn")


def service(version: str) -> Body:
    """A version's Service as the operator builds it: a selector, port 8080, targetPort http."""
    return version_service(OWNER, spec("gatewayAPI"), workload(version))


def selectorless(version: str) -> Body:
    """A version's Service without a selector: its endpoints are whatever EndpointSlices name it."""
    body = service(version)
    del body["spec"]["selector"]
    return body


def container_port(version: str, service_port: Body) -> int:
    """The port the EndpointSlice controller publishes for a Service port: the targetPort, resolved by name in the
    version's Pod template (the operator's Deployment) when it is a name."""
    target = service_port["targetPort"]
    if isinstance(target, int):
        return target
    template = deployment(OWNER, spec("gatewayAPI"), workload(version), "mlops-server:test")["spec"]["template"]
    (container,) = template["spec"]["containers"]
    return int(next(p["containerPort"] for p in container["ports"] if p["name"] == target))


def endpoint_slice(
    of: Body,
    *endpoints: tuple[str, dict[str, bool] | None],
    port: int | None = None,
    port_name: str | None = None,
    suffix: str = "x7k2p",
) -> Body:
    """An EndpointSlice of the Service ``of`` as the API server holds it. For a Service with a selector, as the
    EndpointSlice controller writes it: the Service's labels, owned by the Service, each endpoint a Pod on the node
    whose podCIDR holds its address, a slice port per Service port (the container port behind its targetPort).
    Without one, as another writer might: the name label and the endpoints alone. ``port`` and ``port_name``
    replace the first slice port's."""
    name, namespace = of["metadata"]["name"], of["metadata"]["namespace"]
    first, *others = of["spec"]["ports"]
    version = of["metadata"]["labels"]["mlops.io/version"]
    controller = bool(of["spec"].get("selector"))
    metadata: Body = {
        "name": f"{name}-{suffix}",
        "namespace": namespace,
        "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "tests"},
    }
    if controller:
        metadata["generateName"] = f"{name}-"
        metadata["labels"] = {
            **of["metadata"]["labels"],
            "kubernetes.io/service-name": name,
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        }
        owner = {"apiVersion": "v1", "kind": "Service", "name": name, "uid": f"uid-{name}", "controller": True}
        metadata["ownerReferences"] = [{**owner, "blockOwnerDeletion": True}]

    def endpoint(address: str, conditions: dict[str, bool] | None) -> Body:
        body: Body = {"addresses": [address]}
        if conditions is not None:
            body["conditions"] = conditions
        if controller:
            _, _, node, host = address.split(".")
            pod_name = f"{name}-6d4cf56db6-n{node}h{host}"
            body["nodeName"] = f"kwok-node-{node}"
            body["targetRef"] = {"kind": "Pod", "name": pod_name, "namespace": namespace, "uid": f"uid-{pod_name}"}
        return body

    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": metadata,
        "addressType": "IPv4",
        "ports": [
            {
                "name": first["name"] if port_name is None else port_name,
                "port": container_port(version, first) if port is None else port,
                "protocol": "TCP",
            },
            *({"name": p["name"], "port": container_port(version, p), "protocol": "TCP"} for p in others),
        ],
        "endpoints": [endpoint(address, conditions) for address, conditions in endpoints],
    }


def version_slice(version: str, *endpoints: tuple[str, dict[str, bool] | None]) -> Body:
    """The EndpointSlice the controller writes for a version's Service."""
    return endpoint_slice(service(version), *endpoints)


def ready(address: str, port: int = 9000) -> Endpoint:
    return Endpoint(address, port, True, True, False)


# --- entry points ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("service/fraud", Entry("service", "fraud")),
        ("service/fraud:8080", Entry("service", "fraud", 8080)),
        ("service/fraud:http", Entry("service", "fraud", "http")),
        ("httproute/fraud", Entry("httproute", "fraud")),
        ("HTTPRoute/fraud", Entry("httproute", "fraud")),
        ("virtualservice/fraud", Entry("virtualservice", "fraud")),
    ],
)
def test_parse_entry(text: str, entry: Entry) -> None:
    assert traffic.parse_entry(text) == entry


@pytest.mark.parametrize("text", ["fraud", "deployment/fraud", "service/", "service/a/b", "httproute/fraud:80"])
def test_parse_entry_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="entry"):
        traffic.parse_entry(text)


# --- Gateway API -----------------------------------------------------------------------------------------------------


ROUTERS = [(httproute, traffic.httproute_route), (virtualservice, traffic.virtualservice_route)]


@pytest.mark.parametrize(("build", "parse"), ROUTERS, ids=["gatewayAPI", "istio"])
def test_the_routers_objects_weight_each_version_service(build: Any, parse: Any) -> None:
    route = parse(build({"1.0.0": 70, "1.1.0": 30}), PATH)

    assert route == traffic.Route(
        (Backend(ServiceRef("ml", STABLE, 8080), 70), Backend(ServiceRef("ml", CANARY, 8080), 30))
    )


@pytest.mark.parametrize(("build", "parse"), ROUTERS, ids=["gatewayAPI", "istio"])
def test_the_routers_objects_mirror_the_shadow(build: Any, parse: Any) -> None:
    route = parse(build({"1.0.0": 100}, mirror=("2.0.0", 25)), PATH)

    assert route == traffic.Route(
        (Backend(ServiceRef("ml", STABLE, 8080), 100),), (Mirror(ServiceRef("ml", SHADOW, 8080), 25.0),)
    )


@pytest.mark.parametrize(
    ("request_mirror", "percent"),
    [
        ({"percent": 25}, 25.0),
        ({"percent": 0}, 0.0),
        ({"fraction": {"numerator": 1, "denominator": 8}}, 12.5),
        ({"fraction": {"numerator": 5}}, 5.0),
        ({}, 100.0),
    ],
)
def test_mirror_percent(request_mirror: Body, percent: float) -> None:
    assert traffic.mirror_percent({"backendRef": {"name": "s", "port": 80}, **request_mirror}) == percent


def gateway_route(rules: list[Body], namespace: str = "ml") -> Body:
    return {"metadata": {"name": "r", "namespace": namespace}, "spec": {"rules": rules}}


def test_httproute_backend_defaults_and_own_mirror() -> None:
    mirror = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "shadow", "port": 8080}}}
    rule = {
        "backendRefs": [
            {"name": "a", "port": 8080},
            {"name": "b", "namespace": "other", "port": 8080, "weight": 0, "filters": [mirror]},
        ]
    }

    route = traffic.httproute_route(gateway_route([rule]), PATH)

    assert route == traffic.Route(
        (
            Backend(ServiceRef("ml", "a", 8080), 1),
            Backend(ServiceRef("other", "b", 8080), 0, (Mirror(ServiceRef("ml", "shadow", 8080), 100.0),)),
        )
    )


def test_httproute_refuses_a_backend_that_is_not_a_service() -> None:
    rule = {"backendRefs": [{"group": "example.io", "kind": "Bucket", "name": "b"}]}

    with pytest.raises(ValueError, match="not a Service"):
        traffic.httproute_route(gateway_route([rule]), PATH)


def rule_to(name: str, *matches: Body) -> Body:
    return {"matches": list(matches), "backendRefs": [{"name": name, "port": 8080}]}


@pytest.mark.parametrize(
    ("rules", "chosen"),
    [
        ([rule_to("a")], "a"),
        ([rule_to("a", {"path": {"type": "PathPrefix", "value": "/v2"}})], "a"),
        ([rule_to("a", {"path": {"type": "PathPrefix", "value": "/v2/models/fraud"}})], None),  # whole elements
        ([rule_to("a", {"path": {"type": "Exact", "value": "/"}})], None),
        ([rule_to("a", {"method": "GET"})], None),
        ([rule_to("a", {"headers": [{"name": "x-canary", "value": "1"}]})], None),
        ([rule_to("a", {"path": {"type": "RegularExpression", "value": "/v2/models/[^/]+/infer"}})], "a"),
        # Precedence: an exact path over a prefix, a longer prefix over a shorter, a method over none; then order.
        ([rule_to("a"), rule_to("b", {"path": {"type": "Exact", "value": PATH}})], "b"),
        ([rule_to("a", {"path": {"value": "/v2"}}), rule_to("b", {"path": {"value": "/v2/models"}})], "b"),
        ([rule_to("a"), rule_to("b", {"method": "POST"})], "b"),
        ([rule_to("a"), rule_to("b")], "a"),
    ],
)
def test_httproute_rule_matching(rules: list[Body], chosen: str | None) -> None:
    route = traffic.httproute_route(gateway_route(rules), PATH)

    assert (route.backends[0].target.name if route else None) == chosen


# --- Istio -----------------------------------------------------------------------------------------------------------


def istio(*http: Body) -> Body:
    return {"metadata": {"name": "vs", "namespace": "ml"}, "spec": {"http": list(http)}}


@pytest.mark.parametrize(
    ("http", "backends", "mirrors"),
    [
        # A single destination takes everything, whatever its weight.
        ({"route": [{"destination": {"host": "a"}}]}, [("ml", "a", None, 100)], []),
        ({"route": [{"destination": {"host": "a"}, "weight": 0}]}, [("ml", "a", None, 100)], []),
        # With several, a missing weight is 0.
        (
            {"route": [{"destination": {"host": "a.other"}, "weight": 100}, {"destination": {"host": "b"}}]},
            [("other", "a", None, 100), ("ml", "b", None, 0)],
            [],
        ),
        (
            {"route": [{"destination": {"host": "a"}}], "mirror": {"host": "s.ml.svc.cluster.local"}},
            [("ml", "a", None, 100)],
            [("ml", "s", 100.0)],
        ),
        (
            {"route": [{"destination": {"host": "a"}}], "mirrors": [{"destination": {"host": "s"}, "percentage": {}}]},
            [("ml", "a", None, 100)],
            [("ml", "s", 100.0)],
        ),
        (
            {
                "route": [{"destination": {"host": "a", "port": {"number": 81}}}],
                "mirror": {"host": "s"},
                "mirrorPercentage": {"value": 12.5},
            },
            [("ml", "a", 81, 100)],
            [("ml", "s", 12.5)],
        ),
    ],
)
def test_virtualservice_destinations_and_mirrors(
    http: Body, backends: list[tuple[str, str, int | None, int]], mirrors: list[tuple[str, str, float]]
) -> None:
    route = traffic.virtualservice_route(istio(http), PATH)

    assert route is not None
    assert [(b.target.namespace, b.target.name, b.target.port, b.weight) for b in route.backends] == backends
    assert [(m.target.namespace, m.target.name, m.percent) for m in route.mirrors] == mirrors


@pytest.mark.parametrize(
    ("match", "chosen"),
    [
        ([{"uri": {"prefix": "/v2/"}}], "a"),
        ([{"uri": {"exact": "/v2/health/ready"}}], "b"),
        ([{"uri": {"regex": "/v2/models/.+/infer"}, "method": {"exact": "POST"}}], "a"),
        ([{"method": {"exact": "GET"}}, {"uri": {"prefix": "/v1"}}], "b"),
        ([{"headers": {"x-canary": {"exact": "1"}}}], "b"),
    ],
)
def test_virtualservice_first_matching_route(match: list[Body], chosen: str) -> None:
    first = {"match": match, "route": [{"destination": {"host": "a"}}]}
    fallback = {"route": [{"destination": {"host": "b"}}]}

    route = traffic.virtualservice_route(istio(first, fallback), PATH)

    assert route is not None
    assert route.backends[0].target.name == chosen


def test_virtualservice_without_a_matching_route_routes_nothing() -> None:
    http = {"match": [{"uri": {"prefix": "/v1/"}}], "route": [{"destination": {"host": "a"}}]}

    assert traffic.virtualservice_route(istio(http), PATH) is None


def test_virtualservice_refuses_a_subset() -> None:
    http = {"route": [{"destination": {"host": "a", "subset": "v1"}}]}

    with pytest.raises(ValueError, match="DestinationRule"):
        traffic.virtualservice_route(istio(http), PATH)


# --- endpoints from EndpointSlices ----------------------------------------------------------------------------------


def test_a_version_service_reaches_its_pods_on_the_container_port() -> None:
    slices = [version_slice("1.0.0", ("10.244.0.11", READY), ("10.244.1.12", NOT_READY))]

    found = traffic.slice_endpoints(service("1.0.0"), slices)

    # targetPort http is the server's port 9000, as the controller resolved it, not the Service port 8080.
    assert found == [ready("10.244.0.11"), Endpoint("10.244.1.12", 9000, False, False, False)]


def test_services_with_and_without_a_selector_both_read_their_slices() -> None:
    objects = traffic.Snapshot(
        {("ml", STABLE): service("1.0.0"), ("ml", CANARY): selectorless("1.1.0")},
        {
            "ml": [
                version_slice("1.0.0", ("10.244.0.11", READY)),
                endpoint_slice(selectorless("1.1.0"), ("10.244.1.21", READY)),
            ]
        },
    )

    assert objects.endpoints(ServiceRef("ml", STABLE)) == [ready("10.244.0.11")]
    assert objects.endpoints(ServiceRef("ml", CANARY)) == [ready("10.244.1.21")]
    assert objects.endpoints(ServiceRef("ml", "absent")) == []
    assert objects.endpoints(ServiceRef("other", STABLE)) == []


def test_a_selector_service_without_slices_has_no_endpoints() -> None:
    # The Pods are no source: until the controller publishes them, kube-proxy has nothing to send to.
    objects = traffic.Snapshot(
        {("ml", STABLE): service("1.0.0")}, {"ml": [version_slice("1.1.0", ("10.244.0.21", READY))]}
    )

    assert objects.endpoints(ServiceRef("ml", STABLE)) == []


def test_slice_endpoints_ignore_other_services_other_ports_and_fqdn_slices() -> None:
    fqdn = {**endpoint_slice(selectorless("1.0.0"), ("db.example.com", None)), "addressType": "FQDN"}
    slices = [
        version_slice("1.1.0", ("10.244.0.21", READY)),
        endpoint_slice(service("1.0.0"), ("10.244.0.19", READY), port=9090, port_name="metrics", suffix="m4x8q"),
        fqdn,
        version_slice("1.0.0", ("10.244.0.11", READY)),
    ]

    assert traffic.slice_endpoints(service("1.0.0"), slices) == [ready("10.244.0.11")]


@pytest.mark.parametrize(
    ("service_port", "slice_port", "found"),
    [
        ({"name": "http", "port": 8080}, {"name": "http", "port": 9000, "protocol": "TCP"}, True),
        ({"name": "http", "port": 8080}, {"name": "http", "port": 9000, "protocol": "UDP"}, False),
        ({"name": "http", "port": 8080, "protocol": "UDP"}, {"name": "http", "port": 9000, "protocol": "UDP"}, True),
        ({"name": "http", "port": 8080}, {"name": "metrics", "port": 9000, "protocol": "TCP"}, False),
        ({"port": 8080}, {"name": "", "port": 9000, "protocol": "TCP"}, True),  # unnamed: the controller writes ""
        ({"port": 8080}, {"port": 9000, "protocol": "TCP"}, False),  # no name at all: kube-proxy ignores the port
        ({"name": "http", "port": 8080}, {"name": "http", "protocol": "TCP"}, False),  # no number: ignored too
        ({"name": "http", "port": 8080}, {"name": "http", "port": 0, "protocol": "TCP"}, False),
    ],
)
def test_a_slice_port_belongs_to_the_service_port_of_its_name_and_protocol(
    service_port: Body, slice_port: Body, found: bool
) -> None:
    one_port = selectorless("1.0.0")
    one_port["spec"]["ports"] = [service_port]
    item = endpoint_slice(one_port, ("10.244.0.11", READY), port=0, port_name="")
    item["ports"] = [slice_port]

    assert traffic.slice_endpoints(one_port, [item]) == ([ready("10.244.0.11")] if found else [])


@pytest.mark.parametrize(
    ("first", "second", "kept"),
    [
        # Moving between slices, both records current for a moment: the readier counts, in either order.
        (READY, NOT_READY, READY),
        (NOT_READY, READY, READY),
        # A new Pod with a terminating one's IP: the one not terminating counts, ready or not (as in kube-proxy).
        (TERMINATING, NOT_READY, NOT_READY),
        (NOT_READY, TERMINATING, NOT_READY),
    ],
)
def test_an_endpoint_in_two_slices_counts_once(
    first: dict[str, bool], second: dict[str, bool], kept: dict[str, bool]
) -> None:
    slices = [
        version_slice("1.0.0", ("10.244.0.11", first)),
        endpoint_slice(service("1.0.0"), ("10.244.0.11", second), suffix="b9w3z"),
    ]

    (found,) = traffic.slice_endpoints(service("1.0.0"), slices)

    assert (found.ready, found.serving, found.terminating) == (kept["ready"], kept["serving"], kept["terminating"])


def test_slice_endpoint_conditions_left_out_read_as_the_api_says() -> None:
    # ready and serving true, terminating false, each on its own (a writer other than the controller may leave
    # any out): kube-proxy's reading.
    slices = [
        endpoint_slice(
            selectorless("1.0.0"),
            ("10.244.0.11", None),
            ("10.244.0.12", {"ready": False}),
            ("10.244.0.13", {"ready": False, "terminating": True}),
        )
    ]

    found = traffic.slice_endpoints(selectorless("1.0.0"), slices)

    assert found == [
        ready("10.244.0.11"),
        Endpoint("10.244.0.12", 9000, False, True, False),
        Endpoint("10.244.0.13", 9000, False, True, True),
    ]
    assert traffic.eligible(found) == [ready("10.244.0.11")]


def test_slice_endpoints_keep_the_terminating_conditions() -> None:
    slices = [version_slice("1.0.0", ("10.244.0.11", STOPPING), ("10.244.1.12", TERMINATING))]

    found = traffic.slice_endpoints(service("1.0.0"), slices)

    assert found == [
        Endpoint("10.244.0.11", 9000, False, False, True),
        Endpoint("10.244.1.12", 9000, False, True, True),
    ]
    assert traffic.eligible(found) == [Endpoint("10.244.1.12", 9000, False, True, True)]


@pytest.mark.parametrize(
    ("port", "target"),
    [(None, 9000), (8080, 9000), ("http", 9000), (9999, None), ("grpc", 8081), (8081, 8081), ("metrics", None)],
)
def test_slice_endpoints_of_a_service_port(port: int | str | None, target: int | None) -> None:
    slices = [version_slice("1.0.0", ("10.244.0.11", READY))]

    found = traffic.slice_endpoints(service("1.0.0"), slices, port)
    assert found == ([ready("10.244.0.11", target)] if target else [])


def test_a_service_with_several_ports_is_reached_on_http_without_a_port() -> None:
    two_ports = service("1.0.0")
    two_ports["spec"]["ports"] = [{"name": "metrics", "port": 9090, "targetPort": 9090}, *two_ports["spec"]["ports"]]
    slices = [
        version_slice("1.0.0", ("10.244.0.11", READY)),
        endpoint_slice(service("1.0.0"), ("10.244.0.11", READY), port=9090, port_name="metrics", suffix="m4x8q"),
    ]

    assert traffic.slice_endpoints(two_ports, slices) == [ready("10.244.0.11")]
    assert traffic.slice_endpoints(two_ports, slices, "metrics") == [ready("10.244.0.11", 9090)]


# --- which endpoints take traffic ------------------------------------------------------------------------------------


A, B = ready("10.244.0.2"), ready("10.244.1.3")
UNREADY = Endpoint("10.244.0.4", 9000, False, False, False)
DRAINING = Endpoint("10.244.1.5", 9000, False, True, True)
GONE = Endpoint("10.244.0.6", 9000, False, False, True)
ODD = Endpoint("10.244.1.7", 9000, False, True, False)  # serving without terminating: still not ready


@pytest.mark.parametrize(
    ("candidates", "chosen"),
    [
        ([A, UNREADY, B], [A, B]),
        ([UNREADY, DRAINING, A], [A]),  # terminating endpoints only when none is ready
        ([UNREADY, DRAINING, GONE], [DRAINING]),  # kube-proxy's fallback: serving and terminating
        ([UNREADY, GONE], []),
        ([ODD], []),
        ([], []),
    ],
)
def test_eligible(candidates: list[Endpoint], chosen: list[Endpoint]) -> None:
    assert traffic.eligible(candidates) == chosen


# --- choices ---------------------------------------------------------------------------------------------------------


def share(values: list[Any], value: Any) -> float:
    return values.count(value) / len(values)


def test_weighted_index_at_90_10() -> None:
    rng = random.Random(1)

    draws = [traffic.weighted_index([90, 10], rng) for _ in range(DRAWS)]

    assert share(draws, 0) == pytest.approx(0.9, abs=TOLERANCE)
    assert share(draws, 1) == pytest.approx(0.1, abs=TOLERANCE)


def test_weight_zero_is_never_chosen() -> None:
    rng = random.Random(2)

    draws = {traffic.weighted_index([0, 5, 0, 5], rng) for _ in range(1000)}

    assert draws == {1, 3}
    assert traffic.weighted_index([0, 0], rng) is None
    assert traffic.weighted_index([], rng) is None


def test_mirror_hit_at_25_percent() -> None:
    rng = random.Random(3)

    hits = [traffic.mirror_hit(25, rng) for _ in range(DRAWS)]

    assert share(hits, True) == pytest.approx(0.25, abs=TOLERANCE)
    assert not any(traffic.mirror_hit(0, rng) for _ in range(1000))
    assert all(traffic.mirror_hit(100, rng) for _ in range(1000))


def table_of(route: Body, *slices: Body, services: tuple[str, ...] = ("1.0.0", "1.1.0", "2.0.0")) -> Table:
    parsed = traffic.httproute_route(route, PATH)
    known = {("ml", child_name("fraud", v)): service(v) for v in services}
    return traffic.build_table(parsed, "ml", traffic.Snapshot(known, {"ml": list(slices)}))


def test_picks_at_90_10_through_an_httproute() -> None:
    table = table_of(
        httproute({"1.0.0": 90, "1.1.0": 10}),
        version_slice("1.0.0", ("10.244.0.11", READY), ("10.244.1.12", NOT_READY), ("10.244.1.13", READY)),
        version_slice("1.1.0", ("10.244.0.21", READY), ("10.244.1.22", TERMINATING)),
    )
    rng = random.Random(4)

    picks = [table.pick(rng) for _ in range(DRAWS)]

    assert share([p.backend for p in picks], STABLE) == pytest.approx(0.9, abs=TOLERANCE)
    addresses = {p.endpoint.address for p in picks if p.endpoint}
    assert addresses == {"10.244.0.11", "10.244.1.13", "10.244.0.21"}  # neither the not-ready nor the terminating
    assert all(p.error is None and p.mirrors == () for p in picks)


def test_picks_fall_back_to_terminating_endpoints() -> None:
    table = table_of(
        httproute({"1.0.0": 100}),
        version_slice("1.0.0", ("10.244.0.11", STOPPING), ("10.244.1.12", TERMINATING)),
        version_slice("1.1.0", ("10.244.0.21", READY)),  # ready, but of another Service
    )
    rng = random.Random(5)

    assert {table.pick(rng).endpoint for _ in range(100)} == {Endpoint("10.244.1.12", 9000, False, True, True)}


def test_an_unknown_service_has_no_endpoints() -> None:
    table = table_of(httproute({"1.0.0": 100}), version_slice("1.0.0", ("10.244.0.11", READY)), services=())

    assert table.pick(random.Random(6)) == Pick(STABLE, None, traffic.NO_ENDPOINTS)


def test_no_weight_no_route() -> None:
    all_zero = table_of(httproute({"1.0.0": 0}), version_slice("1.0.0", ("10.244.0.11", READY)))
    no_route = traffic.build_table(None, "ml", traffic.Snapshot())

    assert all_zero.pick(random.Random(7)) == Pick(None, None, traffic.NO_ENDPOINTS)
    assert no_route.pick(random.Random(7)) == Pick(None, None, traffic.NO_ROUTE)


def test_mirror_at_25_percent_through_an_httproute() -> None:
    table = table_of(
        httproute({"1.0.0": 100}, mirror=("2.0.0", 25)),
        version_slice("1.0.0", ("10.244.0.11", READY)),
        version_slice("2.0.0", ("10.244.1.31", READY)),
    )
    rng = random.Random(8)

    picks = [table.pick(rng) for _ in range(DRAWS)]

    assert share([p.mirrors for p in picks], ((SHADOW, ready("10.244.1.31")),)) == pytest.approx(0.25, abs=TOLERANCE)
    assert {p.backend for p in picks} == {STABLE}


def test_a_mirror_without_endpoints_is_picked_without_one() -> None:
    table = table_of(httproute({"1.0.0": 100}, mirror=("2.0.0", 100)), version_slice("1.0.0", ("10.244.0.11", READY)))

    assert table.pick(random.Random(9)) == Pick(STABLE, ready("10.244.0.11"), None, ((SHADOW, None),))


def test_a_backend_own_mirror_copies_only_the_requests_it_takes() -> None:
    mirror = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": SHADOW, "port": 8080}}}
    route = httproute({"1.0.0": 50, "1.1.0": 50})
    route["spec"]["rules"][0]["backendRefs"][1]["filters"] = [mirror]
    table = table_of(
        route,
        version_slice("1.0.0", ("10.244.0.11", READY)),
        version_slice("1.1.0", ("10.244.0.21", READY)),
        version_slice("2.0.0", ("10.244.1.31", READY)),
    )
    rng = random.Random(13)

    picks = [table.pick(rng) for _ in range(1000)]

    assert {(p.backend, p.mirrors) for p in picks} == {(STABLE, ()), (CANARY, ((SHADOW, ready("10.244.1.31")),))}


def test_a_backend_outside_the_route_namespace_is_named_with_it() -> None:
    route = traffic.Route((Backend(ServiceRef("other", "a", None), 1),))

    table = traffic.build_table(route, "ml", traffic.Snapshot())

    assert table.pick(random.Random(10)).backend == "other/a"


# --- statistics ------------------------------------------------------------------------------------------------------


HUNDRED = [float(i) for i in range(1, 101)]


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([], 0.5, None), ([3.0], 0.99, 3.0), ([4.0, 1.0, 3.0, 2.0], 0.5, 2.0), (HUNDRED, 0.99, 99.0), (HUNDRED, 1, 100.0)],
)
def test_percentile_nearest_rank(values: list[float], q: float, expected: float | None) -> None:
    assert traffic.percentile(values, q) == expected


def test_report_counts_answers_by_version_code_and_error() -> None:
    report = Report()
    for outcome in [
        Outcome("svc-a", "1.0.0", 200, latency=0.010),
        Outcome("svc-a", "1.0.0", 200, latency=0.020),
        Outcome("svc-b", "1.1.0", 200, latency=0.030),
        Outcome("svc-b", None, 503, latency=0.040),  # an error answer names no version: its backend stands in
        Outcome("svc-b", error=traffic.REFUSED),
        Outcome(None, error=traffic.NO_ROUTE),
    ]:
        report.record(outcome)
    report.record_mirror(Outcome("svc-s", "2.0.0", 200))
    report.record_mirror(Outcome("svc-s", error=traffic.TIMEOUT))

    assert (report.total, report.ok, report.failed) == (6, 3, 3)
    assert report.by_version == {"1.0.0": 2, "1.1.0": 1, "svc-b": 1}
    assert report.by_code == {200: 3, 503: 1}
    assert report.errors == {"http 503": 1, traffic.REFUSED: 1, traffic.NO_ROUTE: 1}
    assert report.by_backend == {"svc-a": 2, "svc-b": 3}
    assert report.mirrored_by_version == {"2.0.0": 1}
    assert report.mirror_errors == {traffic.TIMEOUT: 1}
    assert report.split() == {"1.0.0": 0.5, "1.1.0": 0.25, "svc-b": 0.25}
    assert sorted(report.latencies) == [0.010, 0.020, 0.030, 0.040]


def test_summary_is_json_with_latencies_in_milliseconds() -> None:
    report = Report(elapsed=2.0, cpu_seconds=0.5)
    for latency in (0.001, 0.002, 0.003, 0.004):
        report.record(Outcome("svc-a", "1", 200, latency=latency))

    summary = json.loads(json.dumps(report.summary()))

    assert summary["latency_ms"] == {"p50": 2.0, "p90": 4.0, "p99": 4.0, "max": 4.0}
    assert summary["by_code"] == {"200": 4}
    assert summary["split"] == {"1": 1.0}
    assert (summary["total"], summary["failed"], summary["rate"], summary["cpu_s"]) == (4, 0, 2.0, 0.5)


def test_an_empty_report() -> None:
    summary = Report().summary()

    assert summary["split"] == {}
    assert summary["latency_ms"] == {"p50": None, "p90": None, "p99": None, "max": None}
    assert summary["rate"] is None


# --- the view follows the API server ---------------------------------------------------------------------------------


class NotServed(Exception):
    class response:
        status_code = 404


class Listing:
    resourceVersion = "1"

    def __init__(self, items: list[Body]) -> None:
        self._items = items

    async def _each(self) -> AsyncIterator[Body]:
        for item in self._items:
            yield item

    def __aiter__(self) -> AsyncIterator[Body]:
        return self._each()


class FakeClient:
    """Lists and watches plain bodies by (kind, namespace); ``put`` and ``delete`` send the watch events."""

    def __init__(self, *served: str) -> None:
        self.served = {"Service", "EndpointSlice", *served}
        self.objects: dict[tuple[str, str], dict[str, Body]] = {}
        self.watchers: dict[tuple[str, str], list[asyncio.Queue[tuple[str, Body] | Exception]]] = {}
        self.lists = 0

    def put(self, kind: str, body: Body) -> None:
        key = (kind, body["metadata"]["namespace"])
        self.objects.setdefault(key, {})[body["metadata"]["name"]] = body
        for queue in self.watchers.get(key, []):
            queue.put_nowait(("MODIFIED", body))

    def delete(self, kind: str, body: Body) -> None:
        key = (kind, body["metadata"]["namespace"])
        self.objects.get(key, {}).pop(body["metadata"]["name"], None)
        for queue in self.watchers.get(key, []):
            queue.put_nowait(("DELETED", body))

    def break_watches(self) -> None:
        for queues in self.watchers.values():
            for queue in queues:
                queue.put_nowait(RuntimeError("watch closed"))

    def list(self, res: Any, *, namespace: str) -> Listing:
        if res.__name__ not in self.served:
            raise NotServed(res.__name__)
        self.lists += 1
        return Listing(list(self.objects.get((res.__name__, namespace), {}).values()))

    async def watch(self, res: Any, *, namespace: str, resource_version: str) -> AsyncIterator[tuple[str, Body]]:
        queue: asyncio.Queue[tuple[str, Body] | Exception] = asyncio.Queue()
        self.watchers.setdefault((res.__name__, namespace), []).append(queue)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.watchers[(res.__name__, namespace)].remove(queue)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def started(client: FakeClient, entry: str) -> traffic.View:
    return traffic.View(cast(Any, client), "ml", traffic.parse_entry(entry), PATH)


def fake_cluster() -> FakeClient:
    client = FakeClient("HTTPRoute")
    client.put("HTTPRoute", httproute({"1.0.0": 100}))
    for version in ("1.0.0", "1.1.0"):
        client.put("Service", service(version))
    client.put("EndpointSlice", version_slice("1.0.0", ("10.244.0.11", READY)))
    client.put("EndpointSlice", version_slice("1.1.0", ("10.244.1.21", READY)))
    return client


def backends(table: Table) -> dict[str, int]:
    return {target.name: weight for target, weight, _ in table.backends}


def test_the_view_follows_a_weight_change() -> None:
    async def run() -> None:
        client = fake_cluster()
        async with started(client, "httproute/fraud") as view:
            assert backends(view.table()) == {STABLE: 100}

            client.put("HTTPRoute", httproute({"1.0.0": 80, "1.1.0": 20}))
            await settle()

            assert backends(view.table()) == {STABLE: 80, CANARY: 20}

    asyncio.run(run())


def test_the_view_watches_a_namespace_new_to_the_route() -> None:
    async def run() -> None:
        client = fake_cluster()
        elsewhere = service("1.0.0")
        elsewhere["metadata"]["namespace"] = "other"
        client.put("Service", elsewhere)
        client.put("EndpointSlice", endpoint_slice(elsewhere, ("10.244.1.91", READY)))
        async with started(client, "httproute/fraud") as view:
            route = httproute({"1.0.0": 100})
            route["spec"]["rules"][0]["backendRefs"][0]["namespace"] = "other"
            client.put("HTTPRoute", route)
            await settle()
            view.table()  # sees the namespace, starts watching it
            await settle()

            assert view.table().backends[0][0] == Target(f"other/{STABLE}", (ready("10.244.1.91"),))

    asyncio.run(run())


def test_the_view_follows_a_rolling_update() -> None:
    async def run() -> None:
        client = fake_cluster()
        async with started(client, "service/" + STABLE) as view:
            # The controller rewrites the Service's slice: the old Pod going (still serving), the new one loading.
            client.put(
                "EndpointSlice", version_slice("1.0.0", ("10.244.0.11", TERMINATING), ("10.244.1.12", NOT_READY))
            )
            await settle()
            assert view.table().backends[0][0].endpoints == (Endpoint("10.244.0.11", 9000, False, True, True),)

            client.put("EndpointSlice", version_slice("1.0.0", ("10.244.0.11", STOPPING), ("10.244.1.12", READY)))
            await settle()
            assert view.table().backends[0][0].endpoints == (ready("10.244.1.12"),)

            client.put("EndpointSlice", version_slice("1.0.0"))  # scaled to zero: the slice stays, empty
            await settle()
            assert view.table().pick(random.Random(14)) == Pick(STABLE, None, traffic.NO_ENDPOINTS)

            client.put("EndpointSlice", version_slice("1.0.0", ("10.244.0.13", READY)))
            await settle()
            assert view.table().backends[0][0].endpoints == (ready("10.244.0.13"),)
            client.delete("EndpointSlice", version_slice("1.0.0"))  # as the garbage collector does after the Service
            await settle()
            assert view.table().pick(random.Random(15)) == Pick(STABLE, None, traffic.NO_ENDPOINTS)

    asyncio.run(run())


def test_the_view_sees_a_deleted_route_and_lists_again_after_a_broken_watch() -> None:
    async def run() -> None:
        client = fake_cluster()
        async with started(client, "httproute/fraud") as view:
            client.delete("HTTPRoute", httproute({"1.0.0": 100}))
            await settle()
            assert view.table().problem == traffic.NO_ROUTE

            lists = client.lists
            client.objects[("HTTPRoute", "ml")]["fraud"] = httproute({"1.1.0": 100})  # missed by the watch
            client.break_watches()
            await asyncio.sleep(traffic.WATCH_RETRY_SECONDS[0] + 0.1)
            assert client.lists > lists
            assert backends(view.table()) == {CANARY: 100}

    asyncio.run(run())


def test_the_view_refuses_a_kind_the_cluster_does_not_serve() -> None:
    async def run() -> None:
        async with started(FakeClient(), "virtualservice/fraud"):
            pass

    with pytest.raises(RuntimeError, match="cannot list VirtualService"):
        asyncio.run(run())


# --- sending ---------------------------------------------------------------------------------------------------------


class Server:
    """A V2 server on 127.0.0.1 answering every infer with ``version``; counts the requests it got."""

    def __init__(self, version: str, status: int = 200) -> None:
        self.version, self.status, self.requests, self.port = version, status, 0, 0
        self.bodies: list[Any] = []
        self._runner: web.AppRunner | None = None

    async def infer(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.json()
        self.bodies.append(body)
        answer = {"model_name": request.match_info["model"], "model_version": self.version, "outputs": []}
        return web.json_response(answer if self.status == 200 else {"error": "no"}, status=self.status)

    async def __aenter__(self) -> Server:
        app = web.Application()
        app.router.add_post("/v2/models/{model}/infer", self.infer)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


def target(name: str, *ports: int) -> Target:
    return Target(name, tuple(ready("127.0.0.1", port) for port in ports))


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_send_counts_every_request_by_answering_version() -> None:
    async def run() -> Report:
        async with Server("1.0.0") as a, Server("1.1.0") as b:
            table = Table(((target("svc-a", a.port), 3, ()), (target("svc-b", b.port), 1, ())))
            report = await traffic.send(lambda: table, {"inputs": []}, "fraud", Load(1000, count=200, seed=11))
            assert a.requests + b.requests == 200
            return report

    report = asyncio.run(run())

    assert (report.total, report.ok, report.failed) == (200, 200, 0)
    assert report.by_version.keys() == {"1.0.0", "1.1.0"}
    assert report.split()["1.0.0"] == pytest.approx(0.75, abs=0.1)
    assert report.by_backend == {"svc-a": report.by_version["1.0.0"], "svc-b": report.by_version["1.1.0"]}
    assert report.by_code == {200: 200}
    assert len(report.latencies) == 200


def test_send_sends_several_bodies_in_turn(tmp_path: Path) -> None:
    lines = [json.dumps({"inputs": [{"n": i}]}) for i in range(3)]
    (tmp_path / "bodies.jsonl").write_text("\n".join(lines) + "\n")
    bodies = traffic.read_body(f"@{tmp_path / 'bodies.jsonl'}")
    assert bodies == [line.encode() for line in lines]

    async def run() -> list[Any]:
        async with Server("1") as server:
            table = Table(((target("svc", server.port), 1, ()),))
            await traffic.send(lambda: table, bodies, "m", Load(1000, count=7, concurrency=1))
            return server.bodies

    assert [b["inputs"][0]["n"] for b in asyncio.run(run())] == [0, 1, 2, 0, 1, 2, 0]


def test_send_keeps_to_the_schedule() -> None:
    async def run() -> tuple[Report, Report]:
        async with Server("1") as server:
            table = Table(((target("svc", server.port), 1, ()),))
            by_count = await traffic.send(lambda: table, b'{"inputs": []}', "m", Load(100, count=20))
            by_duration = await traffic.send(lambda: table, b'{"inputs": []}', "m", Load(100, duration=0.1))
            return by_count, by_duration

    by_count, by_duration = asyncio.run(run())

    assert by_count.total == 20
    assert by_count.elapsed >= 0.19  # the 20th starts at 0.19 s, not as soon as the 19th is answered
    assert by_duration.total == 10


def test_send_stops_early_when_told_and_answers_what_is_in_flight() -> None:
    async def run() -> Report:
        async with Server("1") as server:
            table = Table(((target("svc", server.port), 1, ()),))
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(0.25, stop.set)
            report = await traffic.send(lambda: table, b'{"inputs": []}', "m", Load(100, duration=30), stop=stop)
            assert server.requests == report.total
            return report

    report = asyncio.run(run())

    # About 25 requests in the quarter second before the stop, none after it, every one answered.
    assert 15 <= report.total <= 35 and report.ok == report.total
    assert report.elapsed < 2


def test_send_counts_failures_by_kind_and_mirrors_apart() -> None:
    refused = closed_port()

    async def run() -> Report:
        async with Server("1") as live, Server("2") as shadow, Server("1", status=500) as broken:
            table = Table(
                (
                    (target("svc-live", live.port), 1, ()),
                    (target("svc-refused", refused), 1, ()),
                    (target("svc-broken", broken.port), 1, ()),
                    (Target("svc-empty", ()), 1, ()),
                ),
                mirrors=((target("svc-shadow", shadow.port), 100.0), (target("svc-gone", refused), 100.0)),
            )
            report = await traffic.send(lambda: table, {"inputs": []}, "m", Load(1000, count=100, seed=12))
            assert shadow.requests == 100
            return report

    report = asyncio.run(run())

    assert report.total == 100
    assert report.ok == report.by_backend["svc-live"] > 0
    assert report.errors == {
        traffic.REFUSED: report.by_backend["svc-refused"],
        "http 500": report.by_backend["svc-broken"],
        traffic.NO_ENDPOINTS: report.by_backend["svc-empty"],
    }
    assert report.by_version == {"1": report.by_backend["svc-live"], "svc-broken": report.by_backend["svc-broken"]}
    assert report.mirrored_by_version == {"2": 100}
    assert report.mirror_errors == {traffic.REFUSED: 100}
    assert report.failed == 100 - report.ok  # failed mirrors fail no request


def test_send_sends_nothing_elsewhere() -> None:
    table = Table(
        ((Target("svc-away", (ready("10.245.0.1"),)), 1, ()),),
        mirrors=((Target("svc-m", (ready("192.168.1.1"),)), 100.0),),
    )

    report = asyncio.run(traffic.send(lambda: table, {"inputs": []}, "m", Load(1000, count=5, request_timeout=0.5)))

    assert report.errors == {traffic.NOT_LOCAL: 5}
    assert report.mirror_errors == {traffic.NOT_LOCAL: 5}
    assert report.latencies == []


def test_send_reaches_an_address_in_a_local_range_and_nothing_outside() -> None:
    # 0.0.0.0 is not on the loopback range, yet a connection to it reaches this machine (Linux takes it for the
    # local host): it stands in for a Pod address, which a unit test cannot bind.
    async def run() -> tuple[Report, Report, int, int]:
        async with Server("1") as server, Server("2") as shadow:
            table = Table(
                ((Target("svc", (ready("0.0.0.0", server.port),)), 1, ()),),
                mirrors=((Target("svc-m", (ready("0.0.0.0", shadow.port),)), 100.0),),
            )
            local = [ipaddress.ip_network("0.0.0.0/32")]
            inside = await traffic.send(lambda: table, {"inputs": []}, "m", Load(1000, count=5), local)
            outside = await traffic.send(lambda: table, {"inputs": []}, "m", Load(1000, count=5))
            return inside, outside, server.requests, shadow.requests

    inside, outside, requests, mirrored = asyncio.run(run())

    assert (inside.ok, inside.failed, inside.mirrored_by_version) == (5, 0, {"2": 5})
    assert (outside.errors, outside.mirror_errors) == ({traffic.NOT_LOCAL: 5}, {traffic.NOT_LOCAL: 5})
    assert (requests, mirrored) == (5, 5)


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("127.0.0.1", True),
        ("127.65.3.4", True),
        ("::1", True),
        ("10.244.0.5", True),  # a Pod of node 0
        ("10.244.255.254", True),
        ("10.245.0.1", False),  # just past the Pod range
        ("10.243.255.255", False),
        ("192.168.1.1", False),
        ("::2", False),
        ("db.example.com", False),
    ],
)
def test_loopback_and_the_local_pod_range_are_local(address: str, local: bool) -> None:
    assert traffic.is_local(address, traffic.local_ranges()) is local


def test_mlops_pod_range_overrides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(traffic.POD_RANGE_ENV, "10.96.0.0/12, fd00:10:244::/56")

    ranges = traffic.local_ranges()

    assert ranges == (ipaddress.ip_network("10.96.0.0/12"), ipaddress.ip_network("fd00:10:244::/56"))
    addresses = ["10.100.0.1", "fd00:10:244::7", "10.244.0.5", "127.0.0.1"]
    assert [traffic.is_local(a, ranges) for a in addresses] == [True, True, False, True]


def test_given_ranges_override_mlops_pod_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(traffic.POD_RANGE_ENV, "10.96.0.0/12")

    assert traffic.local_ranges("10.244.0.0/16") == (ipaddress.ip_network("10.244.0.0/16"),)
    assert traffic.local_ranges("") == ()  # loopback alone


@pytest.mark.parametrize("text", ["10.244.0.0/33", "10.244.0.1/16", "pods"])
def test_local_ranges_refuses_what_is_not_a_cidr(text: str) -> None:
    with pytest.raises(ValueError, match="local range"):
        traffic.local_ranges(text)


@pytest.mark.parametrize(
    ("load", "message"),
    [
        ({"rate": 10}, "duration or a count"),
        ({"rate": 0, "count": 1}, "positive"),
        ({"rate": 1, "count": 1, "concurrency": 0}, "positive"),
    ],
)
def test_load_refuses(load: Body, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Load(**load)


# --- command line ----------------------------------------------------------------------------------------------------


def test_read_body_from_text_or_file(tmp_path: Path) -> None:
    (tmp_path / "body.json").write_text('{"inputs": [1]}')

    assert traffic.read_body('{"inputs": []}') == b'{"inputs": []}'
    assert traffic.read_body(f"@{tmp_path / 'body.json'}") == b'{"inputs": [1]}'
    with pytest.raises(ValueError):
        traffic.read_body("{inputs")


ARGS = ["--namespace", "ml", "--entry", "service/a", "--model", "m", "--body", "{}", "--rate", "1"]


def test_parse_args_needs_a_bound() -> None:
    with pytest.raises(SystemExit):
        traffic.parse_args(ARGS)


def test_the_local_range_flag() -> None:
    given = traffic.parse_args([*ARGS, "--count", "1", "--local-range", "10.244.0.0/16,10.96.0.0/12"])
    left_out = traffic.parse_args([*ARGS, "--count", "1"])

    assert given.local_range == (ipaddress.ip_network("10.244.0.0/16"), ipaddress.ip_network("10.96.0.0/12"))
    assert left_out.local_range is None  # MLOPS_POD_RANGE, else the default, when the run starts
    with pytest.raises(SystemExit):
        traffic.parse_args([*ARGS, "--count", "1", "--local-range", "10.244.0.0/33"])


def test_main_runs_with_the_local_range_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    given: list[object] = []

    async def drive(*args: object, local: object = None, **kwargs: object) -> Report:
        given.append(local)
        return Report()

    monkeypatch.setattr(traffic, "drive", drive)

    assert traffic.main([*ARGS, "--count", "1", "--local-range", "10.96.0.0/12"]) == 0
    assert given == [(ipaddress.ip_network("10.96.0.0/12"),)]


def test_a_malformed_pod_range_stops_the_run_before_the_cluster_is_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_client() -> None:
        raise AssertionError("the API server was asked")

    monkeypatch.setenv(traffic.POD_RANGE_ENV, "10.244.0.0/33")
    monkeypatch.setattr(traffic, "AsyncClient", no_client)

    assert traffic.main([*ARGS, "--count", "1"]) == 2
    assert traffic.POD_RANGE_ENV in capsys.readouterr().err
