"""The routing objects the operator writes for the Gateway API and Istio are accepted by their CRDs' schemas, and the
schemas do refuse what they should. Server-side dry runs: nothing is stored."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from support import Kubectl


def httproute() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "model"},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "hostnames": ["model.example.com"],
            "rules": [
                {
                    "name": "predict",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {"name": "model-stable", "port": 8080, "weight": 90},
                        {"name": "model-canary", "port": 8080, "weight": 10},
                    ],
                    "filters": [
                        {
                            "type": "RequestMirror",
                            "requestMirror": {"backendRef": {"name": "model-shadow", "port": 8080}, "percent": 25},
                        },
                    ],
                }
            ],
        },
    }


def virtualservice() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "model"},
        "spec": {
            "hosts": ["model.example.com"],
            "gateways": ["mesh"],
            "http": [
                {
                    "name": "predict",
                    "route": [
                        {"destination": {"host": "model-stable", "port": {"number": 8080}}, "weight": 90},
                        {"destination": {"host": "model-canary", "port": {"number": 8080}}, "weight": 10},
                    ],
                    "mirror": {"host": "model-shadow", "port": {"number": 8080}},
                    "mirrorPercentage": {"value": 12.5},
                }
            ],
        },
    }


def dry_run(kubectl: Kubectl, doc: dict[str, Any]) -> tuple[bool, str]:
    proc = kubectl.run("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(doc), check=False)
    return proc.returncode == 0, proc.stderr


def edited(doc: dict[str, Any], change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    change(doc)
    return doc


def _fraction(doc: dict[str, Any]) -> None:
    mirror = doc["spec"]["rules"][0]["filters"][0]["requestMirror"]
    del mirror["percent"]
    mirror["fraction"] = {"numerator": 1, "denominator": 8}


def _mirrors(doc: dict[str, Any]) -> None:
    http = doc["spec"]["http"][0]
    del http["mirror"], http["mirrorPercentage"]
    http["mirrors"] = [{"destination": {"host": "model-shadow", "subset": "v2"}, "percentage": {"value": 5}}]


ACCEPTED = [
    ("httproute", httproute()),
    ("httproute-fraction", edited(httproute(), _fraction)),
    ("virtualservice", virtualservice()),
    ("virtualservice-v1beta1", edited(virtualservice(), lambda d: d.update(apiVersion="networking.istio.io/v1beta1"))),
    ("virtualservice-mirrors", edited(virtualservice(), _mirrors)),
]


def _set(path: str, value: Any) -> Any:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[last] = value

    return change


# (id, document, a substring of the API server's refusal)
REFUSED = [
    ("weight-negative", edited(httproute(), _set("spec.rules.0.backendRefs.0.weight", -1)), "weight"),
    ("weight-too-big", edited(httproute(), _set("spec.rules.0.backendRefs.0.weight", 1000001)), "weight"),
    ("percent-over-100", edited(httproute(), _set("spec.rules.0.filters.0.requestMirror.percent", 101)), "percent"),
    (
        "percent-and-fraction",
        edited(httproute(), _set("spec.rules.0.filters.0.requestMirror.fraction", {"numerator": 1})),
        "Only one of percent or fraction",
    ),
    (
        "backendref-without-port",
        edited(httproute(), lambda d: d["spec"]["rules"][0]["backendRefs"][0].pop("port")),
        "Must have port for Service reference",
    ),
    (
        "vs-destination-without-host",
        edited(virtualservice(), _set("spec.http.0.route.0.destination", {"subset": "v1"})),
        "host",
    ),
    (
        "vs-mirror-percentage-string",
        edited(virtualservice(), _set("spec.http.0.mirrorPercentage.value", "half")),
        "mirrorPercentage.value",
    ),
]


@pytest.mark.parametrize("doc", [d for _, d in ACCEPTED], ids=[i for i, _ in ACCEPTED])
def test_accepted(kubectl: Kubectl, third_party_crds: list[str], doc: dict[str, Any]) -> None:
    ok, err = dry_run(kubectl, doc)
    assert ok, err


@pytest.mark.parametrize(("doc", "message"), [(d, m) for _, d, m in REFUSED], ids=[i for i, _, _ in REFUSED])
def test_refused(kubectl: Kubectl, third_party_crds: list[str], doc: dict[str, Any], message: str) -> None:
    ok, err = dry_run(kubectl, doc)
    assert not ok
    assert message in err, err
