"""Is a webhook URL safe to POST to? Tenants choose the URLs, so a URL must not reach the
daemon's own network (SSRF): loopback, private and link-local ranges (the cloud metadata service
at 169.254.169.254), and other special-purpose addresses are refused unless ``allow_private``
(a test or an on-premises install whose receivers are internal).

Every address the name resolves to is checked, and the caller connects to those addresses only
(``Destination.addresses``): a second lookup could return something else (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Names of cloud metadata services and of the local host, refused without a lookup: a resolver
# configured for them answers whatever it likes, and a refusal by name says what was meant.
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "instance-data",
        "instance-data.ec2.internal",
        "localhost",
    }
)
# 100.64.0.0/10, carrier-grade NAT (RFC 6598): neither private nor global for ``ipaddress``.
SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
# 64:ff9b::/96, NAT64 (RFC 6052): a gateway forwards it to the IPv4 address in its last 32 bits.
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
DEFAULT_PORTS = {"http": 80, "https": 443}


class UnsafeDestination(ValueError):
    """A URL refused by policy (not a transient failure): ``reason`` says which part and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Destination:
    """A checked URL: its parts and the addresses its host resolved to, all of them allowed."""

    url: URL
    scheme: str  # "http" or "https"
    host: str  # as in the URL, ASCII (IDNA), without brackets or a trailing dot
    port: int
    addresses: tuple[IPAddress, ...]

    @property
    def host_header(self) -> str:
        """The Host header a request to ``url`` carries."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"

    def url_at(self, address: IPAddress) -> URL:
        """``url`` with its host replaced by ``address`` (path and query kept, as encoded)."""
        host = f"[{address}]" if address.version == 6 else str(address)
        return URL.build(
            scheme=self.scheme,
            host=host,
            port=self.port,
            path=self.url.raw_path,
            query_string=self.url.raw_query_string,
            encoded=True,
        )


async def resolve(url: str, *, allow_private: bool) -> Destination:
    """Parses ``url``, resolves its host (IPv4 and IPv6) and checks every address.

    Raises UnsafeDestination when the URL is malformed, is not https (http too with
    ``allow_private``), carries credentials, or when its host is a metadata name or any of its
    addresses is not public (unless ``allow_private``). A failed lookup raises OSError.
    """
    scheme, host, port, parsed = _parse(url, allow_private=allow_private)
    if not allow_private and (host in METADATA_NAMES or host.endswith(".localhost")):
        raise UnsafeDestination(f"{host} names a local or metadata service")
    addresses = await _lookup(host, port)
    if not allow_private:
        for address in addresses:
            why = _why_not_public(address)
            if why is not None:
                shown = host if host == str(address) else f"{host} resolves to {address}"
                raise UnsafeDestination(f"{shown}, {why}")
    return Destination(parsed, scheme, host, port, addresses)


def _parse(url: str, *, allow_private: bool) -> tuple[str, str, int, URL]:
    try:
        parsed = URL(url)
        port = parsed.port
    except (ValueError, TypeError) as exc:
        raise UnsafeDestination(f"not a valid URL: {exc}") from None
    allowed = ("https", "http") if allow_private else ("https",)
    if parsed.scheme not in allowed:
        needed = "http or https" if allow_private else "https"
        if not parsed.scheme:
            raise UnsafeDestination(f"the URL has no scheme (needs {needed})")
        raise UnsafeDestination(f"scheme {parsed.scheme!r} is not {needed}")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        # Credentials in a URL end up in logs; receivers authenticate us by the signature.
        raise UnsafeDestination("the URL carries a user name or password")
    host = (parsed.raw_host or "").rstrip(".").lower()
    if not host:
        raise UnsafeDestination("the URL names no host")
    if not port:
        raise UnsafeDestination("the URL's port is 0")
    return parsed.scheme, host, port, parsed


async def _lookup(host: str, port: int) -> tuple[IPAddress, ...]:
    try:
        return (ipaddress.ip_address(host),)
    except ValueError:
        pass  # a name
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    # In the resolver's order of preference, each address once.
    addresses = dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos)
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    return tuple(addresses)


def _why_not_public(address: IPAddress) -> str | None:
    """Why ``address`` must not be reached from here, or None if it is a public unicast one."""
    if isinstance(address, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address the packets end up at: judge that one. (Before
        # Python 3.13 ``ipaddress`` does not look inside ::ffff:127.0.0.1: is_loopback is False.)
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in NAT64_PREFIX:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            why = _why_not_public(embedded)
            return None if why is None else f"which embeds {embedded}, {why}"
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services listen)"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in SHARED_ADDRESS_SPACE:
        return "in the shared address space 100.64.0.0/10"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        # Whatever else IANA set aside: documentation, benchmarking, protocol assignments.
        return "not a globally routable address"
    return None
