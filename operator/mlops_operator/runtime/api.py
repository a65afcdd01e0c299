"""What the runtime asks of the API server: the ``kube`` module answers it, a test gives a fake of its own."""

from __future__ import annotations

from typing import Any, Protocol

Body = dict[str, Any]


class Api(Protocol):
    async def list_objects(
        self, api_version: str, kind: str, plural: str, namespace: str = "*", labels: dict[str, str] | None = None
    ) -> list[Body]: ...

    async def patch_metadata(self, api_version: str, kind: str, namespace: str, name: str, patch: Body) -> Body: ...

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Body | None: ...

    async def apply(self, body: Body, field_manager: str = ..., force: bool = True) -> Body: ...

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None: ...

    async def patch_status(
        self, kind: str, plural: str, namespace: str, name: str, patch: Body, resource_version: str | None = None
    ) -> Body: ...

    async def create(self, body: Body) -> Body: ...
