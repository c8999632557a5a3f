"""Helpers of the report tests: run the outbox as the daemon does, drive batches to their end
through the SQL API, and read a received workbook back."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import openpyxl
import psycopg
from openpyxl.workbook import Workbook
from psycopg_pool import AsyncConnectionPool

from batchctl.config import SmtpSettings
from batchctl.report.build import build_report
from batchctl.report.outbox import send_due_reports
from smtp_sink import Received
from sqlapi import SqlApi

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# What the voice worker reports for one attempt: (final call status, detail).
Attempt = tuple[str, dict[str, Any]]


def run_outbox(db_url: str, smtp: SmtpSettings, worker: str = "daemon-1") -> float | None:
    """One send_due_reports run on a pool of its own, as the daemon's report loop does."""

    async def run() -> float | None:
        async with AsyncConnectionPool(
            db_url, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False
        ) as pool:
            return await send_due_reports(pool, smtp, worker)

    return asyncio.run(run())


def drive(api: SqlApi, script: Mapping[str, Sequence[Attempt]]) -> int:
    """Dials until nothing is claimable; the k-th call to a number ends as script[number][k]
    (a number missing from the script is answered and ends 'ended'). Returns the calls made."""
    made = 0
    while claims := api.claim(limit=50):
        for claim in claims:
            call = api.mark_dispatched(claim.entry_id, claim.room_name, f"d-{claim.room_name}")
            attempts = script.get(claim.to_phone, [("ended", {})])
            outcome, detail = attempts[claim.attempt - 1]
            api.finish_call(call, outcome, detail)
            made += 1
    return made


def set_report_due(api: SqlApi, batch_id: UUID) -> None:
    """Skips the backoff wait instead of sleeping through minutes."""
    api.conn.execute(
        "update batchctl.reports set next_attempt_at = now() where batch_id = %s", (batch_id,)
    )


def report_row(api: SqlApi, batch_id: UUID) -> dict[str, Any]:
    row = api.conn.execute(
        "select status::text, attempts, last_error, recipients, sent_at"
        "  from batchctl.reports where batch_id = %s",
        (batch_id,),
    ).fetchone()
    assert row is not None, f"no report row for batch {batch_id}"
    return dict(row)


def batch_row(api: SqlApi, batch_id: UUID) -> dict[str, Any]:
    row = api.conn.execute("select * from batchctl.batches where id = %s", (batch_id,)).fetchone()
    assert row is not None
    return dict(row)


def attachment(received: Received) -> tuple[str, bytes]:
    (part,) = list(received.message.iter_attachments())
    payload = part.get_content()
    assert part.get_content_type() == XLSX
    assert isinstance(payload, bytes)
    return part.get_filename() or "", payload


def open_workbook(data: bytes) -> Workbook:
    return openpyxl.load_workbook(io.BytesIO(data))


def built_workbook(db_url: str, batch_id: UUID) -> Workbook:
    """The batch's report built as `batchctl report --out` builds it (no mail), read back."""

    async def build() -> bytes:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            return (await build_report(conn, batch_id)).xlsx

    return open_workbook(asyncio.run(build()))


def header(book: Workbook, sheet: str) -> tuple[Any, ...]:
    return next(book[sheet].iter_rows(max_row=1, values_only=True))


def table(book: Workbook, sheet: str) -> list[dict[str, Any]]:
    """A sheet with a header row as a list of {header: value}."""
    rows = list(book[sheet].iter_rows(values_only=True))
    header = rows[0]
    return [dict(zip(header, row, strict=True)) for row in rows[1:]]


def summary_section(book: Workbook, title: str) -> dict[str, tuple[Any, ...]]:
    """The rows of one Summary section (from its heading to the next blank row): label ->
    the values beside it."""
    section: dict[str, tuple[Any, ...]] = {}
    inside = False
    for label, *values in book["Summary"].iter_rows(values_only=True):
        if label == title:
            inside = True
        elif inside and label is None:
            break
        elif inside:
            section[label] = tuple(values)
    assert inside, f"no section {title!r} in the Summary sheet"
    return section


def summary_value(book: Workbook, label: str) -> Any:
    for row_label, value, *_ in book["Summary"].iter_rows(values_only=True):
        if row_label == label:
            return value
    raise AssertionError(f"no {label!r} in the Summary sheet")
