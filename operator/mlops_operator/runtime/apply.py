"""Applying a controller's children: server-side apply under one field manager, writing only the differences,
never taking over a name someone else holds, reporting what the API server refused; pruning what is no longer
wanted."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from lightkube import ApiError

from mlops_operator import kube
from mlops_operator.runtime.controller import owner_ref
from mlops_operator.runtime.kinds import Body, Resource, newer
from mlops_operator.runtime.manager import Manager, error_text

log = logging.getLogger(__name__)

ChildKey = tuple[str, str, str]
"""apiVersion, kind, name of a child (in its owner's namespace)."""

APPLIED_ANNOTATION = "mlops.io/applied"
# Holds spec.replicas of a Deployment between our last apply of it and its autoscaler's first scaling.
HANDOVER_MANAGER = f"{kube.FIELD_MANAGER}-handover"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
# Selectors decide which Pods get traffic: a key added by hand changes their meaning, so they must match exactly.
EXACT_FIELDS = {"Service": ("spec", "selector"), "PodDisruptionBudget": ("spec", "selector")}


def covers(live: Any, desired: Any) -> bool:
    """Whether ``live`` holds every field ``desired`` sets, with the same value (fields the API server defaulted or
    others added are ignored; lists must match item by item)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and covers(live[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(map(covers, live, desired))
    return bool(live == desired)


def first_difference(live: Any, desired: Any, path: str = "") -> str | None:
    """The first field (as a path) where ``live`` does not cover ``desired``; None when it does."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return path or "."
        for k, v in desired.items():
            if k not in live:
                return f"{path}.{k}"
            found = first_difference(live[k], v, f"{path}.{k}")
            if found:
                return found
        return None
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return path
        for i, (a, b) in enumerate(zip(live, desired, strict=True)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if live == desired else path


def exact_fields_match(live: Body, desired: Body) -> bool:
    """Whether the fields that must match exactly (selectors) do."""
    path = EXACT_FIELDS.get(desired["kind"])
    if path is None:
        return True
    a: Any = live
    b: Any = desired
    for part in path:
        a, b = (a or {}).get(part), (b or {}).get(part)
    return bool(a == b)


def owns_replicas(live: Body) -> bool:
    """Whether our field manager claims the Deployment's spec.replicas."""
    return any(
        entry.get("manager") == kube.FIELD_MANAGER
        and entry.get("operation") == "Apply"
        and "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
        for entry in live["metadata"].get("managedFields") or []
    )


def stamped(desired: Body) -> Body:
    """``desired`` with a digest of itself in an annotation. ``covers`` sees edits to fields we set, but not a field
    we stopped setting (replicas once an autoscaler takes over): the digest changes then, so the object is applied
    again and the API server drops our claim on the field."""
    digest = hashlib.sha256(json.dumps(desired, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    meta = desired["metadata"]
    return {**desired, "metadata": {**meta, "annotations": {**meta.get("annotations", {}), APPLIED_ANNOTATION: digest}}}


def refused(result: object) -> bool:
    """An answer of the API server that trying again will not change (invalid, forbidden, denied by an admission
    webhook, over quota): it belongs in status, not only in the log."""
    return (
        isinstance(result, ApiError)
        and kube.transient(result) is None
        and 400 <= (result.status.code or 0) < 500
        and result.status.code != 409
    )


def raisable(result: BaseException) -> BaseException:
    """A failure of one of several gathered requests, as the reconcile raises it: a request cancelled on its own
    (not the worker being stopped) is an error of this pass, not the end of the worker."""
    task = asyncio.current_task()
    if isinstance(result, asyncio.CancelledError) and not (task and task.cancelling()):
        return RuntimeError("a request was cancelled")
    return result


class Conflict(Exception):
    """An object of the name we need exists and is not ours."""


@dataclass
class Report:
    """What the API server did not do of an apply or a prune, for the controller's conditions: (reason, message)
    with reason Conflict (a name held by another), KindNotServed, ApplyFailed or DeleteFailed (refused)."""

    problems: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.problems)

    def reasons(self) -> set[str]:
        return {reason for reason, _ in self.problems}


class Applier:
    """Applies and prunes the children of ``owner``'s objects, of the ``kinds`` the manager stores with
    ``child_store``."""

    def __init__(self, manager: Manager, owner: Resource, kinds: tuple[Resource, ...]) -> None:
        self.manager = manager
        self._owner = owner
        self._kinds = {(r.api_version, r.kind): r for r in kinds}
        for resource in kinds:
            manager.child_store(resource, owner)
        # (owner uid, child) -> the uid, generation and digest of what our last apply of it made.
        self._applied: dict[tuple[str, ChildKey], tuple[str, int, str]] = {}
        # (owner uid, child) -> the field the API server dropped or changed from our last apply of it.
        self._dropped: dict[tuple[str, ChildKey], str] = {}

    def children(self, uid: str) -> dict[ChildKey, Body]:
        """The children of the object ``uid``, as stored."""
        out = {}
        for (api_version, kind), resource in self._kinds.items():
            for body in self.manager.stores[resource].by("controller", uid):
                out[(api_version, kind, body["metadata"]["name"])] = body
        return out

    def child(self, uid: str, namespace: str, child: ChildKey) -> Body | None:
        body = self.manager.stores[self._resource(child[0], child[1])].get((namespace, child[2]))
        if body is None or (owner_ref(body, self._owner) or {}).get("uid") != uid:
            return None
        return body

    def dropped(self, uid: str) -> dict[ChildKey, str]:
        """The fields the API server did not keep as applied, by child of ``uid``."""
        return {child: path for (owner, child), path in self._dropped.items() if owner == uid}

    def forget(self, uid: str) -> None:
        for memo in (self._applied, self._dropped):
            for k in [k for k in memo if k[0] == uid]:
                del memo[k]

    def _resource(self, api_version: str, kind: str) -> Resource:
        resource = self._kinds.get((api_version, kind))
        if resource is None:
            raise ValueError(f"{kind} ({api_version}) is not a child kind of {self._owner.kind}")
        return resource

    async def apply(self, uid: str, objects: list[Body], report: Report) -> None:
        """Makes every object exist as built, at the same time (they do not depend on each other); ownership
        conflicts, kinds not served and refused writes go to ``report``, other failures are raised."""
        results = await asyncio.gather(*(self._ensure(uid, obj) for obj in objects), return_exceptions=True)
        failure: BaseException | None = None
        for obj, result in zip(objects, results, strict=True):
            if isinstance(result, Conflict):
                report.problems.append(("Conflict", str(result)))
            elif isinstance(result, kube.KindNotServed):
                report.problems.append(("KindNotServed", f"{result}: install its CustomResourceDefinitions"))
            elif refused(result):
                report.problems.append(
                    ("ApplyFailed", f"{obj['kind']} {obj['metadata']['name']}: {error_text(result)}")
                )
            elif isinstance(result, BaseException):
                failure = failure or raisable(result)
        if failure is not None:
            raise failure

    async def prune(self, namespace: str, uid: str, stale: list[ChildKey], report: Report) -> None:
        """Deletes the children ``stale`` of ``uid``; refusals go to ``report``."""
        deleted = await asyncio.gather(
            *(self.manager.api.delete(api_version, kind, namespace, name) for api_version, kind, name in stale),
            return_exceptions=True,
        )
        for child, result in zip(stale, deleted, strict=True):
            if result is None:
                self._applied.pop((uid, child), None)
                self._dropped.pop((uid, child), None)
                resource = self._resource(child[0], child[1])
                self.manager.stores[resource].remove((namespace, child[2]))
                self.manager.touch(resource, (namespace, child[2]))  # newer than a list that may be running
            elif refused(result):
                report.problems.append(("DeleteFailed", f"{child[1]} {child[2]}: {error_text(result)}"))
            else:
                raise raisable(result)

    async def _ensure(self, uid: str, desired: Body) -> Body:
        """Makes the child ``desired`` exist as built; writes only when the stored object differs. Refuses to take
        over an object that another owner, or nobody, controls."""
        desired = stamped(desired)
        meta = desired["metadata"]
        api_version, kind, name, namespace = desired["apiVersion"], desired["kind"], meta["name"], meta["namespace"]
        resource = self._resource(api_version, kind)
        store = self.manager.stores[resource]
        key: ChildKey = (api_version, kind, name)

        async def read_and_check() -> Body | None:
            found = await self.manager.api.get(api_version, kind, namespace, name)
            if found is not None:
                if (owner_ref(found, self._owner) or {}).get("uid") != uid:
                    raise Conflict(f"{kind} {name} exists and is not owned by this {self._owner.kind}")
                store.put({**found, "apiVersion": api_version, "kind": kind})
            return found

        live = self.child(uid, namespace, key)
        free = False
        if live is None:
            if resource in self.manager.synced and store.get((namespace, name)) is None:
                free = True  # the store is complete for this kind
            else:
                # Taken (or unknown): read it, so that a deletion the watch has not reported yet is not a conflict.
                live = await read_and_check()
        digest = meta["annotations"][APPLIED_ANNOTATION]
        if live is not None:
            if covers(live, desired) and exact_fields_match(live, desired):
                return live
            generation = live["metadata"].get("generation")
            if (
                generation is not None
                and self._applied.get((uid, key)) == (live["metadata"].get("uid"), generation, digest)
                and covers(live["metadata"], meta)
            ):
                # What the API server made of our last apply, untouched since (it dropped or changed a field: see
                # ``dropped``): applying the same again would change nothing.
                return live
            if kind == "Deployment" and "replicas" not in desired["spec"] and owns_replicas(live):
                # Autoscaling took over: another manager holds the current replicas while ours lets go of the
                # field, which would otherwise fall back to 1 before the autoscaler acts.
                handover = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": namespace},
                            "spec": {"replicas": (live.get("spec") or {}).get("replicas", 1)}}  # fmt: skip
                await self.manager.api.apply(handover, field_manager=HANDOVER_MANAGER)
        try:
            # A name believed free is applied without force: should an object the watch has not reported yet hold
            # it, the API server answers with a conflict instead of handing its fields to us.
            applied = await self.manager.api.apply(desired, force=not free)
        except ApiError as exc:
            if not (free and exc.status.code == 409):
                raise
            await read_and_check()
            applied = await self.manager.api.apply(desired)
        self.manager.touch(resource, (namespace, name))  # newer than a list that may be running
        if applied["metadata"].get("generation") is not None:
            self._applied[(uid, key)] = (applied["metadata"].get("uid"), applied["metadata"]["generation"], digest)
        lost = first_difference(applied, desired)
        if lost:
            if self._dropped.get((uid, key)) != lost:
                log.warning("%s %s/%s: the API server did not keep %s as applied (a CustomResourceDefinition older "
                            "than this operator needs?)", kind, namespace, name, lost.lstrip("."))  # fmt: skip
            self._dropped[(uid, key)] = lost
        else:
            self._dropped.pop((uid, key), None)
        current = store.get((namespace, name))
        applied = {**applied, "apiVersion": api_version, "kind": kind}
        if current is None or newer(applied, current):
            store.put(applied, as_is=True)  # ours, so kept whole: no copy of a fresh answer
        return applied

    def managed(self, child: Body) -> bool:
        """Whether ``child`` carries our label (only such children are ever pruned: not a user's object given our
        owner reference)."""
        return (child["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == kube.FIELD_MANAGER
