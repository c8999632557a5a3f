"""Calls from many tasks, written to the database together (River's "completer").

Each task awaits its own result; the completer sends what has piled up as one call of a set-form
SQL function: one transaction, one counter update per batch. The daemon sends its dispatch
acknowledgements this way (mark_dispatched_many), the webhook receiver its call reports
(report_call_statuses). A flush starts as soon as the previous one returned, with no timer: a
lone item goes at once, and under load the ones arriving during a flush go together in the next.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Completer(Generic[Item, Result]):
    def __init__(
        self,
        flush: Callable[[list[Item]], Awaitable[Sequence[Result]]],
        *,
        max_batch: int = 100,
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """The result of ``item`` in the flush that carried it; that flush's error if it failed."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_pending(), name="completer")
        return await future

    async def _flush_pending(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                results = await self._flush([item for item, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch + self._pending:
                    future.cancel()
                raise
            except Exception as exc:
                # Every waiter of this flush gets its error; later items get their own flush.
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():  # its waiter may have been cancelled (drain timeout)
                    future.set_result(result)
