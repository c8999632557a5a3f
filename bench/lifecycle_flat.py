"""Lifecycle benchmark, part 2 (flat costs): whether the per-call costs stay flat as batches and
history grow.

    python bench/lifecycle_flat.py [--quick]     (bench/lifecycle.py runs it after part 1)

The per-call cost of batch_status, claim_entries, mark_dispatched, the (completing)
report_call_status and sweep on a 1k-entry batch with no history, then again with 1M finished
entries and 5M events of history in the tables, and on a 100k-entry batch beside that history.
The ratios should stay near 1: these are O(1) / O(live rows) by design.

It prints figures and asserts nothing about speed. It runs on a scratch database of its own
(benchlib.server: on a fresh embedded PostgreSQL, or BATCHCTL_DATABASE_URL's server), dropped
afterwards, so that its baseline is a truly empty history.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from benchlib import Conn, Part, one, phone_entries, run_parts, scratch_database, section

T = TypeVar("T")

FLAT_DB = "batchctl_bench_flat"


@dataclass(frozen=True)
class Plan:
    history: int  # finished entries loaded before the flat-cost runs
    small: int
    big: int
    reps: int  # samples per operation (median)
    completion_reps: int  # each needs its own batch, so fewer


FULL = Plan(history=1_000_000, small=1_000, big=100_000, reps=30, completion_reps=5)
QUICK = Plan(history=100_000, small=1_000, big=100_000, reps=12, completion_reps=3)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one client round trip, in milliseconds (Unix socket: ~0.05 ms overhead)."""
    t0 = time.perf_counter()
    result = fn()
    return (time.perf_counter() - t0) * 1000, result


def in_parallel(url: str, jobs: Sequence[Callable[[Conn], T]]) -> list[T]:
    """Run jobs on up to nproc connections, each job in its own transaction. The work is the
    server's (FK checks, index inserts), so threads suffice and bulk loads use every core."""
    local = threading.local()
    opened: list[Conn] = []
    lock = threading.Lock()

    def run(job: Callable[[Conn], T]) -> T:
        conn: Conn | None = getattr(local, "conn", None)
        if conn is None:
            conn = psycopg.connect(url, autocommit=True)
            local.conn = conn
            with lock:
                opened.append(conn)
        with conn.transaction():
            return job(conn)

    try:
        with ThreadPoolExecutor(max(1, min(os.cpu_count() or 1, len(jobs)))) as pool:
            return list(pool.map(run, jobs))
    finally:
        for conn in opened:
            conn.close()


HISTORY_BATCH = 1000  # entries per history batch


def load_history_chunk(tenant: UUID, n_batches: int, conn: Conn) -> None:
    """n_batches finished batches of HISTORY_BATCH entries, straight into the tables.

    Batches are inserted 'running' and empty; inserting their entries already terminal lets the
    statement trigger (entries_after_insert) set total and completed_count, and the batch trigger
    then completes and finishes each batch and writes its (skipped) report: the same invariants
    the API keeps. Each entry gets its call log (whose insert trigger writes the call's event) and
    four more events, its own three moves and the call's end: five per entry (the real flow
    writes about seven)."""
    conn.execute("SELECT batchctl.set_reason('bench history')")
    ids = [
        r[0]
        for r in conn.execute(
            """
        INSERT INTO batchctl.batches (tenant_id, status, options, created_at, started_at)
        SELECT %s, 'running', o.options, ts, ts
          FROM (SELECT batchctl.normalize_options('{}') AS options) o,
               LATERAL (SELECT now() - interval '1 hour' * g AS ts
                          FROM generate_series(1, %s) g) t
        RETURNING id""",
            (tenant, n_batches),
        ).fetchall()
    ]
    conn.execute(
        """
        INSERT INTO batchctl.batch_entries
               (batch_id, tenant_id, entry_index, to_phone, lead_name, status, outcome,
                attempts, call_log_id, updated_at)
        SELECT b, %s, i, '+1415' || lpad(i::text, 7, '0'), 'Lead ' || i, 'completed',
               'ended', 1, gen_random_uuid(), now()
          FROM unnest(%s::uuid[]) b, generate_series(0, %s - 1) i""",
        (tenant, ids, HISTORY_BATCH),
    )
    conn.execute(
        """
        INSERT INTO batchctl.call_logs
               (id, tenant_id, batch_id, entry_id, to_phone, attempt, room_name, dispatch_id,
                status, answered_at, ended_at, duration_seconds, detail)
        SELECT e.call_log_id, e.tenant_id, e.batch_id, e.id, e.to_phone, 1,
               batchctl.room_name(e.id, 1), 'd-' || e.id, 'ended', now(), now(), 42.0,
               '{"summary": "history"}'
          FROM batchctl.batch_entries e WHERE e.batch_id = ANY (%s)""",
        (ids,),
    )
    conn.execute(
        """
        INSERT INTO batchctl.events
               (tenant_id, batch_id, object, object_id, from_status, to_status, reason)
        SELECT e.tenant_id, e.batch_id, m.object, CASE m.object WHEN 'entry' THEN e.id
                                                          ELSE e.call_log_id END,
               m.from_status, m.to_status, 'bench history'
          FROM batchctl.batch_entries e
         CROSS JOIN (VALUES ('entry', 'queued', 'running'), ('entry', 'running', 'dispatched'),
                            ('entry', 'dispatched', 'completed'), ('call', 'in_queue', 'ended'))
                    AS m (object, from_status, to_status)
         WHERE e.batch_id = ANY (%s)""",
        (ids,),
    )


def load_history(url: str, entries: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        tenant = one(conn, "SELECT batchctl.create_tenant('history', 100)")
    n_batches = max(1, entries // HISTORY_BATCH)
    chunk = 50  # batches per transaction: bounds the transition tables the triggers read
    t0 = time.perf_counter()
    in_parallel(
        url,
        [
            partial(load_history_chunk, tenant, min(chunk, n_batches - first))
            for first in range(0, n_batches, chunk)
        ],
    )
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        # What autovacuum would eventually do; explicit so every run measures the same state.
        for table in ("batches", "batch_entries", "call_logs", "events", "reports"):
            conn.execute(sql.SQL("VACUUM (ANALYZE) batchctl.{}").format(sql.Identifier(table)))
        counts = conn.execute("""
            SELECT (SELECT count(*) FROM batchctl.batch_entries),
                   (SELECT count(*) FROM batchctl.call_logs),
                   (SELECT count(*) FROM batchctl.events),
                   pg_size_pretty(pg_database_size(current_database()))""").fetchone()
    assert counts is not None
    print(
        f"history: {n_batches * HISTORY_BATCH:,} finished entries loaded in {load_s:.1f} s "
        f"({min(os.cpu_count() or 1, -(-n_batches // chunk))} connections), vacuum analyze "
        f"{time.perf_counter() - t0:.1f} s; tables now hold {counts[0]:,} entries, "
        f"{counts[1]:,} call logs, {counts[2]:,} events ({counts[3]})"
    )


def completion_batch(tenant: UUID, size: int, conn: Conn) -> UUID:
    """A running batch of size entries, all terminal but one whose call is ongoing: its final
    report completes the batch. Built by INSERT (a 100k batch per sample through the API would
    take minutes); the fillers are 'cancelled' (never dialled, so no call log), and the entry
    insert trigger keeps the counters."""
    conn.execute("SELECT batchctl.set_reason('bench completion setup')")
    batch: UUID = one(
        conn,
        """
        INSERT INTO batchctl.batches (tenant_id, status, options, started_at)
        VALUES (%s, 'running', batchctl.normalize_options('{}'), now()) RETURNING id""",
        tenant,
    )
    conn.execute(
        """
        INSERT INTO batchctl.batch_entries
               (batch_id, tenant_id, entry_index, to_phone, status, attempts, call_log_id,
                last_error)
        SELECT %s, %s, i, '+1415' || lpad(i::text, 7, '0'),
               CASE WHEN i = 0 THEN 'dispatched' ELSE 'cancelled' END::batchctl.entry_status,
               (i = 0)::int, CASE WHEN i = 0 THEN gen_random_uuid() END,
               CASE WHEN i > 0 THEN 'cancelled' END
          FROM generate_series(0, %s - 1) i""",
        (batch, tenant, size),
    )
    conn.execute(
        """
        INSERT INTO batchctl.call_logs
               (id, tenant_id, batch_id, entry_id, to_phone, attempt, room_name, status,
                answered_at)
        SELECT e.call_log_id, e.tenant_id, e.batch_id, e.id, e.to_phone, 1,
               batchctl.room_name(e.id, 1), 'ongoing', now()
          FROM batchctl.batch_entries e WHERE e.batch_id = %s AND e.status = 'dispatched'""",
        (batch,),
    )
    return batch


@dataclass
class Samples:
    ms: dict[str, list[float]] = field(default_factory=dict)

    def add(self, op: str, value: float) -> None:
        self.ms.setdefault(op, []).append(value)

    def median(self, op: str) -> float:
        return statistics.median(self.ms[op])


def claim_ten(conn: Conn) -> list[TupleRow]:
    return conn.execute(
        "SELECT entry_id, room_name FROM batchctl.claim_entries('bench-flat', 10, 60)"
    ).fetchall()


def measure_batch(conn: Conn, tenant: UUID, batch: UUID, plan: Plan) -> Samples:
    """The per-call costs while this batch is the one running (queued entries, a wave in flight)."""
    s = Samples()
    pending = one(conn, "SELECT status = 'pending' FROM batchctl.batches WHERE id = %s", batch)
    verb = "start" if pending else "resume"  # a warm-up pass left it paused
    conn.execute(f"SELECT batchctl.{verb}_batch(%s, %s)", (tenant, batch))
    for _ in range(plan.reps):
        ms, _ = timed(partial(one, conn, "SELECT batchctl.batch_status(%s, %s)", tenant, batch))
        s.add("batch_status", ms)
    for _ in range(plan.reps):
        ms, claims = timed(partial(claim_ten, conn))
        assert len(claims) == 10, f"claimed {len(claims)} entries, expected 10"
        s.add("claim_entries(10)", ms)
        calls = []
        for entry, room in claims:
            ms, call = timed(
                partial(one, conn, "SELECT batchctl.mark_dispatched(%s, %s)", entry, room)
            )
            s.add("mark_dispatched", ms)
            calls.append(call)
        for call in calls:
            conn.execute("SELECT batchctl.report_call_status(%s, 'ringing')", (call,))
        # With a wave of live calls and the batch's queued entries: the steady state cron sees.
        ms, _ = timed(partial(one, conn, "SELECT batchctl.sweep()"))
        s.add("sweep", ms)
        for call in calls:
            conn.execute("SELECT batchctl.report_call_status(%s, 'ongoing')", (call,))
        for call in calls:
            ms, _ = timed(
                partial(one, conn, "SELECT batchctl.report_call_status(%s, 'ended')", call)
            )
            s.add("report ended (not last)", ms)
    conn.execute("SELECT batchctl.pause_batch(%s, %s)", (tenant, batch))  # out of the next claims
    return s


def measure_completion(conn: Conn, batches: list[UUID], into: Samples) -> None:
    for batch in batches:
        call = one(
            conn,
            """
            SELECT c.id FROM batchctl.call_logs c
             WHERE c.batch_id = %s AND c.status = 'ongoing'""",
            batch,
        )
        ms, entry_status = timed(
            partial(one, conn, "SELECT batchctl.report_call_status(%s, 'ended')", call)
        )
        finished = one(
            conn, "SELECT finished_at IS NOT NULL FROM batchctl.batches WHERE id = %s", batch
        )
        # A correctness guard, not a speed one: a sample that did not finish its batch would
        # measure the wrong path.
        assert entry_status == "completed" and finished, (entry_status, finished)
        into.add("report ended (completes batch)", ms)


def measure_sizes(
    url: str, plan: Plan, sizes: dict[str, tuple[int, str]], label: str
) -> dict[str, Samples]:
    """Fresh batches (name -> size, phone prefix), each on its own tenant, measured in turn.
    The first is measured twice, the first time only to warm the caches (plans, pages), so
    that no size pays for them."""
    with psycopg.connect(url, autocommit=True) as conn:
        tenants = {
            k: one(conn, "SELECT batchctl.create_tenant(%s, 1000)", f"flat-{label}-{k}")
            for k in sizes
        }
        batches: dict[str, UUID] = {}
        for k, (n, prefix) in sizes.items():
            ms, batches[k] = timed(
                partial(
                    one,
                    conn,
                    "SELECT batchctl.create_batch(%s, %s::jsonb, '{\"autostart\": false}')",
                    tenants[k],
                    phone_entries(n, prefix),
                )
            )
            print(f"{label}: create_batch with {n:,} entries: {ms / 1000:.2f} s")
    # One batch per completion sample (the first, tiny, only warms the plan caches).
    first = next(iter(tenants.values()))
    jobs = [partial(completion_batch, first, 10)] + [
        partial(completion_batch, tenants[k], n)
        for k, (n, _) in sizes.items()
        for _ in range(plan.completion_reps)
    ]
    built = in_parallel(url, jobs)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE batchctl.batch_entries")
        conn.execute("ANALYZE batchctl.call_logs")
        measure_completion(conn, built[:1], Samples())
        warm = next(iter(sizes))
        measure_batch(conn, tenants[warm], batches[warm], plan)
        results = {k: measure_batch(conn, tenants[k], batches[k], plan) for k in sizes}
        for i, k in enumerate(sizes):
            reps = plan.completion_reps
            measure_completion(conn, built[1 + i * reps : 1 + (i + 1) * reps], results[k])
    return results


def flat_costs(url: str, plan: Plan) -> None:
    section("2. flat costs")
    empty = measure_sizes(url, plan, {"small": (plan.small, "7")}, "empty")["small"]
    load_history(url, plan.history)
    sizes = {"small": (plan.small, "8"), "big": (plan.big, "9")}
    after = measure_sizes(url, plan, sizes, "history")
    ops = [
        "batch_status",
        "claim_entries(10)",
        "mark_dispatched",
        "report ended (not last)",
        "report ended (completes batch)",
        "sweep",
    ]
    small, big = f"{plan.small // 1000}k", f"{plan.big // 1000}k"
    print(
        f"\nmedian ms per call ({plan.reps} samples; completion: {plan.completion_reps}, one "
        f"batch each); history: {plan.history:,} finished entries, 5 events each"
    )
    print(
        f"  {'operation':<32}{'empty, ' + small:>12}{'history, ' + small:>14}{'ratio':>7}"
        f"{'history, ' + big:>15}{'ratio':>7}"
    )
    for op in ops:
        e, h, b = empty.median(op), after["small"].median(op), after["big"].median(op)
        print(f"  {op:<32}{e:>12.3f}{h:>14.3f}{h / e:>7.2f}{b:>15.3f}{b / e:>7.2f}")


def run(admin_url: str, plan: Plan) -> None:
    with scratch_database(admin_url, FLAT_DB) as url:
        flat_costs(url, plan)


PART = Part(FULL, QUICK, run)

if __name__ == "__main__":
    run_parts(__doc__.split("\n\n")[0], [PART])
