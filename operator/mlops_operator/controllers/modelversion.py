"""The ModelVersion controller: identity, artifact check, reference profile, stages and gates.

Reconciled per model (one key per namespace and model, never two passes of one model at once): each version's
stage request is recorded, the identity holder of each (model, version) has its artifact checked and its reference
profile computed (``checks``), then ``logic.registry_rules.plan`` decides which version holds production and what
each is granted, and the statuses that change are written: the old production holder's before the new one's, so
that two versions never hold production at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from mlops_operator import checks, metrics
from mlops_operator.api.modelversion import ModelVersionStatus
from mlops_operator.controllers import kinds
from mlops_operator.logic import canary, version_status
from mlops_operator.logic import registry_rules as rules
from mlops_operator.logic.times import now_rfc3339
from mlops_operator.outbound import Policy
from mlops_operator.runtime import events
from mlops_operator.runtime.controller import Controller, Watch
from mlops_operator.runtime.kinds import Body, Key, key_of
from mlops_operator.runtime.manager import Manager, error_text
from mlops_operator.runtime.queue import Backoff
from mlops_operator.runtime.status import StatusWriter

log = logging.getLogger(__name__)

KIND = kinds.MODEL_VERSIONS.kind
WORKERS = 16
CONFLICT_RETRY_SECONDS = 2
# How long a pass waits for the checks it started before writing what it has.
CHECK_WAIT_SECONDS = 2.0
CONCURRENT_WRITES = 16


@dataclass(frozen=True)
class Findings:
    """What the last check of a version found: its status fields and conditions, for one generation."""

    generation: int
    fields: Body
    conditions: list[Body]
    retry_at: float | None
    """Loop time when an unreachable source or a failed check is tried again (None: nothing to retry)."""


def model_key(body: Body) -> Key:
    """The key a ModelVersion is reconciled under: its namespace and model."""
    return (body["metadata"].get("namespace") or "", str(body["spec"]["model"]))


class ModelVersions:
    """The controller; ``controller`` is what the manager runs. ``policy`` decides which sources and datasets
    may be read."""

    def __init__(self, manager: Manager, policy: Policy) -> None:
        self.policy = policy
        # uid -> the running check of a version; uid -> what the last one found.
        self._checks: dict[str, asyncio.Task[None]] = {}
        self._found: dict[str, Findings] = {}
        self._failures = Backoff(base=5, limit=checks.MAX_BACKOFF_SECONDS)
        self._writing = asyncio.Semaphore(CONCURRENT_WRITES)
        self.versions = kinds.model_versions(manager)
        self.deployments = kinds.model_deployments(manager)
        self.rollouts = kinds.canary_rollouts(manager)
        self.status = StatusWriter(kinds.MODEL_VERSIONS, self._changed_meanwhile, self._forget)
        self.controller = manager.add(
            Controller(
                name=KIND,
                resource=kinds.MODEL_VERSIONS,
                reconcile=self.reconcile,
                key=model_key,
                # A rollout's runs are the live evidence of the live-canary gate, and each version lists its runs.
                watches=(Watch(kinds.CANARY_ROLLOUTS, self._model_of_rollout),),
                forget=self._forget,
                is_echo=self.status.is_echo,
                workers=WORKERS,
            )
        )
        metrics.STATE.objects(KIND, lambda: [self.status.current(mv) for mv in self.versions])

    def _changed_meanwhile(self, body: Body) -> None:
        self.controller.queue.add_after(model_key(body), CONFLICT_RETRY_SECONDS)

    def _model_of_rollout(self, rollout: Body) -> list[Key]:
        return [model for key in kinds.referenced_deployment(rollout) if (md := self.deployments.get(key)) is not None
                for model in kinds.model_of(md)]  # fmt: skip

    def _canary_runs(self, key: Key, body: Body) -> tuple[list[Body], rules.Canary | None]:
        """The rollout runs of a version on the deployments of its model, and the latest on the deployment its
        live-canary gate names."""
        rollouts = [r for md in self.deployments.by("model", key) for r in self.rollouts.by("deployment", key_of(md))]
        runs = canary.runs_of(rollouts, str(body["spec"].get("version")))
        gate = ((body["spec"].get("liveCanary") or {}).get("deploymentRef") or {}).get("name")
        latest = next((r for r in reversed(runs) if r.get("deployment") == gate), None) if gate else None
        evidence = rules.Canary(latest["rollout"], latest["result"], latest.get("reason")) if latest else None
        return runs[-10:], evidence

    def _forget(self, body: Body) -> None:
        uid = body["metadata"]["uid"]
        self.versions.remove(key_of(body), uid)
        self.status.forget(uid)
        self._found.pop(uid, None)

    async def reconcile(self, key: Key) -> float | None:
        """One pass over the versions of one model; returns the delay before an unreachable source is tried
        again."""
        bodies = sorted(self.versions.by("model", key), key=lambda b: b["metadata"]["name"])
        statuses: dict[str, Body] = {}
        for body in bodies:
            statuses[body["metadata"]["name"]] = _acknowledged(body, self.status.status(body))
        holders = rules.identity_holders(version_status.view(b, statuses[b["metadata"]["name"]]) for b in bodies)
        held = [b for b in bodies if b["metadata"]["name"] in {h.name for h in holders.values()}]
        # The slow part (reading artifacts and datasets) runs on its own, one check per version at a time: a check
        # that ends soon is waited for (one write then says everything), a long one does not hold the model's
        # other versions; its end queues the model again.
        started = [t for b in held if (t := self._start_check(key, b, statuses[b["metadata"]["name"]]))]
        if started:
            await asyncio.wait(started, timeout=CHECK_WAIT_SECONDS)
        delays = [self._checked(b, statuses[b["metadata"]["name"]]) for b in held]
        evidence = {}
        for b in bodies:
            runs, evidence[b["metadata"]["name"]] = self._canary_runs(key, b)
            status = statuses[b["metadata"]["name"]]
            if runs:
                status["canaries"] = runs
            else:
                status.pop("canaries", None)
        plan = rules.plan([version_status.view(b, statuses[b["metadata"]["name"]], evidence[b["metadata"]["name"]])
                           for b in bodies])  # fmt: skip
        # Every status at once, except production grants, which follow once the rest is written (the old holder
        # archived): never two production versions at once.
        grants = [b for b in bodies if plan.verdicts[b["metadata"]["name"]].granted == rules.PRODUCTION]
        rest = [b for b in bodies if b not in grants]
        for batch in (rest, grants):
            written = await asyncio.gather(*(self._write(b, statuses[b["metadata"]["name"]], plan) for b in batch))
            if not all(written):
                # Changed or gone meanwhile: the next pass decides again, from what is there then (the check
                # results are kept: nothing is read twice).
                return None
        due = [d for d in delays if d is not None]
        return min(due) if due else None

    async def _write(self, body: Body, status: Body, plan: rules.Plan) -> bool:
        """Folds the plan's verdict into the version's status and writes it; an Event for a new stage."""
        verdict = plan.verdicts[body["metadata"]["name"]]
        transition = version_status.apply_verdict(status, verdict, status.get("observedGeneration"), now_rfc3339())
        async with self._writing:
            if not await self.status.write(body, ModelVersionStatus.model_validate(status)):
                return False
        if transition:
            events.record(
                _whole(body), verdict.transition_reason, verdict.transition_message or f"stage {verdict.granted}"
            )
        return True

    def _start_check(self, key: Key, body: Body, status: Body) -> asyncio.Task[None] | None:
        """The running check of the version, started if one is due: its artifact or profile is not settled, no
        check of this generation has ended (or its retry time has come)."""
        uid, generation = body["metadata"]["uid"], body["metadata"].get("generation", 1)
        running = self._checks.get(uid)
        if running is not None:
            return running
        found = self._found.get(uid)
        if found is not None and found.generation == generation:
            if found.retry_at is None or found.retry_at > asyncio.get_running_loop().time():
                return None  # this generation is checked, or its retry is not due yet
        elif checks.settled(body["spec"], status):
            return None
        task = asyncio.get_running_loop().create_task(self._check(key, body, json.loads(json.dumps(status))))
        self._checks[uid] = task
        return task

    async def _check(self, key: Key, body: Body, status: Body) -> None:
        """The artifact check and the reference profile of one version, on a copy of its status; the findings are
        kept for the model's passes, which are told."""
        spec, uid, generation = body["spec"], body["metadata"]["uid"], body["metadata"].get("generation", 1)
        try:
            artifact = await checks.check_artifact(spec, status, generation, self.policy)
            profile = await checks.ensure_profile(_whole(body), spec, status, generation, self.policy)
            delay = min((d for d in (artifact, profile) if d is not None), default=None)
            self._failures.succeeded(key_of(body))
        except Exception as exc:
            delay = self._failures.failed(key_of(body))
            log.warning("checking ModelVersion %s/%s failed (%s); trying again in %.0fs", *key_of(body),
                        error_text(exc), delay)  # fmt: skip
        finally:
            self._checks.pop(uid, None)
        if (self.versions.get(key_of(body)) or {"metadata": {}})["metadata"].get("uid") != uid:
            return  # deleted meanwhile: nothing to keep
        self._found[uid] = Findings(
            generation,
            {k: status.get(k) for k in checks.FIELDS},
            [c for c in status.get("conditions") or [] if c.get("type") in checks.CONDITIONS],
            None if delay is None else asyncio.get_running_loop().time() + delay,
        )
        self.controller.queue.add(key)

    def _checked(self, body: Body, status: Body) -> float | None:
        """Folds the version's latest check findings into ``status``; returns when its retry is due."""
        uid, generation = body["metadata"]["uid"], body["metadata"].get("generation", 1)
        found = self._found.get(uid)
        if found is None or found.generation != generation:
            return None
        for field, value in found.fields.items():
            if value is None:
                status.pop(field, None)
            else:
                status[field] = value
        kept = [c for c in status.get("conditions") or [] if c.get("type") not in checks.CONDITIONS]
        status["conditions"] = found.conditions + kept
        if found.retry_at is None or uid in self._checks:
            return None
        return max(0.0, found.retry_at - asyncio.get_running_loop().time())


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
