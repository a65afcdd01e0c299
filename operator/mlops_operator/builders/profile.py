"""The ConfigMap holding a ModelVersion's reference profile."""

from __future__ import annotations

from typing import Any

from mlops_operator.builders.ownership import owner_reference

Body = dict[str, Any]


def configmap(owner: Body, name: str, data: dict[str, str], labels: dict[str, str]) -> Body:
    """A ConfigMap owned by ``owner`` (deleted with it)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": owner["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "data": data,
    }
