"""Server-Sent Events: a page's live updates, fed by the hub (live.py).

A stream is opened only for batches the viewer can see at that moment, checked in a query
acting as the viewer; the hub then sends it those batches' fragments, rendered once for every
page watching them. Event ``update``: JSON {element id: inner HTML}; ``gone``: the batch is no
longer there (the page stops listening). A comment line every KEEPALIVE_S keeps proxies from
closing an idle stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from contextlib import suppress
from uuid import UUID

from aiohttp import web

from batchctl.dashboard import queries
from batchctl.dashboard.access import acting_as
from batchctl.dashboard.context import batch_id, dashboard, viewer
from batchctl.dashboard.routes import bad_request, not_found

KEEPALIVE_S = 15.0
MAX_BATCHES = 100  # a campaigns page lists 25


async def campaigns_stream(request: web.Request) -> web.StreamResponse:
    try:
        wanted = [UUID(b) for b in request.query.getall("batch", [])]
    except ValueError:
        raise bad_request(request, "batch must be batch ids") from None
    if not wanted or len(wanted) > MAX_BATCHES:
        raise bad_request(request, f"between 1 and {MAX_BATCHES} batch ids, please")
    return await _stream(request, wanted, detail=False)


async def batch_stream(request: web.Request) -> web.StreamResponse:
    return await _stream(request, [batch_id(request)], detail=True)


async def _stream(
    request: web.Request, wanted: Sequence[UUID], *, detail: bool
) -> web.StreamResponse:
    board = dashboard(request)
    async with acting_as(board.pool, viewer(request)) as conn:
        visible = list(await queries.batch_rows(conn, wanted))
    if not visible:
        raise not_found(request)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                 "X-Accel-Buffering": "no"}
    )  # fmt: skip
    await response.prepare(request)
    async with board.hub.watch(visible, detail=detail) as watcher:
        with suppress(ConnectionResetError):  # the page was closed: nothing more to send
            while True:
                try:
                    fragments = await asyncio.wait_for(watcher.next(), KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if fragments is None:
                    await response.write(b"event: gone\ndata: {}\n\n")
                    break
                data = json.dumps(fragments, separators=(",", ":"))
                await response.write(f"event: update\ndata: {data}\n\n".encode())
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/live", campaigns_stream)
    app.router.add_get("/batches/{batch_id}/live", batch_stream)
