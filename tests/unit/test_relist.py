"""Listing every kind again repairs the caches after a watch gap: what the list holds is taken in, what is cached
but gone is dropped, and what an event touched meanwhile is left to the event. The API answers are given here."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mlops_operator import kube
from mlops_operator.controllers import modeldeployment as md

NS = "team"
MD_UID, OTHER_UID = "uid-md", "uid-other"


def obj(kind: str, name: str, rv: str = "10", **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "namespace": NS, "resourceVersion": rv, "uid": f"u-{name}"},
            **fields}  # fmt: skip


def owned(kind: str, name: str, uid: str = MD_UID, rv: str = "10") -> dict[str, Any]:
    body = obj(kind, name, rv)
    body["metadata"]["ownerReferences"] = [
        {"apiVersion": "mlops.io/v1alpha1", "kind": "ModelDeployment", "name": "fraud", "uid": uid, "controller": True}
    ]
    return body


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[dict[str, Any]]]:
    """What the API server lists, by kind (kinds absent here are not served)."""
    md.caches = md.Caches()
    listed: dict[str, list[dict[str, Any]]] = {}

    async def list_objects(api_version: str, kind: str, plural: str, namespace: str = "*") -> list[dict[str, Any]]:
        await asyncio.sleep(0)
        if kind not in listed:
            raise kube.KindNotServed(kind)
        return [dict(o) for o in listed[kind] if namespace in ("*", o["metadata"]["namespace"])]

    monkeypatch.setattr(kube, "list_objects", list_objects)
    return listed


def deployment_body() -> dict[str, Any]:
    body = obj("ModelDeployment", "fraud", spec={"model": "fraud", "version": "1.0.0"})
    body["metadata"]["uid"] = MD_UID
    return body


def one_of_each() -> dict[str, list[dict[str, Any]]]:
    """A ModelDeployment, a ModelVersion, a CanaryRollout, our Deployment and someone else's, as listed."""
    return {
        "ModelDeployment": [deployment_body()],
        "ModelVersion": [obj("ModelVersion", "fraud-1", spec={"model": "fraud", "version": "1.0.0"})],
        "CanaryRollout": [obj("CanaryRollout", "roll", spec={"deploymentRef": "fraud", "candidate": "1.1.0"})],
        "Deployment": [owned("Deployment", "fraud-1-0-0"), obj("Deployment", "someone-elses")],
    }


def test_a_first_list_fills_the_caches(cluster: dict[str, list[dict[str, Any]]]) -> None:
    cluster |= one_of_each() | {"Service": []}
    asyncio.run(md.relist((NS,)))

    assert list(md.caches.deployments) == [(NS, "fraud")]
    assert list(md.caches.versions[(NS, "fraud")]) == ["fraud-1"]
    assert md.caches.canaries[(NS, "fraud")]["roll"]["candidate"] == "1.1.0"
    assert list(md.caches.children[MD_UID]) == [("apps/v1", "Deployment", "fraud-1-0-0")]
    assert md.caches.owners[("apps/v1", "Deployment", NS, "someone-elses")] is None
    # Listed kinds are complete; kinds the cluster does not serve (HPAs here) are not.
    assert ("apps/v1", "Deployment") in md.caches.synced and ("v1", "Service") in md.caches.synced
    assert ("autoscaling/v2", "HorizontalPodAutoscaler") not in md.caches.synced


def test_what_went_away_unseen_is_dropped(cluster: dict[str, list[dict[str, Any]]]) -> None:
    cluster |= one_of_each()
    asyncio.run(md.relist((NS,)))
    # A watch gap: all of these are deleted, and no event says so.
    cluster |= {"ModelVersion": [], "CanaryRollout": [], "Deployment": []}
    asyncio.run(md.relist((NS,)))

    assert md.caches.versions[(NS, "fraud")] == {}
    assert md.caches.canaries[(NS, "fraud")] == {}
    assert md.caches.children[MD_UID] == {}
    assert not any(k[1] == "Deployment" for k in md.caches.owners)
    # The ModelDeployment itself is still listed, so it stays.
    assert list(md.caches.deployments) == [(NS, "fraud")]

    cluster["ModelDeployment"] = []
    asyncio.run(md.relist((NS,)))
    assert md.caches.deployments == {}


def test_an_object_an_event_brings_during_the_list_is_kept(
    cluster: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster |= {"Deployment": []}
    listing = kube.list_objects

    async def list_then_event(api_version: str, kind: str, plural: str, namespace: str = "*") -> list[Any]:
        items = await listing(api_version, kind, plural, namespace)
        if kind == "Deployment":
            # Created after the list was taken: its ADDED event arrives before the list is compared.
            md.on_child("ADDED", {**owned("Deployment", "fraud-1-1-0", rv="12"), "apiVersion": "apps/v1"})
        return items

    monkeypatch.setattr(kube, "list_objects", list_then_event)
    asyncio.run(md.relist((NS,)))

    assert ("apps/v1", "Deployment", "fraud-1-1-0") in md.caches.children[MD_UID]


def test_a_child_taken_from_its_owner_queues_the_former_owner(cluster: dict[str, list[dict[str, Any]]]) -> None:
    md.caches.deployments[(NS, "fraud")] = deployment_body()
    md.queue = md.WorkQueue()
    try:
        child = {**owned("Service", "fraud"), "apiVersion": "v1"}
        md.on_child("ADDED", child)
        md.queue = md.WorkQueue()  # forget that first queueing
        released = {**obj("Service", "fraud", rv="11"), "apiVersion": "v1"}
        md.on_child("MODIFIED", released)

        assert asyncio.run(asyncio.wait_for(md.queue.get(), 1)) == (NS, "fraud")
        assert md.caches.children[MD_UID] == {}
    finally:
        md.queue = None


def test_only_the_newest_canary_rollout_of_a_deployment_steers_it() -> None:
    md.caches = md.Caches()
    old = obj("CanaryRollout", "first", spec={"deploymentRef": "fraud", "candidate": "1.1.0"},
              status={"phase": "Promoted", "weights": {"canary": 100}})  # fmt: skip
    old["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    md.on_canary("ADDED", old)
    assert md.canary_weight_of(NS, "fraud", "1.1.0") == 100

    # Rolled back by hand, then tried again: the new attempt starts from its own weights, not the old 100.
    new = obj("CanaryRollout", "second", spec={"deploymentRef": "fraud", "candidate": "1.1.0"},
              status={"phase": "Progressing", "weights": {"canary": 10}})  # fmt: skip
    new["metadata"]["creationTimestamp"] = "2026-02-01T00:00:00Z"
    md.on_canary("ADDED", new)
    assert md.canary_weight_of(NS, "fraud", "1.1.0") == 10
    assert md.canary_weight_of(NS, "fraud", "1.0.0") is None


def test_an_object_deleted_during_the_list_is_not_brought_back(
    cluster: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = {**owned("Deployment", "fraud-1-0-0"), "apiVersion": "apps/v1"}
    md.on_child("ADDED", gone)
    cluster |= {"Deployment": [gone]}
    listing = kube.list_objects

    async def list_then_delete(api_version: str, kind: str, plural: str, namespace: str = "*") -> list[Any]:
        items = await listing(api_version, kind, plural, namespace)
        if kind == "Deployment":
            # Deleted after the list was taken: its DELETED event arrives before the list is compared.
            md.on_child("DELETED", gone)
        return items

    monkeypatch.setattr(kube, "list_objects", list_then_delete)
    asyncio.run(md.relist((NS,)))

    assert md.caches.children[MD_UID] == {}
    assert ("apps/v1", "Deployment", NS, "fraud-1-0-0") not in md.caches.owners


def test_an_older_canary_rollout_does_not_replace_a_newer_one_in_the_cache() -> None:
    md.caches = md.Caches()
    spec = {"deploymentRef": "fraud", "candidate": "1.1.0"}
    md.on_canary("MODIFIED", obj("CanaryRollout", "roll", rv="20", spec=spec, status={"weights": {"canary": 30}}))
    md.on_canary("MODIFIED", obj("CanaryRollout", "roll", rv="12", spec=spec, status={"weights": {"canary": 10}}))

    assert md.canary_weight_of(NS, "fraud", "1.1.0") == 30


def test_a_name_believed_free_is_not_taken_from_an_object_the_watch_has_not_reported(
    cluster: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx2
    from lightkube import ApiError

    cluster |= {"Service": []}
    asyncio.run(md.relist((NS,)))  # Services synced: no Service named "fraud" is known
    foreign = {**obj("Service", "fraud", rv="30"), "apiVersion": "v1"}  # created a moment ago by someone else
    forced: list[bool] = []

    async def apply(body: dict[str, Any], field_manager: str = "", force: bool = True) -> dict[str, Any]:
        forced.append(force)
        if not force:
            request = httpx2.Request("PATCH", "https://api.test/api/v1/namespaces/team/services/fraud")
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409, "reason": "Conflict",
                      "message": "Apply failed with 1 conflict: conflict with kubectl: .spec.selector"}  # fmt: skip
            raise ApiError(request=request, response=httpx2.Response(409, json=status, request=request))
        raise AssertionError("a forced apply over someone else's object")

    async def get(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return foreign

    monkeypatch.setattr(kube, "apply", apply)
    monkeypatch.setattr(kube, "get", get)
    desired = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fraud", "namespace": NS},
               "spec": {"selector": {"app": "fraud"}}}  # fmt: skip

    with pytest.raises(md.Conflict, match="Service fraud exists and is not owned by this ModelDeployment"):
        asyncio.run(md._ensure(MD_UID, desired))
    assert forced == [False]


def test_an_object_delivered_again_unchanged_queues_nothing(cluster: dict[str, list[dict[str, Any]]]) -> None:
    md.queue = md.WorkQueue()
    try:
        body = deployment_body()
        md.on_deployment("ADDED", body)
        assert md.queue.depth() == 1
        asyncio.run(asyncio.wait_for(md.queue.get(), 1))
        md.queue.done((NS, "fraud"))
        # A watch restarting (or a relist) delivers the same version again: nothing new to do.
        md.on_deployment("MODIFIED", deployment_body())
        version = {**obj("ModelVersion", "fraud-1", spec={"model": "fraud", "version": "1.0.0"}), "apiVersion": "v"}
        md.on_version("ADDED", version)
        assert md.queue.depth() == 1  # the first delivery of the version queues the deployment of its model
        asyncio.run(asyncio.wait_for(md.queue.get(), 1))
        md.queue.done((NS, "fraud"))
        md.on_version("MODIFIED", version)
        assert md.queue.depth() == 0
        # A new version of the object is news.
        changed = deployment_body()
        changed["metadata"]["resourceVersion"] = "11"
        md.on_deployment("MODIFIED", changed)
        assert md.queue.depth() == 1
    finally:
        md.queue = None
