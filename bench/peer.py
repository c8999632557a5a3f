"""batchctl against the same campaign built on PgQueuer, and against PgQueuer's bare queue:
entries/s from queued to a terminal outcome (jobs/s from enqueue to acknowledgement for the bare
queue), on the same server in the same run.

    python bench/peer.py [--seconds 10] [--clients 4]

PgQueuer is installed only for benchmarks (`pip install -e ".[bench]"`) and runs with its
psycopg driver and its default, durable (logged) tables. Every side uses the same harness: N
asyncio clients, each its own autocommit connection, looping for the same time, each side in a
database of its own on one server.

  batchctl  claim_entries(10) -> mark_dispatched_many for the 10 (the daemon's completer) ->
            report_call_statuses(ended) for the 10 (a completer in front of the voice
            workers' final reports): every counter, event, guard and notification of the
            real path, three transactions per 10 entries
  PgQueuer campaign (bench/peer_campaign.py): the same campaign as an application on PgQueuer
            would build it: tenants with a cap, batches with status and counters, entries and
            call logs in its own schema, a "dial" job per entry enqueued when its batch starts.
            dequeue 10 -> one transaction that checks the caps under the tenant's row lock,
            moves the entries in progress, inserts their call logs, updates the counters and
            acknowledges the jobs -> one transaction of final reports (entries completed,
            counters, a batch completed once): three transactions per 10 entries. Its docstring
            lists which of batchctl's guarantees it has and which it lacks; its invariants
            (counters = counts, caps, one call log per attempt, one job per entry) are checked
            after each of its runs, and the benchmark stops if one breaks
  PgQueuer bare queue, kept for reference: enqueue 10 jobs (one statement) -> dequeue 10 ->
            log_jobs (ack) the 10: its QueueManager's defaults (batch size 10, acknowledgements
            buffered per batch); no statuses, caps, counters or call log
  batchctl, one call per call: the same with mark_dispatched and report_call_status per entry
            (21 transactions per 10 entries), what voice workers reporting directly cost

It prints figures, the ratios, and where each side's backends spent their time (sampled from
pg_stat_activity); it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import psycopg

from benchlib import machine, scratch_database, section, server, wait_events, wait_profile
from peer_campaign import campaign_client, check_invariants
from peer_campaign import load as load_pgqueuer_campaign

BATCH = 10
PEER_DB = "batchctl_bench_peer"
PGQUEUER_DB = "batchctl_bench_pgqueuer"
CAMPAIGN_DB = "batchctl_bench_pgqueuer_campaign"
Client = Callable[[psycopg.AsyncConnection, float], Awaitable[int]]


async def run_clients(url: str, clients: int, seconds: float, client: Client) -> float:
    """Items per second over all clients, from the first client's start to the last's end."""
    conns = [await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in range(clients)]
    try:
        started = time.perf_counter()
        done = await asyncio.gather(*(client(c, started + seconds) for c in conns))
        return sum(done) / (time.perf_counter() - started)
    finally:
        for conn in conns:
            await conn.close()


async def pgqueuer_client(conn: psycopg.AsyncConnection, stop_at: float) -> int:
    from pgqueuer.ports.repository import EntrypointExecutionParameter
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueEntrypoint, QueueManagerId

    queries = Queries.from_psycopg_connection(conn)
    entrypoints = {QueueEntrypoint("call"): EntrypointExecutionParameter(concurrency_limit=0)}
    manager = QueueManagerId(uuid.uuid4())
    jobs = 0
    while time.perf_counter() < stop_at:
        await queries.enqueue(["call"] * BATCH, [b"{}"] * BATCH, [0] * BATCH)
        picked = await queries.dequeue(BATCH, entrypoints, manager, None, timedelta(seconds=30))
        await queries.log_jobs([(job, "successful", None) for job in picked])
        jobs += len(picked)
    return jobs


async def claim(conn: psycopg.AsyncConnection, worker: str) -> list[tuple[Any, str]]:
    cur = await conn.execute(
        "SELECT entry_id, room_name FROM batchctl.claim_entries(%s, %s, 60)", (worker, BATCH)
    )
    return await cur.fetchall()


async def batchctl_client(conn: psycopg.AsyncConnection, stop_at: float) -> int:
    worker = f"peer-{uuid.uuid4()}"
    entries = 0
    while time.perf_counter() < stop_at:
        claims = await claim(conn, worker)
        cur = await conn.execute(
            "SELECT call_log_id FROM batchctl.mark_dispatched_many(%s, %s, %s)",
            ([e for e, _ in claims], [r for _, r in claims], ["d-" + r for _, r in claims]),
        )
        calls = [call for (call,) in await cur.fetchall()]
        await conn.execute(
            "SELECT * FROM batchctl.report_call_statuses(%s, %s)", (calls, ["ended"] * len(calls))
        )
        entries += len(calls)
    return entries


async def batchctl_per_call_client(conn: psycopg.AsyncConnection, stop_at: float) -> int:
    worker = f"peer-{uuid.uuid4()}"
    entries = 0
    while time.perf_counter() < stop_at:
        claims = await claim(conn, worker)
        calls = []
        for entry, room in claims:
            cur = await conn.execute(
                "SELECT batchctl.mark_dispatched(%s, %s, %s)", (entry, room, "d-" + room)
            )
            calls.append((await cur.fetchone() or (None,))[0])
        for call in calls:
            await conn.execute("SELECT batchctl.report_call_status(%s, 'ended')", (call,))
        entries += len(calls)
    return entries


def load_campaign(url: str, entries: int) -> None:
    """Four tenants whose caps never bind, three batches each, with ``entries`` queued in all.
    The shape stays the same whatever the size: a claim spreads over the tenant's batches (fair
    share), so more batches per tenant would mean more batch rows per acknowledgement."""
    batches = 12
    per_batch = -(-entries // batches)
    with psycopg.connect(url, autocommit=True) as conn:
        tenants = [
            conn.execute("SELECT batchctl.create_tenant(%s, 10000)", (f"t{t}",)).fetchone()[0]  # type: ignore[index]
            for t in range(4)
        ]
        for b in range(batches):
            leads = [{"to_phone": f"+1202{b:02d}{i:06d}"} for i in range(per_batch)]
            conn.execute(
                "SELECT batchctl.create_batch(%s, %s::jsonb, '{\"wave_size\": 1000}')",
                (tenants[b % 4], json.dumps(leads)),
            )
        conn.execute("VACUUM ANALYZE")


async def install_pgqueuer(url: str) -> None:
    from pgqueuer.queries import Queries

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await Queries.from_psycopg_connection(conn).install()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    try:
        import pgqueuer  # noqa: F401
    except ImportError:
        raise SystemExit('PgQueuer is not installed: pip install -e ".[bench]"') from None

    with (
        server() as admin_url,
        scratch_database(admin_url, PEER_DB) as url,
        scratch_database(admin_url, PGQUEUER_DB, migrated=False) as pgq_url,
        scratch_database(admin_url, CAMPAIGN_DB, migrated=False) as campaign_url,
    ):
        with psycopg.connect(url) as conn:
            print(machine(conn))
        asyncio.run(install_pgqueuer(pgq_url))
        load_campaign(url, entries=int(6_000 * args.seconds))
        asyncio.run(load_pgqueuer_campaign(campaign_url, entries=int(6_000 * (args.seconds + 1))))

        def measure(target: str, client: Client, seconds: float) -> float:
            return asyncio.run(run_clients(target, args.clients, seconds, client))

        # A running system has history and statistics (autovacuum analyzes a growing table
        # within a minute); plans made on the fresh, empty tables would be for empty tables.
        # So every side runs for a second first, then ANALYZE, and is measured on new sessions.
        print("warm-up, 1 s each side, then ANALYZE")
        measure(pgq_url, pgqueuer_client, 1.0)
        measure(campaign_url, campaign_client, 1.0)
        print(f"  {check_invariants(campaign_url)}")
        measure(url, batchctl_client, 1.0)
        for database in (url, pgq_url, campaign_url):
            with psycopg.connect(database, autocommit=True) as conn:
                conn.execute("ANALYZE")
        section(f"{args.clients} clients, {args.seconds:.0f} s each, in the order printed")
        with wait_events(admin_url, PEER_DB) as batchctl_waits:
            done = measure(url, batchctl_client, args.seconds)
        print(f"  batchctl  claim -> dispatch -> final report:        {done:8,.0f} entries/s")
        with wait_events(admin_url, CAMPAIGN_DB) as campaign_waits:
            campaign = measure(campaign_url, campaign_client, args.seconds)
        print(f"  PgQueuer  campaign: dequeue -> dial -> final report: {campaign:8,.0f} entries/s")
        print(f"            {check_invariants(campaign_url)}", flush=True)
        with wait_events(admin_url, PGQUEUER_DB) as pgqueuer_waits:
            jobs = measure(pgq_url, pgqueuer_client, args.seconds)
        print(f"  PgQueuer  bare queue: enqueue -> dequeue -> ack:     {jobs:8,.0f} jobs/s")
        single = measure(url, batchctl_per_call_client, args.seconds)
        print(f"  batchctl  the same, one call per call:              {single:8,.0f} entries/s")
        print(
            f"  ratio batchctl / PgQueuer campaign: {done / campaign:.2f}; batchctl / bare queue:"
            f" {done / jobs:.2f} (issue 6's target >= 1.0); one call per call / campaign:"
            f" {single / campaign:.2f}, / bare queue: {single / jobs:.2f}"
        )
        print("  where the backends were (pg_stat_activity samples):")
        print(f"    batchctl:            {wait_profile(batchctl_waits)}")
        print(f"    PgQueuer campaign:   {wait_profile(campaign_waits)}")
        print(f"    PgQueuer bare queue: {wait_profile(pgqueuer_waits)}")


if __name__ == "__main__":
    main()
