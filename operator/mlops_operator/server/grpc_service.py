"""The Open Inference Protocol V2 over gRPC (``inference.GRPCInferenceService``) and the standard health service.

The same server as REST behind another transport: a request is turned into the V2 form REST takes (typed contents
become ``data``, ``raw_input_contents`` become binary inputs), checked by the same code, batched with REST's
requests, counted in the same metrics (``protocol="grpc"``) and drift sketch. Errors carry REST's messages with the
gRPC status of the same meaning (``STATUS_OF_HTTP``).

Outputs come as ``raw_output_contents`` when the request sent raw inputs (what clients that send raw read back), when
it asks for any output in binary (``binary_data_output``, or ``binary_data`` on an output, as on REST), or when an
output is FP16 (it has no typed field); otherwise in the typed contents of their datatype.

The health service (``grpc.health.v1.Health``, what Kubernetes' gRPC probes call) answers ``""`` SERVING while the
process is up (liveness) and ``inference.GRPCInferenceService`` SERVING once the model is loaded (readiness);
both turn NOT_SERVING when the server shuts down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from mlops_operator.server.app import CANCELLED, HttpError, InferenceServer, binary_outputs
from mlops_operator.server.oip import inference_pb2 as pb
from mlops_operator.server.oip import inference_pb2_grpc as pb_grpc
from mlops_operator.server.validation import RequestError, binary_output, datatype_of

log = logging.getLogger("mlops_operator.server")

SERVICE = "inference.GRPCInferenceService"
STATUS_OF_HTTP = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}
"""The gRPC status of each HTTP status the server answers; metrics count a gRPC answer under its HTTP code."""
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip
"""The typed field of InferTensorContents that carries each datatype (FP16 has none: raw only)."""
FIELDS = tuple(dict.fromkeys(CONTENTS.values()))


def parameters(entries: Mapping[str, Any]) -> dict[str, Any]:
    """InferParameter entries as plain values."""
    out: dict[str, Any] = {}
    for key, value in entries.items():
        choice = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, choice) if choice else None
    return out


def to_request(message: Any) -> tuple[dict[str, Any], bytes]:
    """A ModelInferRequest in the V2 form REST takes, and its raw inputs joined as REST's binary data."""
    raw = list(message.raw_input_contents)
    if raw and len(raw) != len(message.inputs):
        raise RequestError(f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs: give one "
                           "per input, in the order of inputs, or none")  # fmt: skip
    inputs = []
    for position, tensor in enumerate(message.inputs):
        item: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        given = [f for f in FIELDS if len(getattr(tensor.contents, f))]
        if raw:
            if given:
                raise RequestError(f"input {tensor.name!r}: give contents or raw_input_contents, not both")
            item["parameters"] = {**parameters(tensor.parameters), "binary_data_size": len(raw[position])}
        else:
            item["data"] = _typed(tensor, given)
        inputs.append(item)
    request: dict[str, Any] = {"inputs": inputs, "parameters": parameters(message.parameters)}
    if message.outputs:
        request["outputs"] = [{"name": o.name, "parameters": parameters(o.parameters)} for o in message.outputs]
    return request, b"".join(raw)


def _typed(tensor: Any, given: list[str]) -> list[Any]:
    """A tensor's typed contents as a flat list (checked against its datatype by the same code as REST's data)."""
    field = CONTENTS.get(tensor.datatype)
    where = f"input {tensor.name!r}"
    if tensor.datatype == "FP16":
        raise RequestError(f"{where}: FP16 has no typed contents field; send it in raw_input_contents")
    wrong = [f for f in given if f != field]
    if field is not None and wrong:
        raise RequestError(f"{where}: {tensor.datatype} elements go in contents.{field}, not contents.{wrong[0]}")
    if field is None:
        return []  # an unknown datatype: refused by the signature check with its message
    values = list(getattr(tensor.contents, field))
    if field == "bytes_contents":
        try:
            return [v.decode() for v in values]
        except UnicodeDecodeError:
            raise RequestError(f"{where}: a BYTES element is not UTF-8 text") from None
    return values


def to_response(server: InferenceServer, message: Any, wanted: tuple[str, ...], results: Mapping[str, Any],
                raw: bool) -> Any:  # fmt: skip
    """The ModelInferResponse of ``results``."""
    state = server.state
    response = pb.ModelInferResponse(model_name=state.name, model_version=state.version, id=message.id)
    arrays = {name: np.asarray(results[name]) for name in wanted}
    raw = raw or any(datatype_of(a) == "FP16" for a in arrays.values())
    for name in wanted:
        array = arrays[name]
        tensor = response.outputs.add(name=name, datatype=datatype_of(array), shape=array.shape)
        if raw:
            response.raw_output_contents.append(binary_output(name, array)[1])
        else:
            _fill(tensor.contents, array)
    return response


def _fill(contents: Any, array: npt.NDArray[Any]) -> None:
    field = CONTENTS[datatype_of(array)]
    flat = array.ravel()
    if field == "bytes_contents":
        getattr(contents, field).extend(str(v).encode() for v in flat.astype(str))
    else:
        getattr(contents, field).extend(flat.tolist())


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """The protocol's methods over the REST application's state, batcher and metrics."""

    def __init__(self, server: InferenceServer) -> None:
        self.server = server

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.server.state.runtime is not None)

    async def ModelReady(self, request: Any, context: Any) -> Any:
        await self._check_model(request.name, request.version, context)
        return pb.ModelReadyResponse(ready=self.server.state.runtime is not None)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return pb.ServerMetadataResponse(**self.server.server_metadata())

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        await self._check_model(request.name, request.version, context)
        try:
            metadata = self.server.model_metadata()
        except HttpError as exc:
            await context.abort(STATUS_OF_HTTP[exc.status], str(exc))
        return pb.ModelMetadataResponse(**metadata)

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        server = self.server
        started = server.begin()
        status, code, detail, response = CANCELLED, grpc.StatusCode.OK, "", None
        try:
            response = await self._infer(request)
            status = 200
        except HttpError as exc:
            status, code, detail = exc.status, STATUS_OF_HTTP[exc.status], str(exc)
        except Exception as exc:  # a model failure must not take the server down
            log.exception("inference failed")
            status, code, detail = 500, grpc.StatusCode.INTERNAL, f"inference failed: {type(exc).__name__}: {exc}"
        finally:
            # Also when the call is cancelled (the client went away): it must not hold batches back.
            server.answered()
            server.end(started, status, "grpc")
        if response is None:
            await context.abort(code, detail)
        return response

    async def _infer(self, request: Any) -> Any:
        server = self.server
        self._model(request.model_name, request.model_version)
        if server.state.runtime is None:
            raise HttpError(503, server.state.error or f"model {server.state.name!r} is not ready")
        try:
            payload, binary = to_request(request)
            inputs, wanted = server.prepare(payload, binary)
            raw = bool(request.raw_input_contents) or bool(binary_outputs(payload, wanted))
        except RequestError as exc:
            raise HttpError(400, str(exc)) from None
        results = await server.run(inputs, wanted)
        return to_response(server, request, wanted, results, raw)

    def _model(self, name: str, version: str) -> None:
        state = self.server.state
        if name != state.name:
            raise HttpError(404, f"model {name!r} is not served here (this server serves {state.name!r})")
        if version and version != state.version:
            raise HttpError(404, f"version {version!r} of {name!r} is not served here "
                                 f"(this server serves {state.version!r})")  # fmt: skip

    async def _check_model(self, name: str, version: str, context: Any) -> None:
        try:
            self._model(name, version)
        except HttpError as exc:
            await context.abort(STATUS_OF_HTTP[exc.status], str(exc))


class GrpcEndpoint:
    """The gRPC server of one model server process: the inference service and the health service, on ``port``."""

    def __init__(self, app: InferenceServer, host: str, port: int, max_message_bytes: int) -> None:
        options = [("grpc.max_receive_message_length", max_message_bytes), ("grpc.so_reuseport", 0)]
        self.server = grpc.aio.server(options=options)
        self.health = health.aio.HealthServicer()
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(app), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError as exc:  # grpcio raises where older versions returned 0
            raise OSError(f"cannot listen for gRPC on {address}: {exc}") from None
        if self.port == 0:
            raise OSError(f"cannot listen for gRPC on {address}")

    async def start(self) -> None:
        await self.server.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)

    async def ready(self) -> None:
        """The model is loaded: readiness turns SERVING."""
        await self.health.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float) -> None:
        """Stops taking calls and lets those in flight finish within ``grace`` seconds."""
        await self.health.enter_graceful_shutdown()
        started = time.monotonic()
        await self.server.stop(grace)
        log.info("gRPC endpoint stopped", extra={"seconds": round(time.monotonic() - started, 3)})
