"""The model server as a real process over real HTTP, serving a real sklearn model and its ONNX conversion."""

from __future__ import annotations

import http.server
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pytest
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression
from support import free_port

from mlops_operator.profiling import profile_column

FEATURES = ["amount", "age", "risk", "hour"]


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    grpc: str = ""
    """host:port of the gRPC endpoint."""

    def call(self, path: str, body: Any = None, method: str | None = None, raw: bytes | None = None,
             timeout: float = 30) -> tuple[int, Any]:  # fmt: skip
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method or ("POST" if data else "GET"),
                                     headers={"content-type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                text = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            text, status = err.read(), err.code
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text.decode()


def start(tmp: Path, *args: str, ready: bool = True) -> Server:
    port, grpc_port = free_port(), free_port()
    log = tmp / f"server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "mlops_operator.server.main", "--model-name", "fraud",
                                    "--model-version", "1.0.0", "--host", "127.0.0.1", "--port", str(port),
                                    "--grpc-port", str(grpc_port), *args],
                                   stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", process, log, f"127.0.0.1:{grpc_port}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            status, _ = server.call("/v2/health/ready" if ready else "/v2/health/live")
            if status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server did not start:\n{log.read_text()}")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("model")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 4)) * [100, 20, 1, 6] + [200, 40, 0, 12]
    y = (x[:, 0] / 100 + x[:, 2] > 2).astype(int)
    clf = LogisticRegression(max_iter=500).fit(x, y)
    joblib.dump(clf, tmp / "model.joblib")
    onx = to_onnx(clf, x[:1].astype(np.float32), options={id(clf): {"zipmap": False}}, target_opset=17)
    (tmp / "model.onnx").write_bytes(onx.SerializeToString())
    profile = {
        "format": "mlops.io/profile/v1",
        "rows": len(x),
        "prediction": "label",
        "features": {n: profile_column(pa.chunked_array([x[:, i]])) for i, n in enumerate(FEATURES)},
    }
    profile["features"]["label"] = profile_column(pa.chunked_array([y.astype(str)]))
    (tmp / "profile.json").write_text(json.dumps(profile))
    signature = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [-1, 4], "features": FEATURES}],
                 "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}]}  # fmt: skip
    (tmp / "signature.json").write_text(json.dumps(signature))
    return {"dir": tmp, "clf": clf, "x": x, "profile": profile}


@pytest.fixture(scope="module")
def sklearn_server(model: dict[str, Any]) -> Iterator[Server]:
    tmp = model["dir"]
    server = start(tmp, "--source", f"file://{tmp}/model.joblib", "--signature", f"@{tmp}/signature.json",
                   "--profile", f"@{tmp}/profile.json", "--max-body-bytes", "200000")  # fmt: skip
    yield server
    server.process.terminate()
    server.process.wait(30)


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of the log at ``path`` as a JSON object; fails on the first line that is not one."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"{path.name}:{number} is not JSON: {line!r}") from None
        assert isinstance(entry, dict), f"{path.name}:{number} is not a JSON object: {line!r}"
        entries.append(entry)
    return entries


def infer_body(rows: np.ndarray, name: str = "features", **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": name, "datatype": "FP64", "shape": list(rows.shape),
                        "data": rows.tolist()}], **extra}  # fmt: skip


def test_predictions_equal_the_model(sklearn_server: Server, model: dict[str, Any]) -> None:
    rows = np.random.default_rng(1).normal(size=(64, 4)) * [100, 20, 1, 6] + [200, 40, 0, 12]
    status, body = sklearn_server.call("/v2/models/fraud/infer", infer_body(rows, id="req-1"))
    assert status == 200, body
    assert body["id"] == "req-1" and body["model_name"] == "fraud" and body["model_version"] == "1.0.0"
    (out,) = body["outputs"]
    assert out["name"] == "predict" and out["shape"] == [64] and out["datatype"] == "INT64"
    assert out["data"] == model["clf"].predict(rows).tolist()
    status, body = sklearn_server.call("/v2/models/fraud/versions/1.0.0/infer",
                                       infer_body(rows[:3], outputs=[{"name": "predict_proba"}]))  # fmt: skip
    assert status == 200
    np.testing.assert_allclose(np.array(body["outputs"][0]["data"]).reshape(3, 2), model["clf"].predict_proba(rows[:3]))


def test_metadata_and_health(sklearn_server: Server) -> None:
    assert sklearn_server.call("/v2/health/live") == (200, {"live": True})
    assert sklearn_server.call("/v2/health/ready") == (200, {"ready": True})
    status, server = sklearn_server.call("/v2")
    assert status == 200 and server["name"] == "mlops-server"
    status, meta = sklearn_server.call("/v2/models/fraud")
    assert meta == {"name": "fraud", "versions": ["1.0.0"], "platform": "sklearn",
                    "inputs": [{"name": "features", "datatype": "FP64", "shape": [-1, 4]}],
                    "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}]}  # fmt: skip
    assert sklearn_server.call("/v2/models/fraud/versions/1.0.0") == (200, meta)
    assert sklearn_server.call("/v2/models/fraud/ready") == (200, {"name": "fraud", "ready": True})
    status, doc = sklearn_server.call("/v2/openapi.json")
    assert status == 200 and "/v2/models/{model_name}/infer" in doc["paths"]


@pytest.mark.parametrize(
    ("path", "body", "raw", "method", "code", "message"),
    [
        ("/v2/models/other/infer", {"inputs": []}, None, None, 404, "model 'other' is not served here"),
        ("/v2/models/fraud/versions/9/infer", {"inputs": []}, None, None, 404, "version '9'"),
        ("/v2/models/fraud/infer", None, b'{"inputs": [', None, 400, "not valid JSON"),
        ("/v2/models/fraud/infer", None, b'{"inputs": [{"data": [NaN]}]}', None, 400, "not valid JSON"),
        (
            "/v2/models/fraud/infer",
            {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 3], "data": [1, 2, 3]}]},
            None,
            None,
            400,
            "input 'features': shape [1, 3] does not match the signature's [-1, 4]",
        ),
        (
            "/v2/models/fraud/infer",
            {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 4], "data": ["a", 1, 2, 3]}]},
            None,
            None,
            400,
            "FP64 data must be all numbers",
        ),
        (
            "/v2/models/fraud/infer",
            {
                "inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 4], "data": [1, 2, 3, 4]}],
                "outputs": [{"name": "nope"}],
            },
            None,
            None,
            400,
            "output(s) 'nope' not produced",
        ),
        ("/v2/models/fraud/infer", None, b"[" + b"1," * 120_000 + b"1]", None, 413, "limit"),
        ("/v2/models/fraud/infer", None, None, "GET", 405, "infer takes POST"),
        ("/v2/nothing", None, None, None, 404, "no such endpoint"),
    ],
)
def test_errors(sklearn_server: Server, path: str, body: Any, raw: bytes | None, method: str | None, code: int,
                message: str) -> None:  # fmt: skip
    status, answer = sklearn_server.call(path, body, method=method, raw=raw)
    assert status == code, answer
    assert message in answer["error"]


def test_metrics_and_sketch(sklearn_server: Server, model: dict[str, Any]) -> None:
    rows = np.random.default_rng(7).normal(size=(500, 4)) * [100, 20, 1, 6] + [260, 40, 0, 12]
    before = sklearn_server.call("/v2/models/fraud/sketch")[1]
    for chunk in np.array_split(rows, 50):
        assert sklearn_server.call("/v2/models/fraud/infer", infer_body(chunk))[0] == 200
    after = sklearn_server.call("/v2/models/fraud/sketch")[1]
    assert after["samples"] - before["samples"] == 500
    for j, name in enumerate(FEATURES):
        edges = np.array(model["profile"]["features"][name]["edges"])
        expected, _ = np.histogram(np.clip(rows[:, j], edges[0], edges[-1]), bins=edges)
        delta = np.array(after["features"][name]["counts"]) - np.array(before["features"][name]["counts"])
        assert delta.tolist() == expected.tolist(), name
    labels = model["clf"].predict(rows)
    label = after["features"]["label"]
    delta_yes = label["counts"][label["categories"].index("1")] - before["features"]["label"]["counts"][
        before["features"]["label"]["categories"].index("1")]  # fmt: skip
    assert delta_yes == int(labels.sum())
    status, text = sklearn_server.call("/metrics")
    assert status == 200
    assert 'mlops_server_requests_total{code="200",model="fraud",protocol="rest",version="1.0.0"}' in text
    assert ('mlops_server_request_duration_seconds_bucket{le="0.005",model="fraud",protocol="rest",version="1.0.0"}'
            in text)  # fmt: skip
    assert "mlops_server_inflight_requests" in text and "mlops_server_model_load_seconds" in text
    assert 'mlops_server_feature_bin_total{bin="0",feature="amount",model="fraud",version="1.0.0"}' in text
    assert "_created" not in text


def test_onnx_model_predicts_like_sklearn(model: dict[str, Any]) -> None:
    tmp = model["dir"]
    server = start(tmp, "--source", f"file://{tmp}/model.onnx", "--format", "onnx")
    try:
        status, meta = server.call("/v2/models/fraud")
        assert meta["platform"] == "onnxruntime_onnx" and meta["inputs"][0]["datatype"] == "FP32"
        name = meta["inputs"][0]["name"]
        rows = model["x"][:20].astype(np.float32)
        body = {"inputs": [{"name": name, "datatype": "FP32", "shape": [20, 4], "data": rows.ravel().tolist()}]}
        status, answer = server.call("/v2/models/fraud/infer", body)
        assert status == 200, answer
        outputs = {o["name"]: o for o in answer["outputs"]}
        session = ort.InferenceSession(str(tmp / "model.onnx"), providers=["CPUExecutionProvider"])
        direct = session.run(None, {name: rows})
        assert outputs["label"]["data"] == direct[0].tolist() == model["clf"].predict(rows).tolist()
        np.testing.assert_allclose(np.array(outputs["probabilities"]["data"]).reshape(20, 2), direct[1], rtol=1e-6)
    finally:
        server.process.terminate()
        assert server.process.wait(30) == 0


def test_not_ready_until_loaded_and_load_errors(model: dict[str, Any], tmp_path: Path) -> None:
    class Slow(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(3)
            super().do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Slow(*a, directory=str(model["dir"])))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    server = start(tmp_path, "--source", f"http://127.0.0.1:{httpd.server_address[1]}/model.joblib", ready=False)
    try:
        assert server.call("/v2/health/ready") == (503, {"ready": False})
        status, body = server.call("/v2/models/fraud/infer", infer_body(np.zeros((1, 4))))
        assert status == 503 and "not ready" in body["error"]
        deadline = time.monotonic() + 30
        while server.call("/v2/health/ready")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        # Without a signature the model's own one is served: input-0, FP64, [-1, n_features_in_].
        assert server.call("/v2/models/fraud")[1]["inputs"] == [{"name": "input-0", "datatype": "FP64",
                                                                  "shape": [-1, 4]}]  # fmt: skip
        assert server.call("/v2/models/fraud/infer", infer_body(np.zeros((1, 4)), "input-0"))[0] == 200
    finally:
        server.process.terminate()
        server.process.wait(30)
        httpd.shutdown()
    broken = start(tmp_path, "--source", f"file://{model['dir']}/model.joblib", "--checksum", "sha256:" + "0" * 64,
                   ready=False)  # fmt: skip
    try:
        time.sleep(2)
        status, body = broken.call("/v2/models/fraud/infer", infer_body(np.zeros((1, 4))))
        assert status == 503 and "failed to load" in body["error"] and "expected sha256:000" in body["error"]
    finally:
        broken.process.terminate()
        broken.process.wait(30)


def test_sigterm_finishes_in_flight_requests(model: dict[str, Any], tmp_path: Path) -> None:
    tmp = model["dir"]
    server = start(tmp_path, "--source", f"file://{tmp}/model.joblib", "--max-body-bytes", str(64 * 2**20))
    rows = np.random.default_rng(2).normal(size=(150_000, 4))
    raw = json.dumps(infer_body(rows, "input-0")).encode()
    result: dict[str, Any] = {}

    def send() -> None:
        result["answer"] = server.call("/v2/models/fraud/infer", raw=raw, timeout=60)

    thread = threading.Thread(target=send)
    thread.start()
    # SIGTERM once the request is being served.
    deadline = time.monotonic() + 10
    while 'mlops_server_inflight_requests{model="fraud",version="1.0.0"} 1.0' not in server.call("/metrics")[1]:
        assert time.monotonic() < deadline, "the request never got in flight"
    server.process.send_signal(signal.SIGTERM)
    thread.join(60)
    status, body = result["answer"]
    assert status == 200 and body["outputs"][0]["shape"] == [150_000]
    assert server.process.wait(30) == 0
    with pytest.raises(OSError):
        server.call("/v2/health/live")
    # Its log, from start to shutdown, is JSON lines only.
    entries = json_lines(server.log)
    assert entries and all(entry.get("level") for entry in entries), entries


def test_sigterm_stops_the_grpc_endpoint_too(model: dict[str, Any], tmp_path: Path) -> None:
    # (A call in flight finishing during the shutdown is shown in-process, in tests/unit/test_server_grpc.py.)
    import grpc  # type: ignore[import-untyped]

    from mlops_operator.server.oip import inference_pb2 as pb
    from mlops_operator.server.oip import inference_pb2_grpc as pb_grpc

    tmp = model["dir"]
    server = start(tmp_path, "--source", f"file://{tmp}/model.joblib")
    with grpc.insecure_channel(server.grpc) as channel:
        assert pb_grpc.GRPCInferenceServiceStub(channel).ServerReady(pb.ServerReadyRequest(), timeout=10).ready
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(30) == 0
    assert any(entry["message"] == "gRPC endpoint stopped" for entry in json_lines(server.log))
    with grpc.insecure_channel(server.grpc) as channel, pytest.raises(grpc.RpcError) as refused:
        pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_grpc_answers_as_rest_and_counts_into_the_sketch(sklearn_server: Server, model: dict[str, Any]) -> None:
    import grpc  # type: ignore[import-untyped]

    from mlops_operator.server.oip import inference_pb2 as pb
    from mlops_operator.server.oip import inference_pb2_grpc as pb_grpc

    rows = np.random.default_rng(4).normal(size=(7, 4)) * [100, 20, 1, 6] + [200, 40, 0, 12]
    before = sklearn_server.call("/v2/models/fraud/sketch")[1]["samples"]
    request = pb.ModelInferRequest(model_name="fraud", model_version="1.0.0", outputs=[{"name": "predict"}])
    request.inputs.add(name="features", datatype="FP64", shape=rows.shape).contents.fp64_contents.extend(rows.ravel())
    with grpc.insecure_channel(sklearn_server.grpc) as channel:
        answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    status, rest = sklearn_server.call("/v2/models/fraud/infer", infer_body(rows, outputs=[{"name": "predict"}]))
    assert status == 200
    assert list(answer.outputs[0].contents.int64_contents) == rest["outputs"][0]["data"]
    assert rest["outputs"][0]["data"] == model["clf"].predict(rows).tolist()
    # Both requests' rows reach the drift sketch (it is flushed between requests).
    deadline = time.monotonic() + 10
    while sklearn_server.call("/v2/models/fraud/sketch")[1]["samples"] != before + 14:
        assert time.monotonic() < deadline, sklearn_server.call("/v2/models/fraud/sketch")[1]["samples"]
        time.sleep(0.05)
    metrics = sklearn_server.call("/metrics")[1]
    assert 'mlops_server_requests_total{code="200",model="fraud",protocol="grpc",version="1.0.0"}' in metrics


def test_a_taken_grpc_port_stops_the_server_with_the_reason(model: dict[str, Any], tmp_path: Path) -> None:
    import socket

    tmp = model["dir"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "mlops_operator.server.main", "--model-name", "fraud",
                               "--source", f"file://{tmp}/model.joblib", "--host", "127.0.0.1",
                               "--port", str(free_port()), "--grpc-port", str(port)],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1
    assert f"cannot listen for gRPC on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grpc-port", "8080"], "--grpc-port and --port are both 8080"),
        (["--grpc-port", "70000"], "--grpc-port (MLOPS_GRPC_PORT) must be a port number or 0"),
    ],
)
def test_port_flags_are_checked(args: list[str], message: str) -> None:
    command = [sys.executable, "-m", "mlops_operator.server.main", "--model-name", "fraud", "--source", "file:///x"]
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr, done.stderr


GRPC_CLIENT = """
import sys
import numpy as np
import tritonclient.grpc as triton

address, rows_path, expected_path, proba_path = sys.argv[1:]
rows, expected, proba = np.load(rows_path), np.load(expected_path), np.load(proba_path)
client = triton.InferenceServerClient(address)
assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("fraud")
assert client.is_model_ready("fraud", "1.0.0")
metadata = client.get_server_metadata(as_json=True)
assert metadata["name"] == "mlops-server" and "binary_tensor_data" in metadata["extensions"], metadata
model = client.get_model_metadata("fraud", as_json=True)
assert model["versions"] == ["1.0.0"] and model["inputs"][0]["name"] == "features", model
features = triton.InferInput("features", list(rows.shape), "FP64")
features.set_data_from_numpy(rows)
outputs = [triton.InferRequestedOutput("predict"), triton.InferRequestedOutput("predict_proba")]
result = client.infer("fraud", [features], outputs=outputs, model_version="1.0.0", request_id="abc")
assert result.get_response().id == "abc"
assert result.as_numpy("predict").tolist() == expected.tolist()
np.testing.assert_allclose(result.as_numpy("predict_proba").reshape(proba.shape), proba)
wrong = triton.InferInput("features", [2, 3], "FP64")
wrong.set_data_from_numpy(np.zeros((2, 3)))
try:
    client.infer("fraud", [wrong])
except triton.InferenceServerException as exc:
    assert exc.status() == "StatusCode.INVALID_ARGUMENT", exc.status()
    assert "does not match the signature" in exc.message(), exc.message()
else:
    raise AssertionError("a wrong shape was answered")
try:
    client.infer("other", [features])
except triton.InferenceServerException as exc:
    assert exc.status() == "StatusCode.NOT_FOUND", exc.status()
else:
    raise AssertionError("an unknown model was answered")
print("ok")
"""


def test_a_grpc_client_library_we_did_not_write_talks_to_the_server(sklearn_server: Server, model: dict[str, Any],
                                                                     tmp_path: Path) -> None:  # fmt: skip
    # Triton's gRPC client (raw tensors in and out), in a process of its own: its generated copy of the protocol
    # cannot share a descriptor pool with ours.
    rows = np.random.default_rng(5).normal(size=(16, 4)) * [100, 20, 1, 6] + [200, 40, 0, 12]
    np.save(tmp_path / "rows.npy", rows)
    np.save(tmp_path / "expected.npy", model["clf"].predict(rows))
    np.save(tmp_path / "proba.npy", model["clf"].predict_proba(rows))
    done = subprocess.run([sys.executable, "-c", GRPC_CLIENT, sklearn_server.grpc, str(tmp_path / "rows.npy"),
                           str(tmp_path / "expected.npy"), str(tmp_path / "proba.npy")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


def test_openapi_fuzzing_finds_no_server_error(sklearn_server: Server) -> None:
    """schemathesis generates requests from the served OpenAPI document; none may get a 5xx."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", f"{sklearn_server.url}/v2/openapi.json",
         "--checks", "not_a_server_error", "--max-examples", "60", "--workers", "1", "--no-color"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_a_client_library_we_did_not_write_talks_to_the_server_in_binary_and_json(
    sklearn_server: Server, model: dict[str, Any]
) -> None:
    # Triton's V2 HTTP client sends tensors in binary by default (the binary tensor extension) and asks for outputs
    # in binary or JSON per output.
    import tritonclient.http as triton  # type: ignore[import-untyped]

    rows = np.random.default_rng(2).normal(size=(16, 4)) * [100, 20, 1, 6] + [200, 40, 0, 12]
    client = triton.InferenceServerClient(sklearn_server.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("fraud")
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        assert client.get_model_metadata("fraud")["inputs"][0]["name"] == "features"
        for binary_in in (True, False):
            for binary_out in (True, False):
                features = triton.InferInput("features", list(rows.shape), "FP64")
                features.set_data_from_numpy(rows, binary_data=binary_in)
                outputs = [triton.InferRequestedOutput("predict", binary_data=binary_out),
                           triton.InferRequestedOutput("predict_proba", binary_data=not binary_out)]  # fmt: skip
                result = client.infer("fraud", [features], outputs=outputs, model_version="1.0.0")
                assert result.as_numpy("predict").tolist() == model["clf"].predict(rows).tolist()
                np.testing.assert_allclose(result.as_numpy("predict_proba").reshape(16, 2),
                                           model["clf"].predict_proba(rows))  # fmt: skip
        # A bad request through the library: its error carries our 400 message.
        wrong = triton.InferInput("features", [2, 3], "FP64")
        wrong.set_data_from_numpy(np.zeros((2, 3)))
        with pytest.raises(Exception, match="does not match the signature"):
            client.infer("fraud", [wrong])
    finally:
        client.close()
