"""Intake: every object of every kind is read through its typed model and acknowledged in status.

Only the kinds without a controller yet pass here (it goes away when every kind has one): it proves that what the
API server admitted is also what the models accept, records observedGeneration, and says in the Ready condition
that the spec is accepted and not acted on yet.
"""

from __future__ import annotations

from typing import Any

import kopf

from mlops_operator import GROUP, VERSION
from mlops_operator.api.crds import KINDS, Kind
from mlops_operator.logic.conditions import ConditionStatus, set_condition


def register(registry: kopf.OperatorRegistry, kinds: tuple[Kind, ...] = KINDS) -> None:
    """Register the intake handlers of ``kinds`` in ``registry``."""
    for kind in kinds:

        def intake(
            spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch, kind: Kind = kind, **_: Any
        ) -> None:
            generation = meta.get("generation")
            problem = kind.spec_problem(dict(spec))
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
