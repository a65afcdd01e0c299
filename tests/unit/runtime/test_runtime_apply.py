"""Applying children: only differences are written, a name someone else holds is never taken over, refused writes
and kinds not served are reported, only labelled children are pruned. Against a fake API server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fake_api import FakeApi, api_error

from mlops_operator.runtime.apply import Applier, Conflict, Report
from mlops_operator.runtime.kinds import Resource
from mlops_operator.runtime.manager import Manager

NS = "team"
APPS = Resource("mlops.io", "v1alpha1", "apps", "App")
SERVICES = Resource("", "v1", "services", "Service")
ROUTES = Resource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")
OWNER_UID = "uid-fraud"
REF = {"apiVersion": "mlops.io/v1alpha1", "kind": "App", "name": "fraud", "uid": OWNER_UID, "controller": True}


def service(name: str, selector: dict[str, str], owned: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS, "labels": {"app.kubernetes.io/managed-by": "mlops-operator"}}
    if owned:
        meta["ownerReferences"] = [REF]
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {"selector": selector}}


def setup(api: FakeApi) -> Applier:
    manager = Manager((NS,), api=api)
    applier = Applier(manager, APPS, (SERVICES, ROUTES))
    asyncio.run(manager.relist())
    return applier


def test_an_object_as_built_is_applied_once_then_left_alone() -> None:
    api = FakeApi()
    api.serve("Service")
    applier = setup(api)
    report = Report()
    asyncio.run(applier.apply(OWNER_UID, [service("fraud", {"app": "fraud"})], report))
    asyncio.run(applier.apply(OWNER_UID, [service("fraud", {"app": "fraud"})], report))
    assert api.writes == [("apply", "Service", "fraud")] and not report
    asyncio.run(applier.apply(OWNER_UID, [service("fraud", {"app": "fraud", "version": "2"})], report))
    assert api.writes[-1] == ("apply", "Service", "fraud") and len(api.writes) == 2


def test_a_selector_key_added_by_hand_is_taken_out_again() -> None:
    api = FakeApi()
    api.serve("Service")
    applier = setup(api)
    asyncio.run(applier.apply(OWNER_UID, [service("fraud", {"app": "fraud"})], Report()))
    edited = api.objects["Service"][(NS, "fraud")]
    edited["spec"]["selector"]["extra"] = "by-hand"  # covers what we set, but selects other Pods
    edited["metadata"]["generation"] += 1
    applier.manager.on_event(SERVICES, "MODIFIED", api.put(edited))
    asyncio.run(applier.apply(OWNER_UID, [service("fraud", {"app": "fraud"})], Report()))
    assert len(api.writes) == 2


def test_a_name_someone_else_holds_is_reported_not_taken() -> None:
    api = FakeApi()
    api.serve("Service", service("fraud", {"app": "theirs"}, owned=False))
    applier = setup(api)
    report = Report()
    asyncio.run(applier.apply(OWNER_UID, [service("fraud", {"app": "fraud"})], report))
    assert report.problems == [("Conflict", "Service fraud exists and is not owned by this App")]
    assert api.writes == []


def test_a_name_believed_free_is_applied_without_force_and_a_conflict_is_read_back() -> None:
    api = FakeApi()
    api.serve("Service")
    applier = setup(api)  # Services listed: no Service named fraud is known
    api.serve("Service", service("fraud", {"app": "theirs"}, owned=False))  # created a moment ago, not seen yet
    forced: list[bool] = []
    plain_apply = api.apply

    async def apply(body: dict[str, Any], field_manager: str = "", force: bool = True) -> dict[str, Any]:
        forced.append(force)
        if not force:
            raise api_error(409, "Conflict", "Apply failed with 1 conflict: conflict with kubectl: .spec.selector")
        return await plain_apply(body, force=force)

    api.apply = apply  # type: ignore[method-assign]
    with pytest.raises(Conflict, match="Service fraud exists and is not owned by this App"):
        asyncio.run(applier._ensure(OWNER_UID, service("fraud", {"app": "fraud"})))
    assert forced == [False]


def test_refused_writes_and_kinds_not_served_are_reported() -> None:
    api = FakeApi()
    api.serve("Service")
    applier = setup(api)  # HTTPRoutes are not served
    api.refuse[("apply", "fraud")] = api_error(422, "Invalid", "spec.ports: Required value")
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "fraud-route", "namespace": NS, "ownerReferences": [REF]}, "spec": {}}  # fmt: skip
    report = Report()
    asyncio.run(applier.apply(OWNER_UID, [service("fraud", {"app": "fraud"}), route], report))
    assert report.reasons() == {"ApplyFailed", "KindNotServed"}
    assert ("ApplyFailed", "Service fraud: 422 Invalid: spec.ports: Required value") in report.problems


def test_a_transient_failure_is_raised_not_reported() -> None:
    api = FakeApi()
    api.serve("Service")
    applier = setup(api)
    api.refuse[("apply", "fraud")] = api_error(500, "InternalError")
    with pytest.raises(Exception, match="InternalError"):
        asyncio.run(applier.apply(OWNER_UID, [service("fraud", {"app": "fraud"})], Report()))


def test_prune_deletes_and_reports_a_refused_deletion() -> None:
    api = FakeApi()
    api.serve("Service", service("old", {"app": "old"}), service("kept", {"app": "kept"}))
    applier = setup(api)
    api.refuse[("delete", "kept")] = api_error(403, "Forbidden", "denied by policy")
    report = Report()
    stale = [("v1", "Service", "old"), ("v1", "Service", "kept")]
    asyncio.run(applier.prune(NS, OWNER_UID, stale, report))
    assert ("delete", "Service", "old") in api.writes
    assert report.problems == [("DeleteFailed", "Service kept: 403 Forbidden: denied by policy")]
    assert set(applier.children(OWNER_UID)) == {("v1", "Service", "kept")}


def test_only_labelled_children_count_as_managed() -> None:
    applier = setup(FakeApi())
    assert applier.managed(service("a", {}))
    unlabelled = service("b", {})
    unlabelled["metadata"]["labels"] = {}
    assert not applier.managed(unlabelled)
