"""The dashboard's reads. Each runs on a connection already acting for the viewer (access.py):
row-level security decides which batches exist for it, so a query never filters by tenant for
safety's sake, only when the viewer asks to. Every read is bounded by an index: the batch row by
its key, live calls by entries_in_flight, the per-minute chart by call_logs_by_batch_started and
_ended, errors by entries_errors, entries by entries_by_batch_index or, filtered by a final status,
entries_finished_by_batch_index (a live status: the claim's partial indexes), keyset, never
OFFSET."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from batchctl.dashboard.models import (
    BatchLive,
    BatchRow,
    CampaignsPage,
    Counts,
    EntriesPage,
    EntryRow,
    ErrorCount,
    HistoryItem,
    LiveCall,
    MinuteCount,
)

Conn = psycopg.AsyncConnection[Any]
Query = sql.SQL | sql.Composed

CAMPAIGNS_PAGE = 25
ENTRIES_PAGE = 50
LIVE_CALLS_SHOWN = 20
ERRORS_SHOWN = 6
HISTORY_SHOWN = 8
CHART_MINUTES = 30  # the per-minute chart's longest span
CHART_MIN_MINUTES = 10  # and its shortest, for a batch that has just started
PACE_MINUTES = 10  # the estimate of when a batch finishes follows this many last minutes
MIN_PACE_SECONDS = 20  # and needs at least this much of them

BATCH_ROW = sql.SQL("""
SELECT b.id, b.tenant_id, t.name AS tenant_name, b.status::text AS status, b.total,
       b.queued_count, b.running_count, b.dispatched_count, b.completed_count, b.failed_count,
       b.declined_count, b.cancelled_count, b.created_at, b.started_at, b.finished_at,
       r.status::text AS report_status, b.cancel_reason, t.max_concurrent_calls AS tenant_cap,
       (SELECT coalesce(sum(o.running_count + o.dispatched_count), 0)::int
          FROM batchctl.batches o
         WHERE o.tenant_id = b.tenant_id AND o.finished_at IS NULL) AS tenant_live_calls
  FROM batchctl.batches b
  JOIN batchctl.tenants t ON t.id = b.tenant_id
  LEFT JOIN batchctl.reports r ON r.batch_id = b.id AND r.tenant_id = b.tenant_id
""")


def mask_number(phone: str) -> str:
    """Every digit but the last four hidden: enough to tell calls apart on a shared screen."""
    return "•" * (len(phone) - 4) + phone[-4:]


def _batch_row(r: dict[str, Any]) -> BatchRow:
    counts = Counts(
        total=r["total"], queued=r["queued_count"], running=r["running_count"],
        dispatched=r["dispatched_count"], completed=r["completed_count"],
        failed=r["failed_count"], declined=r["declined_count"], cancelled=r["cancelled_count"],
    )  # fmt: skip
    return BatchRow(
        id=r["id"], tenant_id=r["tenant_id"], tenant_name=r["tenant_name"], status=r["status"],
        counts=counts, live_calls=counts.in_progress, tenant_live_calls=r["tenant_live_calls"],
        tenant_cap=r["tenant_cap"], created_at=r["created_at"], started_at=r["started_at"],
        finished_at=r["finished_at"], report_status=r["report_status"],
        cancel_reason=r["cancel_reason"],
    )  # fmt: skip


async def _rows(conn: Conn, query: Query, params: dict[str, Any]) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def tenants(conn: Conn) -> list[tuple[UUID, str]]:
    rows = await _rows(conn, sql.SQL("SELECT id, name FROM batchctl.tenants ORDER BY name, id"), {})
    return [(r["id"], r["name"]) for r in rows]


async def campaigns(
    conn: Conn,
    *,
    tenant: UUID | None,
    status: str | None,
    before: tuple[datetime, UUID] | None,
) -> CampaignsPage:
    """Batches newest first, CAMPAIGNS_PAGE at a time, after the cursor ``before``."""
    where: list[sql.Composable] = [sql.SQL("true")]
    if tenant is not None:
        where.append(sql.SQL("b.tenant_id = %(tenant)s"))
    if status is not None:
        where.append(sql.SQL("b.status = %(status)s::batchctl.batch_status"))
    if before is not None:
        where.append(sql.SQL("(b.created_at, b.id) < (%(before_at)s, %(before_id)s)"))
    query = sql.SQL("{} WHERE {} ORDER BY b.created_at DESC, b.id DESC LIMIT %(limit)s").format(
        BATCH_ROW, sql.SQL(" AND ").join(where)
    )
    params = {
        "tenant": tenant, "status": status, "limit": CAMPAIGNS_PAGE + 1,
        "before_at": before[0] if before else None, "before_id": before[1] if before else None,
    }  # fmt: skip
    rows = [_batch_row(r) for r in await _rows(conn, query, params)]
    more = len(rows) > CAMPAIGNS_PAGE
    rows = rows[:CAMPAIGNS_PAGE]
    return CampaignsPage(
        batches=rows,
        tenants=await tenants(conn),
        tenant=tenant,
        status=status,
        before=before,
        next_before=(rows[-1].created_at, rows[-1].id) if more else None,
    )


async def batch_rows(conn: Conn, batch_ids: Sequence[UUID]) -> dict[UUID, BatchRow]:
    """The batches of ``batch_ids`` that the connection may see."""
    query = sql.SQL("{} WHERE b.id = ANY(%(ids)s)").format(BATCH_ROW)
    return {r["id"]: _batch_row(r) for r in await _rows(conn, query, {"ids": list(batch_ids)})}


async def batch_live(conn: Conn, batch_id: UUID) -> BatchLive | None:
    """The batch page's live part, or None when the batch is not there for this connection."""
    row = (await batch_rows(conn, [batch_id])).get(batch_id)
    if row is None:
        return None
    p = {"batch": batch_id}
    now = await _now(conn)
    first, last = chart_span(row, now)
    calls = await _rows(conn, LIVE_CALLS, p | {"limit": LIVE_CALLS_SHOWN})
    minutes = await _rows(conn, MINUTES, p | {"first": first, "last": last})
    errors = await _rows(conn, ERRORS, p | {"limit": ERRORS_SHOWN})
    history = await _rows(conn, HISTORY, p | {"limit": HISTORY_SHOWN})
    per_minute = [MinuteCount(m["minute"], m["started"], m["finished"]) for m in minutes]
    return BatchLive(
        batch=row,
        calls=[LiveCall(mask_number(c["to_phone"]), c["status"], c["seconds"]) for c in calls],
        minutes=per_minute,
        errors=[ErrorCount(e["last_error"], e["n"]) for e in errors],
        finishes_at=finishes_at(row, per_minute, now),
        history=[HistoryItem(h["at"], h["from_status"], h["to_status"], h["reason"], h["actor"])
                 for h in history],
    )  # fmt: skip


async def _now(conn: Conn) -> datetime:
    """The database's clock (its transaction's start), which the rows' times are on."""
    found = await _rows(conn, sql.SQL("SELECT now() AS now"), {})
    moment: datetime = found[0]["now"]
    return moment


def _minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def chart_span(row: BatchRow, now: datetime) -> tuple[datetime, datetime]:
    """The per-minute chart's first and last minute: from the batch's start (at most
    CHART_MINUTES back, at least CHART_MIN_MINUTES shown) to now, or to its finish."""
    last = _minute(row.finished_at or now)
    start = _minute(row.started_at) if row.started_at else last
    first = max(start, last - timedelta(minutes=CHART_MINUTES - 1))
    return min(first, last - timedelta(minutes=CHART_MIN_MINUTES - 1)), last


def finishes_at(row: BatchRow, minutes: Sequence[MinuteCount], now: datetime) -> datetime | None:
    """When a running batch should be done at the pace of its last PACE_MINUTES (or of its
    life so far, if shorter): calls finished per second against the entries left. A retry
    makes a lead take more than one call, so it is a guess."""
    left = row.counts.queued + row.counts.in_progress
    if row.status != "running" or not left or row.started_at is None:
        return None
    since = max(_minute(now) - timedelta(minutes=PACE_MINUTES), row.started_at)
    elapsed = (now - since).total_seconds()
    finished = sum(m.finished for m in minutes if m.minute >= _minute(since))
    if elapsed < MIN_PACE_SECONDS or not finished:
        return None
    return now + timedelta(seconds=left * elapsed / finished)


LIVE_CALLS = sql.SQL("""
SELECT e.to_phone, c.status::text AS status,
       greatest(0, extract(epoch FROM now() - c.status_changed_at))::int AS seconds
  FROM batchctl.batch_entries e
  JOIN batchctl.call_logs c ON c.id = e.call_log_id AND c.tenant_id = e.tenant_id
 WHERE e.batch_id = %(batch)s AND e.status = 'dispatched'
 ORDER BY c.started_at, c.id
 LIMIT %(limit)s
""")

# Two index range counts per minute (call_logs_by_batch_started, call_logs_by_batch_ended):
# the cost follows the calls of the chart's span, never the batch's size.
MINUTES = sql.SQL("""
SELECT m.minute,
       (SELECT count(*) FROM batchctl.call_logs c
         WHERE c.batch_id = %(batch)s AND c.started_at >= m.minute
           AND c.started_at < m.minute + interval '1 minute')::int AS started,
       (SELECT count(*) FROM batchctl.call_logs c
         WHERE c.batch_id = %(batch)s AND c.ended_at >= m.minute
           AND c.ended_at < m.minute + interval '1 minute')::int AS finished
  FROM generate_series(%(first)s::timestamptz, %(last)s::timestamptz, interval '1 minute')
       AS m (minute)
 ORDER BY m.minute
""")

# What went wrong, most often first: the last error of entries that failed, or that wait for
# another try after a dispatch error or a timeout. Not a retry after busy or no answer (an
# outcome, in the outcome chart) nor why an entry was cancelled; entries_errors holds exactly
# these rows.
ERRORS = sql.SQL("""
SELECT last_error, count(*)::int AS n
  FROM batchctl.batch_entries
 WHERE batch_id = %(batch)s AND last_error IS NOT NULL AND status <> 'cancelled'
   AND last_error NOT LIKE 'retry after %%'
 GROUP BY last_error
 ORDER BY n DESC, last_error
 LIMIT %(limit)s
""")

HISTORY = sql.SQL("""
SELECT at, from_status, to_status, reason, actor
  FROM batchctl.events
 WHERE batch_id = %(batch)s AND object_id = %(batch)s AND object = 'batch'
 ORDER BY id DESC
 LIMIT %(limit)s
""")


async def entries(
    conn: Conn, batch_id: UUID, *, status: str | None, after: int | None
) -> EntriesPage:
    """ENTRIES_PAGE entries of a batch in lead order after entry_index ``after``."""
    where = sql.SQL("AND e.status = %(status)s::batchctl.entry_status") if status else sql.SQL("")
    query = sql.SQL("""
SELECT e.id, e.entry_index, e.to_phone, e.lead_name, e.status::text AS status, e.attempts,
       e.outcome::text AS outcome, e.last_error, e.updated_at
  FROM batchctl.batch_entries e
 WHERE e.batch_id = %(batch)s AND e.entry_index > %(after)s {}
 ORDER BY e.entry_index
 LIMIT %(limit)s""").format(where)
    params = {"batch": batch_id, "after": -1 if after is None else after,
              "status": status, "limit": ENTRIES_PAGE + 1}  # fmt: skip
    found = await _rows(conn, query, params)
    rows = [
        EntryRow(r["id"], r["entry_index"], mask_number(r["to_phone"]), r["lead_name"],
                 r["status"], r["attempts"], r["outcome"], r["last_error"], r["updated_at"])
        for r in found[:ENTRIES_PAGE]
    ]  # fmt: skip
    more = len(found) > ENTRIES_PAGE
    return EntriesPage(rows, status, after, rows[-1].index if more else None)
