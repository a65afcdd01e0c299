"""Prometheus metrics of the model server, labelled by model and version. Latency is a histogram, so that
percentiles aggregate across Pods."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from mlops_operator.server.sketch import ABOVE, BELOW, NULL, OTHER, Sketch

# *_created series double the series count and nothing here uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05)
PROTOCOLS = ("rest", "grpc")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServerMetrics:
    """The server's metrics in a registry of their own (no process-global state between test servers)."""

    def __init__(self, model: str, version: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"model": model, "version": version}
        # code: the HTTP status code, or for gRPC the HTTP code of its status (see GRPC_HTTP_CODES), so that error
        # rates count both protocols; protocol: rest or grpc.
        self.requests = Counter("mlops_server_requests", "Inference requests by HTTP status code and protocol.",
                                ["model", "version", "code", "protocol"], registry=self.registry)  # fmt: skip
        self._requests_by_code: dict[tuple[int, str], Any] = {}
        self._labels = labels
        self.latency = Histogram("mlops_server_request_duration_seconds", "Inference request latency.",
                                 ["model", "version", "protocol"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)  # fmt: skip
        self._latency_by_protocol = {p: self.latency.labels(protocol=p, **labels) for p in PROTOCOLS}
        self.inflight = Gauge("mlops_server_inflight_requests", "Inference requests being served.",
                              ["model", "version"], registry=self.registry).labels(**labels)  # fmt: skip
        self.batch_size = Histogram("mlops_server_batch_size", "Requests predicted together, per request.",
                                    ["model", "version"], buckets=BATCH_BUCKETS,
                                    registry=self.registry).labels(**labels)  # fmt: skip
        self.batch_wait = Histogram("mlops_server_batch_wait_seconds", "Time a request waited for its batch.",
                                    ["model", "version"], buckets=WAIT_BUCKETS,
                                    registry=self.registry).labels(**labels)  # fmt: skip
        self.load_seconds = Gauge("mlops_server_model_load_seconds", "Time taken to load the model.",
                                  ["model", "version"], registry=self.registry).labels(**labels)  # fmt: skip

    def count(self, code: int, protocol: str = "rest") -> None:
        child = self._requests_by_code.get((code, protocol))
        if child is None:
            child = self.requests.labels(code=str(code), protocol=protocol, **self._labels)
            self._requests_by_code[code, protocol] = child
        child.inc()

    def observe_latency(self, seconds: float, protocol: str = "rest") -> None:
        self._latency_by_protocol[protocol].observe(seconds)

    def observe_batch(self, size: int, wait: float) -> None:
        """One request's batch: how many requests shared its predict call, and how long it waited for it."""
        self.batch_size.observe(size)
        self.batch_wait.observe(wait)

    def watch_sketch(self, sketch: Sketch) -> None:
        self.registry.register(_SketchCollector(sketch, self._labels))


class _SketchCollector(Collector):
    def __init__(self, sketch: Sketch, labels: dict[str, str]) -> None:
        self.sketch, self.labels = sketch, labels

    def collect(self) -> Iterator[CounterMetricFamily]:
        snapshot = self.sketch.snapshot()
        keys = ["model", "version", "feature", "bin"]
        bins = CounterMetricFamily("mlops_server_feature_bin", "Live values per reference-profile bin or category.",
                                   labels=keys)  # fmt: skip
        for feature, data in snapshot["features"].items():
            names = [str(i) for i in range(len(data["counts"]))] if data["type"] == "numeric" else data["categories"]
            for name, value in zip(names, data["counts"], strict=True):
                bins.add_metric([self.labels["model"], self.labels["version"], feature, name], value)
            if data["type"] == "categorical":
                bins.add_metric([self.labels["model"], self.labels["version"], feature, OTHER], data["otherCount"])
            bins.add_metric([self.labels["model"], self.labels["version"], feature, NULL], data["nulls"])
            if data["type"] == "numeric":
                bins.add_metric([self.labels["model"], self.labels["version"], feature, BELOW], data["below"])
                bins.add_metric([self.labels["model"], self.labels["version"], feature, ABOVE], data["above"])
        yield bins
        samples = CounterMetricFamily("mlops_server_sketch_samples", "Rows counted into the drift sketches.",
                                      labels=["model", "version"])  # fmt: skip
        samples.add_metric([self.labels["model"], self.labels["version"]], snapshot["samples"])
        yield samples
