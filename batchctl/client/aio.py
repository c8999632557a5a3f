"""The SQL API for asyncio: the daemon, the webhook receiver, the simulator and the reports.

Over a connection source (a pool), each call is one autocommit statement on a connection of
its own. A call that loses its connection (PostgreSQL restarting, a stale pooled connection) is
retried: each of these SQL functions is idempotent or guarded by the row's status, so running
one twice after an ambiguous commit changes nothing the first run did not (the report outbox
does not retry its claims: retry_for=0). Over one connection (a report reading in its own
transaction), a call runs in that transaction and is not retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

import psycopg
from psycopg_pool import PoolTimeout

from batchctl.client.calls import Call, batches, dispatch, report, upkeep, webhooks
from batchctl.client.rows import (
    Ack,
    AckResult,
    ClaimRow,
    HangupRequest,
    ReportClaim,
    ReportResult,
    StatusReport,
    WebhookDelivery,
)
from batchctl.client.summary import BatchSummary
from batchctl.database import error_message

log = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")

# Connection-level failures, worth another try; any other error is the call's answer.
TRANSIENT: tuple[type[Exception], ...] = (psycopg.OperationalError, PoolTimeout)


class ConnectionSource(Protocol):
    """Where connections (autocommit) come from: an AsyncConnectionPool, or one connection."""

    def connection(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]: ...


async def retrying(call: Callable[[], Awaitable[T]], retry_for: float) -> T:
    """``call()``, retried with a growing delay for up to ``retry_for`` seconds while it fails
    for want of a connection (a new attempt takes a new pooled connection)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_for
    delay = 0.1
    while True:
        try:
            return await call()
        except TRANSIENT as exc:
            if loop.time() + delay > deadline:
                raise
            log.warning("database unavailable (%s), retrying in %.1f s", error_message(exc), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _execute(conn: psycopg.AsyncConnection[Any], call: Call[R]) -> R:
    async with conn.cursor(row_factory=call.row) as cur:
        if call.adapt is not None:
            call.adapt(cur)
        await cur.execute(call.query, call.params)
        return call.read(await cur.fetchall())


class AsyncClient:
    def __init__(
        self,
        source: ConnectionSource | psycopg.AsyncConnection[Any],
        *,
        retry_for: float = 30.0,  # seconds a call keeps retrying a lost connection; 0: never
    ) -> None:
        self.source = source
        self.retry_for = retry_for

    async def run(self, call: Call[R]) -> R:
        source = self.source
        if isinstance(source, psycopg.AsyncConnection):
            return await _execute(source, call)

        async def attempt() -> R:
            async with source.connection() as conn:
                return await _execute(conn, call)

        return await retrying(attempt, self.retry_for)

    # Dispatch and calls (sql/050 to sql/057).

    async def claim_entries(self, worker: str, limit: int, lease_seconds: int) -> list[ClaimRow]:
        return await self.run(dispatch.claim_entries(worker, limit, lease_seconds))

    async def mark_dispatched_many(self, acks: Sequence[Ack]) -> list[AckResult]:
        return await self.run(dispatch.mark_dispatched_many(acks))

    async def mark_dispatch_failed(self, entry_id: UUID, error: str, retryable: bool = True) -> str:
        return await self.run(dispatch.mark_dispatch_failed(entry_id, error, retryable))

    async def mark_dispatch_unknown(self, entry_id: UUID, error: str) -> str:
        return await self.run(dispatch.mark_dispatch_unknown(entry_id, error))

    async def report_call_status(
        self, call_log_id: UUID, status: str, detail: Mapping[str, Any] | None = None
    ) -> str:
        return await self.run(dispatch.report_call_status(call_log_id, status, detail))

    async def report_call_statuses(self, reports: Sequence[StatusReport]) -> list[ReportResult]:
        return await self.run(dispatch.report_call_statuses(reports))

    async def room_call_over(self, room_name: str, reason: str) -> str | None:
        return await self.run(dispatch.room_call_over(room_name, reason))

    async def claim_hangups(self, worker: str, limit: int = 20) -> list[HangupRequest]:
        return await self.run(dispatch.claim_hangups(worker, limit))

    async def claim_webhook_deliveries(
        self, worker: str, limit: int, lease_seconds: int
    ) -> list[WebhookDelivery]:
        return await self.run(webhooks.claim_webhook_deliveries(worker, limit, lease_seconds))

    async def record_webhook_attempt(
        self,
        delivery: WebhookDelivery,
        status_code: int | None,
        error: str | None,
        reply: str,
        elapsed_ms: float,
    ) -> str:
        return await self.run(
            webhooks.record_webhook_attempt(delivery, status_code, error, reply, elapsed_ms)
        )

    async def hangup_done(self, room_name: str) -> None:
        await self.run(dispatch.hangup_done(room_name))

    async def hangup_failed(self, room_name: str, error: str) -> None:
        await self.run(dispatch.hangup_failed(room_name, error))

    # Timeouts (sql/060).

    async def sweep(self, now: datetime | None = None) -> dict[str, Any]:
        return await self.run(upkeep.sweep(now))

    # Reports (sql/070, sql/085).

    async def claim_report(self, worker: str) -> ReportClaim | None:
        return await self.run(report.claim_report(worker))

    async def claim_report_now(
        self, batch_id: UUID, worker: str, recipients: Sequence[str] | None = None
    ) -> ReportClaim:
        return await self.run(report.claim_report_now(batch_id, worker, recipients))

    async def report_sent(self, batch_id: UUID) -> None:
        await self.run(report.report_sent(batch_id))

    async def report_failed(self, batch_id: UUID, error: str) -> None:
        await self.run(report.report_failed(batch_id, error))

    async def report_summary(self, batch_id: UUID) -> BatchSummary:
        return await self.run(report.report_summary(batch_id))

    # A batch's life (sql/044), for the dashboard's buttons.

    async def pause_batch(self, tenant_id: UUID, batch_id: UUID) -> None:
        await self.run(batches.pause_batch(tenant_id, batch_id))

    async def resume_batch(self, tenant_id: UUID, batch_id: UUID) -> None:
        await self.run(batches.resume_batch(tenant_id, batch_id))

    async def cancel_batch(self, tenant_id: UUID, batch_id: UUID, reason: str | None = None) -> int:
        return await self.run(batches.cancel_batch(tenant_id, batch_id, reason))
