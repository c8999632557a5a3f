"""Outbound webhooks: what the outbox costs the transitions, and how fast the daemon empties it.

    python bench/webhooks.py [--tenants 10] [--clients 4] [--mode processes] [--rounds 5]
                             [--seconds 8] [--entries 300] [--deliveries 10000]

Overhead: the lifecycle throughput of bench/lifecycle_throughput.py (its ``run_clients``: N client
connections looping claim_entries(10) -> mark_dispatched -> ringing -> ongoing -> ended, every
SQL call its own transaction), in rounds that alternate between no endpoint at all and one
endpoint per tenant (https://hooks.example.com/t), all in one process on one server. No daemon
runs, so the deliveries pile up in the outbox: what is measured is the transactions' side alone
(the triggers queueing every call.ended, entry.finished and batch event in the transition's own
transaction). Each round starts from fresh batches; a round with endpoints adds them first and
removes them (with the deliveries it queued) after. The medians of both sides and their ratio
are printed, and the ratio of each pair (a neighbour busy for a while hits both runs of a pair
alike): the median of the pairs' ratios is the figure, within 10% when it is at least 0.90.

Delivery: a receiver on 127.0.0.1 (aiohttp, answering 200 at once, counting requests and
keeping them) is every tenant's endpoint, a backlog of about --deliveries deliveries is queued
by running batches through the SQL lifecycle with no daemon, then `batchctl daemon
--allow-private-webhooks` starts (with the LiveKit simulator, which it never calls here) and
the time until no delivery is left undelivered is measured: from the daemon's start, and between
the first and the last request at the receiver. The distinct webhook-ids are counted, and
an even sample of the requests' signatures is verified with `standardwebhooks`.

Prints figures; asserts nothing about speed. Its scratch databases are dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import math
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from uuid import UUID

import psycopg
from aiohttp import web
from standardwebhooks import Webhook

from batchctl.daemon.deliveries import DeliveryLoop
from batchctl.sim.threaded import run_simulator
from benchlib import Conn, load, machine, one, phone_entries, scratch_database, section, server
from dispatch_latency import CREDENTIALS, INSTANT_CALLS, run_daemon_until_done
from lifecycle_throughput import FULL, RunResult, fresh_batches, lifecycle_worker, run_clients

OVERHEAD_DB = "batchctl_bench_webhooks_overhead"
DELIVERY_DB = "batchctl_bench_webhooks_delivery"
HOOK_URL = "https://hooks.example.com/t"
UNDELIVERED = "SELECT count(*) FROM batchctl.webhook_deliveries WHERE status <> 'delivered'"


# ---------------------------------------------------------------------------------------------
# Overhead: the lifecycle with and without one endpoint per tenant.


def overhead_round(
    conn: Conn,
    url: str,
    tenants: list[UUID],
    args: argparse.Namespace,
    run_no: int,
    hooks: bool,
    seconds: float,
) -> tuple[RunResult, int]:
    """One run of the lifecycle on fresh batches, with one endpoint per tenant or none: the run
    and the deliveries it queued (the endpoints are removed after, with them)."""
    plan = replace(FULL, tenants=len(tenants), batches=2 * len(tenants), entries=args.entries)
    fresh_batches(conn, tenants, plan, run_no)
    endpoints = [
        one(conn, "SELECT batchctl.add_webhook(%s, %s) ->> 'endpoint_id'", t, HOOK_URL)
        for t in (tenants if hooks else [])
    ]
    run = run_clients(url, args.mode, args.clients, seconds)
    queued = one(conn, "SELECT count(*) FROM batchctl.webhook_deliveries")
    for tenant, endpoint in zip(tenants, endpoints, strict=False):
        conn.execute("SELECT batchctl.remove_webhook(%s, %s)", (tenant, endpoint))
    return run, queued


def overhead(admin_url: str, args: argparse.Namespace) -> tuple[float, bool]:
    section(
        f"overhead: lifecycle throughput, {args.clients} clients ({args.mode}), without and "
        f"with one endpoint per tenant, {args.rounds} alternating pairs of {args.seconds:g} s"
    )
    with (
        scratch_database(admin_url, OVERHEAD_DB) as url,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        tenants = [
            one(conn, "SELECT batchctl.create_tenant(%s, %s)", f"tenant-{t}", FULL.cap)
            for t in range(args.tenants)
        ]
        print(
            f"workload: {args.tenants} tenants (max_concurrent_calls {FULL.cap}), "
            f"{2 * args.tenants} batches x {args.entries} entries, fresh for each run; per entry: "
            "1/10 claim_entries(10) + mark_dispatched + 3 x report_call_status; no daemon"
        )
        # Warm-up, one run of each side, then statistics, as lifecycle_throughput does: the
        # tables hold calls, events and deliveries, as a running system's do.
        for hooks in (False, True):
            overhead_round(conn, url, tenants, args, int(hooks), hooks, min(args.seconds, 3))
        conn.execute("ANALYZE")

        runs: dict[bool, list[float]] = {False: [], True: []}
        ratios: list[float] = []
        for pair in range(args.rounds):
            # Each pair's order alternates: neither side always runs right after the other.
            order = (False, True) if pair % 2 == 0 else (True, False)
            got: dict[bool, float] = {}
            for i, hooks in enumerate(order):
                run, queued = overhead_round(
                    conn, url, tenants, args, 10 + 2 * pair + i, hooks, args.seconds
                )
                got[hooks] = run.lifecycles_per_s
                runs[hooks].append(run.lifecycles_per_s)
                print(
                    f"pair {pair + 1}, {'with endpoints' if hooks else 'no endpoint   '}: "
                    f"{run.lifecycles_per_s:,.0f} lifecycles/s ({run.txns_per_s:,.0f} txn/s, "
                    f"{run.lifecycles} in {run.seconds:.1f} s, {run.empty_claims} empty claims)"
                    + (f"; {queued:,} deliveries queued" if hooks else "")
                )
            ratios.append(got[True] / got[False])
    without, with_ = statistics.median(runs[False]), statistics.median(runs[True])
    # The figure is the median of the pairs' ratios, as lifecycle_throughput's pgbench row.
    ratio = statistics.median(ratios)
    within = ratio >= 0.9
    print(
        f"\n  lifecycles/s, medians of {args.rounds}: no endpoint {without:,.0f}, one endpoint "
        f"per tenant {with_:,.0f} (ratio of the medians {with_ / without:.2f})"
        f"\n  with / without, median of the {args.rounds} pairs' ratios: {ratio:.2f} "
        f"(pairs {min(ratios):.2f}-{max(ratios):.2f}): {'within' if within else 'NOT within'} 10%"
    )
    return ratio, within


# ---------------------------------------------------------------------------------------------
# Delivery: a backlog, a fast local receiver and the daemon.


@dataclass
class Received:
    """What the receiver saw: each request's arrival time, path, headers and body."""

    at: list[float] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)


@contextmanager
def receiver() -> Iterator[tuple[str, Received]]:
    """An HTTP server on 127.0.0.1 (a thread of its own) answering every POST 200 at once;
    yields its base URL and what it received."""
    seen = Received()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        seen.at.append(time.time())
        seen.requests.append((request.path, dict(request.headers), body))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{endpoint}", handle)
    runner = web.AppRunner(app, access_log=None)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="webhook-receiver", daemon=True)
    thread.start()

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(10), seen
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def queue_backlog(conn: Conn, url: str, base: str, args: argparse.Namespace) -> dict[str, str]:
    """Tenants with an endpoint each at the receiver and batches run to their end through the
    SQL lifecycle (lifecycle_throughput's client, batched), no daemon running: about
    --deliveries deliveries queued (per entry call.ended and entry.finished, per batch
    batch.started and batch.finished). Returns each endpoint's secret by its URL path."""
    per_tenant = max(1, math.ceil((args.deliveries / args.tenants - 2) / 2))
    secrets: dict[str, str] = {}
    for t in range(args.tenants):
        tenant = one(conn, "SELECT batchctl.create_tenant(%s, %s)", f"receiving-{t}", FULL.cap)
        added = one(conn, "SELECT batchctl.add_webhook(%s, %s)", tenant, f"{base}/t{t}")
        secrets[f"/t{t}"] = added["secret"]
        conn.execute(
            "SELECT batchctl.create_batch(%s, %s::jsonb)",
            (tenant, phone_entries(per_tenant, f"9{t:03d}")),
        )
    started = time.perf_counter()
    while one(conn, "SELECT count(*) FROM batchctl.batches WHERE finished_at IS NULL"):
        lifecycle_worker(url, "backlog", 1.0, threading.Barrier(1), batched=True)
    print(
        f"backlog: {args.tenants} tenants with an endpoint each at the receiver, one batch of "
        f"{per_tenant:,} entries each, run through the SQL lifecycle (batched, one client) in "
        f"{time.perf_counter() - started:.1f} s with no daemon: "
        f"{one(conn, UNDELIVERED):,} deliveries queued"
    )
    return secrets


def delivery(admin_url: str, args: argparse.Namespace, logs: Path) -> None:
    defaults = inspect.signature(DeliveryLoop).parameters
    section(
        f"delivery: a backlog of ~{args.deliveries:,} deliveries, the daemon "
        f"(--allow-private-webhooks; claims of {defaults['limit'].default}, at most "
        f"{defaults['max_in_flight'].default} in flight) and a receiver on 127.0.0.1 answering "
        "200 at once"
    )
    with (
        scratch_database(admin_url, DELIVERY_DB) as url,
        psycopg.connect(url, autocommit=True) as conn,
        receiver() as (base, seen),
    ):
        secrets = queue_backlog(conn, url, base, args)
        backlog = one(conn, UNDELIVERED)
        # run_daemon_until_done runs the daemon until every batch has finished: one batch that
        # never starts (autostart off, a tenant with no endpoint) keeps it running until the
        # outbox is empty, when `drained` cancels it.
        holder = one(conn, "SELECT batchctl.create_tenant('holder', 1)")
        conn.execute(
            "SELECT batchctl.create_batch(%s, %s::jsonb, '{\"autostart\": false}')",
            (holder, phone_entries(1, "8000")),
        )
        conn.execute("ANALYZE")
        emptied: list[float] = []

        def drained() -> None:
            timed_out = time.perf_counter() - started > args.timeout
            if not emptied and (one(conn, UNDELIVERED) == 0 or timed_out):
                emptied.append(time.perf_counter())
                conn.execute(
                    "SELECT batchctl.cancel_batch(tenant_id, id, 'bench: outbox empty')"
                    "  FROM batchctl.batches WHERE tenant_id = %s",
                    (holder,),
                )

        with run_simulator(url, INSTANT_CALLS, CREDENTIALS) as sim:
            started = time.perf_counter()
            run_daemon_until_done(url, sim, logs / "delivery.log", "--allow-private-webhooks",
                                  tick=drained)  # fmt: skip
        left = one(conn, UNDELIVERED)
        by_status: dict[str, int] = dict(
            conn.execute(
                "SELECT status, count(*) FROM batchctl.webhook_deliveries GROUP BY status"
            ).fetchall()
        )
        attempts = one(conn, "SELECT count(*) FROM batchctl.webhook_attempts")
    elapsed = emptied[0] - started
    ids = [headers.get("webhook-id") for _, headers, _ in seen.requests]
    step = max(1, len(seen.requests) // args.verify)
    sample = seen.requests[::step]
    verified = 0
    for path, headers, body in sample:
        Webhook(secrets[path]).verify(body, headers)  # raises if it does not verify
        verified += 1
    window = max(seen.at) - min(seen.at) if seen.at else 0.0
    print(
        f"  {backlog:,} deliveries: outbox {'empty' if left == 0 else f'NOT empty ({left:,} left)'}"
        f" {elapsed:.1f} s after the daemon's start: {backlog / elapsed:,.0f} deliveries/s"
        f"\n  at the receiver: {len(seen.requests):,} requests, {len(set(ids)):,} distinct "
        f"webhook-ids, first to last {window:.1f} s: "
        f"{len(seen.requests) / window if window else 0:,.0f} requests/s"
        f"\n  deliveries by status {by_status}, {attempts:,} attempts recorded; signatures of "
        f"{verified} of the requests (every {step}th) verified with standardwebhooks"
        f"\n  daemon log: {logs / 'delivery.log'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=10, help="tenants (each one endpoint)")
    parser.add_argument("--clients", type=int, default=4, help="lifecycle clients (overhead)")
    parser.add_argument("--mode", choices=("processes", "threads"), default="processes")
    parser.add_argument("--rounds", type=int, default=5, help="pairs of runs (overhead)")
    parser.add_argument("--seconds", type=float, default=8, help="each run (overhead)")
    parser.add_argument("--entries", type=int, default=300, help="per batch, 2 per tenant")
    parser.add_argument("--deliveries", type=int, default=10000, help="the backlog to send")
    parser.add_argument("--verify", type=int, default=500, help="signatures to verify")
    parser.add_argument("--timeout", type=float, default=600, help="give up sending after")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="batchctl-bench-webhooks-"))
    began = time.perf_counter()
    with server() as admin_url:
        with psycopg.connect(admin_url) as conn:
            print(machine(conn))
        ratio, within = overhead(admin_url, args)
        delivery(admin_url, args, logs)
    print(
        f"\nwith / without endpoints {ratio:.2f} ({'within' if within else 'NOT within'} 10%); "
        f"total {time.perf_counter() - began:.0f} s; {load()}"
    )


if __name__ == "__main__":
    main()
