"""The direct provider's measurements: counters read from real server metrics pages, increases across Pods and
restarts, and histogram quantiles as Prometheus computes them."""

from __future__ import annotations

import math

import pytest
from prometheus_client import generate_latest

from mlops_operator.logic.measure import Reading, builtins, increase, parse, prediction_shift, quantile
from mlops_operator.server.metrics import ServerMetrics


def page(requests: dict[int, int], latencies: list[float]) -> str:
    """A real model server's /metrics page after answering ``requests`` (by code) with ``latencies``, over REST and
    gRPC alternately (the page has a series per protocol; a reading sums them)."""
    metrics = ServerMetrics("fraud", "1.1.0")
    for code, n in requests.items():
        for i in range(n):
            metrics.count(code, "grpc" if i % 2 else "rest")
    for i, seconds in enumerate(latencies):
        metrics.observe_latency(seconds, "grpc" if i % 2 else "rest")
    return generate_latest(metrics.registry).decode()


def test_parse_reads_the_servers_own_page() -> None:
    reading = parse(page({200: 7, 503: 2}, [0.003, 0.02, 0.02]))
    assert reading.requests == {"200": 7.0, "503": 2.0}
    assert reading.buckets[0.005] == 1 and reading.buckets[0.025] == 3 and reading.buckets[math.inf] == 3


def test_increase_sums_pods_and_survives_restarts_and_new_pods() -> None:
    before = {"a": Reading({"200": 10}, {1.0: 10, math.inf: 10}), "gone": Reading({"200": 99}, {math.inf: 99})}
    after = {
        "a": Reading({"200": 15, "500": 1}, {1.0: 16, math.inf: 16}),  # +5 ok, +1 error
        "restarted": Reading({"200": 3}, {math.inf: 3}),  # new (or lower than before): all of it counts
    }
    window = increase(before | {"restarted": Reading({"200": 50}, {math.inf: 50})}, after)
    assert window.requests == {"200": 8, "500": 1}
    assert window.buckets == {1.0: 6, math.inf: 9}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.5, 0.15),  # rank 50 of 100: halfway through (0.1, 0.2], where 20..80 lie
        (0.2, 0.1),  # exactly at a bound
        (0.1, 0.05),  # in the first bucket, which starts at 0
        (0.99, 0.2),  # in +Inf: the highest finite bound
    ],
)
def test_quantile_like_histogram_quantile(q: float, expected: float) -> None:
    buckets = {0.1: 20, 0.2: 80, math.inf: 100}
    assert quantile(q, buckets) == pytest.approx(expected)


def test_quantile_without_observations_is_none_and_a_bad_histogram_is_refused() -> None:
    assert quantile(0.5, {0.1: 0, math.inf: 0}) is None
    with pytest.raises(ValueError, match=r"\+Inf bucket"):
        quantile(0.5, {0.1: 3})
    with pytest.raises(ValueError, match=r"between 0 and 1, got 1\.5"):
        quantile(1.5, {math.inf: 1})


def test_builtins_over_a_window_of_real_pages() -> None:
    start = {"p1": parse(page({200: 10}, [0.002] * 10)), "p2": parse(page({200: 5}, [0.002] * 5))}
    # 30 s later: p1 answered 90 more (80 answered 200, 2 answered 503, 8 answered 400); p2 restarted and has
    # answered 3 since (its counters start again from zero: below the 5 of the first reading).
    end = {
        "p1": parse(page({200: 90, 503: 2, 400: 8}, [0.002] * 10 + [0.004] * 60 + [0.03] * 30)),
        "p2": parse(page({200: 3}, [0.004] * 3)),
    }
    got = builtins(increase(start, end), 30)
    assert got["requestRate"] == pytest.approx(93 / 30)
    assert got["errorRate"] == pytest.approx(2 / 93)
    assert got["clientErrorRate"] == pytest.approx(8 / 93)
    # 93 latencies in the window: 63 at 4 ms (bucket (2.5, 5] ms), 30 at 30 ms (bucket (25, 50] ms).
    assert 0.0025 < got["latencyP50"] <= 0.005  # type: ignore[operator]
    assert 0.025 < got["latencyP99"] <= 0.05  # type: ignore[operator]


def test_a_restart_is_seen_on_any_counter_going_down() -> None:
    before = {"p": Reading({"200": 10, "500": 4}, {0.1: 14, math.inf: 14})}
    # More 200s than before, but fewer 500s: the process restarted; everything after counts whole.
    after = {"p": Reading({"200": 12}, {0.1: 12, math.inf: 12})}
    assert increase(before, after) == Reading({"200": 12}, {0.1: 12, math.inf: 12})


def test_no_requests_is_no_data_and_unknown_names_are_refused() -> None:
    got = builtins(Reading({}, {}), 30)
    assert got == {"errorRate": None, "clientErrorRate": None, "requestRate": 0.0, "latencyP50": None,
                   "latencyP95": None, "latencyP99": None}  # fmt: skip
    with pytest.raises(ValueError, match="unknown builtin metric 'errors'"):
        builtins(Reading(), 30, ["errors"])


def bins(feature: str, counts: dict[str, float]) -> Reading:
    return Reading(bins={(feature, b): v for b, v in counts.items()})


def test_prediction_shift_is_the_jensen_shannon_distance_of_the_windows() -> None:
    from scipy.spatial.distance import jensenshannon

    canary = {"0": 70.0, "1": 30.0}
    stable = {"0": 95.0, "1": 5.0, "__null__": 0.0}
    got = prediction_shift(bins("is_fraud", canary), bins("is_fraud", stable), "is_fraud")
    assert got == pytest.approx(jensenshannon([70, 30, 0], [95, 5, 0], base=2))
    assert prediction_shift(bins("p", {"0": 10}), bins("p", {"0": 990}), "p") == pytest.approx(0.0)
    assert prediction_shift(bins("p", {"0": 10}), bins("p", {"1": 10}), "p") == pytest.approx(1.0)
    # No prediction counted on one side (or another feature only): no data.
    assert prediction_shift(bins("p", {"0": 0}), bins("p", {"0": 5}), "p") is None
    assert prediction_shift(bins("amount", {"0": 5}), bins("amount", {"0": 5}), "p") is None


def test_sketch_bins_are_parsed_and_increase_like_the_other_counters() -> None:
    text = """# TYPE mlops_server_feature_bin counter
mlops_server_feature_bin_total{model="m",version="1",feature="is_fraud",bin="0"} 40
mlops_server_feature_bin_total{model="m",version="1",feature="is_fraud",bin="1"} 2
"""
    later = text.replace('bin="0"} 40', 'bin="0"} 90').replace('bin="1"} 2', 'bin="1"} 12')
    window = increase({"p": parse(text)}, {"p": parse(later)})
    assert window.bins == {("is_fraud", "0"): 50, ("is_fraud", "1"): 10}
