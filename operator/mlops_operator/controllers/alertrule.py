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
    MAX_INSTANCES,
    AlertRuleSpec,
    AlertRuleStatus,
    Receiver,
)
from mlops_operator.api.common import PrometheusProvider, SecretKeyRef, duration_seconds
from mlops_operator.api.crds import BY_KIND
from mlops_operator.builders.prometheus_rule import prometheus_rule
from mlops_operator.controllers import kinds
from mlops_operator.logic import alert_expr, alert_rule, alerting
from mlops_operator.outbound import UNRESTRICTED, Policy
from mlops_operator.providers.prometheus import Prometheus, QueryError, Sessions, secret_reader
from mlops_operator.receivers import AlertPayload, Notification, deliver
from mlops_operator.runtime import events
from mlops_operator.runtime.controller import Controller
from mlops_operator.runtime.kinds import Body, Key, Resource, key_of
from mlops_operator.runtime.manager import Manager
from mlops_operator.runtime.status import StatusWriter, wire

log = logging.getLogger(__name__)

KIND = "AlertRule"
WORKERS = 8
CONFLICT_RETRY_SECONDS = 2
PROMETHEUS_ENV = "MLOPS_OPERATOR_PROMETHEUS_URL"
PROMETHEUS_RULES = Resource("monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule")
EXTERNAL_URL = "mlops-operator"
CEL_OBJECTS = 20_000
"""Resources kept converted for CEL rules (by uid and resourceVersion)."""


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
        self._cel_objects: dict[tuple[str, str], alert_expr.CelObject] = {}
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
            suspended: alert_rule.ReadyState = ("False", "Suspended",
                                     "suspended: not evaluated, nothing sent; the alerts' state is kept")  # fmt: skip
            await self._write(body, status, stored, spec, instances, suspended, None)
            return None
        changed = status.observed_generation != generation
        last = alert_rule.latest(status.last_evaluation, self._evaluated.get(meta["uid"]))
        due_in = 0.0 if changed or last is None else interval - (now - last).total_seconds()
        if due_in <= 0:
            started = time.monotonic()
            try:
                samples, queries = await self._samples(namespace, spec)
                rule = alert_rule.rule_of(name, spec)
                evaluated = alerting.evaluate(rule, instances, samples, now, alert_expr.expand, alert_expr.fingerprint,
                                              spec.limit or MAX_INSTANCES)  # fmt: skip
                if evaluated.error is not None:
                    ready = ("False", evaluated.reason or "EvaluationFailed", evaluated.error)
                instances = evaluated.instances
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
        # Counted from the evaluation's start, so that a rule keeps its period whatever its pass costs.
        requeue = [max(0.5, due_in - (datetime.now(UTC) - now).total_seconds())]
        if schedule.next_at is not None:
            requeue.append(max(0.5, (schedule.next_at - datetime.now(UTC)).total_seconds()))
        if not await self._write(body, status, stored, spec, instances, ready, deliveries):
            return None
        return min(requeue)

    # --- evaluation ----------------------------------------------------------------------------------------------

    async def _samples(self, namespace: str, spec: AlertRuleSpec) -> tuple[list[alerting.Sample], list[str]]:
        if spec.condition is not None:
            return self._conditions(namespace, spec), []
        if spec.expr is not None:
            queries = [("", spec.expr)]
        else:
            assert spec.sla is not None
            sla = spec.sla
            queries = alert_expr.sla_queries(namespace, sla.deployment, sla.window, sla.latency_p99, sla.error_rate,
                                             sla.availability)  # fmt: skip
        prometheus = self._prometheus(spec.prometheus, namespace)
        at = datetime.now(UTC)
        try:
            answers = await asyncio.gather(*(prometheus.vector(q, at) for _, q in queries))
        except QueryError as exc:
            raise Unavailable("ProviderUnreachable", f"Prometheus: {exc}") from None
        samples = []
        for (sli, _), series in zip(queries, answers, strict=True):
            for labels, value in series:
                if spec.sla is not None:
                    labels = alert_expr.sla_value_labels(namespace, spec.sla.deployment, sli)
                samples.append(alerting.Sample(labels, value))
        return samples, [q for _, q in queries]

    def _prometheus(self, spec: PrometheusProvider | None, namespace: str) -> Prometheus:
        if spec is not None:
            return Prometheus(spec, namespace, self._secret, self.policy, self.sessions.of(self.policy))
        import os

        default = os.environ.get(PROMETHEUS_ENV)
        if not default:
            raise Unavailable("ProviderUnreachable", "no Prometheus: set spec.prometheus, or start the operator "
                              "with --prometheus-url")  # fmt: skip
        # The operator's own setting, not a user's address: no outbound policy applies.
        return Prometheus(PrometheusProvider(address=default), namespace, self._secret, UNRESTRICTED,
                          self.sessions.of(UNRESTRICTED))  # fmt: skip

    def _conditions(self, namespace: str, spec: AlertRuleSpec) -> list[alerting.Sample]:
        condition = spec.condition
        assert condition is not None
        selector = condition.selector
        expressions = [(e.key, e.operator, e.values) for e in selector.match_expressions or []]
        program = alert_expr.compile_cel(condition.cel) if condition.cel is not None else None
        out = []
        store = self.watched[selector.kind]
        if selector.name is not None:
            found = store.get((namespace, selector.name))
            candidates = [found] if found is not None else []
        elif selector.match_labels:
            # The objects carrying the selector's first label: the index narrows, selects() checks the rest.
            first = next(iter(selector.match_labels.items()))
            candidates = store.by("label", (namespace, *first))
        else:
            candidates = store.by("namespace", namespace)
        for obj in candidates:
            if not alerting.selects(selector.kind, selector.name, selector.match_labels, expressions, obj):
                continue
            value: str | None
            if condition.field is not None:
                f = condition.field
                actual = alerting.field_value(obj, f.field)
                held = alerting.compare(actual, f.op, f.value, f.text)
                value = None if actual is None else alerting.format_value(actual)
            elif condition.status_condition is not None:
                c = condition.status_condition
                conditions = (obj.get("status") or {}).get("conditions")
                held, value = alerting.condition_holds(conditions, c.type, c.status, c.reason)
            else:
                assert program is not None
                held, error = program.holds(self._cel_object(obj))
                value = "true" if held else error
            if held:
                meta = obj["metadata"]
                labels = {"kind": selector.kind, "name": meta["name"], "namespace": namespace}
                out.append(alerting.Sample(labels, value))
        return out

    def _cel_object(self, obj: Body) -> alert_expr.CelObject:
        """``obj`` converted for CEL, kept while its resourceVersion stays (rules and evaluations share it)."""
        meta = obj["metadata"]
        key = (meta.get("uid") or "", meta.get("resourceVersion") or "")
        found = self._cel_objects.get(key)
        if found is None:
            if len(self._cel_objects) >= CEL_OBJECTS:
                self._cel_objects.clear()  # stale versions go with the rest; the live ones come back on use
            found = self._cel_objects[key] = alert_expr.CelObject(obj)
        return found

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
            alerts = tuple(_payload(by_fp[fp], "firing", now, interval, kind) for fp in item.firing if fp in by_fp)
            alerts += tuple(_payload(by_fp[fp], "resolved", now, interval, kind) for fp in item.resolved
                            if fp in by_fp)  # fmt: skip
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
        refs: dict[str, SecretKeyRef | None] = {}
        if receiver.webhook is not None:
            refs["url"] = receiver.webhook.url_secret_ref
        elif receiver.slack is not None:
            refs["url"] = receiver.slack.webhook_url_secret_ref
        elif receiver.pagerduty is not None:
            refs["routing_key"] = receiver.pagerduty.routing_key_secret_ref
            refs["url"] = receiver.pagerduty.url_secret_ref
        elif receiver.alertmanager is not None:
            refs["url"] = receiver.alertmanager.url_secret_ref
            refs["token"] = receiver.alertmanager.bearer_token_secret_ref
        out = {}
        for role, ref in refs.items():
            if ref is not None:
                out[role] = (await self._secret(namespace, ref)).strip()
        return out

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
            text = str(exc)
            if "404" in text or "not found" in text.lower():
                text = ("the PrometheusRule kind is not served (install prometheus-operator's CRDs), or "
                        f"cannot be applied: {text[:300]}")  # fmt: skip
            return await self._not_ready(body, status, stored, "PrometheusRuleFailed", text, retry=60.0)
        status.state, status.instances, status.alerts = None, None, []
        status.observed_generation = body["metadata"].get("generation")
        status.conditions = alert_rule.ready_conditions(stored, status.observed_generation, ("True", "Exported",
                                        f"exported as PrometheusRule {body['metadata']['name']}: Prometheus "
                                        "evaluates it"))  # fmt: skip
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


def _payload(inst: alerting.Instance, state: str, now: datetime, interval: float, kind: str) -> AlertPayload:
    if state == "resolved":
        ends: datetime | None = inst.resolved_at or now
    else:
        ends = alerting.valid_until(now, interval) if kind == "alertmanager" else None
    return AlertPayload(inst.fingerprint, dict(inst.labels), dict(inst.annotations), state,  # type: ignore[arg-type]
                        inst.fired_at or inst.active_at, ends, inst.value, None)  # fmt: skip
