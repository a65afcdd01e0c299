"""CanaryRollout on the real data plane: model servers as processes on their Pod IPs, traffic sent the way the
HTTPRoute the operator wrote says, the analysis judged on that traffic. One scenario per test."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import (
    CONTAINER,
    PROCESS,
    Body,
    Kubectl,
    Monitoring,
    OperatorProcess,
    condition,
    deploy,
    events,
    patch,
    scrape,
    start_operator,
    version,
    wait_serving,
    wait_status,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.dataplane import traffic

FEATURES = ["amount", "age_days", "merchant_risk", "hour"]
GATEWAY = {"type": "gatewayAPI", "parentRefs": [{"name": "gw"}]}
ERRORS = {"name": "errors", "builtin": "errorRate", "max": 0.01}
LATENCY = {"name": "latency", "builtin": "latencyP95",
           "compare": {"direction": "increase", "allowedIncrease": 2, "step": "2s", "confidence": 0.95}}  # fmt: skip
SHIFT = {"name": "predictions", "builtin": "predictionShift", "max": 0.3}


def transactions(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.lognormal(4.0, 1.0, n), rng.uniform(0, 3000, n), rng.beta(2, 5, n),
                         rng.integers(0, 24, n).astype(np.float64)])  # fmt: skip
    logit = -6.0 + 1.2 * np.log(x[:, 0]) - 0.001 * x[:, 1] + 6 * x[:, 2]
    return x, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)


ROWS, _ = transactions(8, seed=99)
REQUEST = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [8, 4], "data": ROWS.tolist()}],
           "outputs": [{"name": "predict"}]}  # fmt: skip


def model_files(directory: Path, kind: str) -> tuple[str, str, str]:
    """A real model of ``kind`` and its reference dataset (its own predictions as the prediction column): good (a
    logistic regression), narrow (trained on 3 of the 4 features: every request fails), slow (a forest of many trees:
    right answers, late) or flipped (the opposite labels: answers 200, predicts otherwise). Returns the model's URI,
    its checksum and the reference's URI."""
    import joblib
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    x, y = transactions(3000, seed=7)
    if kind == "narrow":
        model: Any = LogisticRegression(max_iter=1000).fit(x[:, :3], y)
        predicted = model.predict(x[:, :3])
    else:
        if kind == "slow":
            model = RandomForestClassifier(n_estimators=400, max_depth=6, random_state=0).fit(x, y)
        else:
            model = LogisticRegression(max_iter=1000).fit(x, 1 - y if kind == "flipped" else y)
        predicted = model.predict(x)
    out = io.BytesIO()
    joblib.dump(model, out)
    path = directory / f"{kind}.joblib"
    path.write_bytes(out.getvalue())
    columns = {name: x[:, i] for i, name in enumerate(FEATURES)}
    columns["is_fraud"] = predicted
    reference = directory / f"{kind}.parquet"
    pq.write_table(pa.table(columns), reference)
    return f"file://{path}", "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(), f"file://{reference}"


def register(kubectl: Kubectl, tmp_path: Path, ver: str, kind: str = "good", stage: str = "development",
             wait: bool = True, **spec: Any) -> None:  # fmt: skip
    source, checksum, reference = model_files(tmp_path, kind)
    source = kubectl.served(source)
    signature = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [-1, 4], "features": FEATURES}]}
    kubectl.apply(version(f"fraud-{ver.replace('.', '-')}", "fraud", ver, source, checksum, stage=stage,
                          signature=signature, reference={"uri": reference, "prediction": "is_fraud"},
                          **spec))  # fmt: skip
    if wait:
        kubectl.run("wait", "--for=condition=Ready", "--timeout=60s", f"modelversion/fraud-{ver.replace('.', '-')}")


def given_stable(kubectl: Kubectl, tmp_path: Path, candidate: str = "good", replicas: int = 2) -> None:
    """fraud 1.0.0 (good) serving with the canary strategy behind an HTTPRoute, 1.1.0 (``candidate``) registered."""
    register(kubectl, tmp_path, "1.0.0")
    register(kubectl, tmp_path, "1.1.0", candidate)
    deploy(kubectl, "fraud", version="1.0.0", replicas=replicas, router=GATEWAY,
           rollout={"strategy": "canary", "drainDelay": "2s"})  # fmt: skip
    wait_serving(kubectl, "fraud", "1.0.0", ready_replicas=replicas, timeout=90)


def canary(kubectl: Kubectl, name: str = "fraud", **spec: Any) -> None:
    body = {"deploymentRef": {"name": "fraud"}, **spec}
    kubectl.apply({"apiVersion": "mlops.io/v1alpha1", "kind": "CanaryRollout", "metadata": {"name": name},
                   "spec": body})  # fmt: skip


def analysis(*metrics: dict[str, Any], **settings: Any) -> dict[str, Any]:
    return {"interval": "10s", "metrics": list(metrics), **settings}


def phase_is(*phases: str) -> Any:
    return lambda o: (o.get("status") or {}).get("phase") in phases


def wait_phase(kubectl: Kubectl, *phases: str, name: str = "fraud", timeout: float = 120) -> Body:
    return wait_status(kubectl, "canaryrollout", name, f"phase {' or '.join(phases)}", phase_is(*phases),
                       timeout=timeout)  # fmt: skip


class Load:
    """Steady inference load through the HTTPRoute in the background, until stopped."""

    def __init__(self, kubectl: Kubectl, rate: float = 60) -> None:
        self.report: traffic.Report | None = None
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        namespace = kubectl.namespace or ""

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self.report = self._loop.run_until_complete(traffic.drive(
                namespace, "httproute/fraud", REQUEST, "fraud", rate, duration=900, concurrency=16,
                stop=self._stop))  # fmt: skip

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> traffic.Report:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        assert self.report is not None
        return self.report


@pytest.fixture
def load(kubectl: Kubectl) -> Iterator[list[Load]]:
    started: list[Load] = []
    yield started
    for each in started:
        if each._thread.is_alive():
            each.stop()


def start_load(kubectl: Kubectl, loads: list[Load], rate: float = 60) -> Load:
    each = Load(kubectl, rate)
    loads.append(each)
    return each


def annotations(kubectl: Kubectl, name: str = "fraud") -> dict[str, str]:
    return kubectl.get("canaryrollout", name)["metadata"].get("annotations") or {}


def metric(obj: Body, name: str) -> Body:
    return next(m for m in obj["status"]["metrics"] if m["name"] == name)


# --- scenarios -------------------------------------------------------------------------------------------------------


# Once more with each Pod a container of the image (the model server as it ships).
@pytest.mark.parametrize("data_plane", [PROCESS, CONTAINER], indirect=True)
def test_a_good_candidate_under_load_passes_every_step_and_is_promoted_without_a_failed_request(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path, third_party_crds: list[str], load: list[Load]
) -> None:
    given_stable(kubectl, tmp_path)
    canary(kubectl, steps=[{"setWeight": 20}, {"analysis": {"count": 1}}, {"setWeight": 50},
                           {"analysis": {"count": 1}}],
           analysis=analysis(ERRORS, LATENCY, SHIFT))  # fmt: skip
    obj = wait_phase(kubectl, "Idle")
    assert condition(obj, "Ready")["status"] == "True" and "serves 1.0.0" in obj["status"]["message"]
    running = start_load(kubectl, load)
    patch(kubectl, "fraud", {"version": "1.1.0"})
    obj = wait_phase(kubectl, "Promoted", timeout=150)
    wait_serving(kubectl, "fraud", "1.1.0", ready_replicas=2, timeout=60)
    time.sleep(3)
    report = running.stop()

    status = obj["status"]
    assert status["run"]["candidate"] == "1.1.0" and status["run"]["result"] == "Promoted", status
    assert status["weights"] == {"stable": 0, "canary": 100} and status["currentStep"] == 4
    for name in ("errors", "latency", "predictions"):
        m = metric(obj, name)
        assert m["passed"] == 2 and m["failed"] == 0 and m["verdict"] == "Pass", m
    assert metric(obj, "errors")["canary"] == 0 and metric(obj, "latency")["stable"] > 0
    assert metric(obj, "predictions")["canary"] < 0.3
    assert condition(obj, "Ready")["status"] == "True" and condition(obj, "Ready")["reason"] == "Promoted"
    steps = [e["message"] for e in events(kubectl, "fraud", "StepCompleted")]
    assert len(steps) == 4, steps
    # The operator's own metrics: measurements by verdict, rollouts by phase.
    samples = scrape(operator.metrics)
    assert samples[("mlops_operator_canary_measurements_total", (("verdict", "Pass"),))] == 2
    assert samples[("mlops_operator_objects_by_phase", (("kind", "CanaryRollout"), ("phase", "Promoted")))] == 1
    # Both versions answered while the weights moved, and not one request failed.
    assert report.failed == 0 and report.total > 500, report.summary()
    assert set(report.by_version) == {"1.0.0", "1.1.0"}, report.summary()


@pytest.mark.parametrize(("kind", "failing"), [("narrow", "errors"), ("slow", "latency"), ("flipped", "predictions")])
def test_a_defective_candidate_is_rolled_back_by_its_own_metric(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path, third_party_crds: list[str], load: list[Load],
    kind: str, failing: str,
) -> None:  # fmt: skip
    given_stable(kubectl, tmp_path, candidate=kind)
    canary(kubectl, steps=[{"setWeight": 30}, {"analysis": {"count": 2}}, {"setWeight": 60}],
           analysis=analysis(ERRORS, LATENCY, SHIFT))  # fmt: skip
    running = start_load(kubectl, load)
    patch(kubectl, "fraud", {"version": "1.1.0"})
    obj = wait_phase(kubectl, "RolledBack", timeout=120)
    # The stable version takes everything back, the candidate drains and goes; the deployment says why.
    md = wait_status(kubectl, "modeldeployment", "fraud", "1.0.0 alone",
                     lambda o: o["status"].get("traffic") == "1.0.0=100"
                     and [v["version"] for v in o["status"]["versions"]] == ["1.0.0"], timeout=60)  # fmt: skip
    time.sleep(2)
    report = running.stop()

    status = obj["status"]
    assert status["run"]["result"] == "RolledBack" and status["run"]["cause"] == "AnalysisFailed", status
    assert status["weights"] == {"stable": 100, "canary": 0}
    assert metric(obj, failing)["verdict"] == "Fail" and metric(obj, failing)["failed"] >= 1, status["metrics"]
    assert f"{failing}" in status["run"]["reason"] and "at step 1" in status["run"]["reason"], status["run"]
    assert condition(obj, "Degraded")["status"] == "True" and condition(obj, "Degraded")["reason"] == "AnalysisFailed"
    assert md["status"]["canary"]["stopped"] == "1.1.0" and md["status"]["canary"]["rollout"] == "fraud"
    assert "stopped by canaryrollout fraud" in condition(md, "Ready")["message"]
    assert events(kubectl, "fraud", "RolledBack"), "no RolledBack event"
    # Requests the stable version answered never failed; the candidate's own answers are what failed it.
    assert report.by_code.get(200, 0) > 0
    if kind != "narrow":
        assert report.failed == 0, report.summary()


def test_manual_verbs_pause_resume_abort_and_retry(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path, third_party_crds: list[str]
) -> None:
    given_stable(kubectl, tmp_path, replicas=1)
    canary(kubectl, steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 40}, {"pause": {}}])
    patch(kubectl, "fraud", {"version": "1.1.0"})
    obj = wait_phase(kubectl, "Paused")
    assert obj["status"]["currentStep"] == 1 and "mlops.io/resume=1" in obj["status"]["message"]
    # A resume naming another step is stale: consumed, recorded, and the pause holds.
    kubectl.run("annotate", "canaryrollout", "fraud", "mlops.io/resume=3")
    kubectl.wait_for(lambda: "mlops.io/resume" not in annotations(kubectl), what="stale resume cleared")
    assert events(kubectl, "fraud", "VerbIgnored")
    assert kubectl.get("canaryrollout", "fraud")["status"]["currentStep"] == 1
    kubectl.run("annotate", "canaryrollout", "fraud", "mlops.io/resume=1")
    obj = wait_status(kubectl, "canaryrollout", "fraud", "paused at step 3",
                      lambda o: o["status"].get("currentStep") == 3 and o["status"]["phase"] == "Paused")  # fmt: skip
    assert obj["status"]["applied"]["canary"] == 40
    # Abort: the stable version takes the traffic back, the candidate is stopped.
    kubectl.run("annotate", "canaryrollout", "fraud", "mlops.io/abort=1.1.0")
    obj = wait_phase(kubectl, "Aborted")
    assert obj["status"]["run"]["reason"] == "aborted by mlops.io/abort"
    wait_serving(kubectl, "fraud", "1.0.0")
    # Retry: a new run of the same candidate, the aborted one in history.
    kubectl.run("annotate", "canaryrollout", "fraud", "mlops.io/retry=1.1.0")
    obj = wait_status(kubectl, "canaryrollout", "fraud", "the retried run paused at step 1",
                      lambda o: o["status"].get("phase") == "Paused" and o["status"].get("currentStep") == 1
                      and o["status"].get("history"))  # fmt: skip
    assert [(h["candidate"], h["result"]) for h in obj["status"]["history"]] == [("1.1.0", "Aborted")]
    kubectl.run("annotate", "canaryrollout", "fraud", "mlops.io/promote=1.1.0")
    wait_phase(kubectl, "Promoted")
    wait_serving(kubectl, "fraud", "1.1.0")
    assert "mlops.io/promote" not in annotations(kubectl)


@pytest.mark.parametrize("policy", ["wait", "fail", "inconclusive", "pass"])
def test_no_traffic_is_judged_as_the_no_data_policy_says(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path, third_party_crds: list[str], policy: str
) -> None:
    given_stable(kubectl, tmp_path, replicas=1)
    canary(kubectl, steps=[{"setWeight": 10}, {"analysis": {"count": 1}}],
           analysis=analysis(ERRORS, noData=policy, noDataDeadline="20s"))  # fmt: skip
    patch(kubectl, "fraud", {"version": "1.1.0"})
    ended = {"wait": "RolledBack", "fail": "RolledBack", "inconclusive": "Paused", "pass": "Promoted"}[policy]
    obj = wait_phase(kubectl, ended, timeout=90)
    run, errors = obj["status"]["run"], metric(obj, "errors")
    assert errors["noData"] >= 1 and errors["verdict"] == "NoData", errors
    if policy == "wait":
        # Measured again until the deadline, then rolled back naming the metric.
        assert run["cause"] == "NoDataDeadlineExceeded" and errors["noData"] >= 2, run
        assert "errors: no data for the candidate" in run["reason"], run
    elif policy == "fail":
        assert run["cause"] == "AnalysisFailed" and "errors: no data for the candidate" in run["reason"], run
    elif policy == "inconclusive":
        assert condition(obj, "Ready")["reason"] == "AnalysisInconclusive" and run["held"], obj["status"]
    else:
        assert run["result"] == "Promoted"


def test_the_policy_runs_two_releases_and_keeps_both_in_history(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path, third_party_crds: list[str]
) -> None:
    given_stable(kubectl, tmp_path, replicas=1)
    register(kubectl, tmp_path, "1.2.0")
    canary(kubectl, steps=[{"setWeight": 50}, {"pause": {"duration": "2s"}}])
    patch(kubectl, "fraud", {"version": "1.1.0"})
    wait_phase(kubectl, "Promoted")
    wait_serving(kubectl, "fraud", "1.1.0")
    patch(kubectl, "fraud", {"version": "1.2.0"})
    obj = wait_status(kubectl, "canaryrollout", "fraud", "1.2.0 promoted",
                      lambda o: o["status"].get("candidate") == "1.2.0" and o["status"]["phase"] == "Promoted",
                      timeout=90)  # fmt: skip
    assert [(h["candidate"], h["stable"], h["result"]) for h in obj["status"]["history"]] == [
        ("1.1.0", "1.0.0", "Promoted")]  # fmt: skip
    assert (obj["status"]["run"]["candidate"], obj["status"]["run"]["stable"]) == ("1.2.0", "1.1.0")
    wait_serving(kubectl, "fraud", "1.2.0")


def test_a_sigkilled_operator_resumes_the_run_from_status_repeating_and_skipping_nothing(
    kubectl: Kubectl, tmp_path: Path, third_party_crds: list[str], load: list[Load]
) -> None:
    op = start_operator(tmp_path, "--namespace", kubectl.namespace or "default")
    try:
        given_stable(kubectl, tmp_path)
        canary(kubectl, steps=[{"setWeight": 20}, {"analysis": {"count": 2}}, {"setWeight": 50},
                               {"pause": {"duration": "5s"}}],
               analysis=analysis(ERRORS))  # fmt: skip
        running = start_load(kubectl, load)
        patch(kubectl, "fraud", {"version": "1.1.0"})
        # Killed during the analysis, then during the weight change to 50, then during promotion.
        for step in (1, 2, 4):
            obj = wait_status(kubectl, "canaryrollout", "fraud", f"at step {step}",
                              lambda o, s=step: (o["status"].get("currentStep") or 0) >= s, timeout=120)  # fmt: skip
            # Events are posted just after the status they describe: killed in that instant, an Event is lost
            # (status is the record). Killed once the completed steps' Events are in, a repeat or a skip shows.
            done = obj["status"]["currentStep"]
            deadline = time.monotonic() + 10
            while len(events(kubectl, "fraud", "StepCompleted")) < done and time.monotonic() < deadline:
                time.sleep(0.2)
            op.stop(signal.SIGKILL)
            op = start_operator(tmp_path, "--namespace", kubectl.namespace or "default")
        obj = wait_phase(kubectl, "Promoted", timeout=120)
        report = running.stop()
    finally:
        op.stop()
    completed = [e["message"] for e in events(kubectl, "fraud", "StepCompleted")]
    indexes = sorted(int(m.split()[1]) for m in completed)
    assert indexes == [0, 1, 2, 3], completed
    assert obj["status"]["run"]["result"] == "Promoted"
    assert report.failed == 0, report.summary()


def test_kubectl_mlops_status_shows_steps_weights_and_metrics(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path, third_party_crds: list[str]
) -> None:
    # The plugin is a console script of the package: on PATH beside the Python that runs the tests.
    kubectl.env["PATH"] = f"{Path(sys.executable).parent}:{kubectl.env.get('PATH', '')}"
    given_stable(kubectl, tmp_path, replicas=1)
    canary(kubectl, steps=[{"setWeight": 10}, {"pause": {}}])
    patch(kubectl, "fraud", {"version": "1.1.0"})
    wait_phase(kubectl, "Paused")
    out = kubectl.run("mlops", "status", "fraud").stdout
    print(out)
    assert "Paused" in out and "setWeight 10" in out and "1.1.0" in out, out
    kubectl.run("mlops", "resume", "fraud")
    wait_phase(kubectl, "Promoted")
    history = kubectl.run("mlops", "history", "fraud").stdout
    print(history)
    assert "Promoted" in history and "1.1.0" in history, history


def test_the_registry_grants_production_on_a_promoted_canary_and_refuses_it_on_a_rollback(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path, third_party_crds: list[str], load: list[Load]
) -> None:
    register(kubectl, tmp_path, "1.0.0", stage="production")
    deploy(kubectl, "fraud", follow="production", replicas=1, router=GATEWAY,
           rollout={"strategy": "canary", "drainDelay": "2s"})  # fmt: skip
    wait_serving(kubectl, "fraud", "1.0.0", timeout=90)
    canary(kubectl, steps=[{"setWeight": 30}, {"analysis": {"count": 1}}], analysis=analysis(ERRORS))
    running = start_load(kubectl, load)
    gate = {"liveCanary": {"deploymentRef": {"name": "fraud"}}}

    # A good version asking for production waits for live evidence; the deployment runs it as its canary; the
    # promoted rollout grants production, and the deployment is then already at 100% on it.
    register(kubectl, tmp_path, "1.1.0", stage="production", wait=False, **gate)
    waiting = wait_status(kubectl, "modelversion", "fraud-1-1-0", "awaiting its canary",
                          lambda o: condition(o, "GatesPassed").get("reason") == "AwaitingCanary")  # fmt: skip
    assert condition(waiting, "GatesPassed")["status"] == "Unknown"
    assert condition(waiting, "Ready")["message"].startswith("production waits for live evidence")
    granted = wait_status(kubectl, "modelversion", "fraud-1-1-0", "production granted",
                          lambda o: o["status"].get("stage") == "production", timeout=120)  # fmt: skip
    assert "canaryrollout fraud promoted it on deployment fraud" in condition(granted, "Ready")["message"]
    assert [(c["rollout"], c["result"]) for c in granted["status"]["canaries"]] == [("fraud", "Promoted")]
    assert kubectl.get("modeldeployment", "fraud")["status"]["version"] == "1.1.0"
    wait_status(kubectl, "modelversion", "fraud-1-0-0", "archived", lambda o: o["status"].get("stage") == "archived")

    # A defective one is refused with the rollout's reason; the deployment stays on the production version.
    register(kubectl, tmp_path, "1.2.0", "narrow", stage="production", wait=False, **gate)
    refused = wait_status(kubectl, "modelversion", "fraud-1-2-0", "production refused",
                          lambda o: condition(o, "GatesPassed").get("status") == "False", timeout=120)  # fmt: skip
    message = condition(refused, "Ready")["message"]
    assert message.startswith("production refused: canary on fraud rolled back by canaryrollout fraud: "), message
    assert "errors 1 > 0.01" in message, message
    assert refused["status"].get("stage") != "production"
    assert [c["result"] for c in refused["status"]["canaries"]] == ["RolledBack"]
    md = wait_status(kubectl, "modeldeployment", "fraud", "1.1.0 alone",
                     lambda o: o["status"].get("traffic") == "1.1.0=100"
                     and [v["version"] for v in o["status"]["versions"]] == ["1.1.0"], timeout=60)  # fmt: skip
    assert md["status"]["version"] == "1.1.0"
    assert kubectl.get("modelversion", "fraud-1-1-0")["status"]["stage"] == "production"
    report = running.stop()
    assert report.by_code.get(200, 0) > 0


def test_a_canary_under_autoscaling_with_a_mesh_router_gets_its_weights_from_the_rollout(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path, third_party_crds: list[str]
) -> None:
    register(kubectl, tmp_path, "1.0.0")
    register(kubectl, tmp_path, "1.1.0")
    deploy(kubectl, "fraud", version="1.0.0", autoscaling={"minReplicas": 1, "maxReplicas": 3},
           router={"type": "istio"}, rollout={"strategy": "canary", "drainDelay": "2s"})  # fmt: skip
    wait_serving(kubectl, "fraud", "1.0.0", timeout=90)
    canary(kubectl, steps=[{"setWeight": 25}, {"pause": {}}])
    patch(kubectl, "fraud", {"version": "1.1.0"})
    obj = wait_phase(kubectl, "Paused")
    assert obj["status"]["applied"] == {"stable": 75, "canary": 25}
    # Each version has its own autoscaler; the VirtualService splits as the rollout asked, and so does the traffic.
    hpas = json.loads(kubectl.run("get", "hpa", "-o", "json").stdout)["items"]
    assert sorted(h["metadata"]["labels"]["mlops.io/version"] for h in hpas) == ["1.0.0", "1.1.0"]
    report = asyncio.run(traffic.drive(kubectl.namespace or "", "virtualservice/fraud", REQUEST, "fraud", 400,
                                       count=1200, concurrency=16))  # fmt: skip
    assert report.failed == 0, report.summary()
    share = report.by_version["1.1.0"] / report.total
    assert abs(share - 0.25) < 0.05, report.summary()
    kubectl.run("annotate", "canaryrollout", "fraud", "mlops.io/resume=1")
    wait_phase(kubectl, "Promoted")
    wait_serving(kubectl, "fraud", "1.1.0")
    kubectl.wait_for(lambda: [h["metadata"]["labels"]["mlops.io/version"] for h in json.loads(
        kubectl.run("get", "hpa", "-o", "json").stdout)["items"]] == ["1.1.0"], what="one autoscaler left")  # fmt: skip


def test_a_sigkill_during_an_abort_loses_nothing(kubectl: Kubectl, tmp_path: Path) -> None:
    op = start_operator(tmp_path, "--namespace", kubectl.namespace or "default")
    try:
        # The replicas router: taking the weight back, the stable version must first grow from 5 Pods to 10, so
        # the abort lasts long enough to be interrupted.
        register(kubectl, tmp_path, "1.0.0")
        register(kubectl, tmp_path, "1.1.0")
        deploy(kubectl, "fraud", version="1.0.0", replicas=10, rollout={"strategy": "canary", "drainDelay": "2s"})
        wait_serving(kubectl, "fraud", "1.0.0", ready_replicas=10, timeout=120)
        canary(kubectl, steps=[{"setWeight": 50}, {"pause": {}}])
        patch(kubectl, "fraud", {"version": "1.1.0"})
        wait_phase(kubectl, "Paused", timeout=120)
        kubectl.run("annotate", "canaryrollout", "fraud", "mlops.io/abort=1.1.0")
        wait_status(kubectl, "canaryrollout", "fraud", "rolling back", phase_is("RollingBack"), timeout=20)
        op.stop(signal.SIGKILL)
        op = start_operator(tmp_path, "--namespace", kubectl.namespace or "default")
        obj = wait_phase(kubectl, "Aborted", timeout=120)
        wait_serving(kubectl, "fraud", "1.0.0", ready_replicas=10, timeout=60)
    finally:
        op.stop()
    assert obj["status"]["run"]["reason"] == "aborted by mlops.io/abort"
    # One run; the rollback begun, then ended (each recorded once).
    said = [e for e in events(kubectl, "fraud") if e["involvedObject"]["kind"] == "CanaryRollout"]
    assert sorted(e["reason"] for e in said if e["reason"] in ("Aborted", "RunStarted")) == [
        "Aborted", "Aborted", "RunStarted"], [(e["reason"], e["message"]) for e in said]  # fmt: skip
    assert "mlops.io/abort" not in annotations(kubectl)


def test_the_prometheus_provider_judges_with_credentials_from_secrets_that_never_show(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path, third_party_crds: list[str], load: list[Load],
    monitoring: Monitoring,
) -> None:  # fmt: skip
    token, tenant = "s3cr3t-t0ken-4f9a", "tenant-7c1e"
    kubectl.run("create", "secret", "generic", "prometheus", f"--from-literal=token={token}",
                f"--from-literal=tenant={tenant}")  # fmt: skip
    given_stable(kubectl, tmp_path, candidate="narrow")
    provider = {"prometheus": {"address": monitoring.prometheus, "bearerTokenSecretRef": {"name": "prometheus",
                "key": "token"}, "headers": [{"name": "X-Scope-OrgID", "valueFrom": {"name": "prometheus",
                                                                                       "key": "tenant"}}]}}  # fmt: skip
    latency = {**LATENCY, "compare": {**LATENCY["compare"], "step": "4s"}, "dryRun": True}
    canary(kubectl, steps=[{"setWeight": 30}, {"analysis": {"count": 2}}],
           analysis=analysis(ERRORS, latency, provider=provider, interval="12s"))  # fmt: skip
    running = start_load(kubectl, load)
    patch(kubectl, "fraud", {"version": "1.1.0"})
    obj = wait_phase(kubectl, "RolledBack", timeout=120)
    running.stop()
    errors = metric(obj, "errors")
    assert errors["verdict"] == "Fail" and errors["canary"] > 0.5 and errors["stable"] == 0, errors
    assert errors["source"] == "errorRate"
    assert metric(obj, "latency")["dryRun"] is True
    # The secrets' values are nowhere: status, Events, the operator's log.
    seen = json.dumps(kubectl.get("canaryrollout", "fraud")) + json.dumps(events(kubectl, "fraud")) + operator.log()
    assert token not in seen and tenant not in seen
