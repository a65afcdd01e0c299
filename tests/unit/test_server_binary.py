"""The binary tensor extension of the Open Inference Protocol on REST, through the server's ASGI application: binary
inputs (``Inference-Header-Content-Length``, ``parameters.binary_data_size``) and binary outputs when asked, mixed
with JSON ones; malformed lengths refused with 400, never 500."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from asgi import call
from sklearn.linear_model import LogisticRegression

from mlops_operator.server.app import InferenceServer, ModelState
from mlops_operator.server.metrics import ServerMetrics
from mlops_operator.server.runtimes import load
from mlops_operator.server.validation import Signature

ROWS = np.array([[0.5, -1.0, 2.0, 0.1], [-2.0, 0.3, 0.0, 1.5], [1.0, 1.0, -1.0, -0.5]], dtype=np.float32)
SIGNATURE = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]},
                {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]}],
}  # fmt: skip


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> tuple[InferenceServer, LogisticRegression]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    path = Path(tmp_path_factory.mktemp("model")) / "m.joblib"
    joblib.dump(model, path)
    state = ModelState("m", "1", runtime=load("sklearn", str(path)), signature=Signature.parse(SIGNATURE))
    return InferenceServer(state, ServerMetrics("m", "1")), model


def binary_request(header: dict[str, Any], *tails: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + b"".join(tails), {"Inference-Header-Content-Length": str(len(head))}


def x_binary(rows: np.ndarray = ROWS) -> tuple[dict[str, Any], bytes]:
    raw = rows.astype("<f4").tobytes()
    return {
        "name": "x",
        "datatype": "FP32",
        "shape": list(rows.shape),
        "parameters": {"binary_data_size": len(raw)},
    }, raw


def test_binary_inputs_give_the_same_answer_as_json(app: Any) -> None:
    server, model = app
    header, raw = x_binary()
    body, headers = binary_request({"inputs": [header]}, raw)
    status, out_headers, answer = call(server, body, headers)
    assert status == 200 and out_headers["content-type"] == "application/json"
    as_json = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 4], "data": ROWS.ravel().tolist()}]}
    assert json.loads(answer) == json.loads(call(server, json.dumps(as_json).encode())[2])
    predicted = next(o for o in json.loads(answer)["outputs"] if o["name"] == "predict")
    assert predicted["data"] == model.predict(ROWS).tolist()


def test_binary_outputs_when_asked_each_or_all(app: Any) -> None:
    server, model = app
    header, raw = x_binary()
    request = {"inputs": [header], "outputs": [{"name": "predict", "parameters": {"binary_data": True}},
                                                {"name": "predict_proba"}]}  # fmt: skip
    body, headers = binary_request(request, raw)
    status, out_headers, answer = call(server, body, headers)
    assert status == 200 and out_headers["content-type"] == "application/octet-stream"
    length = int(out_headers["inference-header-content-length"])
    head, tail = json.loads(answer[:length]), answer[length:]
    predict, proba = head["outputs"]
    assert "data" not in predict and predict["parameters"]["binary_data_size"] == len(tail) == 3 * 8
    assert np.frombuffer(tail, "<i8").tolist() == model.predict(ROWS).tolist()
    assert proba["data"] == pytest.approx(model.predict_proba(ROWS).ravel().tolist())
    # Every output in binary, from JSON inputs.
    request = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 4], "data": ROWS.ravel().tolist()}],
               "parameters": {"binary_data_output": True}}  # fmt: skip
    status, out_headers, answer = call(server, json.dumps(request).encode())
    length = int(out_headers["inference-header-content-length"])
    sizes = [o["parameters"]["binary_data_size"] for o in json.loads(answer[:length])["outputs"]]
    assert status == 200 and sizes == [24, 48] and len(answer) == length + 72
    assert np.frombuffer(answer[length + 24 :], "<f8").reshape(3, 2) == pytest.approx(model.predict_proba(ROWS))


BAD = [
    # (what, body maker, message)
    ("header longer than the body", lambda: (b'{"inputs": []}', {"Inference-Header-Content-Length": "999"}),
     "Inference-Header-Content-Length is 999, larger than the body's 14 bytes"),
    ("header not a number", lambda: (b"{}", {"Inference-Header-Content-Length": "-3"}),
     "Inference-Header-Content-Length must be a byte count, got '-3'"),
    ("size past the end", lambda: binary_request({"inputs": [x_binary()[0]]}, x_binary()[1][:-4]),
     "binary_data_size 48 runs past the end of the binary data (44 bytes left)"),
    ("size not the shape's", lambda: binary_request(
        {"inputs": [{**x_binary()[0], "parameters": {"binary_data_size": 44}}]}, x_binary()[1][:-4]),
     "binary_data_size is 44 bytes; shape [3, 4] of FP32 needs 48"),
    ("bytes left over", lambda: binary_request({"inputs": [x_binary()[0]]}, x_binary()[1], b"junk"),
     "4 bytes of binary data follow the last binary input"),
    ("negative size", lambda: binary_request(
        {"inputs": [{**x_binary()[0], "parameters": {"binary_data_size": -1}}]}, b""),
     "binary_data_size must be a non-negative integer, got -1"),
    ("data and size", lambda: binary_request(
        {"inputs": [{**x_binary()[0], "data": [1]}]}, x_binary()[1]),
     "give data or parameters.binary_data_size, not both"),
    ("bad JSON header", lambda: (b"{nope" + x_binary()[1], {"Inference-Header-Content-Length": "5"}),
     "the body is not valid JSON (the JSON header of a binary request)"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "make", "message"), BAD, ids=[b[0] for b in BAD])
def test_malformed_binary_requests_are_400_with_the_reason(app: Any, what: str, make: Any, message: str) -> None:
    body, headers = make()
    status, _, answer = call(app[0], body, headers)
    assert status == 400, answer
    assert message in json.loads(answer)["error"]


def test_bytes_tensors_round_trip_with_length_prefixes() -> None:
    from mlops_operator.server.validation import TensorSpec, _binary_tensor, binary_output

    spec = TensorSpec("s", "BYTES", (-1,))
    words = ["ok", "", "naïve"]
    raw = b"".join(struct.pack("<I", len(w.encode())) + w.encode() for w in words)
    item = {"name": "s", "datatype": "BYTES", "shape": [3]}
    assert _binary_tensor(item, spec, raw).tolist() == words
    header, out = binary_output("s", np.array(words))
    assert out == raw and header["parameters"]["binary_data_size"] == len(raw)
    from mlops_operator.server.validation import RequestError

    with pytest.raises(RequestError, match="runs past binary_data_size"):
        _binary_tensor(item, spec, raw[:-1])
    with pytest.raises(RequestError, match="2 BYTES elements, shape \\[3\\] needs 3"):
        _binary_tensor(item, spec, raw[: raw.index(b"na") - 4])
    with pytest.raises(RequestError, match="is not UTF-8 text"):
        _binary_tensor({**item, "shape": [1]}, spec, struct.pack("<I", 1) + b"\xff")


def test_the_server_metadata_lists_the_extension(app: Any) -> None:
    status, _, answer = call(app[0], b"", path="/v2", method="GET")
    assert status == 200 and json.loads(answer)["extensions"] == ["binary_tensor_data"]
