"""The simulated agents' database side: ``batchctl.report_call_status`` on the simulator's own
pool (``batchctl-sim`` in pg_stat_activity), retried through what a real voice worker meets.

- Lost connections (PostgreSQL restarting, connections killed): the AsyncClient retries them.
- BC002 (call log not found): the daemon calls ``mark_dispatched`` only after CreateDispatch has
  returned, so an agent's first report may come first. Retried here with a short backoff.
Both for about ``give_up_s``. A DeleteRoom cancels the agent's task, which ends the retries too.
Any other error is final: a bug worth seeing in the stats, not worth retrying.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from uuid import UUID

import psycopg

from batchctl.client.aio import AsyncClient
from batchctl.database import async_pool
from batchctl.sim.stats import SimStats

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.02
MAX_BACKOFF_S = 1.0


class Reporter:
    def __init__(self, database_url: str, stats: SimStats, give_up_s: float) -> None:
        self._stats = stats
        self._give_up_s = give_up_s
        self._pool = async_pool(database_url, "sim", max_size=8)
        self._client = AsyncClient(self._pool, retry_for=give_up_s)

    async def open(self) -> None:
        # wait=False: the simulator starts (and answers LiveKit calls) while the database is down.
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    async def report(
        self, room: str, call_log_id: UUID, status: str, detail: dict[str, Any] | None = None
    ) -> bool:
        """True once the report is committed; False when it failed for good (logged, counted)."""
        deadline = time.monotonic() + self._give_up_s
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                await self._client.report_call_status(call_log_id, status, detail)
            except psycopg.Error as exc:
                if exc.sqlstate != "BC002" or time.monotonic() + backoff > deadline:
                    self._stats.error("report_call_status", exc.sqlstate or type(exc).__name__)
                    log.warning("room %s: report %r failed for good: %s", room, status, exc)
                    return False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            self._stats.report(room, str(call_log_id), status)
            return True
