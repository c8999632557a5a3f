"""The pages: campaigns, one batch (with its entries), and its report workbook. Each reads in
one transaction acting for the viewer (access.py); a batch the viewer may not see is a 404,
exactly like one that does not exist."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import psycopg
from aiohttp import web

from batchctl.dashboard import queries
from batchctl.dashboard.access import acting_as
from batchctl.dashboard.context import batch_id, dashboard, viewer
from batchctl.report.build import build_report
from batchctl.statuses import BATCH_STATUSES, ENTRY_STATUSES

NOT_FOUND = "No such batch, or not one this sign-in may see."


def html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def bad_request(request: web.Request, message: str) -> web.HTTPException:
    page = dashboard(request).pages.error(400, message, viewer(request))
    return web.HTTPBadRequest(text=page, content_type="text/html")


def not_found(request: web.Request) -> web.HTTPException:
    page = dashboard(request).pages.error(404, NOT_FOUND, viewer(request))
    return web.HTTPNotFound(text=page, content_type="text/html")


def choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.query.get(name) or None
    if value is not None and value not in allowed:
        raise bad_request(request, f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def cursor(request: web.Request) -> tuple[datetime, UUID] | None:
    """The campaigns page's ``before``: ISO time ~ batch id of the last row seen."""
    value = request.query.get("before")
    if not value:
        return None
    at, _, last = value.partition("~")
    try:
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None:
            raise ValueError("no UTC offset")
        return moment, UUID(last)
    except ValueError:
        raise bad_request(request, f"before {value!r} is not a page of this list") from None


async def campaigns(request: web.Request) -> web.Response:
    board = dashboard(request)
    tenant_text = request.query.get("tenant") or None
    try:
        tenant = UUID(tenant_text) if tenant_text else None
    except ValueError:
        raise bad_request(request, f"tenant {tenant_text!r} is not a tenant id") from None
    status = choice(request, "status", BATCH_STATUSES)
    async with acting_as(board.pool, viewer(request)) as conn:
        page = await queries.campaigns(conn, tenant=tenant, status=status, before=cursor(request))
    return html(board.pages.campaigns(page, viewer(request), datetime.now(UTC)))


async def batch(request: web.Request) -> web.Response:
    board = dashboard(request)
    status = choice(request, "status", ENTRY_STATUSES)
    after_text = request.query.get("after")
    if after_text is not None and not after_text.isdigit():
        raise bad_request(request, f"after must be an entry number, not {after_text!r}")
    the_batch = batch_id(request)
    async with acting_as(board.pool, viewer(request)) as conn:
        live = await queries.batch_live(conn, the_batch)
        if live is None:
            raise not_found(request)
        after = int(after_text) if after_text is not None else None
        entries = await queries.entries(conn, the_batch, status=status, after=after)
    page = board.pages.batch(
        live, entries, viewer(request), datetime.now(UTC),
        notice=request.query.get("notice"), error=request.query.get("error"),
    )  # fmt: skip
    return html(page)


async def report(request: web.Request) -> web.Response:
    """The batch's workbook as it stands (finished or not), built as the viewer."""
    board = dashboard(request)
    try:
        async with board.pool.connection() as conn:
            built = await build_report(conn, batch_id(request), role=viewer(request).role)
    except psycopg.Error as exc:
        if exc.sqlstate == "BC002":
            raise not_found(request) from None
        raise
    return web.Response(
        body=built.xlsx,
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="{built.filename}"'},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", campaigns)
    app.router.add_get("/batches/{batch_id}", batch)
    app.router.add_get("/batches/{batch_id}/report.xlsx", report)
