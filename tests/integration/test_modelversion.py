"""The registry on a real API server, the operator as a real process."""

from __future__ import annotations

import hashlib
import http.server
import json
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import (
    Kubectl,
    OperatorProcess,
    artifact,
    condition,
    condition_is,
    events,
    start_operator,
    version,
    wait_status,
    wait_version,
)


def set_stage(kubectl: Kubectl, name: str, stage: str) -> None:
    kubectl.run("patch", "modelversion", name, "--type=merge", "-p", json.dumps({"spec": {"stage": stage}}))


def test_promotion_through_the_stages(kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path) -> None:
    source, checksum = artifact(tmp_path, "a.bin")
    kubectl.apply(version("fraud-1", "fraud", "1.0.0", source, checksum, metrics={"auc": 0.95},
                          gates=[{"metric": "auc", "min": 0.9}]))  # fmt: skip
    obj = wait_version(kubectl, "fraud-1", "development", stage="development", ready="True")
    assert obj["status"]["artifact"]["sha256"] == checksum and obj["status"]["artifact"]["verified"] is True
    assert condition(obj, "ArtifactVerified")["reason"] == "Verified"
    for stage in ("staging", "production"):
        set_stage(kubectl, "fraud-1", stage)
        # kubectl wait reads the conventions: Ready, with observedGeneration following the spec.
        kubectl.run("wait", "--for=condition=Ready", "--timeout=30s", "modelversion/fraud-1")
        obj = wait_version(kubectl, "fraud-1", stage, stage=stage, ready="True")
        assert condition(obj, "Ready")["observedGeneration"] == obj["metadata"]["generation"]
    history = obj["status"]["history"]
    assert [h["stage"] for h in history] == ["development", "staging", "production"]
    assert history[-1]["reason"] == "Promoted"
    assert obj["status"]["gates"] == [{"metric": "auc", "value": 0.95, "required": ">= 0.9", "passed": True}]
    row = kubectl.run("get", "mv", "fraud-1", "--no-headers").stdout.split()
    assert row[:5] == ["fraud-1", "fraud", "1.0.0", "production", "True"]


def test_failing_gate_blocks_production_and_says_why(kubectl: Kubectl, operator: OperatorProcess,
                                                     tmp_path: Path) -> None:  # fmt: skip
    source, checksum = artifact(tmp_path, "b.bin")
    kubectl.apply(version("weak", "fraud", "0.9.0", source, checksum, stage="production",
                          metrics={"auc": 0.85, "logloss": 0.3},
                          gates=[{"metric": "auc", "min": 0.9}, {"metric": "recall", "min": 0.5},
                                 {"metric": "logloss", "max": 0.5}]))  # fmt: skip
    obj = wait_version(kubectl, "weak", "gates fail", reason="GatesFailed")
    assert obj["status"]["stage"] == "development"
    ready = condition(obj, "Ready")
    assert ready["status"] == "False" and "auc 0.85 < 0.9" in ready["message"]
    assert "metric recall is missing" in ready["message"]
    gates = obj["status"]["gates"]
    assert [g["passed"] for g in gates] == [False, False, True]
    assert gates[1] == {"metric": "recall", "required": ">= 0.5", "passed": False, "reason": "metric recall is missing"}
    assert condition(obj, "GatesPassed")["status"] == "False"
    # kubectl get shows why.
    assert "auc 0.85 < 0.9" in kubectl.run("get", "mv", "weak").stdout


def test_new_production_archives_the_old_with_history_and_events(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    s1, c1 = artifact(tmp_path, "v1.bin")
    s2, c2 = artifact(tmp_path, "v2.bin")
    gates = [{"metric": "auc", "notWorseThan": "production", "tolerance": 0.01}]
    kubectl.apply(version("v1", "churn", "1.0.0", s1, c1, stage="production", metrics={"auc": 0.95, "loss": 0.3},
                          gates=gates))  # fmt: skip
    wait_version(kubectl, "v1", "production", stage="production", ready="True")
    kubectl.apply(version("v2", "churn", "1.1.0", s2, c2, stage="staging", metrics={"auc": 0.945, "loss": 0.2},
                          gates=gates))  # fmt: skip
    wait_version(kubectl, "v2", "staging", stage="staging")
    set_stage(kubectl, "v2", "production")
    new = wait_version(kubectl, "v2", "production", stage="production", ready="True")
    old = wait_version(kubectl, "v1", "archived", stage="archived", reason="SupersededBy")
    assert "1.1.0" in condition(old, "Ready")["message"]
    assert [h["stage"] for h in old["status"]["history"]] == ["production", "archived"]
    assert old["status"]["history"][-1]["reason"] == "SupersededBy"
    assert [h["stage"] for h in new["status"]["history"]] == ["staging", "production"]
    # The comparison was made with the production version at the time, 1.0.0.
    gate = new["status"]["gates"][0]
    assert gate["passed"] and "production 1.0.0" in gate["required"]
    reasons_new = {e["reason"] for e in kubectl.wait_for(lambda: events(kubectl, "v2") or None, what="events")}
    assert "Promoted" in reasons_new
    old_events = kubectl.wait_for(
        lambda: [e for e in events(kubectl, "v1") if e["reason"] == "SupersededBy"] or None, what="v1 events"
    )
    assert "1.1.0" in old_events[0]["message"]
    # Everything else compares with the new production now.
    kubectl.apply(version("v3", "churn", "1.2.0", s2, c2, metrics={"auc": 0.9, "loss": 0.1}))
    v3 = wait_status(kubectl, "modelversion", "v3", "a comparison", lambda o: o.get("status", {}).get("comparison"))
    rows = {r["name"]: r for r in v3["status"]["comparison"]["metrics"]}
    assert v3["status"]["comparison"]["against"] == "1.1.0"
    assert rows["auc"]["change"] == pytest.approx(-0.045) and rows["auc"]["improved"] is False
    assert rows["loss"]["change"] == pytest.approx(-0.1) and rows["loss"]["improved"] is False  # not lowerIsBetter


def test_two_requests_at_once_one_production(kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path) -> None:
    source, checksum = artifact(tmp_path, "c.bin")
    for i in (1, 2, 3):
        kubectl.apply(version(f"r{i}", "ranker", f"{i}.0", source, checksum, stage="staging", metrics={"ndcg": 0.5}))
    for i in (1, 2, 3):
        wait_version(kubectl, f"r{i}", "staging", stage="staging")
    # One request, all three at once.
    kubectl.run("patch", "mv", "r1", "r2", "r3", "--type=merge", "-p", '{"spec":{"stage":"production"}}')

    def request_order(name: str) -> tuple[str, str, str]:
        # Independent of what the operator writes: the time of the write that set spec.stage, then creation, name.
        o = json.loads(kubectl.run("get", "mv", name, "--show-managed-fields", "-o", "json").stdout)
        stage_writes = [e["time"] for e in o["metadata"]["managedFields"]
                        if "f:stage" in e.get("fieldsV1", {}).get("f:spec", {})]  # fmt: skip
        return (max(stage_writes), o["metadata"]["creationTimestamp"], name)

    expected = max(("r1", "r2", "r3"), key=request_order)

    def settled() -> list[dict[str, Any]] | None:
        objs = [kubectl.get("mv", f"r{i}") for i in (1, 2, 3)]
        stages = [o["status"].get("stage") for o in objs]
        done = all(condition(o, "Ready").get("reason") == "SupersededBy" for o in objs
                   if o["metadata"]["name"] != expected)  # fmt: skip
        return objs if stages.count("production") == 1 and done else None

    objs = kubectl.wait_for(settled, what=f"{expected} alone in production")
    winner = next(o for o in objs if o["metadata"]["name"] == expected)
    assert winner["status"]["stage"] == "production"
    for loser in objs:
        if loser is winner:
            continue
        ready = condition(loser, "Ready")
        assert ready["status"] == "False" and ready["reason"] == "SupersededBy", ready
        assert winner["metadata"]["name"] in ready["message"]
    # It stays that way.
    time.sleep(2)
    assert [kubectl.get("mv", f"r{i}")["status"]["stage"] for i in (1, 2, 3)].count("production") == 1


def test_duplicate_version_and_immutable_source(kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path) -> None:
    source, checksum = artifact(tmp_path, "d.bin")
    kubectl.apply(version("orig", "dup", "1.0", source, checksum))
    wait_version(kubectl, "orig", "verified", ready="True")
    kubectl.apply(version("copy", "dup", "1.0", source, checksum, stage="production"))
    copy = wait_version(kubectl, "copy", "duplicate", reason="DuplicateVersion")
    assert "ModelVersion orig" in condition(copy, "Ready")["message"]
    assert copy["status"].get("stage") is None
    assert kubectl.get("mv", "orig")["status"]["stage"] == "development"
    changed = version("orig", "dup", "1.0", f"{source}.other", checksum)
    result = kubectl.apply(changed, check=False)
    assert result.returncode != 0 and "spec.source" in result.stderr and "source is immutable" in result.stderr
    # The holder goes: the duplicate takes the identity over.
    kubectl.run("delete", "mv", "orig")
    wait_version(kubectl, "copy", "takes over", stage="production", ready="True")


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if "slowest" in self.path:
            time.sleep(15)  # a very large artifact
        elif "slow" in self.path:
            time.sleep(4)  # a large artifact on a slow link
        super().do_GET()


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Files(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_unreachable_source_is_retried_until_it_appears(
    kubectl: Kubectl, operator: OperatorProcess, http_root: tuple[Path, str]
) -> None:
    root, url = http_root
    payload = random.Random(3).randbytes(3_000_000)
    checksum = "sha256:" + hashlib.sha256(payload).hexdigest()
    kubectl.apply(version("remote", "web", "1", f"{url}/models/model.bin?token=secret", checksum, stage="staging"))
    obj = wait_status(kubectl, "modelversion", "remote", "a first check", condition_is("ArtifactVerified"))
    verified = condition(obj, "ArtifactVerified")
    assert verified["status"] == "False" and verified["reason"] == "SourceUnreachable"
    assert "not found" in verified["message"] and "secret" not in json.dumps(obj["status"])
    assert condition(obj, "Ready")["reason"] == "SourceUnreachable" and obj["status"].get("stage") is None
    (root / "models").mkdir()
    (root / "models" / "model.bin").write_bytes(payload)
    obj = wait_version(kubectl, "remote", "recovered", stage="staging", ready="True", timeout=60)
    assert obj["status"]["artifact"]["size"] == len(payload) and obj["status"]["artifact"]["sha256"] == checksum
    assert "attempts" not in obj["status"]["artifact"]


def test_checksum_mismatch_is_final_until_the_spec_changes(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    source, checksum = artifact(tmp_path, "e.bin")
    wrong = "sha256:" + "0" * 64
    kubectl.apply(version("bad", "sum", "1", source, wrong, stage="staging"))
    obj = wait_version(kubectl, "bad", "mismatch", reason="ChecksumMismatch")
    assert checksum in condition(obj, "Ready")["message"] and wrong in condition(obj, "Ready")["message"]
    checked_at = obj["status"]["artifact"]["checkedAt"]
    time.sleep(6)  # longer than the first retry delay: a mismatch is not retried
    assert kubectl.get("mv", "bad")["status"]["artifact"]["checkedAt"] == checked_at
    kubectl.run("patch", "mv", "bad", "--type=merge", "-p", json.dumps({"spec": {"checksum": checksum}}))
    wait_version(kubectl, "bad", "fixed", stage="staging", ready="True")


def test_reference_profile_in_an_owned_configmap(kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(10, 2, 50_000)
    y = rng.choice(["a", "b", "c"], 50_000, p=[0.5, 0.3, 0.2])
    pq.write_table(pa.table({"x": x, "y": y}), tmp_path / "ref.parquet")
    source, checksum = artifact(tmp_path, "f.bin")
    kubectl.apply(version("prof", "prof", "1", source, checksum, reference={"uri": f"file://{tmp_path}/ref.parquet"}))
    obj = wait_status(kubectl, "modelversion", "prof", "a profile", condition_is("ProfileReady"))
    assert condition(obj, "ProfileReady")["status"] == "True", condition(obj, "ProfileReady")
    assert obj["status"]["profile"]["rows"] == 50_000 and obj["status"]["profile"]["features"] == 2
    cm = kubectl.get("configmap", obj["status"]["profile"]["configMap"])
    (owner,) = cm["metadata"]["ownerReferences"]
    assert owner["kind"] == "ModelVersion" and owner["uid"] == obj["metadata"]["uid"] and owner["controller"]
    profile = json.loads(cm["data"]["profile.json"])
    edges = np.quantile(x, np.linspace(0, 1, 11))
    np.testing.assert_allclose(profile["features"]["x"]["edges"], edges)
    assert profile["features"]["x"]["counts"] == np.histogram(x, bins=edges)[0].tolist()
    assert profile["features"]["y"]["categories"] == ["a", "b", "c"]
    assert profile["features"]["y"]["counts"] == [int((y == c).sum()) for c in ("a", "b", "c")]


def test_sigkill_in_the_middle_of_promotions(kubectl: Kubectl, tmp_path: Path) -> None:
    """Kill the operator at varying moments of a promotion; after a restart nothing is lost or done twice."""
    source, checksum = artifact(tmp_path, "g.bin")
    namespace = kubectl.namespace or "default"
    op = start_operator(tmp_path, "--namespace", namespace)
    delays = [0.0, 0.05, 0.15, 0.3, 0.6, 1.0]
    try:
        for i, _ in enumerate(delays):
            kubectl.apply(version(f"k{i}-a", f"k{i}", "1", source, checksum, stage="production"))
            kubectl.apply(version(f"k{i}-b", f"k{i}", "2", source, checksum, stage="staging"))
        for i, _ in enumerate(delays):
            wait_version(kubectl, f"k{i}-a", "production", stage="production", ready="True")
            wait_version(kubectl, f"k{i}-b", "staging", stage="staging", ready="True")
        for i, delay in enumerate(delays):
            set_stage(kubectl, f"k{i}-b", "production")
            time.sleep(delay)
            op.stop(signal.SIGKILL)
            op = start_operator(tmp_path, "--namespace", namespace)
        for i, _ in enumerate(delays):
            new = wait_version(kubectl, f"k{i}-b", "production", stage="production", ready="True")
            old = wait_version(kubectl, f"k{i}-a", "archived", stage="archived", reason="SupersededBy")
            assert [(h["stage"], h["reason"]) for h in old["status"]["history"]] == [
                ("production", "Promoted"), ("archived", "SupersededBy")]  # fmt: skip
            assert [h["stage"] for h in new["status"]["history"]] == ["staging", "production"]
    finally:
        assert op.stop() == 0, op.log()


def test_large_reference_does_not_block_the_operator(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    """A 1 M row reference is profiled in a worker thread: the operator keeps answering and reconciling."""
    rng = np.random.default_rng(5)
    rows = 1_000_000
    pq.write_table(pa.table({f"f{i}": rng.normal(i, 1, rows) for i in range(12)}), tmp_path / "big.parquet")
    source, checksum = artifact(tmp_path, "h.bin")
    kubectl.apply(version("big", "big", "1", source, checksum, reference={"uri": f"file://{tmp_path}/big.parquet"}))
    kubectl.apply(version("small", "small", "1", source, checksum))
    worst, probes, small_ready_first = 0.0, 0, False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        started = time.monotonic()
        assert operator.alive()
        worst = max(worst, time.monotonic() - started)
        probes += 1
        big = kubectl.get("mv", "big")
        if condition(big, "ProfileReady"):
            break
        small_ready_first = small_ready_first or condition(kubectl.get("mv", "small"), "Ready").get("status") == "True"
        time.sleep(0.05)
    assert condition(big, "ProfileReady")["status"] == "True", condition(big, "ProfileReady")
    assert big["status"]["profile"]["rows"] == rows and big["status"]["profile"]["features"] == 12
    # The loop kept answering: many probes, none stuck for long (the profile's threads share the interpreter).
    assert probes >= 5 and worst < 2.0, f"{probes} probes, the slowest took {worst:.2f}s"
    assert small_ready_first, "another version was not reconciled while the profile was computed"


def test_a_slow_check_does_not_let_an_earlier_request_win(
    kubectl: Kubectl, operator: OperatorProcess, http_root: tuple[Path, str], tmp_path: Path
) -> None:
    """A asks for production first but its artifact takes seconds to verify; B asks later and is verified at
    once. B's request is the later one: B holds production, A never does, and never two at a time."""
    root, url = http_root
    payload = random.Random(9).randbytes(100_000)
    (root / "slow.bin").write_bytes(payload)
    slow_sum = "sha256:" + hashlib.sha256(payload).hexdigest()
    source, checksum = artifact(tmp_path, "fast.bin")
    kubectl.apply(version("a", "race", "1", f"{url}/slow.bin", slow_sum, stage="production"))
    time.sleep(1.5)
    kubectl.apply(version("b", "race", "2", source, checksum, stage="production"))
    seen_a_production = False
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        stages = {n: kubectl.get("mv", n).get("status", {}).get("stage") for n in ("a", "b")}
        assert list(stages.values()).count("production") <= 1, stages
        seen_a_production |= stages["a"] == "production"
        a = kubectl.get("mv", "a")
        if condition(a, "ArtifactVerified").get("status") == "True" and condition(a, "Ready").get("reason"):
            break
        time.sleep(0.2)
    b = wait_version(kubectl, "b", "production", stage="production", ready="True")
    a = wait_version(kubectl, "a", "lost", reason="SupersededBy")
    assert not seen_a_production and a["status"].get("stage") != "production"
    assert "ModelVersion b" in condition(a, "Ready")["message"]
    assert [h["stage"] for h in b["status"]["history"]] == ["production"]


def test_a_long_artifact_read_does_not_hold_the_other_versions_of_its_model(
    kubectl: Kubectl, operator: OperatorProcess, http_root: tuple[Path, str], tmp_path: Path
) -> None:
    """The model's versions are decided together, but reading one's artifact is not part of the decision: while it
    takes 15 s, another version is verified and promoted, and the slow one says it is still being checked."""
    root, url = http_root
    payload = random.Random(11).randbytes(50_000)
    (root / "slowest.bin").write_bytes(payload)
    kubectl.apply(
        version("big", "tortoise", "1", f"{url}/slowest.bin", "sha256:" + hashlib.sha256(payload).hexdigest())
    )
    time.sleep(1)
    source, checksum = artifact(tmp_path, "quick.bin")
    started = time.monotonic()
    kubectl.apply(version("quick", "tortoise", "2", source, checksum, stage="production"))
    wait_version(kubectl, "quick", "production", timeout=10, stage="production", ready="True")
    assert time.monotonic() - started < 10
    big = kubectl.get("mv", "big")
    assert (condition(big, "Ready").get("status"), condition(big, "Ready").get("reason")) == ("Unknown", "Verifying")
    wait_version(kubectl, "big", "verified", timeout=40, stage="development", ready="True")
