"""1,000 DriftMonitors on a 1-minute interval: the operator's CPU share, on the local cluster with real servers.

A namespace with fraud 1.0.0 (a logistic regression on 4 features with a reference profile) served by 2 Pods (real
``mlops-server`` processes, see tests/dataplane), 20,000 rows of traffic sent to them; then ``--monitors``
DriftMonitors of that deployment (interval 1m, window 1h, the direct provider: each analysis reads both Pods' windowed
sketches and judges 4 features and the prediction). Once every monitor has analysed once, the operator process's CPU
seconds (psutil) and the analyses it made (its ``mlops_operator_reconciles_total{kind="DriftMonitor",
result="changed"}``) are measured over ``--seconds``; beside them, the same operator over 30 s before the monitors
were created (the deployment alone). Prints the CPU share (of one core), the analyses per minute and the CPU per
analysis.

Run (the local cluster up, the CRDs of crds/ applied, as `make bench` does):

    eval "$(tests/cluster/env.sh)"
    .venv/bin/python tests/bench/bench_drift_monitors.py [--monitors 1000] [--seconds 120]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench.bench_canary import Operator

FEATURES = ["amount", "account_age_days", "merchant_risk", "hour"]


def kubectl(*args: str, stdin: str | None = None, namespace: str | None = None) -> str:
    command = ["kubectl", *(["-n", namespace] if namespace else []), *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, check=True, timeout=600).stdout


def transactions(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.lognormal(4.0, 1.0, n), rng.uniform(0, 3000, n), rng.beta(2, 5, n),
                            rng.integers(0, 24, n).astype(np.float64)])  # fmt: skip


def artifacts(directory: Path) -> tuple[str, str, str]:
    import joblib
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.linear_model import LogisticRegression

    x = transactions(4000, seed=7)
    y = (x[:, 2] + np.log(x[:, 0]) / 10 > 0.75).astype(int)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    out = io.BytesIO()
    joblib.dump(model, out)
    path = directory / "model.joblib"
    path.write_bytes(out.getvalue())
    table: dict[str, Any] = {name: x[:, i] for i, name in enumerate(FEATURES)}
    table["is_fraud"] = model.predict(x)
    reference = directory / "reference.parquet"
    pq.write_table(pa.table(table), reference)
    return f"file://{path}", "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(), f"file://{reference}"


def wait(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(1)


def analyses(op: Operator) -> float:
    with urllib.request.urlopen(op.metrics, timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith('mlops_operator_reconciles_total{kind="DriftMonitor",result="changed"}'):
            return float(line.split()[-1])
    return 0.0


def send(ips: list[str], rows: np.ndarray) -> None:
    for i, start in enumerate(range(0, len(rows), 200)):
        chunk = rows[start : start + 200]
        body = {"inputs": [{"name": "features", "datatype": "FP64", "shape": list(chunk.shape),
                            "data": chunk.ravel().tolist()}]}  # fmt: skip
        request = urllib.request.Request(f"http://{ips[i % len(ips)]}:8080/v2/models/fraud/infer",
                                         json.dumps(body).encode(), {"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--monitors", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=120)
    args = parser.parse_args()
    namespace = f"bench-drift-{uuid.uuid4().hex[:6]}"
    directory = Path(tempfile.mkdtemp(prefix=f"{namespace}-", dir=tempfile.gettempdir()))
    source, checksum, reference = artifacts(directory)
    kubectl("create", "namespace", namespace)
    op = Operator.start(namespace)
    try:
        signature = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [-1, 4], "features": FEATURES}]}
        version = {"apiVersion": "mlops.io/v1alpha1", "kind": "ModelVersion", "metadata": {"name": "fraud-1-0-0"},
                   "spec": {"model": "fraud", "version": "1.0.0", "source": source, "checksum": checksum,
                            "format": "sklearn", "signature": signature,
                            "reference": {"uri": reference, "prediction": "is_fraud"}}}  # fmt: skip
        deployment = {"apiVersion": "mlops.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "fraud"},
                      "spec": {"model": "fraud", "version": "1.0.0", "replicas": 2}}  # fmt: skip
        kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(version), namespace=namespace)
        kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(deployment), namespace=namespace)

        def ips() -> list[str]:
            pods = json.loads(kubectl("get", "pods", "-l", "mlops.io/version=1.0.0", "-o", "json",
                                      namespace=namespace))["items"]  # fmt: skip
            ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                            for c in p.get("status", {}).get("conditions", []))]  # fmt: skip
            return [p["status"]["podIP"] for p in ready]

        wait("two ready server Pods", lambda: len(ips()) == 2, 180)
        send(ips(), transactions(20000, seed=11))
        idle_cpu, idle_start = op.cpu_seconds(), time.monotonic()
        time.sleep(30)
        idle = (op.cpu_seconds() - idle_cpu) / (time.monotonic() - idle_start)

        monitors = [{"apiVersion": "mlops.io/v1alpha1", "kind": "DriftMonitor", "metadata": {"name": f"m{i:04d}"},
                     "spec": {"deploymentRef": {"name": "fraud"}, "interval": "1m", "window": "1h",
                              "minSamples": 100}} for i in range(args.monitors)]  # fmt: skip
        created = time.monotonic()
        for start in range(0, len(monitors), 200):
            items = {"apiVersion": "v1", "kind": "List", "items": monitors[start : start + 200]}
            kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(items), namespace=namespace)

        def analysed() -> bool:
            out = kubectl("get", "driftmonitors", "-o", "jsonpath={range .items[*]}{.status.verdict}{'\\n'}{end}",
                          namespace=namespace)  # fmt: skip
            return sum(1 for line in out.splitlines() if line in ("NotDrifted", "Drifted")) == args.monitors

        wait(f"{args.monitors} first analyses", analysed, 900)
        first = time.monotonic() - created
        cpu, count, start = op.cpu_seconds(), analyses(op), time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - start
        cpu, count = op.cpu_seconds() - cpu, analyses(op) - count
        share = cpu / elapsed
        per_minute = count / elapsed * 60
        print(
            f"drift monitors: {args.monitors} DriftMonitors, interval 1m, window 1h, 2 server Pods, direct "
            "provider (an analysis reads both Pods' windowed sketches, judges 4 features and the prediction)"
        )
        print(f"  first analysis of all {args.monitors}: {first:.0f} s after they were created")
        print(
            f"  steady state over {elapsed:.0f} s: {per_minute:.0f} analyses a minute (goal {args.monitors}), "
            f"operator CPU {share:.1%} of one core, {cpu / max(count, 1) * 1000:.2f} ms CPU per analysis"
        )
        print(f"  beside it: the same operator with the deployment and no monitor: {idle:.1%} of one core")
    finally:
        op.proc.terminate()
        op.proc.wait(30)
        subprocess.run(["kubectl", "delete", "namespace", namespace, "--wait=false"], capture_output=True, check=False)


if __name__ == "__main__":
    main()
