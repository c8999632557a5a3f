"""Building a batch's report: the data read in one snapshot, streamed into the workbook.

Reading is async (a pooled connection); openpyxl's work runs in a worker thread one chunk at a
time, so the event loop stays free and at most one chunk of rows is in memory.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from batchctl.client.summary import BatchSummary
from batchctl.report.compliance_data import read_compliance, stream_refusals
from batchctl.report.data import read_summary, read_webhooks, stream_calls, stream_entries
from batchctl.report.workbook import ReportWorkbook


@dataclass(frozen=True)
class BuiltReport:
    summary: BatchSummary
    xlsx: bytes

    @property
    def filename(self) -> str:
        return f"batch-{self.summary.batch_id}.xlsx"


async def build_report(
    conn: psycopg.AsyncConnection[Any], batch_id: UUID, *, role: str | None = None
) -> BuiltReport:
    """The report of any batch the connection can see, finished or not (the Summary sheet says
    which), read as ``role`` when given (a tenant login: row-level security decides what it
    sees). Raises BC002 (psycopg error) for an unknown batch."""
    book: ReportWorkbook | None = None
    try:
        async with conn.transaction():
            # One snapshot: the figures and the sheets agree even while the batch runs.
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            if role is not None:
                await conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
            summary = await read_summary(conn, batch_id)
            webhooks = await read_webhooks(conn, summary)
            book = await asyncio.to_thread(ReportWorkbook, summary, webhooks)
            async for entries in stream_entries(conn, batch_id):
                await asyncio.to_thread(book.add_entries, entries)
            async for calls in stream_calls(conn, batch_id):
                await asyncio.to_thread(book.add_calls, calls)
            compliance = await read_compliance(conn, summary)
            await asyncio.to_thread(book.add_compliance, compliance)
            async for refusals in stream_refusals(conn, summary):
                await asyncio.to_thread(book.add_refusals, refusals)
        return BuiltReport(summary, await asyncio.to_thread(book.to_bytes))
    except Exception:
        # Not on cancellation: a worker thread may still be writing to the book then (its
        # temporary files go when the process exits, which is what cancellation precedes).
        if book is not None:
            book.discard()
        raise
