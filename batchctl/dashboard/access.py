"""Database access as the viewer: every request's statements run in one transaction that acts
as the viewer's tenant login (SET LOCAL ROLE) when its token is tenant-limited. Row-level
security and the tenant functions then decide what it sees and may do; the dashboard's code
never has to get that right. SET LOCAL ends with the transaction, so a pooled connection (or a
PgBouncer server connection) goes back as it came."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from batchctl.dashboard.models import Viewer

# What an action records with its audit rows (events.actor, after the database role).
ACTOR = "dashboard: {name}"


@asynccontextmanager
async def acting_as(
    pool: AsyncConnectionPool, viewer: Viewer | None, *, write: bool = False
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A connection in a transaction acting for ``viewer`` (None: the dashboard itself, which
    only the live updates use). Reads are READ ONLY transactions; ``write`` transactions
    record the viewer as the actor of the changes they make."""
    async with pool.connection() as conn, conn.transaction():
        steps: list[sql.Composable] = []
        if not write:
            steps.append(sql.SQL("SET TRANSACTION READ ONLY"))
        if viewer is not None and viewer.role is not None:
            steps.append(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(viewer.role)))
        if steps:
            await conn.execute(sql.SQL("; ").join(steps))
        if write and viewer is not None:
            await conn.execute(
                "SELECT set_config('batchctl.actor', %s, true)", (ACTOR.format(name=viewer.name),)
            )
        yield conn
