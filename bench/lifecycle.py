"""Lifecycle benchmark: how fast the SQL state machine moves calls, and whether its per-call costs
stay flat as batches and history grow.

    python bench/lifecycle.py [--quick]

Part 1 (throughput): many batches at once, N client connections each looping claim_entries(10)
-> mark_dispatched -> report_call_status ringing -> ongoing -> ended, every SQL call its own
autocommit transaction; pgbench's simple-update workload (-N) on the same server is the ceiling.
The same lifecycle is also run as a pgbench script, so that one C client drives both sides, in
short runs that alternate with pgbench -N (the median of the pairs' ratios is the figure, and
where each side's backends spent their time, sampled from pg_stat_activity, is printed).
Part 2 (flat costs): the per-call cost of batch_status, claim_entries, mark_dispatched, the
(completing) report_call_status and sweep on a 1k-entry batch with no history, then again with
1M finished entries and 5M events of history in the tables, and on a 100k-entry batch beside that
history. The ratios should stay near 1: these are O(1) / O(live rows) by design.

It prints figures and asserts nothing about speed. It runs on a fresh embedded PostgreSQL (temp
data directory, deleted afterwards), or on the server named by BATCHCTL_DATABASE_URL, where it
creates two scratch databases and drops them afterwards (the role needs CREATEDB).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from benchlib import (
    load,
    machine,
    pg_bin,
    scratch_database,
    section,
    server,
    wait_events,
    wait_profile,
)

Conn = psycopg.Connection[TupleRow]
T = TypeVar("T")

BENCH_DB = "batchctl_bench_lifecycle"
PGBENCH_DB = "batchctl_bench_pgbench"
FLAT_DB = "batchctl_bench_flat"
CLAIM = 10  # entries per claim_entries call, as the daemon's claims


@dataclass(frozen=True)
class Plan:
    tenants: int
    cap: int  # max_concurrent_calls per tenant
    batches: int
    entries: int  # per batch
    clients: int
    compare_s: float  # threads-vs-processes probe, per mode
    run_s: float  # each measured throughput run
    pgbench_scale: int
    pgbench_s: int
    pairs: int  # alternating pgbench -N / lifecycle-script runs, for the median ratio
    pair_s: int  # each run of a pair
    history: int  # finished entries loaded before the flat-cost runs
    small: int
    big: int
    reps: int  # samples per operation (median)
    completion_reps: int  # each needs its own batch, so fewer


FULL = Plan(
    tenants=20,
    cap=25,
    batches=40,
    entries=500,
    clients=4,
    compare_s=3,
    run_s=15,
    pgbench_scale=10,
    pgbench_s=15,
    pairs=5,
    pair_s=8,
    history=1_000_000,
    small=1_000,
    big=100_000,
    reps=30,
    completion_reps=5,
)
QUICK = Plan(
    tenants=10,
    cap=25,
    batches=20,
    entries=300,
    clients=4,
    compare_s=1.5,
    run_s=4,
    pgbench_scale=10,
    pgbench_s=4,
    pairs=3,
    pair_s=3,
    history=100_000,
    small=1_000,
    big=100_000,
    reps=12,
    completion_reps=3,
)


# --------------------------------------------------------------------------- small helpers


def one(conn: Conn, query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one client round trip, in milliseconds (Unix socket: ~0.05 ms overhead)."""
    t0 = time.perf_counter()
    result = fn()
    return (time.perf_counter() - t0) * 1000, result


def phone_entries(n: int, prefix: str) -> str:
    """n distinct E.164 numbers under a per-batch prefix, as create_batch's JSON."""
    return json.dumps(
        [{"to_phone": f"+1{prefix}{i:06d}", "lead_name": f"Lead {i}"} for i in range(n)]
    )


# --------------------------------------------------------------------------- part 1: throughput


@dataclass
class WorkerResult:
    lifecycles: int = 0
    txns: int = 0
    empty_claims: int = 0
    started: float = 0.0
    ended: float = 0.0


def lifecycle_worker(
    url: str, worker: str, seconds: float, ready: Any, batched: bool = False
) -> WorkerResult:
    """One client: the daemon's and the voice worker's calls in turn, each call one autocommit
    transaction; ``batched``: each step for the claim's 10 entries at once, as the completers
    send them (mark_dispatched_many, report_call_statuses). Module-level so that
    multiprocessing (spawn) can pickle it; `ready` is a barrier (threading or multiprocessing) so
    that all clients start together, connected."""
    res = WorkerResult()
    with psycopg.connect(url, autocommit=True) as conn:
        ready.wait()
        res.started = time.time()
        stop_at = res.started + seconds
        # Stop claiming at the deadline but finish what was claimed, so the next run starts
        # with nothing in flight.
        while time.time() < stop_at:
            claims = conn.execute(
                "SELECT entry_id, room_name FROM batchctl.claim_entries(%s, %s, 60)",
                (worker, CLAIM),
            ).fetchall()
            if not claims:
                # Another claimer holds the tenants' locks (SKIP LOCKED) or caps are reached:
                # not a step of any lifecycle, so not counted as a lifecycle transaction.
                res.empty_claims += 1
                time.sleep(0.002)
                continue
            res.txns += 1
            if batched:
                calls = [
                    call
                    for (call,) in conn.execute(
                        "SELECT call_log_id FROM batchctl.mark_dispatched_many(%s, %s, %s)",
                        ([e for e, _ in claims], [r for _, r in claims], ["d"] * len(claims)),
                    )
                ]
                for status in ("ringing", "ongoing", "ended"):
                    conn.execute(
                        "SELECT * FROM batchctl.report_call_statuses(%s, %s)",
                        (calls, [status] * len(calls)),
                    )
                res.txns += 4
            else:
                calls = [
                    one(conn, "SELECT batchctl.mark_dispatched(%s, %s, %s)", e, room, "d-" + room)
                    for e, room in claims
                ]
                # The voice worker's progress reports for the wave of live calls.
                for status in ("ringing", "ongoing", "ended"):
                    for call in calls:
                        conn.execute("SELECT batchctl.report_call_status(%s, %s)", (call, status))
                res.txns += 4 * len(calls)
            res.lifecycles += len(calls)
        res.ended = time.time()
    return res


def _process_worker(
    url: str, worker: str, seconds: float, ready: Any, out: Any, batched: bool
) -> None:
    out.put(lifecycle_worker(url, worker, seconds, ready, batched))


@dataclass
class RunResult:
    mode: str
    batched: bool
    clients: int
    lifecycles: int
    txns: int
    empty_claims: int
    seconds: float

    @property
    def lifecycles_per_s(self) -> float:
        return self.lifecycles / self.seconds

    @property
    def txns_per_s(self) -> float:
        return self.txns / self.seconds


def run_clients(
    url: str, mode: str, clients: int, seconds: float, batched: bool = False
) -> RunResult:
    names = [f"bench-{mode}-{i}" for i in range(clients)]
    results: list[WorkerResult] = []
    if mode == "processes":
        # spawn, not fork: the parent holds connections and a server handle (atexit hooks).
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Barrier(clients)
        out = ctx.Queue()
        procs = [
            ctx.Process(target=_process_worker, args=(url, n, seconds, ready, out, batched))
            for n in names
        ]
        for p in procs:
            p.start()
        results = [out.get() for _ in procs]  # before join: a full queue would block the child
        for p in procs:
            p.join()
    else:
        barrier = threading.Barrier(clients)

        def run(name: str) -> None:
            results.append(lifecycle_worker(url, name, seconds, barrier, batched))

        threads = [threading.Thread(target=run, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(results) == clients, "a client failed; see its traceback above"
    begun = min(r.started for r in results)
    done = max(r.ended for r in results)
    return RunResult(
        mode,
        batched,
        clients,
        sum(r.lifecycles for r in results),
        sum(r.txns for r in results),
        sum(r.empty_claims for r in results),
        done - begun,
    )


def fresh_batches(conn: Conn, tenants: list[UUID], plan: Plan, run_no: int, scale: int = 1) -> None:
    """Cancel what the previous run left queued and create a new set of batches, so each run
    starts from the same state: plan.batches batches spread over the tenants, nothing in flight
    (``scale`` times plan.entries each, for a run that moves entries faster)."""
    cancel_open_batches(conn, tenants, "bench: next run")
    for b in range(plan.batches):
        entries = phone_entries(plan.entries * scale, f"{run_no:02d}{b:02d}")
        conn.execute(
            "SELECT batchctl.create_batch(%s, %s::jsonb)", (tenants[b % len(tenants)], entries)
        )


def function_stats(conn: Conn) -> dict[str, tuple[int, float, float]]:
    """calls, total ms, self ms per function (track_functions = all in the bench database)."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = conn.execute("""
        SELECT funcname, calls, total_time, self_time FROM pg_stat_user_functions
         WHERE schemaname = 'batchctl'""").fetchall()
    return {name: (calls, total, self_) for name, calls, total, self_ in rows}


def print_function_breakdown(
    before: dict[str, tuple[int, float, float]],
    after: dict[str, tuple[int, float, float]],
    lifecycles: int,
) -> None:
    diff = []
    for name, (calls, total, self_) in after.items():
        c0, t0, s0 = before.get(name, (0, 0.0, 0.0))
        if calls > c0:
            diff.append((self_ - s0, total - t0, calls - c0, name))
    diff.sort(reverse=True)
    print("  server time per function (pg_stat_user_functions, track_functions=all):")
    print(f"  {'function':<28}{'calls/entry':>12}{'self ms/call':>14}{'total ms/call':>15}")
    for self_ms, total_ms, calls, name in diff[:9]:
        print(
            f"  {name:<28}{calls / lifecycles:>12.2f}{self_ms / calls:>14.3f}"
            f"{total_ms / calls:>15.3f}"
        )


def pgbench_tps(url: str, clients: int, seconds: int, script: Path | None = None) -> float:
    """pgbench's -N workload, or with ``script`` that script, run by ``clients`` connections:
    script runs per second."""
    exe, env = pg_bin("pgbench")
    workload = ["-N"] if script is None else ["-n", "-f", str(script)]
    threads = str(min(clients, 2))
    out = subprocess.run(
        [str(exe), *workload, "-c", str(clients), "-j", threads, "-T", str(seconds), url],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    match = re.search(r"tps = ([0-9.]+)", out)
    assert match, out
    return float(match.group(1))


def lifecycle_script(claim: int) -> str:
    """The lifecycle as a pgbench script, so that pgbench's own client drives it as it drives -N
    (no Python between the server and its clients): claim_entries(claim), mark_dispatched for
    each entry claimed, then ringing, ongoing and ended for each call; every line its own
    autocommit transaction. The workload always has ``claim`` entries to give."""
    n = range(1, claim + 1)
    picks = ", ".join(f"e[{i}] AS e{i}, r[{i}] AS r{i}" for i in n)
    lines = [
        f"SELECT {picks} FROM (SELECT array_agg(entry_id) AS e, array_agg(room_name) AS r"
        f" FROM batchctl.claim_entries('pgbench-' || :client_id, {claim}, 60)) c \\gset",
        *(f"SELECT batchctl.mark_dispatched(':e{i}', ':r{i}') AS c{i} \\gset" for i in n),
        *(
            f"SELECT batchctl.report_call_status(':c{i}', '{status}');"
            for status in ("ringing", "ongoing", "ended")
            for i in n
        ),
    ]
    return "\n".join(lines) + "\n"


def cancel_open_batches(conn: Conn, tenants: list[UUID], reason: str) -> None:
    conn.execute(
        """
        SELECT batchctl.cancel_batch(tenant_id, id, %s)
          FROM batchctl.batches WHERE tenant_id = ANY (%s) AND finished_at IS NULL""",
        (reason, tenants),
    )


def throughput(admin_url: str, url: str, plan: Plan) -> None:
    section("1. throughput")
    exe, env = pg_bin("pgbench")
    # pgbench gets its own database on the same server: the ceiling for small write
    # transactions on this machine. Each pgbench run goes right before ours with the same client
    # count, so both see the same neighbours (shared machines are noisy).
    with (
        scratch_database(admin_url, PGBENCH_DB, migrated=False) as pgb_url,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        t0 = time.perf_counter()
        subprocess.run(
            [str(exe), "-i", "-q", "-s", str(plan.pgbench_scale), pgb_url],
            check=True,
            capture_output=True,
            env=env,
        )
        print(f"pgbench -i -s {plan.pgbench_scale}: {time.perf_counter() - t0:.1f} s")
        tenants = [
            one(conn, "SELECT batchctl.create_tenant(%s, %s)", f"tenant-{t}", plan.cap)
            for t in range(plan.tenants)
        ]
        print(
            f"workload: {plan.tenants} tenants (max_concurrent_calls {plan.cap}), "
            f"{plan.batches} batches x {plan.entries} entries, fresh for each run; per entry: "
            "1/10 claim_entries(10) + mark_dispatched + 3 x report_call_status"
        )

        # Threads or processes: psycopg releases the GIL while it waits on the server, but the
        # client still spends Python time per call; try both briefly, keep the faster.
        probes: dict[str, RunResult] = {}
        for mode in ("threads", "processes"):
            fresh_batches(conn, tenants, plan, len(probes))
            probes[mode] = run_clients(url, mode, plan.clients, plan.compare_s)
            print(
                f"probe {plan.clients} clients as {mode:<9}: "
                f"{probes[mode].txns_per_s:,.0f} txn/s over {probes[mode].seconds:.1f} s"
            )
        best = max(probes.values(), key=lambda r: r.txns_per_s).mode
        print(f"-> using {best} for the {plan.clients}-client run")
        # The probes were the warm-up: the tables now hold calls and events, as a running
        # system's do. Statistics for them, as autovacuum would take within a minute (plans made
        # for the empty tables would scan call_logs).
        conn.execute("ANALYZE")

        runs: list[tuple[RunResult, float]] = []
        for run_no, (clients, batched) in enumerate(
            ((plan.clients, False), (1, False), (plan.clients, True)), start=10
        ):
            fresh_batches(conn, tenants, plan, run_no, scale=3 if batched else 1)
            tps = pgbench_tps(pgb_url, clients, plan.pgbench_s)
            print(
                f"pgbench -N -c {clients} -j {min(clients, 2)} -T {plan.pgbench_s}: {tps:,.0f} TPS"
            )
            before = function_stats(conn)
            mode = best if clients > 1 else "threads"
            run = run_clients(url, mode, clients, plan.run_s, batched)
            runs.append((run, tps))
            print(
                f"batchctl{', batched' if batched else ''}, {clients} client(s) for "
                f"{run.seconds:.1f} s: {run.txns_per_s:,.0f} txn/s"
            )
            if clients > 1 and not batched:
                # The clients' backends flushed their statistics when they exited.
                time.sleep(0.5)
                print_function_breakdown(before, function_stats(conn), run.lifecycles)

        # The same lifecycle with pgbench's client, as -N has: no Python client taking CPU from
        # the server on a small machine. Each script run is one claim and its entries' calls.
        # Short runs of each side alternate: a neighbour that takes CPU for a while hits both
        # runs of a pair alike, and the median of the pairs' ratios is the figure.
        pairs: list[tuple[float, float]] = []  # (lifecycle txn/s, pgbench -N TPS)
        with (
            tempfile.TemporaryDirectory() as work,
            wait_events(admin_url, PGBENCH_DB) as pgbench_waits,
            wait_events(admin_url, BENCH_DB) as lifecycle_waits,
        ):
            script = Path(work) / "lifecycle.sql"
            script.write_text(lifecycle_script(CLAIM))
            for pair in range(plan.pairs):
                fresh_batches(conn, tenants, plan, 20 + pair)
                tps = pgbench_tps(pgb_url, plan.clients, plan.pair_s)
                txns = pgbench_tps(url, plan.clients, plan.pair_s, script) * (1 + 4 * CLAIM)
                pairs.append((txns, tps))
                print(
                    f"pair {pair + 1}: pgbench -N -c {plan.clients} {tps:,.0f} TPS, the lifecycle "
                    f"script on the same client {txns:,.0f} txn/s: {100 * txns / tps:.0f}%"
                )
        print(f"  where pgbench -N's backends were: {wait_profile(pgbench_waits)}")
        print(f"  where the lifecycle's backends were: {wait_profile(lifecycle_waits)}")
        cancel_open_batches(conn, tenants, "bench: done")  # nothing left running for part 2

    print(
        f"\n  {'clients':<11}{'lifecycles/s':>14}{'SQL txn/s':>12}{'pgbench TPS':>13}"
        f"{'% of pgbench':>14}{'claims':>9}{'empty':>7}"
    )
    for r, tps in runs:
        claims = r.txns // 5 if r.batched else r.txns - 4 * r.lifecycles
        print(
            f"  {str(r.clients) + (' batched' if r.batched else ''):<11}"
            f"{r.lifecycles_per_s:>14,.0f}{r.txns_per_s:>12,.0f}"
            f"{tps:>13,.0f}{100 * r.txns_per_s / tps:>13.0f}%{claims:>9}{r.empty_claims:>7}"
        )
    ratios = sorted(txns / tps for txns, tps in pairs)
    txns = statistics.median(txns for txns, _ in pairs)
    print(
        f"  {str(plan.clients) + ' pgbench':<11}{txns / (1 + 4 * CLAIM) * CLAIM:>14,.0f}"
        f"{txns:>12,.0f}{statistics.median(tps for _, tps in pairs):>13,.0f}"
        f"{100 * statistics.median(ratios):>13.0f}%{'':>9}{'':>7}"
    )
    print(
        "  (batched: each transaction moves a claim's 10 entries one step, as the completers "
        "send them;\n   pgbench: the same SQL as the first row, driven by pgbench's client, "
        f"medians of {len(pairs)} alternating pairs;\n   the pairs' ratios ranged "
        f"{100 * ratios[0]:.0f}-{100 * ratios[-1]:.0f}%)"
    )


# --------------------------------------------------------------------------- part 2: flat costs


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
               (id, tenant_id, batch_id, entry_id, attempt, room_name, dispatch_id, status,
                answered_at, ended_at, duration_seconds, detail)
        SELECT e.call_log_id, e.tenant_id, e.batch_id, e.id, 1,
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
               (id, tenant_id, batch_id, entry_id, attempt, room_name, status, answered_at)
        SELECT e.call_log_id, e.tenant_id, e.batch_id, e.id, 1, batchctl.room_name(e.id, 1),
               'ongoing', now()
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


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about a minute")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    with server() as admin_url:
        with scratch_database(admin_url, BENCH_DB) as url:
            with psycopg.connect(url, autocommit=True) as conn:
                print(machine(conn))
                where = (
                    "BATCHCTL_DATABASE_URL"
                    if os.environ.get("BATCHCTL_DATABASE_URL")
                    else "embedded, fresh temp data dir"
                )
                print(f"mode: {'quick' if args.quick else 'full'}; server: {where}")
                # Per-function timings for part 1's breakdown (superuser setting, per database).
                conn.execute(
                    sql.SQL("ALTER DATABASE {} SET track_functions = 'all'").format(
                        sql.Identifier(BENCH_DB)
                    )
                )
            throughput(admin_url, url, plan)
        # Part 2 on a database of its own, so that its baseline is a truly empty history.
        with scratch_database(admin_url, FLAT_DB) as url:
            flat_costs(url, plan)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; {load()}")


if __name__ == "__main__":
    main()
