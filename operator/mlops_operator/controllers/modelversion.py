"""The ModelVersion controller: identity, artifact check, reference profile, stages and gates.

Reconciled per model (one key per namespace and model, never two passes of one model at once): each version's
stage request is recorded, the identity holder of each (model, version) has its artifact checked and its reference
profile computed (``checks``), then ``logic.registry_rules.plan`` decides which version holds production and what
each is granted, and the statuses that change are written: the old production holder's before the new one's, so
that two versions never hold production at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mlops_operator import checks, metrics
from mlops_operator.api.modelversion import ModelVersionStatus
from mlops_operator.controllers import kinds
from mlops_operator.logic import registry_rules as rules
from mlops_operator.logic import version_status
from mlops_operator.logic.times import now_rfc3339
from mlops_operator.outbound import Policy
from mlops_operator.runtime import events
from mlops_operator.runtime.controller import Controller
from mlops_operator.runtime.kinds import Body, Key, key_of
from mlops_operator.runtime.manager import Manager
from mlops_operator.runtime.status import StatusWriter

KIND = kinds.MODEL_VERSIONS.kind
WORKERS = 16
CONFLICT_RETRY_SECONDS = 2


def model_key(body: Body) -> Key:
    """The key a ModelVersion is reconciled under: its namespace and model."""
    return (body["metadata"].get("namespace") or "", str(body["spec"]["model"]))


class ModelVersions:
    """The controller; ``controller`` is what the manager runs. ``policy`` decides which sources and datasets
    may be read."""

    def __init__(self, manager: Manager, policy: Policy) -> None:
        self.policy = policy
        # uid -> (generation, loop time): an unreachable source of this generation is not tried before then.
        self._not_before: dict[str, tuple[int, float]] = {}
        self.versions = kinds.model_versions(manager)
        self.status = StatusWriter(kinds.MODEL_VERSIONS, self._changed_meanwhile, self._forget)
        self.controller = manager.add(
            Controller(
                name=KIND,
                resource=kinds.MODEL_VERSIONS,
                reconcile=self.reconcile,
                key=model_key,
                urgent=lambda mv: (
                    (mv.get("status") or {}).get("observedGeneration") != mv["metadata"].get("generation")
                ),
                forget=self._forget,
                is_echo=self.status.is_echo,
                workers=WORKERS,
            )
        )
        metrics.STATE.objects(KIND, lambda: [self.status.current(mv) for mv in self.versions])

    def _changed_meanwhile(self, body: Body) -> None:
        self.controller.queue.add_after(model_key(body), CONFLICT_RETRY_SECONDS)

    def _forget(self, body: Body) -> None:
        self.versions.remove(key_of(body), body["metadata"]["uid"])
        self.status.forget(body["metadata"]["uid"])
        self._not_before.pop(body["metadata"]["uid"], None)

    async def reconcile(self, key: Key) -> float | None:
        """One pass over the versions of one model; returns the delay before an unreachable source is tried
        again."""
        bodies = sorted(self.versions.by("model", key), key=lambda b: b["metadata"]["name"])
        statuses: dict[str, Body] = {}
        for body in bodies:
            statuses[body["metadata"]["name"]] = _acknowledged(body, self.status.status(body))
        holders = rules.identity_holders(version_status.view(b, statuses[b["metadata"]["name"]]) for b in bodies)
        held = {h.name for h in holders.values()}
        # The slow part (reads artifacts and datasets), for every identity holder at once.
        delays = await asyncio.gather(
            *(
                self._check(body, statuses[body["metadata"]["name"]])
                for body in bodies
                if body["metadata"]["name"] in held
            )
        )
        plan = rules.plan([version_status.view(b, statuses[b["metadata"]["name"]]) for b in bodies])
        # Every status at once, except production grants, which follow once the rest is written (the old holder
        # archived): never two production versions at once.
        grants = [b for b in bodies if plan.verdicts[b["metadata"]["name"]].granted == rules.PRODUCTION]
        rest = [b for b in bodies if b not in grants]
        for batch in (rest, grants):
            written = await asyncio.gather(*(self._write(b, statuses[b["metadata"]["name"]], plan) for b in batch))
            if not all(written):
                # Changed or gone meanwhile: the next pass decides again, from what is there then.
                return None
        due = [d for d in delays if d is not None]
        return min(due) if due else None

    async def _write(self, body: Body, status: Body, plan: rules.Plan) -> bool:
        """Folds the plan's verdict into the version's status and writes it; an Event for a new stage."""
        verdict = plan.verdicts[body["metadata"]["name"]]
        transition = version_status.apply_verdict(status, verdict, status.get("observedGeneration"), now_rfc3339())
        if not await self.status.write(body, ModelVersionStatus.model_validate(status)):
            return False
        if transition:
            events.record(
                _whole(body), verdict.transition_reason, verdict.transition_message or f"stage {verdict.granted}"
            )
        return True

    async def _check(self, body: Body, status: Body) -> float | None:
        """The artifact check and the reference profile of one version (each done once per spec)."""
        spec, uid, generation = body["spec"], body["metadata"]["uid"], body["metadata"].get("generation", 1)
        now = asyncio.get_running_loop().time()
        waiting = self._not_before.get(uid)
        if waiting is not None and waiting[0] == generation and waiting[1] > now:
            return waiting[1] - now  # a source that did not answer: its backoff runs
        artifact = await checks.check_artifact(spec, status, generation, self.policy)
        profile = await checks.ensure_profile(_whole(body), spec, status, generation, self.policy)
        due = min((d for d in (artifact, profile) if d is not None), default=None)
        if due is None:
            self._not_before.pop(uid, None)
        else:
            self._not_before[uid] = (generation, now + due)
        return due


def _acknowledged(body: Body, status: Body) -> Body:
    """``status`` with the current stage request recorded (with the time of the write that made it) and the
    generation acted on."""
    desired = body["spec"].get("stage", version_status.DEFAULT_STAGE)
    if (status.get("requested") or {}).get("stage") != desired:
        status["requested"] = {"stage": desired, "at": body.get("stageRequestedAt")}
    status["observedGeneration"] = body["metadata"].get("generation", 1)
    return status


def _whole(body: Body) -> dict[str, Any]:
    """The stored body as an owner or the object of an Event (apiVersion and kind set)."""
    return {**body, "apiVersion": kinds.MODEL_VERSIONS.api_version, "kind": KIND}
