"""The children of a ModelDeployment: per served version a Deployment, a Service, a HorizontalPodAutoscaler and a
PodDisruptionBudget; one front Service; and the replica split that approximates weights without a mesh.

Every function is pure: it reads only its arguments and returns a complete object for server-side apply, with an
owner reference to the ModelDeployment so that deletion cascades. Names, labels and selectors made here must stay
the same across operator releases: a changed name orphans children, and a Deployment's selector is immutable.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any
from urllib.parse import urlsplit

from mlops_operator import GROUP
from mlops_operator.api.common import LABEL_VALUE_PATTERN, duration_seconds
from mlops_operator.api.modeldeployment import ModelDeploymentSpec, Resources
from mlops_operator.builders.ownership import owner_reference

Body = dict[str, Any]

SERVER = "mlops-server"
MANAGED_BY = "mlops-operator"
SERVICE_PORT = 8080
SERVICE_GRPC_PORT = 8081
"""The Services' ports: http (REST) and, unless spec.server.grpcPort is 0, grpc."""
PROFILE_DIR = "/etc/mlops/profile"
PVC_ROOT = "/mnt/pvc"
# The non-root user of distroless-style images; any non-zero uid passes the restricted Pod Security level.
RUN_AS = 65532
# Termination: the Pod leaves the Services' endpoints while preStop pauses (so proxies stop sending before the server
# stops accepting), then the server drains in-flight requests for GRACEFUL_SECONDS; the kubelet's grace period covers
# both with time to spare for the process to exit.
PRESTOP_SECONDS = 5
GRACEFUL_SECONDS = 20
TERMINATION_GRACE_SECONDS = 30
# Loading a model (download, checksum, deserialisation) can take minutes; the liveness probe waits this long for
# the first ready answer, the same as a Deployment's default progress deadline.
STARTUP_SECONDS = 600
STARTUP_PERIOD_SECONDS = 5

_HASH_CHARS = 8
_MAX_LABEL = 63
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(LABEL_VALUE_PATTERN)


@dataclass(frozen=True)
class Workload:
    """One version to serve, as resolved from its ModelVersion; the builders know nothing else about it."""

    version: str
    """The ModelVersion's spec.version (1.2.0, v3_rc1, 2024-01-31)."""
    role: str
    """stable, canary, preview, shadow or retiring: labels the children's metadata, never the Pods."""
    replicas: int
    """Desired replicas of this version; under autoscaling applied only by a Deployment's first apply (see
    ``deployment``)."""
    source: str
    """The artifact URI; a pvc://<claim>/<path> source gets the claim mounted read-only."""
    format: str
    """sklearn, onnx, xgboost or lightgbm."""
    checksum: str | None = None
    """sha256:<hex> the server verifies before serving."""
    signature: dict[str, Any] | None = None
    """The ModelVersion's signature, passed to the server as JSON."""
    profile_configmap: str | None = None
    """The ConfigMap (key profile.json) holding the version's reference profile, for drift sketches."""
    created: bool = True
    """Whether the version's Deployment exists already (under autoscaling, only a new one is given replicas)."""


def workload(version: str, role: str, replicas: int, spec: Body, status: Body, created: bool = True) -> Workload:
    """The workload of a ModelVersion (its ``spec`` and ``status``) serving as ``role``."""
    profile = status.get("profile") or {}
    return Workload(
        version=version,
        role=role,
        replicas=replicas,
        source=spec["source"],
        format=spec["format"],
        checksum=spec.get("checksum") or (status.get("artifact") or {}).get("sha256"),
        signature=spec.get("signature"),
        profile_configmap=profile.get("configMap") if profile.get("rows") is not None else None,
        created=created,
    )


# --- names and labels ------------------------------------------------------------------------------------------------


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_CHARS]


def _dns_label(text: str, key: str, always_hash: bool) -> str:
    if not always_hash and len(text) <= _MAX_LABEL and _DNS_1035.match(text):
        return text
    prefix = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not prefix[:1].isalpha():
        prefix = f"md-{prefix}"
    prefix = prefix[: _MAX_LABEL - _HASH_CHARS - 1].rstrip("-")
    return f"{prefix}-{_digest(key)}"


def child_name(deployment_name: str, version: str) -> str:
    """The name of every child of one served version (Deployment, Service, HPA, PDB): a DNS-1035 label.

    Always ends in a hash of the (deployment, version) pair: without it ("fraud-a", "b") and ("fraud", "a-b"), or
    "1.2.0" and "1-2-0", would share a name. Stable across releases; never change the scheme.
    """
    return _dns_label(f"{deployment_name}-{version}", f"{deployment_name}/{version}", always_hash=True)


def front_name(deployment_name: str) -> str:
    """The front Service's name: the ModelDeployment's own name when it is a DNS-1035 label (the usual case), else a
    sanitized form with a hash (object names may hold dots or start with a digit; Service names may not)."""
    return _dns_label(deployment_name, deployment_name, always_hash=False)


def preview_name(deployment_name: str) -> str:
    """The blueGreen preview Service's name: ``<front>-preview`` when that is a DNS-1035 label, else hashed."""
    return _dns_label(f"{deployment_name}-preview", f"{deployment_name}/preview", always_hash=False)


def label_value(text: str) -> str:
    """``text`` as a label value: unchanged when valid, else sanitized, shortened and suffixed with a hash."""
    if len(text) <= _MAX_LABEL and _LABEL_VALUE.match(text):
        return text
    prefix = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[: _MAX_LABEL - _HASH_CHARS - 1]
    prefix = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", prefix)
    return f"{prefix}-{_digest(text)}" if prefix else _digest(text)


def labels(deployment_name: str, model: str, version: str | None = None, role: str | None = None) -> dict[str, str]:
    """Labels of a child: the recommended app.kubernetes.io set plus mlops.io/deployment, model, version and role.

    Leave ``version`` out for objects of the whole deployment (the front Service), and ``role`` out for Pod
    templates: a role changes when a canary is promoted, and a changed template would restart every Pod.
    """
    out = {
        "app.kubernetes.io/name": SERVER,
        "app.kubernetes.io/instance": label_value(deployment_name),
        "app.kubernetes.io/managed-by": MANAGED_BY,
        f"{GROUP}/deployment": label_value(deployment_name),
        f"{GROUP}/model": label_value(model),
    }
    if version is not None:
        out[f"{GROUP}/version"] = label_value(version)
    if role is not None:
        out[f"{GROUP}/role"] = label_value(role)
    return out


def selector(deployment_name: str, version: str | None = None) -> dict[str, str]:
    """The stable subset of ``labels``: one version's Pods, or with no version every Pod of the deployment.

    Holds neither role nor model, which can change while a Deployment's selector cannot.
    """
    out = {"app.kubernetes.io/name": SERVER, f"{GROUP}/deployment": label_value(deployment_name)}
    if version is not None:
        out[f"{GROUP}/version"] = label_value(version)
    return out


def _metadata(owner: Body, name: str, object_labels: dict[str, str]) -> Body:
    return {
        "name": name,
        "namespace": owner["metadata"]["namespace"],
        "labels": object_labels,
        "ownerReferences": [owner_reference(owner)],
    }


def _version_metadata(owner: Body, spec: ModelDeploymentSpec, served: Workload) -> Body:
    name = owner["metadata"]["name"]
    return _metadata(owner, child_name(name, served.version), labels(name, spec.model, served.version, served.role))


# --- workloads -------------------------------------------------------------------------------------------------------


def _probe(path: str, period: int, timeout: int, failures: int) -> Body:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_QUANTITY = re.compile(r"^([+-]?[0-9]*\.?[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


def canonical_quantity(value: int | str) -> str:
    """A quantity as the API server stores it (``0.5`` -> ``500m``, ``1024Mi`` -> ``1Gi``, ``1000`` -> ``1k``), so
    that what we apply compares equal to what we read back. Forms this does not know (exponents) pass unchanged."""
    match = _QUANTITY.match(str(value))
    if not match:
        return str(value)
    number, suffix = Decimal(match.group(1)), match.group(2) or ""
    if suffix in _BINARY:
        amount = number * 1024 ** _BINARY[suffix]
        if amount == amount.to_integral_value() and abs(amount) >= 1024:
            exponent = 6
            while amount % 1024**exponent:
                exponent -= 1
            unit = {v: k for k, v in _BINARY.items()}.get(exponent, "")
            return f"{int(amount / 1024**exponent)}{unit}"
    else:
        amount = number * Decimal(10) ** _DECIMAL[suffix]
    # Decimal SI: the largest suffix that leaves a whole number (values finer than nano round up, as the server's).
    nanos = (amount * Decimal(10) ** 9).to_integral_value(rounding=ROUND_CEILING)
    if nanos == 0:
        return "0"
    for exp in (18, 15, 12, 9, 6, 3, 0, -3, -6, -9):
        scaled = Decimal(nanos) / Decimal(10) ** (exp + 9)
        if scaled == scaled.to_integral_value():
            unit = {v: k for k, v in _DECIMAL.items()}[exp]
            return f"{int(scaled)}{unit}"
    return str(value)


def _resources(resources: Resources) -> Body:
    # Quantities in the API server's canonical form: anything else reads back as a change on every comparison.
    out: Body = {}
    if resources.requests:
        out["requests"] = {k: canonical_quantity(v) for k, v in resources.requests.items()}
    if resources.limits:
        out["limits"] = {k: canonical_quantity(v) for k, v in resources.limits.items()}
    return out


def deployment(owner: Body, spec: ModelDeploymentSpec, served: Workload, image: str) -> Body:
    """The apps/v1 Deployment running ``mlops-server`` for one version.

    ``image`` is used unless spec.server.image is set. Under autoscaling, ``replicas`` is set when the Deployment
    is created (the capacity it starts with, so that it can take over the traffic) and left out afterwards, so that
    the HPA owns it (the controller hands the field over first: a field its only manager stops applying would fall
    back to 1). The profile ConfigMap must exist in the namespace, or the Pods wait for it.
    """
    name = owner["metadata"]["name"]
    port = spec.server.port
    env: list[tuple[str, str]] = [
        ("MLOPS_MODEL_NAME", spec.model),
        ("MLOPS_MODEL_VERSION", served.version),
        ("MLOPS_MODEL_SOURCE", served.source),
        ("MLOPS_MODEL_FORMAT", served.format),
    ]
    volumes: list[Body] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[Body] = [{"name": "tmp", "mountPath": "/tmp"}]
    if served.checksum:
        env.append(("MLOPS_MODEL_CHECKSUM", served.checksum))
    if served.signature:
        # Sorted and compact, so that the same signature always gives the same template (no needless rollouts).
        env.append(("MLOPS_MODEL_SIGNATURE", json.dumps(served.signature, sort_keys=True, separators=(",", ":"))))
    if served.profile_configmap:
        env.append(("MLOPS_REFERENCE_PROFILE", f"@{PROFILE_DIR}/profile.json"))
        volumes.append({"name": "profile", "configMap": {"name": served.profile_configmap}})
        mounts.append({"name": "profile", "mountPath": PROFILE_DIR, "readOnly": True})
    source = urlsplit(served.source)
    if source.scheme == "pvc":
        # The server reads pvc://<claim>/<path> at $MLOPS_PVC_ROOT/<claim>/<path>.
        env.append(("MLOPS_PVC_ROOT", PVC_ROOT))
        volumes.append({"name": "model", "persistentVolumeClaim": {"claimName": source.netloc, "readOnly": True}})
        mounts.append({"name": "model", "mountPath": f"{PVC_ROOT}/{source.netloc}", "readOnly": True})
    env += [
        ("MLOPS_SERVER_PORT", str(port)),
        ("MLOPS_GRPC_PORT", str(spec.server.grpc_port)),
        ("MLOPS_MAX_REQUEST_BYTES", str(spec.server.max_request_bytes)),
        ("MLOPS_GRACEFUL_SECONDS", str(GRACEFUL_SECONDS)),
    ]
    if spec.server.batching is not None:
        # Only when asked for: the server's defaults stand otherwise (and the template stays as it was).
        latency_ms = duration_seconds(spec.server.batching.max_latency) * 1000
        env += [
            ("MLOPS_MAX_BATCH_SIZE", str(spec.server.batching.max_size)),
            ("MLOPS_MAX_BATCH_LATENCY_MS", f"{latency_ms:g}"),
        ]
    container: Body = {
        "name": "server",
        "image": spec.server.image or image,
        "command": [SERVER],
        "env": [{"name": key, "value": value} for key, value in env],
        "ports": _container_ports(spec),
        # The server is live at once and ready once the model is loaded: startup waits on readiness, so that a
        # slow load is not killed and a failed one is restarted after the deadline.
        "startupProbe": _probe(
            "/v2/health/ready", STARTUP_PERIOD_SECONDS, 2, STARTUP_SECONDS // STARTUP_PERIOD_SECONDS
        ),
        "readinessProbe": _probe("/v2/health/ready", 5, 2, 3),
        # A generous timeout: health answers share the event loop with inference, and a busy server is not dead.
        "livenessProbe": _probe("/v2/health/live", 10, 5, 3),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        },
        "volumeMounts": mounts,
    }
    if spec.resources is not None and (resources := _resources(spec.resources)):
        container["resources"] = resources
    pod_selector = selector(name, served.version)
    body: Body = {
        "selector": {"matchLabels": pod_selector},
        "revisionHistoryLimit": 2,
        "progressDeadlineSeconds": max(1, round(duration_seconds(spec.rollout.progress_deadline))),
        # Never below the desired capacity while a version's own template changes.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "template": {
            "metadata": {
                "labels": labels(name, spec.model, served.version),
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(port),
                    "prometheus.io/path": "/metrics",
                },
            },
            "spec": {
                # The server never calls the API server; service links would put an environment variable per
                # Service of the namespace into every Pod.
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": RUN_AS,
                    "runAsGroup": RUN_AS,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "topologySpreadConstraints": [
                    {
                        "maxSkew": 1,
                        "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": pod_selector},
                    }
                ],
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    if spec.autoscaling is None or not served.created:
        body["replicas"] = served.replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _version_metadata(owner, spec, served),
        "spec": body,
    }


# --- services --------------------------------------------------------------------------------------------------------


def _container_ports(spec: ModelDeploymentSpec) -> list[Body]:
    ports = [{"name": "http", "containerPort": spec.server.port, "protocol": "TCP"}]
    if spec.server.grpc_port:
        ports.append({"name": "grpc", "containerPort": spec.server.grpc_port, "protocol": "TCP"})
    return ports


def _service(metadata: Body, spec: ModelDeploymentSpec, pod_selector: dict[str, str]) -> Body:
    ports = [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}]
    if spec.server.grpc_port:
        # h2c: gRPC is HTTP/2 without TLS, which meshes and gateways read from the port's application protocol.
        ports.append({"name": "grpc", "port": SERVICE_GRPC_PORT, "targetPort": "grpc", "protocol": "TCP",
                      "appProtocol": "kubernetes.io/h2c"})  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {"type": "ClusterIP", "selector": pod_selector, "ports": ports},
    }


def version_service(owner: Body, spec: ModelDeploymentSpec, served: Workload) -> Body:
    """The ClusterIP Service of one version (port 8080 named http, and 8081 named grpc unless gRPC is off): the
    backend routers weight, and the address of a preview."""
    return _service(_version_metadata(owner, spec, served), spec, selector(owner["metadata"]["name"], served.version))


def front_service(owner: Body, spec: ModelDeploymentSpec, versions: list[str]) -> Body:
    """The front Service, named ``front_name(<deployment>)``, ports 8080 (http) and 8081 (grpc): the deployment's
    in-cluster address.

    ``versions`` are the versions that take live traffic through it. With exactly one, it selects only that
    version's Pods (a preview, a shadow or a version being retired gets nothing); otherwise it selects every Pod of
    the deployment, so the caller must then run no version that should stay out of traffic (the ``replicas`` router
    splits by replica counts, see ``logic.serving.replica_split``).
    """
    name = owner["metadata"]["name"]
    pinned = versions[0] if len(versions) == 1 else None
    return _service(_metadata(owner, front_name(name), labels(name, spec.model)), spec, selector(name, pinned))


def preview_service(owner: Body, spec: ModelDeploymentSpec, version: str) -> Body:
    """The blueGreen preview Service, named ``preview_name(<deployment>)``, ports 8080 and 8081 as the others: the
    version in preview, before it takes the traffic."""
    name = owner["metadata"]["name"]
    # No version label: Services with one are scraped per version (the chart's ServiceMonitor), and this one
    # selects Pods that the version's own Service already covers.
    metadata = _metadata(owner, preview_name(name), labels(name, spec.model, role="preview"))
    return _service(metadata, spec, selector(name, version))


def owned(owner: Body, obj: Body) -> Body:
    """``obj`` with the owner reference to ``owner`` (for objects built elsewhere, such as a router's)."""
    metadata = {**obj["metadata"], "ownerReferences": [owner_reference(owner)]}
    return {**obj, "metadata": metadata}


# --- availability ----------------------------------------------------------------------------------------------------


def hpa(owner: Body, spec: ModelDeploymentSpec, served: Workload) -> Body | None:
    """The autoscaling/v2 HorizontalPodAutoscaler of one version's Deployment, on CPU utilisation; None without
    spec.autoscaling. CPU utilisation is relative to requests: without a cpu request the HPA cannot act."""
    auto = spec.autoscaling
    if auto is None:
        return None
    metadata = _version_metadata(owner, spec, served)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": metadata["name"]},
            "minReplicas": auto.min_replicas,
            "maxReplicas": auto.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": auto.target_cpu_utilization_percentage},
                    },
                }
            ],
        },
    }


def pdb(owner: Body, spec: ModelDeploymentSpec, served: Workload) -> Body | None:
    """The policy/v1 PodDisruptionBudget of one version (at most one Pod evicted at a time), when it runs more than
    one replica (autoscaling: minReplicas); None otherwise, since a budget on one replica would block node drains."""
    replicas = spec.autoscaling.min_replicas if spec.autoscaling else served.replicas
    if replicas <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _version_metadata(owner, spec, served),
        "spec": {
            "selector": {"matchLabels": selector(owner["metadata"]["name"], served.version)},
            "maxUnavailable": 1,
            # Pods that are not ready (a model that fails to load) serve nothing: evicting them must not wait.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
