"""What the operator may open on a user's behalf: one policy for every URI and address a resource names.

Artifact sources, reference datasets and, as their controllers come, metric providers and alert receivers are chosen
by whoever may create our resources in a namespace, while the operator reads them with its own rights, from its own
filesystem and its own network position. The policy decides before every request, and again for every redirect:

- ``file://`` only under the roots the operator was started with (``--allow-file-root``), after following symlinks
  and ``..``; the file actually opened is checked again (a symlink swapped in between is caught);
- network targets by address: link-local and cloud metadata addresses always refused; loopback, private ranges and
  the Kubernetes API server's own address refused unless allowed (``--allow-loopback``, ``--allow-private``,
  ``--allow-host``); a name is resolved once, every address it resolves to is checked, and the connection goes to
  a checked address (no second lookup a DNS answer could change);
- ``s3://`` and ``gs://`` reach the object store the operator is configured for; ``--allow-bucket`` limits which
  buckets.

A refusal names the rule, never anything read. What the operator finds itself (the Pods of its own Deployments)
is not a user's URI: ``UNRESTRICTED`` is for those, and for the model server, which reads its artifact inside the
tenant's own Pod.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import os
import socket
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolve = Callable[[str, int], Sequence[str]]

REASON = "SourceNotAllowed"

# Never a target, whatever is allowed: link-local (cloud metadata lives at 169.254.169.254 and fd00:ec2::254),
# Alibaba's metadata address, "this host", multicast, broadcast and reserved ranges.
ALWAYS_REFUSED: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(cidr), what)
    for cidr, what in (
        ("169.254.0.0/16", "a link-local or cloud metadata address"),
        ("fe80::/10", "a link-local address"),
        ("fd00:ec2::254/128", "a cloud metadata address"),
        ("100.100.100.200/32", "a cloud metadata address"),
        ("0.0.0.0/8", "an unspecified address"),
        ("::/128", "an unspecified address"),
        ("224.0.0.0/4", "a multicast address"),
        ("ff00::/8", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
    )
)
LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
PRIVATE: tuple[Network, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "198.18.0.0/15", "fc00::/7")
)
# IPv6 forms that carry an IPv4 address: checked as that address.
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Refused(Exception):
    """The policy refuses a target. The message names the target (redacted) and the rule, nothing read."""

    reason = REASON


def redact(uri: str) -> str:
    """``uri`` without credentials or query string (signed URLs carry tokens there), for status and logs."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def parse_address(text: str) -> Address | None:
    """``text`` as an IP address (IPv6 brackets and zone ids dropped; mapped IPv4 unwrapped), or None for a name."""
    text = text.strip("[]").split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


@dataclass(frozen=True)
class HostRule:
    """One ``--allow-host`` entry: a name, an address or a CIDR, with an optional port."""

    text: str
    name: str | None = None
    network: Network | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> HostRule:
        entry = text.strip()
        if not entry:
            raise ValueError("--allow-host: empty entry")
        if "://" in entry or any(c in entry for c in "@?#"):
            raise ValueError(f"--allow-host {text!r}: not a host name, address or CIDR (no scheme or path)")
        if "/" in entry:
            try:
                return cls(text, network=ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"--allow-host {text!r}: not a CIDR") from None
        host, port = entry, None
        if entry.startswith("["):
            host, _, rest = entry[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else None
        elif entry.count(":") == 1:
            host, port = entry.split(":")
        number = None
        if port is not None:
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"--allow-host {text!r}: the port must be 1..65535")
            number = int(port)
        address = parse_address(host)
        if address is not None:
            return cls(text, network=ipaddress.ip_network(address), port=number)
        if not host:
            raise ValueError(f"--allow-host {text!r}: not a host name, address or CIDR")
        return cls(text, name=host.lower().rstrip("."), port=number)

    def matches(self, host: str, address: Address, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address in self.network
        return host.lower().rstrip(".") == self.name


def _system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass
class Policy:
    """What may be opened. Build it with ``from_settings``; ``UNRESTRICTED`` allows everything."""

    file_roots: tuple[str, ...] = ()
    allow_loopback: bool = False
    allow_private: bool = False
    allow_hosts: tuple[HostRule, ...] = ()
    allow_buckets: tuple[str, ...] = ()
    unrestricted: bool = False
    # Alert receivers: when set, the only hosts a receiver's URL may name (--receiver-host).
    receiver_hosts: tuple[HostRule, ...] | None = None
    # The API server's addresses and ports, learnt when the operator logs in.
    apiserver: set[tuple[Address, int]] = field(default_factory=set)
    resolve: Resolve = _system_resolve

    @classmethod
    def from_settings(
        cls,
        file_roots: Iterable[str] = (),
        allow_loopback: bool = False,
        allow_private: bool = False,
        allow_hosts: Iterable[str] = (),
        allow_buckets: Iterable[str] = (),
        receiver_hosts: Iterable[str] | None = None,
    ) -> Policy:
        """The policy of the operator's flags; a root that does not exist or an entry that does not parse is a
        ValueError naming it."""
        roots = []
        for root in file_roots:
            real = os.path.realpath(root)
            if not os.path.isdir(real):
                raise ValueError(f"--allow-file-root {root!r}: not a directory")
            roots.append(real)
        return cls(
            file_roots=tuple(roots),
            allow_loopback=allow_loopback,
            allow_private=allow_private,
            allow_hosts=tuple(HostRule.parse(h) for h in allow_hosts),
            allow_buckets=tuple(allow_buckets),
            receiver_hosts=None if receiver_hosts is None else tuple(HostRule.parse(h) for h in receiver_hosts),
        )

    def describe(self) -> str:
        """One line for the operator's start-up log."""
        if self.unrestricted:
            return "unrestricted"
        parts = [
            f"file roots: {', '.join(self.file_roots) or 'none (file:// refused)'}",
            f"loopback {'allowed' if self.allow_loopback else 'refused'}",
            f"private ranges {'allowed' if self.allow_private else 'refused'}",
        ]
        if self.allow_hosts:
            parts.append(f"allowed hosts: {', '.join(r.text for r in self.allow_hosts)}")
        if self.allow_buckets:
            parts.append(f"buckets: {', '.join(self.allow_buckets)}")
        if self.receiver_hosts is not None:
            parts.append(f"receiver hosts: {', '.join(r.text for r in self.receiver_hosts) or 'none'}")
        return "; ".join(parts)

    def learn_apiserver(self, server: str) -> None:
        """Records the API server the operator talks to (its URL), so that no user's URI can reach it."""
        parts = urlsplit(server)
        if not parts.hostname:
            return
        port = parts.port or (443 if parts.scheme == "https" else 80)
        literal = parse_address(parts.hostname)
        try:
            addresses = [str(literal)] if literal else list(self.resolve(parts.hostname, port))
        except OSError:
            return
        for text in addresses:
            address = parse_address(text)
            if address is not None:
                self.apiserver.add((address, port))
        # In a cluster the API server is also the ``kubernetes`` Service's ClusterIP.
        host, service_port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
        service = parse_address(host or "")
        if service is not None and service_port and service_port.isdigit():
            self.apiserver.add((service, int(service_port)))

    # --- network targets ------------------------------------------------------------------------------------------

    def check_address(self, host: str, address: Address, port: int) -> None:
        """Raises Refused when ``address`` (what ``host`` resolved to) may not be reached on ``port``."""
        if self.unrestricted:
            return
        named = host if parse_address(host) == address else f"{host} resolves to {address}, which"
        for network, what in ALWAYS_REFUSED:
            if address in network:
                raise Refused(f"{named} is {what} (always refused)")
        allowed = any(rule.matches(host, address, port) for rule in self.allow_hosts)
        # Only an entry that names the API server's port opens it: allowing a range or a host is not meant to.
        if (address, port) in self.apiserver and not any(
            rule.port == port and rule.matches(host, address, port) for rule in self.allow_hosts
        ):
            raise Refused(f"{named} is the Kubernetes API server (refused unless --allow-host names {address}:{port})")
        if any(address in network for network in LOOPBACK) and not (self.allow_loopback or allowed):
            raise Refused(f"{named} is a loopback address (refused unless --allow-loopback or --allow-host)")
        if any(address in network for network in PRIVATE) and not (self.allow_private or allowed):
            raise Refused(f"{named} is a private address (refused unless --allow-private or --allow-host)")

    def resolve_checked(self, host: str, port: int) -> list[Address]:
        """The addresses of ``host``, each checked: the only ones a connection may use. Raises Refused when any
        is refused (a name that also resolves to an internal address is not trusted), OSError when it does not
        resolve."""
        literal = parse_address(host)
        texts = [str(literal)] if literal is not None else list(self.resolve(host, port))
        addresses = [a for a in (parse_address(t) for t in texts) if a is not None]
        if not addresses:
            raise OSError(f"{host} has no address")
        for address in addresses:
            self.check_address(host, address, port)
        return addresses

    def check_url(self, url: str) -> None:
        """Checks a URL's scheme and, for a literal address, its address; names are checked when resolved."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise Refused(f"{redact(url)}: only http and https are followed")
        if not parts.hostname:
            raise Refused(f"{redact(url)}: no host")
        address = parse_address(parts.hostname)
        if address is not None:
            self.check_address(parts.hostname, address, parts.port or (443 if parts.scheme == "https" else 80))

    def session(self, **kwargs: Any) -> Any:
        """An aiohttp ClientSession whose every connection, redirects included, goes to a checked address."""
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=_CheckingResolver(self), ttl_dns_cache=10),
            middlewares=(self._check_hop,),
            trust_env=False,  # a proxy from the environment would connect to names we did not check
            **kwargs,
        )

    async def _check_hop(self, request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        # Runs for the first request and for every redirect: a literal address never meets the resolver.
        self.check_url(str(request.url))
        return await handler(request)  # type: ignore[no-any-return]

    # --- object stores --------------------------------------------------------------------------------------------

    def check_bucket(self, uri: str) -> None:
        parts = urlsplit(uri)
        if self.unrestricted or not self.allow_buckets:
            return
        bucket = parts.netloc.rsplit("@", 1)[-1]
        if not any(fnmatch.fnmatchcase(bucket, pattern) for pattern in self.allow_buckets):
            raise Refused(f"{redact(uri)}: bucket {bucket} is not in --allow-bucket")

    # --- files ----------------------------------------------------------------------------------------------------

    def _inside(self, path: str) -> bool:
        return any(os.path.commonpath([path, root]) == root for root in self.file_roots)

    def open_file(self, uri: str) -> IO[bytes]:
        """Opens the regular file a ``file://`` URI names, read-only, when it lies inside an allowed root.

        Raises Refused (outside every root, or no roots), FileNotFoundError, IsADirectoryError or OSError.
        """
        path = unquote(urlsplit(uri).path)
        if not self.unrestricted:
            if not self.file_roots:
                raise Refused(f"{redact(uri)}: file:// is refused (the operator was started without --allow-file-root)")
            # Symlinks and ".." are followed before the check, whether or not the file exists: the answer is the
            # same for a missing file and an existing one outside the roots.
            path = os.path.realpath(path)
            if not self._inside(path):
                raise Refused(f"{redact(uri)}: resolves outside the allowed file roots (--allow-file-root)")
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
        try:
            if not self.unrestricted:
                # What was opened, whatever changed since the check (a path component swapped for a symlink).
                opened = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else path
                if not self._inside(opened):
                    raise Refused(f"{redact(uri)}: resolves outside the allowed file roots (--allow-file-root)")
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(path)
            if not stat.S_ISREG(mode):
                raise OSError(f"{redact(uri)} is not a regular file")
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise


class _CheckingResolver(AbstractResolver):
    """Resolves a name once, in a thread, and hands aiohttp only addresses the policy accepts."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        addresses = await asyncio.to_thread(self.policy.resolve_checked, host, port)
        return [
            {"hostname": host, "host": str(a), "port": port, "family": socket.AF_INET6 if a.version == 6
             else socket.AF_INET, "proto": 0, "flags": socket.AI_NUMERICHOST}
            for a in addresses
        ]  # fmt: skip

    async def close(self) -> None:
        pass


UNRESTRICTED = Policy(unrestricted=True)
