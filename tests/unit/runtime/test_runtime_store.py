"""Stores: de-duplication by resourceVersion, indexes kept in step, deletions by uid."""

from __future__ import annotations

from typing import Any

from mlops_operator.runtime.kinds import Resource
from mlops_operator.runtime.store import Store

VERSIONS = Resource("mlops.io", "v1alpha1", "modelversions", "ModelVersion")


def version(name: str, model: str, rv: str, uid: str = "") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "team", "resourceVersion": rv, "uid": uid or f"u-{name}"},
            "spec": {"model": model}}  # fmt: skip


def by_model(body: dict[str, Any]) -> list[str]:
    return [body["spec"]["model"]]


def test_the_same_version_again_or_an_older_one_changes_nothing() -> None:
    store = Store(VERSIONS)
    assert store.put(version("a", "fraud", "10")) is not None
    assert store.put(version("a", "fraud", "10")) is None  # delivered again
    assert store.put(version("a", "fraud", "9")) is None  # older than what is held
    assert store.get(("team", "a"))["metadata"]["resourceVersion"] == "10"  # type: ignore[index]
    assert store.put(version("a", "fraud", "11")) is not None


def test_an_index_follows_a_changed_field_and_a_removal() -> None:
    store = Store(VERSIONS, indexes={"model": by_model})
    store.put(version("a", "fraud", "10"))
    store.put(version("b", "fraud", "10"))
    assert sorted(b["metadata"]["name"] for b in store.by("model", "fraud")) == ["a", "b"]
    store.put(version("a", "churn", "11"))
    assert [b["metadata"]["name"] for b in store.by("model", "fraud")] == ["b"]
    assert [b["metadata"]["name"] for b in store.by("model", "churn")] == ["a"]
    store.remove(("team", "b"))
    assert store.by("model", "fraud") == []


def test_an_index_added_later_files_what_is_held() -> None:
    store = Store(VERSIONS)
    store.put(version("a", "fraud", "10"))
    store.add_index("model", by_model)
    assert [b["metadata"]["name"] for b in store.by("model", "fraud")] == ["a"]


def test_a_deletion_of_an_older_object_of_the_same_name_keeps_the_newer() -> None:
    store = Store(VERSIONS)
    store.put(version("a", "fraud", "20", uid="new"))
    assert store.remove(("team", "a"), uid="old") is None
    assert store.get(("team", "a")) is not None
    assert store.remove(("team", "a"), uid="new") is not None
    assert len(store) == 0


def test_compact_decides_what_is_kept() -> None:
    store = Store(VERSIONS, compact=lambda b: {"metadata": dict(b["metadata"])})
    store.put({**version("a", "fraud", "10"), "status": {"big": "x" * 1000}})
    assert store.get(("team", "a")) == {"metadata": version("a", "fraud", "10")["metadata"]}
