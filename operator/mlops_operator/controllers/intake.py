"""Intake: every object of every kind is read through its typed model and acknowledged in status.

This is the common front of all controllers: it proves that what the API server admitted is also what the models
accept, and records observedGeneration. Kinds whose controller is registered elsewhere set ``Ready`` themselves;
for the others the Ready condition says that the spec is accepted and not acted on yet.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any

import kopf
from pydantic import ValidationError

from mlops_operator import GROUP, VERSION
from mlops_operator.api.crds import KINDS, Kind
from mlops_operator.logic.conditions import ConditionStatus, set_condition


def plain(body: Any) -> dict[str, Any]:
    """A plain JSON copy of a kopf body (or part of one), safe to keep after the handler returns."""
    return json.loads(json.dumps(dict(body)))  # type: ignore[no-any-return]


_background: set[asyncio.Task[None]] = set()


def in_background(work: Coroutine[Any, Any, None]) -> None:
    """Runs ``work`` without waiting for it, keeping a reference until it ends (the loop holds tasks weakly)."""
    task = asyncio.get_running_loop().create_task(work)
    _background.add(task)
    task.add_done_callback(_background.discard)


def spec_problem(kind: Kind, spec: dict[str, Any]) -> str | None:
    """Why the typed model rejects ``spec`` (fields and reasons), or None when it parses."""
    try:
        kind.spec.model_validate(spec)
    except ValidationError as exc:
        return "; ".join(
            f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        )
    return None


def register(registry: kopf.OperatorRegistry, kinds: tuple[Kind, ...] = KINDS) -> None:
    """Register the intake handlers of ``kinds`` in ``registry``."""
    for kind in kinds:

        def intake(
            spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch, kind: Kind = kind, **_: Any
        ) -> None:
            generation = meta.get("generation")
            problem = spec_problem(kind, dict(spec))
            status_: ConditionStatus
            status_, reason, message = (
                ("False", "InvalidSpec", problem)
                if problem
                else ("Unknown", "Accepted", f"{kind.kind} spec accepted; no controller acts on it yet")
            )
            patch.status["observedGeneration"] = generation
            patch.status["conditions"] = set_condition(
                list(status.get("conditions") or []), "Ready", status_, reason, message, generation
            )

        for decorator in (kopf.on.create, kopf.on.update, kopf.on.resume):
            decorator(GROUP, VERSION, kind.plural, id=f"intake-{kind.singular}", registry=registry, field="spec")(
                intake
            )
