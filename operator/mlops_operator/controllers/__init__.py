"""The controllers, each one file on the runtime (``mlops_operator.runtime``): its declarations and its reconcile.

``CONTROLLERS`` is the one list of them; a kind without a controller yet is acknowledged by ``intake``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import kopf

from mlops_operator import __version__, metrics
from mlops_operator.api.crds import KINDS
from mlops_operator.controllers import intake
from mlops_operator.controllers.alertrule import AlertRules
from mlops_operator.controllers.canaryrollout import CanaryRollouts
from mlops_operator.controllers.driftmonitor import DriftMonitors
from mlops_operator.controllers.modeldeployment import ModelDeployments
from mlops_operator.controllers.modelversion import ModelVersions
from mlops_operator.controllers.settings import configure
from mlops_operator.outbound import Policy
from mlops_operator.runtime.manager import Manager

# Every controller, by the kind it reconciles: each is made on the manager with the outbound policy.
CONTROLLERS: dict[str, Any] = {
    "ModelVersion": ModelVersions,
    "ModelDeployment": ModelDeployments,
    "CanaryRollout": CanaryRollouts,
    "DriftMonitor": DriftMonitors,
    "AlertRule": AlertRules,
}


def in_cluster_server(environ: Any = os.environ) -> str | None:
    """The API server's URL from the environment the kubelet gives every container (``KUBERNETES_SERVICE_HOST``
    and ``_PORT``), or None outside a Pod."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        return None
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def build_registry(
    namespaces: tuple[str, ...] = (), metrics_bind: str | None = None, policy: Policy | None = None
) -> kopf.OperatorRegistry:
    """A registry holding every handler of the operator; ``namespaces`` are the watched ones (empty: all);
    ``metrics_bind`` (host:port) serves the operator's Prometheus metrics; ``policy`` decides what the operator
    opens on its users' behalf (default: the strictest, no files, no internal addresses)."""
    registry = kopf.OperatorRegistry()
    policy = policy or Policy()
    runners: list[Any] = []
    acknowledged = tuple(k for k in KINDS if k.kind not in CONTROLLERS)

    @kopf.on.startup(registry=registry)
    async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings, namespaced=bool(namespaces), change_handled=(k.kind for k in acknowledged))
        if metrics_bind and not runners:
            runners.append(await metrics.serve(metrics_bind))

    made: list[Any] = []

    @kopf.on.cleanup(registry=registry)
    async def _cleanup(**_: Any) -> None:
        while runners:
            await runners.pop().cleanup()
        for controller in made:
            if hasattr(controller, "close"):
                await controller.close()

    # kopf's built-in readers, so that no Kubernetes client library is needed: the Pod's service account in a
    # cluster, the kubeconfig (KUBECONFIG or ~/.kube/config) elsewhere. Both are read again after a 401, which
    # picks up rotated service account tokens.
    @kopf.on.login(registry=registry)
    def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        info = kopf.login_with_service_account(**kwargs)
        if info is not None and (server := in_cluster_server()):
            # The kubelet's address of the API server, as the runtime's own client (lightkube) and client-go read
            # it: kopf's reader names kubernetes.default.svc, which only cluster DNS resolves (not a Pod on the
            # host's network without ClusterFirstWithHostNet, nor one with dnsPolicy None or Default).
            info = dataclasses.replace(info, server=server)
        info = info or kopf.login_with_kubeconfig(**kwargs)
        if info is not None:
            # No URI of a user's may reach the API server through the operator.
            policy.learn_apiserver(info.server)
        return info

    @kopf.on.probe(id="version", registry=registry)
    def _version(**_: Any) -> str:
        return __version__

    manager = Manager(namespaces)
    for make in CONTROLLERS.values():
        made.append(make(manager, policy))
    manager.register(registry)
    intake.register(registry, acknowledged)
    return registry
