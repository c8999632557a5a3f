"""The daemon's LISTEN connection: turns notifications into wake-ups of its loops.

A dedicated autocommit connection (never a pooled one: psycopg's notifies() holds the
connection). After every (re)connection all loops are woken, because notifications sent while
the connection was down are gone and only a re-scan of the tables finds their work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import psycopg
from psycopg import sql

from batchctl.database import APPLICATION_NAME, error_message

log = logging.getLogger(__name__)


async def listen(url: str, wakeups: Mapping[str, asyncio.Event], stopping: asyncio.Event) -> None:
    """Sets ``wakeups[channel]`` on every notification of that channel until ``stopping``."""
    delay = 0.1
    while not stopping.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(
                url, autocommit=True, application_name=f"{APPLICATION_NAME}-listen"
            ) as conn:
                for channel in wakeups:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                log.info("listening on %s", ", ".join(wakeups))
                delay = 0.1
                for event in wakeups.values():
                    event.set()
                while not stopping.is_set():
                    # A timeout, so that a stop request is seen within a second.
                    async for notify in conn.notifies(timeout=1.0):
                        wakeups[notify.channel].set()
        except psycopg.OperationalError as exc:
            log.warning(
                "LISTEN connection lost (%s), reconnecting in %.1f s", error_message(exc), delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
