"""The batch page's derived figures: the per-minute chart's span, the estimate of when a batch
finishes, and which errors count as errors (read from a real database)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg

from batchctl.dashboard import queries
from batchctl.dashboard.models import BatchLive, BatchRow, Counts, MinuteCount
from sqlapi import SqlApi, phones

NOW = datetime(2026, 12, 3, 14, 30, 25, tzinfo=UTC)


def row(status: str = "running", started: datetime | None = None,
        finished: datetime | None = None, left: int = 100) -> BatchRow:  # fmt: skip
    counts = Counts(total=left + 50, queued=left, running=0, dispatched=0, completed=50,
                    failed=0, declined=0, cancelled=0)  # fmt: skip
    return BatchRow(uuid4(), uuid4(), "t", status, counts, 0, 0, 3, NOW - timedelta(hours=1),
                    started, finished, None, None)  # fmt: skip


def minutes(first: datetime, finished: list[int]) -> list[MinuteCount]:
    return [MinuteCount(first + timedelta(minutes=i), n, n) for i, n in enumerate(finished)]


def test_the_chart_spans_the_batchs_life_within_ten_to_thirty_minutes() -> None:
    last = NOW.replace(second=0)
    span = queries.chart_span
    assert span(row("pending"), NOW) == (last - timedelta(minutes=9), last)
    assert span(row(started=NOW - timedelta(minutes=3)), NOW) == (last - timedelta(minutes=9), last)
    assert span(row(started=NOW - timedelta(minutes=20)), NOW) == (
        last - timedelta(minutes=20), last)  # fmt: skip
    assert span(row(started=NOW - timedelta(hours=2)), NOW) == (last - timedelta(minutes=29), last)
    done = NOW - timedelta(days=3)
    first, end = span(row("completed", NOW - timedelta(days=3, minutes=12), done), NOW)
    assert (first, end) == (done.replace(second=0) - timedelta(minutes=12), done.replace(second=0))


def test_the_finish_is_estimated_from_the_pace_since_the_batch_started() -> None:
    started = NOW - timedelta(minutes=5)
    first = started.replace(second=0)
    # 50 calls finished in the 5 minutes since the start, 100 entries left: 10 more minutes.
    chart = minutes(first - timedelta(minutes=4), [0, 0, 0, 0, 10, 10, 10, 10, 10, 0])
    estimate = queries.finishes_at(row(started=started), chart, NOW)
    assert estimate == NOW + timedelta(minutes=10)
    # Minutes before the start do not slow the pace down (they are not counted at all).
    assert queries.finishes_at(row(started=started), chart[4:], NOW) == estimate
    assert queries.finishes_at(row("paused", started), chart, NOW) is None
    assert queries.finishes_at(row(started=NOW - timedelta(seconds=10)), chart, NOW) is None
    assert queries.finishes_at(row(started=started, left=0), chart, NOW) is None


def test_errors_are_failures_not_retries_after_an_outcome_nor_cancellations(
    db_url: str, api: SqlApi
) -> None:
    tenant = api.create_tenant(max_concurrent_calls=10)
    options = {"retry_on": ["busy"], "max_attempts": 3, "retry_delay_s": 3600}
    batch = api.create_batch(tenant, phones(8), options)
    calls = api.dispatch_all(limit=8)
    api.finish_call(calls[0], "failed", {"error": "SIP 503 Service Unavailable"})
    api.finish_call(calls[1], "failed", {"error": "SIP 503 Service Unavailable"})
    api.finish_call(calls[2], "failed", {"error": "SIP 404 Not Found"})
    api.report(calls[3], "busy")  # queued again, 'retry after busy': an outcome
    for call in calls[4:]:
        api.finish_call(call, "completed")
    live = read_live(db_url, batch)
    assert [(e.error, e.count) for e in live.errors] == [
        ("SIP 503 Service Unavailable", 2), ("SIP 404 Not Found", 1)]  # fmt: skip
    assert sum(m.started for m in live.minutes) == 8
    assert sum(m.finished for m in live.minutes) == 8
    api.cancel_batch(tenant, batch, "enough")
    assert [e.error for e in read_live(db_url, batch).errors] == [
        "SIP 503 Service Unavailable", "SIP 404 Not Found"]  # fmt: skip


def read_live(db_url: str, batch: UUID) -> BatchLive:
    async def read() -> BatchLive | None:
        conn: psycopg.AsyncConnection[Any] = await psycopg.AsyncConnection.connect(db_url)
        async with conn:
            return await queries.batch_live(conn, batch)

    found = asyncio.run(read())
    assert found is not None
    return found
