"""The dashboard's aiohttp application: its routes, the sign-in check in front of them, the
headers every answer carries, and its database pool and live hub for as long as it runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from batchctl.dashboard import actions, routes, streams
from batchctl.dashboard.auth import COOKIE, Sessions, Token
from batchctl.dashboard.context import DASHBOARD, Dashboard
from batchctl.dashboard.live import LiveHub, Renderers
from batchctl.dashboard.pages import Pages
from batchctl.database import async_pool

STATIC = Path(__file__).resolve().parent / "static"
PUBLIC = ("/login", "/static/")
HEADERS = {
    # Every script and style is the package's own file: injected markup could run nothing.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it a browser sends "Origin: null" on the dashboard's own form posts,
    # and the origin check below could not tell them from another site's.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class DashboardSettings:
    url: str  # the database
    tokens: Sequence[Token]
    listen_url: str | None = None  # for the LISTEN, when url goes through a transaction pooler
    refresh_s: float = 5.0  # a watched batch is re-read at least this often
    pool_size: int = 4


@web.middleware
async def signed_in(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every page but the sign-in needs a session; every POST but the sign-in needs the
    session's CSRF token and, when the browser names it, this dashboard as its origin."""
    if request.path == "/login" or request.path.startswith(PUBLIC[1]):
        return await handler(request)
    board = request.app[DASHBOARD]
    found = board.sessions.viewer(request.cookies.get(COOKIE))
    if found is None:
        if request.method == "GET" and not request.path.endswith("/live"):
            raise web.HTTPSeeOther("/login")
        raise web.HTTPUnauthorized(text="sign in first")
    if request.method == "POST":
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            raise forbidden(board, "This request came from another site: it was refused.")
        form = await request.post()
        if form.get("csrf") != found.csrf:
            raise forbidden(board, "Missing or wrong CSRF token: reload the page and try again.")
    return await handler(request)


def forbidden(board: Dashboard, message: str) -> web.HTTPException:
    return web.HTTPForbidden(text=board.pages.error(403, message), content_type="text/html")


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(HEADERS)
    if not request.path.startswith(PUBLIC[1]):
        response.headers.setdefault("Cache-Control", "no-store")


def build_app(settings: DashboardSettings) -> web.Application:
    pages = Pages()
    pool = async_pool(settings.url, "dashboard", max_size=settings.pool_size)
    now = lambda: datetime.now(UTC)  # noqa: E731
    renderers = Renderers(
        row=lambda row: pages.campaign_row_fragments(row, now()),
        detail=lambda live: pages.batch_fragments(live, now()),
    )
    listen_url = settings.listen_url or settings.url
    hub = LiveHub(listen_url, pool, renderers, refresh_s=settings.refresh_s)
    app = web.Application(middlewares=[signed_in])
    app[DASHBOARD] = Dashboard(Sessions(settings.tokens), pages, pool, hub)
    app.on_response_prepare.append(_headers)
    app.cleanup_ctx.append(_running)
    app.on_shutdown.append(_closing_streams)
    routes.add_routes(app)
    actions.add_routes(app)
    streams.add_routes(app)
    app.router.add_static("/static/", STATIC, append_version=False)
    return app


async def _running(app: web.Application) -> AsyncIterator[None]:
    board = app[DASHBOARD]
    await board.pool.open(wait=False)
    await board.hub.start()
    yield
    await board.hub.stop()
    await board.pool.close()


async def _closing_streams(app: web.Application) -> None:
    # Open event streams would hold the shutdown until their timeout: end them first.
    await app[DASHBOARD].hub.stop()


async def start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serves ``app`` on host:port (0: a free port); returns its runner and the port taken."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])


async def serve(
    settings: DashboardSettings,
    host: str,
    port: int,
    stop: asyncio.Event,
    ready: Callable[[int], None] = lambda port: None,
) -> None:
    """Runs the dashboard on host:port until ``stop`` is set; ``ready`` gets the port taken."""
    runner, bound = await start(build_app(settings), host, port)
    try:
        ready(bound)
        await stop.wait()
    finally:
        await runner.cleanup()
