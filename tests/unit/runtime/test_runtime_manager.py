"""The manager: lists fill and correct the stores, events queue the keys they concern (once), workers reconcile
with backoff and requeues. Against a fake API server, on instances."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fake_api import FakeApi

from mlops_operator.runtime.controller import Controller, Watch
from mlops_operator.runtime.kinds import Key, Resource
from mlops_operator.runtime.manager import Manager

NS = "team"
APPS = Resource("mlops.io", "v1alpha1", "apps", "App")
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
SERVICES = Resource("", "v1", "services", "Service")
CONFIGS = Resource("mlops.io", "v1alpha1", "configs", "Config")


def body(kind: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "namespace": NS}, **fields}


def child(kind: str, name: str, owner: str | None = "fraud") -> dict[str, Any]:
    out = body(kind, name)
    if owner:
        out["metadata"]["ownerReferences"] = [{"apiVersion": "mlops.io/v1alpha1", "kind": "App", "name": owner,
                                               "uid": f"uid-{owner}", "controller": True}]  # fmt: skip
    return out


class Recorder:
    """A controller of Apps owning Deployments and Services, watching Configs (by spec.app)."""

    def __init__(self, api: FakeApi) -> None:
        self.manager = Manager((NS,), api=api)
        self.apps = self.manager.store(APPS)
        self.manager.child_store(DEPLOYMENTS, APPS)
        self.manager.child_store(SERVICES, APPS)
        self.manager.store(CONFIGS)
        self.reconciled: list[Key] = []
        self.results: dict[Key, Any] = {}
        self.controller = self.manager.add(
            Controller(
                name="App", resource=APPS, reconcile=self.reconcile, owns=(DEPLOYMENTS, SERVICES),
                watches=(Watch(CONFIGS, lambda c: [(NS, c["spec"]["app"])]),),
            )
        )  # fmt: skip

    async def reconcile(self, key: Key) -> float | None:
        self.reconciled.append(key)
        result = self.results.get(key)
        if isinstance(result, Exception):
            raise result
        return result

    def queued(self) -> list[Key]:
        """The keys waiting, taken out of the queue."""
        out = []
        queue = self.controller.queue
        while queue.depth():
            key = asyncio.run(asyncio.wait_for(queue.get(), 1))
            queue.done(key)
            out.append(key)
        return out


@pytest.fixture
def api() -> FakeApi:
    api = FakeApi()
    api.serve("App", body("App", "fraud"))
    api.serve("Deployment", child("Deployment", "fraud-1"), child("Deployment", "someone-elses", owner=None))
    api.serve("Config", body("Config", "c", spec={"app": "fraud"}))
    return api  # Services are not served


def test_a_first_list_fills_the_stores_and_says_which_kinds_are_complete(api: FakeApi) -> None:
    r = Recorder(api)
    asyncio.run(r.manager.relist())
    stores = r.manager.stores
    assert stores[APPS].keys() == [(NS, "fraud")]
    assert [b["metadata"]["name"] for b in stores[DEPLOYMENTS].by("controller", "uid-fraud")] == ["fraud-1"]
    # Someone else's object: kept by name (so that the name is known taken), not whole.
    assert set(stores[DEPLOYMENTS].get((NS, "someone-elses"))) == {"apiVersion", "kind", "metadata"}  # type: ignore[arg-type]
    assert DEPLOYMENTS in r.manager.synced and SERVICES not in r.manager.synced
    assert r.queued() == [(NS, "fraud")]


def test_what_went_away_unseen_is_dropped_by_the_next_list(api: FakeApi) -> None:
    r = Recorder(api)
    asyncio.run(r.manager.relist())
    r.queued()
    api.objects["Deployment"].clear()  # a watch gap: deleted, and no event says so
    asyncio.run(r.manager.relist())
    assert r.manager.stores[DEPLOYMENTS].by("controller", "uid-fraud") == []
    assert len(r.manager.stores[DEPLOYMENTS]) == 0
    assert r.queued() == [(NS, "fraud")]  # its owner looks again


def test_an_object_an_event_brings_during_the_list_is_kept(api: FakeApi) -> None:
    r = Recorder(api)
    late = {**child("Deployment", "fraud-2"), "apiVersion": "apps/v1"}
    late["metadata"].update(uid="uid-late", resourceVersion="500")

    def event_during_list(kind: str) -> None:
        if kind == "Deployment":  # created after the list was taken: its event arrives before the comparison
            r.manager.on_event(DEPLOYMENTS, "ADDED", late)

    api.on_list = event_during_list
    asyncio.run(r.manager.relist())
    assert r.manager.stores[DEPLOYMENTS].get((NS, "fraud-2")) is not None


def test_an_object_deleted_during_the_list_is_not_brought_back(api: FakeApi) -> None:
    r = Recorder(api)
    asyncio.run(r.manager.relist())
    gone = r.manager.stores[DEPLOYMENTS].get((NS, "fraud-1"))

    def delete_during_list(kind: str) -> None:
        if kind == "Deployment":
            r.manager.on_event(DEPLOYMENTS, "DELETED", gone)

    api.on_list = delete_during_list
    asyncio.run(r.manager.relist())
    assert r.manager.stores[DEPLOYMENTS].get((NS, "fraud-1")) is None


def test_an_object_delivered_again_unchanged_queues_nothing(api: FakeApi) -> None:
    r = Recorder(api)
    asyncio.run(r.manager.relist())
    assert r.queued() == [(NS, "fraud")]
    asyncio.run(r.manager.relist())  # a watch restarting, or a relist: the same versions again
    assert r.queued() == []
    changed = api.put(body("App", "fraud", spec={"replicas": 2}))
    r.manager.on_event(APPS, "MODIFIED", changed)
    assert r.queued() == [(NS, "fraud")]


def test_a_watched_kind_queues_the_keys_it_maps_to(api: FakeApi) -> None:
    r = Recorder(api)
    asyncio.run(r.manager.relist())
    r.queued()
    moved = api.put(body("Config", "c", spec={"app": "churn"}))
    r.manager.on_event(CONFIGS, "MODIFIED", moved)
    # The key it concerned before and the key it concerns now.
    assert sorted(r.queued()) == [(NS, "churn"), (NS, "fraud")]


def test_a_child_taken_from_its_owner_queues_the_former_owner(api: FakeApi) -> None:
    r = Recorder(api)
    asyncio.run(r.manager.relist())
    r.queued()
    released = api.put(child("Deployment", "fraud-1", owner=None))
    r.manager.on_event(DEPLOYMENTS, "MODIFIED", released)
    assert r.queued() == [(NS, "fraud")]
    assert r.manager.stores[DEPLOYMENTS].by("controller", "uid-fraud") == []


def test_an_echo_of_our_own_write_queues_nothing(api: FakeApi) -> None:
    r = Recorder(api)
    r.controller.is_echo = lambda b: b["metadata"]["resourceVersion"] == "777"
    echo = body("App", "fraud")
    echo["metadata"].update(uid="uid-fraud", resourceVersion="777")
    r.manager.on_event(APPS, "MODIFIED", echo)
    assert r.queued() == []


def test_a_deletion_of_the_reconciled_kind_is_forgotten_and_queued(api: FakeApi) -> None:
    r = Recorder(api)
    forgotten: list[str] = []
    r.controller.forget = lambda b: forgotten.append(b["metadata"]["uid"])
    asyncio.run(r.manager.relist())
    r.queued()
    r.manager.on_event(APPS, "DELETED", r.apps.get((NS, "fraud")))
    assert forgotten == ["uid-fraud"] and r.queued() == [(NS, "fraud")] and len(r.apps) == 0


def test_workers_back_off_a_failing_key_and_honour_a_requeue(api: FakeApi) -> None:
    async def run() -> Recorder:
        r = Recorder(api)
        r.controller.backoff.base = 0.05
        r.results[(NS, "fraud")] = RuntimeError("boom")
        await r.manager.start()
        try:
            for _ in range(100):
                if len(r.reconciled) >= 3:
                    break
                await asyncio.sleep(0.02)
            assert r.controller.backoff.failures((NS, "fraud")) >= 2
            r.results[(NS, "fraud")] = 0.05  # succeeds, and asks to be looked at again shortly
            count = len(r.reconciled)
            for _ in range(100):
                if len(r.reconciled) >= count + 3:
                    break
                await asyncio.sleep(0.02)
        finally:
            await r.manager.stop()
        return r

    r = asyncio.run(run())
    stats = r.manager.stats["App"]
    assert stats.counts["errors"] >= 2 and stats.counts["reconciles"] >= 2
    assert r.controller.backoff.failures((NS, "fraud")) == 0


def test_the_deletion_of_an_older_object_of_a_name_leaves_the_newer_one(api: FakeApi) -> None:
    r = Recorder(api)
    forgotten: list[str] = []
    r.controller.forget = lambda b: forgotten.append(b["metadata"]["uid"])
    asyncio.run(r.manager.relist())
    r.queued()
    older = body("App", "fraud")
    older["metadata"].update(uid="uid-before", resourceVersion="1")
    r.manager.on_event(APPS, "DELETED", older)  # the object the name held before, deleted late
    held = r.apps.get((NS, "fraud"))
    assert held is not None and held["metadata"]["uid"] == "uid-fraud"
    assert forgotten == ["uid-before"] and r.queued() == [(NS, "fraud")]
