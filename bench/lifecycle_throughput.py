"""Lifecycle benchmark, part 1 (throughput): how fast the SQL state machine moves calls, against
pgbench's simple-update workload (-N) on the same server as the ceiling.

    python bench/lifecycle_throughput.py [--quick]     (bench/lifecycle.py runs it, then part 2)

Many batches at once, N client connections each looping claim_entries(10) -> mark_dispatched ->
report_call_status ringing -> ongoing -> ended, every SQL call its own autocommit transaction;
then the same steps batched (a claim's 10 entries per call: mark_dispatched_many,
report_call_statuses), as the daemon's and a reporting service's completers send them. The same
lifecycle is also run as a pgbench script, so that one C client drives both sides, in short runs
that alternate with pgbench -N (the median of the pairs' ratios is the figure, and where each
side's backends spent their time, sampled from pg_stat_activity, is printed).

It prints figures and asserts nothing about speed. It creates two scratch databases on the server
(benchlib.server: a fresh embedded PostgreSQL, or BATCHCTL_DATABASE_URL's) and drops them
afterwards.
"""

from __future__ import annotations

import multiprocessing
import re
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from benchlib import (
    Conn,
    Part,
    one,
    pg_bin,
    phone_entries,
    run_parts,
    scratch_database,
    section,
    wait_events,
    wait_profile,
)

BENCH_DB = "batchctl_bench_lifecycle"
PGBENCH_DB = "batchctl_bench_pgbench"
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
)


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


def run(admin_url: str, plan: Plan) -> None:
    with scratch_database(admin_url, BENCH_DB) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            # Per-function timings for the breakdown (superuser setting, per database).
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET track_functions = 'all'").format(
                    sql.Identifier(BENCH_DB)
                )
            )
        throughput(admin_url, url, plan)


PART = Part(FULL, QUICK, run)

if __name__ == "__main__":
    run_parts(__doc__.split("\n\n")[0], [PART])
