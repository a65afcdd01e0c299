"""kopf handlers: thin, they read the object, call logic and builders, and write status."""

from __future__ import annotations

from typing import Any

import kopf

from mlops_operator import __version__, metrics
from mlops_operator.api.crds import KINDS
from mlops_operator.controllers import intake, modeldeployment, modelversion
from mlops_operator.controllers.settings import configure


def build_registry(namespaces: tuple[str, ...] = (), metrics_bind: str | None = None) -> kopf.OperatorRegistry:
    """A registry holding every handler of the operator; ``namespaces`` are the watched ones (empty: all);
    ``metrics_bind`` (host:port) serves the operator's Prometheus metrics."""
    registry = kopf.OperatorRegistry()
    runners: list[Any] = []

    @kopf.on.startup(registry=registry)
    async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings)
        if metrics_bind and not runners:
            runners.append(await metrics.serve(metrics_bind))

    @kopf.on.cleanup(registry=registry)
    async def _cleanup(**_: Any) -> None:
        while runners:
            await runners.pop().cleanup()

    # kopf's built-in readers, so that no Kubernetes client library is needed: the Pod's service account in a
    # cluster, the kubeconfig (KUBECONFIG or ~/.kube/config) elsewhere. Both are read again after a 401, which
    # picks up rotated service account tokens.
    @kopf.on.login(registry=registry)
    def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.probe(id="version", registry=registry)
    def _version(**_: Any) -> str:
        return __version__

    modelversion.register(registry)
    modeldeployment.register(registry, namespaces)
    own_controllers = {"ModelVersion", "ModelDeployment"}
    intake.register(registry, tuple(k for k in KINDS if k.kind not in own_controllers))
    return registry
