"""Registry throughput: 1,000 ModelVersions applied to the local cluster, until all are Ready.

Each version has a real artifact on local disk whose sha256 the operator verifies, metrics and a quality gate; one
version in ten asks for production. Measured: time from the first create to all Ready, versions per second, and the
operator's peak RSS. The peer, measured in the same run: MLflow's model registry (SQLite backend, the registry
client), registering the same 1,000 versions and setting the production alias. MLflow verifies no artifact, so
the comparison is generous to it.

Also measured in the same run: the rate at which the same client creates the same 1,000 objects with no operator
running (the physical limit here: the API server); the writes to the ModelVersions (their MODIFIED events, whoever
made them) and the API writes of the operator's own client (from the line it logs when stopped); the operator's CPU.

Run with `make bench` (the local cluster must be up); BENCH_PROFILE=<file> runs the operator under cProfile.
Goals: >= 50 versions/s and at least 0.9 times the create rate, RSS < 200 MB. The create rate alone is no rate a
registry can reach: each version also needs its status written and its Event posted, and the same client doing
only that (the floor measured and printed here) already reaches about a third of it on this machine.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from lightkube import AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Event, Namespace
from lightkube.types import PatchType

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = int(os.environ.get("BENCH_VERSIONS", "1000"))
PER_MODEL = int(os.environ.get("BENCH_PER_MODEL", "10"))
ARTIFACT_BYTES = 256 * 1024
CONCURRENCY = 16
ModelVersion = create_namespaced_resource("mlops.io", "v1alpha1", "ModelVersion", "modelversions")


def make_artifacts(directory: Path) -> list[tuple[str, str]]:
    out = []
    for i in range(VERSIONS):
        path = directory / f"model-{i}.bin"
        data = os.urandom(ARTIFACT_BYTES)
        path.write_bytes(data)
        out.append((f"file://{path}", "sha256:" + hashlib.sha256(data).hexdigest()))
    return out


def body(i: int, source: str, checksum: str) -> dict[str, Any]:
    model, minor = f"model-{i // PER_MODEL}", i % PER_MODEL
    return {
        "apiVersion": "mlops.io/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": f"{model}-v{minor}"},
        "spec": {
            "model": model,
            "version": f"1.{minor}.0",
            "source": source,
            "checksum": checksum,
            "format": "onnx",
            "metrics": [{"name": "auc", "value": 0.9 + minor / 1000}, {"name": "logloss", "value": 0.2,
                                                                         "lowerIsBetter": True}],
            "gates": [{"metric": "auc", "min": 0.85}],
            "stage": "production" if minor == PER_MODEL - 1 else "staging",
        },
    }  # fmt: skip


class PeakRss:
    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)


STATS_LINE = re.compile(r"\w+ reconciles: (\d+) \((\d+) wrote nothing\); API requests: (\{.*\})")
WRITE_VERBS = ("apply", "patch", "delete", "create")


async def create_only(namespace: str, artifacts: list[tuple[str, str]], write_status: bool = False) -> float:
    """Seconds the client takes to create the versions with no operator running; with ``write_status``, the client
    also writes each version's status and posts its Event itself: the least any controller adds to the API server's
    work (one status write and one Event per version), with no controller cost at all."""
    client = AsyncClient()
    await client.create(Namespace.from_dict({"metadata": {"name": namespace}}))
    try:
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def create(i: int) -> None:
            version = body(i, *artifacts[i])
            name = version["metadata"]["name"]
            async with semaphore:
                await client.create(ModelVersion.from_dict(version), namespace=namespace)
            if not write_status:
                return
            async with semaphore:
                await client.patch(ModelVersion.Status, name, {"status": STATUS}, namespace=namespace,
                                   patch_type=PatchType.MERGE)  # fmt: skip
            async with semaphore:
                await client.create(Event.from_dict(event_of(name, namespace)), namespace=namespace)

        started = time.monotonic()
        await asyncio.gather(*(create(i) for i in range(VERSIONS)))
        return time.monotonic() - started
    finally:
        await client.delete(Namespace, namespace)


STATUS = {
    "observedGeneration": 1,
    "stage": "staging",
    "conditions": [{"type": "Ready", "status": "True", "reason": "Registered", "message": "artifact verified",
                    "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}],
}  # fmt: skip


def event_of(name: str, namespace: str) -> dict[str, Any]:
    return {
        "metadata": {"generateName": f"{name}."},
        "involvedObject": {"apiVersion": "mlops.io/v1alpha1", "kind": "ModelVersion", "name": name,
                           "namespace": namespace},
        "reason": "Staged", "message": "stage staging", "type": "Normal", "count": 1,
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
        "source": {"component": "bench"},
    }  # fmt: skip


def start_operator(namespace: str) -> tuple[subprocess.Popen[bytes], str]:
    log = Path(tempfile.gettempdir()) / f"{namespace}-operator.log"
    profile = os.environ.get("BENCH_PROFILE")
    python = [sys.executable, "-m", "cProfile", "-o", profile] if profile else [sys.executable]
    with log.open("w") as out:
        operator = subprocess.Popen(
            [*python, "-m", "mlops_operator", "run", "--namespace", namespace, "--liveness", "",
             "--metrics", "", "--allow-file-root", tempfile.gettempdir()],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return operator, str(log)


async def run_ours(namespace: str, artifacts: list[tuple[str, str]]) -> dict[str, float]:
    client = AsyncClient()
    await client.create(Namespace.from_dict({"metadata": {"name": namespace}}))
    operator, log = start_operator(namespace)
    rss = PeakRss(operator.pid)
    try:
        await asyncio.sleep(3)  # the operator is up and watching an empty namespace
        idle_rss = rss.process.memory_info().rss
        # Every write to a ModelVersion, whoever's client made it (the operator's, kopf's): one MODIFIED event.
        events: dict[str, int] = {}

        # Readiness is read from the same watch (listing 1,000 objects every moment would load the API server
        # that the operator is measured against): every version Ready, and each model's production holder.
        ready: set[str] = set()
        production: set[str] = set()
        done = asyncio.Event()

        async def count_events() -> None:
            async for op, obj in client.watch(ModelVersion, namespace=namespace):
                events[op] = events.get(op, 0) + 1
                name, status = obj.metadata.name, obj.status or {}
                is_ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
                (ready.add if is_ready else ready.discard)(name)
                (production.add if status.get("stage") == "production" else production.discard)(name)
                if len(ready) == VERSIONS and len(production) == VERSIONS // PER_MODEL:
                    done.set()

        watching = asyncio.get_running_loop().create_task(count_events())
        await asyncio.sleep(0.5)
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def create(i: int) -> None:
            async with semaphore:
                await client.create(ModelVersion.from_dict(body(i, *artifacts[i])), namespace=namespace)

        cpu_before = sum(rss.process.cpu_times()[:2])
        started = time.monotonic()
        await asyncio.gather(*(create(i) for i in range(VERSIONS)))
        created = time.monotonic() - started
        try:
            await asyncio.wait_for(done.wait(), 600)
        except TimeoutError:
            raise SystemExit(f"only {len(ready)}/{VERSIONS} Ready after 600s; see {log}") from None
        elapsed = time.monotonic() - started
        cpu = sum(rss.process.cpu_times()[:2]) - cpu_before
        await asyncio.sleep(2)  # the last writes' events arrive
        watching.cancel()
        settled_rss = rss.process.memory_info().rss
        items = [o async for o in client.list(ModelVersion, namespace=namespace)]
        held = [o for o in items if (o.status or {}).get("stage") == "production"]
        assert len(held) == VERSIONS // PER_MODEL, len(held)
        return {
            "log": log,  # type: ignore[dict-item]
            "modified": events.get("MODIFIED", 0),
            "cpu": cpu,
            "elapsed": elapsed,
            "created": created,
            "peak_rss": rss.peak,
            "idle_rss": idle_rss,
            "settled_rss": settled_rss,
        }
    finally:
        rss.stop.set()
        operator.terminate()
        operator.wait(30)
        await client.delete(Namespace, namespace)


def operator_writes(log: str) -> int:
    """The API writes the stopped operator made, from its closing line."""
    found = STATS_LINE.findall(Path(log).read_text(errors="replace"))
    if not found:
        raise SystemExit(f"no statistics line in {log}")
    requests = json.loads(found[-1][2])
    return sum(int(requests.get(verb, 0)) for verb in WRITE_VERBS)


MLFLOW_PEER = r"""
import json, sys, time
from mlflow import MlflowClient
uri, versions, per_model = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sources = json.loads(sys.stdin.read())
client = MlflowClient(tracking_uri=uri, registry_uri=uri)
started = time.monotonic()
for m in range(versions // per_model):
    client.create_registered_model(f"model-{m}")
for i in range(versions):
    model, minor = f"model-{i // per_model}", i % per_model
    mv = client.create_model_version(model, sources[i], tags={"auc": str(0.9 + minor / 1000)})
    if minor == per_model - 1:
        client.set_registered_model_alias(model, "production", mv.version)
print(json.dumps({"elapsed": time.monotonic() - started}))
"""


def run_mlflow(artifacts: list[tuple[str, str]], python: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as tmp:
        uri = f"sqlite:///{tmp}/registry.db"
        # The schema migration happens on first use; do it before the clock starts.
        migrate = f"from mlflow import MlflowClient; MlflowClient('{uri}', '{uri}').search_registered_models()"
        subprocess.run([python, "-c", migrate], check=True, capture_output=True)
        out = subprocess.run(
            [python, "-c", MLFLOW_PEER, uri, str(VERSIONS), str(PER_MODEL)],
            input=json.dumps([s for s, _ in artifacts]), capture_output=True, text=True, check=True,
        )  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    mlflow_python = os.environ.get("BENCH_MLFLOW_PYTHON", "")
    with tempfile.TemporaryDirectory(prefix="bench-artifacts-") as tmp:
        artifacts = make_artifacts(Path(tmp))
        create_seconds = asyncio.run(create_only(f"bench-create-{int(time.time())}", artifacts))
        floor_seconds = asyncio.run(create_only(f"bench-floor-{int(time.time())}", artifacts, write_status=True))
        ours = asyncio.run(run_ours(f"bench-registry-{int(time.time())}", artifacts))
        peer = run_mlflow(artifacts, mlflow_python) if mlflow_python and shutil.which(mlflow_python) else None
    rate = VERSIONS / ours["elapsed"]
    print(f"registry: {VERSIONS} ModelVersions ({ARTIFACT_BYTES // 1024} KiB artifacts, sha256 verified) "
          f"all Ready in {ours['elapsed']:.1f}s (created in {ours['created']:.1f}s): {rate:.1f} versions/s "
          f"(goal >= 50)")  # fmt: skip
    print(f"registry: operator peak RSS {ours['peak_rss'] / 2**20:.0f} MB (idle {ours['idle_rss'] / 2**20:.0f} MB, "
          f"{ours['settled_rss'] / 2**20:.0f} MB with all Ready; "
          f"goal < 200 MB)")  # fmt: skip
    print(
        f"registry: operator CPU {ours['cpu']:.1f} s from the first create to all Ready "
        f"({100 * ours['cpu'] / ours['elapsed']:.0f}% of one core)"
    )
    writes = operator_writes(str(ours["log"]))
    create_rate = VERSIONS / create_seconds
    print(f"registry: the same client creating the {VERSIONS} versions with no operator: {create_rate:.1f}/s; "
          f"reconciled/created = {rate / create_rate:.2f} (goal >= 0.9)")  # fmt: skip
    floor_rate = VERSIONS / floor_seconds
    print(f"registry: the same client creating each version and writing its status and one Event itself (the "
          f"least API work of any registry controller, with no controller cost): {floor_rate:.1f}/s "
          f"({floor_rate / create_rate:.2f} of the create rate); "
          f"reconciled/that = {rate / floor_rate:.2f}")  # fmt: skip
    print(f"registry: writes to the ModelVersions (their MODIFIED events): {ours['modified']}, "
          f"{ours['modified'] / VERSIONS:.2f} per version; every API write of the operator's own client (status, "
          f"Events, ConfigMaps; kopf's not counted): {writes}, {writes / VERSIONS:.2f} per version")  # fmt: skip
    if peer:
        peer_rate = VERSIONS / peer["elapsed"]
        print(f"peer MLflow registry (SQLite, no artifact check): {VERSIONS} versions in {peer['elapsed']:.1f}s: "
              f"{peer_rate:.1f} versions/s; ours/peer = {rate / peer_rate:.2f}")  # fmt: skip
    else:
        print("peer MLflow registry: skipped (set BENCH_MLFLOW_PYTHON to a python with mlflow installed; "
              "`make bench` does)")  # fmt: skip


if __name__ == "__main__":
    main()
