"""AlertRule on the real control plane and data plane: PromQL and SLA rules over the model servers' metrics as the
local Prometheus scrapes them, delivered to the real Alertmanager (routed on to a local webhook), condition and CEL
rules over our own resources, the PrometheusRule export and the checks of expressions."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support import (
    ROOT,
    Body,
    Kubectl,
    Monitoring,
    OperatorProcess,
    call,
    condition,
    deploy,
    events,
    prometheus_data,
    register,
    scrape,
    wait_serving,
    wait_status,
)
from test_driftmonitor import given_serving, transactions


def rule(kubectl: Kubectl, name: str, **spec: Any) -> None:
    kubectl.apply({"apiVersion": "mlops.io/v1alpha1", "kind": "AlertRule", "metadata": {"name": name},
                   "spec": {"interval": "10s", **spec}})  # fmt: skip


def secret(kubectl: Kubectl, name: str, **data: str) -> None:
    kubectl.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data})


def state_is(state: str, instances: int | None = None) -> Any:
    def check(obj: Body) -> bool:
        status = obj.get("status") or {}
        return status.get("state") == state and (instances is None or status.get("instances") == instances)

    return check


def alerts(obj: Body) -> dict[str, Body]:
    """The rule's instances by their labels' name (condition rules) or sli (sla rules) or deployment."""
    out = {}
    for a in obj["status"].get("alerts") or []:
        labels = a["labels"]
        out[labels.get("name") or labels.get("sli") or labels.get("deployment") or a["fingerprint"]] = a
    return out


class Capture:
    """A local HTTP server recording every POST (the Alertmanager's webhook receiver)."""

    def __init__(self) -> None:
        self.bodies: list[Body] = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                capture.bodies.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def routed_alertmanager(monitoring: Monitoring) -> Iterator[Capture]:
    """The local Alertmanager, routing every alert to a webhook this test reads (reconfigured, then restored)."""
    capture = Capture()
    script = str(ROOT / "tests/cluster/monitoring.sh")
    subprocess.run([script, "up"], check=True, capture_output=True, timeout=120,
                   env={**os.environ, "MLOPS_ALERTMANAGER_WEBHOOK": capture.url})  # fmt: skip
    try:
        yield capture
    finally:
        env = {k: v for k, v in os.environ.items() if k != "MLOPS_ALERTMANAGER_WEBHOOK"}
        subprocess.run([script, "up"], check=True, capture_output=True, timeout=120, env=env)
        capture.close()


class Traffic:
    """Inference requests to the servers in the background: a share of them malformed (answered 400)."""

    def __init__(self, ips: list[str]) -> None:
        self.bad_share = 0.5
        self.codes: dict[int, int] = {}
        self._stop = threading.Event()
        rows = transactions(8, seed=5)
        good = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [8, 4], "data": rows.ravel().tolist()}]}
        bad = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [8, 3],
                           "data": rows[:, :3].ravel().tolist()}]}  # fmt: skip
        self._bodies = (json.dumps(good).encode(), json.dumps(bad).encode())
        self._ips = ips
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            body = self._bodies[1] if (i % 100) < self.bad_share * 100 else self._bodies[0]
            request = urllib.request.Request(f"http://{self._ips[i % len(self._ips)]}:8080/v2/models/fraud/infer",
                                             body, {"Content-Type": "application/json"})  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    code = response.status
            except urllib.error.HTTPError as exc:
                code = exc.code
            self.codes[code] = self.codes.get(code, 0) + 1
            i = (i + 7) % 100  # interleaves good and bad requests
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def am_alerts(monitoring: Monitoring, **labels: str) -> list[Body]:
    query = urllib.parse.urlencode([("filter", f'{k}="{v}"') for k, v in labels.items()])
    return call(f"{monitoring.alertmanager}/api/v2/alerts?{query}&active=true&silenced=false&inhibited=false")  # type: ignore[no-any-return]


def test_a_promql_rule_over_the_servers_error_rate_pends_fires_into_alertmanager_and_resolves(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path, monitoring: Monitoring, routed_alertmanager: Capture
) -> None:
    namespace = kubectl.namespace or ""
    ips = given_serving(kubectl, tmp_path, replicas=1)
    query = f'mlops_server_requests_total{{namespace="{namespace}"}}'
    traffic = Traffic(ips)
    try:
        kubectl.wait_for(lambda: bool(prometheus_data(monitoring, "/api/v1/query", query=query)["result"]),
                         timeout=60, what="Prometheus to scrape the server")  # fmt: skip
        secret(kubectl, "alerting", am=monitoring.alertmanager)
        errors = (f'sum by (namespace, deployment) (rate(mlops_server_requests_total{{namespace="{namespace}",'
                  f'code!~"2.."}}[20s])) / sum by (namespace, deployment) (rate(mlops_server_requests_total'
                  f'{{namespace="{namespace}"}}[20s])) > 0.2')  # fmt: skip
        rule(kubectl, "errors", expr=errors, prometheus={"address": monitoring.prometheus}, severity="critical",
             labels={"team": "fraud"}, annotations={"summary": "{{ $labels.deployment }}: {{ $value | "
                                                    "humanizePercentage }} errors"},
             receivers=[{"name": "am", "alertmanager": {"urlSecretRef": {"name": "alerting", "key": "am"}}},
                        {"name": "events", "event": {}}],
             **{"for": "10s"})  # fmt: skip
        rule(kubectl, "latency", sla={"deployment": "fraud", "window": "30s", "latencyP99": 0.000001},
             prometheus={"address": monitoring.prometheus})  # fmt: skip

        pending = wait_status(kubectl, "alertrule", "errors", "pending", state_is("pending", 1), timeout=60)
        (inst,) = pending["status"]["alerts"]
        assert inst["labels"] == {"alertname": "errors", "severity": "critical", "team": "fraud",
                                  "namespace": namespace, "deployment": "fraud"}  # fmt: skip
        assert 0.2 < float(inst["value"]) <= 1.0, inst
        firing = wait_status(kubectl, "alertrule", "errors", "firing", state_is("firing", 1), timeout=40)
        (inst,) = firing["status"]["alerts"]
        assert inst["firedAt"] > inst["activeAt"] and inst["annotations"]["summary"].startswith("fraud: ")
        assert inst["annotations"]["summary"].endswith("% errors"), inst["annotations"]
        assert condition(firing, "Ready")["reason"] == "Evaluated"

        # The real Alertmanager holds it, and routes it to the webhook in its payload of version 4.
        listed = kubectl.wait_for(lambda: am_alerts(monitoring, alertname="errors", namespace=namespace),
                                  timeout=30, what="the alert in Alertmanager")  # fmt: skip
        assert listed[0]["labels"]["severity"] == "critical" and listed[0]["status"]["state"] == "active"
        assert listed[0]["labels"]["team"] == "fraud"

        def notified(status: str) -> Body:
            for body in routed_alertmanager.bodies:
                ours = [a for a in body.get("alerts", []) if a["labels"].get("alertname") == "errors"
                        and a["labels"].get("namespace") == namespace]  # fmt: skip
                if ours and body["status"] == status:
                    return body
            raise AssertionError(f"no {status} notification yet: {routed_alertmanager.bodies[-3:]}")

        webhook = kubectl.wait_for(lambda: notified("firing"), timeout=30, what="the webhook's firing notification")
        assert webhook["version"] == "4" and webhook["receiver"] == "default"
        assert {"groupKey", "groupLabels", "commonLabels", "commonAnnotations", "externalURL"} <= set(webhook)
        (sent,) = [a for a in webhook["alerts"] if a["labels"]["alertname"] == "errors"]
        assert sent["status"] == "firing" and sent["annotations"]["summary"] == inst["annotations"]["summary"]
        assert [e["reason"] for e in events(kubectl, "errors", "AlertFiring")] == ["AlertFiring"]

        # The SLA rule's compiled PromQL, and its one objective missed.
        latency = wait_status(kubectl, "alertrule", "latency", "firing", state_is("firing", 1), timeout=40)
        assert len(latency["status"]["queries"]) == 1 and "histogram_quantile(0.99" in latency["status"]["queries"][0]
        assert set(alerts(latency)) == {"latencyP99"} and float(alerts(latency)["latencyP99"]["value"]) > 0.000001

        # Healthy traffic: resolved, in status, in Alertmanager and at the webhook.
        traffic.bad_share = 0.0
        resolved = wait_status(kubectl, "alertrule", "errors", "resolved", state_is("inactive"), timeout=90)
        (inst,) = resolved["status"]["alerts"]
        assert inst["state"] == "resolved" and inst["resolvedAt"] > inst["firedAt"]
        kubectl.wait_for(lambda: not am_alerts(monitoring, alertname="errors", namespace=namespace), timeout=30,
                         what="Alertmanager to resolve the alert")  # fmt: skip
        kubectl.wait_for(lambda: notified("resolved"), timeout=30, what="the webhook's resolved notification")
        assert [e["reason"] for e in events(kubectl, "errors", "AlertResolved")] == ["AlertResolved"]
        assert next(r for r in resolved["status"]["receivers"] if r["name"] == "am")["state"] == "ok"
    finally:
        traffic.stop()
    assert traffic.codes.get(400, 0) > 50 and traffic.codes.get(200, 0) > 50, traffic.codes


def test_a_condition_rule_on_ready_false_has_one_instance_per_failing_deployment(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    register(kubectl, tmp_path, "fraud", "1.0.0")
    for name, ver in (("fraud-a", "1.0.0"), ("fraud-b", "9.9.9"), ("fraud-c", "8.8.8")):
        kubectl.apply({"apiVersion": "mlops.io/v1alpha1", "kind": "ModelDeployment",
                       "metadata": {"name": name, "labels": {"team": "fraud"}},
                       "spec": {"model": "fraud", "version": ver}})  # fmt: skip
    deploy(kubectl, "other", version="7.7.7")  # not selected: no team label
    wait_serving(kubectl, "fraud-a", "1.0.0", timeout=90)
    rule(kubectl, "not-ready", condition={"selector": {"kind": "ModelDeployment", "matchLabels": {"team": "fraud"}},
                                          "statusCondition": {"type": "Ready", "status": "False"}},
         annotations={"summary": "{{ $labels.name }}: {{ $value }}"},
         receivers=[{"name": "events", "event": {}}])  # fmt: skip
    obj = wait_status(kubectl, "alertrule", "not-ready", "two firing", state_is("firing", 2), timeout=40)
    found = alerts(obj)
    assert set(found) == {"fraud-b", "fraud-c"}, found
    assert found["fraud-b"]["labels"] == {"alertname": "not-ready", "severity": "warning", "kind": "ModelDeployment",
                                          "name": "fraud-b", "namespace": kubectl.namespace}  # fmt: skip
    assert "9.9.9" in found["fraud-b"]["value"] and found["fraud-b"]["annotations"]["summary"].startswith("fraud-b: ")
    # The Event lands on the rule and on the deployment.
    kubectl.wait_for(lambda: len(events(kubectl, "fraud-b", "AlertFiring")) == 1, timeout=20,
                     what="the AlertFiring Event on fraud-b")  # fmt: skip
    assert len(events(kubectl, "not-ready", "AlertFiring")) == 2

    # The operator's metrics count them.
    samples = scrape(operator.metrics)
    namespace = kubectl.namespace or ""
    state = {s: samples.get(("mlops_alert_state", (("namespace", namespace), ("rule", "not-ready"), ("state", s))))
             for s in ("pending", "firing", "resolved")}  # fmt: skip
    assert state == {"pending": 0, "firing": 2, "resolved": 0}, state
    sent = samples.get(("mlops_alert_notifications_total", (("receiver", "event"), ("result", "success"))), 0)
    assert sent >= 1

    kubectl.run("patch", "modeldeployment", "fraud-c", "--type=merge", "-p", '{"spec": {"version": "1.0.0"}}')
    obj = wait_status(kubectl, "alertrule", "not-ready", "one firing", state_is("firing", 1), timeout=90)
    found = alerts(obj)
    assert (found["fraud-b"]["state"], found["fraud-c"]["state"]) == ("firing", "resolved")


def test_a_cel_rule_over_drift_monitors_status(kubectl: Kubectl, operator: OperatorProcess) -> None:
    for name in ("orphan", "another"):
        spec = {"deploymentRef": {"name": f"no-{name}"}, "interval": "10s", "window": "10m"}
        kubectl.apply({"apiVersion": "mlops.io/v1alpha1", "kind": "DriftMonitor", "metadata": {"name": name},
                       "spec": spec})  # fmt: skip
    cel = ("self.metadata.name == 'orphan' && self.status.conditions.exists(c, c.type == 'Ready' && "
           "c.status == 'False')")  # fmt: skip
    rule(kubectl, "orphaned-monitor", condition={"selector": {"kind": "DriftMonitor"}, "cel": cel})
    obj = wait_status(kubectl, "alertrule", "orphaned-monitor", "firing", state_is("firing", 1), timeout=40)
    assert set(alerts(obj)) == {"orphan"} and alerts(obj)["orphan"]["value"] == "true"
    # A CEL over a field some objects lack holds for none of those (and is no error of the rule).
    rule(kubectl, "drifted", condition={"selector": {"kind": "DriftMonitor"}, "cel": "self.status.driftedShare > 0.3"})
    obj = wait_status(kubectl, "alertrule", "drifted", "evaluated", lambda o: bool((o.get("status") or {})
                      .get("lastEvaluation")), timeout=30)  # fmt: skip
    assert obj["status"]["state"] == "inactive" and condition(obj, "Ready")["status"] == "True"


def test_expressions_are_checked_when_applied(kubectl: Kubectl, operator: OperatorProcess) -> None:
    rule(kubectl, "bad-promql", expr="sum(rate(errors[1m])", prometheus={"address": "http://127.0.0.1:1"})
    rule(kubectl, "bad-cel", condition={"selector": {"kind": "ModelDeployment"}, "cel": "self.status.( > 1"})
    rule(kubectl, "no-prometheus", expr="up == 0")
    for name, needle in (("bad-promql", "spec.expr: "), ("bad-cel", "spec.condition.cel: ")):
        obj = wait_status(kubectl, "alertrule", name, "InvalidExpr",
                          lambda o: condition(o, "Ready").get("reason") == "InvalidExpr", timeout=30)  # fmt: skip
        assert condition(obj, "Ready")["message"].startswith(needle), condition(obj, "Ready")
    obj = wait_status(kubectl, "alertrule", "no-prometheus", "ProviderUnreachable",
                      lambda o: condition(o, "Ready").get("reason") == "ProviderUnreachable", timeout=30)  # fmt: skip
    # The test operator runs without a default Prometheus (MLOPS_OPERATOR_PROMETHEUS_URL unset) and the rule names
    # none: the message says how to give one.
    if not os.environ.get("MLOPS_OPERATOR_PROMETHEUS_URL"):
        assert "spec.prometheus" in condition(obj, "Ready")["message"]


def test_an_expr_rule_is_exported_as_a_prometheus_rule_owned_by_it(
    kubectl: Kubectl, operator: OperatorProcess, third_party_crds: list[str]
) -> None:
    assert "prometheusrules.monitoring.coreos.com" in third_party_crds
    rule(kubectl, "exported", expr="up == 0", prometheusRule=True, keepFiringFor="1m", runbookUrl="https://r.example/x",
         annotations={"summary": "{{ $labels.job }} down"}, **{"for": "90s"})  # fmt: skip
    obj = wait_status(kubectl, "alertrule", "exported", "Exported",
                      lambda o: condition(o, "Ready").get("reason") == "Exported", timeout=30)  # fmt: skip
    assert condition(obj, "Ready")["status"] == "True"
    exported = kubectl.get("prometheusrule", "exported")
    (group,) = exported["spec"]["groups"]
    (only,) = group["rules"]
    assert (only["alert"], only["expr"], only["for"], only["keep_firing_for"]) == ("exported", "up == 0", "1m30s", "1m")
    assert only["labels"]["severity"] == "warning" and only["annotations"]["runbook_url"] == "https://r.example/x"
    (owner,) = exported["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("AlertRule", "exported", obj["metadata"]["uid"])
