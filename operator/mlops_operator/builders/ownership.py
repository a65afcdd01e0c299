"""Owner references: children are deleted with the object that owns them."""

from __future__ import annotations

from typing import Any


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    """An ownerReference to ``owner`` (a body), controller and blocking its deletion like built-in owners do."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
