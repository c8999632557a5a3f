"""What the report reads: the batch's figures (``batchctl.report_summary``) and its rows
(``batchctl.report_entries`` / ``report_calls``), streamed in chunks through server-side cursors
so that a 100k-entry batch never sits in memory. Run inside one transaction (see build.py).

A JSON value Python cannot decode (a context nested 10,000 levels deep, stored before the intake
bounds) comes as its text, UndecodedJson, and is shown as text: one odd lead must not cost the
whole report. Set on the report's cursors only, not on the (pooled) connection they use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from batchctl.database import UndecodedJson, tolerate_undecodable_json

CHUNK_ROWS = 2000
# Entry statuses in the order the report lists them: outcomes first, then what is still open.
ENTRY_STATUSES = ("completed", "declined", "failed", "cancelled", "queued", "running", "dispatched")

Row = TypeVar("Row")


@dataclass(frozen=True)
class BatchSummary:
    """One row of ``batchctl.report_summary`` (field names are its columns)."""

    batch_id: UUID
    tenant_id: UUID
    tenant_name: str
    status: str
    options: dict[str, Any] | UndecodedJson
    cancel_reason: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    as_of: datetime  # the snapshot's time: what "now" means for an unfinished batch
    total: int
    queued: int
    running: int
    dispatched: int
    completed: int
    failed: int
    declined: int
    cancelled: int
    duplicates: int
    dnc_skipped: int
    outcomes: dict[str, int]  # entries per last call status; "none": never called
    calls: int
    calls_per_attempt: dict[str, int]  # JSON object: attempt number (as text) -> call logs
    median_duration_s: float | None
    p90_duration_s: float | None
    total_duration_s: Decimal | None
    # The keys of the entries' last call analysis and of their leads' context, each most used
    # first, then by name, at most 1000: the Calls sheet's columns (key_columns.py).
    analysis_keys: list[str]
    context_keys: list[str]
    unsplit_contexts: int  # contexts that may have to be shown whole, as text (see the SQL)

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def pending(self) -> int:
        return self.queued + self.running + self.dispatched

    @property
    def counts(self) -> dict[str, int]:
        """Entries per status, in ENTRY_STATUSES order."""
        return {status: getattr(self, status) for status in ENTRY_STATUSES}

    @property
    def attempts(self) -> list[tuple[int, int]]:
        """(attempt number, call logs) in attempt order."""
        return sorted((int(k), n) for k, n in self.calls_per_attempt.items())

    @property
    def duration(self) -> timedelta | None:
        """Started to finished, or to the snapshot while the batch is still open."""
        if self.started_at is None:
            return None
        return (self.finished_at or self.as_of) - self.started_at


@dataclass(frozen=True)
class EntryRow:
    """A row of ``batchctl.report_entries``: one entry and its last call."""

    entry_index: int
    to_phone: str
    lead_name: str | None
    lead_id: str | None
    context: dict[str, Any] | UndecodedJson
    status: str
    outcome: str | None
    attempts: int
    last_error: str | None
    last_call_ended_at: datetime | None
    duration_seconds: Decimal | None
    summary: str | None
    analysis: dict[str, Any] | UndecodedJson | None


@dataclass(frozen=True)
class CallRow:
    """A row of ``batchctl.report_calls``: one dial attempt."""

    entry_index: int
    to_phone: str
    lead_name: str | None
    attempt: int
    status: str
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    duration_seconds: Decimal | None
    error: str | None
    summary: str | None
    room_name: str
    dispatch_id: str | None
    detail: dict[str, Any] | UndecodedJson


async def read_summary(conn: psycopg.AsyncConnection[Any], batch_id: UUID) -> BatchSummary:
    """The batch's figures; the function raises BC002 for a batch the caller cannot see."""
    async with conn.cursor(row_factory=class_row(BatchSummary)) as cur:
        tolerate_undecodable_json(cur)
        await cur.execute("SELECT * FROM batchctl.report_summary(%s)", (batch_id,))
        summary = await cur.fetchone()
    assert summary is not None  # report_summary raises rather than return nothing
    return summary


def stream_entries(
    conn: psycopg.AsyncConnection[Any], batch_id: UUID
) -> AsyncIterator[list[EntryRow]]:
    return _stream(conn, EntryRow, "report_entries", ("entry_index",), batch_id)


def stream_calls(
    conn: psycopg.AsyncConnection[Any], batch_id: UUID
) -> AsyncIterator[list[CallRow]]:
    return _stream(conn, CallRow, "report_calls", ("entry_index", "attempt"), batch_id)


async def _stream(
    conn: psycopg.AsyncConnection[Any],
    row_type: type[Row],
    view: str,
    order_by: tuple[str, ...],
    batch_id: UUID,
) -> AsyncIterator[list[Row]]:
    """The view's rows of the batch, CHUNK_ROWS at a time, as ``row_type`` (whose fields name
    the columns). Needs an open transaction: a server-side cursor lives in one."""
    query = sql.SQL("SELECT {columns} FROM batchctl.{view} WHERE batch_id = %s ORDER BY {order}")
    query = query.format(
        columns=sql.SQL(", ").join(sql.Identifier(f.name) for f in fields(row_type)),  # type: ignore[arg-type]
        view=sql.Identifier(view),
        order=sql.SQL(", ").join(map(sql.Identifier, order_by)),
    )
    async with conn.cursor(name=f"batchctl_{view}", row_factory=class_row(row_type)) as cur:
        tolerate_undecodable_json(cur)
        await cur.execute(query, (batch_id,))
        while rows := await cur.fetchmany(CHUNK_ROWS):
            yield rows
