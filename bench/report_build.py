"""Report benchmark: how long the workbook of a big batch takes to build, and whether its memory
stays flat as the batch grows (openpyxl write-only mode, rows streamed from server-side cursors).

    python bench/report_build.py [--quick]

For each size it creates one finished batch straight into the tables with set-based SQL
(mixed outcomes, a second attempt for some entries, the agent's summary and analysis on answered
calls), then builds its report as the daemon does (batchctl.report.build.build_report) in a fresh
process and prints the build time, rows per second (entries + call logs), the .xlsx size and
the process's resident memory before and at its peak. The peak should barely move from the
small batch to the big one (the .xlsx itself is held in memory: it becomes the e-mail's
attachment). It asserts nothing about speed.

It runs on a fresh embedded PostgreSQL (temp data directory, deleted afterwards), or on the
server named by BATCHCTL_DATABASE_URL, where it creates a scratch database and drops it.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from openpyxl import LXML

from batchctl.report.build import build_report
from benchlib import load, scratch_database, server

BENCH_DB = "batchctl_bench_report"
FULL = (10_000, 100_000)
QUICK = (2_000, 20_000)

# One finished batch of %(n)s entries. Outcomes cycle over 20 entries: 12 answered (two after a
# busy first attempt), 3 no answer, 2 busy twice, 1 voicemail, 1 failed, 1 never called.
ENTRIES_SQL = """
INSERT INTO batchctl.batch_entries
       (batch_id, tenant_id, entry_index, to_phone, lead_name, lead_id, context, status,
        outcome, attempts, call_log_id, last_error, updated_at)
SELECT %(batch)s, %(tenant)s, i, '+1415' || lpad(i::text, 7, '0'), 'Lead ' || i, 'L-' || i,
       jsonb_build_object('plan', (ARRAY['basic', 'pro', 'team'])[i %% 3 + 1], 'seq', i),
       o.status::batchctl.entry_status, o.outcome::batchctl.call_status, o.attempts,
       CASE WHEN o.attempts > 0 THEN gen_random_uuid() END, o.error, now()
  FROM generate_series(0, %(n)s - 1) i
  JOIN (VALUES (0, 9, 'completed', 'ended', 1, NULL),
               (10, 11, 'completed', 'ended', 2, NULL),
               (12, 14, 'declined', 'no_answer', 1, NULL),
               (15, 16, 'declined', 'busy', 2, NULL),
               (17, 17, 'declined', 'voicemail', 1, NULL),
               (18, 18, 'failed', 'failed', 1, 'SIP 503 service unavailable'),
               (19, 19, 'cancelled', NULL, 0, 'expired')
       ) o (lo, hi, status, outcome, attempts, error) ON i %% 20 BETWEEN o.lo AND o.hi
"""

# Every attempt's call log; the last one is the entry's call_log_id and carries its outcome.
CALLS_SQL = """
INSERT INTO batchctl.call_logs
       (id, tenant_id, batch_id, entry_id, to_phone, attempt, room_name, dispatch_id, status,
        started_at, answered_at, ended_at, duration_seconds, detail)
SELECT CASE WHEN last THEN e.call_log_id ELSE gen_random_uuid() END, e.tenant_id, e.batch_id,
       e.id, e.to_phone, a, batchctl.room_name(e.id, a), 'AD_' || e.entry_index || '_' || a,
       CASE WHEN last THEN e.outcome ELSE 'busy' END, t0, CASE WHEN talk THEN t0 END,
       t0 + make_interval(secs => CASE WHEN talk THEN secs ELSE 20 END),
       CASE WHEN talk THEN secs END,
       CASE WHEN talk THEN jsonb_build_object(
                'summary', 'Spoke with lead ' || e.entry_index || '; interested in a demo.',
                'analysis', jsonb_build_object(
                    'interest', (ARRAY['low', 'medium', 'high'])[e.entry_index %% 3 + 1],
                    'callback', e.entry_index %% 2 = 0,
                    'score', e.entry_index %% 10))
            WHEN e.outcome = 'failed' THEN jsonb_build_object('error', e.last_error)
            ELSE '{}' END
  FROM batchctl.batch_entries e
 CROSS JOIN LATERAL generate_series(1, e.attempts) a
 CROSS JOIN LATERAL (SELECT a = e.attempts AS last,
                            now() - interval '2 hours' + make_interval(secs => a * 600) AS t0,
                            (10 + e.entry_index %% 290)::numeric AS secs) k
 CROSS JOIN LATERAL (SELECT k.last AND e.outcome = 'ended' AS talk) w
 WHERE e.batch_id = %(batch)s
"""


def create_batch(url: str, n: int) -> UUID:
    """A batch of n entries, finished: inserting its entries terminal lets the triggers count
    them, complete the batch and write its report row, as the API would."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT batchctl.set_reason('bench report setup')")
        tenant = _value(conn, "SELECT batchctl.create_tenant(%s, 100)", f"bench-{n}")
        batch: UUID = _value(
            conn,
            """INSERT INTO batchctl.batches (tenant_id, status, options, created_at, started_at)
               VALUES (%s, 'running',
                       batchctl.normalize_options('{"report_to": ["ops@example.com"]}'),
                       now() - interval '3 hours', now() - interval '3 hours')
               RETURNING id""",
            tenant,
        )
        params = {"batch": batch, "tenant": tenant, "n": n}
        conn.execute(ENTRIES_SQL, params)
        conn.execute(CALLS_SQL, params)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) batchctl.batch_entries, batchctl.call_logs")
    return batch


def _value(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


@dataclass(frozen=True)
class Measured:
    seconds: float
    entries: int
    calls: int
    xlsx_bytes: int
    rss_before_mb: float  # the fresh process, everything imported and connected
    rss_peak_mb: float


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def build(url: str, batch: UUID) -> Measured:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT 1")
        before = max_rss_mb()
        t0 = time.perf_counter()
        report = await build_report(conn, batch)
        seconds = time.perf_counter() - t0
        peak = max_rss_mb()
    s = report.summary
    return Measured(seconds, s.total, s.calls, len(report.xlsx), before, peak)


def build_in_this_process(url: str, batch: UUID) -> Measured:
    """Runs in a fresh process per batch, so that its peak RSS is this build's alone."""
    return asyncio.run(build(url, batch))


def measure(url: str, batch: UUID) -> None:
    # spawn, not fork: a fresh interpreter, not a copy of this one's memory.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        m = pool.submit(build_in_this_process, str(url), batch).result()
    rows = m.entries + m.calls
    print(
        f"{m.entries:>9,} entries {m.calls:>9,} calls: build {m.seconds:6.1f} s, "
        f"{rows / m.seconds:>7,.0f} rows/s, xlsx {m.xlsx_bytes / 1e6:5.1f} MB, "
        f"RSS {m.rss_before_mb:.0f} MB before, peak {m.rss_peak_mb:.0f} MB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK} instead of {FULL}")
    sizes = QUICK if parser.parse_args().quick else FULL
    with server() as admin_url, scratch_database(admin_url, BENCH_DB) as url:
        backend = "lxml" if LXML else "et_xmlfile (pure Python; with lxml installed it uses lxml)"
        print(f"report build; openpyxl XML writer: {backend}; {load()}")
        for n in sizes:
            t0 = time.perf_counter()
            batch = create_batch(url, n)
            print(f"created a finished {n:,}-entry batch in {time.perf_counter() - t0:.1f} s")
            measure(url, batch)


if __name__ == "__main__":
    main()
