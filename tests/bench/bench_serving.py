"""Serving throughput and latency: our model server against KServe's Python model server, same model, same load.

A scikit-learn LogisticRegression on 50 features, one row per request, served by `mlops-server` (with adaptive
batching and the drift sketch, its defaults; with batching off, to measure what batching adds or costs; with the
sketch off, to measure its cost) and by KServe's ModelServer (V2 REST, one worker, its defaults), one after the
other on this machine; wrk drives each at several concurrencies. The same server (batching on) is driven over its
gRPC endpoint too, by ghz, with the same row as raw contents (what gRPC clients of the protocol send), one
connection per concurrent caller as wrk's. Prints requests/s, p50/p99 latency and our batch size distribution per
server and concurrency, and the ratios. Goals: at least 2x KServe's throughput with a lower p99; at 64 connections
with batching at least 5x; at 1 connection batching costs no latency.

Needs wrk on PATH, ghz (on PATH or where `tests/cluster/build-binaries.sh ghz` puts it) and BENCH_KSERVE_PYTHON (a
Python with the kserve package); `make bench` provides all three.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

from mlops_operator.profiling import profile_column

HERE = Path(__file__).resolve().parent
FEATURES = 50
BATCHED = "mlops-server (batching)"
UNBATCHED = "mlops-server (batching off)"
SKETCH_OFF = "mlops-server (batching, sketch off)"
GRPC = "mlops-server gRPC (batching)"
KSERVE_GRPC = "KServe ModelServer gRPC"
GHZ_VERSION = "0.120.0"
PROTO = HERE.parents[1] / "operator" / "mlops_operator" / "server" / "oip" / "inference.proto"
CONCURRENCIES = [int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,8,64").split(",")]
DURATION = os.environ.get("BENCH_DURATION", "10s")
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BENCH_BODY"), "r"); wrk.body = f:read("*a"); f:close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout}s")


def to_ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, body: Path, lua: Path, connections: int) -> dict[str, float]:
    env = {**os.environ, "BENCH_BODY": str(body)}
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{DURATION}", "--latency", "-s", str(lua), url],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in out or "Requests/sec" not in out or "99%" not in out:
        raise SystemExit(f"errors under load, or no figures:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # The "Latency Distribution" lines only: "     99%    1.28ms".
    p50 = to_ms(re.search(r"^\s+50%\s+([\d.]+(?:us|ms|s))\s*$", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"^\s+99%\s+([\d.]+(?:us|ms|s))\s*$", out, re.M).group(1))  # type: ignore[union-attr]
    return {"rps": rate, "p50_ms": p50, "p99_ms": p99}


def ghz_binary() -> str | None:
    found = shutil.which("ghz")
    if found:
        return found
    cache = os.environ.get("MLOPS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mlops-operator"
    )
    built = Path(cache) / "bin" / f"ghz-v{GHZ_VERSION}" / "ghz"
    return str(built) if built.exists() else None


def ghz(binary: str, address: str, data: Path, connections: int) -> dict[str, float]:
    """ModelInfer calls at ``connections`` concurrent callers, each on its own connection, for DURATION; the calls
    in flight at the end are waited for (no cancellations counted as errors)."""
    out = subprocess.run(
        [binary, "--insecure", "--proto", str(PROTO), "--import-paths", str(PROTO.parents[3]),
         "--call", "inference.GRPCInferenceService/ModelInfer", "--data-file", str(data),
         "--concurrency", str(connections), "--connections", str(connections), "--duration", DURATION,
         "--duration-stop", "wait", "--format", "json", address],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    report = json.loads(out)
    codes = report.get("statusCodeDistribution") or {}
    if set(codes) != {"OK"}:
        raise SystemExit(f"gRPC errors under load: {codes} {report.get('errorDistribution')}")
    percentiles = {p["percentage"]: p["latency"] / 1e6 for p in report["latencyDistribution"]}  # ns -> ms
    return {"rps": float(report["rps"]), "p50_ms": percentiles[50], "p99_ms": percentiles[99]}


def batch_buckets(port: int) -> dict[str, float]:
    """Our server's batch size histogram (cumulative counts by upper bound); empty for a server without one."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    found = re.findall(r'^mlops_server_batch_size_bucket\{[^}]*le="([^"]+)"[^}]*\} (\S+)$', text, re.M)
    return {le: float(v) for le, v in found}


def measure(name: str, command: list[str], port: int, tmp: Path, body: Path, lua: Path,
            grpc: tuple[str, str, Path] | None = None) -> dict[int, dict[str, float]]:  # fmt: skip
    """Each concurrency's figures: over REST with wrk, or with ``grpc`` (ghz, address, data) over gRPC."""
    log = (tmp / f"{name}.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", process)
        url = f"http://127.0.0.1:{port}/v2/models/model/infer"

        def load(connections: int) -> dict[str, float]:
            return ghz(*grpc, connections) if grpc else wrk(url, body, lua, connections)

        load(8)  # warm up
        out = {}
        for c in CONCURRENCIES:
            before = batch_buckets(port)
            out[c] = load(c)
            after = batch_buckets(port)
            # Share of requests by the size of the batch they were predicted in, during this run.
            total = after.get("+Inf", 0) - before.get("+Inf", 0)
            previous = 0.0
            for le in sorted((k for k in after if k != "+Inf"), key=float):
                count = after[le] - before.get(le, 0)
                if total:
                    out[c][f"batch<={float(le):g}"] = (count - previous) / total
                previous = count
        return out
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def main() -> None:
    kserve_python = os.environ.get("BENCH_KSERVE_PYTHON", "")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not on PATH (apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp_name:
        tmp = Path(tmp_name)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(5000, FEATURES))
        y = (x[:, 0] + x[:, 1] > 0).astype(int)
        joblib.dump(LogisticRegression().fit(x, y), tmp / "model.joblib")
        names = [f"f{i}" for i in range(FEATURES)]
        import pyarrow as pa

        profile = {
            "format": "mlops.io/profile/v1",
            "rows": len(x),
            "features": {n: profile_column(pa.chunked_array([x[:, i]])) for i, n in enumerate(names)},
        }
        profile["features"]["predict"] = profile_column(pa.chunked_array([y.astype(str)]))
        profile["prediction"] = "predict"
        (tmp / "profile.json").write_text(json.dumps(profile))
        signature = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [-1, FEATURES], "features": names}],
                     "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}]}  # fmt: skip
        (tmp / "signature.json").write_text(json.dumps(signature))
        body = tmp / "request.json"
        row = [round(float(v), 6) for v in rng.normal(size=FEATURES)]
        body.write_text(json.dumps({"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, FEATURES],
                                                "data": row}]}))  # fmt: skip
        lua = tmp / "post.lua"
        lua.write_text(LUA)
        grpc_data = tmp / "request-grpc.json"
        raw = base64.b64encode(np.array(row, dtype="<f8").tobytes()).decode()
        tensor = {"name": "features", "datatype": "FP64", "shape": [1, FEATURES]}
        grpc_data.write_text(json.dumps({"model_name": "model", "inputs": [tensor], "raw_input_contents": [raw]}))

        def ours(sketch: bool, batching: bool) -> list[str]:
            port = free_port()
            command = [sys.executable, "-m", "mlops_operator.server.main", "--model-name", "model",
                       "--source", f"file://{tmp}/model.joblib", "--signature", f"@{tmp}/signature.json",
                       "--port", str(port), "--host", "127.0.0.1", "--grpc-port", "0"]  # fmt: skip
            if sketch:
                command += ["--profile", f"@{tmp}/profile.json"]
            if not batching:
                command += ["--max-batch-size", "1"]
            return command

        results = {}
        for label, sketch, batching in ((BATCHED, True, True), (UNBATCHED, True, False), (SKETCH_OFF, False, True)):
            command = ours(sketch, batching)
            port = int(command[command.index("--port") + 1])
            results[label] = measure(f"ours-{sketch}-{batching}", command, port, tmp, body, lua)
        ghz_path = ghz_binary()
        if ghz_path:
            command = ours(True, True)
            port, grpc_port = int(command[command.index("--port") + 1]), free_port()
            command += ["--grpc-port", str(grpc_port)]
            grpc = (ghz_path, f"127.0.0.1:{grpc_port}", grpc_data)
            results[GRPC] = measure("ours-grpc", command, port, tmp, body, lua, grpc)
        if kserve_python and shutil.which(kserve_python):
            port = free_port()
            command = [kserve_python, str(HERE / "kserve_peer.py"), str(tmp / "model.joblib"), "model", str(port)]
            results["KServe ModelServer"] = measure("kserve", command, port, tmp, body, lua)
            if ghz_path:
                port, grpc_port = free_port(), free_port()
                command = [kserve_python, str(HERE / "kserve_peer.py"), str(tmp / "model.joblib"), "model", str(port),
                           str(grpc_port)]  # fmt: skip
                grpc = (ghz_path, f"127.0.0.1:{grpc_port}", grpc_data)
                results[KSERVE_GRPC] = measure("kserve-grpc", command, port, tmp, body, lua, grpc)

    print(f"serving: LogisticRegression, {FEATURES} FP64 features, 1 row per request, wrk -t1 -d{DURATION}")
    print(f"{'server':34} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  batch sizes (share of requests)")
    for label, by_conn in results.items():
        for conns, r in by_conn.items():
            sizes = " ".join(f"{k.removeprefix('batch')}:{v:.0%}" for k, v in r.items() if k.startswith("batch") and v)
            print(f"{label:34} {conns:>5} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}  {sizes}")
    on, plain, off = results[BATCHED], results[UNBATCHED], results[SKETCH_OFF]
    peer_all = results.get("KServe ModelServer", {})
    for conns in CONCURRENCIES:
        line = (f"c={conns}: batching {on[conns]['rps'] / plain[conns]['rps']:.2f}x the throughput without it, p50 "
                f"{on[conns]['p50_ms']:.2f} vs {plain[conns]['p50_ms']:.2f} ms; sketch counting costs "
                f"{1 - on[conns]['rps'] / off[conns]['rps']:.1%} of throughput")  # fmt: skip
        peer = peer_all.get(conns)
        if peer:
            goal = ">= 5, lower p99" if conns >= 64 else ">= 2"
            line += (f"; ours/KServe throughput {on[conns]['rps'] / peer['rps']:.2f}x (goal {goal}), "
                     f"p99 {on[conns]['p99_ms']:.2f} vs {peer['p99_ms']:.2f} ms")  # fmt: skip
        print(line)
        if GRPC in results:
            grpc_run = results[GRPC][conns]
            ratio = grpc_run["rps"] / on[conns]["rps"]
            line = (f"c={conns}: gRPC (raw contents) {grpc_run['rps']:.0f} req/s, {ratio:.2f}x REST's, p99 "
                    f"{grpc_run['p99_ms']:.2f} vs {on[conns]['p99_ms']:.2f} ms")  # fmt: skip
            peer_grpc = results.get(KSERVE_GRPC, {}).get(conns)
            if peer_grpc:
                line += (f"; ours/KServe over gRPC {grpc_run['rps'] / peer_grpc['rps']:.2f}x, p99 "
                         f"{grpc_run['p99_ms']:.2f} vs {peer_grpc['p99_ms']:.2f} ms")  # fmt: skip
            print(line)
    if not peer_all:
        print("peer KServe: skipped (set BENCH_KSERVE_PYTHON to a Python with kserve; `make bench` does)")
    if GRPC not in results:
        print("gRPC: skipped (ghz not found: tests/cluster/build-binaries.sh ghz; `make bench` does)")


if __name__ == "__main__":
    main()
