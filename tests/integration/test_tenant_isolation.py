"""Tenant isolation: what a user who may create ModelVersions can make the operator read, fetch and publish.

Each probe is what a tenant would try: a file of the operator's, a link or ``..`` out of the allowed root, the cloud
metadata address, the API server, loopback by address and by name, a redirect from an allowed server. Every probe
ends ``Ready=False, SourceNotAllowed`` naming the rule, and the probed content appears in no ConfigMap, status,
Event or operator log line.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from support import Kubectl, OperatorProcess, artifact, condition, start_operator, version, wait_version


def published(kubectl: Kubectl, op: OperatorProcess) -> str:
    """Everything the operator could have published: the namespace's ConfigMaps, ModelVersions and Events, and its
    own log."""
    objects = kubectl.run("get", "configmaps,modelversions,events", "-o", "json").stdout
    return objects + op.log()


def refused(kubectl: Kubectl, name: str, rule: str) -> dict[str, Any]:
    obj = wait_version(kubectl, name, "refused", ready="False", reason="SourceNotAllowed")
    message = condition(obj, "Ready")["message"]
    assert rule in message, message
    return obj


class Files(http.server.BaseHTTPRequestHandler):
    """Serves a model at /model.bin and redirects /to?url=U to U; counts what it was asked."""

    hits: list[str] = []
    payload = b""

    def do_GET(self) -> None:
        self.hits.append(self.path)
        if self.path.startswith("/to?url="):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/to?url="))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def files(tmp_path: Path) -> Iterator[tuple[int, type[Files], str, str]]:
    """A local HTTP server with a model: (port, handler, source path, checksum)."""
    source, checksum = artifact(tmp_path, "served.bin")
    handler = type("Handler", (Files,), {"hits": [], "payload": Path(urlsplit(source).path).read_bytes()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield int(httpd.server_address[1]), handler, source, checksum
    httpd.shutdown()


def apiserver_url(kubectl: Kubectl) -> str:
    return kubectl.run("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}").stdout.strip()


def test_file_probes_are_refused_and_nothing_is_published(kubectl: Kubectl, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    token = f"mlops-secret-{uuid.uuid4().hex}"
    secret = tmp_path / "token"
    secret.write_text(token)  # one line, as a service account token is
    (root / "token.csv").symlink_to(secret)
    source, checksum = artifact(root, "model.bin")
    op = start_operator(tmp_path, "--namespace", kubectl.namespace or "", outbound=("--allow-file-root", str(root)))
    try:
        probes = {
            "ref-outside": {"source": source, "reference": {"uri": f"file://{secret}", "format": "csv"}},
            "ref-symlink": {"source": source, "reference": {"uri": f"file://{root}/token.csv"}},
            "ref-dotdot": {"source": source, "reference": {"uri": f"file://{root}/../token", "format": "csv"}},
            "src-outside": {"source": f"file://{secret}"},
            "src-symlink": {"source": f"file://{root}/token.csv"},
            "src-dotdot": {"source": f"file://{root}/../token"},
        }
        for name, spec in probes.items():
            spec.setdefault("checksum", checksum)
            body = version(name, name, "1", spec.pop("source"), spec.pop("checksum"), **spec)
            kubectl.apply(body)
        for name in probes:
            obj = refused(kubectl, name, "resolves outside the allowed file roots (--allow-file-root)")
            if name.startswith("ref-"):
                # The artifact inside the root was read; the dataset was not, and no profile was made.
                assert condition(obj, "ArtifactVerified")["status"] == "True"
                assert condition(obj, "ProfileReady")["reason"] == "SourceNotAllowed"
                assert condition(obj, "Ready")["message"].startswith("spec.reference: ")
            else:
                assert obj["status"]["artifact"]["refused"] is True and "sha256" not in obj["status"]["artifact"]
        assert "-profile" not in kubectl.run("get", "configmaps", "-o", "name").stdout
        assert token not in published(kubectl, op)
    finally:
        op.stop()
    assert token not in op.log()


def test_network_probes_are_refused_by_default(
    kubectl: Kubectl, tmp_path: Path, files: tuple[int, type[Files], str, str]
) -> None:
    port, handler, _, checksum = files
    loopback_name = socket.gethostname()
    assert socket.gethostbyname(loopback_name).startswith("127."), "this test wants a host name of loopback"
    probes = {
        "metadata": ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "always refused"),
        "apiserver": (f"{apiserver_url(kubectl)}/api/v1/namespaces/kube-system/secrets", "Kubernetes API server"),
        "loopback": (f"http://127.0.0.1:{port}/model.bin", "loopback address (refused unless --allow-loopback"),
        "localhost": (f"http://localhost:{port}/model.bin", "localhost resolves to 127.0.0.1, which is a loopback"),
        "hostname": (f"http://{loopback_name}:{port}/model.bin", f"{loopback_name} resolves to 127."),
    }
    op = start_operator(tmp_path, "--namespace", kubectl.namespace or "", outbound=())
    try:
        for name, (url, _) in probes.items():
            kubectl.apply(version(name, name, "1", url, checksum))
        for name, (_, rule) in probes.items():
            refused(kubectl, name, rule)
    finally:
        op.stop()
    assert handler.hits == [], "the operator reached the server although the policy refused it"


def test_allowances_open_only_what_they_name(
    kubectl: Kubectl, tmp_path: Path, files: tuple[int, type[Files], str, str]
) -> None:
    port, handler, _, checksum = files
    api = apiserver_url(kubectl)
    api_port = urlsplit(api).port
    op = start_operator(tmp_path, "--namespace", kubectl.namespace or "", outbound=("--allow-loopback",))
    try:
        kubectl.apply(version("local", "local", "1", f"http://localhost:{port}/model.bin", checksum))
        kubectl.apply(version("api", "api", "1", f"{api}/version", checksum))
        for name, target in (
            ("to-metadata", "http://169.254.169.254/latest/meta-data/"),
            ("to-apiserver", f"{api}/version"),
        ):
            kubectl.apply(version(name, name, "1", f"http://127.0.0.1:{port}/to?url={target}", checksum))
        obj = wait_version(kubectl, "local", "verified", ready="True")
        assert obj["status"]["artifact"]["verified"] is True
        refused(
            kubectl, "api", f"is the Kubernetes API server (refused unless --allow-host names 127.0.0.1:{api_port})"
        )
        refused(kubectl, "to-metadata", "always refused")
        refused(kubectl, "to-apiserver", "Kubernetes API server")
        # The redirecting server was asked; where it pointed was not reached.
        assert sum(hit.startswith("/to?url=") for hit in handler.hits) == 2
        status = json.dumps(kubectl.get("modelversion", "to-apiserver")["status"])
        assert "gitVersion" not in status  # nothing of the API server's answer
    finally:
        op.stop()
