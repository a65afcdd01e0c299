"""The operator's own Prometheus metrics (``/metrics`` on ``mlops-operator run --metrics``).

What a platform team watches an operator by: how often and how long it reconciles and with what outcome, how long
work waits in its queue, what it asks of the API server and how fast that answers, and how the objects it runs
stand (Ready or not, by kind). The model servers have metrics of their own (``server/metrics.py``).
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mlops_operator import __version__

log = logging.getLogger(__name__)

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series beside each counter and histogram
REGISTRY = CollectorRegistry()
# Seconds: from a few milliseconds (a reconcile that writes nothing) to a minute (a throttled API server).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

RECONCILES = Counter(
    "mlops_operator_reconciles",
    "Reconciles by kind and result: changed (wrote to the API server), unchanged (found everything in place), "
    "error (failed; tried again with backoff).",
    ["kind", "result"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "mlops_operator_reconcile_duration_seconds", "Time one reconcile took.", ["kind"], buckets=_BUCKETS,
    registry=REGISTRY,
)  # fmt: skip
QUEUE_WAIT_SECONDS = Histogram(
    "mlops_operator_queue_wait_seconds", "Time an object waited in the work queue before its reconcile started.",
    ["kind"], buckets=_BUCKETS, registry=REGISTRY,
)  # fmt: skip
API_REQUESTS = Counter(
    "mlops_operator_api_requests",
    "Requests to the Kubernetes API server by verb and outcome (ok, or the HTTP status code of a failure); watches "
    "are not counted.",
    ["verb", "code"],
    registry=REGISTRY,
)
API_SECONDS = Histogram(
    "mlops_operator_api_request_duration_seconds", "Latency of requests to the Kubernetes API server.", ["verb"],
    buckets=_BUCKETS, registry=REGISTRY,
)  # fmt: skip
API_RETRIES = Counter(
    "mlops_operator_api_retries",
    "Requests tried again after a transient answer (429, 5xx, a refused connection).",
    ["verb"],
    registry=REGISTRY,
)
CANARY_MEASUREMENTS = Counter(
    "mlops_operator_canary_measurements",
    "Canary analysis measurements by verdict (Pass, Fail, Inconclusive, NoData, Error).",
    ["verdict"],
    registry=REGISTRY,
)
DRIFT_STATISTIC = Gauge(
    "mlops_drift_statistic",
    "The last drift statistic of each feature of each DriftMonitor (a distance, or the test's statistic).",
    ["namespace", "monitor", "feature", "method"],
    registry=REGISTRY,
)
DRIFT_P_VALUE = Gauge(
    "mlops_drift_p_value", "The last p-value of each feature whose method is a test.",
    ["namespace", "monitor", "feature", "method"], registry=REGISTRY,
)  # fmt: skip
DRIFT_SHARE = Gauge("mlops_drift_share", "The share of a DriftMonitor's judged features that drifted.",
                    ["namespace", "monitor"], registry=REGISTRY)  # fmt: skip
DRIFT_DETECTED = Gauge("mlops_drift_detected", "1 when a DriftMonitor's dataset drifted at its last analysis, else 0.",
                       ["namespace", "monitor"], registry=REGISTRY)  # fmt: skip
_DRIFT_SERIES: dict[tuple[str, str], set[tuple[str, str]]] = {}
"""The (feature, method) series of each monitor, to remove those no longer reported."""


def record_drift(namespace: str, monitor: str, result: Any) -> None:
    """A DriftMonitor's analysis (a ``logic.drift.DatasetResult``) as gauges."""
    features = [*result.features, *([result.prediction] if result.prediction is not None else [])]
    now = {(f.name, f.method) for f in features if f.statistic is not None}
    for feature, method in _DRIFT_SERIES.get((namespace, monitor), set()) - now:
        for gauge in (DRIFT_STATISTIC, DRIFT_P_VALUE):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, monitor, feature, method)
    _DRIFT_SERIES[(namespace, monitor)] = now
    for f in features:
        if f.statistic is None:
            continue
        DRIFT_STATISTIC.labels(namespace, monitor, f.name, f.method).set(f.statistic)
        if f.p_value is not None:
            DRIFT_P_VALUE.labels(namespace, monitor, f.name, f.method).set(f.p_value)
    if result.share is not None:
        DRIFT_SHARE.labels(namespace, monitor).set(result.share)
    if result.verdict in ("Drifted", "NotDrifted"):
        DRIFT_DETECTED.labels(namespace, monitor).set(1 if result.verdict == "Drifted" else 0)


def forget_drift(namespace: str, monitor: str) -> None:
    """A deleted DriftMonitor's series go."""
    for feature, method in _DRIFT_SERIES.pop((namespace, monitor), set()):
        for gauge in (DRIFT_STATISTIC, DRIFT_P_VALUE):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, monitor, feature, method)
    for gauge in (DRIFT_SHARE, DRIFT_DETECTED):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, monitor)


ALERT_STATE = Gauge(
    "mlops_alert_state",
    "Instances of each AlertRule by state (pending, firing, resolved: resolved within the last 15 minutes).",
    ["namespace", "rule", "state"],
    registry=REGISTRY,
)
ALERT_NOTIFICATIONS = Counter(
    "mlops_alert_notifications",
    "Notifications sent by AlertRules, by receiver type (event, alertmanager, webhook, slack, pagerduty) and result "
    "(success, failure).",
    ["receiver", "result"],
    registry=REGISTRY,
)
ALERT_EVALUATION_SECONDS = Histogram(
    "mlops_alert_evaluation_duration_seconds", "Time taken by one AlertRule evaluation.", buckets=_BUCKETS,
    registry=REGISTRY,
)  # fmt: skip
ALERT_LAST_EVALUATION = Gauge(
    "mlops_alert_last_evaluation_timestamp_seconds", "When each AlertRule was last evaluated (Unix time).",
    ["namespace", "rule"], registry=REGISTRY,
)  # fmt: skip
ALERT_LAST_DURATION = Gauge(
    "mlops_alert_last_evaluation_duration_seconds", "How long each AlertRule's last evaluation took.",
    ["namespace", "rule"], registry=REGISTRY,
)  # fmt: skip
ALERT_STATES = ("pending", "firing", "resolved")


def record_alerts(namespace: str, rule: str, states: Iterable[str]) -> None:
    """An AlertRule's instances by state, as gauges (every state present, 0 when none)."""
    tally = Tally(states)
    for state in ALERT_STATES:
        ALERT_STATE.labels(namespace, rule, state).set(tally.get(state, 0))


def record_evaluation(namespace: str, rule: str, at: float, seconds: float) -> None:
    """An AlertRule's evaluation: when (Unix time) and how long it took."""
    ALERT_LAST_EVALUATION.labels(namespace, rule).set(at)
    ALERT_LAST_DURATION.labels(namespace, rule).set(seconds)
    ALERT_EVALUATION_SECONDS.observe(seconds)


def forget_alerts(namespace: str, rule: str) -> None:
    """A deleted AlertRule's series go."""
    for state in ALERT_STATES:
        with contextlib.suppress(KeyError):
            ALERT_STATE.remove(namespace, rule, state)
    for gauge in (ALERT_LAST_EVALUATION, ALERT_LAST_DURATION):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, rule)


BUILD_INFO = Gauge("mlops_operator_build_info", "The operator's version (value 1).", ["version"], registry=REGISTRY)
BUILD_INFO.labels(__version__).set(1)


class StateCollector(Collector):
    """Gauges computed at scrape time from the controllers' caches (read on the event loop that writes them)."""

    def __init__(self) -> None:
        self._sources: dict[str, Callable[[], Iterable[dict[str, Any]]]] = {}
        self._queues: dict[str, Callable[[], int]] = {}
        self._phases: dict[str, Callable[[], Iterable[str]]] = {}

    def objects(self, kind: str, source: Callable[[], Iterable[dict[str, Any]]]) -> None:
        """``source`` gives the current objects of ``kind`` (bodies with status.conditions)."""
        self._sources[kind] = source

    def queue(self, kind: str, depth: Callable[[], int]) -> None:
        self._queues[kind] = depth

    def phases(self, kind: str, source: Callable[[], Iterable[str]]) -> None:
        """``source`` gives the status.phase of every object of ``kind`` ("" when it has none)."""
        self._phases[kind] = source

    def collect(self) -> Iterator[Metric]:
        ready = GaugeMetricFamily(
            "mlops_operator_objects",
            "Objects of each kind the operator runs, by the status of their Ready condition (True, False, Unknown).",
            labels=["kind", "ready"],
        )
        for kind, source in self._sources.items():
            tally = Tally(_ready_of(body) for body in source())
            for status in ("True", "False", "Unknown"):
                ready.add_metric([kind, status], tally.get(status, 0))
        yield ready
        depth = GaugeMetricFamily(
            "mlops_operator_queue_depth", "Objects waiting in the work queue.", labels=["kind"]
        )  # fmt: skip
        for kind, size in self._queues.items():
            depth.add_metric([kind], size())
        yield depth
        phases = GaugeMetricFamily("mlops_operator_objects_by_phase", "Objects of each kind by their status.phase.",
                                   labels=["kind", "phase"])  # fmt: skip
        for kind, phases_of in self._phases.items():
            for phase, count in sorted(Tally(phases_of()).items()):
                phases.add_metric([kind, phase or "None"], count)
        yield phases


def _ready_of(body: dict[str, Any]) -> str:
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status", "Unknown"))
    return "Unknown"


STATE = StateCollector()
REGISTRY.register(STATE)


def parse_bind(text: str) -> tuple[str, int]:
    """``host:port`` or ``:port`` (all interfaces) -> (host, port); raises ValueError naming the problem."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--metrics must be host:port or :port, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


async def serve(bind: str) -> web.AppRunner:
    """Serves ``/metrics`` on ``bind`` from the running event loop; the caller cleans the runner up."""
    host, port = parse_bind(bind)

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("serving metrics on http://%s:%d/metrics", host, port)
    return runner
