"""The operator's metrics: address parsing, the state gauges computed from the caches. No cluster."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from mlops_operator import metrics
from mlops_operator.cli import main


@pytest.mark.parametrize(
    ("text", "expected"),
    [(":8080", ("0.0.0.0", 8080)), ("127.0.0.1:9000", ("127.0.0.1", 9000)), ("[::1]:8080", ("::1", 8080))],
)
def test_parse_bind(text: str, expected: tuple[str, int]) -> None:
    assert metrics.parse_bind(text) == expected


@pytest.mark.parametrize("text", ["8080", "host:", "host:http", ":0", ":70000"])
def test_parse_bind_names_the_flag_and_the_value(text: str) -> None:
    with pytest.raises(ValueError, match=f"--metrics must be host:port or :port, got '{text}'"):
        metrics.parse_bind(text)


def test_run_refuses_a_bad_metrics_address_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--metrics", "nonsense"]) == 2
    assert "--metrics must be host:port or :port, got 'nonsense'" in capsys.readouterr().err


def test_objects_are_counted_by_their_ready_status() -> None:
    collector = metrics.StateCollector()
    bodies = [
        {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        {"status": {"conditions": [{"type": "Progressing", "status": "True"}, {"type": "Ready", "status": "False"}]}},
        {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        {},
    ]
    collector.objects("ModelDeployment", lambda: bodies)
    collector.queue("ModelDeployment", lambda: 7)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for family in collector.collect() for s in family.samples
    }

    def count(ready: str) -> float:
        return samples[("mlops_operator_objects", (("kind", "ModelDeployment"), ("ready", ready)))]

    assert (count("True"), count("False"), count("Unknown")) == (2, 1, 1)
    assert samples[("mlops_operator_queue_depth", (("kind", "ModelDeployment"),))] == 7


def test_the_registry_exposes_build_info_without_created_series() -> None:
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'mlops_operator_build_info{version="' in text
    assert "_created" not in text
