"""Kinds as the runtime knows them: group, version, plural and kind, and the keys of objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Body = dict[str, Any]
Key = tuple[str, str]
"""(namespace, name) of an object, or of whatever a controller reconciles as one unit."""


@dataclass(frozen=True)
class Resource:
    """A kind served by the API server."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        return f"{self.kind} ({self.api_version})"


def key_of(body: Body) -> Key:
    """The (namespace, name) of ``body``."""
    meta = body["metadata"]
    return (meta.get("namespace") or "", meta["name"])


def newer(candidate: Body, current: Body | None) -> bool:
    """Whether ``candidate`` is at least as new as ``current`` (resourceVersions compared as numbers when they are:
    the API server promises nothing of their form, so anything else counts as newer)."""
    if current is None:
        return True
    a = candidate["metadata"].get("resourceVersion") or ""
    b = current["metadata"].get("resourceVersion") or ""
    if a.isdigit() and b.isdigit():
        return int(a) >= int(b)
    return True
