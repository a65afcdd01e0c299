"""The local cluster's Prometheus and Alertmanager (tests/cluster/monitoring.sh) as the operator will use them:
Alertmanager takes and lists alerts, Prometheus sends it alerts, finds annotated Pods through the API server with the
model labels, and scrapes the operator targets dropped in its targets directory."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from support import Kubectl, Monitoring, call, prometheus_data


def test_alertmanager_takes_and_lists_alerts(monitoring: Monitoring, kubectl_session: Kubectl) -> None:
    status = call(f"{monitoring.alertmanager}/api/v2/status")
    assert status["cluster"]["status"] == "disabled", status["cluster"]  # no gossip listener on a test machine
    assert "receiver: default" in status["config"]["original"], status["config"]

    test_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    alert = {
        "labels": {"alertname": "MlopsMonitoringCheck", "test_id": test_id},
        "annotations": {"summary": "posted by test_monitoring.py"},
        "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=5)).isoformat(),
    }  # fmt: skip
    call(f"{monitoring.alertmanager}/api/v2/alerts", [alert])
    try:

        def listed() -> dict[str, Any]:
            query = urllib.parse.urlencode({"filter": f'test_id="{test_id}"'})
            found = call(f"{monitoring.alertmanager}/api/v2/alerts?{query}")
            if len(found) != 1 or found[0]["status"]["state"] != "active":
                raise AssertionError(found)
            return found[0]  # type: ignore[no-any-return]

        found = kubectl_session.wait_for(listed, timeout=30, what="the posted alert to be listed as active")
        assert found["labels"] == alert["labels"]
        assert [r["name"] for r in found["receivers"]] == ["default"]
    finally:
        call(f"{monitoring.alertmanager}/api/v2/alerts", [{**alert, "endsAt": datetime.now(UTC).isoformat()}])


def test_prometheus_sends_alerts_to_the_alertmanager(monitoring: Monitoring) -> None:
    # A Prometheus started moments ago lists its Alertmanager once its notifier has discovered it.
    deadline = time.monotonic() + 30
    while True:
        data = prometheus_data(monitoring, "/api/v1/alertmanagers")
        if data["activeAlertmanagers"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [a["url"] for a in data["activeAlertmanagers"]] == [f"{monitoring.alertmanager}/api/v2/alerts"], data


def pod(name: str, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    """A Pod that kwok runs (it gets an IP, no container starts: nothing listens)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": {"containers": [{"name": "server", "image": "mlops-test/nothing:0"}]}}  # fmt: skip


def pod_ip(kubectl: Kubectl, name: str) -> str:
    """Waits until kwok gave the Pod ``name`` an IP, and returns it."""
    ip = kubectl.wait_for(lambda: kubectl.get("pod", name)["status"].get("podIP"), timeout=60,
                          what=f"Pod {name} to get an IP")  # fmt: skip
    return str(ip)


def test_prometheus_discovers_annotated_pods_with_model_labels(monitoring: Monitoring, kubectl: Kubectl) -> None:
    labels = {"mlops.io/model": "m", "mlops.io/version": "1.0.0", "mlops.io/deployment": "d"}
    scrape = {"prometheus.io/scrape": "true", "prometheus.io/port": "9123", "prometheus.io/path": "/stats/metrics"}
    kubectl.apply(pod("served", labels, scrape))
    kubectl.apply(pod("unannotated", labels, {}))
    served_ip = pod_ip(kubectl, "served")
    pod_ip(kubectl, "unannotated")
    namespace = kubectl.namespace

    def discovered() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        data = prometheus_data(monitoring, "/api/v1/targets", state="any")
        active = [t for t in data["activeTargets"] if t["labels"].get("namespace") == namespace]
        dropped = [t for t in data["droppedTargets"]
                   if t["discoveredLabels"].get("__meta_kubernetes_namespace") == namespace]  # fmt: skip
        if not active or not dropped:
            raise AssertionError(f"active {active}, dropped {dropped}")
        return active, dropped

    # Nothing listens on the Pod: the target is down, and only what discovery made of the Pod is checked.
    active, dropped = kubectl.wait_for(discovered, timeout=30, what="Prometheus to discover the test's Pods")
    assert len(active) == 1, active
    target = active[0]
    assert target["scrapePool"] == "model-servers"
    assert target["scrapeUrl"] == f"http://{served_ip}:9123/stats/metrics"
    assert {k: target["labels"].get(k) for k in ("job", "namespace", "pod", "model", "version", "deployment")} == {
        "job": "model-servers", "namespace": namespace, "pod": "served", "model": "m", "version": "1.0.0",
        "deployment": "d",
    }  # fmt: skip
    assert [t["discoveredLabels"]["__meta_kubernetes_pod_name"] for t in dropped] == ["unannotated"]


class CounterPage(BaseHTTPRequestHandler):
    """/metrics with one counter, in Prometheus's text format; the server's ``check`` is its label value."""

    server: MetricsServer

    def do_GET(self) -> None:
        if self.path != "/metrics":
            self.send_error(404)
            return
        body = (f"# HELP mlops_monitoring_check_total A counter for the monitoring test.\n"
                f"# TYPE mlops_monitoring_check_total counter\n"
                f'mlops_monitoring_check_total{{check="{self.server.check}"}} 7\n').encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsServer(ThreadingHTTPServer):
    check: str


@pytest.fixture
def metrics_server() -> Iterator[MetricsServer]:
    """A /metrics page on a free loopback port, served from a thread of the test process."""
    server = MetricsServer(("127.0.0.1", 0), CounterPage)
    server.check = uuid.uuid4().hex
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_prometheus_scrapes_a_dropped_target_file(
    monitoring: Monitoring, kubectl_session: Kubectl, metrics_server: MetricsServer
) -> None:
    check = metrics_server.check
    address = f"127.0.0.1:{metrics_server.server_address[1]}"
    target_file = monitoring.directory / "targets" / f"test-{check}.json"
    # Written under another name and renamed: Prometheus never reads a half-written file.
    partial = target_file.with_suffix(".partial")
    partial.write_text(json.dumps([{"targets": [address], "labels": {"check_file": check}}]))
    partial.rename(target_file)
    query = f'mlops_monitoring_check_total{{job="mlops-operator",check="{check}"}}'
    try:

        def scraped() -> list[dict[str, Any]]:
            result = prometheus_data(monitoring, "/api/v1/query", query=query)["result"]
            if not result:
                raise AssertionError(f"no result for {query}")
            return result  # type: ignore[no-any-return]

        result = kubectl_session.wait_for(scraped, timeout=30, what=f"Prometheus to scrape {address}")
        assert len(result) == 1, result
        assert result[0]["value"][1] == "7"
        assert result[0]["metric"]["instance"] == address
        assert result[0]["metric"]["check_file"] == check
    finally:
        target_file.unlink(missing_ok=True)

    def gone() -> bool:
        data = prometheus_data(monitoring, "/api/v1/targets", state="active")
        if any(t["labels"].get("instance") == address for t in data["activeTargets"]):
            raise AssertionError(f"{address} is still a target")
        return True

    kubectl_session.wait_for(gone, timeout=30, what=f"Prometheus to drop {address} with its file")
