"""The shipped image, built here (`make image`: docker where an engine answers, else podman with a local Debian base)
and run: as uid 65532 on a read-only root with a tmpfs at /tmp, its dependencies consistent, the model server serving
a model, and the operator reconciling the local cluster from inside it."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import Kubectl, container_engine, free_port, model_artifact, operator_kubeconfig, version, wait_version

SIGNATURE = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [-1, 4]}]}


def run(image: str, *command: str) -> subprocess.CompletedProcess[str]:
    """``command`` in a container of ``image`` as the chart's Pods run it: read-only root, a tmpfs at /tmp."""
    base = container_engine()
    assert base is not None
    return subprocess.run([*base, "--rm", "--read-only", "--tmpfs", "/tmp", image, *command], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def detached(what: str, *args: str) -> tuple[str, list[str]]:
    """Starts a container in the background on the host network (read-only root, a tmpfs at /tmp),
    ``args`` being the engine's options, the image's name and the command; its name, and the engine's command."""
    base = container_engine()
    assert base is not None
    name = f"mlops-test-{what}-{free_port()}"
    control = [base[0], *base[1 : base.index("run")]]
    started = subprocess.run([*base, "--rm", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp", "--network",
                              "host", *args], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert started.returncode == 0, started.stderr
    return name, control


def test_the_image_runs_as_65532_on_a_read_only_root_with_consistent_dependencies(image: str) -> None:
    proc = run(image, "sh", "-c", "id -u; id -g; pip check; mlops-operator --version; touch /opt/x || echo refused; "
               "touch /tmp/x && echo tmp-writable")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["65532", "65532"], proc.stdout
    assert "No broken requirements found." in lines, proc.stdout
    assert any(line.startswith("mlops-operator ") for line in lines), proc.stdout
    assert "refused" in lines and "tmp-writable" in lines, proc.stdout
    # Every runtime's native library loads (XGBoost and LightGBM need the OpenMP runtime of the final stage).
    proc = run(image, "python", "-c", "import xgboost, lightgbm, onnxruntime, sklearn, grpc; "
               "import mlops_operator.server.grpc_service; print('ok')")  # fmt: skip
    assert proc.stdout.strip() == "ok", proc.stderr


def test_the_model_server_in_the_image_serves_a_model(image: str, tmp_path: Path) -> None:
    source, checksum = model_artifact(tmp_path, "1.0.0")
    tmp_path.chmod(0o755)
    Path(source.removeprefix("file://")).chmod(0o644)
    port = free_port()
    name, control = detached(
        "server", "-v", f"{tmp_path}:/models:ro", image, "mlops-server", "--model-name", "fraud",
        "--model-version", "1.0.0", "--source", source.replace(str(tmp_path), "/models"), "--checksum", checksum,
        "--format", "sklearn", "--signature", json.dumps(SIGNATURE), "--host", "127.0.0.1", "--port", str(port),
        "--grpc-port", "0",
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = subprocess.run([*control, "logs", name], capture_output=True, text=True, timeout=60)
                raise AssertionError(f"the server did not become ready:\n{logs.stdout}{logs.stderr}")
            time.sleep(0.5)
        good = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [2, 4], "data": [0.1] * 8}]}
        answer = post(f"{url}/v2/models/fraud/infer", good)
        assert answer[0] == 200 and answer[1]["model_version"] == "1.0.0", answer
        assert answer[1]["outputs"][0]["shape"] == [2], answer
        bad = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [2, 3], "data": [0.1] * 6}]}
        code, body = post(f"{url}/v2/models/fraud/infer", bad)
        assert code == 400 and "features" in body["error"], (code, body)
    finally:
        subprocess.run([*control, "rm", "-f", name], capture_output=True, timeout=60)


def post(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def container_kubeconfig(tmp_path: Path) -> Iterator[Path]:
    """The operator's kubeconfig with its CA inline, readable by the image's user (65532)."""
    config = yaml.safe_load(operator_kubeconfig().read_text())
    cluster = config["clusters"][0]["cluster"]
    if "certificate-authority" in cluster:
        ca = Path(cluster.pop("certificate-authority")).read_bytes()
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o644)
    yield path


def test_the_operator_in_the_image_reconciles_the_cluster(
    image: str, kubectl: Kubectl, tmp_path: Path, container_kubeconfig: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    source, checksum = model_artifact(artifacts, "1.0.0")
    for p in (tmp_path, artifacts, Path(source.removeprefix("file://"))):
        p.chmod(0o755 if p.is_dir() else 0o644)
    name, control = detached(
        "operator", "-v", f"{container_kubeconfig}:/etc/mlops/kubeconfig:ro",
        "-v", f"{artifacts}:{artifacts}:ro", "-e", "KUBECONFIG=/etc/mlops/kubeconfig", image, "mlops-operator",
        "run", "--namespace", kubectl.namespace or "default", "--liveness", f"http://127.0.0.1:{free_port()}/healthz",
        "--metrics", "", "--allow-file-root", str(artifacts),
    )  # fmt: skip
    try:
        kubectl.apply(version("fraud-1-0-0", "fraud", "1.0.0", source, checksum))
        obj = wait_version(kubectl, "fraud-1-0-0", "Ready from the operator in the image", timeout=90, ready="True")
        assert checksum.removeprefix("sha256:") in obj["status"]["artifact"]["sha256"], obj["status"]
    finally:
        logs = subprocess.run([*control, "logs", name], capture_output=True, text=True, timeout=60)
        subprocess.run([*control, "rm", "-f", name], capture_output=True, timeout=60)
    assert "Traceback" not in logs.stdout + logs.stderr, logs.stdout[-3000:] + logs.stderr[-3000:]


def test_the_image_size_and_layers_are_reported(image: str, record_property: Any) -> None:
    base = container_engine()
    assert base is not None
    control = [base[0], *base[1 : base.index("run")]]
    inspected = json.loads(subprocess.run([*control, "image", "inspect", image], capture_output=True, text=True,
                                          check=True, timeout=60).stdout)[0]  # fmt: skip
    size, layers = int(inspected["Size"]), len(inspected["RootFS"]["Layers"])
    print(f"\nimage {image}: {size / 1e6:.0f} MB, {layers} layers")
    record_property("image_bytes", size)
    assert inspected["Config"]["User"] == "65532:65532", inspected["Config"]
    assert inspected["Config"]["Cmd"] == ["mlops-operator", "run"], inspected["Config"]
    assert not inspected["Config"].get("Entrypoint"), inspected["Config"]
    assert 0 < layers < 16 and 200e6 < size < 2e9, (size, layers)
