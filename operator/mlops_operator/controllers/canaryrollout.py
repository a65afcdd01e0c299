"""The CanaryRollout controller: runs each new canary version of a ModelDeployment through the rollout's steps,
measures it against the stable version on live traffic, and asks for weights through its status.

Declarations: it reconciles CanaryRollouts and watches ModelDeployments (the rollouts that steer each). A pass reads
the rollout's status (the step machine's memory), what its deployment reports and the verbs given; the step machine
(``logic.rollout``) decides; when a measurement window has closed the provider measures it and ``logic.analysis``
judges it; the status is written, then the Events posted and the verbs consumed. The deployment controller reads
the weight from the status and moves the traffic; nothing here touches the deployment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from mlops_operator import metrics
from mlops_operator.api.canaryrollout import (
    RECENT_MEASUREMENTS,
    AnalysisMetric,
    CanaryRolloutSpec,
    CanaryRolloutStatus,
    Measurement,
    MetricStatus,
    Weights,
)
from mlops_operator.api.common import Condition, MetricProvider
from mlops_operator.api.crds import BY_KIND
from mlops_operator.controllers import kinds
from mlops_operator.logic import rollout
from mlops_operator.logic.analysis import MetricVerdict, judge_window
from mlops_operator.logic.conditions import set_condition
from mlops_operator.outbound import Policy
from mlops_operator.providers import Provider, Target
from mlops_operator.providers.direct import Direct
from mlops_operator.providers.prometheus import Sessions, connect, secret_reader
from mlops_operator.runtime import events
from mlops_operator.runtime.controller import Controller, Watch
from mlops_operator.runtime.kinds import Body, Key, key_of
from mlops_operator.runtime.manager import Manager
from mlops_operator.runtime.status import StatusWriter

log = logging.getLogger(__name__)

KIND = kinds.CANARY_ROLLOUTS.kind
WORKERS = 16
CONFLICT_RETRY_SECONDS = 2
ACTIVE = ("Progressing", "Paused", "Promoting", "RollingBack")


class CanaryRollouts:
    """The controller; ``controller`` is what the manager runs. ``policy`` decides which Prometheus addresses a
    rollout may name."""

    def __init__(self, manager: Manager, policy: Policy | None = None) -> None:
        self.api = manager.api
        self.policy = policy or Policy()
        self.rollouts = kinds.canary_rollouts(manager)
        self.deployments = kinds.model_deployments(manager)
        self.versions = kinds.model_versions(manager)
        self.status = StatusWriter(kinds.CANARY_ROLLOUTS, self._changed_meanwhile, self._forget, manager.api)
        self.direct = Direct(manager.api)
        self.sessions = Sessions()
        self._secret = secret_reader(manager.api)
        self.controller = manager.add(
            Controller(
                name=KIND,
                resource=kinds.CANARY_ROLLOUTS,
                reconcile=self.reconcile,
                watches=(Watch(kinds.MODEL_DEPLOYMENTS, self._rollouts_of),),
                forget=self._forget,
                is_echo=self.status.is_echo,
                workers=WORKERS,
            )
        )
        metrics.STATE.objects(KIND, lambda: [self.status.current(r) for r in self.rollouts])
        metrics.STATE.phases(KIND, lambda: [(self.status.status(r).get("phase") or "") for r in self.rollouts])

    def _rollouts_of(self, md: Body) -> list[Key]:
        return [key_of(r) for r in self.rollouts.by("deployment", key_of(md))]

    def _changed_meanwhile(self, body: Body) -> None:
        self.controller.queue.add_after(key_of(body), CONFLICT_RETRY_SECONDS)

    def _forget(self, body: Body) -> None:
        uid = body["metadata"]["uid"]
        self.rollouts.remove(key_of(body), uid)
        self.status.forget(uid)
        self.direct.forget(uid)

    async def reconcile(self, key: Key) -> float | None:
        body = self.rollouts.get(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        meta = body["metadata"]
        stored = self.status.status(body)
        problem = BY_KIND[KIND].spec_problem(body.get("spec") or {})
        if problem is not None:
            status = CanaryRolloutStatus.model_validate(stored)
            invalid = ("False", "InvalidSpec", problem)
            status.conditions = _conditions(stored, meta.get("generation"), invalid, invalid,
                                            ("True", "InvalidSpec", problem))  # fmt: skip
            status.observed_generation = meta.get("generation")
            await self.status.write(body, status)
            return None
        spec = CanaryRolloutSpec.model_validate(body["spec"])
        status = CanaryRolloutStatus.model_validate(stored)
        namespace = meta["namespace"]
        md_body = self.deployments.get((namespace, spec.deployment_ref.name))
        md = _deployment(spec.deployment_ref.name, md_body, meta["name"])
        plan, config, hash_ = rollout.stages(spec), rollout.settings(spec), rollout.spec_hash(spec)
        annotations = meta.get("annotations") or {}
        verbs = {k: str(annotations[k]) for k in rollout.VERBS if k in annotations}
        now = datetime.now(UTC)

        def decide(verdict: rollout.Verdict | None = None) -> rollout.Outcome:
            return rollout.decide(plan, config, spec.candidate, hash_, status.phase, status.run, status.history, md,
                                  verbs, now, verdict)  # fmt: skip

        outcome = decide()
        metric_status = list(status.metrics)
        requeue: list[float] = [outcome.requeue_after] if outcome.requeue_after is not None else []
        if outcome.window is not None or outcome.measuring is not None:
            assert spec.analysis is not None and outcome.run is not None and md_body is not None
            provider = self._provider(spec.analysis.provider, namespace)
            target = self._target(md_body, outcome.run.candidate, outcome.run.stable or md.stable)
            if outcome.window is not None:
                window = outcome.window
                chosen = _chosen(spec.analysis.metrics, window.metrics)
                values = await provider.measure(meta["uid"], target, chosen, window.start, window.end)
                verdict, records = judge_window(chosen, values, spec.analysis.judge)
                metrics.CANARY_MEASUREMENTS.labels(verdict.result).inc()
                metric_status = _record(metric_status, spec.analysis.metrics, records, window.end, window.step)
                outcome = decide(verdict)
                requeue = [outcome.requeue_after] if outcome.requeue_after is not None else []
            if outcome.measuring is not None:
                chosen = _chosen(spec.analysis.metrics, outcome.measuring.metrics)
                try:
                    again = await provider.sample(meta["uid"], target, chosen, outcome.measuring.start, now)
                except Exception as exc:
                    log.info("%s/%s: sampling failed: %s", namespace, meta["name"], exc)
                    again = 2.0
                if again is not None:
                    requeue.append(again)
        if outcome.new_run:
            metric_status = _fresh(spec.analysis.metrics) if spec.analysis is not None else []

        # The verbs' hints name this rollout (the machine does not know its name).
        outcome.message = outcome.message.replace("<rollout>", meta["name"])
        new = _status(status, outcome, plan, md, metric_status, meta.get("generation"))
        if not await self.status.write(body, new):
            return None
        # Awaited, right after the status they describe: a restart between the two loses as few as can be.
        await asyncio.gather(*(events.post(body, reason, message, type_) for reason, message, type_ in outcome.events))
        if outcome.consumed:
            # After the status that acted on them is written: a verb is never lost, and one seen twice is stale.
            patch = {"annotations": dict.fromkeys(outcome.consumed)}
            await self.api.patch_metadata(kinds.CANARY_ROLLOUTS.api_version, KIND, namespace, meta["name"], patch)
        return min(requeue) if requeue else None

    def _target(self, md_body: Body, candidate: str, stable: str | None) -> Target:
        spec = md_body.get("spec") or {}
        namespace, model = md_body["metadata"]["namespace"], str(spec.get("model"))
        prediction = None
        for mv in self.versions.by("model", (namespace, model)):
            if str((mv.get("spec") or {}).get("version")) == candidate:
                prediction = ((mv.get("spec") or {}).get("reference") or {}).get("prediction")
        port = int((spec.get("server") or {}).get("port") or 8080)
        return Target(namespace, md_body["metadata"]["name"], model, candidate, stable, port, prediction)

    async def close(self) -> None:
        """Closes the providers' connections (the operator is stopping)."""
        await self.direct.close()
        await self.sessions.close()

    def _provider(self, spec: MetricProvider | None, namespace: str) -> Provider:
        if spec is not None and spec.prometheus is None:
            return self.direct
        found = connect(spec.prometheus if spec else None, namespace, self._secret, self.policy, self.sessions)
        return found or self.direct


def _deployment(name: str, body: Body | None, rollout_name: str) -> rollout.Deployment:
    if body is None:
        return rollout.Deployment(name, exists=False)
    spec, status = body.get("spec") or {}, body.get("status") or {}
    canary = next((v for v in status.get("versions") or [] if v.get("role") == "canary"), None)
    driver = status.get("canary") or {}
    ready: Body = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return rollout.Deployment(
        name,
        canary_strategy=((spec.get("rollout") or {}).get("strategy") or "rolling") == "canary",
        stable=status.get("version"),
        canary=str(canary["version"]) if canary else None,
        canary_weight=int(canary.get("weight", 0)) if canary else 0,
        stopped=driver.get("stopped") if driver.get("rollout") == rollout_name else None,
        target=driver.get("candidate"),
        message=ready.get("message"),
    )


def _chosen(every: Sequence[AnalysisMetric], names: Sequence[str] | None) -> list[AnalysisMetric]:
    return [m for m in every if names is None or m.name in names]


def _fresh(every: Sequence[AnalysisMetric]) -> list[MetricStatus]:
    return [MetricStatus(name=m.name, source=m.builtin or m.query or "", dry_run=m.dry_run) for m in every]


def _record(
    current: list[MetricStatus], every: Sequence[AnalysisMetric], records: list[MetricVerdict], at: datetime,
    step: int,
) -> list[MetricStatus]:  # fmt: skip
    """The per-metric status with one more measurement of each metric in ``records``."""
    by_name = {m.name: m for m in current}
    out = []
    for metric in every:
        entry = by_name.get(metric.name) or _fresh([metric])[0]
        entry = entry.model_copy(update={"source": metric.builtin or metric.query or "", "dry_run": metric.dry_run})
        record = next((r for r in records if r.name == metric.name), None)
        if record is not None:
            counts = {"Pass": "passed", "Fail": "failed", "Inconclusive": "inconclusive", "NoData": "no_data",
                      "Error": "errors"}  # fmt: skip
            field = counts[record.verdict]
            measurement = Measurement(at=at, step=step, canary=record.canary, stable=record.stable,
                                      verdict=record.verdict, message=record.message[:1024])  # fmt: skip
            entry = entry.model_copy(update={
                "canary": record.canary, "stable": record.stable, "verdict": record.verdict,
                "message": record.message[:1024], field: getattr(entry, field) + 1,
                "recent": [*entry.recent, measurement][-RECENT_MEASUREMENTS:],
            })  # fmt: skip
        out.append(entry)
    return out


def _conditions(
    stored: Body, generation: int | None, ready: tuple[Any, str, str], progressing: tuple[Any, str, str],
    degraded: tuple[Any, str, str],
) -> list[Condition]:  # fmt: skip
    conditions = stored.get("conditions") or []
    for type_, verdict in (("Ready", ready), ("Progressing", progressing), ("Degraded", degraded)):
        conditions = set_condition(conditions, type_, *verdict, generation)
    return [Condition.model_validate(c) for c in conditions]


def _status(
    old: CanaryRolloutStatus, outcome: rollout.Outcome, plan: list[rollout.Stage], md: rollout.Deployment,
    metric_status: list[MetricStatus], generation: int | None,
) -> CanaryRolloutStatus:  # fmt: skip
    run = outcome.run
    phase, reason, message = outcome.phase, outcome.reason, outcome.message
    active = phase in ACTIVE
    ready = ("True", reason, message) if phase in ("Idle", "Promoted") else ("False", reason, message)
    progressing = ("True", reason, message) if active else ("False", reason, message)
    degraded = ("True", reason, message) if outcome.degraded else ("False", "AsExpected", "nothing has failed")
    applied = None
    if run is not None and md.exists:
        on_candidate = md.canary == run.candidate
        canary = md.canary_weight if on_candidate else 100 if md.stable == run.candidate else 0
        applied = Weights(stable=100 - canary, canary=canary)
    wire_old = old.wire()
    return CanaryRolloutStatus(
        observed_generation=generation,
        conditions=_conditions(wire_old, generation, ready, progressing, degraded),
        phase=phase,
        candidate=run.candidate if run else None,
        stable=run.stable if run else md.stable,
        current_step=min(run.step, len(plan)) if run else None,
        steps=len(plan),
        weights=Weights(stable=100 - outcome.weight, canary=outcome.weight) if run else None,
        applied=applied,
        message=message[:4096],
        run=run,
        metrics=metric_status,
        history=outcome.history,
    )
