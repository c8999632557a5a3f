"""The dashboard's writes: pause, resume and cancel a batch, and signing in and out.

Actions call the SQL API as the viewer (access.py), which records the viewer in the audit
(events.actor); the sign-in check in app.py has already refused a POST without the session's
CSRF token. The answer is a redirect to the batch page, with what happened in its query."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import psycopg
from aiohttp import web

from batchctl.client.aio import AsyncClient
from batchctl.dashboard.access import acting_as
from batchctl.dashboard.auth import COOKIE, SESSION_SECONDS
from batchctl.dashboard.context import batch_id, dashboard, viewer
from batchctl.dashboard.routes import bad_request, html, not_found
from batchctl.database import error_message

DONE = {"pause": "Paused.", "resume": "Resumed.", "cancel": "Cancelled."}
FAILED_SIGN_IN_DELAY_S = 0.5  # a guesser gets two tries a second per connection, not thousands


async def batch_action(request: web.Request) -> web.Response:
    board = dashboard(request)
    action = request.match_info["action"]
    the_batch = batch_id(request)
    form = await request.post()
    reason = str(form.get("reason", "")).strip()
    if action == "cancel" and not reason:
        raise bad_request(request, "A cancel needs a reason: it is kept with the batch.")
    outcome: dict[str, str]
    try:
        async with acting_as(board.pool, viewer(request), write=True) as conn:
            tenant = await conn.execute(
                "SELECT tenant_id FROM batchctl.batches WHERE id = %s", (the_batch,)
            )
            row = await tenant.fetchone()
            if row is None:
                raise not_found(request)
            client = AsyncClient(conn)
            if action == "pause":
                await client.pause_batch(row[0], the_batch)
            elif action == "resume":
                await client.resume_batch(row[0], the_batch)
            else:
                await client.cancel_batch(row[0], the_batch, reason)
        outcome = {"notice": DONE[action]}
    except psycopg.Error as exc:
        if exc.sqlstate == "BC002":
            raise not_found(request) from None
        if exc.sqlstate not in ("BC001", "BC003", "42501"):
            raise
        outcome = {"error": error_message(exc)}
    raise web.HTTPSeeOther(f"/batches/{the_batch}?{urlencode(outcome)}")


async def sign_in_page(request: web.Request) -> web.Response:
    """The form; ``?token=`` (the link `batchctl dashboard` prints) signs in at once."""
    offered = request.query.get("token")
    if offered is not None:
        return await _sign_in(request, offered)
    return html(dashboard(request).pages.login())


async def sign_in(request: web.Request) -> web.Response:
    form = await request.post()
    return await _sign_in(request, str(form.get("token", "")))


async def _sign_in(request: web.Request, offered: str) -> web.Response:
    board = dashboard(request)
    token = board.sessions.match(offered.strip())
    if token is None:
        await asyncio.sleep(FAILED_SIGN_IN_DELAY_S)
        return html(board.pages.login(error="That token is not accepted."), status=401)
    response = web.HTTPSeeOther("/")
    response.set_cookie(
        COOKIE, board.sessions.issue(token), max_age=SESSION_SECONDS, httponly=True,
        samesite="Strict", secure=request.secure, path="/",
    )  # fmt: skip
    raise response


async def sign_out(request: web.Request) -> web.Response:
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


def add_routes(app: web.Application) -> None:
    app.router.add_post("/batches/{batch_id}/{action:pause|resume|cancel}", batch_action)
    app.router.add_get("/login", sign_in_page)
    app.router.add_post("/login", sign_in)
    app.router.add_post("/logout", sign_out)
