"""The only place that talks to the API server (besides kopf's own watching): status patches, server-side apply.

All writes use one field manager, so ``kubectl get --show-managed-fields`` tells our fields from the users'.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lightkube import AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import ConfigMap
from lightkube.types import PatchType

from mlops_operator import GROUP, VERSION
from mlops_operator.builders.ownership import owner_reference

FIELD_MANAGER = "mlops-operator"

_clients: dict[int, AsyncClient] = {}


def client() -> AsyncClient:
    """The API client of the running event loop (created on first use, from KUBECONFIG or in-cluster config)."""
    loop = id(asyncio.get_running_loop())
    if loop not in _clients:
        _clients[loop] = AsyncClient(field_manager=FIELD_MANAGER)
    return _clients[loop]


_resources: dict[str, Any] = {}


def resource(kind: str, plural: str) -> Any:
    """The lightkube class of one of our kinds."""
    if kind not in _resources:
        _resources[kind] = create_namespaced_resource(GROUP, VERSION, kind, plural)
    return _resources[kind]


async def patch_status(kind: str, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
    """Merge-patch the status subresource of one of our objects (None values remove keys, lists are replaced)."""
    res = resource(kind, plural)
    await client().patch(res.Status, name, {"status": patch}, namespace=namespace, patch_type=PatchType.MERGE)


async def apply_configmap(namespace: str, name: str, data: dict[str, str], owner: dict[str, Any],
                          labels: dict[str, str] | None = None) -> None:  # fmt: skip
    """Server-side apply a ConfigMap owned by ``owner`` (deleted with it)."""
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels or {},
            "ownerReferences": [owner_reference(owner)],
        },
        "data": data,
    }
    await client().apply(ConfigMap.from_dict(body), field_manager=FIELD_MANAGER, force=True)  # type: ignore[call-overload]


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``; empty when they are equal."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif value != before or key not in old:
            patch[key] = value
    return patch
