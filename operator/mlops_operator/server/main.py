"""``mlops-server``: serves one model version. Settings come from flags or MLOPS_* environment variables."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from mlops_operator.server.app import InferenceServer, ModelState
from mlops_operator.server.metrics import ServerMetrics
from mlops_operator.server.runtimes import load
from mlops_operator.server.sketch import Sketch, duration_seconds
from mlops_operator.server.validation import Signature

log = logging.getLogger("mlops_operator.server")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log collectors index without parsing rules."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("model", "version", "seconds"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _json_setting(value: str | None) -> Any:
    """A JSON value given inline or as @path."""
    if not value:
        return None
    if value.startswith("@"):
        with open(value[1:]) as f:
            return json.load(f)
    return json.loads(value)


def local_path(uri: str) -> str:
    """A local file for ``uri``: file:// as is, pvc://claim/path under MLOPS_PVC_ROOT (where claims are mounted),
    other schemes copied to a temporary file."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return parts.path
    if parts.scheme == "pvc":
        return os.path.join(os.environ.get("MLOPS_PVC_ROOT", "/mnt/pvc"), parts.netloc, parts.path.lstrip("/"))
    import tempfile

    from mlops_operator.outbound import UNRESTRICTED
    from mlops_operator.storage import download

    fd, path = tempfile.mkstemp(prefix="mlops-model-", suffix=os.path.splitext(parts.path)[1])
    with os.fdopen(fd, "wb") as destination:
        # The server reads inside the tenant's own Pod, with the Pod's rights: the operator's policy is not its.
        download(uri, destination, UNRESTRICTED)
    return path


def load_model(state: ModelState, metrics: ServerMetrics, args: argparse.Namespace) -> None:
    """Loads the artifact, verifies it, builds signature and sketch. Blocking: runs in a thread."""
    started = time.perf_counter()
    path = local_path(args.source)
    if args.checksum:
        from mlops_operator.outbound import UNRESTRICTED
        from mlops_operator.storage import sha256

        digest = "sha256:" + sha256(f"file://{path}", UNRESTRICTED).sha256
        if digest != args.checksum:
            raise ValueError(f"the artifact has {digest}, expected {args.checksum}")
    runtime = load(args.format, path)
    signature_raw = _json_setting(args.signature)
    signature = Signature.parse(signature_raw) if signature_raw else runtime.default_signature()
    profile = _json_setting(args.profile)
    if profile:
        tensor = next((t for t in signature.inputs if t.features), None)
        if tensor is None:
            log.warning("a reference profile is given but no input tensor names its features: no drift sketch")
        else:
            state.sketch = Sketch(profile, tensor.features, retention_minutes=args.sketch_retention)
            state.sketch_input = tensor.name
            produced = runtime.output_names()
            state.sketch_output = next((t.name for t in signature.outputs if t.name in produced), produced[0])
            metrics.watch_sketch(state.sketch)
    state.signature = signature
    state.runtime = runtime
    seconds = time.perf_counter() - started
    metrics.load_seconds.set(seconds)
    log.info("model loaded", extra={"model": state.name, "version": state.version, "seconds": round(seconds, 3)})


def _limit_native_threads(threads: int) -> None:
    """Caps the native thread pools of the model's libraries: OpenMP through its environment (read when it first
    loads, with the model; a size set by the user stands) and BLAS, loaded already, through threadpoolctl. A
    request of a few rows gains nothing from several threads, and pools sized to every core of the machine spin
    against each other and against the other servers on it: latency then grows with load instead of staying flat.
    Concurrency comes from requests in parallel and from replicas."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:  # no library with a native pool is installed
        return
    threadpool_limits(limits=threads, user_api="blas")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="mlops-server", description=__doc__)
    p.add_argument("--model-name", default=env("MLOPS_MODEL_NAME"), help="the served model's name")
    p.add_argument("--model-version", default=env("MLOPS_MODEL_VERSION", "1"), help="the served version")
    p.add_argument("--source", default=env("MLOPS_MODEL_SOURCE"), help="artifact URI (file, http(s), s3, gs, pvc)")
    p.add_argument("--format", default=env("MLOPS_MODEL_FORMAT", "sklearn"), help="sklearn, onnx, xgboost or lightgbm")
    p.add_argument("--checksum", default=env("MLOPS_MODEL_CHECKSUM"), help="sha256:<hex> the artifact must have")
    p.add_argument("--signature", default=env("MLOPS_MODEL_SIGNATURE"), help="signature JSON, or @file")
    p.add_argument("--profile", default=env("MLOPS_REFERENCE_PROFILE"), help="reference profile JSON, or @file")
    p.add_argument("--host", default=env("MLOPS_SERVER_HOST", "0.0.0.0"))
    p.add_argument("--port", type=int, default=int(env("MLOPS_SERVER_PORT", "8080")))
    p.add_argument("--grpc-port", type=int, default=int(env("MLOPS_GRPC_PORT", "8081")),
                   help="port of the gRPC endpoint (inference.GRPCInferenceService and grpc.health.v1.Health); "
                        "0 turns it off; default 8081 (MLOPS_GRPC_PORT)")  # fmt: skip
    p.add_argument("--max-body-bytes", type=int, default=int(env("MLOPS_MAX_REQUEST_BYTES", str(10 * 2**20))))
    p.add_argument("--graceful-seconds", type=float, default=float(env("MLOPS_GRACEFUL_SECONDS", "25")))
    p.add_argument("--max-batch-size", type=int, default=int(env("MLOPS_MAX_BATCH_SIZE", "16")),
                   help="rows predicted together at most (1: no batching); default 16")  # fmt: skip
    p.add_argument("--max-batch-latency", type=float, default=float(env("MLOPS_MAX_BATCH_LATENCY_MS", "2")),
                   help="milliseconds a request waits for companions at most; default 2 "
                        "(MLOPS_MAX_BATCH_LATENCY_MS)")  # fmt: skip
    p.add_argument("--threads", type=int, default=int(env("MLOPS_INFERENCE_THREADS", "1")),
                   help="native threads (OpenMP, BLAS) per inference; default 1 (MLOPS_INFERENCE_THREADS)")  # fmt: skip
    p.add_argument("--sketch-retention", default=env("MLOPS_SKETCH_RETENTION", "24h"),
                   help="how long the drift sketch keeps its per-minute counts, the longest window "
                        "/v2/models/{name}/sketch?window= answers: a duration (90m, 24h, 1h30m; rounded up to whole "
                        "minutes) or a plain number of minutes; memory grows with the minutes that had traffic "
                        "within it; default 24h (MLOPS_SKETCH_RETENTION)")  # fmt: skip
    p.add_argument("--log-level", default=env("MLOPS_LOG_LEVEL", "info"))
    args = p.parse_args(argv)
    missing = [flag for flag, value in (("--model-name", args.model_name), ("--source", args.source)) if not value]
    if missing:
        p.error(f"{' and '.join(missing)} required (or MLOPS_MODEL_NAME / MLOPS_MODEL_SOURCE)")
    if args.max_batch_size < 1:
        p.error(f"--max-batch-size (MLOPS_MAX_BATCH_SIZE) must be at least 1, got {args.max_batch_size}")
    if args.max_batch_latency < 0:
        p.error(f"--max-batch-latency (MLOPS_MAX_BATCH_LATENCY_MS) must not be negative, got {args.max_batch_latency}")
    if not 0 <= args.grpc_port <= 65535:
        p.error(f"--grpc-port (MLOPS_GRPC_PORT) must be a port number or 0 (off), got {args.grpc_port}")
    if args.grpc_port and args.grpc_port == args.port:
        p.error(f"--grpc-port and --port are both {args.port}: the two endpoints need their own ports")
    if args.threads < 1:
        p.error(f"--threads (MLOPS_INFERENCE_THREADS) must be at least 1, got {args.threads}")
    retention = "--sketch-retention (MLOPS_SKETCH_RETENTION)"
    try:
        args.sketch_retention = math.ceil(duration_seconds(args.sketch_retention, plain="minutes") / 60)
    except (ValueError, OverflowError) as exc:  # OverflowError: a number too large for a float
        p.error(f"{retention}: {exc}")
    if args.sketch_retention < 1:
        p.error(f"{retention}: must be at least one minute, got {args.sketch_retention}")
    return args


async def serve(args: argparse.Namespace) -> None:
    import uvicorn

    state = ModelState(args.model_name, args.model_version)
    metrics = ServerMetrics(args.model_name, args.model_version)
    app = InferenceServer(state, metrics, args.max_body_bytes, args.max_batch_size, args.max_batch_latency / 1000)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, loop="uvloop", http="httptools", lifespan="on", access_log=False,
        log_config=None, timeout_graceful_shutdown=args.graceful_seconds, log_level=args.log_level,
    )  # fmt: skip
    exiting = asyncio.Event()

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            exiting.set()

    server = Server(config)
    endpoint = None
    if args.grpc_port:
        from mlops_operator.server.grpc_service import GrpcEndpoint

        endpoint = GrpcEndpoint(app, args.host, args.grpc_port, args.max_body_bytes)
        await endpoint.start()

    async def loading() -> None:
        try:
            await asyncio.to_thread(load_model, state, metrics, args)
        except Exception as exc:
            state.error = f"the model failed to load: {exc}"
            log.exception("model load failed", extra={"model": state.name, "version": state.version})
            return
        if endpoint is not None:
            await endpoint.ready()

    async def grpc_shutdown() -> None:
        # uvicorn owns the signals: when it starts its graceful shutdown, the gRPC endpoint starts its own, and
        # both let their requests in flight finish.
        await exiting.wait()
        if endpoint is not None:
            await endpoint.stop(args.graceful_seconds)

    # Live at once, ready when loaded: the probes tell a slow load from a dead server.
    task = asyncio.create_task(loading())
    stopping = asyncio.create_task(grpc_shutdown())
    await server.serve()
    exiting.set()  # also when uvicorn ended on its own (its port taken)
    await stopping
    task.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler], force=True)
    # uvicorn shuts down gracefully on SIGTERM (stops accepting, finishes in-flight requests), then raises the
    # signal again for the handler that was there before it: with this no-op one the process exits with 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    _limit_native_threads(args.threads)
    try:
        asyncio.run(serve(args))
    except OSError as exc:  # a port taken, an address not on this host
        log.error("the server cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
