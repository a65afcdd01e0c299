"""Measurements of a served version from its model servers' own metrics, without Prometheus (the ``direct``
provider of an analysis): the servers' counters are read twice, and the builtin metrics come from the increase
between the two readings, summed over the version's Pods.

From ``mlops_server_requests_total{code}`` and the histogram ``mlops_server_request_duration_seconds``:
``errorRate`` (share of 5xx answers, 0..1), ``clientErrorRate`` (share of 4xx), ``requestRate`` (requests per
second), ``latencyP50``/``P95``/``P99`` (seconds, interpolated within the histogram's buckets as Prometheus's
histogram_quantile does); and ``predictionShift``, the Jensen-Shannon distance between the canary's and the
stable version's prediction distributions over the same window, from the counts of the servers' drift sketches
(``mlops_server_feature_bin_total{feature, bin}``). Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "mlops_server_requests"
LATENCY = "mlops_server_request_duration_seconds"
BINS = "mlops_server_feature_bin"
BUILTINS = ("errorRate", "clientErrorRate", "requestRate", "latencyP50", "latencyP95", "latencyP99")
QUANTILES = {"latencyP50": 0.5, "latencyP95": 0.95, "latencyP99": 0.99}


@dataclass(frozen=True)
class Reading:
    """One server's counters at one moment."""

    requests: Mapping[str, float] = field(default_factory=dict)
    """Requests answered, by HTTP status code."""
    buckets: Mapping[float, float] = field(default_factory=dict)
    """The latency histogram: cumulative count of requests at or below each upper bound (+Inf included)."""
    bins: Mapping[tuple[str, str], float] = field(default_factory=dict)
    """The drift sketch: rows counted per (feature, bin) of the reference profile, predictions included."""


def parse(text: str) -> Reading:
    """A server's /metrics page as a Reading (other metrics are ignored)."""
    requests: dict[str, float] = {}
    buckets: dict[float, float] = {}
    bins: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{REQUESTS}_total":
                code = sample.labels.get("code", "")
                requests[code] = requests.get(code, 0.0) + sample.value
            elif sample.name == f"{LATENCY}_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name == f"{BINS}_total":
                key = (sample.labels["feature"], sample.labels["bin"])
                bins[key] = bins.get(key, 0.0) + sample.value
    return Reading(requests, buckets, bins)


def _restarted(before: Reading, after: Reading) -> bool:
    """Whether the server's counters were reset between the readings (its process restarted): any went down."""
    went_down = [
        any(after.requests.get(code, 0.0) < v for code, v in before.requests.items()),
        any(after.buckets.get(bound, 0.0) < v for bound, v in before.buckets.items()),
        any(after.bins.get(key, 0.0) < v for key, v in before.bins.items()),
    ]
    return any(went_down)


def increase(before: Mapping[str, Reading], after: Mapping[str, Reading]) -> Reading:
    """What happened between two readings of a version's servers (by Pod name), summed over the Pods. A Pod only in
    ``after`` counts from zero, and so does one whose counters went down (restarted: all it counted is new); one
    only in ``before`` is gone and adds nothing."""
    requests: dict[str, float] = {}
    buckets: dict[float, float] = {}
    bins: dict[tuple[str, str], float] = {}
    for pod, now in after.items():
        then = before.get(pod, Reading())
        if _restarted(then, now):
            then = Reading()
        for code, value in now.requests.items():
            requests[code] = requests.get(code, 0.0) + value - then.requests.get(code, 0.0)
        for bound, value in now.buckets.items():
            buckets[bound] = buckets.get(bound, 0.0) + value - then.buckets.get(bound, 0.0)
        for key, value in now.bins.items():
            bins[key] = bins.get(key, 0.0) + value - then.bins.get(key, 0.0)
    return Reading(requests, buckets, bins)


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The q-quantile of a cumulative histogram, linear within its bucket (the lowest bucket starts at 0); None
    without observations. Above the highest finite bound the answer is that bound, as in Prometheus."""
    if not 0 <= q <= 1:
        raise ValueError(f"a quantile is between 0 and 1, got {q}")
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        raise ValueError("a histogram needs its +Inf bucket")
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def builtins(window: Reading, seconds: float, names: Iterable[str] = BUILTINS) -> dict[str, float | None]:
    """The builtin metrics of a version over a window of ``seconds``; None where there is no data (no request)."""
    total = sum(window.requests.values())
    server = sum(v for code, v in window.requests.items() if code.startswith("5"))
    client = sum(v for code, v in window.requests.items() if code.startswith("4"))
    out: dict[str, float | None] = {}
    for name in names:
        if name == "requestRate":
            out[name] = total / seconds if seconds > 0 else None
        elif name == "errorRate":
            out[name] = server / total if total else None
        elif name == "clientErrorRate":
            out[name] = client / total if total else None
        elif name in QUANTILES:
            out[name] = quantile(QUANTILES[name], window.buckets) if window.buckets else None
        else:
            raise ValueError(f"unknown builtin metric {name!r} (known: {', '.join(BUILTINS)})")
    return out


def prediction_shift(canary: Reading, stable: Reading, feature: str) -> float | None:
    """The Jensen-Shannon distance (base 2: 0 for the same distribution, 1 for disjoint ones) between the two
    versions' counts of ``feature`` (the prediction) per sketch bin over a window; None when either counted none."""
    keys = sorted({b for f, b in (*canary.bins, *stable.bins) if f == feature})
    p = [canary.bins.get((feature, b), 0.0) for b in keys]
    q = [stable.bins.get((feature, b), 0.0) for b in keys]
    if sum(p) <= 0 or sum(q) <= 0:
        return None
    p = [v / sum(p) for v in p]
    q = [v / sum(q) for v in q]
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]

    def kl(x: list[float]) -> float:
        return sum(a * math.log2(a / c) for a, c in zip(x, m, strict=True) if a > 0)

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))
