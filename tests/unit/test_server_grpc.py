"""The gRPC endpoint of the model server (``inference.GRPCInferenceService`` and the health service), in-process: the
same application as REST behind a real gRPC server on a local port, called through a client generated from our
proto. REST and gRPC answer the same request identically."""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import joblib
import numpy as np
import numpy.typing as npt
import pytest
from asgi import call
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import generate_latest
from sklearn.linear_model import LogisticRegression

from mlops_operator.server.app import InferenceServer, ModelState
from mlops_operator.server.grpc_service import SERVICE, GrpcEndpoint
from mlops_operator.server.metrics import ServerMetrics
from mlops_operator.server.oip import inference_pb2 as pb
from mlops_operator.server.oip import inference_pb2_grpc as pb_grpc
from mlops_operator.server.runtimes import load
from mlops_operator.server.validation import Signature, TensorSpec

ROOT = Path(__file__).resolve().parents[2]
ROWS = np.array([[0.5, -1.0, 2.0, 0.1], [-2.0, 0.3, 0.0, 1.5], [1.0, 1.0, -1.0, -0.5]], dtype=np.float32)
SIGNATURE = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]},
                {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]}],
}  # fmt: skip


class Loop:
    """An event loop in a thread, where the gRPC server lives while the tests call it with a blocking client."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Served:
    """One application served over gRPC (and callable over REST in-process)."""

    def __init__(self, loop: Loop, app: InferenceServer, ready: bool = True) -> None:
        self.loop, self.app = loop, app

        async def start() -> GrpcEndpoint:
            endpoint = GrpcEndpoint(app, "127.0.0.1", 0, 1 << 20)
            await endpoint.start()
            if ready:
                await endpoint.ready()
            return endpoint

        self.endpoint: GrpcEndpoint = loop.run(start())
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.endpoint.port}")
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def stop(self) -> None:
        self.channel.close()
        self.loop.run(self.endpoint.stop(1))

    def rest(self, body: Any) -> tuple[int, Any]:
        status, _, answer = call(self.app, json.dumps(body).encode(), path="/v2/models/m/infer")
        return status, json.loads(answer)


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LogisticRegression]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    clf = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    path = Path(tmp_path_factory.mktemp("model")) / "m.joblib"
    joblib.dump(clf, path)
    return path, clf


def make_app(path: Path, **kwargs: Any) -> InferenceServer:
    state = ModelState("m", "1", runtime=load("sklearn", str(path)), signature=Signature.parse(SIGNATURE))
    return InferenceServer(state, ServerMetrics("m", "1"), **kwargs)


@pytest.fixture(scope="module")
def served(loop: Loop, model: tuple[Path, LogisticRegression]) -> Iterator[Served]:
    server = Served(loop, make_app(model[0]))
    yield server
    server.stop()


def typed_request(rows: npt.NDArray[Any] = ROWS, outputs: tuple[str, ...] = (), **extra: Any) -> Any:
    request = pb.ModelInferRequest(model_name="m", id="r-1", **extra)
    tensor = request.inputs.add(name="x", datatype="FP32", shape=rows.shape)
    tensor.contents.fp32_contents.extend(rows.ravel().tolist())
    for name in outputs:
        request.outputs.add(name=name)
    return request


def raw_request(rows: npt.NDArray[Any] = ROWS, outputs: tuple[str, ...] = ()) -> Any:
    request = pb.ModelInferRequest(model_name="m", model_version="1")
    request.inputs.add(name="x", datatype="FP32", shape=rows.shape)
    request.raw_input_contents.append(rows.astype("<f4").tobytes())
    for name in outputs:
        request.outputs.add(name=name)
    return request


def typed_output(response: Any, name: str) -> npt.NDArray[Any]:
    for tensor in response.outputs:
        if tensor.name == name:
            field = {"INT64": "int64_contents", "FP64": "fp64_contents", "FP32": "fp32_contents"}[tensor.datatype]
            return np.array(getattr(tensor.contents, field)).reshape(tuple(tensor.shape))
    raise AssertionError(f"no output {name}")


def raw_output(response: Any, name: str) -> npt.NDArray[Any]:
    for index, tensor in enumerate(response.outputs):
        if tensor.name == name:
            dtype = {"INT64": "<i8", "FP64": "<f8", "FP32": "<f4", "FP16": "<f2"}[tensor.datatype]
            return np.frombuffer(response.raw_output_contents[index], dtype=dtype).reshape(tuple(tensor.shape))
    raise AssertionError(f"no output {name}")


def error_of(call_: Any, request: Any) -> tuple[Any, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call_(request, timeout=10)
    return caught.value.code(), caught.value.details()


# --- health and metadata -----------------------------------------------------------------------------------------


def test_live_ready_and_metadata_match_rest(served: Served) -> None:
    assert served.stub.ServerLive(pb.ServerLiveRequest()).live is True
    assert served.stub.ServerReady(pb.ServerReadyRequest()).ready is True
    assert served.stub.ModelReady(pb.ModelReadyRequest(name="m")).ready is True
    assert served.stub.ModelReady(pb.ModelReadyRequest(name="m", version="1")).ready is True
    meta = served.stub.ServerMetadata(pb.ServerMetadataRequest())
    _, _, rest_meta = call(served.app, b"", path="/v2", method="GET")
    assert {"name": meta.name, "version": meta.version, "extensions": list(meta.extensions)} == json.loads(rest_meta)
    model = served.stub.ModelMetadata(pb.ModelMetadataRequest(name="m"))
    _, _, rest_model = call(served.app, b"", path="/v2/models/m", method="GET")

    def tensors(items: Any) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in items]

    as_dict = {"name": model.name, "versions": list(model.versions), "platform": model.platform,
               "inputs": tensors(model.inputs), "outputs": tensors(model.outputs)}  # fmt: skip
    assert as_dict == json.loads(rest_model)


def test_an_unknown_model_or_version_is_not_found(served: Served) -> None:
    code, detail = error_of(served.stub.ModelReady, pb.ModelReadyRequest(name="other"))
    assert code == grpc.StatusCode.NOT_FOUND and detail == "model 'other' is not served here (this server serves 'm')"
    code, detail = error_of(served.stub.ModelMetadata, pb.ModelMetadataRequest(name="m", version="2"))
    assert code == grpc.StatusCode.NOT_FOUND and "version '2' of 'm' is not served here" in detail
    code, detail = error_of(served.stub.ModelInfer, typed_request(model_version="9"))
    assert code == grpc.StatusCode.NOT_FOUND and "version '9' of 'm' is not served here" in detail


def test_the_health_service_answers_kubernetes_probes(loop: Loop, model: tuple[Path, LogisticRegression]) -> None:
    loading = Served(loop, make_app(model[0]), ready=False)
    try:
        check = loading.health.Check
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        # Kubernetes' liveness probe asks for the empty service name; readiness for the inference service.
        assert check(health_pb2.HealthCheckRequest(service="")).status == serving
        assert check(health_pb2.HealthCheckRequest(service=SERVICE)).status == not_serving
        loop.run(loading.endpoint.ready())
        assert check(health_pb2.HealthCheckRequest(service=SERVICE)).status == serving
        code, _ = error_of(check, health_pb2.HealthCheckRequest(service="nope"))
        assert code == grpc.StatusCode.NOT_FOUND
        loop.run(loading.endpoint.health.enter_graceful_shutdown())
        assert check(health_pb2.HealthCheckRequest(service="")).status == not_serving
        assert check(health_pb2.HealthCheckRequest(service=SERVICE)).status == not_serving
    finally:
        loading.stop()


def test_a_model_not_loaded_is_unavailable(loop: Loop) -> None:
    state = ModelState("m", "1", error="the model failed to load: no such file")
    loading = Served(loop, InferenceServer(state, ServerMetrics("m", "1")), ready=False)
    try:
        assert loading.stub.ServerLive(pb.ServerLiveRequest()).live is True
        assert loading.stub.ServerReady(pb.ServerReadyRequest()).ready is False
        assert loading.stub.ModelReady(pb.ModelReadyRequest(name="m")).ready is False
        code, detail = error_of(loading.stub.ModelInfer, typed_request())
        assert code == grpc.StatusCode.UNAVAILABLE and detail == "the model failed to load: no such file"
        code, detail = error_of(loading.stub.ModelMetadata, pb.ModelMetadataRequest(name="m"))
        assert code == grpc.StatusCode.UNAVAILABLE and detail == "the model failed to load: no such file"
    finally:
        loading.stop()


# --- inference -----------------------------------------------------------------------------------------------------


def test_typed_contents_are_answered_typed_and_equal_rest(served: Served, model: Any) -> None:
    clf = model[1]
    response = served.stub.ModelInfer(typed_request(outputs=("predict", "predict_proba")))
    assert (response.model_name, response.model_version, response.id) == ("m", "1", "r-1")
    assert not response.raw_output_contents
    assert typed_output(response, "predict").tolist() == clf.predict(ROWS).tolist()
    np.testing.assert_allclose(typed_output(response, "predict_proba"), clf.predict_proba(ROWS))
    # The same request over REST: the same tensors, element for element.
    body = {"id": "r-1", "inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 4], "data": ROWS.tolist()}],
            "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}  # fmt: skip
    status, answer = served.rest(body)
    assert status == 200
    for tensor in answer["outputs"]:
        ours = next(t for t in response.outputs if t.name == tensor["name"])
        assert (ours.datatype, list(ours.shape)) == (tensor["datatype"], tensor["shape"])
        assert typed_output(response, tensor["name"]).ravel().tolist() == tensor["data"]


def test_raw_inputs_are_answered_raw(served: Served, model: Any) -> None:
    clf = model[1]
    response = served.stub.ModelInfer(raw_request(outputs=("predict_proba", "predict")))
    assert [t.name for t in response.outputs] == ["predict_proba", "predict"]
    assert len(response.raw_output_contents) == 2
    assert all(not t.contents.ListFields() for t in response.outputs)
    assert raw_output(response, "predict").tolist() == clf.predict(ROWS).tolist()
    np.testing.assert_allclose(raw_output(response, "predict_proba"), clf.predict_proba(ROWS))


def test_without_outputs_the_signatures_are_answered(served: Served, model: Any) -> None:
    response = served.stub.ModelInfer(typed_request())
    assert [t.name for t in response.outputs] == ["predict", "predict_proba"]


def test_request_parameters_reach_the_same_checks(served: Served) -> None:
    request = typed_request()
    request.parameters["binary_data_output"].string_param = "yes"
    code, detail = error_of(served.stub.ModelInfer, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and detail == "parameters.binary_data_output must be true or false"


def _typed_in(field: str, datatype: str = "FP32") -> Any:
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=[1, 4])
    getattr(tensor.contents, field).extend([1, 2, 3, 4])
    return request


def _shape(shape: list[int]) -> Any:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="FP32", shape=shape).contents.fp32_contents.extend([0.0] * 6)
    return request


def _both() -> Any:
    request = raw_request()
    request.inputs[0].contents.fp32_contents.extend([0.0] * 12)
    return request


def _raw_count() -> Any:
    request = raw_request()
    request.raw_input_contents.append(b"")
    return request


def _raw_short() -> Any:
    request = raw_request()
    request.raw_input_contents[0] = request.raw_input_contents[0][:-4]
    return request


BAD = [
    ("shape not the signature's", lambda: _shape([2, 3]),
     "input 'x': shape [2, 3] does not match the signature's [-1, 4]"),
    ("elements not the shape's", lambda: _shape([1, 4]), "input 'x': data has 6 elements, shape [1, 4] needs 4"),
    ("datatype not the signature's", lambda: _typed_in("fp64_contents", "FP64"),
     "input 'x': datatype 'FP64' does not match the signature's FP32"),
    ("contents in another field", lambda: _typed_in("int_contents"),
     "input 'x': FP32 elements go in contents.fp32_contents, not contents.int_contents"),
    ("FP16 typed", lambda: _typed_in("fp32_contents", "FP16"),
     "input 'x': FP16 has no typed contents field; send it in raw_input_contents"),
    ("an unknown input", lambda: pb.ModelInferRequest(model_name="m", inputs=[{"name": "y", "datatype": "FP32"}]),
     "input 'y' is not in the signature (inputs: 'x')"),
    ("no inputs", lambda: pb.ModelInferRequest(model_name="m"), "'inputs' must be a non-empty list of tensors"),
    ("an unknown output", lambda: typed_request(outputs=("nope",)),
     "output(s) 'nope' not produced (outputs: predict, predict_proba)"),
    ("typed and raw", _both, "input 'x': give contents or raw_input_contents, not both"),
    ("raw count", _raw_count, "raw_input_contents has 2 entries for 1 inputs"),
    ("raw size", _raw_short, "input 'x': binary_data_size is 44 bytes; shape [3, 4] of FP32 needs 48"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "make", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_requests_are_invalid_argument_with_the_reason(served: Served, what: str, make: Any, message: str) -> None:
    code, detail = error_of(served.stub.ModelInfer, make())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in detail


def test_errors_carry_the_same_messages_as_rest(served: Served) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [0.0] * 6}]}
    status, answer = served.rest(body)
    assert status == 400
    _, detail = error_of(served.stub.ModelInfer, _shape([2, 3]))
    assert detail == answer["error"]


def test_a_model_failure_is_internal_and_the_server_lives_on(loop: Loop, model: Any) -> None:
    app = make_app(model[0])

    def broken(inputs: Any, outputs: tuple[str, ...]) -> dict[str, Any]:
        raise MemoryError("out of memory")

    served = Served(loop, app)
    try:
        app.batcher.predict = broken
        code, detail = error_of(served.stub.ModelInfer, typed_request())
        assert code == grpc.StatusCode.INTERNAL and detail == "inference failed: MemoryError: out of memory"
        assert served.stub.ServerLive(pb.ServerLiveRequest()).live is True
    finally:
        served.stop()


def test_a_cancelled_call_holds_nothing_back(loop: Loop, model: Any) -> None:
    # A client that gives up (its deadline, or its connection closed) while its call waits: the server must not
    # count it as busy any longer, or every later request would wait for a companion that never comes.
    app = make_app(model[0])
    served = Served(loop, app)
    run = app.run

    async def slow(inputs: Any, wanted: tuple[str, ...]) -> dict[str, Any]:
        await asyncio.sleep(2)
        return await run(inputs, wanted)

    try:
        app.run = slow  # type: ignore[method-assign]
        code, _ = error_of(lambda request, timeout: served.stub.ModelInfer(request, timeout=0.2), typed_request())
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        deadline = time.monotonic() + 5
        while app._busy and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app._busy == 0
        text = generate_latest(app.metrics.registry).decode()
        assert 'mlops_server_requests_total{code="499",model="m",protocol="grpc",version="1"} 1.0' in text
        assert 'mlops_server_inflight_requests{model="m",version="1"} 0.0' in text
    finally:
        served.stop()


def test_stopping_lets_a_call_in_flight_finish_and_refuses_new_ones(loop: Loop, model: Any) -> None:
    app = make_app(model[0])
    served = Served(loop, app)
    run = app.run

    async def slow(inputs: Any, wanted: tuple[str, ...]) -> dict[str, Any]:
        await asyncio.sleep(0.5)
        return await run(inputs, wanted)

    app.run = slow  # type: ignore[method-assign]
    answer: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: answer.update(done=served.stub.ModelInfer(typed_request(), timeout=10)))
    thread.start()
    deadline = time.monotonic() + 5
    while not app._busy:
        assert time.monotonic() < deadline, "the call never got in flight"
        time.sleep(0.01)
    stopping = asyncio.run_coroutine_threadsafe(served.endpoint.stop(5), loop.loop)
    time.sleep(0.1)
    code, _ = error_of(served.stub.ServerLive, pb.ServerLiveRequest())  # no new calls while it drains
    assert code == grpc.StatusCode.UNAVAILABLE
    thread.join(10)
    stopping.result(10)
    served.channel.close()
    assert [t.name for t in answer["done"].outputs] == ["predict", "predict_proba"]


def test_a_message_over_the_limit_is_refused(loop: Loop, model: Any) -> None:
    served = Served(loop, make_app(model[0]))  # a 1 MiB limit
    try:
        rows = np.zeros((70_000, 4), dtype=np.float32)  # 1.1 MB raw
        code, _ = error_of(served.stub.ModelInfer, raw_request(rows))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        served.stop()


def test_metrics_count_grpc_answers_by_code(served: Served) -> None:
    before = generate_latest(served.app.metrics.registry).decode()
    served.stub.ModelInfer(typed_request())
    error_of(served.stub.ModelInfer, _shape([2, 3]))
    after = generate_latest(served.app.metrics.registry).decode()

    def value(text: str, series: str) -> float:
        line = next((ln for ln in text.splitlines() if ln.startswith(series + " ")), None)
        return float(line.split()[-1]) if line else 0.0

    ok = 'mlops_server_requests_total{code="200",model="m",protocol="grpc",version="1"}'
    bad = 'mlops_server_requests_total{code="400",model="m",protocol="grpc",version="1"}'
    assert value(after, ok) == value(before, ok) + 1
    assert value(after, bad) == value(before, bad) + 1
    latency = 'mlops_server_request_duration_seconds_count{model="m",protocol="grpc",version="1"}'
    assert value(after, latency) == value(before, latency) + 2
    assert value(after, 'mlops_server_inflight_requests{model="m",version="1"}') == 0


def test_concurrent_grpc_requests_are_batched_with_their_own_answers(loop: Loop, model: Any) -> None:
    # grpcio hands calls to the event loop one at a time; held at the door until all have arrived (as calls that
    # queue behind a slow prediction are), they are in the server together and must share predict calls.
    clf = model[1]
    app = make_app(model[0], max_batch_latency=0.02)
    served = Served(loop, app)
    sizes: list[int] = []
    observe, run = app.batcher.observe, app.run
    arrived: list[int] = []
    everyone = asyncio.Event()

    def counted(size: int, wait: float) -> None:
        sizes.append(size)
        observe(size, wait)

    async def held(inputs: Any, wanted: tuple[str, ...]) -> dict[str, Any]:
        arrived.append(1)
        if len(arrived) == 24:
            everyone.set()
        await asyncio.wait_for(everyone.wait(), 10)
        return await run(inputs, wanted)

    app.batcher.observe = counted
    app.run = held  # type: ignore[method-assign]
    rng = np.random.default_rng(3)
    batches = [rng.normal(size=(int(rng.integers(1, 4)), 4)).astype(np.float32) for _ in range(24)]

    async def burst() -> list[Any]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{served.endpoint.port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            return list(await asyncio.gather(*(stub.ModelInfer(raw_request(b, ("predict_proba",))) for b in batches)))

    try:
        answers = asyncio.run(burst())
    finally:
        served.stop()
    for rows, answer in zip(batches, answers, strict=True):
        np.testing.assert_allclose(raw_output(answer, "predict_proba"), clf.predict_proba(rows), rtol=1e-12)
    # Every request shares its predict call (up to 16 rows each, so at least three calls for these 24).
    assert len(sizes) == 24 and min(sizes) > 1, f"requests predicted alone: {sizes}"


class Words:
    """A model of text: each word's length (INT64) and the word upper-cased (BYTES)."""

    platform = "test"

    def default_signature(self) -> Signature:
        spec = TensorSpec("words", "BYTES", (-1,))
        return Signature((spec,), (), {spec.name: spec})

    def output_names(self) -> tuple[str, ...]:
        return ("length", "upper")

    def output_specs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec("length", "INT64", (-1,)), TensorSpec("upper", "BYTES", (-1,)))

    def predict(self, inputs: Mapping[str, npt.NDArray[Any]], outputs: tuple[str, ...]) -> dict[str, Any]:
        words = inputs["words"]
        every = {"length": np.array([len(w) for w in words], dtype=np.int64),
                 "upper": np.array([w.upper() for w in words], dtype=object)}  # fmt: skip
        return {name: every[name] for name in outputs}


def test_bytes_tensors_typed_and_raw(loop: Loop) -> None:
    runtime = Words()
    state = ModelState("m", "1", runtime=runtime, signature=runtime.default_signature())
    served = Served(loop, InferenceServer(state, ServerMetrics("m", "1")))
    words = ["ok", "", "naïve"]
    try:
        typed = pb.ModelInferRequest(model_name="m", outputs=[{"name": "upper"}, {"name": "length"}])
        typed.inputs.add(name="words", datatype="BYTES", shape=[3]).contents.bytes_contents.extend(
            w.encode() for w in words
        )
        response = served.stub.ModelInfer(typed)
        upper = next(t for t in response.outputs if t.name == "upper")
        assert upper.datatype == "BYTES" and [b.decode() for b in upper.contents.bytes_contents] == ["OK", "", "NAÏVE"]
        assert list(next(t for t in response.outputs if t.name == "length").contents.int64_contents) == [2, 0, 5]

        raw = pb.ModelInferRequest(model_name="m", outputs=[{"name": "upper"}])
        raw.inputs.add(name="words", datatype="BYTES", shape=[3])
        raw.raw_input_contents.append(b"".join(struct.pack("<I", len(w.encode())) + w.encode() for w in words))
        answer = served.stub.ModelInfer(raw).raw_output_contents[0]
        expected = b"".join(struct.pack("<I", len(w.upper().encode())) + w.upper().encode() for w in words)
        assert answer == expected

        bad = pb.ModelInferRequest(model_name="m")
        bad.inputs.add(name="words", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"\xff")
        code, detail = error_of(served.stub.ModelInfer, bad)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and detail == "input 'words': a BYTES element is not UTF-8 text"
    finally:
        served.stop()


# --- the proto ---------------------------------------------------------------------------------------------------


def _fields(module: str) -> dict[str, Any]:
    """Every message's fields (number, type, label) and the service's methods of a generated module, read in a
    process of its own (two modules of the same protocol cannot share one descriptor pool)."""
    script = f"""
import json
import {module} as m
def walk(message, prefix, out):
    name = prefix + message.name
    out[name] = {{f.name: [f.number, f.type, f.is_repeated] for f in message.fields}}
    for nested in message.nested_types:
        walk(nested, name + ".", out)
out = {{}}
for message in m.DESCRIPTOR.message_types_by_name.values():
    walk(message, "", out)
service = m.DESCRIPTOR.services_by_name["GRPCInferenceService"]
out["service"] = {{x.name: [x.input_type.full_name, x.output_type.full_name] for x in service.methods}}
out["package"] = m.DESCRIPTOR.package
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    return dict(json.loads(done.stdout))


def test_the_proto_is_wire_compatible_with_tritons() -> None:
    # Triton's client carries its own generated copy of the protocol's service: every method, message and field
    # number of ours must be the same there, or its clients would misread ours.
    ours = _fields("mlops_operator.server.oip.inference_pb2")
    theirs = _fields("tritonclient.grpc.service_pb2")
    assert ours.pop("package") == theirs.pop("package") == "inference"
    service, their_service = ours.pop("service"), theirs.pop("service")
    assert set(service) == {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"}
    assert service == {method: their_service.get(method) for method in service}
    for message, fields in ours.items():
        assert message in theirs, message
        for name, spec in fields.items():
            assert theirs[message].get(name) == spec, (
                f"{message}.{name}: ours {spec}, Triton's {theirs[message].get(name)}"
            )


def test_the_generated_modules_are_up_to_date(tmp_path: Path) -> None:
    proto = "mlops_operator/server/oip/inference.proto"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "operator"), f"--python_out={tmp_path}",
                    f"--grpc_python_out={tmp_path}", str(ROOT / "operator" / proto)],
                   check=True, timeout=60)  # fmt: skip
    for name in ("inference_pb2.py", "inference_pb2_grpc.py"):
        fresh = (tmp_path / "mlops_operator/server/oip" / name).read_text()
        committed = (ROOT / "operator/mlops_operator/server/oip" / name).read_text()
        assert fresh == committed, f"{name} is stale: run make proto"
