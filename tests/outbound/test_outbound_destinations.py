"""Which webhook URLs may be POSTed to (batchctl/outbound/destinations.py): https only, no
credentials, and no address of the daemon's own networks, unless allow_private. No outside DNS:
IP literals, ``localhost`` and a stubbed resolver."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest

from batchctl.outbound.destinations import Destination, UnsafeDestination, resolve

PRIVATE = [
    ("https://127.0.0.1/hook", "loopback"),
    ("https://10.0.0.1/hook", "private"),
    ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ("https://[::1]:8443/hook", "loopback"),
    ("https://192.168.1.1/hook", "private"),
    ("https://100.64.0.1/hook", "shared address space"),
    ("https://[::ffff:127.0.0.1]/hook", "embeds 127.0.0.1, a loopback"),
    ("https://[::ffff:169.254.169.254]/hook", "embeds 169.254.169.254, a link-local"),
    ("https://[fc00::1]/hook", "private"),
    ("https://[fe80::1]/hook", "link-local"),
    ("https://0.0.0.0/hook", "unspecified"),
    ("https://224.0.0.1/hook", "multicast"),
    ("https://2130706433/hook", "127.0.0.1, a loopback"),  # 127.0.0.1 as one number
    ("https://localhost/hook", "localhost"),
    ("https://metadata.google.internal/computeMetadata/v1/", "metadata"),
]


def run_resolve(url: str, *, allow_private: bool) -> Destination:
    return asyncio.run(resolve(url, allow_private=allow_private))


@pytest.mark.parametrize(("url", "why"), PRIVATE)
def test_private_destinations_are_refused_with_the_reason(url: str, why: str) -> None:
    with pytest.raises(UnsafeDestination) as refused:
        run_resolve(url, allow_private=False)
    assert why in refused.value.reason


@pytest.mark.parametrize(
    "url",
    [url for url, _ in PRIVATE if "metadata.google" not in url],  # not resolvable here
)
def test_private_destinations_are_allowed_when_asked(url: str) -> None:
    destination = run_resolve(url, allow_private=True)
    assert destination.addresses
    assert destination.scheme == "https"


def test_public_addresses_pass_with_their_parts() -> None:
    destination = run_resolve("https://8.8.8.8/a%20b?x=1#frag", allow_private=False)
    assert destination.addresses == (ipaddress.ip_address("8.8.8.8"),)
    assert (destination.scheme, destination.host, destination.port) == ("https", "8.8.8.8", 443)
    assert destination.host_header == "8.8.8.8"
    v6 = run_resolve("https://[2606:4700:4700::1111]:8443/", allow_private=False)
    assert v6.host_header == "[2606:4700:4700::1111]:8443"
    assert str(v6.url_at(v6.addresses[0])) == "https://[2606:4700:4700::1111]:8443/"


@pytest.mark.parametrize(
    ("url", "allow_private", "why"),
    [
        ("http://8.8.8.8/hook", False, "scheme 'http' is not https"),
        ("ftp://8.8.8.8/hook", True, "scheme 'ftp' is not http or https"),
        ("8.8.8.8/hook", False, "no scheme (needs https)"),
        ("https://user:secret@8.8.8.8/hook", False, "user name or password"),
        ("https:///hook", False, "no host"),
        ("https://8.8.8.8:99999/hook", False, "not a valid URL"),
        ("https://8.8.8.8:0/hook", False, "port is 0"),
    ],
)
def test_malformed_urls_are_refused(url: str, allow_private: bool, why: str) -> None:
    with pytest.raises(UnsafeDestination) as refused:
        run_resolve(url, allow_private=allow_private)
    assert why in refused.value.reason


def test_http_is_allowed_only_with_allow_private() -> None:
    destination = run_resolve("http://127.0.0.1:8080/hook", allow_private=True)
    assert (destination.scheme, destination.port, destination.host_header) == (
        "http",
        8080,
        "127.0.0.1:8080",
    )


def test_every_resolved_address_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name with a public and a private address is refused: the connection might use either."""

    async def scenario() -> None:
        answers = {"mixed.test": ["8.8.8.8", "2001:4860:4860::8888", "10.1.2.3"]}

        async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
            family = {4: socket.AF_INET, 6: socket.AF_INET6}
            return [
                (family[ipaddress.ip_address(a).version], socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers[host]
            ]

        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
        with pytest.raises(UnsafeDestination) as refused:
            await resolve("https://mixed.test/hook", allow_private=False)
        assert refused.value.reason == "mixed.test resolves to 10.1.2.3, a private address"
        answers["mixed.test"].pop()
        destination = await resolve("https://Mixed.Test./hook", allow_private=False)
        assert destination.host == "mixed.test"
        assert [str(a) for a in destination.addresses] == ["8.8.8.8", "2001:4860:4860::8888"]

    asyncio.run(scenario())
