"""The ``direct`` provider: the operator reads the model servers' own /metrics pages, no Prometheus needed.

While a window is open it reads every ready Pod of both versions at the window's start, at each sample step (the
smallest ``compare.step`` of the metrics; none without compare) and at the end; a window's value is the increase
between its first and last readings summed over the Pods (``logic.measure``), and a sample is the increase between
two consecutive readings. Readings live in memory only: a window whose start the operator did not see (it restarted
meanwhile) is measured from the first reading it took, and is an error when it took only one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from mlops_operator.api.canaryrollout import AnalysisMetric
from mlops_operator.api.common import duration_seconds
from mlops_operator.builders.serving import selector
from mlops_operator.logic import measure
from mlops_operator.logic.analysis import Values
from mlops_operator.outbound import UNRESTRICTED
from mlops_operator.providers import Target
from mlops_operator.runtime.api import Api

log = logging.getLogger(__name__)
SCRAPE_TIMEOUT = 5.0
Readings = dict[str, dict[str, measure.Reading]]
"""By version, by Pod name."""


@dataclass
class _Window:
    start: datetime
    readings: list[tuple[datetime, Readings]] = field(default_factory=list)


def sample_step(metrics: Sequence[AnalysisMetric]) -> float | None:
    """The spacing of samples the compared metrics ask for (None: no metric compares)."""
    steps = [duration_seconds(m.compare.step) for m in metrics if m.compare is not None]
    return min(steps) if steps else None


class Direct:
    name = "direct"

    def __init__(self, api: Api) -> None:
        self.api = api
        self.windows: dict[str, _Window] = {}
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # The Pods of our own Deployments are not a user's address: no outbound policy applies.
        if self._session is None or self._session.closed:
            self._session = UNRESTRICTED.session(timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def forget(self, key: str) -> None:
        self.windows.pop(key, None)

    async def sample(
        self, key: str, target: Target, metrics: Sequence[AnalysisMetric], start: datetime, now: datetime
    ) -> float | None:
        window = self.windows.get(key)
        if window is None or window.start != start:
            window = self.windows[key] = _Window(start)
        step = sample_step(metrics)
        if window.readings and step is not None:
            due = step - (now - window.readings[-1][0]).total_seconds()
            if due > 0.05:
                return due
        if window.readings and step is None:
            return None
        window.readings.append((now, await self.read(target)))
        return step

    async def measure(
        self, key: str, target: Target, metrics: Sequence[AnalysisMetric], start: datetime, end: datetime
    ) -> dict[str, Values]:
        window = self.windows.get(key)
        readings = list(window.readings) if window is not None and window.start == start else []
        try:
            readings.append((end, await self.read(target)))
        except Exception as exc:
            return {m.name: Values(error=f"reading the model servers failed: {exc}") for m in metrics}
        finally:
            self.windows.pop(key, None)
        if len(readings) < 2:
            why = "no reading at the start of the window (the operator started during it)"
            return {m.name: Values(error=why) for m in metrics}
        return values(target, metrics, readings)

    async def read(self, target: Target) -> Readings:
        """One reading of every ready Pod of the two versions."""
        labels = selector(target.deployment)
        pods = await self.api.list_objects("v1", "Pod", "pods", target.namespace, labels=labels)
        versions = {target.canary, *([target.stable] if target.stable else [])}
        wanted = [
            p for p in pods
            if (p["metadata"].get("labels") or {}).get("mlops.io/version") in versions and ready(p)
        ]  # fmt: skip
        texts = await asyncio.gather(*(self._scrape(p, target.port) for p in wanted), return_exceptions=True)
        out: Readings = {v: {} for v in versions}
        failures = []
        for pod, text in zip(wanted, texts, strict=True):
            name = pod["metadata"]["name"]
            if isinstance(text, BaseException):
                failures.append(f"{name}: {text or type(text).__name__}")
                continue
            out[pod["metadata"]["labels"]["mlops.io/version"]][name] = measure.parse(text)
        if failures and len(failures) == len(wanted):
            raise RuntimeError("; ".join(failures[:3]))
        for failure in failures:
            log.debug("scrape failed: %s", failure)
        return out

    async def _scrape(self, pod: dict[str, Any], port: int) -> str:
        address = pod["status"]["podIP"]
        host = f"[{address}]" if ":" in address else address
        async with self._http().get(f"http://{host}:{port}/metrics") as response:
            response.raise_for_status()
            return await response.text()


def ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    if not status.get("podIP") or pod["metadata"].get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def values(
    target: Target, metrics: Sequence[AnalysisMetric], readings: Sequence[tuple[datetime, Readings]]
) -> dict[str, Values]:
    """Every metric's values from a window's readings (at least two, oldest first)."""
    (t0, first), (t1, last) = readings[0], readings[-1]
    seconds = max((t1 - t0).total_seconds(), 1e-9)
    whole = {v: measure.increase(first.get(v, {}), last.get(v, {})) for v in last}
    pieces = [
        (max((tb - ta).total_seconds(), 1e-9), {v: measure.increase(ra.get(v, {}), rb.get(v, {})) for v in rb})
        for (ta, ra), (tb, rb) in itertools.pairwise(readings)
    ]
    out: dict[str, Values] = {}
    for metric in metrics:
        if metric.query is not None:
            out[metric.name] = Values(error="a query needs the prometheus provider; the direct provider measures "
                                      "builtins only")  # fmt: skip
            continue
        name = metric.builtin
        assert name is not None
        if name == "predictionShift":
            if not target.prediction:
                out[metric.name] = Values(error=f"{target.canary} has no reference profile with a prediction column "
                                          "(spec.reference.prediction): predictionShift compares prediction "
                                          "distributions")  # fmt: skip
                continue
            if not target.stable:
                out[metric.name] = Values(error="no stable version to compare with")
                continue
            shift = measure.prediction_shift(whole[target.canary], whole[target.stable], target.prediction)
            out[metric.name] = Values(canary=shift)
            continue

        def of(version: str | None, window: dict[str, measure.Reading], span: float, metric_name: str = name) -> (
            float | None
        ):  # fmt: skip
            if version is None or version not in window:
                return None
            return measure.builtins(window[version], span, (metric_name,))[metric_name]

        canary_samples = [x for span, w in pieces if (x := of(target.canary, w, span)) is not None]
        stable_samples = [x for span, w in pieces if (x := of(target.stable, w, span)) is not None]
        out[metric.name] = Values(
            canary=of(target.canary, whole, seconds), stable=of(target.stable, whole, seconds),
            canary_samples=canary_samples, stable_samples=stable_samples,
        )  # fmt: skip
    return out
