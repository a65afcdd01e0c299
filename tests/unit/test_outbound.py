"""The outbound policy: what the operator opens for the URIs users write, checked before every request and redirect.

Files are real files and links; HTTP targets are real servers on this machine's loopback addresses.
"""

from __future__ import annotations

import hashlib
import http.server
import ipaddress
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops_operator.outbound import HostRule, Policy, Refused, parse_address
from mlops_operator.profiling import ProfileError, profile_dataset
from mlops_operator.storage import SourceUnreachable, opened, sha256

SECRET = "mlops-secret-3f9a1c"


# --- files --------------------------------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """An allowed root holding a dataset, and a secret file beside (outside) it."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "ref.csv").write_text("a,b\n1,x\n2,y\n")
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    return root, secret


def test_file_uris_are_refused_without_a_root(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    with pytest.raises(Refused, match=r"started without --allow-file-root"):
        sha256(f"file://{root}/ref.csv", Policy())


def test_a_file_inside_a_root_is_read(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    policy = Policy.from_settings(file_roots=[str(root)])
    assert (
        sha256(f"file://{root}/ref.csv", policy).sha256 == hashlib.sha256((root / "ref.csv").read_bytes()).hexdigest()
    )
    with opened(f"file://{root}/ref.csv", policy) as f:
        assert f.read() == (root / "ref.csv").read_bytes()


@pytest.mark.parametrize("probe", ["outside", "symlink", "dotdot", "missing-outside", "symlinked-dir"])
def test_files_outside_the_roots_are_refused_alike(tree: tuple[Path, Path], probe: str) -> None:
    root, secret = tree
    (root / "link.csv").symlink_to(secret)
    (root / "dir").symlink_to(secret.parent)
    uri = {
        "outside": f"file://{secret}",
        "symlink": f"file://{root}/link.csv",
        "dotdot": f"file://{root}/../secret.txt",
        "missing-outside": f"file://{secret.parent}/nothing-here.txt",
        "symlinked-dir": f"file://{root}/dir/secret.txt",
    }[probe]
    policy = Policy.from_settings(file_roots=[str(root)])
    for read in (lambda: sha256(uri, policy), lambda: profile_dataset(uri, policy, fmt="csv")):
        with pytest.raises(Refused) as info:
            read()
        # The same words whether or not the file exists: nothing about it is learnt.
        assert "resolves outside the allowed file roots (--allow-file-root)" in str(info.value)
        assert SECRET not in str(info.value)


def test_a_symlink_inside_the_root_is_followed(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    (root / "alias.csv").symlink_to(root / "ref.csv")
    assert sha256(f"file://{root}/alias.csv", Policy.from_settings(file_roots=[str(root)])).size == 12


def test_missing_files_and_directories_inside_a_root(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    policy = Policy.from_settings(file_roots=[str(root)])
    with pytest.raises(SourceUnreachable, match="not found"):
        sha256(f"file://{root}/none.bin", policy)
    with pytest.raises(SourceUnreachable, match="is a directory"):
        sha256(f"file://{root}", policy)


def test_a_root_must_exist() -> None:
    with pytest.raises(ValueError, match="--allow-file-root '/no/such/dir': not a directory"):
        Policy.from_settings(file_roots=["/no/such/dir"])


# --- addresses ----------------------------------------------------------------------------------------------------

APISERVER = (ipaddress.ip_address("10.96.0.1"), 443)


def policy_of(**settings: Any) -> Policy:
    policy = Policy.from_settings(**settings)
    policy.apiserver.add(APISERVER)
    return policy


@pytest.mark.parametrize(
    ("address", "port", "settings", "refusal"),
    [
        ("169.254.169.254", 80, {}, "link-local or cloud metadata address (always refused)"),
        ("169.254.169.254", 80, {"allow_private": True, "allow_loopback": True}, "always refused"),
        ("169.254.169.254", 80, {"allow_hosts": ["169.254.0.0/16"]}, "always refused"),
        ("fd00:ec2::254", 80, {"allow_private": True}, "cloud metadata address (always refused)"),
        ("100.100.100.200", 80, {"allow_private": True}, "cloud metadata address (always refused)"),
        ("::ffff:169.254.169.254", 80, {}, "always refused"),
        ("64:ff9b::a9fe:a9fe", 80, {}, "always refused"),
        ("0.0.0.0", 80, {"allow_loopback": True}, "unspecified address"),
        ("127.0.0.1", 8080, {}, "loopback address (refused unless --allow-loopback or --allow-host)"),
        ("::1", 8080, {}, "loopback address"),
        ("::ffff:127.0.0.1", 8080, {}, "loopback address"),
        ("127.0.0.1", 8080, {"allow_loopback": True}, None),
        ("127.0.0.1", 8080, {"allow_hosts": ["127.0.0.1:8080"]}, None),
        ("127.0.0.1", 8081, {"allow_hosts": ["127.0.0.1:8080"]}, "loopback address"),
        ("10.1.2.3", 9000, {}, "private address (refused unless --allow-private or --allow-host)"),
        ("172.20.0.5", 9000, {}, "private address"),
        ("192.168.1.1", 9000, {}, "private address"),
        ("100.64.0.1", 9000, {}, "private address"),
        ("fd12::1", 9000, {}, "private address"),
        ("10.1.2.3", 9000, {"allow_private": True}, None),
        ("10.1.2.3", 9000, {"allow_hosts": ["10.1.0.0/16"]}, None),
        ("10.96.0.1", 443, {"allow_private": True}, "Kubernetes API server (refused unless --allow-host names"),
        ("10.96.0.1", 443, {"allow_hosts": ["10.96.0.1:443"]}, None),
        ("10.96.0.1", 8443, {"allow_private": True}, None),
        ("93.184.215.14", 443, {}, None),
        ("2606:4700::1111", 443, {}, None),
    ],
)
def test_addresses(address: str, port: int, settings: dict[str, Any], refusal: str | None) -> None:
    policy = policy_of(**settings)
    checked = parse_address(address)
    assert checked is not None
    if refusal is None:
        policy.check_address(address, checked, port)
        return
    with pytest.raises(Refused) as info:
        policy.check_address(address, checked, port)
    assert refusal in str(info.value)


def test_a_name_is_checked_by_every_address_it_resolves_to() -> None:
    names = {"store.internal": ["10.4.0.7"], "mixed.example": ["93.184.215.14", "127.0.0.1"]}
    policy = Policy(resolve=lambda host, port: names[host])
    with pytest.raises(Refused, match=r"store.internal resolves to 10.4.0.7, which is a private address"):
        policy.resolve_checked("store.internal", 443)
    # One internal answer among public ones is enough to refuse: a name is not trusted by its best address.
    with pytest.raises(Refused, match="loopback"):
        policy.resolve_checked("mixed.example", 443)
    allowed = Policy(resolve=lambda host, port: names[host], allow_hosts=(HostRule.parse("store.internal"),))
    assert [str(a) for a in allowed.resolve_checked("store.internal", 443)] == ["10.4.0.7"]


@pytest.mark.parametrize(
    ("entry", "error"),
    [("", "empty entry"), ("10.0.0.0/33", "not a CIDR"), ("host:99999", "the port must be"),
     ("http://x/", "not a host name")],
)  # fmt: skip
def test_bad_allow_host_entries_are_named(entry: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        HostRule.parse(entry)


def test_buckets_are_limited_by_pattern() -> None:
    policy = Policy.from_settings(allow_buckets=["team-a-*"])
    policy.check_bucket("s3://team-a-models/m.onnx")
    with pytest.raises(Refused, match="bucket team-b-models is not in --allow-bucket"):
        sha256("s3://team-b-models/m.onnx", policy)


# --- HTTP ---------------------------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        status, headers, body = self.routes.get(self.path.split("?")[0], (404, {}, b"no"))
        self.send_response(status, SECRET if status >= 500 else None)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[list[tuple[str, int, type[_Handler]]]]:
    """Two HTTP servers, on 127.0.0.1 and 127.0.0.2, each with its own routes."""
    made = []
    running = []
    for host in ("127.0.0.1", "127.0.0.2"):
        handler = type("Handler", (_Handler,), {"routes": {}, "hits": []})
        httpd = http.server.ThreadingHTTPServer((host, 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        made.append((host, int(httpd.server_address[1]), handler))
        running.append(httpd)
    yield made
    for httpd in running:
        httpd.shutdown()


def test_loopback_is_refused_by_default_and_allowed_by_its_flag(servers: list[Any]) -> None:
    host, port, handler = servers[0]
    handler.routes["/m.bin"] = (200, {}, b"model")
    for url in (f"http://{host}:{port}/m.bin", f"http://localhost:{port}/m.bin"):
        with pytest.raises(Refused, match="loopback address"):
            sha256(url, Policy())
    assert handler.hits == []  # refused before any connection
    digest = hashlib.sha256(b"model").hexdigest()
    assert sha256(f"http://localhost:{port}/m.bin", Policy(allow_loopback=True)).sha256 == digest
    assert sha256(f"http://{host}:{port}/m.bin", Policy(allow_hosts=(HostRule.parse(f"{host}:{port}"),))).size == 5


def test_the_connection_goes_to_the_address_that_was_checked(servers: list[Any]) -> None:
    """A name is resolved once, by the policy: the connection uses that answer (no second lookup)."""
    host, port, handler = servers[0]
    handler.routes["/m.bin"] = (200, {}, b"model")
    lookups: list[str] = []

    def resolve(name: str, port: int) -> list[str]:
        lookups.append(name)
        return [host]

    # "artifacts.invalid" exists in no DNS: only the policy's answer can make it reachable.
    with pytest.raises(Refused, match=r"artifacts.invalid resolves to 127.0.0.1, which is a loopback address"):
        sha256(f"http://artifacts.invalid:{port}/m.bin", Policy(resolve=resolve))
    allowed = Policy(resolve=resolve, allow_hosts=(HostRule.parse("artifacts.invalid"),))
    assert sha256(f"http://artifacts.invalid:{port}/m.bin", allowed).size == 5
    assert lookups == ["artifacts.invalid", "artifacts.invalid"]


@pytest.mark.parametrize("target", ["other-port", "metadata", "name-to-loopback", "apiserver"])
def test_a_redirect_to_a_refused_target_is_refused(servers: list[Any], target: str) -> None:
    """The first server is allowed (by its address and port); where it redirects to is not."""
    (host_a, port_a, allowed), (host_b, port_b, other) = servers
    other.routes["/m.bin"] = (200, {}, b"model")
    policy = Policy(allow_hosts=(HostRule.parse(f"{host_a}:{port_a}"),))
    location, refusal = {
        "other-port": (f"http://{host_b}:{port_b}/m.bin", "loopback address"),
        "metadata": ("http://169.254.169.254/latest/meta-data/", "always refused"),
        "name-to-loopback": (f"http://localhost:{port_b}/m.bin", "localhost resolves to"),
        "apiserver": (f"http://{host_b}:{port_b}/m.bin", "Kubernetes API server"),
    }[target]
    if target == "apiserver":
        # Loopback is allowed, but the second server is the API server here.
        policy = Policy(allow_loopback=True)
        policy.learn_apiserver(f"https://{host_b}:{port_b}")
    allowed.routes["/m.bin"] = (302, {"Location": location}, b"")
    started = time.monotonic()
    with pytest.raises(Refused) as info:
        sha256(f"http://{host_a}:{port_a}/m.bin", policy)
    assert time.monotonic() - started < 5  # refused, not timed out against an unreachable address
    assert refusal in str(info.value)
    assert allowed.hits == ["/m.bin"] and other.hits == []
    assert SECRET not in str(info.value)


def test_the_api_server_is_opened_only_by_an_entry_naming_its_port(servers: list[Any]) -> None:
    host, port, handler = servers[0]
    handler.routes["/version"] = (200, {}, b"{}")
    for entry in (host, "127.0.0.0/8"):
        policy = Policy(allow_loopback=True, allow_hosts=(HostRule.parse(entry),))
        policy.learn_apiserver(f"https://{host}:{port}")
        with pytest.raises(Refused, match=f"refused unless --allow-host names {host}:{port}"):
            sha256(f"http://{host}:{port}/version", policy)
    policy = Policy(allow_hosts=(HostRule.parse(f"{host}:{port}"),))
    policy.learn_apiserver(f"https://{host}:{port}")
    assert sha256(f"http://{host}:{port}/version", policy).size == 2


def test_a_redirect_between_allowed_hosts_is_followed(servers: list[Any]) -> None:
    (host_a, port_a, first), (host_b, port_b, second) = servers
    first.routes["/m.bin"] = (301, {"Location": f"http://{host_b}:{port_b}/real.bin"}, b"")
    second.routes["/real.bin"] = (200, {}, b"the model")
    assert sha256(f"http://{host_a}:{port_a}/m.bin", Policy(allow_loopback=True)).size == 9


def test_failures_carry_nothing_the_server_sent(servers: list[Any]) -> None:
    host, port, handler = servers[0]
    handler.routes["/boom"] = (500, {}, SECRET.encode())
    policy = Policy(allow_loopback=True)
    with pytest.raises(SourceUnreachable) as info:
        sha256(f"http://{host}:{port}/boom?token=hunter2", policy)
    assert str(info.value) == f"HTTP 500 from http://{host}:{port}/boom"
    with pytest.raises(SourceUnreachable, match=r"HTTP 404"):
        sha256(f"http://{host}:{port}/none", policy)


# --- what a dataset's errors say ----------------------------------------------------------------------------------


def test_profile_errors_do_not_quote_the_dataset(tmp_path: Path) -> None:
    policy = Policy.from_settings(file_roots=[str(tmp_path)])
    (tmp_path / "one-line.csv").write_text(SECRET + "\n")
    (tmp_path / "ragged.csv").write_text(f"a,b\n1,2\n3,{SECRET},4\n")
    (tmp_path / "named.csv").write_text(f"{SECRET},b\n1,2\n")
    for name, error in (("one-line.csv", "has no rows"), ("ragged.csv", r"cannot read the dataset as csv")):
        with pytest.raises(ProfileError, match=error) as info:
            profile_dataset(f"file://{tmp_path}/{name}", policy)
        assert SECRET not in str(info.value)
    with pytest.raises(ProfileError, match=r"columns not in the dataset: amount \(it has 2 columns\)") as info:
        profile_dataset(f"file://{tmp_path}/named.csv", policy, features=["amount"])
    assert SECRET not in str(info.value)


def test_compressed_csv_is_read_from_an_open_file(tmp_path: Path) -> None:
    import gzip

    with gzip.open(tmp_path / "ref.csv.gz", "wt") as f:
        f.write("a,b\n1,x\n2,y\n")
    profile = profile_dataset(f"file://{tmp_path}/ref.csv.gz", Policy.from_settings(file_roots=[str(tmp_path)]))
    assert profile["rows"] == 2 and set(profile["features"]) == {"a", "b"}


def test_the_open_file_is_checked_not_only_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A path inside the root that leads out of it by the time it is opened (a component swapped for a link after
    the check) is still refused: what was opened is checked again."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "ref.csv").write_text("a\n1\n")
    (tmp_path / "secret.txt").write_text(SECRET)
    real_open = os.open

    def swapped(path: Any, flags: int, *args: Any) -> int:
        target = tmp_path / "secret.txt" if str(path) == str(root / "ref.csv") else path
        return real_open(target, flags, *args)

    monkeypatch.setattr(os, "open", swapped)
    with pytest.raises(Refused, match="resolves outside"):
        sha256(f"file://{root}/ref.csv", Policy.from_settings(file_roots=[str(root)]))
