"""What the report reads: the batch's figures (``batchctl.report_summary``, through the client),
its webhook deliveries per endpoint (a plain query on the tables), and its rows
(``batchctl.report_entries`` / ``report_calls``), streamed in chunks through server-side cursors
so that a 100k-entry batch never sits in memory. Run inside one transaction (see build.py).

A JSON value Python cannot decode (a context nested 10,000 levels deep, stored before the intake
bounds) comes as its text, UndecodedJson, and is shown as text: one odd lead must not cost the
whole report. Set on the report's cursors only, not on the (pooled) connection they use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from batchctl.client.aio import AsyncClient
from batchctl.client.summary import BatchSummary
from batchctl.database import UndecodedJson, tolerate_undecodable_json

CHUNK_ROWS = 2000

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Row = TypeVar("Row", bound="DataclassInstance")


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
    carrier_refusals: int
    last_error: str | None
    last_call_ended_at: datetime | None
    caller_id: str | None
    duration_seconds: Decimal | None
    summary: str | None
    analysis: dict[str, Any] | UndecodedJson | None
    consent_at: datetime | None
    consent_source: str | None


@dataclass(frozen=True)
class CallRow:
    """A row of ``batchctl.report_calls``: one dial attempt."""

    entry_index: int
    to_phone: str
    lead_name: str | None
    attempt: int
    status: str
    caller_id: str | None
    trunk: str | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    duration_seconds: Decimal | None
    error: str | None
    summary: str | None
    room_name: str
    dispatch_id: str | None
    detail: dict[str, Any] | UndecodedJson


@dataclass(frozen=True)
class WebhookRow:
    """The batch's webhook deliveries to one endpoint, by status, as of the report (the daemon
    may still be sending the pending ones: it retries for about a day). ``disabled_reason``:
    why the endpoint is switched off (a 410, or a whole failed retry schedule), None while on."""

    url: str
    delivered: int
    pending: int
    failed: int
    disabled_reason: str | None


# One grouped scan of the (batch_id, status) index; the caller's rights (row-level security
# keeps a tenant login to its own rows). Never the endpoint's secret.
_WEBHOOKS = """
    SELECT w.url,
           count(*) FILTER (WHERE d.status = 'delivered')::integer AS delivered,
           count(*) FILTER (WHERE d.status = 'pending')::integer AS pending,
           count(*) FILTER (WHERE d.status = 'failed')::integer AS failed,
           CASE WHEN w.disabled_at IS NOT NULL
                THEN coalesce(w.disabled_reason, 'switched off') END AS disabled_reason
      FROM batchctl.webhook_deliveries d
      JOIN batchctl.webhook_endpoints w ON w.tenant_id = d.tenant_id AND w.id = d.endpoint_id
     WHERE d.batch_id = %s AND d.tenant_id = %s
     GROUP BY w.tenant_id, w.id
     ORDER BY w.created_at, w.id"""


async def read_webhooks(
    conn: psycopg.AsyncConnection[Any], summary: BatchSummary
) -> list[WebhookRow]:
    """Per endpoint that has deliveries of the batch (none: an empty list)."""
    async with conn.cursor(row_factory=class_row(WebhookRow)) as cur:
        await cur.execute(_WEBHOOKS, (summary.batch_id, summary.tenant_id))
        return await cur.fetchall()


async def read_summary(conn: psycopg.AsyncConnection[Any], batch_id: UUID) -> BatchSummary:
    """The batch's figures; the function raises BC002 for a batch the caller cannot see."""
    return await AsyncClient(conn).report_summary(batch_id)


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
    columns: list[sql.Composable] = [sql.Identifier(f.name) for f in fields(row_type)]
    query = sql.SQL(
        "SELECT {columns} FROM batchctl.{view} WHERE batch_id = %s ORDER BY {order}"
    ).format(
        columns=sql.SQL(", ").join(columns),
        view=sql.Identifier(view),
        order=sql.SQL(", ").join(map(sql.Identifier, order_by)),
    )
    async with conn.cursor(name=f"batchctl_{view}", row_factory=class_row(row_type)) as cur:
        tolerate_undecodable_json(cur)
        await cur.execute(query, (batch_id,))
        while rows := await cur.fetchmany(CHUNK_ROWS):
            yield rows
