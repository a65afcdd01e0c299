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
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from mlops_operator import metrics
from mlops_operator.api.common import duration_seconds
from mlops_operator.api.crds import BY_KIND
from mlops_operator.api.driftmonitor import (
    DriftMonitorSpec,
    DriftMonitorStatus,
    ReferenceStatus,
)
from mlops_operator.controllers import kinds
from mlops_operator.logic import drift, drift_monitor
from mlops_operator.logic.drift_monitor import Unavailable
from mlops_operator.logic.rollout import ABORT
from mlops_operator.outbound import Policy
from mlops_operator.providers.prometheus import Prometheus, Sessions, connect, label_value, range_of, secret_reader
from mlops_operator.providers.sketches import SketchReader
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
PROFILE_TTL = 30.0
"""A reference profile read is reused this long (monitors of one version share it) before its ConfigMap is read
again."""


class DriftMonitors:
    def __init__(self, manager: Manager, policy: Policy | None = None) -> None:
        self.api = manager.api
        self.policy = policy or Policy()
        self.monitors = kinds.drift_monitors(manager)
        self.deployments = kinds.model_deployments(manager)
        self.versions = kinds.model_versions(manager)
        self.status = StatusWriter(kinds.DRIFT_MONITORS, self._changed_meanwhile, self._forget, manager.api)
        self._profiles: dict[tuple[str, str], tuple[float, dict[str, Any], str]] = {}
        """(namespace, ConfigMap) -> (when read, profile, digest)."""
        self.sketches = SketchReader(manager.api)
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
        await self.sketches.close()
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
            status.conditions = drift_monitor.conditions(stored, generation, ("False", "InvalidSpec", problem))
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
        except Unavailable as exc:
            status.conditions = drift_monitor.conditions(stored, generation, ("False", exc.reason, str(exc)),
                                            ("Unknown", exc.reason, str(exc)))  # fmt: skip
            status.observed_generation = generation
            status.message = str(exc)[:4096]
            await self.status.write(body, status)
            return RETRY_SECONDS
        previous = status.verdict
        new = drift_monitor.status(status, stored, generation, spec, result, counted, version, reference, now)
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
                raise Unavailable("DeploymentNotFound", f"ModelDeployment {spec.deployment_ref.name} not found")
            version = self._analysed_version(md, spec)
            if version is None:
                raise Unavailable("NotServing", f"ModelDeployment {spec.deployment_ref.name} serves no version yet")
        if spec.reference is not None:
            mv = self.versions.get((namespace, spec.reference.model_version))
            if mv is None:
                raise Unavailable("ReferenceNotFound", f"ModelVersion {spec.reference.model_version} not found")
        else:
            assert spec.deployment_ref is not None and version is not None
            md = self.deployments.get((namespace, spec.deployment_ref.name)) or {}
            model = str((md.get("spec") or {}).get("model"))
            found = [v for v in self.versions.by("model", (namespace, model))
                     if str((v.get("spec") or {}).get("version")) == version]  # fmt: skip
            if not found:
                raise Unavailable("ReferenceNotFound", f"no ModelVersion of {model} {version} to take the profile from")
            mv = found[0]
        name = mv["metadata"]["name"]
        config_map = ((mv.get("status") or {}).get("profile") or {}).get("configMap")
        if not config_map:
            raise Unavailable(
                "NoReferenceProfile", f"ModelVersion {name} has no reference profile (spec.reference) yet"
            )
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
            raise Unavailable("NoReferenceProfile", f"ConfigMap {name} (the reference profile) not found")
        text = (body.get("data") or {}).get("profile.json")
        try:
            profile = json.loads(text or "")
        except ValueError:
            raise Unavailable("NoReferenceProfile", f"ConfigMap {name} holds no profile.json") from None
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
        named = provider.prometheus if provider is not None else None
        found = None
        if provider is None or named is not None:
            found = connect(named, namespace, self._secret, self.policy, self.sessions)
        if found is not None:
            counted = await self._prometheus(found, namespace, model, version, profile, window, now)
        else:
            port = provider.direct.port if provider is not None and provider.direct is not None else None
            port = port or int((md.get("spec") or {}).get("server", {}).get("port") or 8080)
            counted = await self.sketches.read(namespace, spec.deployment_ref.name, model, version, window, port)
        settings = drift_monitor.settings(spec)
        return drift_monitor.evaluate(profile, counted, settings), counted

    async def _prometheus(self, provider: Prometheus, namespace: str, model: str, version: str,
                          profile: dict[str, Any], window: float, now: datetime) -> dict[str, Any]:  # fmt: skip
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
            raise Unavailable("QueryFailed", f"Prometheus: {exc}") from None
        start = now - timedelta(seconds=window)
        return drift_monitor.from_series(
            profile, series, sum(v for _, v in samples), start.timestamp(), now.timestamp()
        )

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
            raise Unavailable("DatasetUnreadable", str(exc)) from None
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
