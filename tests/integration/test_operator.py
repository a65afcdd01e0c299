"""The operator process: starts against the cluster, acts under our own prefixes, stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import yaml
from support import (
    CONTROLLED,
    ROOT,
    Body,
    Kubectl,
    OperatorProcess,
    Samples,
    assert_restart_writes_nothing,
    condition,
    deploy,
    register,
    scrape,
    start_operator,
    wait_serving,
    wait_status,
)

from mlops_operator import __version__


def examples() -> list[Body]:
    return [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "manifests" / "examples").glob("*.yaml"))]


def given_applied(kubectl: Kubectl, docs: list[Body]) -> list[Body]:
    """Given ``docs`` applied: waits until the operator observed each (observedGeneration set) and returns them as
    observed."""
    for doc in docs:
        kubectl.apply(doc)

    def observed(obj: Body) -> bool:
        return bool(obj.get("status", {}).get("observedGeneration"))

    return [wait_status(kubectl, doc["kind"], doc["metadata"]["name"], "observed", observed) for doc in docs]


def test_every_kind_is_observed_under_our_own_prefixes(kubectl: Kubectl, operator: OperatorProcess) -> None:
    assert operator.alive()
    for obj in given_applied(kubectl, examples()):
        kind = obj["kind"]
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        ready = condition(obj, "Ready")
        assert ready and ready["observedGeneration"] == obj["metadata"]["generation"]
        annotations = obj["metadata"].get("annotations", {})
        if kind in CONTROLLED:
            # Their controllers work from watch events: kopf keeps no bookkeeping annotations on them.
            assert not any(k.startswith("mlops.io/") for k in annotations), (kind, annotations)
        else:
            # Acknowledged by kopf's intake, which keeps its progress under our prefix.
            assert ready["reason"] == "Accepted", ready
            assert any(k.startswith("mlops.io/") for k in annotations), (kind, annotations)
        assert not any("kopf.zalando.org" in k for k in annotations), annotations


def test_a_spec_change_is_observed_again(kubectl: Kubectl, operator: OperatorProcess) -> None:
    kubectl.apply(yaml.safe_load((ROOT / "manifests" / "examples" / "modelversion.yaml").read_text()))
    wait_status(kubectl, "modelversion", "fraud-detector-1-0-0", "generation 1 observed",
                lambda o: o.get("status", {}).get("observedGeneration") == 1)  # fmt: skip
    kubectl.run(
        "patch", "modelversion", "fraud-detector-1-0-0", "--type=merge", "-p", '{"spec":{"stage":"production"}}'
    )
    wait_status(kubectl, "modelversion", "fraud-detector-1-0-0", "generation 2 observed",
                lambda o: o["status"]["observedGeneration"] == o["metadata"]["generation"] == 2)  # fmt: skip


def test_sigterm_stops_the_operator_cleanly_within_30_seconds(kubectl: Kubectl, operator: OperatorProcess) -> None:
    given_applied(kubectl, examples())
    started = time.monotonic()
    assert operator.stop(signal.SIGTERM, timeout=30) == 0, operator.log()
    assert time.monotonic() - started < 30
    assert not operator.alive()
    assert "Traceback" not in operator.log(), operator.log()


def test_a_restarted_operator_writes_nothing(kubectl: Kubectl, tmp_path: Path) -> None:
    """Every kind, as the examples have them (at rest): an operator started over what another left changes no
    object, and each controller counts reconciles that wrote nothing."""
    docs = examples()
    for doc in docs:
        if doc["kind"] == "ModelVersion":
            # A reference that cannot be read (s3, without credentials here) is tried again with backoff: an operator
            # started while a try is due rightly makes it.
            del doc["spec"]["reference"]
    first = start_operator(tmp_path, "--namespace", kubectl.namespace or "default")
    try:
        given_applied(kubectl, docs)
        time.sleep(2)  # the ModelVersion's checks and the ModelDeployment's answer to them settle
    finally:
        assert first.stop() == 0, first.log()
    assert_restart_writes_nothing(kubectl, tmp_path)


def test_operator_metrics_count_reconciles_requests_and_ready_objects(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    register(kubectl, tmp_path, "fraud", "1.0.0")
    deploy(kubectl, "fraud", version="1.0.0", replicas=1)
    wait_serving(kubectl, "fraud", "1.0.0")
    samples: Samples = {}

    def sample(name: str, **labels: str) -> float:
        """The value of a series, which must be there: a missing series would read as 0."""
        key = (name, tuple(sorted(labels.items())))
        assert key in samples, f"no series {name}{labels}; of {name}: {[k for k in samples if k[0] == name]}"
        return samples[key]

    def settled() -> bool:
        nonlocal samples
        samples = scrape(operator.metrics)
        return sample("mlops_operator_objects", kind="ModelDeployment", ready="True") == 1

    kubectl.wait_for(settled, what="the deployment counted as Ready")
    assert sample("mlops_operator_objects", kind="ModelDeployment", ready="False") == 0
    assert sample("mlops_operator_objects", kind="ModelVersion", ready="True") == 1
    assert sample("mlops_operator_reconciles_total", kind="ModelDeployment", result="changed") >= 1
    assert sample("mlops_operator_reconciles_total", kind="ModelVersion", result="changed") >= 1
    assert sample("mlops_operator_reconcile_duration_seconds_count", kind="ModelDeployment") >= 1
    assert sample("mlops_operator_queue_wait_seconds_count", kind="ModelDeployment") >= 1
    # Every apply the operator made shows, by verb and outcome, with its latency.
    applies = sample("mlops_operator_api_requests_total", verb="apply", code="ok")
    assert applies >= 3, samples  # at least the Deployment and the two Services
    assert sample("mlops_operator_api_request_duration_seconds_count", verb="apply") >= applies
    assert sample("mlops_operator_build_info", version=__version__) == 1
    assert not any(n.endswith("_created") for n, _ in samples)

    # Each controller's work queue has its series (sample fails on a missing one, which would read 0), and it
    # drains once the work is done.
    kinds = ("ModelDeployment", "ModelVersion")
    for kind in kinds:
        sample("mlops_operator_queue_depth", kind=kind)

    def drained() -> bool:
        nonlocal samples
        samples = scrape(operator.metrics)
        return all(sample("mlops_operator_queue_depth", kind=kind) == 0 for kind in kinds)

    kubectl.wait_for(drained, what="both work queues empty")
