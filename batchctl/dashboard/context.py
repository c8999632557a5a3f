"""What every handler reaches through the aiohttp application, under a typed key, and the
request's viewer (whom the sign-in check in app.py has let through)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from batchctl.dashboard.auth import COOKIE, Sessions
from batchctl.dashboard.live import LiveHub
from batchctl.dashboard.models import Viewer
from batchctl.dashboard.pages import Pages


@dataclass
class Dashboard:
    sessions: Sessions
    pages: Pages
    pool: AsyncConnectionPool
    hub: LiveHub


DASHBOARD = web.AppKey("dashboard", Dashboard)


def dashboard(request: web.Request) -> Dashboard:
    return request.app[DASHBOARD]


def viewer(request: web.Request) -> Viewer:
    found = dashboard(request).sessions.viewer(request.cookies.get(COOKIE))
    if found is None:  # signed_in (app.py) lets no such request through
        raise web.HTTPUnauthorized(text="sign in first")
    return found


def batch_id(request: web.Request) -> UUID:
    """The batch of the URL; a malformed id is a batch that does not exist."""
    try:
        return UUID(request.match_info["batch_id"])
    except ValueError:
        raise web.HTTPNotFound() from None
