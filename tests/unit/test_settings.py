"""The operator runs under our own finalizer and annotation prefix, with bounded watches."""

from __future__ import annotations

from typing import Any

import kopf

from mlops_operator.api.crds import BY_KIND
from mlops_operator.controllers import build_registry
from mlops_operator.controllers.settings import configure


def test_settings() -> None:
    settings = kopf.OperatorSettings()
    configure(settings)
    assert settings.persistence.finalizer == "mlops.io/finalizer"
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert settings.persistence.progress_storage.prefix == "mlops.io"
    assert isinstance(settings.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert settings.persistence.diffbase_storage.prefix == "mlops.io"
    assert settings.watching.server_timeout and settings.watching.client_timeout
    assert settings.watching.client_timeout > settings.watching.server_timeout
    # Watching every namespace, new CRDs are noticed; watching named ones, nothing cluster-scoped is asked for.
    assert settings.scanning.disabled is False
    configure(settings, namespaced=True)
    assert settings.scanning.disabled is True


def test_every_kind_has_handlers() -> None:
    registry = build_registry()
    changing = {h.selector.any_name for h in registry._changing.get_all_handlers()}  # type: ignore[union-attr]
    watching = {h.selector.any_name for h in registry._watching.get_all_handlers()}  # type: ignore[union-attr]
    assert changing | watching >= {
        "modelversions",
        "modeldeployments",
        "canaryrollouts",
        "driftmonitors",
        "alertrules",
    }
    # The ModelDeployment controller works from watch events only: no change handlers, so kopf writes no progress
    # or diff-base annotations on those objects.
    assert "modeldeployments" not in changing
    assert {"deployments", "services", "horizontalpodautoscalers", "poddisruptionbudgets"} <= watching
    assert {"httproutes", "virtualservices"} <= watching


def test_spec_problem_names_the_field() -> None:
    kind = BY_KIND["ModelVersion"]
    assert (
        kind.spec_problem(
            {"model": "m", "version": "1", "source": "file:///x", "format": "onnx"},
        )
        is None
    )
    problem = kind.spec_problem({"model": "m", "version": "1", "source": "file:///x", "format": "pickle"})
    assert problem and problem.startswith("spec.format:")


def test_diff_base_only_for_kinds_with_change_handlers() -> None:
    settings = kopf.OperatorSettings()
    configure(settings, change_handled=["AlertRule"])
    storage = settings.persistence.diffbase_storage
    rule = kopf.Body({"kind": "AlertRule", "metadata": {"name": "r"}, "spec": {"for": "5m"}, "status": {"x": 1}})
    deployment = kopf.Body({"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 2}})
    # kopf compares essences of the kinds with change handlers: the spec without status.
    assert storage.build(body=rule)["spec"] == {"for": "5m"}
    assert "status" not in storage.build(body=rule)
    # Any other kind: nothing is copied, nothing stored is read.
    assert storage.build(body=deployment) == {}
    stored: Any = {"annotations": {"mlops.io/last-handled-configuration": '{"spec": {"replicas": 1}}'}}
    assert storage.fetch(body=kopf.Body({"kind": "Deployment", "metadata": stored})) is None
    assert storage.fetch(body=kopf.Body({"kind": "AlertRule", "metadata": stored})) == {"spec": {"replicas": 1}}


def test_in_a_pod_the_api_server_is_where_the_kubelet_says() -> None:
    from mlops_operator.controllers import in_cluster_server

    assert in_cluster_server({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}) == (
        "https://10.96.0.1:443"
    )
    assert in_cluster_server({"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}) == (
        "https://[fd00::1]:6443"
    )
    assert in_cluster_server({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}) is None
    assert in_cluster_server({}) is None
