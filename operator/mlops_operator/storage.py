"""Artifacts and datasets at the URIs the registry accepts: file://, http(s)://, s3://, gs:// (through fsspec).

pvc:// names a file on a PersistentVolumeClaim that model server Pods mount; the operator does not mount claims,
so it cannot read them (see ``UNREADABLE_SCHEMES``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

CHUNK_BYTES = 1 << 20
UNREADABLE_SCHEMES = frozenset({"pvc"})
# No total limit (artifacts can be large), but a stalled connection or read fails.
HTTP_CONNECT_TIMEOUT, HTTP_READ_TIMEOUT = 10.0, 60.0


class SourceUnreachable(Exception):
    """The URI could not be read (missing, refused, timed out, no client for the scheme); worth retrying."""


@dataclass(frozen=True)
class Digest:
    sha256: str
    size: int


def redact(uri: str) -> str:
    """``uri`` without credentials or query string (signed URLs carry tokens there), for status and logs."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def scheme(uri: str) -> str:
    return urlsplit(uri).scheme.lower()


def _filesystem(uri: str) -> tuple[Any, str]:
    import fsspec

    options: dict[str, Any] = {}
    if scheme(uri) in ("http", "https"):
        import aiohttp

        options["client_kwargs"] = {
            "timeout": aiohttp.ClientTimeout(total=None, sock_connect=HTTP_CONNECT_TIMEOUT, sock_read=HTTP_READ_TIMEOUT)
        }
    try:
        return fsspec.core.url_to_fs(uri, **options)  # type: ignore[no-any-return]
    except (ImportError, ValueError) as exc:
        raise SourceUnreachable(f"no client for {scheme(uri)}:// sources: {exc}") from exc


def _open(fs: Any, path: str, uri: str) -> Any:
    # Sequential reads: over HTTP a streaming response (block_size=0), which also works with servers that do not
    # support range requests; elsewhere 1 MiB blocks.
    return fs.open(path, "rb", block_size=0 if scheme(uri) in ("http", "https") else CHUNK_BYTES)


def _describe(exc: BaseException, uri: str) -> str:
    text = str(exc) or type(exc).__name__
    # Clients put the full URL, query string included, into their messages.
    return text.replace(uri, redact(uri))


def sha256(uri: str) -> Digest:
    """The sha256 and size of the object at ``uri``, read in 1 MiB chunks: memory does not grow with its size.

    Blocking: call it in a thread.
    """
    fs, path = _filesystem(uri)
    digest = hashlib.sha256()
    size = 0
    try:
        with _open(fs, path, uri) as f:
            while chunk := f.read(CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
    except FileNotFoundError as exc:
        raise SourceUnreachable(f"not found: {redact(uri)}") from exc
    except IsADirectoryError as exc:
        raise SourceUnreachable(f"is a directory, not a file: {redact(uri)}") from exc
    except Exception as exc:
        raise SourceUnreachable(_describe(exc, uri)) from exc
    return Digest(digest.hexdigest(), size)


def download(uri: str, destination: IO[bytes]) -> None:
    """Streams the object at ``uri`` into ``destination`` in 1 MiB chunks. Blocking: call it in a thread."""
    fs, remote = _filesystem(uri)
    try:
        with _open(fs, remote, uri) as f:
            while chunk := f.read(CHUNK_BYTES):
                destination.write(chunk)
    except FileNotFoundError as exc:
        raise SourceUnreachable(f"not found: {redact(uri)}") from exc
    except Exception as exc:
        raise SourceUnreachable(_describe(exc, uri)) from exc
    destination.flush()


@contextmanager
def local_copy_or_path(uri: str) -> Iterator[str]:
    """A local path holding the object at ``uri``: the file itself for file://, else a streamed temporary copy
    removed on exit."""
    if scheme(uri) == "file":
        path = urlsplit(uri).path
        if not os.path.exists(path):
            raise SourceUnreachable(f"not found: {redact(uri)}")
        yield path
        return
    suffix = os.path.splitext(urlsplit(uri).path)[1]
    with tempfile.NamedTemporaryFile(prefix="mlops-dataset-", suffix=suffix) as tmp:
        download(uri, tmp)
        yield tmp.name
