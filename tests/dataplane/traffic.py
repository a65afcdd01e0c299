"""The traffic driver: sends Open Inference Protocol V2 requests the way the data plane would route them, for tests
and the demo of a cluster that has no kube-proxy, no gateway and no mesh.

The local cluster's Pods get addresses in its Pod range (10.244.0.0/16: node i's podCIDR is 10.244.i.0/24), which
``tests/cluster/up.sh`` makes local to this machine; the Pod runner (``runner.py``) runs a real model server on each
server Pod's IP and container port, and the EndpointSlice controller publishes every Service's endpoints. Nothing
there routes a request to a Service, an HTTPRoute or a VirtualService. This driver does that part, from the API
server's own objects, and no more:

- ``service/<name>[:<port>]`` (kube-proxy): the endpoints of the Service port (the given number or name; else the
  only port, else the one named ``http``, else the first), read from the Service's EndpointSlices as kube-proxy reads
  them, whether the Service has a selector (the EndpointSlice controller writes them) or not (whoever else does):
  the slices labelled ``kubernetes.io/service-name``, the slice port of the Service port's name and protocol (it
  carries the target port), conditions left out read as the API says (ready and serving true, terminating false).
  Ready endpoints take the traffic; when none is ready, endpoints that are serving and terminating do (kube-proxy's
  fallback); with none at all the request fails as ``no endpoints``, the way a refused connection would.
- ``httproute/<name>`` (Gateway API): the rule whose match fits ``POST /v2/models/<model>/infer`` (path and method
  are evaluated; a match with header or query parameter conditions never fits, since the driver sends neither),
  its backendRefs weighted (default 1; weight 0 gets nothing), each a Service resolved as above; RequestMirror
  filters of the rule or of the chosen backendRef copy the request for ``percent`` or ``fraction`` (default 100%).
- ``virtualservice/<name>`` (Istio): the first http route whose match fits, its destinations weighted (a single
  destination takes everything; otherwise a missing weight is 0), ``destination.host`` a Service name, short or
  ``name.namespace.svc.cluster.local``; ``mirror`` with ``mirrorPercentage.value`` (100 when absent) and
  ``mirrors``. Subsets (which need DestinationRules) are refused.

Each request chooses a backend by weight at random, then an endpoint at random, as Envoy does per request (and
kube-proxy per connection: through a Service this is a client that opens a connection per request). A mirrored
copy goes to an endpoint of the mirror's Service; its answer never reaches the caller, it is counted apart per
version, and its failure never fails the request. Not modelled: route timeouts and retries, header rewrites,
session affinity, topology-aware routing, traffic policies.

Requests go only to addresses local to this machine: the loopback range, and the local Pod range (``MLOPS_POD_RANGE``
or ``--local-range``, comma-separated CIDRs, by default 10.244.0.0/16). The driver plays the data plane of the local
cluster only, whose Pods all live here; it never sends to addresses elsewhere, so an endpoint outside these ranges (a
slice written by hand, a cluster made with another Pod range, a KUBECONFIG that names a remote cluster) fails as
``not local``, unsent.

The view is kept current with watches: for the entry's kind, and for Services and EndpointSlices in each namespace
a route refers to, a list and then a watch from the list's resourceVersion, relisted after any watch error (as an
informer does). Every event marks the routing table stale, and the next request rebuilds it, so a rolling update or
a weight change is followed within the API server's event latency (milliseconds) plus the EndpointSlice
controller's, not a polling period.

Requests are sent open loop: the i-th starts at ``i / rate`` seconds, whatever the answers before it, unless
``concurrency`` requests are in flight (then it waits for one to finish, and the report's ``max_lag_ms`` says how
far behind the schedule the driver fell).

    python tests/dataplane/traffic.py --namespace NS --entry service/fraud --model fraud \\
        --body '{"inputs": [...]}' --rate 50 --duration 10 [--count N] [--concurrency 16] [--timeout 5] \\
        [--local-range 10.244.0.0/16]

prints the report's summary as JSON and exits 1 when any request failed (2 when the run could not start); SIGINT or
SIGTERM ends the schedule early, and the requests in flight are answered and reported.
KUBECONFIG selects the cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import functools
import ipaddress
import itertools
import json
import logging
import math
import os
import random
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from lightkube import AsyncClient
from lightkube.generic_resource import create_namespaced_resource

log = logging.getLogger("traffic")

Body = dict[str, Any]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
NO_ROUTE = "no route"
NO_ENDPOINTS = "no endpoints"
REFUSED = "connection refused"
TIMEOUT = "timeout"
NOT_LOCAL = "not local"
POD_RANGE_ENV = "MLOPS_POD_RANGE"
DEFAULT_POD_RANGE = "10.244.0.0/16"
# Below the model server's keep-alive (uvicorn: 5 s): a pooled connection is dropped here before the server can
# close it under a request that is being sent on it.
KEEPALIVE_SECONDS = 3.0
WATCH_RETRY_SECONDS = (0.2, 2.0)
SYNC_SECONDS = 30.0
# Mirror copies in flight at most (beyond it a copy is dropped and counted so): a mirror that hangs until its
# timeout must not pile up sockets without bound, as a proxy's circuit breaker would not let it either.
MIRRORS_IN_FLIGHT = 256
ENTRY_KINDS = ("service", "httproute", "virtualservice")


# --- entry points and routes -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """Where requests enter: ``kind`` is one of ENTRY_KINDS; ``port`` only for a Service (number or name)."""

    kind: str
    name: str
    port: int | str | None = None


def parse_entry(text: str) -> Entry:
    """``service/<name>[:<port>]``, ``httproute/<name>`` or ``virtualservice/<name>``; ValueError otherwise."""
    kind, _, name = text.partition("/")
    kind = kind.lower()
    if kind not in ENTRY_KINDS or not name or "/" in name:
        raise ValueError(f"entry {text!r}: expected one of {', '.join(k + '/<name>' for k in ENTRY_KINDS)}")
    port: int | str | None = None
    if ":" in name:
        if kind != "service":
            raise ValueError(f"entry {text!r}: only a Service entry takes a port")
        name, _, given = name.partition(":")
        port = int(given) if given.isdigit() else given
    return Entry(kind, name, port)


@dataclass(frozen=True)
class ServiceRef:
    """A Service and the Service port to reach it on (number or name; None: see ``service_port``)."""

    namespace: str
    name: str
    port: int | str | None = None


@dataclass(frozen=True)
class Mirror:
    target: ServiceRef
    percent: float
    """Share of the requests copied, 0 to 100."""


@dataclass(frozen=True)
class Backend:
    target: ServiceRef
    weight: int
    mirrors: tuple[Mirror, ...] = ()
    """Mirrors of this backend only (a Gateway API backendRef's own filters)."""


@dataclass(frozen=True)
class Route:
    """What a matched route does with a request: a weighted choice of backends, and mirrors of every request."""

    backends: tuple[Backend, ...]
    mirrors: tuple[Mirror, ...] = ()


def service_route(namespace: str, name: str, port: int | str | None = None) -> Route:
    """The route of a ``service/<name>`` entry: the Service alone."""
    return Route((Backend(ServiceRef(namespace, name, port), 1),))


def _path_prefix(prefix: str, path: str) -> bool:
    # Gateway API prefixes match whole path elements: /v2 matches /v2/models but not /v2x.
    trimmed = prefix.rstrip("/")
    return not trimmed or path == trimmed or path.startswith(trimmed + "/")


def _gateway_match(match: Body, path: str, method: str) -> tuple[int, int, int] | None:
    """The precedence of a fitting HTTPRouteMatch (larger wins), None when it does not fit."""
    if match.get("headers") or match.get("queryParams"):
        return None
    if match.get("method") and match["method"] != method:
        return None
    spec = match.get("path") or {}
    kind, value = spec.get("type", "PathPrefix"), spec.get("value", "/")
    if kind == "Exact":
        fits, exact = path == value, 1
    elif kind == "PathPrefix":
        fits, exact = _path_prefix(value, path), 0
    elif kind == "RegularExpression":
        fits, exact = re.fullmatch(value, path) is not None, 0
    else:
        raise ValueError(f"HTTPRoute path match type {kind!r} is not supported")
    return (exact, len(value), 1 if match.get("method") else 0) if fits else None


def _gateway_ref(ref: Body, namespace: str) -> ServiceRef:
    if ref.get("group", "") not in ("", "core") or ref.get("kind", "Service") != "Service":
        raise ValueError(f"backendRef {ref.get('group')}/{ref.get('kind')} is not a Service")
    return ServiceRef(ref.get("namespace") or namespace, ref["name"], ref.get("port"))


def mirror_percent(request_mirror: Body) -> float:
    """A Gateway API RequestMirror filter's share: ``percent``, or ``fraction`` (denominator 100 by default), or
    100 when neither is given."""
    if request_mirror.get("percent") is not None:
        return float(request_mirror["percent"])
    fraction = request_mirror.get("fraction")
    if fraction is not None:
        return 100.0 * float(fraction["numerator"]) / float(fraction.get("denominator", 100))
    return 100.0


def _gateway_mirrors(filters: Iterable[Body] | None, namespace: str) -> tuple[Mirror, ...]:
    mirrors = []
    for item in filters or ():
        if item.get("type") == "RequestMirror":
            spec = item.get("requestMirror") or {}
            mirrors.append(Mirror(_gateway_ref(spec["backendRef"], namespace), mirror_percent(spec)))
    return tuple(mirrors)


def httproute_route(route: Body, path: str, method: str = "POST") -> Route | None:
    """The route of an HTTPRoute (gateway.networking.k8s.io/v1) for one request; None when no rule matches it
    (a Gateway answers 404)."""
    namespace = route["metadata"]["namespace"]
    best: tuple[tuple[int, int, int], int] | None = None
    rules = route.get("spec", {}).get("rules") or []
    for index, rule in enumerate(rules):
        for match in rule.get("matches") or [{}]:
            rank = _gateway_match(match, path, method)
            # Equal precedence: the earlier rule wins.
            if rank is not None and (best is None or rank > best[0]):
                best = (rank, index)
    if best is None:
        return None
    rule = rules[best[1]]
    backends = tuple(
        Backend(
            _gateway_ref(ref, namespace),
            int(ref.get("weight", 1)),
            _gateway_mirrors(ref.get("filters"), namespace),
        )
        for ref in rule.get("backendRefs") or []
    )
    return Route(backends, _gateway_mirrors(rule.get("filters"), namespace))


def _string_match(spec: Body, value: str) -> bool:
    if "exact" in spec:
        return bool(value == spec["exact"])
    if "prefix" in spec:
        return value.startswith(spec["prefix"])
    if "regex" in spec:
        return re.fullmatch(spec["regex"], value) is not None
    return True


def _istio_match(match: Body, path: str, method: str) -> bool:
    if set(match) - {"name", "uri", "method", "ignoreUriCase"}:
        return False  # headers, query parameters, ports, source labels: not evaluated, so never fits
    return _string_match(match.get("uri") or {}, path) and _string_match(match.get("method") or {}, method)


def _istio_ref(destination: Body, namespace: str) -> ServiceRef:
    if destination.get("subset"):
        raise ValueError(f"destination subset {destination['subset']!r} needs a DestinationRule: not supported")
    # reviews, reviews.ns, reviews.ns.svc.cluster.local: a short name is in the VirtualService's namespace.
    name, _, rest = destination["host"].partition(".")
    port = (destination.get("port") or {}).get("number")
    return ServiceRef(rest.partition(".")[0] or namespace, name, port)


def virtualservice_route(service: Body, path: str, method: str = "POST") -> Route | None:
    """The route of a VirtualService (networking.istio.io) for one request: its first http route that matches;
    None when none does."""
    namespace = service["metadata"]["namespace"]
    for http in service.get("spec", {}).get("http") or []:
        if http.get("match") and not any(_istio_match(m, path, method) for m in http["match"]):
            continue
        if "route" not in http:
            raise ValueError("an http route without destinations (redirect, direct response) is not supported")
        destinations = http["route"]
        backends = tuple(
            # One destination takes everything, whatever its weight says.
            Backend(_istio_ref(d["destination"], namespace), 100 if len(destinations) == 1 else int(d.get("weight", 0)))
            for d in destinations
        )
        mirrors = []
        if http.get("mirror"):
            percent = (http.get("mirrorPercentage") or {}).get("value", http.get("mirrorPercent", 100))
            mirrors.append(Mirror(_istio_ref(http["mirror"], namespace), float(percent)))
        for extra in http.get("mirrors") or []:
            percent = (extra.get("percentage") or {}).get("value", 100)
            mirrors.append(Mirror(_istio_ref(extra["destination"], namespace), float(percent)))
        return Route(backends, tuple(mirrors))
    return None


# --- endpoints -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int
    ready: bool
    serving: bool
    terminating: bool


def service_port(service: Body, port: int | str | None) -> Body | None:
    """The Service port a reference means: by number or by name; without one, the only port, else the one named
    ``http``, else the first. None when the Service has no such port."""
    ports: list[Body] = service.get("spec", {}).get("ports") or []
    if port is None:
        if len(ports) > 1:
            return next((p for p in ports if p.get("name") == "http"), ports[0])
        return ports[0] if ports else None
    key = "port" if isinstance(port, int) else "name"
    return next((p for p in ports if p.get(key) == port), None)


def slice_endpoints(service: Body, slices: Iterable[Body], port: int | str | None = None) -> list[Endpoint]:
    """Every endpoint of a Service port in its EndpointSlices, as kube-proxy reads them: the IPv4 and IPv6 slices
    labelled with the Service's name, in each the port of the Service port's name and protocol (a port without a
    name or a number is ignored), conditions left out read as ready and serving, not terminating. An address listed
    twice (slices overlap while the controller moves an endpoint, or a new Pod reuses a terminating one's IP) counts
    once: the record that is not terminating, else the readier. None for an absent port."""
    chosen = service_port(service, port)
    if chosen is None:
        return []
    name, protocol = chosen.get("name") or "", chosen.get("protocol", "TCP")
    found: dict[tuple[str, int], Endpoint] = {}
    for item in slices:
        if (item.get("metadata", {}).get("labels") or {}).get(SERVICE_NAME_LABEL) != service["metadata"]["name"]:
            continue
        if item.get("addressType") not in ("IPv4", "IPv6"):
            continue  # FQDN slices: kube-proxy ignores them
        number = next(
            (
                int(p["port"])
                for p in item.get("ports") or []
                if p.get("name") == name and p.get("protocol", "TCP") == protocol and p.get("port")
            ),
            None,
        )
        if number is None:
            continue
        for entry in item.get("endpoints") or []:
            addresses = entry.get("addresses") or []
            if not addresses:
                continue
            conditions = entry.get("conditions") or {}
            endpoint = Endpoint(
                addresses[0],
                number,
                ready=conditions.get("ready") is not False,
                serving=conditions.get("serving") is not False,
                terminating=conditions.get("terminating") is True,
            )
            seen = found.get((endpoint.address, number))
            if seen is None or _precedence(endpoint) > _precedence(seen):
                found[(endpoint.address, number)] = endpoint
    return list(found.values())


def _precedence(endpoint: Endpoint) -> tuple[bool, bool, bool]:
    return (not endpoint.terminating, endpoint.ready, endpoint.serving)


@dataclass(frozen=True)
class Snapshot:
    """The objects the endpoints come from: Services by (namespace, name), EndpointSlices by namespace."""

    services: Mapping[tuple[str, str], Body] = field(default_factory=dict)
    slices: Mapping[str, Sequence[Body]] = field(default_factory=dict)

    def endpoints(self, ref: ServiceRef) -> list[Endpoint]:
        """The endpoints of a Service port in its EndpointSlices, with a selector or without; none for an absent
        Service (kube-proxy programs nothing for slices without their Service)."""
        service = self.services.get((ref.namespace, ref.name))
        if service is None:
            return []
        return slice_endpoints(service, self.slices.get(ref.namespace, ()), ref.port)


def eligible(candidates: Sequence[Endpoint]) -> list[Endpoint]:
    """The endpoints that get traffic: the ready ones; when there are none, the serving and terminating ones."""
    ready = [e for e in candidates if e.ready]
    return ready or [e for e in candidates if e.serving and e.terminating]


# --- choices ---------------------------------------------------------------------------------------------------------


def weighted_index(weights: Sequence[int], rng: random.Random) -> int | None:
    """An index chosen with probability proportional to its weight (weights <= 0 are never chosen); None when no
    weight is positive."""
    total = sum(w for w in weights if w > 0)
    if total <= 0:
        return None
    left = rng.randrange(total)
    for index, weight in enumerate(weights):
        if weight > 0:
            if left < weight:
                return index
            left -= weight
    raise AssertionError("unreachable")


def mirror_hit(percent: float, rng: random.Random) -> bool:
    """Whether this request is copied to a mirror taking ``percent`` (0 to 100) of the requests."""
    return percent >= 100 or (percent > 0 and rng.random() * 100 < percent)


@dataclass(frozen=True)
class Target:
    name: str
    """The Service's name (``namespace/name`` outside the route's namespace): what reports call a backend."""
    endpoints: tuple[Endpoint, ...]
    """Its eligible endpoints."""

    def endpoint(self, rng: random.Random) -> Endpoint | None:
        return rng.choice(self.endpoints) if self.endpoints else None


@dataclass(frozen=True)
class Pick:
    """Where one request goes. ``endpoint`` None: it fails at the proxy, with ``error``."""

    backend: str | None
    endpoint: Endpoint | None
    error: str | None = None
    mirrors: tuple[tuple[str, Endpoint | None], ...] = ()


@dataclass(frozen=True)
class Table:
    """A route with its Services resolved to eligible endpoints. ``problem`` set: every request fails with it."""

    backends: tuple[tuple[Target, int, tuple[tuple[Target, float], ...]], ...] = ()
    """(target, weight, the backend's own mirrors) per backend."""
    mirrors: tuple[tuple[Target, float], ...] = ()
    problem: str | None = None

    def pick(self, rng: random.Random) -> Pick:
        if self.problem is not None:
            return Pick(None, None, self.problem)
        index = weighted_index([weight for _, weight, _ in self.backends], rng)
        mirrors = self.mirrors
        if index is None:
            chosen: Target | None = None
        else:
            chosen, _, own = self.backends[index]
            mirrors += own
        copies = tuple((t.name, t.endpoint(rng)) for t, percent in mirrors if mirror_hit(percent, rng))
        if chosen is None:
            return Pick(None, None, NO_ENDPOINTS, copies)
        endpoint = chosen.endpoint(rng)
        return Pick(chosen.name, endpoint, None if endpoint else NO_ENDPOINTS, copies)


def build_table(route: Route | None, namespace: str, objects: Snapshot) -> Table:
    """The table of ``route`` (None: the entry's object is absent or matches no request) over the objects known
    now; ``namespace`` is the route's own."""
    if route is None:
        return Table(problem=NO_ROUTE)

    def target(ref: ServiceRef) -> Target:
        found = objects.endpoints(ref)
        name = ref.name if ref.namespace == namespace else f"{ref.namespace}/{ref.name}"
        return Target(name, tuple(eligible(found)))

    def mirrored(mirrors: tuple[Mirror, ...]) -> tuple[tuple[Target, float], ...]:
        return tuple((target(m.target), m.percent) for m in mirrors)

    return Table(
        tuple((target(b.target), b.weight, mirrored(b.mirrors)) for b in route.backends), mirrored(route.mirrors)
    )


def route_refs(route: Route | None) -> set[ServiceRef]:
    """Every Service a route sends to or mirrors to."""
    if route is None:
        return set()
    refs = {m.target for m in route.mirrors}
    for backend in route.backends:
        refs.add(backend.target)
        refs.update(m.target for m in backend.mirrors)
    return refs


# --- statistics ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One request's result: an HTTP answer (``code``) or an ``error`` kind."""

    backend: str | None
    version: str | None = None
    code: int | None = None
    error: str | None = None
    latency: float = 0.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Report:
    """What a run sent and got back. Mirror copies are counted only in ``mirrored_by_version`` and
    ``mirror_errors``."""

    total: int = 0
    """Requests sent (or failed before sending)."""
    ok: int = 0
    """2xx answers."""
    by_version: Counter[str] = field(default_factory=Counter)
    """HTTP answers by the answer's ``model_version``, else by the backend Service's name (error answers)."""
    by_code: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    """Failed requests by kind: connection refused, timeout, no endpoints, no route, http <code>, ..."""
    by_backend: Counter[str] = field(default_factory=Counter)
    """Requests by the backend Service they were sent to."""
    mirrored_by_version: Counter[str] = field(default_factory=Counter)
    mirror_errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    """Seconds from sending to the whole answer, of every HTTP answer."""
    elapsed: float = 0.0
    cpu_seconds: float = 0.0
    """CPU time of the driver's process over the run."""
    max_lag: float = 0.0
    """Seconds the latest-started request started after its scheduled time."""

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def record(self, outcome: Outcome) -> None:
        self.total += 1
        if outcome.backend is not None:
            self.by_backend[outcome.backend] += 1
        if outcome.code is None:
            self.errors[outcome.error or "unknown"] += 1
            return
        self.by_code[outcome.code] += 1
        self.by_version[outcome.version or outcome.backend or "unknown"] += 1
        self.latencies.append(outcome.latency)
        if 200 <= outcome.code < 300:
            self.ok += 1
        else:
            self.errors[f"http {outcome.code}"] += 1

    def record_mirror(self, outcome: Outcome) -> None:
        if outcome.code is None:
            self.mirror_errors[outcome.error or "unknown"] += 1
            return
        self.mirrored_by_version[outcome.version or outcome.backend or "unknown"] += 1
        if not 200 <= outcome.code < 300:
            self.mirror_errors[f"http {outcome.code}"] += 1

    def split(self) -> dict[str, float]:
        """Each version's share of the answered requests (0 to 1)."""
        answered = sum(self.by_version.values())
        return {v: n / answered for v, n in sorted(self.by_version.items())} if answered else {}

    def summary(self) -> dict[str, Any]:
        """The report as plain JSON values; latencies in milliseconds."""

        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds * 1000, 3)

        return {
            "total": self.total,
            "ok": self.ok,
            "failed": self.failed,
            "split": {v: round(share, 4) for v, share in self.split().items()},
            "by_version": dict(sorted(self.by_version.items())),
            "by_backend": dict(sorted(self.by_backend.items())),
            "by_code": {str(code): n for code, n in sorted(self.by_code.items())},
            "errors": dict(sorted(self.errors.items())),
            "mirrored_by_version": dict(sorted(self.mirrored_by_version.items())),
            "mirror_errors": dict(sorted(self.mirror_errors.items())),
            "latency_ms": {
                "p50": ms(percentile(self.latencies, 0.5)),
                "p90": ms(percentile(self.latencies, 0.9)),
                "p99": ms(percentile(self.latencies, 0.99)),
                "max": ms(max(self.latencies, default=None)),
            },
            "elapsed_s": round(self.elapsed, 3),
            "rate": round(self.total / self.elapsed, 1) if self.elapsed else None,
            "max_lag_ms": ms(self.max_lag),
            "cpu_s": round(self.cpu_seconds, 3),
        }


# --- the live view ---------------------------------------------------------------------------------------------------

# What the data plane reads, as plain bodies (generic resources: no typed models to build and take apart again).
_KINDS = {
    "Service": ("", "v1", "services"),
    "EndpointSlice": ("discovery.k8s.io", "v1", "endpointslices"),
    "HTTPRoute": ("gateway.networking.k8s.io", "v1", "httproutes"),
    "VirtualService": ("networking.istio.io", "v1", "virtualservices"),
}
_ROUTE_KINDS = {"httproute": "HTTPRoute", "virtualservice": "VirtualService"}
_ENDPOINT_KINDS = ("Service", "EndpointSlice")


@functools.cache
def _resource(kind: str) -> Any:
    group, version, plural = _KINDS[kind]
    return create_namespaced_resource(group, version, kind, plural)


def _plain(obj: Any) -> Body:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _status_code(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


class _Informer:
    """The objects of one kind in one namespace by name: a list, then a watch from its resourceVersion; after
    any watch error (410 Gone included) a new list replaces the objects, which stay as they were meanwhile."""

    def __init__(self, client: AsyncClient, kind: str, namespace: str, changed: Callable[[], None]) -> None:
        self.objects: dict[str, Body] = {}
        self.synced = asyncio.Event()
        self.failure: str | None = None
        self._client, self._kind, self._namespace, self._changed = client, kind, namespace, changed
        self._resource = _resource(kind)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        delay = WATCH_RETRY_SECONDS[0]
        while True:
            try:
                listing = self._client.list(self._resource, namespace=self._namespace)
                fresh: dict[str, Body] = {}
                async for obj in listing:
                    body = _plain(obj)
                    fresh[body["metadata"]["name"]] = body
                self.objects = fresh
                self.synced.set()
                self._changed()
                events = self._client.watch(
                    self._resource, namespace=self._namespace, resource_version=listing.resourceVersion
                )
                async for kind, obj in events:
                    body = _plain(obj)
                    if kind == "DELETED":
                        self.objects.pop(body["metadata"]["name"], None)
                    else:
                        self.objects[body["metadata"]["name"]] = body
                    self._changed()
                    delay = WATCH_RETRY_SECONDS[0]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self.synced.is_set() and _status_code(exc) in (403, 404):
                    # A kind the API server does not serve (its CRD is not installed) or lets us read.
                    self.failure = f"cannot list {self._kind} in {self._namespace}: {exc}"
                    self.synced.set()
                    return
                log.info("watch of %s in %s: %s; listing again", self._kind, self._namespace, exc)
                await asyncio.sleep(delay)
                delay = min(2 * delay, WATCH_RETRY_SECONDS[1])


class View:
    """The routing table of one entry point, current with the API server: use ``async with``, then call
    ``table()`` per request (cheap; rebuilt after a change)."""

    def __init__(self, client: AsyncClient, namespace: str, entry: Entry, path: str, method: str = "POST") -> None:
        self.namespace, self.entry, self.path, self.method = namespace, entry, path, method
        self.rebuilds = 0
        self._client = client
        self._informers: dict[tuple[str, str], _Informer] = {}
        self._stale = True
        self._table: Table | None = None

    async def __aenter__(self) -> View:
        try:
            if self.entry.kind in _ROUTE_KINDS:
                await self._synced([self._watch(_ROUTE_KINDS[self.entry.kind], self.namespace)])
            namespaces = {self.namespace} | {ref.namespace for ref in route_refs(self._route())}
            await self._synced([self._watch(kind, ns) for ns in sorted(namespaces) for kind in _ENDPOINT_KINDS])
            self.table()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for informer in self._informers.values():
            informer.task.cancel()
        for informer in self._informers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await informer.task

    def table(self) -> Table:
        """The table as of the latest event seen."""
        if self._stale or self._table is None:
            self._stale = False
            try:
                route = self._route()
            except ValueError as exc:
                if self._table is None:
                    raise
                # As a proxy keeps its last good configuration when a new one is refused.
                log.warning("%s/%s: %s; keeping the previous routes", self.entry.kind, self.entry.name, exc)
                return self._table
            for ref in route_refs(route):
                for kind in _ENDPOINT_KINDS:
                    self._watch(kind, ref.namespace)  # a namespace new to the route: known once listed

            def by_namespace(kind: str) -> dict[str, list[Body]]:
                return {ns: list(i.objects.values()) for (k, ns), i in self._informers.items() if k == kind}

            services = {(ns, body["metadata"]["name"]): body for ns, bodies in by_namespace("Service").items()
                        for body in bodies}  # fmt: skip
            objects = Snapshot(services, by_namespace("EndpointSlice"))
            self._table = build_table(route, self.namespace, objects)
            self.rebuilds += 1
        return self._table

    def _route(self) -> Route | None:
        if self.entry.kind == "service":
            return service_route(self.namespace, self.entry.name, self.entry.port)
        informer = self._informers[(_ROUTE_KINDS[self.entry.kind], self.namespace)]
        found = informer.objects.get(self.entry.name)
        if found is None:
            return None
        if self.entry.kind == "httproute":
            return httproute_route(found, self.path, self.method)
        return virtualservice_route(found, self.path, self.method)

    def _changed(self) -> None:
        self._stale = True

    def _watch(self, kind: str, namespace: str) -> _Informer:
        key = (kind, namespace)
        if key not in self._informers:
            self._informers[key] = _Informer(self._client, kind, namespace, self._changed)
        return self._informers[key]

    @staticmethod
    async def _synced(informers: list[_Informer]) -> None:
        async with asyncio.timeout(SYNC_SECONDS):
            await asyncio.gather(*(i.synced.wait() for i in informers))
        failures = [i.failure for i in informers if i.failure]
        if failures:
            raise RuntimeError("; ".join(failures))


# --- sending ---------------------------------------------------------------------------------------------------------


def _url(endpoint: Endpoint, path: str) -> str:
    host = f"[{endpoint.address}]" if ":" in endpoint.address else endpoint.address
    return f"http://{host}:{endpoint.port}{path}"


def _version(raw: bytes) -> str | None:
    try:
        answer = json.loads(raw)
    except ValueError:
        return None
    version = answer.get("model_version") if isinstance(answer, dict) else None
    return version if isinstance(version, str) else None


def local_ranges(text: str | None = None) -> tuple[Network, ...]:
    """The address ranges local to this machine besides loopback, where the driver may send: the comma-separated
    CIDRs of ``text``, else of MLOPS_POD_RANGE, else 10.244.0.0/16 (the local cluster's Pod range, which
    tests/cluster/up.sh routes to this machine). An empty ``text`` leaves loopback alone. ValueError for a CIDR
    that is not one."""
    source = "local range"
    if text is None:
        text, source = os.environ.get(POD_RANGE_ENV) or DEFAULT_POD_RANGE, POD_RANGE_ENV
    try:
        return tuple(ipaddress.ip_network(part.strip()) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def is_local(address: str, ranges: Iterable[Network]) -> bool:
    """Whether the driver may send to ``address``: on the loopback range or inside one of ``ranges``."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_loopback or any(ip in network for network in ranges)


async def post(
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    path: str,
    payload: bytes,
    backend: str,
    local: Sequence[Network],
) -> Outcome:
    """One POST of ``payload`` to an endpoint, as an Outcome (never raises for a network failure). An endpoint not
    local to this machine (see ``is_local``; ``local`` are the ranges besides loopback) gets nothing and fails as
    ``not local``: the driver plays the local cluster's data plane and must never send to another host."""
    if not is_local(endpoint.address, local):
        return Outcome(backend, error=NOT_LOCAL)
    started = time.perf_counter()
    try:
        async with session.post(_url(endpoint, path), data=payload) as response:
            raw = await response.read()
            return Outcome(backend, _version(raw), response.status, latency=time.perf_counter() - started)
    except TimeoutError:
        return Outcome(backend, error=TIMEOUT)
    except aiohttp.ClientConnectorError as exc:
        refused = exc.os_error.errno == errno.ECONNREFUSED
        return Outcome(backend, error=REFUSED if refused else f"connect error: {exc.os_error.strerror}")
    except aiohttp.ServerDisconnectedError:
        return Outcome(backend, error="disconnected")
    except (aiohttp.ClientError, OSError) as exc:
        return Outcome(backend, error=type(exc).__name__)


@dataclass(frozen=True)
class Load:
    """How requests are sent: open loop at ``rate`` per second, until ``duration`` seconds of schedule or ``count``
    requests (whichever comes first), at most ``concurrency`` in flight (mirror copies apart: at most
    MIRRORS_IN_FLIGHT), each answered within ``request_timeout`` seconds; ``seed`` makes the choices repeatable."""

    rate: float
    duration: float | None = None
    count: int | None = None
    concurrency: int = 16
    request_timeout: float = 5.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.concurrency < 1:
            raise ValueError("rate and concurrency must be positive")
        if self.duration is None and self.count is None:
            raise ValueError("give a duration or a count")


async def send(
    table: Callable[[], Table],
    body: Mapping[str, Any] | bytes | Sequence[bytes],
    model: str,
    load: Load,
    local: Sequence[Network] | None = None,
    stop: asyncio.Event | None = None,
) -> Report:
    """Send inference requests routed by ``table()`` (asked per request) as ``load`` says, and wait for every
    answer. Only addresses on the loopback range or in ``local`` (default: ``local_ranges()``) are sent to. Setting
    ``stop`` ends the schedule early: nothing more is sent, the requests in flight are answered. A sequence of
    bodies is sent in turn (each request the next, its mirrors the same)."""
    ranges = local_ranges() if local is None else tuple(local)
    path = f"/v2/models/{model}/infer"
    if isinstance(body, bytes):
        payloads: list[bytes] = [body]
    elif isinstance(body, Mapping):
        payloads = [json.dumps(body).encode()]
    else:
        payloads = list(body)
    turn = itertools.cycle(payloads)
    rng = random.Random(load.seed)
    report = Report()
    slots = asyncio.Semaphore(load.concurrency)
    mirrors_in_flight = 0
    pending: set[asyncio.Task[None]] = set()

    async def request(pick: Pick, payload: bytes) -> None:
        try:
            if pick.endpoint is None:
                report.record(Outcome(pick.backend, error=pick.error))
            else:
                report.record(await post(session, pick.endpoint, path, payload, pick.backend or "", ranges))
        finally:
            slots.release()

    async def mirror(name: str, endpoint: Endpoint, payload: bytes) -> None:
        nonlocal mirrors_in_flight
        try:
            report.record_mirror(await post(session, endpoint, path, payload, name, ranges))
        finally:
            mirrors_in_flight -= 1

    def start(work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        pending.add(task)
        task.add_done_callback(pending.discard)

    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_SECONDS)
    headers = {"Content-Type": "application/json"}
    client_timeout = aiohttp.ClientTimeout(total=load.request_timeout)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=client_timeout) as session:
        cpu = time.process_time()
        begin = loop.time()
        sent = 0
        stopped = stop or asyncio.Event()
        while (load.count is None or sent < load.count) and (load.duration is None or sent / load.rate < load.duration):
            due = begin + sent / load.rate
            if (wait := due - loop.time()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopped.wait(), wait)
            if stopped.is_set():
                break
            await slots.acquire()
            report.max_lag = max(report.max_lag, loop.time() - due)
            pick = table().pick(rng)
            sent += 1
            payload = next(turn)
            start(request(pick, payload))
            for name, endpoint in pick.mirrors:
                if endpoint is None:
                    report.record_mirror(Outcome(name, error=NO_ENDPOINTS))
                elif mirrors_in_flight >= MIRRORS_IN_FLIGHT:
                    report.mirror_errors["dropped"] += 1  # fire and forget: a slow mirror never slows the requests
                else:
                    mirrors_in_flight += 1
                    start(mirror(name, endpoint, payload))
        while pending:
            await asyncio.gather(*pending)
        report.elapsed = loop.time() - begin
        report.cpu_seconds = time.process_time() - cpu
    return report


async def drive(
    namespace: str,
    entry: str,
    body: Mapping[str, Any] | bytes | Sequence[bytes],
    model: str,
    rate: float,
    duration: float | None = None,
    count: int | None = None,
    concurrency: int = 16,
    request_timeout: float = 5.0,
    seed: int | None = None,
    client: AsyncClient | None = None,
    local: Sequence[Network] | None = None,
    stop: asyncio.Event | None = None,
) -> Report:
    """Send ``POST /v2/models/<model>/infer`` requests with ``body`` into ``entry`` (``service/<name>[:<port>]``,
    ``httproute/<name>``, ``virtualservice/<name>``) of ``namespace``, routed as the data plane would from the
    objects as they are while the run goes on; ``Load`` says how the requests are sent, ``local`` where they may go
    besides loopback (default: ``local_ranges()``). ``client`` defaults to one made from KUBECONFIG, closed at the
    end; setting ``stop`` ends the run early (see ``send``). Raises RuntimeError when the entry's kind cannot be
    read, ValueError for a malformed MLOPS_POD_RANGE."""
    parsed = parse_entry(entry)
    load = Load(rate, duration, count, concurrency, request_timeout, seed)
    ranges = local_ranges() if local is None else tuple(local)
    api = client or AsyncClient()
    try:
        async with View(api, namespace, parsed, f"/v2/models/{model}/infer") as view:
            return await send(view.table, body, model, load, ranges, stop)
    finally:
        if client is None:
            await api.close()


# --- command line ----------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--namespace", required=True)
    parser.add_argument(
        "--entry", required=True, help="service/<name>[:<port>], httproute/<name>, virtualservice/<name>"
    )
    parser.add_argument("--model", required=True, help="the model name in /v2/models/<model>/infer")
    parser.add_argument(
        "--body", required=True, help="the JSON request body, or @FILE; @FILE.jsonl: one body per line, in turn"
    )
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, help="seconds of schedule")
    parser.add_argument("--count", type=int, help="number of requests")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--local-range",
        type=local_ranges,
        help=f"comma-separated CIDRs local to this machine that requests may go to besides loopback (default: "
        f"${POD_RANGE_ENV}, else {DEFAULT_POD_RANGE})",
    )
    args = parser.parse_args(argv)
    if args.duration is None and args.count is None:
        parser.error("give --duration or --count (or both)")
    return args


def read_body(text: str) -> bytes | list[bytes]:
    """The body argument as bytes, checked to be JSON: the text itself, or the file named after ``@``; a file
    named ``*.jsonl`` holds one body per line, sent in turn."""
    if text.startswith("@") and text.endswith(".jsonl"):
        bodies = [line.encode() for line in Path(text[1:]).read_text().splitlines() if line.strip()]
        for raw in bodies:
            json.loads(raw)
        if not bodies:
            raise ValueError(f"{text[1:]} holds no body")
        return bodies
    raw = Path(text[1:]).read_bytes() if text.startswith("@") else text.encode()
    json.loads(raw)
    return raw


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line: 0 when every request got a 2xx answer, 1 when any failed, 2 when the run could not
    start (arguments, an entry whose kind the cluster does not serve, an API server that does not answer)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    async def run() -> Report:
        # SIGINT or SIGTERM ends the run early, with the report of what was sent.
        stop = asyncio.Event()
        for number in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(number, stop.set)
        return await drive(
            args.namespace,
            args.entry,
            read_body(args.body),
            args.model,
            args.rate,
            duration=args.duration,
            count=args.count,
            concurrency=args.concurrency,
            request_timeout=args.timeout,
            seed=args.seed,
            local=args.local_range,
            stop=stop,
        )

    try:
        report = asyncio.run(run())
    except (RuntimeError, ValueError, OSError) as exc:  # TimeoutError is an OSError
        print(f"traffic: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.summary(), indent=2))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
