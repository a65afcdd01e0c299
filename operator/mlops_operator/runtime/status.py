"""Status writes: typed, only what changed, against the object version they were computed from."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from lightkube import ApiError
from pydantic import BaseModel

from mlops_operator import kube
from mlops_operator.runtime.api import Api
from mlops_operator.runtime.kinds import Body, Resource, key_of, newer

log = logging.getLogger(__name__)


def wire(status: BaseModel | Body) -> Body:
    """A status as the API server stores it: a typed status model serialised by its model (camelCase, unset
    fields left out), a plain one as it is."""
    if isinstance(status, BaseModel):
        return status.model_dump(by_alias=True, exclude_none=True, mode="json")
    return status


class StatusWriter:
    """Writes the status of one kind's objects and remembers what it wrote.

    The operator is the only writer of its kinds' status, so the status it wrote last is at least as fresh as
    what the watch delivered until the watch brings the write back; ``current`` gives it in preference. Every
    write is a merge patch of the differences with the resourceVersion of the object it was computed from: the
    API server refuses it (409) if the object changed since (the change is on its way and queues another pass,
    ``on_conflict`` is told in case it was lost) or was replaced by another of the same name.
    """

    def __init__(
        self,
        resource: Resource,
        on_conflict: Callable[[Body], None],
        on_gone: Callable[[Body], None],
        api: Api = kube,
    ) -> None:
        self.resource = resource
        self._api = api
        self._on_conflict = on_conflict
        self._on_gone = on_gone
        # Compact JSON text: a parsed status costs about ten times its text in Python objects.
        self._written: dict[str, tuple[str, str]] = {}

    def ours(self, body: Body) -> tuple[Body, str] | None:
        """Our last status write of ``body`` and the resourceVersion it made, while the watch has not brought it
        back (or anything newer)."""
        written = self._written.get(body["metadata"].get("uid", ""))
        if written is None or written[1] == body["metadata"].get("resourceVersion"):
            return None  # nothing written, or the watch brought it back: ``body`` holds it already
        if newer({"metadata": {"resourceVersion": written[1]}}, body):
            return json.loads(written[0]), written[1]
        return None

    def status(self, body: Body) -> Body:
        """The newest status of ``body`` (a copy, free to change)."""
        ours = self.ours(body)
        return ours[0] if ours else json.loads(json.dumps(body.get("status") or {}))

    def current(self, body: Body) -> Body:
        """``body`` with the newest status known."""
        ours = self.ours(body)
        return {**body, "status": ours[0]} if ours else body

    def resource_version(self, body: Body) -> str | None:
        """The resourceVersion of the newest version of ``body`` known (ours after a write)."""
        ours = self._written.get(body["metadata"].get("uid", ""))
        if ours is not None and newer({"metadata": {"resourceVersion": ours[1]}}, body):
            return ours[1]
        version: str | None = body["metadata"].get("resourceVersion")
        return version

    def is_echo(self, body: Any) -> bool:
        """Whether ``body`` is what our own last status write made (nothing new to act on)."""
        meta = body["metadata"]
        written = self._written.get(meta.get("uid", ""))
        return written is not None and meta.get("resourceVersion") == written[1]

    def forget(self, uid: str) -> None:
        self._written.pop(uid, None)

    async def write(self, body: Body, status: BaseModel | Body) -> bool:
        """Writes ``status`` over the newest status known (only the differences); False when the object changed
        or went meanwhile (nothing written)."""
        new = wire(status)
        patch = kube.merge_patch(self.status(body), new)
        if not patch:
            return True
        meta = body["metadata"]
        namespace, name = key_of(body)
        r = self.resource
        try:
            stored = await self._api.patch_status(r.kind, r.plural, namespace, name, patch, self.resource_version(body))
        except ApiError as exc:
            if exc.status.code == 404:
                self.forget(meta["uid"])
                self._on_gone(body)
                return False
            if exc.status.code == 409:
                log.debug("%s %s/%s changed meanwhile: status not written", r.kind, namespace, name)
                self._on_conflict(body)
                return False
            raise
        self._written[meta["uid"]] = (json.dumps(new, separators=(",", ":")), stored["metadata"]["resourceVersion"])
        return True
