"""POSTing deliveries (batchctl/outbound/sender.py) to a real aiohttp server on 127.0.0.1 that
verifies every request with the ``standardwebhooks`` reference verifier."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from batchctl.outbound.sender import Response, post
from batchctl.outbound.signing import headers, new_secret
from ports import free_port

SECRET = new_secret()
BODY = b'{"type":"call.completed","data":{"call_id":"c-1"}}'


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class Receiver:
    """A tenant's endpoint: /ok, /status/{code}, /redirect (to /target), /slow, /huge,
    /accented. Records every request and whether its signature verified."""

    received: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{name:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        request_headers = dict(request.headers)
        try:
            Webhook(SECRET).verify(body, request_headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        self.received.append(Received(request.path, request_headers, body, verified))
        if not verified:
            return web.Response(status=401)
        name = request.match_info["name"]
        if name.startswith("status/"):
            return web.Response(status=int(name.removeprefix("status/")), text="as asked")
        if name == "redirect":
            raise web.HTTPFound("/target")
        if name == "slow":
            await self.release.wait()
        if name == "huge":
            return web.Response(body=b"x" * 1_000_000)
        if name == "accented":
            return web.Response(body="é".encode() * 1000)
        return web.Response(text="thanks")

    def paths(self) -> list[str]:
        return [r.path for r in self.received]


@contextlib.asynccontextmanager
async def serving(receiver: Receiver, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """Serves ``receiver`` on 127.0.0.1 (a port of its own, bound before it is served);
    yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(receiver.app(), shutdown_timeout=0.5)
    await runner.setup()
    await web.SockSite(runner, sock, ssl_context=tls).start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        receiver.release.set()
        await runner.cleanup()


def signed(message_id: str = "msg_1", at: datetime | None = None) -> dict[str, str]:
    return headers(SECRET, message_id, at or datetime.now(UTC), BODY)


async def post_to(url: str, **options: Any) -> Response:
    async with aiohttp.ClientSession() as session:
        return await post(session, url, signed(), BODY, **options)


def test_a_signed_post_is_verified_and_a_retry_keeps_its_id() -> None:
    receiver = Receiver()

    async def scenario() -> tuple[int, list[Response]]:
        async with serving(receiver) as port, aiohttp.ClientSession() as session:
            url = f"http://localhost:{port}/ok"
            first = datetime.now(UTC) - timedelta(seconds=30)
            return port, [
                await post(session, url, signed("msg_42", at), BODY, allow_private=True)
                for at in (first, first + timedelta(seconds=30))
            ]

    port, replies = asyncio.run(scenario())
    for reply in replies:
        assert (reply.status, reply.error, reply.body) == (200, None, "thanks")
        assert reply.elapsed_ms > 0
    assert [r.verified for r in receiver.received] == [True, True]
    assert [r.body for r in receiver.received] == [BODY, BODY]
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert ids == {"msg_42"}, "receivers deduplicate retries by the id"
    stamps = [int(r.headers["webhook-timestamp"]) for r in receiver.received]
    assert stamps[1] - stamps[0] == 30
    # Connected to the checked 127.0.0.1, but the request names the URL's host.
    assert receiver.received[0].headers["Host"] == f"localhost:{port}"


@pytest.mark.parametrize("status", [200, 204, 410, 500, 404])
def test_the_receivers_status_is_handed_back(status: int) -> None:
    """As it came: what it makes of the delivery is the database's (tests/sql/test_webhooks.py)."""
    receiver = Receiver()

    async def scenario() -> Response:
        async with serving(receiver) as port:
            return await post_to(f"http://127.0.0.1:{port}/status/{status}", allow_private=True)

    reply = asyncio.run(scenario())
    assert (reply.status, reply.error) == (status, None)


def test_a_redirect_is_a_failure_and_not_followed() -> None:
    receiver = Receiver()

    async def scenario() -> Response:
        async with serving(receiver) as port:
            return await post_to(f"http://127.0.0.1:{port}/redirect", allow_private=True)

    reply = asyncio.run(scenario())
    assert (reply.status, reply.error) == (302, None)
    assert receiver.paths() == ["/redirect"], "the redirect's target is never hit"


def test_a_slow_server_times_out() -> None:
    receiver = Receiver()

    async def scenario() -> Response:
        async with serving(receiver) as port:
            return await post_to(f"http://127.0.0.1:{port}/slow", allow_private=True, timeout_s=0.3)

    reply = asyncio.run(scenario())
    assert (reply.status, reply.error, reply.body) == (None, "timed out after 0.3 s", "")
    assert 250 <= reply.elapsed_ms < 3000


def test_a_huge_reply_is_cut_at_the_limit_and_decoded_leniently() -> None:
    receiver = Receiver()

    async def scenario() -> list[Response]:
        async with serving(receiver) as port:
            return [
                await post_to(f"http://127.0.0.1:{port}/huge", allow_private=True),
                await post_to(
                    f"http://127.0.0.1:{port}/accented",
                    allow_private=True,
                    max_response_bytes=101,  # half of an "é" at the end
                ),
            ]

    huge, accented = asyncio.run(scenario())
    assert (huge.status, huge.body) == (200, "x" * 4096)
    assert accented.body == "é" * 50 + "\ufffd"


def test_http_is_refused_unless_allowed() -> None:
    receiver = Receiver()

    async def scenario() -> Response:
        async with serving(receiver) as port:
            return await post_to(f"http://127.0.0.1:{port}/ok", allow_private=False)

    reply = asyncio.run(scenario())
    assert (reply.status, reply.body) == (None, "")
    assert reply.error == "refused: scheme 'http' is not https"
    assert receiver.received == []


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "10.0.0.1", "169.254.169.254", "[::1]", "192.168.1.1",
     "100.64.0.1", "[::ffff:127.0.0.1]"],
)  # fmt: skip
def test_private_destinations_are_refused_before_any_connection(host: str) -> None:
    receiver = Receiver()

    async def scenario() -> Response:
        async with serving(receiver) as port:
            return await post_to(f"https://{host}:{port}/ok", allow_private=False)

    reply = asyncio.run(scenario())
    assert reply.status is None and reply.error is not None
    assert reply.error.startswith("refused: "), reply.error
    assert receiver.received == []


def test_connection_failures_are_errors() -> None:
    reply = asyncio.run(post_to(f"http://127.0.0.1:{free_port()}/ok", allow_private=True))
    assert reply.status is None
    assert reply.error is not None and reply.error.startswith("ClientConnectorError: ")
    assert "\n" not in reply.error


def test_the_checked_address_is_the_one_connected_to(monkeypatch: pytest.MonkeyPatch) -> None:
    """One lookup per POST, checked, then used: a rebinding DNS answer never gets a say."""
    receiver = Receiver()
    lookups: list[str] = []
    safe_answers: list[str] = []

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        lookups.append(host)
        # Each POST's first answer is the receiver; a second lookup would get a dead address.
        address = safe_answers.pop() if safe_answers else "127.0.0.2"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    async def scenario() -> tuple[int, list[Response]]:
        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
        replies = []
        async with serving(receiver) as port, aiohttp.ClientSession() as session:
            for _ in range(2):
                safe_answers.append("127.0.0.1")
                replies.append(
                    await post(
                        session, f"http://rebind.test:{port}/ok", signed(), BODY, allow_private=True
                    )
                )
        return port, replies

    port, replies = asyncio.run(scenario())
    assert [r.status for r in replies] == [200, 200], [r.error for r in replies]
    assert lookups == ["rebind.test", "rebind.test"], "checked on every call, looked up once"
    assert [r.headers["Host"] for r in receiver.received] == [f"rebind.test:{port}"] * 2


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for the name ``localhost`` only (no IP address)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_is_verified_against_the_urls_name(certificate: tuple[Path, Path]) -> None:
    """Connecting to the checked IP keeps TLS checked against the URL's host: the certificate
    for localhost passes at https://localhost and fails at https://127.0.0.1."""
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))
    receiver = Receiver()

    async def scenario() -> list[Response]:
        async with (
            serving(receiver, tls=server_tls) as port,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls)) as session,
        ):
            return [
                await post(session, f"https://{host}:{port}/ok", signed(), BODY, allow_private=True)
                for host in ("localhost", "127.0.0.1")
            ]

    by_name, by_ip = asyncio.run(scenario())
    assert (by_name.status, by_name.error) == (200, None)
    assert by_ip.status is None and by_ip.error is not None
    assert "certificate" in by_ip.error.lower(), by_ip.error
    assert len(receiver.received) == 1
