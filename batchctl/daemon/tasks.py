"""The work a loop has in hand as tasks of their own: one failing or slow item holds only
itself. Shared by the dispatch and the webhook loops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class InHand:
    """At most ``limit`` tasks at once; a task finishing while it was full wakes its loop (which
    claims no more while full). A task that raised is logged: what it held comes back by its
    lease."""

    def __init__(self, limit: int, wake: asyncio.Event) -> None:
        self.limit = limit
        self.wake = wake
        self._tasks: set[asyncio.Task[None]] = set()

    def free(self) -> int:
        return self.limit - len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    async def drain(self, timeout: float, what: str) -> None:
        """Waits up to ``timeout`` for the tasks in hand, then cancels the rest."""
        if self._tasks:
            log.info("waiting up to %.0f s for %d %s in hand", timeout, len(self._tasks), what)
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _finished(self, task: asyncio.Task[None]) -> None:
        was_full = len(self._tasks) >= self.limit
        self._tasks.discard(task)
        if was_full:
            self.wake.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            # Even recording the outcome failed (the database is away): the item stays
            # claimed, and its lease brings it back.
            log.error("%s failed", task.get_name(), exc_info=exc)
