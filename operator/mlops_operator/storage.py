"""Artifacts and datasets at the URIs the registry accepts: file://, http(s)://, s3://, gs://.

Every read goes through an ``outbound.Policy``: the operator reads on its users' behalf and passes its own; the
model server, which reads its artifact inside the tenant's own Pod, passes ``outbound.UNRESTRICTED``. http(s) is read
with aiohttp through the policy's session (every redirect checked, connections only to checked addresses); s3:// and
gs:// through fsspec. pvc:// names a file on a PersistentVolumeClaim that model server Pods mount; the operator does
not mount claims, so it cannot read them (see ``UNREADABLE_SCHEMES``).

Failures are described without anything read: a status code, an errno, an error code, never a response body or a
server's reason phrase.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO
from urllib.parse import urlsplit

from mlops_operator.outbound import Policy, Refused, redact

__all__ = ["Refused", "redact"]

CHUNK_BYTES = 1 << 20
UNREADABLE_SCHEMES = frozenset({"pvc"})
# No total limit (artifacts can be large), but a stalled connection or read fails.
HTTP_CONNECT_TIMEOUT, HTTP_READ_TIMEOUT = 10.0, 60.0
MAX_REDIRECTS = 5


class SourceUnreachable(Exception):
    """The URI could not be read (missing, refused, timed out, no client for the scheme); worth retrying."""


@dataclass(frozen=True)
class Digest:
    sha256: str
    size: int


def scheme(uri: str) -> str:
    return urlsplit(uri).scheme.lower()


def describe(exc: BaseException, uri: str) -> str:
    """What went wrong reading ``uri``, in words that carry nothing read from it."""
    import aiohttp

    where = redact(uri)
    if isinstance(exc, FileNotFoundError):
        return f"not found: {where}"
    if isinstance(exc, IsADirectoryError):
        return f"is a directory, not a file: {where}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {where}"
    if isinstance(exc, aiohttp.ClientResponseError):
        if exc.status in (404, 410):
            return f"not found (HTTP {exc.status}): {where}"
        return f"HTTP {exc.status} from {where}"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return f"more than {MAX_REDIRECTS} redirects from {where}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or type(exc.os_error).__name__})"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return f"timed out reading {where}"
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and isinstance(response.get("Error"), dict):  # botocore's ClientError
        return f"{response['Error'].get('Code', 'error')} from {where}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {where}"
    return f"{type(exc).__name__} reading {where}"


def refusal(exc: BaseException) -> Refused | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, Refused):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


async def _http_chunks(uri: str, policy: Policy) -> AsyncGenerator[bytes, None]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=None, sock_connect=HTTP_CONNECT_TIMEOUT, sock_read=HTTP_READ_TIMEOUT)
    async with (
        policy.session(timeout=timeout, raise_for_status=True) as session,
        session.get(uri, max_redirects=MAX_REDIRECTS) as response,
    ):
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            yield chunk


def _iterate_http(uri: str, policy: Policy) -> Iterator[bytes]:
    """The body at ``uri`` in chunks, read on an event loop of the calling thread (callers are worker threads)."""
    loop = asyncio.new_event_loop()
    chunks = _http_chunks(uri, policy)
    try:
        while True:
            try:
                yield loop.run_until_complete(chunks.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(chunks.aclose())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _iterate_fsspec(uri: str) -> Iterator[bytes]:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        raise SourceUnreachable(f"no client for {scheme(uri)}:// sources") from exc
    with fs.open(path, "rb", block_size=CHUNK_BYTES) as f:
        while chunk := f.read(CHUNK_BYTES):
            yield chunk


def _iterate_file(uri: str, policy: Policy) -> Iterator[bytes]:
    with policy.open_file(uri) as f:
        while chunk := f.read(CHUNK_BYTES):
            yield chunk


def chunks(uri: str, policy: Policy) -> Iterator[bytes]:
    """The object at ``uri`` in chunks of at most 1 MiB. Raises Refused when the policy refuses it (before anything
    is read) and SourceUnreachable when it cannot be read. Blocking: call it in a thread."""
    kind = scheme(uri)
    try:
        if kind == "file":
            yield from _iterate_file(uri, policy)
        elif kind in ("http", "https"):
            policy.check_url(uri)
            yield from _iterate_http(uri, policy)
        elif kind in UNREADABLE_SCHEMES:
            raise SourceUnreachable(f"{kind}:// sources are read by the model server, not by the operator")
        else:
            policy.check_bucket(uri)
            yield from _iterate_fsspec(uri)
    except (Refused, SourceUnreachable):
        raise
    except Exception as exc:
        refused = refusal(exc)
        if refused is not None:
            raise refused from None
        raise SourceUnreachable(describe(exc, uri)) from None


def sha256(uri: str, policy: Policy) -> Digest:
    """The sha256 and size of the object at ``uri``, read in 1 MiB chunks: memory does not grow with its size.

    Blocking: call it in a thread.
    """
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks(uri, policy):
        digest.update(chunk)
        size += len(chunk)
    return Digest(digest.hexdigest(), size)


def download(uri: str, destination: IO[bytes], policy: Policy) -> None:
    """Streams the object at ``uri`` into ``destination`` in 1 MiB chunks. Blocking: call it in a thread."""
    for chunk in chunks(uri, policy):
        destination.write(chunk)
    destination.flush()


@contextmanager
def opened(uri: str, policy: Policy) -> Iterator[IO[bytes]]:
    """The object at ``uri`` as a seekable binary file: the file itself for file://, else a streamed temporary copy
    removed on exit."""
    if scheme(uri) == "file":
        try:
            f = policy.open_file(uri)
        except OSError as exc:
            raise SourceUnreachable(describe(exc, uri)) from None
        with f:
            yield f
        return
    suffix = os.path.splitext(urlsplit(uri).path)[1]
    with tempfile.NamedTemporaryFile(prefix="mlops-dataset-", suffix=suffix) as tmp:
        download(uri, tmp, policy)
        tmp.seek(0)
        yield tmp
