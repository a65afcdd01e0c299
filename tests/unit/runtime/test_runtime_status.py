"""Status writes: only differences, against the object version they were computed from, our last write preferred
over an older watch event; conflicts and deletions handed back. Against a fake API server."""

from __future__ import annotations

import asyncio
from typing import Any

from fake_api import FakeApi
from pydantic import BaseModel

from mlops_operator.runtime.kinds import Resource
from mlops_operator.runtime.status import StatusWriter

APPS = Resource("mlops.io", "v1alpha1", "apps", "App")


class AppStatus(BaseModel):
    observedGeneration: int | None = None
    replicas: int | None = None


def writer(api: FakeApi) -> tuple[StatusWriter, list[str], list[str]]:
    conflicts: list[str] = []
    gone: list[str] = []
    w = StatusWriter(APPS, lambda b: conflicts.append(b["metadata"]["name"]),
                     lambda b: gone.append(b["metadata"]["name"]), api=api)  # fmt: skip
    return w, conflicts, gone


def app(api: FakeApi) -> dict[str, Any]:
    api.serve("App")
    return api.put({"kind": "App", "metadata": {"name": "fraud"}, "status": {"replicas": 1}})


def test_a_typed_status_is_written_as_its_differences_once() -> None:
    api = FakeApi()
    body = app(api)
    w, _, _ = writer(api)
    assert asyncio.run(w.write(body, AppStatus(observedGeneration=1, replicas=1)))
    assert asyncio.run(w.write(body, AppStatus(observedGeneration=1, replicas=1)))  # nothing new: no request
    assert api.writes == [("patch", "App", "fraud")]
    assert api.objects["App"][("team", "fraud")]["status"] == {"observedGeneration": 1, "replicas": 1}


def test_our_last_write_is_preferred_until_the_watch_brings_it_back() -> None:
    api = FakeApi()
    body = app(api)
    w, _, _ = writer(api)
    asyncio.run(w.write(body, {"replicas": 2}))
    # The watch has not delivered our write: the cached body is older.
    assert w.status(body) == {"replicas": 2}
    stored = api.objects["App"][("team", "fraud")]
    assert w.is_echo(stored) and w.resource_version(body) == stored["metadata"]["resourceVersion"]
    # A second write is made against the version our first one made, not the stale cached one.
    assert asyncio.run(w.write(body, {"replicas": 3}))
    assert api.objects["App"][("team", "fraud")]["status"]["replicas"] == 3


def test_a_write_computed_from_an_outdated_object_is_refused_and_handed_back() -> None:
    api = FakeApi()
    body = app(api)
    api.put({**api.objects["App"][("team", "fraud")], "spec": {"replicas": 5}})  # changed by someone meanwhile
    w, conflicts, _ = writer(api)
    assert not asyncio.run(w.write(body, {"replicas": 2}))
    assert conflicts == ["fraud"] and api.writes == []


def test_a_write_to_an_object_that_is_gone_forgets_it() -> None:
    api = FakeApi()
    body = app(api)
    api.objects["App"].clear()
    w, _, gone = writer(api)
    assert not asyncio.run(w.write(body, {"replicas": 2}))
    assert gone == ["fraud"]
