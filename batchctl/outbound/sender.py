"""One POST of one delivery, to a checked address, never raising: the daemon records the result.

Pinning the connection to the checked addresses: the URL's host is replaced by each checked IP
in turn and the request carries the original Host header and, for https, ``server_hostname``
(SNI and the certificate are checked against the URL's name). aiohttp does no lookup for an IP,
so nothing can rebind between the check and the connection, and any session works; a pinned
resolver would instead need a connector, hence a session, per destination and so no pooling.
aiohttp's pool key includes ``server_hostname``, so a TLS connection verified for one name is
never reused for another name on the same address.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict

from batchctl.outbound.destinations import Destination, UnsafeDestination, resolve


@dataclass(frozen=True)
class Response:
    """What came back: an HTTP ``status`` (any, 3xx included) and up to the limit of its body,
    or, if there was no HTTP response at all, ``status`` None and a one-line ``error``."""

    status: int | None
    error: str | None
    body: str
    elapsed_ms: float


async def post(
    session: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    allow_private: bool,
    timeout_s: float = 10,
    max_response_bytes: int = 4096,
) -> Response:
    """POSTs ``body`` with ``headers`` (see ``signing.headers``) to ``url``.

    The URL is checked (``destinations.resolve``) on every call and the request goes only to
    the addresses just checked, first to last until one accepts the connection. Redirects are
    not followed. ``timeout_s`` bounds the whole call: lookup, connection, request and reading
    the reply, of which at most ``max_response_bytes`` are read (decoded as UTF-8, leniently).
    A refused URL, a failed lookup or connection, a timeout: ``error``, never an exception.

    ``session`` should not use a proxy (``trust_env`` off): a proxy would receive the request
    for the IP, not the name.
    """
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            destination = await resolve(url, allow_private=allow_private)
            status, text = await _send(session, destination, headers, body, max_response_bytes)
    except UnsafeDestination as exc:
        return _failed(f"refused: {exc.reason}", started)
    except TimeoutError:  # before OSError: it is one
        return _failed(f"timed out after {timeout_s:g} s", started)
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return _failed(_one_line(exc), started)
    return Response(status, None, text, _since(started))


async def _send(
    session: aiohttp.ClientSession,
    destination: Destination,
    headers: Mapping[str, str],
    body: bytes,
    limit: int,
) -> tuple[int, str]:
    request_headers = CIMultiDict(headers)
    request_headers["Host"] = destination.host_header
    # A compressed reply could inflate far past the limit before we stop reading.
    request_headers.setdefault("Accept-Encoding", "identity")
    tls_name = destination.host if destination.scheme == "https" else None
    failure: aiohttp.ClientConnectorError | None = None
    for address in destination.addresses:
        try:
            async with session.post(
                destination.url_at(address),
                data=body,
                headers=request_headers,
                allow_redirects=False,
                server_hostname=tls_name,
                # A session raising for 4xx/5xx would turn a 410 into an error, hence a retry.
                raise_for_status=False,
            ) as reply:
                return reply.status, await _read(reply.content, limit)
        except aiohttp.ClientConnectorError as exc:
            # Not connected, so nothing was sent: the next address cannot get a duplicate.
            failure = exc
    assert failure is not None  # resolve() returns at least one address
    raise failure


async def _read(content: aiohttp.StreamReader, limit: int) -> str:
    # Stop at the limit: the rest is never read (aiohttp then closes the connection rather
    # than pooling it).
    data = bytearray()
    while len(data) < limit:
        chunk = await content.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", errors="replace")


def _failed(error: str, started: float) -> Response:
    return Response(None, error, "", _since(started))


def _since(started: float) -> float:
    return (time.monotonic() - started) * 1000


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
