"""Artifacts are hashed as a stream, from files and from HTTP servers with or without range support."""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops_operator.outbound import Policy
from mlops_operator.storage import SourceUnreachable, opened, redact, sha256

# Files under the test's directory and servers on loopback, as the local cluster allows them.


def local(tmp_path: Path) -> Policy:
    return Policy.from_settings(file_roots=[str(tmp_path)], allow_loopback=True)


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Files(*a, directory=str(tmp_path)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_file_and_http_give_the_same_digest(tmp_path: Path, server: str) -> None:
    data = bytes(range(256)) * 20_000  # 5 MB: several chunks
    (tmp_path / "model.bin").write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256(f"file://{tmp_path}/model.bin", local(tmp_path)).sha256 == expected
    over_http = sha256(f"{server}/model.bin?sig=abc", local(tmp_path))
    assert over_http.sha256 == expected and over_http.size == len(data)


def test_missing_sources_are_unreachable_without_secrets(tmp_path: Path, server: str) -> None:
    with pytest.raises(SourceUnreachable, match="not found"):
        sha256(f"file://{tmp_path}/none.bin", local(tmp_path))
    with pytest.raises(SourceUnreachable) as info:
        sha256(f"{server}/none.bin?token=hunter2", local(tmp_path))
    assert "hunter2" not in str(info.value)
    with pytest.raises(SourceUnreachable):
        sha256("http://127.0.0.1:9/closed-port.bin", local(tmp_path))
    with pytest.raises(SourceUnreachable, match="directory"):
        sha256(f"file://{tmp_path}", local(tmp_path))


def test_redact() -> None:
    assert redact("https://user:pw@host:8443/a/b.onnx?X-Amz-Signature=s#f") == "https://host:8443/a/b.onnx"
    assert redact("s3://bucket/key.onnx") == "s3://bucket/key.onnx"


def test_remote_dataset_is_copied_locally(tmp_path: Path, server: str) -> None:
    (tmp_path / "ref.csv").write_text("a,b\n1,2\n")
    with opened(f"{server}/ref.csv", local(tmp_path)) as f:
        assert f.read() == b"a,b\n1,2\n"
    with opened(f"file://{tmp_path}/ref.csv", local(tmp_path)) as f:
        assert f.read() == b"a,b\n1,2\n"


def test_s3_through_an_s3_compatible_server() -> None:
    """s3:// goes through s3fs; here against a local S3-compatible server (moto's)."""
    import socket

    import fsspec
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved = fsspec.config.conf.get("s3")
    # What FSSPEC_S3_ENDPOINT_URL, FSSPEC_S3_KEY and FSSPEC_S3_SECRET set in the operator's environment.
    fsspec.config.conf["s3"] = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "test", "secret": "test"}
    try:
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        fs.mkdir("models")
        data = bytes(range(256)) * 12_000
        fs.pipe("models/fraud/1.0.0/model.onnx", data)
        digest = sha256("s3://models/fraud/1.0.0/model.onnx", Policy())
        assert digest.sha256 == hashlib.sha256(data).hexdigest() and digest.size == len(data)
        with pytest.raises(SourceUnreachable, match=re.escape("not found: s3://models/none.onnx")):
            sha256("s3://models/none.onnx", Policy())
    finally:
        if saved is None:
            fsspec.config.conf.pop("s3", None)
        else:
            fsspec.config.conf["s3"] = saved
        server.stop()
