"""The AlertRule controller: evaluates each rule on its interval (PromQL against a Prometheus, conditions over our
own resources from the operator's stores, a deployment's service levels compiled to PromQL), moves its instances
through pending, firing and resolved (``logic.alerting``), and notifies the receivers when they are due, retrying
failed deliveries with backoff. Instances, what each receiver was told of them and the delivery state live in
status, so that a restart repeats nothing recorded and loses nothing.

A pass: the spec checked (the schema, then the PromQL or CEL parsed: Ready=False, InvalidExpr); a rule exported as
a PrometheusRule is applied and left to Prometheus; else, if the interval has passed since status.lastEvaluation (or
the spec changed), the rule evaluated; then the notifications due sent, every receiver at once, each within its
timeout; the status written. It looks again at the next evaluation, or sooner when a group wait or a retry falls
due.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp

from mlops_operator import kube, metrics
from mlops_operator.api.alertrule import (
    AlertRuleSpec,
    AlertRuleStatus,
    Receiver,
)
from mlops_operator.api.common import PrometheusProvider, duration_seconds
from mlops_operator.api.crds import BY_KIND
from mlops_operator.builders.prometheus_rule import prometheus_rule
from mlops_operator.controllers import kinds
from mlops_operator.logic import alert_expr, alert_rule, alerting
from mlops_operator.outbound import Policy
from mlops_operator.providers.prometheus import Prometheus, QueryError, Sessions, connect, secret_reader
from mlops_operator.receivers import Notification, deliver, payloads, secret_refs
from mlops_operator.runtime import events
from mlops_operator.runtime.controller import Controller
from mlops_operator.runtime.kinds import Body, Key, Resource, key_of
from mlops_operator.runtime.manager import Manager
from mlops_operator.runtime.status import StatusWriter, wire

log = logging.getLogger(__name__)

KIND = "AlertRule"
WORKERS = 8
CONFLICT_RETRY_SECONDS = 2
PROMETHEUS_RULES = Resource("monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule")
EXTERNAL_URL = "mlops-operator"


class Unavailable(Exception):
    """The rule cannot be evaluated now: ``reason`` is the Ready condition's."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class AlertRules:
    def __init__(self, manager: Manager, policy: Policy | None = None) -> None:
        self.api = manager.api
        self.policy = policy or Policy()
        self.rules = manager.store(kinds.ALERT_RULES, kinds.compact_rule)
        self.watched: dict[str, Any] = {
            "ModelVersion": kinds.model_versions(manager),
            "ModelDeployment": kinds.model_deployments(manager),
            "CanaryRollout": kinds.canary_rollouts(manager),
            "DriftMonitor": kinds.drift_monitors(manager),
            "AlertRule": self.rules,
        }
        for store in self.watched.values():
            store.add_index("namespace", kinds.namespace_of)
            store.add_index("label", kinds.labels_of)
        self.status = StatusWriter(kinds.ALERT_RULES, self._changed_meanwhile, self._forget, manager.api)
        self.sessions = Sessions()
        self._http: aiohttp.ClientSession | None = None
        self._secret = secret_reader(manager.api)
        self._cel = alert_expr.CelObjects()
        self._evaluated: dict[str, datetime] = {}
        """uid -> the last evaluation, when status does not hold it yet (an unchanged outcome is written later)."""
        self.controller = manager.add(
            Controller(
                name=KIND,
                resource=kinds.ALERT_RULES,
                reconcile=self.reconcile,
                forget=self._forget,
                is_echo=self.status.is_echo,
                workers=WORKERS,
            )
        )
        metrics.STATE.objects(KIND, lambda: [self.status.current(r) for r in self.rules])

    def _changed_meanwhile(self, body: Body) -> None:
        self.controller.queue.add_after(key_of(body), CONFLICT_RETRY_SECONDS)

    def _forget(self, body: Body) -> None:
        self.rules.remove(key_of(body), body["metadata"]["uid"])
        self.status.forget(body["metadata"]["uid"])
        self._evaluated.pop(body["metadata"]["uid"], None)
        metrics.forget_alerts(body["metadata"]["namespace"], body["metadata"]["name"])

    async def close(self) -> None:
        await self.sessions.close()
        if self._http is not None:
            await self._http.close()

    def http(self) -> aiohttp.ClientSession:
        """The session receivers are called through (the outbound policy checks every connection)."""
        if self._http is None or self._http.closed:
            self._http = self.policy.session()
        return self._http

    # --- the pass ------------------------------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> float | None:
        body = self.rules.get(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        meta = body["metadata"]
        namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation")
        stored = self.status.status(body)
        status = AlertRuleStatus.model_validate(stored)
        now = datetime.now(UTC)
        problem = BY_KIND[KIND].spec_problem(body.get("spec") or {})
        if problem is not None:
            return await self._not_ready(body, status, stored, "InvalidSpec", problem)
        spec = AlertRuleSpec.model_validate(body["spec"])
        invalid = alert_rule.check(spec)
        if invalid is not None:
            return await self._not_ready(body, status, stored, "InvalidExpr", invalid)
        if spec.prometheus_rule:
            return await self._export(body, spec, status, stored)

        instances = [alert_rule.instance(a) for a in status.alerts]
        deliveries = {r.name: alert_rule.delivery(r) for r in status.receivers}
        receivers = [alert_rule.receiver(r) for r in spec.receivers]
        interval = duration_seconds(spec.interval)
        ready: alert_rule.ReadyState | None = None
        if spec.suspend:
            instances = alerting.expire(instances, now)
            status.alerts = [alert_rule.alert(i) for i in instances]
            await self._write(body, status, stored, spec, instances, alert_rule.SUSPENDED, None)
            return None
        changed = status.observed_generation != generation
        due_in = alert_rule.due_in(interval, now, changed, status.last_evaluation, self._evaluated.get(meta["uid"]))
        if due_in <= 0:
            started = time.monotonic()
            try:
                samples, queries = await self._samples(namespace, spec)
                instances, ready = alert_rule.evaluate(name, spec, instances, samples, now)
                status.queries = queries
            except Unavailable as exc:
                ready = ("False", exc.reason, str(exc))
                instances = alerting.expire(instances, now)
            status.last_evaluation = now
            self._evaluated[meta["uid"]] = now
            status.evaluation_seconds = round(time.monotonic() - started, 6)
            metrics.record_evaluation(namespace, name, now.timestamp(), status.evaluation_seconds)
            due_in = interval
        alerting.settle(instances, receivers, now)
        schedule = alerting.plan(receivers, instances, deliveries,
                                 alert_rule.grouping(spec), now)  # fmt: skip
        if schedule.due:
            await self._notify(body, spec, schedule.due, instances, deliveries, now)
            schedule = alerting.plan(receivers, instances, deliveries, alert_rule.grouping(spec), datetime.now(UTC))
        status.alerts = [alert_rule.alert(i) for i in instances]
        status.receivers = [alert_rule.receiver_status(deliveries.get(r.name) or alerting.Delivery(r.name))
                            for r in receivers]  # fmt: skip
        after = datetime.now(UTC)
        requeue = alert_rule.requeue(due_in, (after - now).total_seconds(), schedule.next_at, after)
        if not await self._write(body, status, stored, spec, instances, ready, deliveries):
            return None
        return requeue

    # --- evaluation ----------------------------------------------------------------------------------------------

    async def _samples(self, namespace: str, spec: AlertRuleSpec) -> tuple[list[alerting.Sample], list[str]]:
        if spec.condition is not None:
            return self._conditions(namespace, spec), []
        ran = alert_rule.queries(namespace, spec)
        prometheus = self._prometheus(spec.prometheus, namespace)
        at = datetime.now(UTC)
        try:
            answers = await asyncio.gather(*(prometheus.vector(q, at) for _, q in ran))
        except QueryError as exc:
            raise Unavailable("ProviderUnreachable", f"Prometheus: {exc}") from None
        return alert_rule.query_samples(namespace, spec, ran, answers), [q for _, q in ran]

    def _prometheus(self, spec: PrometheusProvider | None, namespace: str) -> Prometheus:
        found = connect(spec, namespace, self._secret, self.policy, self.sessions)
        if found is None:
            raise Unavailable("ProviderUnreachable", "no Prometheus: set spec.prometheus, or start the operator "
                              "with --prometheus-url")  # fmt: skip
        return found

    def _conditions(self, namespace: str, spec: AlertRuleSpec) -> list[alerting.Sample]:
        """The instances of a condition rule: its selector's candidates, narrowed by the stores' indexes."""
        condition = spec.condition
        assert condition is not None
        selector = condition.selector
        store = self.watched[selector.kind]
        if selector.name is not None:
            found = store.get((namespace, selector.name))
            candidates = [found] if found is not None else []
        elif selector.match_labels:
            # The objects carrying the selector's first label: the index narrows, the condition checks the rest.
            candidates = store.by("label", (namespace, *next(iter(selector.match_labels.items()))))
        else:
            candidates = store.by("namespace", namespace)
        cel = None
        if condition.cel is not None:
            program = alert_expr.compile_cel(condition.cel)

            def cel(obj: Mapping[str, Any]) -> tuple[bool, str | None]:
                return program.holds(self._cel.of(obj))

        samples = (alert_rule.condition_sample(spec, namespace, obj, cel) for obj in candidates)
        return [sample for sample in samples if sample is not None]

    # --- notification --------------------------------------------------------------------------------------------

    async def _notify(self, body: Body, spec: AlertRuleSpec, due: Sequence[alerting.Due],
                      instances: list[alerting.Instance], deliveries: dict[str, alerting.Delivery],
                      now: datetime) -> None:  # fmt: skip
        by_name = {r.name: r for r in spec.receivers}
        by_fp = {i.fingerprint: i for i in instances}
        interval = duration_seconds(spec.interval)

        async def one(item: alerting.Due) -> None:
            receiver = by_name[item.receiver.name]
            delivery = deliveries.get(receiver.name) or alerting.Delivery(receiver.name)
            if receiver.event is not None:
                await self._events(body, spec, item, by_fp)
                deliveries[receiver.name] = alerting.delivered(instances, item, delivery, now)
                metrics.ALERT_NOTIFICATIONS.labels("event", "success").inc()
                return
            kind = alert_rule.receiver_type(receiver)
            try:
                credentials = await self._credentials(body["metadata"]["namespace"], receiver)
            except LookupError as exc:
                deliveries[receiver.name] = alerting.failed(delivery, f"SecretMissing: {exc}", now)
                metrics.ALERT_NOTIFICATIONS.labels(kind, "failure").inc()
                return
            alerts = payloads(by_fp, item, now, interval, kind)
            meta = body["metadata"]
            notification = Notification(meta["namespace"], meta["name"], receiver.name,
                                        f"{meta['namespace']}/{meta['name']}/{receiver.name}", alerts,
                                        EXTERNAL_URL)  # fmt: skip
            timeout = duration_seconds(receiver.timeout)
            result = await deliver(receiver, credentials, notification, self.http(), self.policy.receiver_hosts,
                                   timeout)  # fmt: skip
            if result.ok:
                deliveries[receiver.name] = alerting.delivered(instances, item, delivery, datetime.now(UTC))
                metrics.ALERT_NOTIFICATIONS.labels(kind, "success").inc()
            else:
                error = result.error or "failed"
                deliveries[receiver.name] = alerting.failed(delivery, error, datetime.now(UTC))
                metrics.ALERT_NOTIFICATIONS.labels(kind, "failure").inc()
                log.info("%s/%s: receiver %s: %s", meta["namespace"], meta["name"], receiver.name, error)

        await asyncio.gather(*(one(item) for item in due))

    async def _credentials(self, namespace: str, receiver: Receiver) -> dict[str, str]:
        return {role: (await self._secret(namespace, ref)).strip() for role, ref in secret_refs(receiver).items()}

    async def _events(self, body: Body, spec: AlertRuleSpec, item: alerting.Due,
                      by_fp: Mapping[str, alerting.Instance]) -> None:  # fmt: skip
        posts = []
        for fps, reason, type_ in ((item.firing, "AlertFiring", "Warning"), (item.resolved, "AlertResolved", "Normal")):
            for fp in fps:
                inst = by_fp.get(fp)
                if inst is None:
                    continue
                message = alert_rule.event_message(inst, reason)
                posts.append(events.post(body, reason, message, type_))  # type: ignore[arg-type]
                target = self._resource_of(spec, inst)
                if target is not None:
                    posts.append(events.post(target, reason, message, type_))  # type: ignore[arg-type]
        await asyncio.gather(*posts)

    def _resource_of(self, spec: AlertRuleSpec, inst: alerting.Instance) -> Body | None:
        if spec.condition is None:
            return None
        store = self.watched.get(inst.labels.get("kind", ""))
        if store is None:
            return None
        body: Body | None = store.get((inst.labels.get("namespace", ""), inst.labels.get("name", "")))
        return body

    # --- export --------------------------------------------------------------------------------------------------

    async def _export(self, body: Body, spec: AlertRuleSpec, status: AlertRuleStatus, stored: Body) -> float | None:
        wanted = prometheus_rule(body)
        kube.register_kind(PROMETHEUS_RULES.api_version, PROMETHEUS_RULES.kind, PROMETHEUS_RULES.plural)
        try:
            await self.api.apply(wanted)
        except Exception as exc:
            failure = alert_rule.export_failure(str(exc))
            return await self._not_ready(body, status, stored, "PrometheusRuleFailed", failure, retry=60.0)
        status.state, status.instances, status.alerts = None, None, []
        status.observed_generation = body["metadata"].get("generation")
        ready = alert_rule.exported(body["metadata"]["name"])
        status.conditions = alert_rule.ready_conditions(stored, status.observed_generation, ready)
        await self.status.write(body, status)
        return None

    # --- status --------------------------------------------------------------------------------------------------

    async def _not_ready(self, body: Body, status: AlertRuleStatus, stored: Body, reason: str, message: str,
                         retry: float | None = None) -> float | None:  # fmt: skip
        status.observed_generation = body["metadata"].get("generation")
        status.conditions = alert_rule.ready_conditions(stored, status.observed_generation, ("False", reason, message))
        await self.status.write(body, status)
        return retry

    async def _write(self, body: Body, status: AlertRuleStatus, stored: Body, spec: AlertRuleSpec,
                     instances: Sequence[alerting.Instance], ready: alert_rule.ReadyState | None,
                     deliveries: Mapping[str, alerting.Delivery] | None) -> bool:  # fmt: skip
        state, since, value, active = alerting.rule_state(instances)
        status.state, status.active_since, status.value, status.instances = state, since, value, active
        generation = body["metadata"].get("generation")
        status.observed_generation = generation
        ready = ready or alert_rule.delivery_ready(deliveries, instances)
        status.conditions = alert_rule.ready_conditions(stored, generation, ready)
        meta = body["metadata"]
        metrics.record_alerts(meta["namespace"], meta["name"], [i.state for i in instances])
        if alert_rule.only_timestamps(stored, wire(status)):
            return True
        return await self.status.write(body, status)
