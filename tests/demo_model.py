"""The Python half of tests/demo.sh: trains the demo's fraud models, turns a generated Deployment into the model
server's environment, and checks the served predictions against the model's own.

    python tests/demo_model.py train DIR VERSION          model.joblib and reference.parquet in DIR; prints
                                                          "checksum auc logloss" (a summary goes to stderr)
    python tests/demo_model.py free-port                  a free local TCP port
    python tests/demo_model.py check URL MODEL DIR        inference requests; exits 1 when a prediction differs
    python tests/demo_model.py request [--rows N]         the inference request body of the demo's steady load
                                                          (N transactions per request, default 1)
    python tests/demo_model.py requests --count C [--rows N] [--amount-scale X] [--risk-shift Y]
                                                          C different bodies, one per line (the traffic driver
                                                          sends them in turn): fresh transactions of the training
                                                          distribution, or with amounts scaled and merchant risk
                                                          raised (the drift part)
    python tests/demo_model.py load-summary FILE          the traffic driver's JSON report in a few lines
    python tests/demo_model.py prometheus URL NS POD...   the servers' requests by version, as Prometheus has them
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FEATURES = ["amount", "age_days", "merchant_risk", "hour"]
PREDICTION = "is_fraud"
TRAIN_ROWS = 4000
HOLDOUT_ROWS = 2000
REQUEST_ROWS = 8


def transactions(n: int, seed: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Synthetic card transactions: fraud is likelier for large amounts, young accounts, risky merchants and at
    night (hour < 6), a step that a linear model only approximates."""
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(4.0, 1.0, n).round(2)
    age_days = rng.uniform(0, 3000, n).round()
    merchant_risk = rng.beta(2, 5, n).round(3)
    hour = rng.integers(0, 24, n).astype(np.float64)
    logit = -13.0 + 2.2 * np.log(amount) - 0.0018 * age_days + 11 * merchant_risk + 5.0 * (hour < 6)
    fraud = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return np.column_stack([amount, age_days, merchant_risk, hour]), fraud


# The demo's versions, all on the same data: 1.0.0 a logistic regression, 1.1.0 gradient-boosted trees, 1.2.0 trees
# with fewer, smaller-leaved rounds (a little better, no slower), 1.3.0 the same trees as 1.2.0 from a pipeline whose
# label join inverted is_fraud in training and holdout rows alike: its offline AUC against those labels equals
# 1.2.0's, so the registry's gates pass it, while live it calls ordinary transactions fraud and fraud ordinary.
TREES = {"max_iter": 100, "learning_rate": 0.1, "random_state": 0}
SMALL_TREES = {"max_iter": 80, "learning_rate": 0.1, "max_leaf_nodes": 15, "min_samples_leaf": 40, "random_state": 0}
INVERTED_LABELS = {"1.3.0"}


def train(directory: Path, version: str) -> dict[str, Any]:
    """Trains ``version`` (see TREES above) and writes its artifact and reference dataset."""
    import joblib
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score

    x, y = transactions(TRAIN_ROWS + HOLDOUT_ROWS, seed=7)
    if version in INVERTED_LABELS:
        y = 1 - y  # the defect: what the pipeline's join hands to training and evaluation alike
    x_train, y_train, x_test, y_test = x[:TRAIN_ROWS], y[:TRAIN_ROWS], x[TRAIN_ROWS:], y[TRAIN_ROWS:]
    if version == "1.0.0":
        model: Any = LogisticRegression(max_iter=1000)
    elif version == "1.1.0":
        model = HistGradientBoostingClassifier(**TREES)
    else:
        model = HistGradientBoostingClassifier(**SMALL_TREES)
    model.fit(x_train, y_train)
    probability = model.predict_proba(x_test)[:, 1]
    directory.mkdir(parents=True, exist_ok=True)
    artifact = directory / "model.joblib"
    joblib.dump(model, artifact)
    # The reference dataset: the holdout's features and the model's predictions on them, profiled by the operator.
    columns = {name: x_test[:, i] for i, name in enumerate(FEATURES)}
    columns[PREDICTION] = model.predict(x_test)
    pq.write_table(pa.table(columns), directory / "reference.parquet")
    return {
        "model": type(model).__name__ + (", labels inverted by the pipeline" if version in INVERTED_LABELS else ""),
        "checksum": "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest(),
        "auc": round(float(roc_auc_score(y_test, probability)), 4),
        "logloss": round(float(log_loss(y_test, probability)), 4),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(url: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as err:
        sys.exit(f"{url}: {err.code} {err.read().decode()}")
    return json.loads(text) if text.startswith(("{", "[")) else text


def check(url: str, model: str, directory: Path) -> int:
    """Sends a batch and single rows; prints served and local predictions side by side. 1 when any differs."""
    import joblib

    local = joblib.load(directory / "model.joblib")
    rows, _ = transactions(REQUEST_ROWS, seed=2022)
    meta = call(f"{url}/v2/models/{model}")
    print(f"GET /v2/models/{model}\n  {json.dumps(meta)}")
    version = meta["versions"][0]
    infer = f"{url}/v2/models/{model}/versions/{version}/infer"

    def body(batch: npt.NDArray[np.float64], request_id: str) -> dict[str, Any]:
        return {
            "id": request_id,
            "inputs": [{"name": "features", "datatype": "FP64", "shape": list(batch.shape), "data": batch.tolist()}],
            "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
        }

    answer = call(infer, body(rows, "demo-batch"))
    outputs = {o["name"]: o for o in answer["outputs"]}
    served = outputs["predict"]["data"]
    served_p = np.array(outputs["predict_proba"]["data"]).reshape(len(rows), -1)[:, 1]
    # The same rows one request each, as single transactions would come.
    singles = [call(infer, body(row[None, :], f"demo-{i}"))["outputs"][0]["data"][0] for i, row in enumerate(rows)]
    expected = local.predict(rows).tolist()
    expected_p = local.predict_proba(rows)[:, 1]
    print(f"POST .../versions/{version}/infer: {len(rows)} rows in one request, then one request per row")
    print(f"  {'amount':>8} {'age_days':>8} {'merchant_risk':>13} {'hour':>4} | {'served':>6} {'P(fraud)':>9}"
          f" {'single':>6} | {'local':>5} {'P(fraud)':>9}")  # fmt: skip
    mismatches = 0
    for i, row in enumerate(rows):
        same = served[i] == singles[i] == expected[i] and abs(served_p[i] - expected_p[i]) < 1e-9
        mismatches += not same
        print(f"  {row[0]:8.2f} {row[1]:8.0f} {row[2]:13.3f} {row[3]:4.0f} | {served[i]:6d} {served_p[i]:9.4f}"
              f" {singles[i]:6d} | {expected[i]:5d} {expected_p[i]:9.4f}  {'ok' if same else 'DIFFERENT'}")  # fmt: skip
    metrics = call(f"{url}/metrics")
    print("GET /metrics (mlops_server_*):")
    for line in metrics.splitlines():
        if line.startswith(("mlops_server_requests_total", "mlops_server_model_load_seconds",
                            "mlops_server_sketch_samples_total")):  # fmt: skip
            print(f"  {line}")
    if mismatches:
        print(f"{mismatches} of {len(rows)} rows differ from the model's own predictions", file=sys.stderr)
        return 1
    print(f"all {len(rows)} served predictions equal model {version}'s own")
    return 0


def request(rows_per_request: int = 1) -> dict[str, Any]:
    """The body of the demo's steady load: one transaction per request, or a small batch (the canary's load, so that
    each version's predictions are a mix of both classes)."""
    rows, _ = transactions(rows_per_request, seed=11)
    return {"inputs": [{"name": "features", "datatype": "FP64", "shape": list(rows.shape), "data": rows.tolist()}]}


def requests(count: int, rows: int, amount_scale: float, risk_shift: float, seed: int,
             malformed: float = 0.0) -> list[str]:  # fmt: skip
    """``count`` request bodies of ``rows`` fresh transactions each, shifted as asked; a ``malformed`` share of them
    (spread evenly) lacks the last feature, which the server refuses with 400."""
    x, _ = transactions(count * rows, seed=seed)
    x[:, 0] = (x[:, 0] * amount_scale).round(2)
    x[:, 2] = np.clip(x[:, 2] + risk_shift, 0, 1).round(3)
    out = []
    for i, batch in enumerate(np.split(x, count)):
        if int((i + 1) * malformed) > int(i * malformed):
            batch = batch[:, :3]
        out.append(json.dumps({"inputs": [{"name": "features", "datatype": "FP64", "shape": list(batch.shape),
                                           "data": batch.tolist()}]}))  # fmt: skip
    return out


def alertmanager(url: str, namespace: str, alertname: str) -> int:
    """Prints the alerts the Alertmanager at ``url`` holds of ``alertname`` in ``namespace``; 1 when none."""
    query = urllib.parse.urlencode([("filter", f'alertname="{alertname}"'), ("filter", f'namespace="{namespace}"')])
    found = call(f"{url}/api/v2/alerts?{query}")
    for a in found:
        print(f"  {a['labels']['alertname']} {a['status']['state']} since {a['startsAt']}: "
              f"{a['annotations'].get('summary', '')}")  # fmt: skip
    return 0 if found else 1


def load_summary(path: Path) -> None:
    report = json.loads(path.read_text())
    latency = report["latency_ms"]
    print(f"{report['total']} requests in {report['elapsed_s']:.0f}s: {report['ok']} answered, {report['failed']} "
          f"failed; answered by version {report['by_version']}; latency p50 {latency['p50']:.1f} ms, "
          f"p99 {latency['p99']:.1f} ms")  # fmt: skip


def prometheus(url: str, namespace: str, pods: list[str]) -> int:
    """Prints the request counters of the demo's server ``pods`` by version from Prometheus (scraped every 2 s:
    waits for them)."""
    import time
    import urllib.parse

    # The last value of each server's counter: 1.0.0's Pods are gone by now, their series ended.
    selector = f'namespace="{namespace}", pod=~"{"|".join(pods)}"'
    query = f"sum by (version) (max_over_time(mlops_server_requests_total{{{selector}}}[10m]))"
    for _ in range(30):
        result = call(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': query})}")["data"]["result"]
        if len(result) >= 2:
            break
        time.sleep(1)
    print(f"{query}:")
    for series in sorted(result, key=lambda r: r["metric"]["version"]):
        print(f"  version {series['metric']['version']}: {float(series['value'][1]):.0f} requests")
    return 0 if result else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("train")
    p.add_argument("directory", type=Path)
    p.add_argument("version")
    commands.add_parser("free-port")
    p = commands.add_parser("check")
    p.add_argument("url")
    p.add_argument("model")
    p.add_argument("directory", type=Path)
    p = commands.add_parser("request")
    p.add_argument("--rows", type=int, default=1)
    p = commands.add_parser("requests")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--rows", type=int, default=REQUEST_ROWS)
    p.add_argument("--amount-scale", type=float, default=1.0)
    p.add_argument("--risk-shift", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=21)
    p.add_argument("--malformed", type=float, default=0.0, help="the share of requests lacking a feature")
    p = commands.add_parser("load-summary")
    p.add_argument("file", type=Path)
    p = commands.add_parser("prometheus")
    p.add_argument("url")
    p.add_argument("namespace")
    p.add_argument("pods", nargs="+")
    p = commands.add_parser("alertmanager")
    p.add_argument("url")
    p.add_argument("namespace")
    p.add_argument("alertname")
    args = parser.parse_args()
    if args.command == "train":
        result = train(args.directory, args.version)
        print(f"trained {args.version}: {result['model']}, auc {result['auc']}, logloss {result['logloss']} on"
              f" {HOLDOUT_ROWS} held-out rows, {result['checksum'][:19]}...", file=sys.stderr)  # fmt: skip
        print(result["checksum"], result["auc"], result["logloss"])
    elif args.command == "free-port":
        print(free_port())
    elif args.command == "request":
        print(json.dumps(request(args.rows)))
    elif args.command == "requests":
        bodies = requests(args.count, args.rows, args.amount_scale, args.risk_shift, args.seed, args.malformed)
        print("\n".join(bodies))
    elif args.command == "load-summary":
        load_summary(args.file)
    elif args.command == "prometheus":
        return prometheus(args.url, args.namespace, args.pods)
    elif args.command == "alertmanager":
        return alertmanager(args.url, args.namespace, args.alertname)
    else:
        return check(args.url, args.model, args.directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
