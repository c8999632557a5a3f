"""The campaign on PgQueuer: bench/peer.py measures batchctl against it (and the bare queue).

A schema ``campaign`` beside PgQueuer's tables: tenants with max_concurrent_calls; batches with a
status and counters (total, queued, in_progress, completed, failed); entries (queued ->
in_progress -> completed | failed, with an attempt); call logs (dialing -> ended | failed).
Starting a batch inserts it, its entries and a "dial" job per entry in one transaction. The
consumer, as an application would write it around PgQueuer's Queries, per 10 entries:

  dequeue  up to 10 jobs (PgQueuer's statement)
  dial     one transaction, two round trips (the acks depend on the caps): lock the jobs' tenants,
           then batches, in id order; count each tenant's entries in progress against its cap;
           move the entries queued -> in_progress (guarded), insert their call logs, update the
           counters; log_jobs the jobs, or retry_job in 1 s those whose tenant had no free slot
  report   one transaction, one round trip: call logs -> ended, entries -> completed (guarded by
           status and attempt), counters; a batch with nothing left marked completed once

Three transactions per 10 entries, like batchctl's batched loop. It keeps: guarded moves (a
duplicate job or report changes nothing), the cap under concurrency, counters exact at every
commit, completion exactly once, one call log per attempt, no entry without its job, no ack apart
from its entry's move. It lacks: the events audit trail; NOTIFY wake-ups (beyond PgQueuer's own);
a claimed state with a lease; dispatch failures, retries by outcome, timeouts, the sweep; wave
size, call windows, time zones; fair share (jobs come FIFO: consumers crowd onto one batch and
take turns on its tenant's lock); one call per number; DNC; pause, cancel; the report outbox;
validation; tenancy (RLS, a SECURITY DEFINER API); guards no other writer can bypass.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from benchlib import one

if TYPE_CHECKING:
    from pgqueuer.models import Job
    from pgqueuer.queries import Queries

ENTRYPOINT = "dial"
BATCH = 10
RETRY_AFTER = timedelta(seconds=1)
AConn = psycopg.AsyncConnection[Any]

SCHEMA = """
CREATE SCHEMA campaign;
CREATE TABLE campaign.tenants (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE,
    max_concurrent_calls integer NOT NULL CHECK (max_concurrent_calls > 0));
CREATE TABLE campaign.batches (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id bigint NOT NULL REFERENCES campaign.tenants,
    status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed')),
    total integer NOT NULL, queued integer NOT NULL, in_progress integer NOT NULL DEFAULT 0,
    completed integer NOT NULL DEFAULT 0, failed integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz);
CREATE TABLE campaign.entries (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch_id bigint NOT NULL REFERENCES campaign.batches,
    tenant_id bigint NOT NULL REFERENCES campaign.tenants, to_phone text NOT NULL,
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'in_progress', 'completed', 'failed')),
    attempt integer NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (batch_id, to_phone));
CREATE INDEX entries_in_progress ON campaign.entries (tenant_id) WHERE status = 'in_progress';
CREATE TABLE campaign.call_logs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_id bigint NOT NULL REFERENCES campaign.entries,
    batch_id bigint NOT NULL REFERENCES campaign.batches, attempt integer NOT NULL,
    status text NOT NULL DEFAULT 'dialing' CHECK (status IN ('dialing', 'ended', 'failed')),
    started_at timestamptz NOT NULL DEFAULT now(), ended_at timestamptz,
    UNIQUE (entry_id, attempt));
"""

# Every transaction locks tenants before batches, each in id order: no deadlocks.
LOCK_TENANTS = """SELECT t.id FROM campaign.tenants t WHERE t.id IN (
    SELECT e.tenant_id FROM campaign.entries e WHERE e.id = ANY (%s)) ORDER BY t.id FOR UPDATE"""
LOCK_BATCHES = """SELECT b.id FROM campaign.batches b WHERE b.id IN (
    SELECT e.batch_id FROM campaign.entries e WHERE e.id = ANY (%s)) ORDER BY b.id FOR UPDATE"""
# After the locks, so its snapshot has what the previous holder committed. Per job in order: its
# entry, the new call log (null: not dialled), whether it waits for a slot.
DIAL = """
WITH job AS (
    SELECT j.entry_id, j.ord FROM unnest(%s::bigint[]) WITH ORDINALITY AS j (entry_id, ord)
), queued AS (
    SELECT e.id, row_number() OVER (PARTITION BY e.tenant_id ORDER BY j.ord) AS nth,
           t.max_concurrent_calls - (SELECT count(*) FROM campaign.entries p
                                      WHERE p.tenant_id = e.tenant_id
                                        AND p.status = 'in_progress') AS free
      FROM job j JOIN campaign.entries e ON e.id = j.entry_id
      JOIN campaign.tenants t ON t.id = e.tenant_id
     WHERE e.status = 'queued'
), moved AS (
    UPDATE campaign.entries e
       SET status = 'in_progress', attempt = e.attempt + 1, updated_at = now()
      FROM queued q WHERE e.id = q.id AND q.nth <= q.free AND e.status = 'queued'
    RETURNING e.id, e.batch_id, e.attempt
), logged AS (
    INSERT INTO campaign.call_logs (entry_id, batch_id, attempt)
    SELECT m.id, m.batch_id, m.attempt FROM moved m RETURNING id, entry_id
), counted AS (
    UPDATE campaign.batches b SET queued = b.queued - m.n, in_progress = b.in_progress + m.n
      FROM (SELECT batch_id, count(*) AS n FROM moved GROUP BY batch_id) m WHERE b.id = m.batch_id
)
SELECT j.entry_id, l.id, q.id IS NOT NULL AND l.id IS NULL
  FROM job j LEFT JOIN queued q ON q.id = j.entry_id LEFT JOIN logged l ON l.entry_id = j.entry_id
 ORDER BY j.ord"""
LOCK_BATCHES_OF_CALLS = """SELECT b.id FROM campaign.batches b WHERE b.id IN (
    SELECT c.batch_id FROM campaign.call_logs c WHERE c.id = ANY (%s)) ORDER BY b.id FOR UPDATE"""
REPORT = """
WITH ended AS (
    UPDATE campaign.call_logs c SET status = r.status, ended_at = now()
      FROM unnest(%s::bigint[], %s::text[]) AS r (id, status)
     WHERE c.id = r.id AND c.status = 'dialing'
    RETURNING c.entry_id, c.attempt, c.status
), finished AS (
    UPDATE campaign.entries e
       SET status = CASE c.status WHEN 'ended' THEN 'completed' ELSE 'failed' END,
           updated_at = now()
      FROM ended c WHERE e.id = c.entry_id AND e.attempt = c.attempt AND e.status = 'in_progress'
    RETURNING e.batch_id, e.status
)
UPDATE campaign.batches b
   SET in_progress = b.in_progress - f.n, completed = b.completed + f.ok,
       failed = b.failed + f.n - f.ok
  FROM (SELECT batch_id, count(*) AS n, count(*) FILTER (WHERE status = 'completed') AS ok
          FROM finished GROUP BY batch_id) f
 WHERE b.id = f.batch_id
RETURNING f.n"""
COMPLETE = """UPDATE campaign.batches SET status = 'completed', finished_at = now()
 WHERE id IN (SELECT c.batch_id FROM campaign.call_logs c WHERE c.id = ANY (%s))
   AND status = 'running' AND queued = 0 AND in_progress = 0"""


async def start_batch(conn: AConn, queries: Queries, tenant: int, phones: list[str]) -> None:
    """A batch, its entries and their jobs, in one transaction."""
    async with conn.transaction():
        cur = await conn.execute(
            """WITH b AS (INSERT INTO campaign.batches (tenant_id, total, queued)
                          VALUES (%(t)s, %(n)s, %(n)s) RETURNING id)
               INSERT INTO campaign.entries (batch_id, tenant_id, to_phone)
               SELECT b.id, %(t)s, p FROM b, unnest(%(p)s::text[]) WITH ORDINALITY u (p, i)
                ORDER BY i RETURNING id""",
            {"t": tenant, "n": len(phones), "p": phones},
        )
        ids = sorted(entry for (entry,) in await cur.fetchall())
        await queries.enqueue([ENTRYPOINT] * len(ids), [b"%d" % i for i in ids], [0] * len(ids))


async def load(url: str, entries: int) -> None:
    """PgQueuer, the schema, and bench/peer.py's shape: 4 tenants (caps never bind), 12 batches."""
    from pgqueuer.queries import Queries

    per_batch = -(-entries // 12)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        queries = Queries.from_psycopg_connection(conn)
        await queries.install()
        await conn.execute(SCHEMA)
        cur = await conn.execute(
            "INSERT INTO campaign.tenants (name, max_concurrent_calls)"
            " SELECT 't' || g, 10000 FROM generate_series(0, 3) g RETURNING id"
        )
        tenants = sorted(t for (t,) in await cur.fetchall())
        for b in range(12):
            phones = [f"+1202{b:02d}{i:06d}" for i in range(per_batch)]
            await start_batch(conn, queries, tenants[b % 4], phones)
        await conn.execute("VACUUM ANALYZE")


async def dial(conn: AConn, queries: Queries, jobs: Sequence[Job]) -> list[int]:
    """The jobs' entries dialled (in progress, call logs) and the jobs acked: the call log ids."""
    entries = [int(job.payload or b"") for job in jobs]
    async with conn.pipeline(), conn.transaction():
        await conn.execute(LOCK_TENANTS, (entries,))
        await conn.execute(LOCK_BATCHES, (entries,))
        rows = await (await conn.execute(DIAL, (entries,))).fetchall()
        waits = [job for job, (_, _, wait) in zip(jobs, rows, strict=True) if wait]
        if done := [(job, "successful", None) for job in jobs if job not in waits]:
            await queries.log_jobs(done)  # type: ignore[arg-type]
        for job in waits:
            await queries.retry_job(job, RETRY_AFTER, None)
    return [call for _, call, _ in rows if call is not None]


async def report(conn: AConn, calls: list[int], statuses: list[str]) -> int:
    """The calls' final reports ('ended' or 'failed'): one transaction. How many entries moved."""
    async with conn.pipeline():
        async with conn.transaction():
            await conn.execute(LOCK_BATCHES_OF_CALLS, (calls,))
            cur = await conn.execute(REPORT, (calls, statuses))
            await conn.execute(COMPLETE, (calls,))
        return sum(n for (n,) in await cur.fetchall())


async def campaign_client(conn: AConn, stop_at: float) -> int:
    """bench/peer.py's client: dequeue 10 -> dial -> report them ended, until ``stop_at``."""
    from pgqueuer.ports.repository import EntrypointExecutionParameter
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueEntrypoint, QueueManagerId

    queries = Queries.from_psycopg_connection(conn)
    entrypoints = {QueueEntrypoint(ENTRYPOINT): EntrypointExecutionParameter(concurrency_limit=0)}
    manager = QueueManagerId(uuid.uuid4())
    entries = 0
    while time.perf_counter() < stop_at:
        jobs = await queries.dequeue(BATCH, entrypoints, manager, None, timedelta(seconds=30))
        if not jobs:
            raise SystemExit("the PgQueuer campaign ran out of jobs: load more entries")
        calls = await dial(conn, queries, jobs)
        entries += await report(conn, calls, ["ended"] * len(calls))
    return entries


# What must hold after any run: each query counts the rows that break it.
INVARIANTS = {
    "counters = counts": """
        SELECT count(*) FROM campaign.batches b CROSS JOIN LATERAL (
            SELECT count(*) AS n, count(*) FILTER (WHERE status = 'queued') AS q,
                   count(*) FILTER (WHERE status = 'in_progress') AS p,
                   count(*) FILTER (WHERE status = 'completed') AS c,
                   count(*) FILTER (WHERE status = 'failed') AS f
              FROM campaign.entries e WHERE e.batch_id = b.id) r
         WHERE (b.total, b.queued, b.in_progress, b.completed, b.failed)
               IS DISTINCT FROM (r.n, r.q, r.p, r.c, r.f)
            OR (b.status = 'completed') <> (b.queued + b.in_progress = 0)
            OR (b.status = 'completed') <> (b.finished_at IS NOT NULL)""",
    "in progress <= cap": """
        SELECT count(*) FROM campaign.tenants t WHERE t.max_concurrent_calls < (SELECT count(*)
            FROM campaign.entries e WHERE e.tenant_id = t.id AND e.status = 'in_progress')""",
    "one call log per attempt": """
        SELECT count(*) FROM campaign.entries e CROSS JOIN LATERAL (
            SELECT count(*) AS n, count(*) FILTER (WHERE c.attempt = e.attempt
                AND c.status = CASE e.status WHEN 'completed' THEN 'ended' WHEN 'failed'
                               THEN 'failed' WHEN 'in_progress' THEN 'dialing' END) AS current
              FROM campaign.call_logs c WHERE c.entry_id = e.id) c
         WHERE c.n <> e.attempt OR (e.status <> 'queued' AND c.current <> 1)""",
    "a job per queued entry": """
        SELECT count(*) FROM campaign.entries e FULL JOIN (
            SELECT convert_from(payload, 'UTF8')::bigint AS entry_id, count(*) AS n
              FROM pgqueuer WHERE entrypoint = 'dial' AND status = 'queued' GROUP BY 1) j
            ON j.entry_id = e.id
         WHERE e.id IS NULL OR (e.status = 'queued') <> (coalesce(j.n, 0) = 1)""",
    "one ack per dialled one": """
        SELECT abs((SELECT count(*) FROM pgqueuer_log
                     WHERE entrypoint = 'dial' AND status = 'successful')
                 - (SELECT count(*) FROM campaign.entries WHERE status <> 'queued'))""",
}


def check_invariants(url: str) -> str:
    """A line saying the campaign's invariants hold, with its state; SystemExit if any breaks."""
    with psycopg.connect(url, autocommit=True) as conn:
        broken = {label: n for label, q in INVARIANTS.items() if (n := one(conn, q)) != 0}
        if broken:
            raise SystemExit(f"PgQueuer campaign invariants broken (rows breaking each): {broken}")
        dialled, total, done, batches = conn.execute(
            "SELECT sum(total - queued), sum(total), count(*) FILTER (WHERE status = 'completed'),"
            " count(*) FROM campaign.batches"
        ).fetchone() or (0, 0, 0, 0)
    return (
        f"campaign invariants hold ({', '.join(INVARIANTS)}): {dialled:,} of {total:,} entries"
        f" dialled, {done} of {batches} batches completed"
    )
