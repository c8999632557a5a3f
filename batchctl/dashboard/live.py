"""Live updates: one LISTEN connection on batchctl_progress for the whole dashboard, and one read
per watched batch per update, whatever number of pages watch it.

A notification names a batch (sql/030, at most one per batch per debounce interval); a watched
batch is also re-read every ``refresh_s``, since notifications only wake and may be missed
(a reconnect, a debounced last change), and live calls' durations move on their own. Each read
is rendered once and offered to every page watching the batch; a page that is slow to take its
updates gets only the newest (a queue of one). A page subscribes only to batches it was allowed
to see when it opened: the data it is then sent is about those batches and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import AsyncConnectionPool

from batchctl.dashboard import queries
from batchctl.dashboard.access import acting_as
from batchctl.dashboard.models import BatchLive, BatchRow
from batchctl.database import APPLICATION_NAME, error_message

log = logging.getLogger(__name__)

CHANNEL = "batchctl_progress"
LISTEN_APPLICATION_NAME = f"{APPLICATION_NAME}-dashboard-listen"
Fragments = dict[str, str]  # element id -> inner HTML


@dataclass(eq=False)
class Watcher:
    """One open page's stream. Fragments not yet sent are merged (a newer fragment of a region
    replaces the older), so a slow page skips states but never a region; None once closed."""

    detail: bool  # the batch page (everything live), else campaigns rows
    _sent: Fragments = field(default_factory=dict)  # what the page shows (or will, once sent)
    _pending: Fragments = field(default_factory=dict)
    _closed: bool = False
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, fragments: Fragments) -> None:
        """Queues the regions that differ from what the page already has."""
        changed = {key: html for key, html in fragments.items() if self._sent.get(key) != html}
        if changed:
            self._sent.update(changed)
            self._pending.update(changed)
            self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    async def next(self) -> Fragments | None:
        await self._ready.wait()
        self._ready.clear()
        if self._closed:
            return None
        sent, self._pending = self._pending, {}
        return sent


@dataclass
class Renderers:
    row: Callable[[BatchRow], Fragments]
    detail: Callable[[BatchLive], Fragments]


class LiveHub:
    def __init__(
        self, url: str, pool: AsyncConnectionPool, render: Renderers, *, refresh_s: float = 5.0
    ) -> None:
        self._url = url
        self._pool = pool
        self._render = render
        self._refresh_s = refresh_s
        self._watchers: dict[UUID, set[Watcher]] = defaultdict(set)
        self._dirty: set[UUID] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.reads = 0  # batches read for updates so far (the cost the tests measure)
        self._busy = False
        self.listening = asyncio.Event()  # set while the LISTEN connection is up

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(t()) for t in (self._listen, self._tick, self._publish)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.close()

    @asynccontextmanager
    async def watch(self, batch_ids: Sequence[UUID], *, detail: bool) -> AsyncIterator[Watcher]:
        """Updates of ``batch_ids`` (already checked visible to the page's viewer) until the
        block ends. The first update comes at once, so a page is current from the start."""
        watcher = Watcher(detail)
        for batch_id in batch_ids:
            self._watchers[batch_id].add(watcher)
        self._mark(batch_ids)
        try:
            yield watcher
        finally:
            for batch_id in batch_ids:
                self._watchers[batch_id].discard(watcher)
                if not self._watchers[batch_id]:
                    del self._watchers[batch_id]

    def watching(self, batch_id: UUID) -> int:
        """How many pages watch ``batch_id`` now."""
        return len(self._watchers.get(batch_id, ()))

    def idle(self) -> bool:
        """Whether every update asked for has been read and offered."""
        return not (self._busy or self._dirty or self._wake.is_set())

    def _mark(self, batch_ids: Sequence[UUID]) -> None:
        self._dirty.update(batch_ids)
        self._wake.set()

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, application_name=LISTEN_APPLICATION_NAME
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    delay = 0.5
                    self._mark(list(self._watchers))  # whatever changed while we were away
                    async for note in conn.notifies():
                        with suppress(ValueError):
                            batch_id = UUID(note.payload)
                            if batch_id in self._watchers:
                                self._mark([batch_id])
            except psycopg.Error as exc:
                log.warning("dashboard: LISTEN lost (%s), again in %.1f s",
                            error_message(exc), delay)  # fmt: skip
            self.listening.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            self._mark(list(self._watchers))

    async def _publish(self) -> None:
        while True:
            await self._wake.wait()
            self._busy = True
            self._wake.clear()
            batches = [b for b in self._dirty if b in self._watchers]
            self._dirty.clear()
            for batch_id in batches:
                try:
                    await self._update(batch_id)
                except psycopg.Error as exc:  # the next tick tries again
                    log.warning("dashboard: reading batch %s failed: %s", batch_id,
                                error_message(exc))  # fmt: skip
                except Exception:  # a bug in one batch's page must not stop every page's updates
                    log.exception("dashboard: updating batch %s failed", batch_id)
            self._busy = False

    async def _update(self, batch_id: UUID) -> None:
        watchers = list(self._watchers.get(batch_id, ()))
        if not watchers:
            return
        self.reads += 1
        detail = any(w.detail for w in watchers)
        row: BatchRow | None
        live: BatchLive | None = None
        async with acting_as(self._pool, None) as conn:
            if detail:
                live = await queries.batch_live(conn, batch_id)
                row = live.batch if live else None
            else:
                row = (await queries.batch_rows(conn, [batch_id])).get(batch_id)
        if row is None:  # pruned: its page has nothing left to show (a campaigns row stays)
            for watcher in watchers:
                if watcher.detail:
                    watcher.close()
            return
        rendered: dict[bool, Any] = {False: self._render.row(row)}
        if live is not None:
            rendered[True] = self._render.detail(live)
        for watcher in watchers:
            watcher.offer(rendered[watcher.detail])
