"""The daemon's and the webhook's calls of the SQL API: one method per SQL function.

Every call is one autocommit statement on a pooled connection. A call that loses its
connection (PostgreSQL restarting, a stale pooled connection) is retried: each of these SQL
functions is idempotent or guarded by the row's status, so running one twice after an
ambiguous commit changes nothing the first run did not.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from batchctl.database import error_message

log = logging.getLogger(__name__)

T = TypeVar("T")

# Connection-level failures, worth another try; any other error is the call's answer.
TRANSIENT: tuple[type[Exception], ...] = (psycopg.OperationalError, PoolTimeout)


@dataclass(frozen=True)
class Claim:
    """One row of batchctl.claim_entries."""

    entry_id: UUID
    batch_id: UUID
    tenant_id: UUID
    to_phone: str
    lead_name: str | None
    context: dict[str, Any]
    attempt: int
    room_name: str
    options: dict[str, Any]
    # A claim of this attempt came back unacknowledged before: LiveKit may have its room.
    dispatch_unconfirmed: bool


@dataclass(frozen=True)
class ClaimRow:
    """One row of batchctl.claim_entries with the lead's JSON still undecoded: a lead the
    daemon cannot read must fail that entry alone (decode() in its own task), never the claim
    that carried it, nor the other tenants' entries in it."""

    entry_id: UUID
    batch_id: UUID
    tenant_id: UUID
    to_phone: str
    lead_name: str | None
    context: str
    attempt: int
    room_name: str
    options: str
    dispatch_unconfirmed: bool

    def decode(self) -> Claim:
        return Claim(
            **{
                **vars(self),
                "context": json.loads(self.context),
                "options": json.loads(self.options),
            }
        )


@dataclass(frozen=True)
class Ack:
    """LiveKit accepted the dispatch of a claimed entry's room."""

    entry_id: UUID
    room_name: str
    dispatch_id: str


@dataclass(frozen=True)
class AckResult:
    """One row of batchctl.mark_dispatched_many."""

    call_log_id: UUID | None  # None: the claim is gone, hang the room up
    status: str | None  # the entry's status after; None: no such entry
    error: str | None  # why it was not acknowledged (a room not the claimed attempt's)


@dataclass(frozen=True)
class StatusReport:
    """One report of a call's status, as report_call_status takes it."""

    call_log_id: UUID
    status: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportResult:
    """One row of batchctl.report_call_statuses."""

    status: str | None  # the entry's status after; None: no such call log
    error: str | None  # why the report was not applied ("call log not found", a bad field)


@dataclass(frozen=True)
class HangupRequest:
    """One row of batchctl.claim_hangups."""

    room_name: str
    call_log_id: UUID
    reason: str
    attempt: int


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


class Procedures:
    def __init__(self, pool: AsyncConnectionPool, *, retry_for: float = 30.0) -> None:
        self.pool = pool
        self.retry_for = retry_for  # seconds a call keeps retrying a lost connection

    async def _rows(self, query: str, *params: Any) -> list[dict[str, Any]]:
        async def run() -> list[dict[str, Any]]:
            async with self.pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(query, params)
                return await cur.fetchall() if cur.description else []

        return await retrying(run, self.retry_for)

    async def _value(self, query: str, *params: Any) -> Any:
        (row,) = await self._rows(query, *params)
        return next(iter(row.values()))

    async def claim_entries(self, worker: str, limit: int, lease_seconds: int) -> list[ClaimRow]:
        rows = await self._rows(
            """SELECT entry_id, batch_id, tenant_id, to_phone, lead_name, context::text AS context,
                      attempt, room_name, options::text AS options, dispatch_unconfirmed
                 FROM batchctl.claim_entries(%s, %s, %s)""",
            worker,
            limit,
            lease_seconds,
        )
        return [ClaimRow(**row) for row in rows]

    async def mark_dispatched_many(self, acks: list[Ack]) -> list[AckResult]:
        rows = await self._rows(
            "SELECT call_log_id, status, error FROM batchctl.mark_dispatched_many(%s, %s, %s)",
            [a.entry_id for a in acks],
            [a.room_name for a in acks],
            [a.dispatch_id for a in acks],
        )
        return [AckResult(**row) for row in rows]

    async def mark_dispatch_failed(self, entry_id: UUID, error: str, retryable: bool) -> str:
        return await self._value(
            "SELECT batchctl.mark_dispatch_failed(%s, %s, %s)", entry_id, error, retryable
        )

    async def mark_dispatch_unknown(self, entry_id: UUID, error: str) -> str:
        return await self._value("SELECT batchctl.mark_dispatch_unknown(%s, %s)", entry_id, error)

    async def report_call_status(
        self, call_log_id: UUID, status: str, detail: dict[str, Any] | None = None
    ) -> str:
        return await self._value(
            "SELECT batchctl.report_call_status(%s, %s, %s::jsonb)",
            call_log_id,
            status,
            json.dumps(detail or {}),
        )

    async def report_call_statuses(self, reports: list[StatusReport]) -> list[ReportResult]:
        """Each report's entry status after, and why it was not applied if it was not."""
        rows = await self._rows(
            "SELECT status, error FROM batchctl.report_call_statuses(%s, %s, %s::jsonb[])",
            [r.call_log_id for r in reports],
            [r.status for r in reports],
            [json.dumps(r.detail) for r in reports],
        )
        return [ReportResult(**row) for row in rows]

    async def claim_hangups(self, worker: str, limit: int) -> list[HangupRequest]:
        rows = await self._rows("SELECT * FROM batchctl.claim_hangups(%s, %s)", worker, limit)
        return [HangupRequest(**row) for row in rows]

    async def hangup_done(self, room_name: str) -> None:
        await self._rows("SELECT batchctl.hangup_done(%s)", room_name)

    async def hangup_failed(self, room_name: str, error: str) -> None:
        await self._rows("SELECT batchctl.hangup_failed(%s, %s)", room_name, error)

    async def room_call_over(self, room_name: str, reason: str) -> str | None:
        return await self._value("SELECT batchctl.room_call_over(%s, %s)", room_name, reason)

    async def sweep(self) -> dict[str, Any]:
        return await self._value("SELECT batchctl.sweep()")
