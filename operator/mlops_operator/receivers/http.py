"""Posting a receiver's JSON: one request, redirects not followed, the host checked against the operator's allowlist
of receiver hosts, and every failure told in words of our own.

A receiver's URL is a secret (Slack's and most webhooks' carry their token in the path), so an error never quotes
it, nor its host, nor any credential: exception texts (which carry host:port and sometimes the URL) are not used,
only the exception's kind; a response body is quoted at most ``MAX_QUOTED`` characters, after ``scrub``.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp

from mlops_operator.outbound import HostRule, Refused, parse_address
from mlops_operator.receivers.base import Credentials, Result, missing
from mlops_operator.storage import refusal

MASK = "<redacted>"
ALLOWLIST_REFUSAL = "host not in the receiver allowlist (--receiver-host)"
NOT_HTTP = "the URL is not a valid http or https URL"
# What is read of an answer: enough for an error's quote and for Slack's "ok".
MAX_BODY_BYTES = 4096
MAX_QUOTED = 200
# Shorter values are not masked: they would mask common words and reveal nothing.
MIN_MASKED = 3
# Path segments and query values of a secret URL masked on their own (a body may echo just the token).
MIN_MASKED_PART = 8


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: its status and the start of its body."""

    status: int
    body: str


Accept = Callable[[Answer], str | None]
"""Judges a 2xx answer: None when it is a success, else why not (the body is quoted after it)."""


@dataclass(frozen=True)
class Poster:
    """Posts the JSON of one delivery: the caller's session, the allowlist, the credentials (masked in errors) and
    the delivery's timeout."""

    session: aiohttp.ClientSession
    hosts: tuple[HostRule, ...] | None
    credentials: Credentials
    timeout: float

    async def post(
        self, url: str | None, payload: Any, headers: Mapping[str, str] | None = None, accept: Accept | None = None
    ) -> Result:
        """POSTs ``payload`` as JSON to ``url``: a 2xx answer (that ``accept`` accepts) is a success; anything else,
        raised or answered, is a failed Result, and so is no URL (the credentials had none)."""
        if not url:
            return missing("url")
        refused = self._check(url)
        if refused is not None:
            return refused
        try:
            async with self.session.post(
                url,
                json=payload,
                headers=dict(headers or {}),
                allow_redirects=False,
                raise_for_status=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                answer = Answer(response.status, await _head(response))
        except Exception as exc:  # every way a request fails is a Result, described without its text
            return failure(exc, self.timeout)
        return self._judge(answer, accept)

    def _check(self, url: str) -> Result | None:
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:  # a malformed address or port
            host = None
        if host is None or parts.scheme not in ("http", "https"):
            return Result(ok=False, error=NOT_HTTP, retryable=False)
        if self.hosts is not None and not allowed(self.hosts, host, port):
            return Result(ok=False, error=ALLOWLIST_REFUSAL, retryable=False)
        return None

    def _judge(self, answer: Answer, accept: Accept | None) -> Result:
        status = answer.status
        if 300 <= status < 400:
            # The target of a redirect was never checked against the allowlist, and a receiver does not move.
            return Result(ok=False, error=f"redirect not followed (HTTP {status})", status=status, retryable=False)
        if 200 <= status < 300:
            problem = accept(answer) if accept is not None else None
            if problem is None:
                return Result(ok=True, status=status)
            return Result(ok=False, error=problem + self.quote(answer.body), status=status, retryable=False)
        return Result(
            ok=False,
            error=f"HTTP {status}{self.quote(answer.body)}",
            status=status,
            retryable=status == 429 or status >= 500,
        )

    def quote(self, body: str) -> str:
        """``: <body>`` scrubbed, on one line, cut to ``MAX_QUOTED`` characters; empty for an empty body."""
        # Scrubbed before it is cut: a secret cut in two would escape the mask.
        text = " ".join(scrub(body, self.credentials).split())
        if len(text) > MAX_QUOTED:
            text = text[: MAX_QUOTED - 1] + "…"
        return f": {text}" if text else ""


def failure(exc: BaseException, timeout: float) -> Result:
    """The Result of a request that raised ``exc``: its kind in our words, never its text."""
    refused = refusal(exc)
    if refused is not None:
        return Result(ok=False, error=f"refused by the operator's outbound policy: {_rule(refused)}", retryable=False)
    if isinstance(exc, TimeoutError):
        return Result(ok=False, error=f"timed out after {timeout:g}s")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return Result(ok=False, error="TLS error: the server's certificate is not trusted")
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return Result(ok=False, error="TLS error")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return Result(ok=False, error="the host name does not resolve")
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return Result(ok=False, error="connection refused")
        return Result(ok=False, error=f"cannot connect ({_os_reason(exc.os_error)})")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return Result(ok=False, error="the server closed the connection without an answer")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return Result(ok=False, error="the answer broke off")
    if isinstance(exc, aiohttp.InvalidURL):
        return Result(ok=False, error="the URL is not valid", retryable=False)
    if isinstance(exc, OSError):
        return Result(ok=False, error=f"connection error ({_os_reason(exc)})")
    if isinstance(exc, aiohttp.ClientError):
        return Result(ok=False, error=f"request failed ({type(exc).__name__})")
    # Raised before anything was sent (a header value holding a line break, say): sending again changes nothing.
    return Result(ok=False, error=f"request not sent ({type(exc).__name__})", retryable=False)


def _rule(refused: Refused) -> str:
    # Refusals read "<host> is <what>" or "<host> resolves to <address>, which is <what>": keep only the rule.
    _, found, rule = str(refused).partition(" is ")
    return f"the host is {rule}" if found else "the target is refused"


def _os_reason(error: OSError) -> str:
    # strerror is not used: asyncio puts the address in it ("Connect call failed ('10.0.0.1', 443)").
    return os.strerror(error.errno) if error.errno else type(error).__name__


async def _head(response: aiohttp.ClientResponse) -> str:
    data = bytearray()
    while len(data) < MAX_BODY_BYTES:
        chunk = await response.content.read(MAX_BODY_BYTES - len(data))
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace")


def allowed(hosts: Sequence[HostRule], host: str, port: int) -> bool:
    """Whether a URL's ``host`` and ``port`` match one of ``hosts``. A name matches name rules; an address or CIDR
    rule matches only a URL written with an address (resolving a name here would be a second lookup, which the
    connection does not use)."""
    address = parse_address(host)
    for rule in hosts:
        if address is not None:
            if rule.matches(host, address, port):
                return True
        elif rule.name is not None and rule.port in (None, port) and rule.name == host.lower().rstrip("."):
            return True
    return False


def scrub(text: str, credentials: Credentials) -> str:
    """``text`` with every credential value masked, and for a URL among them also its host, user, password, path,
    query and their longer parts (a body may echo any of them), in any letter case."""
    fragments = {f for value in credentials.values() for f in _fragments(value.strip())}
    if not fragments:
        return text
    pattern = "|".join(re.escape(f) for f in sorted(fragments, key=len, reverse=True))
    return re.sub(pattern, MASK, text, flags=re.IGNORECASE)


def _fragments(value: str) -> set[str]:
    out = {value, unquote(value)}
    try:
        parts = urlsplit(value)
    except ValueError:  # not a URL that could be requested: nothing was sent, its whole text is masked
        return {f for f in out if len(f) >= MIN_MASKED}
    if parts.scheme and parts.netloc:
        out |= {parts.netloc, parts.hostname or "", parts.username or "", parts.password or ""}
        out |= {parts.path, unquote(parts.path), parts.query, unquote(parts.query)}
        pieces = re.split(r"[/?&=;]", f"{parts.path}?{parts.query}")
        out |= {p for piece in pieces for p in (piece, unquote(piece)) if len(p) >= MIN_MASKED_PART}
    return {f for f in out if len(f) >= MIN_MASKED}
