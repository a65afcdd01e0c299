"""A fake API server for the runtime's unit tests: objects by kind, resourceVersions that grow, requests recorded."""

from __future__ import annotations

import asyncio
import copy
import itertools
from typing import Any

import httpx2
from lightkube import ApiError

from mlops_operator import kube

Body = dict[str, Any]


def api_error(code: int, reason: str, message: str = "") -> ApiError:
    request = httpx2.Request("PATCH", "https://api.test/")
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
              "message": message or reason}  # fmt: skip
    return ApiError(request=request, response=httpx2.Response(code, json=status, request=request))


class FakeApi:
    """Serves the kinds in ``objects`` (a kind absent is not served); every write is recorded in ``writes``."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[tuple[str, str], Body]] = {}
        self.writes: list[tuple[str, str, str]] = []
        self.refuse: dict[tuple[str, str], ApiError] = {}
        """(verb, name) -> the error that request gets."""
        self.on_list: Any = None
        """Called with the kind after each list is taken, before it is returned."""
        self._versions = itertools.count(100)

    def serve(self, kind: str, *bodies: Body) -> None:
        self.objects.setdefault(kind, {})
        for body in bodies:
            self.put(body)

    def put(self, body: Body) -> Body:
        body = copy.deepcopy(body)
        meta = body["metadata"]
        meta.setdefault("namespace", "team")
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta["resourceVersion"] = str(next(self._versions))
        self.objects.setdefault(body["kind"], {})[(meta["namespace"], meta["name"])] = body
        return copy.deepcopy(body)

    def _kind(self, kind: str) -> dict[tuple[str, str], Body]:
        if kind not in self.objects:
            raise kube.KindNotServed(kind)
        return self.objects[kind]

    def _check(self, verb: str, name: str) -> None:
        error = self.refuse.get((verb, name))
        if error is not None:
            raise error

    async def list_objects(
        self, api_version: str, kind: str, plural: str, namespace: str = "*", labels: dict[str, str] | None = None
    ) -> list[Body]:
        await asyncio.sleep(0)
        items = [
            copy.deepcopy(b) for (ns, _), b in self._kind(kind).items()
            if namespace in ("*", ns) and (labels or {}).items() <= (b["metadata"].get("labels") or {}).items()
        ]  # fmt: skip
        if self.on_list is not None:
            self.on_list(kind)
        return items

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Body | None:
        found = self._kind(kind).get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def apply(self, body: Body, field_manager: str = kube.FIELD_MANAGER, force: bool = True) -> Body:
        name = body["metadata"]["name"]
        self._check("apply", name)
        self.writes.append(("apply", body["kind"], name))
        current = self._kind(body["kind"]).get((body["metadata"]["namespace"], name))
        merged = copy.deepcopy(current) if current else {"metadata": {"generation": 0}}
        merged.update({k: v for k, v in body.items() if k != "metadata"})
        merged["metadata"] = {**merged["metadata"], **body["metadata"]}
        merged["metadata"]["generation"] = merged["metadata"].get("generation", 0) + 1
        return self.put(merged)

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self._check("delete", name)
        self.writes.append(("delete", kind, name))
        self._kind(kind).pop((namespace, name), None)

    async def patch_status(
        self, kind: str, plural: str, namespace: str, name: str, patch: Body, resource_version: str | None = None
    ) -> Body:
        self._check("patch", name)
        current = self._kind(kind).get((namespace, name))
        if current is None:
            raise api_error(404, "NotFound")
        if resource_version is not None and current["metadata"]["resourceVersion"] != resource_version:
            raise api_error(409, "Conflict", "the object has been modified")
        self.writes.append(("patch", kind, name))
        status = current.get("status") or {}
        for key, value in patch.items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = value
        return self.put({**current, "status": status})

    async def patch_metadata(self, api_version: str, kind: str, namespace: str, name: str, patch: Body) -> Body:
        self._check("patch", name)
        current = self._kind(kind).get((namespace, name))
        if current is None:
            raise api_error(404, "NotFound")
        self.writes.append(("patch", kind, name))
        meta = current["metadata"]
        for key, value in patch.items():
            merged = {**(meta.get(key) or {}), **value}
            meta[key] = {k: v for k, v in merged.items() if v is not None}
        return self.put(current)

    async def create(self, body: Body) -> Body:
        self.writes.append(("create", body["kind"], body["metadata"].get("generateName", "")))
        return body
