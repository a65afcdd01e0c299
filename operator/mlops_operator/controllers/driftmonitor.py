"""The DriftMonitor controller: on its interval, the drift of a ModelDeployment's live traffic (its servers' windowed
sketches) or of a batch dataset against a ModelVersion's reference profile, in status, Events and metrics.

A pass: the spec checked; the reference profile found (spec.reference.modelVersion, else the version the deployment
serves) and read from its ConfigMap; if the interval has passed since status.lastCheck (or the spec changed), the
current data read (live: every ready Pod's ``/v2/models/{m}/sketch?window=...`` summed, or Prometheus'
``increase(mlops_server_feature_bin_total[window])``; batch: the dataset, exactly) and judged by ``logic.drift``;
the status written; an Event when the verdict changes; with onDrift.abortCanary and drift on a canary's traffic, the
canary's rollout aborted through its verb. Then it waits for the next interval.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from mlops_operator import metrics
from mlops_operator.api.common import Condition, PrometheusProvider, duration_seconds
from mlops_operator.api.crds import BY_KIND
from mlops_operator.api.driftmonitor import (
    HISTORY,
    DriftMonitorSpec,
    DriftMonitorStatus,
    FeatureResult,
    HistoryEntry,
    PerformanceStatus,
    ReferenceStatus,
)
from mlops_operator.builders.serving import selector
from mlops_operator.controllers import kinds
from mlops_operator.logic import drift, drift_monitor
from mlops_operator.logic.conditions import set_condition
from mlops_operator.logic.rollout import ABORT
from mlops_operator.outbound import UNRESTRICTED, Policy
from mlops_operator.providers.prometheus import Prometheus, Sessions, label_value, range_of, secret_reader
from mlops_operator.runtime import events
from mlops_operator.runtime.controller import Controller, Watch
from mlops_operator.runtime.kinds import Body, Key, key_of
from mlops_operator.runtime.manager import Manager
from mlops_operator.runtime.status import StatusWriter

log = logging.getLogger(__name__)

KIND = "DriftMonitor"
WORKERS = 8
CONFLICT_RETRY_SECONDS = 2
RETRY_SECONDS = 30
"""A monitor that cannot run yet (no reference, no deployment) looks again after this."""
SCRAPE_TIMEOUT = 10.0
PROFILE_TTL = 30.0
"""A reference profile read is reused this long (monitors of one version share it) before its ConfigMap is read
again."""
PODS_TTL = 5.0
"""The Pods of a version are listed again after this long (monitors of one deployment share the list)."""
PROMETHEUS_ENV = "MLOPS_OPERATOR_PROMETHEUS_URL"


class Unready(Exception):
    """The analysis cannot run yet: the reason (Ready False) and when to look again."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class DriftMonitors:
    def __init__(self, manager: Manager, policy: Policy | None = None) -> None:
        self.api = manager.api
        self.policy = policy or Policy()
        self.monitors = manager.store(
            kinds.DRIFT_MONITORS, kinds.compact_monitor, {"deployment": kinds.watched_deployment}
        )
        self.deployments = kinds.model_deployments(manager)
        self.versions = kinds.model_versions(manager)
        self.status = StatusWriter(kinds.DRIFT_MONITORS, self._changed_meanwhile, self._forget, manager.api)
        self._profiles: dict[tuple[str, str], tuple[float, dict[str, Any], str]] = {}
        """(namespace, ConfigMap) -> (when read, profile, digest)."""
        self._pods: dict[tuple[str, str, str], tuple[float, list[Body]]] = {}
        """(namespace, deployment, version) -> (when listed, Pods)."""
        self._session: aiohttp.ClientSession | None = None
        self.sessions = Sessions()
        self._secret = secret_reader(manager.api)
        self.controller = manager.add(
            Controller(
                name=KIND,
                resource=kinds.DRIFT_MONITORS,
                reconcile=self.reconcile,
                watches=(Watch(kinds.MODEL_DEPLOYMENTS, self._monitors_of),),
                forget=self._forget,
                is_echo=self.status.is_echo,
                workers=WORKERS,
            )
        )
        metrics.STATE.objects(KIND, lambda: [self.status.current(m) for m in self.monitors])

    def _monitors_of(self, md: Body) -> list[Key]:
        return [key_of(m) for m in self.monitors.by("deployment", key_of(md))]

    def _changed_meanwhile(self, body: Body) -> None:
        self.controller.queue.add_after(key_of(body), CONFLICT_RETRY_SECONDS)

    def _forget(self, body: Body) -> None:
        self.monitors.remove(key_of(body), body["metadata"]["uid"])
        self.status.forget(body["metadata"]["uid"])
        metrics.forget_drift(body["metadata"]["namespace"], body["metadata"]["name"])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self.sessions.close()

    # --- the pass ------------------------------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> float | None:
        body = self.monitors.get(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        meta = body["metadata"]
        generation = meta.get("generation")
        stored = self.status.status(body)
        status = DriftMonitorStatus.model_validate(stored)
        problem = BY_KIND[KIND].spec_problem(body.get("spec") or {})
        if problem is not None:
            status.conditions = _conditions(stored, generation, ("False", "InvalidSpec", problem))
            status.observed_generation = generation
            await self.status.write(body, status)
            return None
        spec = DriftMonitorSpec.model_validate(body["spec"])
        interval = duration_seconds(spec.interval)
        now = datetime.now(UTC)
        last = status.last_check.timestamp() if status.last_check else None
        changed = status.observed_generation != generation
        wait = 0.0 if changed else drift_monitor.due_in(last, interval, now.timestamp())
        if wait > 0:
            return wait
        try:
            version, reference, profile = await self._reference(meta["namespace"], spec)
            if spec.dataset is not None:
                result, counted = await self._batch(spec, profile, now, self._registered(meta["namespace"], spec))
            else:
                result, counted = await self._live(meta["namespace"], spec, version, profile, now)
        except Unready as exc:
            status.conditions = _conditions(stored, generation, ("False", exc.reason, str(exc)),
                                            ("Unknown", exc.reason, str(exc)))  # fmt: skip
            status.observed_generation = generation
            status.message = str(exc)[:4096]
            await self.status.write(body, status)
            return RETRY_SECONDS
        previous = status.verdict
        new = _status(status, stored, generation, spec, result, counted, version, reference, now)
        if not await self.status.write(body, new):
            return None
        metrics.record_drift(meta["namespace"], meta["name"], result)
        if previous != new.verdict and new.verdict in ("Drifted", "NotDrifted"):
            if new.verdict == "Drifted":
                events.record(body, "DriftDetected", new.message or "", "Warning")
            else:
                events.record(body, "NoDrift", new.message or "")
        if new.verdict == "Drifted" and spec.on_drift is not None and spec.on_drift.abort_canary:
            await self._abort_canary(body, spec, version)
        return interval

    # --- the reference ---------------------------------------------------------------------------------------------

    async def _reference(self, namespace: str, spec: DriftMonitorSpec) -> tuple[str | None, ReferenceStatus,
                                                                                    dict[str, Any]]:  # fmt: skip
        """The version analysed (live), where its profile is, and the profile."""
        version: str | None = None
        if spec.deployment_ref is not None:
            md = self.deployments.get((namespace, spec.deployment_ref.name))
            if md is None:
                raise Unready("DeploymentNotFound", f"ModelDeployment {spec.deployment_ref.name} not found")
            version = self._analysed_version(md, spec)
            if version is None:
                raise Unready("NotServing", f"ModelDeployment {spec.deployment_ref.name} serves no version yet")
        if spec.reference is not None:
            mv = self.versions.get((namespace, spec.reference.model_version))
            if mv is None:
                raise Unready("ReferenceNotFound", f"ModelVersion {spec.reference.model_version} not found")
        else:
            assert spec.deployment_ref is not None and version is not None
            md = self.deployments.get((namespace, spec.deployment_ref.name)) or {}
            model = str((md.get("spec") or {}).get("model"))
            found = [v for v in self.versions.by("model", (namespace, model))
                     if str((v.get("spec") or {}).get("version")) == version]  # fmt: skip
            if not found:
                raise Unready("ReferenceNotFound", f"no ModelVersion of {model} {version} to take the profile from")
            mv = found[0]
        name = mv["metadata"]["name"]
        config_map = ((mv.get("status") or {}).get("profile") or {}).get("configMap")
        if not config_map:
            raise Unready("NoReferenceProfile", f"ModelVersion {name} has no reference profile (spec.reference) yet")
        profile, digest = await self._profile(namespace, config_map)
        return version, ReferenceStatus(model_version=name, config_map=config_map, digest=digest), profile

    def _analysed_version(self, md: Body, spec: DriftMonitorSpec) -> str | None:
        """The stable version; the canary's when the monitor guards canaries (onDrift.abortCanary) and one runs."""
        status = md.get("status") or {}
        if spec.on_drift is not None and spec.on_drift.abort_canary:
            canary = next((v for v in status.get("versions") or [] if v.get("role") == "canary"), None)
            if canary is not None:
                return str(canary["version"])
        version = status.get("version")
        return str(version) if version else None

    async def _profile(self, namespace: str, name: str) -> tuple[dict[str, Any], str]:
        now = time.monotonic()
        cached = self._profiles.get((namespace, name))
        if cached is not None and now - cached[0] < PROFILE_TTL:
            return cached[1], cached[2]
        body = await self.api.get("v1", "ConfigMap", namespace, name)
        if body is None:
            raise Unready("NoReferenceProfile", f"ConfigMap {name} (the reference profile) not found")
        text = (body.get("data") or {}).get("profile.json")
        try:
            profile = json.loads(text or "")
        except ValueError:
            raise Unready("NoReferenceProfile", f"ConfigMap {name} holds no profile.json") from None
        digest = "sha256:" + hashlib.sha256(text.encode()).hexdigest() if text else ""
        self._profiles = {k: v for k, v in self._profiles.items() if now - v[0] < 600}
        self._profiles[(namespace, name)] = (now, profile, digest)
        return profile, digest

    # --- live counts ---------------------------------------------------------------------------------------------

    async def _live(self, namespace: str, spec: DriftMonitorSpec, version: str | None, profile: dict[str, Any],
                    now: datetime) -> tuple[drift.DatasetResult, dict[str, Any]]:  # fmt: skip
        assert spec.deployment_ref is not None and version is not None
        md = self.deployments.get((namespace, spec.deployment_ref.name)) or {}
        model = str((md.get("spec") or {}).get("model"))
        window = duration_seconds(spec.window)
        provider = spec.provider
        default = os.environ.get(PROMETHEUS_ENV)
        if provider is not None and provider.prometheus is not None:
            counted = await self._prometheus(provider.prometheus, namespace, model, version, profile, window, now,
                                             self.policy)  # fmt: skip
        elif provider is None and default:
            counted = await self._prometheus(PrometheusProvider(address=default), namespace, model, version, profile,
                                             window, now, UNRESTRICTED)  # fmt: skip
        else:
            port = provider.direct.port if provider is not None and provider.direct is not None else None
            port = port or int((md.get("spec") or {}).get("server", {}).get("port") or 8080)
            counted = await self._direct(namespace, spec.deployment_ref.name, model, version, window, port)
        settings = drift_monitor.settings(spec)
        return drift_monitor.evaluate(profile, counted, settings), counted

    def _http(self) -> aiohttp.ClientSession:
        # Our own Deployments' Pods are not a user's address: no outbound policy applies.
        if self._session is None or self._session.closed:
            self._session = UNRESTRICTED.session(timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT))
        return self._session

    async def _direct(self, namespace: str, deployment: str, model: str, version: str, window: float,
                      port: int) -> dict[str, Any]:  # fmt: skip
        now = time.monotonic()
        listed = self._pods.get((namespace, deployment, version))
        if listed is None or now - listed[0] >= PODS_TTL:
            pods = await self.api.list_objects("v1", "Pod", "pods", namespace, labels=selector(deployment, version))
            # Lists of versions no monitor read lately go (versions come and go).
            self._pods = {k: v for k, v in self._pods.items() if now - v[0] < 600}
            listed = self._pods[(namespace, deployment, version)] = (now, pods)
        ready = [p for p in listed[1] if _ready(p)]
        if not ready:
            raise Unready("NoServers", f"no ready Pod of {deployment} {version} to read the live counts from")

        async def read(pod: Body) -> dict[str, Any]:
            address = pod["status"]["podIP"]
            host = f"[{address}]" if ":" in address else address
            url = f"http://{host}:{port}/v2/models/{model}/sketch?window={int(window)}s"
            async with self._http().get(url) as response:
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {(await response.text())[:200]}")
                return dict(await response.json())

        answers = await asyncio.gather(*(read(p) for p in ready), return_exceptions=True)
        good = [a for a in answers if isinstance(a, dict)]
        failed = [
            f"{p['metadata']['name']}: {a}" for p, a in zip(ready, answers, strict=True) if isinstance(a, BaseException)
        ]
        if not good:
            raise Unready("ServersUnreachable", "no server answered with its counts: " + "; ".join(failed[:3]))
        counted = drift_monitor.merge(good)
        if failed:
            counted["complete"] = False
            counted["unread"] = failed
        return counted

    async def _prometheus(self, spec: PrometheusProvider, namespace: str, model: str, version: str,
                          profile: dict[str, Any], window: float, now: datetime,
                          policy: Policy) -> dict[str, Any]:  # fmt: skip
        provider = Prometheus(spec, namespace, self._secret, policy, self.sessions.of(policy))
        selected = ",".join(f"{k}={label_value(v)}" for k, v in
                            (("namespace", namespace), ("model", model), ("version", version)))  # fmt: skip
        span = range_of(window)
        bins_query = f"sum by (feature, bin) (increase(mlops_server_feature_bin_total{{{selected}}}[{span}]))"
        samples_query = f"sum(increase(mlops_server_sketch_samples_total{{{selected}}}[{span}]))"
        try:
            series, samples = await asyncio.gather(
                provider.vector(bins_query, now), provider.vector(samples_query, now)
            )
        except Exception as exc:
            raise Unready("QueryFailed", f"Prometheus: {exc}") from None
        features: dict[str, Any] = {}
        for name, reference in (profile.get("features") or {}).items():
            if reference["type"] == "numeric":
                bins = max(len(reference.get("edges") or []) - 1, 1)
                features[name] = {"type": "numeric", "counts": [0.0] * bins, "nulls": 0.0, "below": 0.0, "above": 0.0}
            else:
                categories = list(reference.get("categories") or [])
                features[name] = {"type": "categorical", "categories": categories, "counts": [0.0] * len(categories),
                                  "otherCount": 0.0, "nulls": 0.0}  # fmt: skip
        for labels, value in series:
            feature = features.get(labels.get("feature", ""))
            bin_ = labels.get("bin", "")
            if feature is None:
                continue
            if bin_ == "__null__":
                feature["nulls"] += value
            elif bin_ in ("__below__", "__above__") and feature["type"] == "numeric":
                feature[bin_.strip("_")] += value
            elif feature["type"] == "numeric":
                if bin_.isdigit() and int(bin_) < len(feature["counts"]):
                    feature["counts"][int(bin_)] += value
            elif bin_ == "__other__":
                feature["otherCount"] += value
            elif bin_ in feature["categories"]:
                feature["counts"][feature["categories"].index(bin_)] += value
        start = now - timedelta(seconds=window)
        total = round(sum(v for _, v in samples))
        return {"samples": total, "features": features, "windowStart": start.timestamp(),
                "windowEnd": now.timestamp()}  # fmt: skip

    # --- batch ---------------------------------------------------------------------------------------------------

    def _registered(self, namespace: str, spec: DriftMonitorSpec) -> float | None:
        """The reference ModelVersion's registered value of the performance check's metric."""
        if spec.performance is None or spec.reference is None:
            return None
        mv = self.versions.get((namespace, spec.reference.model_version)) or {}
        name = spec.performance.registered_metric or spec.performance.metric
        for entry in (mv.get("spec") or {}).get("metrics") or []:
            if str(entry.get("name")).lower() == name.lower():
                return float(entry["value"])
        return None

    async def _batch(self, spec: DriftMonitorSpec, profile: dict[str, Any], now: datetime,
                     registered: float | None) -> tuple[drift.DatasetResult, dict[str, Any]]:  # fmt: skip
        from mlops_operator.drift_batch import Options, compare_datasets
        from mlops_operator.outbound import Refused
        from mlops_operator.profiling import ProfileError
        from mlops_operator.storage import SourceUnreachable

        assert spec.dataset is not None
        chosen = drift_monitor.settings(spec)
        options = Options(
            exclude=list(chosen.exclude), prediction=spec.dataset.prediction_column, num_method=chosen.num_method,
            cat_method=chosen.cat_method, overrides=chosen.overrides or {}, drift_share=chosen.share,
            multiple_testing=chosen.multiple_testing, min_samples=chosen.min_samples,
            prediction_counts=chosen.prediction_counts, time_column=spec.dataset.time_column,
            window_seconds=duration_seconds(spec.window) if spec.dataset.time_column else None,
            format=spec.dataset.format,
        )  # fmt: skip
        check = spec.performance
        if check is not None:
            options.performance = (check.metric, check.label_column,
                                   check.prediction_column or spec.dataset.prediction_column, registered,
                                   check.tolerance, check.min_samples)  # fmt: skip
        try:
            result = await asyncio.to_thread(compare_datasets, spec.dataset.uri, None, profile, options, self.policy)
        except (ProfileError, SourceUnreachable, Refused, drift.DriftError, OSError) as exc:
            raise Unready("DatasetUnreadable", str(exc)) from None
        samples = max((r.samples + round((r.missing_share or 0) * r.samples / max(1e-9, 1 - (r.missing_share or 0)))
                       for r in result.features), default=0)  # fmt: skip
        counted: dict[str, Any] = {"samples": samples, "complete": True}
        if result.window is not None:
            counted["windowStart"], counted["windowEnd"] = result.window
        return result, counted

    # --- actions -------------------------------------------------------------------------------------------------

    async def _abort_canary(self, body: Body, spec: DriftMonitorSpec, version: str | None) -> None:
        """Aborts the canary run of ``version`` on the monitored deployment, through its rollout's verb."""
        namespace = body["metadata"]["namespace"]
        assert spec.deployment_ref is not None
        md = self.deployments.get((namespace, spec.deployment_ref.name)) or {}
        driver = (md.get("status") or {}).get("canary") or {}
        rollout, candidate = driver.get("rollout"), driver.get("candidate")
        if not rollout or candidate != version:
            return  # the drift is not on a canary's traffic
        patch = {"annotations": {ABORT: str(version)}}
        await self.api.patch_metadata(kinds.CANARY_ROLLOUTS.api_version, kinds.CANARY_ROLLOUTS.kind, namespace,
                                      rollout, patch)  # fmt: skip
        events.record(body, "CanaryAborted", f"drift on the traffic of canary {version}: aborted rollout {rollout}",
                      "Warning")  # fmt: skip


def _ready(pod: Body) -> bool:
    status = pod.get("status") or {}
    if not status.get("podIP") or pod["metadata"].get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def _conditions(stored: Body, generation: int | None, ready: tuple[Any, str, str],
                detected: tuple[Any, str, str] | None = None) -> list[Condition]:  # fmt: skip
    conditions = set_condition(stored.get("conditions") or [], "Ready", *ready, generation)
    if detected is not None:
        conditions = set_condition(conditions, "DriftDetected", *detected, generation)
    return [Condition.model_validate(c) for c in conditions]


def _feature(result: drift.FeatureResult) -> FeatureResult:
    return FeatureResult(
        name=result.name, method=result.method or "-", statistic=result.statistic, p_value=result.p_value,
        threshold=result.threshold, verdict=result.verdict, samples=result.samples,
        missing_share=result.missing_share, reason=(result.reason or None) and result.reason[:1024],
    )  # fmt: skip


def _status(old: DriftMonitorStatus, stored: Body, generation: int | None, spec: DriftMonitorSpec,
            result: drift.DatasetResult, counted: dict[str, Any], version: str | None, reference: ReferenceStatus,
            now: datetime) -> DriftMonitorStatus:  # fmt: skip
    samples = int(counted.get("samples") or 0)
    message = drift_monitor.summary(result, samples)
    complete = counted.get("complete")
    if complete is False:
        message += " (partial window: a server started within it, or did not answer)"
    if result.verdict == "NoData":
        detected = ("Unknown", "NotEnoughSamples", f"{samples} samples in the window, minSamples {spec.min_samples}")
    elif result.verdict == "Error":
        detected = ("Unknown", "AnalysisFailed", message)
    elif result.verdict == "Drifted":
        detected = ("True", "DatasetDrift", message)
    else:
        detected = ("False", "NoDatasetDrift", message)
    ready = ("True", "Analysed", message) if result.verdict != "Error" else ("False", "AnalysisFailed", message)
    checked = result.performance
    performance = None
    degraded: tuple[Any, str, str] | None = None
    if checked is not None:
        performance = PerformanceStatus(metric=checked.metric, value=checked.value, registered=checked.reference,
                                        tolerance=checked.tolerance, degraded=checked.degraded,
                                        samples=checked.samples, reason=checked.reason[:1024])  # fmt: skip
        degraded = {True: ("True", "BelowRegistered", checked.reason),
                    False: ("False", "WithinTolerance", checked.reason)}.get(
            checked.degraded, ("Unknown", "NotJudged", checked.reason))  # fmt: skip

    def at(key: str) -> datetime | None:
        value = counted.get(key)
        return datetime.fromtimestamp(float(value), UTC) if value is not None else None

    history = [*old.history, HistoryEntry(at=now, verdict=result.verdict, drifted_share=result.share,
                                          samples=samples)][-HISTORY:]  # fmt: skip
    conditions = _conditions(stored, generation, ready, detected)
    if degraded is not None:
        wire = [c.wire() for c in conditions]
        conditions = [Condition.model_validate(c)
                      for c in set_condition(wire, "PerformanceDegraded", *degraded, generation)]  # fmt: skip
    return DriftMonitorStatus(
        observed_generation=generation,
        conditions=conditions,
        last_check=now,
        window_start=at("windowStart"),
        window_end=at("windowEnd"),
        complete=complete if isinstance(complete, bool) else None,
        version=version,
        samples=samples,
        reference=reference,
        features=[_feature(r) for r in result.features],
        prediction=_feature(result.prediction) if result.prediction is not None else None,
        drifted_features=result.drifted,
        judged_features=result.judged,
        drifted_share=result.share,
        verdict=result.verdict,
        message=message[:4096],
        performance=performance,
        history=history,
    )
